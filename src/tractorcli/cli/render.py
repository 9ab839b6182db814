"""Listings on the terminal and for scripts: one place for every output form.

* a rich table when stdout is a terminal (unless --nf/--delimiter);
* otherwise Tractor's plain form, which scripts written against tq parse: a
  header line of column names, a line of ``=`` dividers under each column,
  then one line per row, columns separated by one space (or --delimiter);
  a footer (divider and header again) after 40 rows or more;
* ``--json`` (a list of objects), ``--ndjson`` (one object per line) and
  ``--csv`` (a header row then the rows), keyed by the column names as
  asked (``jid``, ``user``, ``Blade.name`` ...), with raw values: times in
  ISO 8601, durations in seconds, lists as lists.

Column specs (``-c``): ``name``, ``name=W`` (at most W characters, longer
text cut; numbers are never cut), ``name=W.P`` (P decimals for floats),
``name=0`` (as wide as needed), ``name:color``.  Human forms: times
``MM/DD|HH:MM`` (``--tf`` any strftime format, ``--fulltime`` = ``%c``),
durations ``h:mm:ss``, sizes and floats with their precision; job task
counts of zero print blank unless ``--zeros``.  ``--raw`` prints the stored
values instead.

No database access here: rows arrive as dicts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Tractor's header names for some default columns
HEADERS = {"numblocked": "blkd", "numready": "redy", "numactive": "actv", "numerror": "err", "numdone": "done",
           "priority": "pri", "Blade.name": "blade", "spooltime": "spooled"}
# count columns whose zero prints blank (unless --zeros)
ZERO_BLANK = frozenset({"numblocked", "numready", "numactive", "numerror", "numdone", "numtasks"})
STATE_COLORS = {"active": "green", "blocked": "yellow", "ready": "cyan", "error": "red", "done": ""}
FOOTER_ROWS = 40
DEFAULT_TIMEFMT = "%m/%d|%H:%M"

_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.]*)(?:=(?P<w>\d+)(?:\.(?P<p>\d+))?)?(?::(?P<color>[a-z_]+))?$")


@dataclass
class ColSpec:
    name: str  # attribute (alias) name as asked: the JSON/CSV key
    width: int = 0  # 0: as wide as needed
    precision: int | None = None
    color: str | None = None
    type: str = "text"  # the attribute's type (set once resolved)
    canonical: str = ""  # the attribute's own name (for zero-suppression and states)

    @property
    def header(self) -> str:
        return HEADERS.get(self.name) or (HEADERS.get(self.canonical) if self.canonical.startswith("num") else None) \
            or self.name


class SpecError(ValueError):
    pass


def parse_spec(text: str) -> ColSpec:
    m = _SPEC.match(text.strip())
    if not m:
        raise SpecError(f"bad column {text.strip()!r} (name, name=WIDTH, name=WIDTH.PRECISION or name:color)")
    return ColSpec(m["name"], int(m["w"] or 0), int(m["p"]) if m["p"] is not None else None, m["color"])


def columns(spec: str | None, defaults: Sequence[str]) -> list[ColSpec]:
    """The columns of `-c SPEC` over `defaults`: a plain list replaces them;
    items starting with ``+`` are added, ``-`` removed, ``=name=W`` changes a
    default's width.  Several -c options are joined with commas first."""
    cols = [parse_spec(d) for d in defaults]
    if not spec:
        return cols
    items = [i.strip() for i in spec.replace(" ", ",").split(",") if i.strip()]
    relative = all(i[0] in "+-=" for i in items)
    if not relative:
        cols = []
    for item in items:
        if item[0] == "+":
            cols.append(parse_spec(item[1:]))
        elif item[0] == "-":
            name = item[1:].split("=")[0]
            cols = [c for c in cols if c.name != name]
        elif item[0] == "=":
            new = parse_spec(item[1:])
            cols = [new if c.name == new.name else c for c in cols]
            if not any(c.name == new.name for c in cols):
                cols.append(new)
        else:
            cols.append(parse_spec(item))
    if not cols:
        raise SpecError("no columns left to show")
    return cols


@dataclass
class Style:
    raw: bool = False
    timefmt: str | None = None
    zeros: bool = False
    color: bool = True


def _duration(secs: float) -> str:
    s = round(secs)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _number(v: float, precision: int | None) -> str:
    if precision is not None:
        return f"{v:.{precision}f}"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"


