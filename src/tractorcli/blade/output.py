"""Scanning command output for the directives a blade acts on (reference §4.7).

A line is a directive only if it *begins* with one of these forms (anything
may follow; a trailing `\\r\\n` does not matter):

| line                                  | directive                     | kept in the log |
|---------------------------------------|-------------------------------|-----------------|
| `TR_PROGRESS 45%`, `ALF_PROGRESS 45`  | progress 45 (the `%` is optional, a fraction like `45.5` is allowed) | no |
| `R90000  45%`, `[03] R90000 45%`      | progress (prman `-Progress`; the bracket prefix is netrender's host tag) | no |
| `00:00:24.52 2.36GB PROG  \\| 17%`    | progress (prman 21+ `-Progress` status) | yes |
| `42% done`                            | progress (Nuke)               | no |
| `Frame 37 (7 of 9)`                   | progress 100*7/9, at least 1 (Nuke) | yes |
| `TR_EXIT_STATUS 3`, `ALF_EXIT_STATUS 3` | exit status override (may be negative) | no |
| `TR_EXPAND_CHUNK "file" [where]`      | task definitions (Tcl/JSON) in that file (Tractor 2.1+): read now, grafted when the command exits 0 | no |

Progress is clamped to 0..100.  The last exit status override wins; a
blade reports it instead of the process's own code and, when the profile's
`exit_status_terminate` is on, kills the process group if it has not exited
about 2 seconds later.  The forms beyond the reference's list (prman 21,
Nuke) are those Tractor 2's built-in output filter also recognises, so
output that drove Tractor's progress bars drives ours.

Ordinary lines must cost almost nothing: `feed` first checks the line's
first character and then a fixed prefix (`TR_`, `ALF_`, `R90000`, `Frame `)
or character (`R90000` after `[`, `%` after a digit) before any decode or regular
expression; most lines are turned away by a dictionary lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Directive", "OutputScanner", "PROGRESS", "EXIT_STATUS", "EXPAND_CHUNK", "strip_directives"]

PROGRESS = "progress"
EXIT_STATUS = "exit_status"
EXPAND_CHUNK = "expand_chunk"


@dataclass(frozen=True, slots=True)
class Directive:
    """What one output line told the blade.

    `value` is a float percentage (PROGRESS), an int (EXIT_STATUS) or the
    file name (EXPAND_CHUNK, with `where` the optional destination).
    `log` says whether the line also belongs in the command's log; directive
    lines are normally left out of it, as Tractor does.
    """

    kind: str
    value: float | int | str
    where: str | None = None
    log: bool = False


_NUM = r"(\d+(?:\.\d*)?)"
# One regular expression per possible first character; each alternative is
# anchored at the start of the line (re.match).
_TR = re.compile(
    r"TR_(?:PROGRESS[ \t]+" + _NUM + r"|EXIT_STATUS[ \t]+([-+]?\d+)"
    r'|EXPAND_CHUNK[ \t]+"([^"]+)"(?:[ \t]+(\S+))?)'
)
_ALF = re.compile(r"ALF_(?:PROGRESS[ \t]+" + _NUM + r"|EXIT_STATUS[ \t]+([-+]?\d+))")
_R9 = re.compile(r"(?:\[[^\]\n]*\]:?[ \t]+)?R90000[ \t]+" + _NUM)
_DIGIT = re.compile(r"[0-9:.]{11}[ \t]+\S+[ \t]+PROG[ \t]*\|[ \t]*" + _NUM + r"|" + _NUM + r"% done")
_FRAME = re.compile(r"Frame [ \t]*\d+[ \t]+\((\d+)[ \t]+of[ \t]+(\d+)\)")

# The precheck: a line's first character, then a fixed prefix or a few
# substrings it must have, for str and bytes alike.
_PREFIX: dict = {"T": "TR_", "A": "ALF_", "R": "R90000", "F": "Frame "}
_NEEDLE: dict = {"[": "R90000", **{d: "%" for d in "0123456789"}}  # both digit forms end in "%"
_PREFIX.update({k.encode(): v.encode() for k, v in list(_PREFIX.items())})
# (an int needle makes `in` a memchr on bytes: several times faster than a bytes needle)
_NEEDLE.update({k.encode(): (ord(v) if len(v) == 1 else v.encode()) for k, v in list(_NEEDLE.items())})


def _progress(text: str, log: bool = False) -> Directive:
    p = float(text)
    return Directive(PROGRESS, 0.0 if p < 0.0 else 100.0 if p > 100.0 else p, log=log)


def _match(line: str) -> Directive | None:
    c = line[0]
    if c == "T":
        m = _TR.match(line)
        if m is None:
            return None
        if m.group(1) is not None:
            return _progress(m.group(1))
        if m.group(2) is not None:
            return Directive(EXIT_STATUS, int(m.group(2)))
        return Directive(EXPAND_CHUNK, m.group(3), m.group(4))
    if c == "A":
        m = _ALF.match(line)
        if m is None:
            return None
        if m.group(1) is not None:
            return _progress(m.group(1))
        return Directive(EXIT_STATUS, int(m.group(2)))
    if c == "R" or c == "[":
        m = _R9.match(line)
        return _progress(m.group(1)) if m else None
    if c == "F":
        m = _FRAME.match(line)
        if m is None:
            return None
        i, n = int(m.group(1)), int(m.group(2))
        if n <= 0:
            return None
        return Directive(PROGRESS, max(1.0, min(100.0, 100.0 * i / n)), log=True)
    m = _DIGIT.match(line)
    if m is None:
        return None
    if m.group(1) is not None:
        return _progress(m.group(1), log=True)
    return _progress(m.group(2))


class OutputScanner:
    """Reads a command's output line by line and keeps what it said.

    `feed(line)` takes one line (str or bytes, with or without its newline)
    and returns a `Directive` or None; the scanner also remembers the latest
    `progress` (float or None), `exit_override` (int or None) and the
    `expand_chunks` seen, as (file, where) pairs.

    `feed_chunk(data)` takes raw bytes as read from a pipe and returns the
    complete lines in it (with their newlines) paired with their directives,
    keeping a trailing partial line for the next call; `finish()` returns
    that last partial line when the process has ended.  A line longer than
    `max_line` bytes is cut there, so a process that never prints a newline
    cannot make the blade's memory grow.
    """

    __slots__ = ("progress", "exit_override", "expand_chunks", "max_line", "_partial")

    def __init__(self, *, max_line: int = 1 << 16):
        self.progress: float | None = None
        self.exit_override: int | None = None
        self.expand_chunks: list[tuple[str, str | None]] = []
        self.max_line = max_line
        self._partial = b""

    def feed(self, line: str | bytes) -> Directive | None:
        c = line[:1]
        prefix = _PREFIX.get(c)
        if prefix is not None:
            if not line.startswith(prefix):
                return None
        else:
            needle = _NEEDLE.get(c)
            if needle is None or needle not in line:
                return None
        if isinstance(line, (bytes, bytearray, memoryview)):
            line = bytes(line).decode("utf-8", "replace")
        d = _match(line)
        if d is None:
            return None
        if d.kind == PROGRESS:
            self.progress = d.value  # type: ignore[assignment]
        elif d.kind == EXIT_STATUS:
            self.exit_override = d.value  # type: ignore[assignment]
        else:
            self.expand_chunks.append((d.value, d.where))  # type: ignore[arg-type]
        return d

    def feed_chunk(self, data: bytes) -> list[tuple[bytes, Directive | None]]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        out: list[tuple[bytes, Directive | None]] = []
        start, n, limit = 0, len(data), self.max_line
        feed = self.feed
        while start < n:
            nl = data.find(b"\n", start, start + limit)
            if nl < 0:
                if n - start < limit:
                    self._partial = data[start:]
                    break
                nl = start + limit - 1  # cut an overlong line
            line = data[start:nl + 1]
            out.append((line, feed(line)))
            start = nl + 1
        return out

    def finish(self) -> list[tuple[bytes, Directive | None]]:
        if not self._partial:
            return []
        line, self._partial = self._partial, b""
        return [(line, self.feed(line))]


def strip_directives(text: str) -> str:
    """`text` without its `TR_`/`ALF_` progress and exit-status lines.

    Applied to an expand command's output before it is read as task
    definitions (reference §4.7); every other line is kept as it is.
    """
    if "_PROGRESS" not in text and "_EXIT_STATUS" not in text:
        return text
    keep = []
    for ln in text.splitlines(keepends=True):
        if ln.startswith(("TR_", "ALF_")):
            d = _match(ln)
            if d is not None and d.kind != EXPAND_CHUNK:
                continue
        keep.append(ln)
    return "".join(keep)
