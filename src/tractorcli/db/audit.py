"""The invariant audit of the job database (functions/audit.sql): `tractor-dbctl --check` and
`tq audit` print what it finds; the fault tests end with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["INVARIANTS", "audit", "describe", "left"]

# what is checked, in the order the rows come
INVARIANTS = ("job counters", "active commands", "task order", "ready queue", "blade slots", "row values", "orphans")


def audit(conn: "psycopg.Connection", repair: bool = False) -> list[dict]:
    """Each violation as {invariant, ids, detail, repaired}; none: the database keeps its promises.
    With `repair` what can be derived (counters, queue rows, blades' slots) is set right, in one
    transaction; only the site's role and Administrators/Wranglers may repair."""
    with conn.transaction():
        return conn.execute(queries.get("audit"), {"repair": repair}).fetchall()


def describe(row: dict) -> str:
    """One violation as a line: `invariant: ids: detail` (and what was done)."""
    return f"{row['invariant']}: {row['ids']}: {row['detail']}{' (repaired)' if row['repaired'] else ''}"


def left(rows: list[dict]) -> int:
    """How many of the violations are still there (not repaired)."""
    return sum(1 for r in rows if not r["repaired"])
