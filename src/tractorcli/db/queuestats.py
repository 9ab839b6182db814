"""`tq queuestats`: the farm's queue statistics, from the job database.

`queue_stats(conn)` returns a nested dict (the `--json` form); `flat(stats)`
the ``name value`` pairs of the plain form, with stable names:

=========================  ==================================================
``jobs.total``             every job, archived (deleted) ones included
``jobs.live``              running or waiting to run (none of the below)
``jobs.postscript``        running their -cleanup / -postscript commands
``jobs.paused``            paused (not finished)
``jobs.delayed``           -after time in the future (not paused, not finished)
``jobs.finished``          finished, not deleted
``jobs.deleted``           deleted (archived)
``tasks.STATE``            tasks by state (blocked ready active error done) of
                           the jobs that are not deleted (their counters)
``ready.commands``         the ready queue: commands waiting for a blade
``ready.held``             ... of them in paused, delayed or deleted jobs
``ready.oldest_wait_secs`` how long the oldest has waited (0: queue empty)
``ready.service[EXPR]``    the ready queue per service expression (``[]``: none)
``active.commands``        commands running now (current invocations)
``active.slots``           the slots they hold
``blades.registered``      registered blades (tq blades)
``blades.up``              ... heard from within 6 minutes and not down
``blades.nimby``           ... with NIMBY set
``slots.total``            slots of the up blades
``slots.in_use``           ... in use
``slots.free``             ... free
=========================  ==================================================

Each job counts once, in the first of deleted, finished, paused, delayed,
postscript, live.  The value is always the last word of a line (an
expression may contain spaces).  Read-only, two queries.  No click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import queries
from .explain import UP_SECS

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["queue_stats", "flat"]


def queue_stats(conn: "psycopg.Connection") -> dict[str, Any]:
    r = conn.execute(queries.get("queuestats"), {"up": UP_SECS}).fetchone()
    services = conn.execute(queries.get("queuestats_services")).fetchall()
    i = int
    return {
        "jobs": {k: i(r[k]) for k in ("total", "live", "postscript", "paused", "delayed", "finished", "deleted")},
        "tasks": {k: i(r[f"t_{k}"]) for k in ("blocked", "ready", "active", "error", "done")},
        "ready": {
            "commands": i(r["r_commands"]),
            "held": i(r["r_held"]),
            "oldest_wait_secs": round(float(r["r_oldest"] or 0), 1),
            "services": [{"svcid": s["svcid"], "service": s["expr"], "commands": i(s["commands"])}
                         for s in services],
        },
        "active": {"commands": i(r["a_commands"]), "slots": i(r["a_slots"])},
        "blades": {"registered": i(r["b_registered"]), "up": i(r["b_up"]), "nimby": i(r["b_nimby"])},
        "slots": {"total": i(r["s_total"]), "in_use": i(r["s_inuse"]),
                  "free": max(i(r["s_total"]) - i(r["s_inuse"]), 0)},
    }


def flat(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    """The plain form: (name, value) in a fixed order."""
    out: list[tuple[str, Any]] = []
    for group, values in stats.items():
        for key, value in values.items():
            if key == "services":
                out += [(f"{group}.service[{s['service']}]", s["commands"]) for s in value]
            else:
                out.append((f"{group}.{key}", value))
    return out
