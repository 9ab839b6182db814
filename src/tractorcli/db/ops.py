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
from .command_attrs import COMMAND_ATTR_ALIASES, COMMAND_ATTRS, LIST_KINDS

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
    """The job starts over: tasks made by expand commands are detached, every
    other task starts over (active ones are stopped first); the attached tids.
    One transaction (`tractor_job_restart_v1`, migration 0006)."""
    return conn.execute(queries.get("job_restart"), {"jid": jid}).fetchone()["tids"]


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


# --- command operations (tq chkeys, tq cattr) ---------------------------------------
#
# Edits of a command's launch attributes: they apply to its next launch (a
# running command keeps what it was launched with).  A command waiting in
# the ready queue has its queue row re-pointed at the new service
# expression in the same transaction, so blades match the new one.

# cattr: attribute -> kind of value.  "argv": a Tcl list for -v; "list": text
# items, comma-separated; "ints": integers; "service": a service key
# expression (as chkeys); "secs": seconds (empty: no bound); "slots": a
# positive integer (empty: the default); "bool"; "text".
_LOCK_TIMEOUT = "250ms"  # below PostgreSQL's deadlock_timeout (1 s): in a lock cycle we give way first
_LOCK_ATTEMPTS = 40


def command_attr(key: str) -> tuple[str, str]:
    """(canonical name, kind) of a cattr attribute; BadInput naming the valid ones."""
    from ..errors import BadInput

    name = COMMAND_ATTR_ALIASES.get(key, key)
    if name not in COMMAND_ATTRS:
        raise BadInput(f"cattr cannot set {key!r}", hint=f"settable: {', '.join(COMMAND_ATTRS)}")
    return name, COMMAND_ATTRS[name]


def check_service(text: str, option: str) -> str:
    """`text` if it is a valid service key expression (stripped), else BadInput naming
    `option` and the column."""
    from ..errors import BadInput
    from ..service import ServiceExprError, parse

    try:
        parse(text)
    except ServiceExprError as exc:
        # one line: the reason may quote a pattern with a newline in it
        reason = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in exc.reason)
        raise BadInput(f"{option} {text!r}: column {exc.column}: {reason}", hint=exc.hint) from None
    return text.strip()


def command_items(key: str, text: str) -> list:
    """The comma-separated items of -a/-r (or -v of a list attribute other than argv)."""
    from ..errors import BadInput

    name, kind = command_attr(key)
    items = [p.strip() for p in text.split(",") if p.strip()]
    if kind == "ints":
        try:
            return [int(x) for p in items for x in p.split()]
        except ValueError:
            raise BadInput(f"{name} takes integers, not {text!r}") from None
    return items


def command_value(key: str, text: str, option: str = "-v/--value"):
    """The value of `cattr -k key -v text`, of the attribute's kind (BadInput if it is not one)."""
    from ..errors import BadInput

    name, kind = command_attr(key)
    if kind == "argv":
        from ..jobs.tcl import TclError, split_list

        try:
            argv = split_list(text)
        except TclError as exc:
            raise BadInput(f"argv {text!r}: {exc.bare}") from None
        if not argv:
            raise BadInput("argv cannot be empty")
        return argv
    if kind in ("list", "ints"):
        return command_items(name, text)
    if kind == "service":
        return check_service(text, option)
    if kind == "text":
        return text
    t = text.strip()
    if kind == "bool":
        low = t.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise BadInput(f"{name} takes 1 or 0 (true/false), not {text!r}")
    if not t:
        return None  # secs, slots: no bound / the default
    try:
        if kind == "secs":
            v = float(t)
            if not 0 <= v < float("inf"):  # also NaN
                raise ValueError
            return v
        v = int(t)
        if v < 1:
            raise ValueError
        return v
    except ValueError:
        what = "a number of seconds (0 or more)" if kind == "secs" else "a whole number of slots (1 or more)"
        raise BadInput(f"{name} takes {what}, or '' for none; not {text!r}") from None


