"""The operations people run on jobs, tasks, commands and blades (tq, tractor.api.query).

Each is one call of a function of db/sql/functions/operations.sql, which
checks in the database who may (permissions.sql) and then acts, in one
transaction.  A refusal is PostgreSQL's error (insufficient_privilege) with
the words tq and the API print.  `actor` says for whom: the user the site's
own role acts as (a person's role always acts as itself) and whether force
(tq --force) was given.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from . import queries
from .command_attrs import COMMAND_ATTR_ALIASES, COMMAND_ATTRS, LIST_KINDS

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

# jattr: attribute -> kind of value ("text", "int", "list", "ints"); priority goes through chpri
JOB_ATTRS = {"title": "text", "comment": "text", "metadata": "text", "tier": "text", "maxactive": "int", "tags": "list",
             "projects": "list", "envkey": "list", "crews": "list", "afterjids": "ints", "priority": "float"}


@dataclass(frozen=True)
class Actor:
    """For whom an operation is: `user` (None: the logged-in role) and `force`."""

    user: str | None = None
    force: bool = True


SITE = Actor()  # the library's default: the logged-in role, with force


def refusals(conn: psycopg.Connection, jids: Iterable[int], actor: Actor = SITE) -> dict[int, str]:
    """{jid: why not} for the jobs `actor` may not operate on, as the database decides."""
    rows = conn.execute(queries.get("op_refusals"), {"jids": sorted(set(jids)), "force": actor.force,
                                                     "user": actor.user})
    return {r["jid"]: r["why"] for r in rows}


def tids(conn: psycopg.Connection, jid: int, states: Sequence[str] | None = None) -> list[int]:
    return conn.execute(queries.get("tq_job_tasks"), {"jid": jid, "states": list(states) if states else None}
                        ).fetchone()["tids"]


def _set(conn, jid: int, key: str, value: Any, actor: Actor) -> bool:
    return conn.execute(queries.get("op_job_set"), {"jid": jid, "key": key, "value": Jsonb(value),
                                                   "force": actor.force, "user": actor.user}).fetchone()["found"]


def _tasks_of(conn, jid: int, op: str, actor: Actor) -> list[int]:
    return conn.execute(queries.get("op_job_tasks"), {"jid": jid, "op": op, "force": actor.force,
                                                     "user": actor.user}).fetchone()["tids"]


def pause(conn, jid: int, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "paused", True, actor)


def unpause(conn, jid: int, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "paused", False, actor)


def interrupt(conn, jid: int, actor: Actor = SITE) -> list[int]:
    """Kill the job's active tasks (left in error) and pause it."""
    return _tasks_of(conn, jid, "interrupt", actor)


def restart(conn, jid: int, actor: Actor = SITE) -> list[int]:
    """The job starts over: tasks made by expand commands are detached, every
    other task starts over (active ones are stopped first); the attached tids."""
    return _tasks_of(conn, jid, "restart", actor)


def retry_errors(conn, jid: int, actor: Actor = SITE) -> list[int]:
    return _tasks_of(conn, jid, "retryerrors", actor)


def retry_active(conn, jid: int, actor: Actor = SITE) -> list[int]:
    return _tasks_of(conn, jid, "retryactive", actor)


def skip_errors(conn, jid: int, actor: Actor = SITE) -> list[int]:
    return _tasks_of(conn, jid, "skiperrors", actor)


def delete(conn, jid: int, actor: Actor = SITE) -> list[int]:
    """Archive the job; its active tasks are stopped (left in error)."""
    return _tasks_of(conn, jid, "delete", actor)


def undelete(conn, jid: int, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "deleted", False, actor)


def set_priority(conn, jid: int, priority: float, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "priority", float(priority), actor)


def set_aftertime(conn, jid: int, when: dt.datetime | None, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "aftertime", when.isoformat() if when else None, actor)


def lock(conn, jid: int, note: str, actor: Actor = SITE) -> bool:
    """The lock's owner is the acting user."""
    return _set(conn, jid, "lock", note, actor)


def unlock(conn, jid: int, actor: Actor = SITE) -> bool:
    return _set(conn, jid, "unlock", None, actor)


def set_crews(conn, jid: int, crews: Sequence[str], actor: Actor = SITE) -> bool:
    return _set(conn, jid, "crews", list(crews), actor)


def set_attr(conn, jid: int, key: str, value, actor: Actor = SITE) -> bool:
    """jattr: `value` already of the attribute's kind (JOB_ATTRS)."""
    if JOB_ATTRS[key] == "float":
        return set_priority(conn, jid, value, actor)
    return _set(conn, jid, key, list(value) if JOB_ATTRS[key] in ("list", "ints") else value, actor)


