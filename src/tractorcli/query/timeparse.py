"""Time values, durations and sizes in search clauses (reference section 2.4).

Time values (for timestamp attributes), all local time::

    10am  5pm  12am (midnight)  12pm (noon)     today at that time
    11:37  16:21  4:21pm  11:37:05               today at that time
    3/15                                         midnight, March 15 of the year closest to now
    3/15|4pm  3/15.4pm  3/15|17:37               that time on March 15 (year closest to now)
    3/15/05  3/15/2005  3/15/05|4am              March 15, 2005 (two-digit years: 69-99 -> 19xx, else 20xx)
    -30s -10m -2h -3d -1w -1h30m -1.5d           that long ago
    +2h +1d                                      that long from now (beyond Tractor)
    now                                          now (beyond Tractor)
    2024-03-15  2024-03-15T10:30[:00]            ISO 8601 dates (beyond Tractor)

A relative time needs its sign: ``-2h`` is two hours ago, ``+2h`` two hours
from now; a bare ``2h`` is refused rather than guessed.  "The year closest
to now" is the one of last year, this year and next year whose date lies
nearest `now`, so ``12/31`` in early January is last December.  Local times
take the UTC offset in force on their own date (daylight saving time).

Durations (seconds): a number is seconds; units ``s m h d w`` (any case,
compound ``1h30m``).  Sizes: a number is in the attribute's own unit (GB for
`availmemory`, `availdisk`, `rss`, `vsz`); units ``b``, ``K``/``kb``/``KB``,
``M``/``mb``/``MB``, ``G``, ``T``, ``P`` (any case, ``KiB`` too) are binary
multiples of bytes and are scaled to the attribute's unit.

Every function takes `now` where it matters (a timezone-aware datetime is
best); errors are `LiteralError` with a one-line reason.
"""

from __future__ import annotations

import datetime as dt
import re

from .errors import LiteralError

__all__ = ["parse_time", "parse_duration", "parse_size", "looks_like_time", "UNIT_SECONDS", "UNIT_BYTES"]

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
UNIT_BYTES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DUR = re.compile(rf"(?:{_NUM}[smhdw])+\Z", re.I)
_DUR_PART = re.compile(rf"({_NUM})([smhdw])", re.I)
_PLAIN = re.compile(rf"[+-]?{_NUM}\Z")
_SIZE = re.compile(rf"([+-]?{_NUM})([bkmgtp])(?:i?b)?\Z", re.I)
_CLOCK = re.compile(r"([0-9]{1,2})(?::([0-9]{2})(?::([0-9]{2}))?)?(am|pm)?\Z", re.I)
_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}|[0-9]{2}))?(?:[|.](.+))?\Z", re.S)
_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T |]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?\Z")


def _seconds(body: str) -> float:
    return sum(float(n) * UNIT_SECONDS[u.lower()] for n, u in _DUR_PART.findall(body))


def parse_duration(text: str) -> float:
    """Seconds: ``90``, ``1.5``, ``30s``, ``10m``, ``2h``, ``1d``, ``1w``, ``1h30m`` (optional sign)."""
    t = text.strip()
    if _PLAIN.match(t):
        return float(t)
    sign = -1.0 if t[:1] == "-" else 1.0
    body = t[1:] if t[:1] in "+-" else t
    if _DUR.match(body):
        return sign * _seconds(body)
    raise LiteralError(f"{_q(text)} is not a duration: write seconds, or a number with a unit "
                       f"s, m, h, d or w (e.g. 90, 10m, 2h, 1h30m)")


def parse_size(text: str, unit: str = "GB") -> float:
    """A size in `unit` (``b``, ``KB``, ``MB``, ``GB``, ...): a plain number is already in `unit`."""
    t = text.strip()
    if _PLAIN.match(t):
        return float(t)
    m = _SIZE.match(t)
    if not m:
        raise LiteralError(f"{_q(text)} is not a size: write a number in {unit}, or a number with a unit "
                           f"b, K, M, G, T or P (e.g. 512M, 2G)")
    return float(m.group(1)) * UNIT_BYTES[m.group(2).lower()] / UNIT_BYTES[unit[0].lower()]


def looks_like_time(text: str) -> bool:
    """True when `text` has the shape of a time value (it may still be an impossible date)."""
    t = text.strip()
    if t.lower() == "now" or _ISO.match(t) or _DATE.match(t):
        return True
    if t[:1] in "+-" and _DUR.match(t[1:]):
        return True
    m = _CLOCK.match(t)
    return bool(m and (m.group(2) or m.group(4)))


