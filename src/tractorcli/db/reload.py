"""`tq reloadconfig`: ask the running engine and blades to re-read their configuration.

The request is a generation counter per part in `params` (`reload-tractor`,
`reload-blade`): tq adds one; `tractor-engine` reads its part at every
housekeeping pass, each `tractor-blade` at every heartbeat, and reloads
when the number differs from the one it saw last (at its start).

Why a counter in `params` and not a NOTIFY: a notification reaches only
the sessions listening at that moment, so an engine or blade that is
reconnecting (or restarting) would miss it; the row stays, is read in the
same small round trips the engine and blades already make, and is visible
with `tq params`.  A change is noticed within one housekeeping interval
(engine) or heartbeat (blade).

Parts: ``tractor`` (tractor.toml: the engine writes CmdAutoRetryAttempts,
CmdRetryrcRetryAttempts and BladeLeaseSecs into params again), ``blade``
(blade.toml: each blade picks its profile again and updates its keys, slots,
NIMBY and zone in place, keeping what it runs), ``crews`` (tq loads the
site's crews.toml into the database itself: db/crews.py), ``limits`` (tq loads
limits.toml into the database itself: db/limits.py; the next claim obeys it).
No click here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["PARTS", "SIGNALLED", "NOTES", "param_name", "request", "generation"]

PARTS = ("tractor", "blade", "crews", "limits")  # tq reloadconfig's flags, in output order
SIGNALLED = ("tractor", "blade")  # the parts a running process reloads
NOTES: dict[str, str] = {}


def param_name(part: str) -> str:
    if part not in SIGNALLED:
        raise ValueError(f"no reload for {part!r}")
    return f"reload-{part}"


def request(conn: "psycopg.Connection", parts) -> dict[str, int]:
    """Add one to the reload generation of each part in `parts` that a process reloads;
    {part: new generation}."""
    out: dict[str, int] = {}
    for part in parts:
        if part in SIGNALLED:
            row = conn.execute(queries.get("reload_request"), {"name": param_name(part)}).fetchone()
            out[part] = int(row["value"])
            if part == "blade":  # the blades heartbeat now, and read it (at its commit)
                conn.execute(queries.get("blades_check"))
    return out


def generation(conn: "psycopg.Connection", part: str) -> str:
    """The current reload generation of `part` ('0' before the first request)."""
    return conn.execute(queries.get("reload_generation"), {"name": param_name(part)}).fetchone()["value"]