def _with_locks(conn, fn, what: str):
    """Run `fn()` in one transaction whose lock waits are short: in a lock cycle
    with a blade's claim or a task operation this one gives way (rolled back)
    and is tried again, so nothing waits for the deadlock detector."""
    import time

    import psycopg.errors as pe

    from ..errors import StateError

    for attempt in range(_LOCK_ATTEMPTS):
        try:
            with conn.transaction():
                conn.execute(queries.get("tq_lock_timeout"), {"timeout": _LOCK_TIMEOUT})
                return fn()
        except (pe.LockNotAvailable, pe.DeadlockDetected):
            time.sleep(min(0.02 * (attempt + 1), 0.25))
    raise StateError(f"{what} stays locked by other transactions", hint="try again")


def set_command_service(conn, jid: int, cid: int, service: str) -> int | None:
    """chkeys: the command's own service expression (already checked); returns the
    svcid of its new effective expression (command AND job -service AND NOT
    -avoid, as spooled), None if there is no such command.

    One transaction: the command's queue row (if it is ready) and the command
    are locked in that order, as a blade's claim takes them; the expression
    is stored once (service_exprs) and added to the job's svcids (claims pick
    jobs by them; an svcid no longer used stays listed, which costs a claim
    one index probe); a queue row is re-pointed, also one queued while we
    waited for the command's lock; blades are woken.
    """
    from ..service import combine

    def run():
        conn.execute(queries.get("tq_command_ready_lock"), {"jid": jid, "cid": cid}).fetchall()
        info = conn.execute(queries.get("tq_command_service_info"), {"jid": jid, "cid": cid}).fetchone()
        if info is None:
            return None
        expr = combine(service, info["job_service"] or "", tuple(info["avoid"] or ()))
        conn.execute(queries.get("spool_add_service_exprs"), {"exprs": [expr]})
        svcid = conn.execute(queries.get("spool_service_ids"), {"exprs": [expr]}).fetchone()["svcid"]
        conn.execute(queries.get("tq_command_service"), {"jid": jid, "cid": cid, "service": service,
                                                         "svcid": svcid})
        if conn.execute(queries.get("tq_command_ready_service"), {"jid": jid, "cid": cid, "svcid": svcid}
                        ).fetchall():
            conn.execute(queries.get("spool_notify"), {"jid": jid})
        return svcid

    return _with_locks(conn, run, f"command {jid} {cid}")


def command_lists(conn, jid: int, cid: int) -> dict:
    """argv, tags, envkey, retryrcodes of a command; {} if there is none."""
    row = conn.execute(queries.get("tq_command_lists"), {"jid": jid, "cid": cid}).fetchone()
    return dict(row) if row else {}


def set_command_attr(conn, jid: int, cid: int, key: str, value=None, *, add=(), remove=()) -> bool:
    """cattr: set `key` to `value` (of its kind: command_value), or, for a list
    attribute, add the items of `add` not there yet (argv: appended as given)
    and remove every occurrence of those of `remove`.  service goes through
    set_command_service.  One transaction; False if there is no such command."""
    from ..errors import BadInput

    name, kind = command_attr(key)
    if kind == "service":
        return set_command_service(conn, jid, cid, value) is not None

    def run():
        new = value
        if kind in LIST_KINDS and (add or remove):
            cur = command_lists(conn, jid, cid)
            if not cur:
                return False
            new = list(cur[name])
            new += [x for x in add if kind == "argv" or x not in new]
            new = [x for x in new if x not in remove]
            if kind == "argv" and not new:
                raise BadInput("argv cannot be empty")
        params = {"jid": jid, "cid": cid, "key": name, "list": None, "ints": None, "text": None, "secs": None,
                  "slots": None, "bool": None}
        params["list" if kind == "argv" else kind] = new
        return conn.execute(queries.get("tq_command_attr"), params).fetchone() is not None

    return _with_locks(conn, run, f"command {jid} {cid}")
