"""limits.toml in the job database, where the claim reads it; and what each limit has in use.

`tractor-dbctl --start-for-engine` (so every engine start) and `tq
reloadconfig --limits` load the file: the next claim of every blade obeys it
(running commands go on; a limit lowered below its use lets nothing new
start until enough have ended).  A site without limits.toml has no limits.
Only the site's role may load (people and blades cannot write these tables).

`usage(conn)` is `tq limits`: each limit with what is in use now, counted
from the running invocations as the claim counts (functions/limits.sql), and
who holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ..limits import Limits

__all__ = ["holders", "load", "names", "refusals", "store", "usage"]


def store(conn: "psycopg.Connection", limits: "Limits") -> int:
    """Replace the database's limits with `limits` (one transaction); the number stored."""
    with conn.transaction():
        conn.execute(queries.get("limits_clear"))
        if not limits.configured:
            return 0
        conn.execute(queries.get("limits_file_store"), {"path": str(limits.path)})
        with conn.cursor() as cur:
            cur.executemany(queries.get("limits_store"), [{
                "name": lim.name, "sitemax": lim.sitemax, "sitecounting": lim.sitecounting,
                "ownermax": lim.ownermax, "ownerexceptions": Jsonb(lim.ownerexceptions),
                "blademax": lim.blademax, "bladeexceptions": Jsonb(lim.bladeexceptions),
                "projectshares": Jsonb(lim.projectshares), "crewshares": Jsonb(lim.crewshares),
                "description": lim.description} for lim in limits.limits])
    return len(limits.limits)


def load(conn: "psycopg.Connection", config_dir) -> str:
    """Load the site's limits.toml (ConfigError if it is bad: the database keeps what it had);
    a line saying what was loaded."""
    from ..limits import load_limits

    limits = load_limits(config_dir)
    n = store(conn, limits)
    if not limits.configured:
        return "no limits.toml: no limits"
    return f"{limits.path}: {n} limit(s)"


def usage(conn: "psycopg.Connection", names: list[str] | None = None) -> list[dict[str, Any]]:
    """Each limit (those named, or all) with its maxima and its use now: `inuse` (as SiteMax counts),
    `commands` (running), and `owners`, `blades`, `projects`: {name: running commands}."""
    rows = conn.execute(queries.get("limits_usage"), {"names": names}).fetchall()
    return [dict(r) for r in rows]


def names(conn: "psycopg.Connection") -> frozenset[str]:
    """The names of the site's limits."""
    return frozenset(conn.execute(queries.get("limit_names")).fetchone()["names"])


def refusals(conn: "psycopg.Connection", cases: list[tuple[int, int, Any]]) -> list[str | None]:
    """For each (jid, cid, bladeid): why its limits keep the command from starting on that blade now
    (the first full limit, as the claim says it), or None when they have room."""
    if not cases:
        return []
    rows = conn.execute(queries.get("limit_refusals"), {
        "ks": list(range(len(cases))), "jids": [c[0] for c in cases], "cids": [c[1] for c in cases],
        "bladeids": [c[2] for c in cases]}).fetchall()
    out: list[str | None] = [None] * len(cases)
    for r in rows:
        out[r["k"]] = r["refusal"]
    return out


def holders(conn: "psycopg.Connection", refusal: str) -> str:
    """Who holds the limit a refusal names ("limit NAME is full ..."): "held by bob 3, carol 1"."""
    name = refusal.split()[1] if refusal.startswith("limit ") else None
    rows = usage(conn, [name]) if name else []
    if not rows or not rows[0]["owners"]:
        return "held by nobody now"
    owners = sorted(rows[0]["owners"].items(), key=lambda kv: (-kv[1], kv[0]))
    return "held by " + ", ".join(f"{o} {n}" for o, n in owners)