def _q(text: str) -> str:
    from .errors import show

    return show(text)


def _clock(text: str, whole: str) -> tuple[int, int, int]:
    m = _CLOCK.match(text)
    if not m or not (m.group(2) or m.group(4)):
        raise LiteralError(f"{_q(whole)}: {_q(text)} is not a time of day (e.g. 10am, 4:21pm, 16:21)")
    h, mi, s, ampm = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), (m.group(4) or "").lower()
    if ampm:
        if not 1 <= h <= 12:
            raise LiteralError(f"{_q(whole)}: the hour of a time with {ampm} is 1 to 12")
        h = h % 12 + (12 if ampm == "pm" else 0)
    elif h > 23:
        raise LiteralError(f"{_q(whole)}: the hour is 0 to 23")
    if mi > 59 or s > 59:
        raise LiteralError(f"{_q(whole)}: minutes and seconds are 0 to 59")
    return h, mi, s


def _local(naive: dt.datetime, now: dt.datetime) -> dt.datetime:
    """`naive` as a local wall-clock time in the zone of `now`.

    A naive `now`, or one whose fixed UTC offset is the system's own at that
    moment (what ``datetime.now().astimezone()`` gives), means the system's
    local time, with the offset in force on `naive`'s date; a zone such as
    ``ZoneInfo("Europe/Paris")`` is used as it is; another fixed offset stays fixed.
    """
    tz = now.tzinfo
    if tz is None or (isinstance(tz, dt.timezone) and now.utcoffset() == now.astimezone().utcoffset()):
        return naive.astimezone()
    return naive.replace(tzinfo=tz)


def _today(now: dt.datetime) -> dt.date:
    return now.date()


def _closest_year(month: int, day: int, hms: tuple[int, int, int], now: dt.datetime, whole: str) -> dt.datetime:
    best = None
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            cand = _local(dt.datetime(year, month, day, *hms), now)
        except ValueError:
            continue  # February 29 of a year that has none
        if best is None or abs(cand - now) < abs(best - now):
            best = cand
    if best is None:
        raise LiteralError(f"{_q(whole)}: there is no day {day} in month {month}")
    return best


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """The moment `text` names (see the module docstring); `now` anchors relative and partial values."""
    try:
        return _parse_time(text.strip(), now, text)
    except (OverflowError, OSError):
        raise LiteralError(f"{_q(text)} is out of the range of dates") from None


def _parse_time(t: str, now: dt.datetime, whole: str) -> dt.datetime:
    if t.lower() == "now":
        return now
    if t[:1] in "+-" and _DUR.match(t[1:]):
        delta = dt.timedelta(seconds=_seconds(t[1:]))
        return now - delta if t[0] == "-" else now + delta
    if _DUR.match(t):
        raise LiteralError(f"{_q(whole)}: a relative time needs a sign: -{t} (ago) or +{t} (from now)")
    m = _ISO.match(t)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        hms = (int(m.group(4) or 0), int(m.group(5) or 0), int(m.group(6) or 0))
        try:
            return _local(dt.datetime(y, mo, d, *hms), now)
        except ValueError as exc:
            raise LiteralError(f"{_q(whole)} is not a valid date: {exc}") from None
    m = _DATE.match(t)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise LiteralError(f"{_q(whole)}: the month is 1 to 12 (dates are month/day)")
        if not 1 <= day <= 31:
            raise LiteralError(f"{_q(whole)}: the day is 1 to 31 (dates are month/day)")
        hms = _clock(m.group(4), whole) if m.group(4) is not None else (0, 0, 0)
        year = m.group(3)
        if year is None:
            return _closest_year(month, day, hms, now, whole)
        y = int(year)
        if len(year) == 2:
            y += 1900 if y >= 69 else 2000
        try:
            return _local(dt.datetime(y, month, day, *hms), now)
        except ValueError:
            raise LiteralError(f"{_q(whole)}: there is no day {day} in month {month} of {y}") from None
    m = _CLOCK.match(t)
    if m and (m.group(2) or m.group(4)):
        h, mi, s = _clock(t, whole)
        d = _today(now)
        return _local(dt.datetime(d.year, d.month, d.day, h, mi, s), now)
    raise LiteralError(f"{_q(whole)} is not a time: write e.g. 10am, 16:21, 3/15, 3/15|4pm, 3/15/05, "
                       f"-2h (ago), -3d, now")