def lists(conn, jid: int) -> dict:
    """The list attributes of a job (tags, projects, envkey, crews, afterjids); {} if no such job."""
    row = conn.execute(queries.get("tq_job_lists"), {"jid": jid}).fetchone()
    return dict(row) if row else {}


def script(conn, jid: int) -> str | None:
    row = conn.execute(queries.get("tq_job_script"), {"jid": jid}).fetchone()
    return row["script"] if row else None


def tasks(conn, op: str, pairs: Iterable[tuple[int, int]], actor: Actor = SITE, *,
          recover: bool = False) -> list[tuple[int, int]]:
    """tq retry (resume: recover), skip, kill of (jid, tid) pairs of any jobs, in one statement;
    the pairs acted on (retry: also what depends on them)."""
    pairs = sorted(set(pairs))
    if not pairs:
        return []
    rows = conn.execute(queries.get("op_tasks"), {"op": op, "jids": [j for j, _ in pairs],
                                                 "tids": [t for _, t in pairs], "recover": recover,
                                                 "force": actor.force, "user": actor.user})
    return [(r["jid"], r["tid"]) for r in rows]


def _blade(conn, bladeid: uuid.UUID, key: str, value: str | None, actor: Actor) -> bool:
    return conn.execute(queries.get("op_blade_set"), {"bladeid": bladeid, "key": key, "value": value,
                                                     "user": actor.user}).fetchone()["name"] is not None


def set_nimby(conn, bladeid: uuid.UUID, nimby: str, actor: Actor = SITE) -> bool:
    """'' open, '1' only local jobs, else the one user whose jobs it takes."""
    return _blade(conn, bladeid, "nimby", nimby, actor)


def delist(conn, bladeid: uuid.UUID, actor: Actor = SITE) -> bool:
    return _blade(conn, bladeid, "delist", None, actor)


def eject(conn, bladeid: uuid.UUID, actor: Actor = SITE) -> list[tuple[int, int]]:
    """Retry the tasks the blade runs now; (jid, tid) of those."""
    rows = conn.execute(queries.get("op_blade_eject"), {"bladeid": bladeid, "user": actor.user})
    return [(r["jid"], r["tid"]) for r in rows]


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


def set_command_service(conn, jid: int, cid: int, service: str, actor: Actor = SITE) -> int | None:
    """chkeys: the command's own service expression (already checked); returns the
    svcid of its new effective expression (command AND job -service AND NOT
    -avoid, as spooled), None if there is no such command.  The database locks
    the command's queue row and the command, as a blade's claim does, stores
    the expression and re-points the queue row (tractor_command_service_v1)."""
    from ..service import combine

    job = conn.execute(queries.get("tq_command_job_service"), {"jid": jid, "cid": cid}).fetchone()
    if job is None:
        return None
    expr = combine(service, job["job_service"] or "", tuple(job["avoid"] or ()))
    return _with_locks(conn, lambda: conn.execute(queries.get("op_command_service"), {
        "jid": jid, "cid": cid, "service": service, "expr": expr, "force": actor.force, "user": actor.user,
    }).fetchone()["svcid"], f"command {jid} {cid}")


def command_lists(conn, jid: int, cid: int) -> dict:
    """argv, tags, envkey, retryrcodes of a command; {} if there is none."""
    row = conn.execute(queries.get("tq_command_lists"), {"jid": jid, "cid": cid}).fetchone()
    return dict(row) if row else {}


def set_command_attr(conn, jid: int, cid: int, key: str, value=None, *, add=(), remove=(),
                     actor: Actor = SITE) -> bool:
    """cattr: set `key` to `value` (of its kind: command_value), or, for a list
    attribute, add the items of `add` not there yet (argv: appended as given)
    and remove every occurrence of those of `remove` (in the database, on the
    locked row).  service goes through set_command_service.  False if there
    is no such command."""
    name, kind = command_attr(key)
    if kind == "service":
        return set_command_service(conn, jid, cid, value, actor) is not None
    editing = kind in LIST_KINDS and bool(add or remove)
    if kind in LIST_KINDS and not editing:
        value = [str(v) for v in value]
    params = {"jid": jid, "cid": cid, "key": name, "value": Jsonb(None if editing else value),
              "add": Jsonb([str(v) for v in add]) if editing else None,
              "remove": Jsonb([str(v) for v in remove]) if editing else None,
              "force": actor.force, "user": actor.user}
    return _with_locks(conn, lambda: conn.execute(queries.get("op_command_set"), params).fetchone()["found"],
                       f"command {jid} {cid}")
