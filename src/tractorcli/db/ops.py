"""tq's operations on jobs and blades (the task ones are in dispatch.py).

Each function is one short transaction on one job (or blade); where task
states change, the job is rescheduled (`tractor_reschedule_v1`).  No
permission checks here: tq checks ownership before calling.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import dispatch, queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

# jattr: attribute -> kind of value ("text", "int", "list", "ints"); priority goes through chpri
JOB_ATTRS = {"title": "text", "comment": "text", "metadata": "text", "maxactive": "int", "tags": "list",
             "projects": "list", "envkey": "list", "crews": "list", "afterjids": "ints", "priority": "float"}


def tids(conn: psycopg.Connection, jid: int, states: Sequence[str] | None = None) -> list[int]:
    return conn.execute(queries.get("tq_job_tasks"), {"jid": jid, "states": list(states) if states else None}
                        ).fetchone()["tids"]


def _one(conn, name: str, **params) -> bool:
    return conn.execute(queries.get(name), params).fetchone() is not None


def pause(conn, jid: int) -> bool:
    return _one(conn, "tq_job_pause", jid=jid)


def unpause(conn, jid: int) -> bool:
    return _one(conn, "tq_job_unpause", jid=jid)


def interrupt(conn, jid: int) -> list[int]:
    """Kill the job's active tasks (left in error) and pause it."""
    with conn.transaction():
        pause(conn, jid)
        active = tids(conn, jid, ["active"])
        return dispatch.kill(conn, jid, active) if active else []


def restart(conn, jid: int) -> list[int]:
    """Every task of the job starts over (active ones are stopped first)."""
    every = tids(conn, jid)
    return dispatch.retry(conn, jid, every) if every else []


def retry_errors(conn, jid: int) -> list[int]:
    errs = tids(conn, jid, ["error"])
    return dispatch.retry(conn, jid, errs) if errs else []


def skip_errors(conn, jid: int) -> list[int]:
    errs = tids(conn, jid, ["error"])
    return dispatch.skip(conn, jid, errs) if errs else []


def delete(conn, jid: int) -> list[int]:
    """Archive the job; its active tasks are stopped (left in error)."""
    with conn.transaction():
        active = tids(conn, jid, ["active"])
        killed = dispatch.kill(conn, jid, active) if active else []
        _one(conn, "tq_job_delete", jid=jid)
        return killed


def undelete(conn, jid: int) -> bool:
    return _one(conn, "tq_job_undelete", jid=jid)


def set_priority(conn, jid: int, priority: float) -> None:
    conn.execute(queries.get("tq_job_priority"), {"jid": jid, "priority": float(priority)})


def set_aftertime(conn, jid: int, when: dt.datetime | None) -> bool:
    return _one(conn, "tq_job_aftertime", jid=jid, aftertime=when)


def lock(conn, jid: int, owner: str, note: str) -> bool:
    return _one(conn, "tq_job_lock", jid=jid, owner=owner, note=note)


def unlock(conn, jid: int) -> bool:
    return _one(conn, "tq_job_unlock", jid=jid)


def set_crews(conn, jid: int, crews: Sequence[str]) -> bool:
    return _one(conn, "tq_job_crews", jid=jid, crews=list(crews))


def set_attr(conn, jid: int, key: str, value) -> bool:
    """jattr: `value` already of the attribute's kind (JOB_ATTRS)."""
    kind = JOB_ATTRS[key]
    if kind == "float":
        set_priority(conn, jid, value)
        return True
    params = {"jid": jid, "key": key, "text": None, "int": None, "list": None, "ints": None}
    params[kind] = value
    return _one(conn, "tq_job_attr", **params)


def lists(conn, jid: int) -> dict:
    """The list attributes of a job (tags, projects, envkey, crews, afterjids); {} if no such job."""
    row = conn.execute(queries.get("tq_job_lists"), {"jid": jid}).fetchone()
    return dict(row) if row else {}


def script(conn, jid: int) -> str | None:
    row = conn.execute(queries.get("tq_job_script"), {"jid": jid}).fetchone()
    return row["script"] if row else None


def set_nimby(conn, bladeid: uuid.UUID, nimby: str) -> bool:
    """'' open, '1' only local jobs, else the one user whose jobs it takes."""
    return _one(conn, "tq_blade_nimby", bladeid=bladeid, nimby=nimby)


def delist(conn, bladeid: uuid.UUID) -> bool:
    return _one(conn, "tq_blade_delist", bladeid=bladeid)


def eject(conn, bladeid: uuid.UUID) -> list[tuple[int, int]]:
    """Retry the tasks the blade runs now; (jid, tid) of those."""
    running = [(r["jid"], r["tid"]) for r in conn.execute(queries.get("tq_blade_running"), {"bladeid": bladeid})]
    by_job: dict[int, list[int]] = {}
    for jid, tid in running:
        by_job.setdefault(jid, []).append(tid)
    for jid, ts in by_job.items():
        dispatch.retry(conn, jid, ts)
    return running
