"""Named SQL statements, loaded from `db/sql/queries.sql`.

The file is a list of blocks, each introduced by a `-- name: NAME` line,
after the fashion of aiosql and procrastinate: SQL stays SQL (readable,
greppable, checked against the schema by the tests), and Python refers to
statements by name.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SQL_DIR = Path(__file__).with_name("sql")
_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.M)


def parse(text: str) -> dict[str, str]:
    """Split a queries file into {name: statement}."""
    out: dict[str, str] = {}
    marks = list(_NAME.finditer(text))
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        if m.group(1) in out:
            raise ValueError(f"query {m.group(1)!r} is defined twice")
        out[m.group(1)] = body
    return out


@lru_cache(maxsize=None)
def _all() -> dict[str, str]:
    return parse((SQL_DIR / "queries.sql").read_text(encoding="utf-8"))


def get(name: str) -> str:
    """The statement called `name` (KeyError if there is none)."""
    return _all()[name]


def names() -> list[str]:
    return sorted(_all())