def text_value(value: Any, col: ColSpec, style: Style) -> str:
    """A value as the plain and table forms show it."""
    if value is None:
        return ""
    t = col.type
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        if style.raw:
            return value.isoformat()
        return value.astimezone().strftime(style.timefmt or DEFAULT_TIMEFMT)
    if isinstance(value, (list, tuple)):
        return ",".join("" if v is None else str(v) for v in value)
    if isinstance(value, (dict,)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, (int, float)):
        if value == 0 and not style.zeros and col.canonical in ZERO_BLANK:
            return ""
        if style.raw:
            return str(value)
        if t == "duration":
            return _duration(float(value))
        if isinstance(value, float) or t in ("float", "size"):
            return _number(float(value), col.precision if col.precision is not None else (2 if t == "size" else None))
        return str(value)
    return str(value)


def json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def _csv_value(value: Any) -> str:
    v = json_value(value)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list):
        return ",".join("" if x is None else str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _cut(text: str, col: ColSpec) -> str:
    if col.width and len(text) > col.width and col.type not in ("int", "float", "size", "duration"):
        return text[: col.width]
    return text


def plain_lines(rows: Sequence[dict], cols: Sequence[ColSpec], style: Style, *, header: bool = True,
                delimiter: str | None = None, pad: bool = True) -> list[str]:
    """Tractor's plain listing, line by line (no trailing newline)."""
    cells = [[_cut(text_value(r.get(c.name), c, style), c) for c in cols] for r in rows]
    sep = " " if delimiter is None else delimiter
    if not pad:
        lines = [sep.join(c.header for c in cols)] if header else []
        return lines + [sep.join(row) for row in cells]
    widths = [max([len(c.header) if header else 0] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    numeric = [c.type in ("int", "float", "size", "duration") for c in cols]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return sep.join(parts).rstrip()

    out: list[str] = []
    head = [line([c.header for c in cols]), sep.join("=" * w for w in widths)]
    if header:
        out += head
    out += [line(row) for row in cells]
    if header and len(rows) >= FOOTER_ROWS:
        out += [head[1], head[0]]
    return out


def row_line(row: dict, cols: Sequence[ColSpec], style: Style) -> str:
    """One row on one line (operations print each target this way)."""
    return " ".join(text_value(row.get(c.name), c, style) for c in cols).rstrip()


def json_text(rows: Iterable[dict], cols: Sequence[ColSpec]) -> str:
    return json.dumps([{c.name: json_value(r.get(c.name)) for c in cols} for r in rows], indent=2)


def ndjson_lines(rows: Iterable[dict], cols: Sequence[ColSpec]) -> list[str]:
    return [json.dumps({c.name: json_value(r.get(c.name)) for c in cols}) for r in rows]


def csv_text(rows: Iterable[dict], cols: Sequence[ColSpec], *, header: bool = True, delimiter: str = ",") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        w.writerow([c.name for c in cols])
    for r in rows:
        w.writerow([_csv_value(r.get(c.name)) for c in cols])
    return buf.getvalue()


def rich_table(rows: Sequence[dict], cols: Sequence[ColSpec], style: Style, *, header: bool = True):
    """A rich Table of the rows (states colored unless --nocolor)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=header, box=None, pad_edge=False, header_style="bold" if style.color else "")
    for c in cols:
        numeric = c.type in ("int", "float", "size", "duration")
        table.add_column(c.header, justify="right" if numeric else "left", no_wrap=True,
                         max_width=c.width or None, overflow="crop")
    for r in rows:
        cells = []
        for c in cols:
            text = text_value(r.get(c.name), c, style)
            color = None
            if style.color:
                color = c.color or (STATE_COLORS.get(text) if c.canonical == "state" else None)
            cells.append(Text(text, style=color or ""))
        table.add_row(*cells)
    return table


def emit(out: Callable[[str], None], rows: Sequence[dict], cols: Sequence[ColSpec], style: Style, *, form: str,
         header: bool = True, delimiter: str | None = None, noformat: bool = False, console=None) -> None:
    """Write `rows` in `form` (table, plain, json, ndjson, csv) through `out` (or `console` for tables)."""
    if form == "json":
        out(json_text(rows, cols))
    elif form == "ndjson":
        for line in ndjson_lines(rows, cols):
            out(line)
    elif form == "csv":
        out(csv_text(rows, cols, header=header, delimiter=delimiter or ",").rstrip("\n"))
    elif form == "table" and console is not None:
        console.print(rich_table(rows, cols, style, header=header))
    else:
        for line in plain_lines(rows, cols, style, header=header, delimiter=delimiter,
                                pad=not noformat and delimiter is None):
            out(line)
