"""crews.toml in the job database, where the permission functions read it.

The file lives in the site owner's config directory on the engine's host;
`tractor-dbctl --start-for-engine` (so every engine start) and `tq
reloadconfig --crews` load it: nested crews expanded, `[force]` rules as
written.  A site without crews.toml has no row in `crews_file`: then only
the site's own role may force (functions/permissions.sql).  Only the site's
role may load (people and blades cannot write these tables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ..crews import Crews


def store(conn: "psycopg.Connection", crews: "Crews") -> tuple[int, int]:
    """Replace the database's crews with `crews` (one transaction); (crews, [force] rules) stored."""
    with conn.transaction():
        conn.execute(queries.get("crews_clear"))
        if not crews.configured:
            return 0, 0
        row = conn.execute(queries.get("crews_store"), {
            "path": str(crews.path),
            "crews": Jsonb({name: sorted(users) for name, users in crews.crews.items()}),
            "force": Jsonb({who: list(targets) for who, targets in crews.force.items()}),
        }).fetchone()
    return row["crews"], row["rules"]


def load(conn: "psycopg.Connection", config_dir) -> str:
    """Load the site's crews.toml (ConfigError if it is bad: the database keeps what it had);
    a line saying what was loaded."""
    from ..crews import load_crews

    crews = load_crews(config_dir)
    n, rules = store(conn, crews)
    if not crews.configured:
        return "no crews.toml: only the site owner may force on others' jobs"
    return f"{crews.path}: {n} crew(s), {rules} [force] rule(s)"


__all__ = ["load", "store"]
