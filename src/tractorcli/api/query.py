"""Query and operate on the job database from Python, like Tractor's `tractor.api.query`.

    import tractorcli.api.query as tq

    tq.setEngineClientParam(configdir="/farm/config", user="ann")
    for job in tq.jobs("mine and error", columns=["jid", "title"], sortby=["-priority"]):
        tq.retryerrors(job)
    tq.retry("jid=12 and tid=4")

The same search clauses as the `tq` program (`tq help queries`); the same
function and argument names as Tractor's module.  Listings return lists of
dicts keyed by the attribute names asked for (joined ones as ``"Job.owner"``);
``columns=[]`` gives every attribute of the entity.  Operations take a
clause, a dict (with ``jid``; tasks also ``tid``; commands also ``cid``;
blades ``name`` and ``ipaddr``), or a list of such dicts (the result of a
listing), and return the targets they acted on (`log`, `jobdump` and `trace`
return texts).  Command operations: `cattr` (also ``add=``/``remove=`` on
list attributes, as ``tq cattr -a/-r``) and `chkeys`; `retry`/`resume` reset
the tasks of all the jobs targeted in one statement.

Where this differs from Tractor (the database is the engine here):

* the connection is the site's job database: `setEngineClientParam` takes
  ``configdir=`` (else ``$TRACTOR_CONFIGDIR``, else the default site) or
  ``settings=``; ``hostname``, ``port``, ``password``, ``debug``,
  ``sessionFilename`` and ``newSession`` are accepted and ignored;
* ``user`` (default ``$USER``) is who ``mine`` means and who owns what is
  operated on: operations on another user's job raise `TractorQueryError`
  and change nothing, unless ``setEngineClientParam(force=True)`` (as
  ``tq --force``) and the site's ``crews.toml``, if it has one, allows it
  (`tractorcli.crews`);
* ``limit=None`` or ``0``: no limit;
* `trace` texts are what ``tq trace`` prints for each blade (``NAME: ...``
  lines ending in newlines); ``trace(search, limit=N)`` traces the first N
  ready commands (default 20, ``0`` all).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "InvalidValue",
    "MissingParameter",
    "MissingSearchClause",
    "MissingTargetKey",
    "PasswordRequired",
    "SortNotAllowed",
    "TractorQueryError",
    "blades",
    "cattr",
    "chcrews",
    "chkeys",
    "chpri",
    "closeEngineClient",
    "commands",
    "delay",
    "delete",
    "delist",
    "eject",
    "interrupt",
    "invocations",
    "jattr",
    "jobdump",
    "jobs",
    "limits",
    "kill",
    "lock",
    "log",
    "needsPassword",
    "nimby",
    "notes",
    "params",
    "pause",
    "restart",
    "resume",
    "retry",
    "retryactive",
    "retryerrors",
    "setEngineClientParam",
    "skip",
    "skiperrors",
    "tasks",
    "trace",
    "undelay",
    "undelete",
    "unlock",
    "unnimby",
    "unpause",
]


class TractorQueryError(Exception):
    """Base of the errors of this module."""


class PasswordRequired(TractorQueryError):
    pass


class InvalidValue(TractorQueryError):
    pass


class MissingSearchClause(TractorQueryError):
    pass


class MissingParameter(TractorQueryError):
    pass


class MissingTargetKey(TractorQueryError):
    pass


class SortNotAllowed(TractorQueryError):
    pass


# --- the client ----------------------------------------------------------------------------
# One client for this module, tractorcli.jobs.author and the `tractor` package
# (tractorcli.api.client): a user or site set through one is what the others use.


def _client():
    from .client import ModuleEngineClient

    return ModuleEngineClient


def setEngineClientParam(hostname: str | None = None, port: int | None = None, user: str | None = None,
                         password: str | None = None, debug: bool | None = None,
                         sessionFilename: str | None = None, newSession: bool | None = None,
                         **kw: Any) -> None:
    """Set parameters of the one engine client (tractorcli.api.client): the engine address (`hostname`,
    `port`), the `user`, the `password`; tractorcli's own `configdir=`, `settings=` and `force=`.  Only
    those given change; a change of site, address or password closes the current connection.  An unknown
    parameter raises `InvalidParamError`."""
    _client().setParam(hostname=hostname, port=port, user=user, password=password, debug=debug,
                       sessionFilename=sessionFilename, newSession=newSession, **kw)


def closeEngineClient() -> None:
    """Close the connection to the job database (the next call opens a new one)."""
    _client().close()


def needsPassword() -> bool:
    """Whether the job database asks for a password that has not been given."""
    return _client().needsPassword()


def _user() -> str:
    return _client().owner()


def _force() -> bool:
    return _client().force


def _actor():
    """For whom operations are: the client's user (the site's role acts for it; a person's role is
    always itself) and its force setting; the database decides with these (db/ops.py)."""
    return _ops().Actor(user=_user(), force=_force())


def _connection():
    """The client's connection; a database that wants a password raises PasswordRequired, one that
    cannot be reached TractorQueryError (what Tractor's code catches), with the project's error as cause."""
    from ..errors import PermissionDenied, TractorError

    try:
        return _client().connection()
    except PermissionDenied as exc:
        if "password" in str(exc):
            raise PasswordRequired(f"{exc} (setEngineClientParam(password=...) or $TRACTOR_PASSWORD)") from exc
        raise TractorQueryError(str(exc)) from exc
    except TractorError as exc:
        raise TractorQueryError(str(exc)) from exc


# --- listings ---------------------------------------------------------------------------


def _sort_keys(sortby: Any) -> list[str]:
    """`["-priority", "spooltime"]`, or Tractor's `[["spooltime", -1]]` pairs (-1 descending)."""
    if isinstance(sortby, str):
        return [sortby]
    out = []
    for key in sortby or ():
        if isinstance(key, str):
            out.append(key)
        elif (isinstance(key, (list, tuple)) and len(key) == 2 and isinstance(key[0], str)
              and key[1] in (1, -1) and not isinstance(key[1], bool)):
            out.append(("-" if key[1] == -1 else "") + key[0])
        else:
            raise InvalidValue(f"sortby: {key!r} is neither a name ('-name' descending) nor a [name, 1|-1] pair")
    return out


# Tractor keeps these blade figures in a table of their own (BladeUse): a row
# of a listing carries them only when asked, keyed "BladeUse.<name>"
_OTHER_TABLE_VIEWS = ("BladeUse",)


def _full_columns(entity: str, columns: Iterable[str]) -> list[str]:
    """Tractor's row: the entity's own attributes, then the columns asked of other entities (or
    BladeUse), spelled by their qualified names (the keys of the row)."""
    from ..errors import BadInput
    from ..query import ENTITIES, resolve_column

    e = ENTITIES[entity]
    elsewhere = {a: f"{view}.{name}" for view in _OTHER_TABLE_VIEWS for name, a in e.views.get(view, {}).items()}
    out = [a for a in e.attrs if a not in elsewhere]
    own = set(out)
    for c in columns:
        if not isinstance(c, str):
            raise InvalidValue(f"columns: {c!r} is not an attribute name")
        try:
            a = resolve_column(entity, c.strip())
        except BadInput as exc:
            raise InvalidValue(str(exc)) from None
        if a.entity == entity:
            key = elsewhere.get(a.name, a.name)
        else:
            key = a.qualified
        if key not in own:
            own.add(key)
            out.append(key)
    return out


def _select(entity: str, search: str, columns: Iterable[str], sortby: Any, limit: int | None,
            archive: bool, full: bool = False) -> list[dict]:
    import psycopg

    from ..errors import BadInput
    from ..query import ENTITIES, build_select, database_error

    if search is None or (isinstance(search, str) and not search.strip()):
        raise MissingSearchClause(f"a search clause is needed to list {ENTITIES[entity].plural}")
    clause = _listing_clause(entity, search)
    if clause is None:
        return []
    if isinstance(columns, str):
        columns = [columns]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidValue(f"limit must be a whole number (0: no limit), not {limit!r}")
    cols = _full_columns(entity, columns) if full else (list(columns) or list(ENTITIES[entity].attrs))
    try:
        q = build_select(entity, clause, columns=cols, sortby=_sort_keys(sortby), limit=limit or None,
                         archives=bool(archive), user=_user())
    except BadInput as exc:
        raise InvalidValue(str(exc)) from None
    try:
        return [dict(r) for r in _connection().execute(q.sql, q.params).fetchall()]
    except psycopg.Error as exc:
        bad = database_error(exc, clause)
        if bad is not None:
            raise InvalidValue(str(bad)) from None
        raise


def _lister(entity: str, doc: str) -> Callable[..., list[dict]]:
    def listing(search: str = "", columns: Iterable[str] = (), sortby: Iterable[Any] = (),
                limit: int | None = None, archive: bool = False, *, full: bool = False) -> list[dict]:
        return _select(entity, search, columns or (), sortby or (), limit, archive, full)

    listing.__doc__ = doc + FULL_DOC
    return listing


FULL_DOC = """

    `columns`: attribute names (aliases, and other entities' as ``"Job.owner"``), each a key of the
    rows as written; none: every attribute of the entity.  With ``full=True`` a row holds, as
    Tractor's do, every attribute of the entity and besides the columns asked of other entities
    keyed by qualified name (``"Job.title"``, ``"BladeUse.slotsinuse"``).  `sortby`: names, ``-name``
    descending, or ``[name, 1|-1]`` pairs.  `limit`: None or 0, no limit.
"""


jobs = _lister("job", "Jobs matching `search`, as dicts of `columns` (all when empty).")
tasks = _lister("task", "Tasks matching `search`, as dicts of `columns` (all when empty).")
commands = _lister("command", "Commands matching `search`, as dicts of `columns` (all when empty).")
invocations = _lister("invocation", "Invocations matching `search`, as dicts of `columns` (all when empty).")
blades = _lister("blade", "Registered blades (all with archive=True) matching `search`.")
params = _lister("param", "Site parameters matching `search`.")
notes = _lister("note", "Notes matching `search`.")
for _f, _n in ((jobs, "jobs"), (tasks, "tasks"), (commands, "commands"), (invocations, "invocations"),
               (blades, "blades"), (params, "params"), (notes, "notes")):
    _f.__name__ = _f.__qualname__ = _n


# --- targets of operations ------------------------------------------------------------------


def _items(search: Any) -> list[Mapping] | None:
    """The dicts given as targets, or None when `search` is a clause."""
    if isinstance(search, str):
        if not search.strip():
            raise MissingSearchClause("a search clause (or dicts with the target keys) is needed")
        return None
    if isinstance(search, Mapping):
        return [search]
    if isinstance(search, Iterable):
        out = list(search)
        if not all(isinstance(x, Mapping) for x in out):
            raise InvalidValue("targets must be a clause, a dict or a list of dicts")
        return out
    raise InvalidValue(f"targets must be a clause, a dict or a list of dicts, not {type(search).__name__}")


def _keys(items: list[Mapping], keys: tuple[str, ...]) -> list[tuple]:
    out = []
    for x in items:
        missing = [k for k in keys if k not in x]
        if missing:
            raise MissingTargetKey(f"target {dict(x)!r} lacks {', '.join(missing)}")
        try:
            out.append(tuple(int(x[k]) for k in keys))
        except (TypeError, ValueError):
            raise InvalidValue(f"target {dict(x)!r}: {', '.join(keys)} must be integers") from None
    return out


_IDS = {"job": ("jid",), "task": ("jid", "tid"), "command": ("jid", "cid")}


def _ids_clause(ids: tuple[str, ...], wanted: Iterable[tuple]) -> str:
    """A clause for the rows keyed (jid,) or (jid, tid|cid): one `in [...]` list per job."""
    by_job: dict[int, list[int]] = {}
    for key in wanted:
        by_job.setdefault(key[0], []).extend(key[1:])
    if len(ids) == 1:
        return f"jid in [{' '.join(str(j) for j in by_job)}]"
    return " or ".join(f"(jid={j} and {ids[1]} in [{' '.join(str(t) for t in ts)}])" for j, ts in by_job.items())


def _listing_clause(entity: str, search: Any) -> str | None:
    """A listing's search given as Tractor's code may give it: a clause, or result dicts (one, or a
    list) whose ids name the rows (jid; tid or cid when the entity has it); None: no rows."""
    items = _items(search)
    if items is None:
        return search
    from ..query import ENTITIES

    e = ENTITIES[entity]
    if "jid" not in e.attrs:
        raise InvalidValue(f"{e.plural} are searched by a clause, not by dicts")
    second = next((k for k in ("tid", "cid") if k in e.attrs and k in e.keys), None)
    whole: list[tuple] = []
    parts: list[tuple] = []
    for x in items:
        if second is not None and second in x:
            parts.extend(_keys([x], ("jid", second)))
        else:
            whole.extend(_keys([x], ("jid",)))
    clauses = []
    if whole:
        clauses.append(_ids_clause(("jid",), whole))
    if parts:
        clauses.append(_ids_clause(("jid", second), parts))
    return " or ".join(f"({c})" for c in clauses) or None


def _targets(entity: str, search: Any, *, archive: bool = False, reading: bool = False) -> list[dict]:
    """The rows (jid[, tid | cid], owner) an operation on jobs, tasks or commands acts on, checked for
    ownership (unless `reading`): another user's job needs force=True and crews.toml's leave."""
    owner = "owner" if entity == "job" else "Job.owner"
    ids = _IDS[entity]
    cols = [*ids, owner]
    sort = list(ids)
    items = _items(search)
    if items is None:
        rows = _select(entity, search, cols, sort, None, archive)
    else:
        wanted = _keys(items, ids)
        if not wanted:
            return []
        clause = _ids_clause(ids, wanted)
        rows = _select(entity, clause, cols, sort, None, archive)
    if not reading and rows:  # reading a log or a script needs no ownership
        refused = _ops().refusals(_connection(), {r["jid"] for r in rows}, _actor())
        if refused:
            jid = min(refused)
            whose = next(r[owner] for r in rows if r["jid"] == jid)
            raise TractorQueryError(f"job {jid} ({whose}'s), user {_user()}: {refused[jid]}")
    return [{**{k: r[k] for k in ids}, "owner": r[owner]} for r in rows]


# --- task operations ----------------------------------------------------------------------


def _operation(fn: Callable[[], Any]) -> Any:
    """Run one operation; the database's refusal (a job that changed hands, a blade operation)
    raises TractorQueryError with its words."""
    import psycopg.errors as pe

    try:
        return fn()
    except pe.InsufficientPrivilege as exc:
        raise TractorQueryError(exc.diag.message_primary or str(exc)) from None
    except pe.InvalidParameterValue as exc:  # e.g. an argv edited down to nothing
        raise InvalidValue(exc.diag.message_primary or str(exc)) from None


def _task_op(op: str, search: Any, *, recover: bool = False) -> list[dict]:
    """tq retry/skip/kill of the tasks of every job, in one statement."""
    rows = _targets("task", search)
    if rows:
        _operation(lambda: _ops().tasks(_connection(), op, [(r["jid"], r["tid"]) for r in rows], _actor(),
                                        recover=recover))
    return rows


def _retry(search: Any, recover: bool) -> list[dict]:
    return _task_op("retry", search, recover=recover)


def retry(search: Any) -> list[dict]:
    """Retry tasks (of any number of jobs, in one transaction): active ones are killed; they and the
    tasks depending on them start over."""
    return _retry(search, False)


def resume(search: Any) -> list[dict]:
    """Resume tasks: as retry, in recover mode (%r = 1)."""
    return _retry(search, True)


def skip(search: Any) -> list[dict]:
    """Mark tasks done without running them."""
    return _task_op("skip", search)


def kill(search: Any) -> list[dict]:
    """Kill the running commands of tasks; they are left in error."""
    return _task_op("kill", search)


def log(search: Any) -> dict[tuple[int, int], str]:
    """{(jid, tid): the task's output log} ('' when it has none).  Reading logs needs no ownership."""
    from ..blade.profile import default_profile

    rows = _targets("task", search, reading=True)
    profile = default_profile(_client().site().data_dir)
    out = {}
    for r in rows:
        path = profile.log_path(r["owner"], r["jid"], r["tid"])
        out[(r["jid"], r["tid"])] = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return out


# --- job operations ---------------------------------------------------------------------------


def _job_op(fn: Callable[[Any, int], Any], search: Any, *, archive: bool = False) -> list[dict]:
    rows = _targets("job", search, archive=archive)
    conn = _connection()
    for r in rows:
        _operation(lambda: fn(conn, r["jid"]))
    return rows


def _ops():
    from ..db import ops

    return ops


def pause(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().pause(c, j, _actor()), search)


def unpause(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().unpause(c, j, _actor()), search)


def interrupt(search: Any) -> list[dict]:
    """Kill the jobs' active tasks (left in error) and pause the jobs."""
    return _job_op(lambda c, j: _ops().interrupt(c, j, _actor()), search)


def restart(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().restart(c, j, _actor()), search)


def retryactive(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().retry_active(c, j, _actor()), search)


def retryerrors(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().retry_errors(c, j, _actor()), search)


def skiperrors(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().skip_errors(c, j, _actor()), search)


def delete(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().delete(c, j, _actor()), search)


def undelete(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().undelete(c, j, _actor()), search, archive=True)


def chpri(search: Any, priority: float | None = None) -> list[dict]:
    if priority is None:
        raise MissingParameter("chpri needs priority=")
    try:
        p = float(priority)
    except (TypeError, ValueError):
        raise InvalidValue(f"priority must be a number, not {priority!r}") from None
    return _job_op(lambda c, j: _ops().set_priority(c, j, p, _actor()), search)


def _list_value(value: Any) -> list[str]:
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    return [str(x) for x in value]


def chcrews(search: Any, crews: Iterable[str] | str | None = None) -> list[dict]:
    if crews is None:
        raise MissingParameter("chcrews needs crews=")
    new = _list_value(crews)
    return _job_op(lambda c, j: _ops().set_crews(c, j, new, _actor()), search)


def jattr(search: Any, key: str | None = None, value: Any = None) -> list[dict]:
    """Set a job attribute (title, comment, metadata, maxactive, priority, tags, projects, envkey, crews,
    afterjids); lists as a list or a comma-separated string."""
    if key is None or value is None:
        raise MissingParameter("jattr needs key= and value=")
    kind = _ops().JOB_ATTRS.get(key)
    if kind is None:
        raise InvalidValue(f"jattr cannot set {key!r} (settable: {', '.join(_ops().JOB_ATTRS)})")
    try:
        if kind == "list":
            v: Any = _list_value(value)
        elif kind == "ints":
            v = [int(x) for x in _list_value(value)]
        elif kind == "int":
            v = int(value)
        elif kind == "float":
            v = float(value)
        else:
            v = str(value)
    except (TypeError, ValueError):
        raise InvalidValue(f"{key} cannot be {value!r}") from None
    return _job_op(lambda c, j: _ops().set_attr(c, j, key, v, _actor()), search)


def lock(search: Any, note: str = "") -> list[dict]:
    return _job_op(lambda c, j: _ops().lock(c, j, note or "", _actor()), search)


def unlock(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().unlock(c, j, _actor()), search)


def _aftertime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        try:
            return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").astimezone()
        except ValueError:
            pass
    raise InvalidValue(f"aftertime must be a datetime, 'YYYY-MM-DD HH:MM:SS' or seconds since the epoch, "
                       f"not {value!r}")


def delay(search: Any, aftertime: Any = None) -> list[dict]:
    if aftertime is None:
        raise MissingParameter("delay needs aftertime=")
    when = _aftertime(aftertime)
    return _job_op(lambda c, j: _ops().set_aftertime(c, j, when, _actor()), search)


def undelay(search: Any) -> list[dict]:
    return _job_op(lambda c, j: _ops().set_aftertime(c, j, None, _actor()), search)


def jobdump(search: Any) -> dict[int, str]:
    """{jid: the job script as spooled}.  Reading needs no ownership."""
    rows = _targets("job", search, reading=True)
    conn = _connection()
    return {r["jid"]: _ops().script(conn, r["jid"]) or "" for r in rows}


# --- command operations -----------------------------------------------------------------------


def _invalid(exc: Exception) -> InvalidValue:
    """InvalidValue with the one-line message (and hint) of a core BadInput."""
    hint = getattr(exc, "hint", None)
    return InvalidValue(f"{exc} ({hint})" if hint else str(exc))


def _command_op(fn: Callable[[Any, int, int], Any], search: Any) -> list[dict]:
    from ..errors import BadInput, TractorError

    rows = _targets("command", search)
    conn = _connection()
    try:
        for r in rows:
            _operation(lambda: fn(conn, r["jid"], r["cid"]))
    except BadInput as exc:
        raise _invalid(exc) from None
    except TractorError as exc:  # e.g. a command that stays locked
        raise TractorQueryError(str(exc)) from None
    return rows


def _command_items(name: str, kind: str, value: Any, what: str) -> list:
    """Items of a list attribute: a str as tq's -a/-r/-v (argv: a Tcl list for value=, else
    comma-separated), or a list of items."""
    from ..errors import BadInput

    ops = _ops()
    if isinstance(value, str):
        try:
            return ops.command_value(name, value, what) if what == "value=" else ops.command_items(name, value)
        except BadInput as exc:
            raise _invalid(exc) from None
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise InvalidValue(f"{name} {what} must be a list or a string, not {type(value).__name__}")
    items = list(value)
    if kind == "ints":
        try:
            if any(isinstance(x, bool) for x in items):
                raise ValueError
            return [int(x) for x in items]
        except (TypeError, ValueError):
            raise InvalidValue(f"{name} takes integers, not {value!r}") from None
    if kind == "argv":
        out = [str(x) for x in items]
        if what == "value=" and not out:
            raise InvalidValue("argv cannot be empty")
        return out
    return [str(x).strip() for x in items if str(x).strip()]


def cattr(search: Any, key: str | None = None, value: Any = None, *, add: Any = None,
          remove: Any = None) -> list[dict]:
    """Set a command attribute for the commands' next launch, as `tq cattr`: argv (a list, or a str
    split as a Tcl list), tags, envkey, retryrcodes (lists, or comma-separated strs), service (as
    chkeys), msg, metadata, minrunsecs, maxrunsecs, minslots, maxslots ('' clears these bounds),
    resumepin.  A list attribute also takes add= and/or remove= instead of value= (argv: add appends;
    remove drops every occurrence).  Targets: a clause over commands, or dicts with jid and cid."""
    from ..errors import BadInput

    ops = _ops()
    if key is None:
        raise MissingParameter("cattr needs key=")
    if value is None and add is None and remove is None:
        raise MissingParameter("cattr needs value= (or add=/remove= for a list attribute)")
    if value is not None and (add is not None or remove is not None):
        raise InvalidValue("cattr takes value=, or add= and/or remove=, not both")
    try:
        name, kind = ops.command_attr(str(key))
    except BadInput as exc:
        raise _invalid(exc) from None
    if (add is not None or remove is not None) and kind not in ops.LIST_KINDS:
        raise InvalidValue(f"add=/remove= need a list attribute (argv, tags, envkey, retryrcodes), "
                           f"and {name} is not one")
    new: Any = None
    if value is not None:
        if kind in ops.LIST_KINDS:
            new = _command_items(name, kind, value, "value=")
        else:
            if isinstance(value, bool):
                text = "1" if value else "0"
            elif isinstance(value, (str, int, float)):
                text = str(value)
            else:
                raise InvalidValue(f"{name} value= must be a string or a number, not {type(value).__name__}")
            try:
                new = ops.command_value(name, text, "value=")
            except BadInput as exc:
                raise _invalid(exc) from None
    plus = _command_items(name, kind, add, "add=") if add is not None else []
    minus = _command_items(name, kind, remove, "remove=") if remove is not None else []
    return _command_op(lambda c, j, cid: ops.set_command_attr(c, j, cid, name, new, add=plus, remove=minus,
                                                                          actor=_actor()),
                       search)


def chkeys(search: Any, keystr: str | None = None) -> list[dict]:
    """Change the commands' service key expression (which blades may run them from their next launch;
    '' any blade), as `tq chkeys`.  A bad expression raises InvalidValue and changes nothing."""
    from ..errors import BadInput

    if keystr is None:
        raise MissingParameter("chkeys needs keystr=")
    if not isinstance(keystr, str):
        raise InvalidValue(f"keystr must be a str, not {type(keystr).__name__}")
    try:
        service = _ops().check_service(keystr, "keystr=")
    except BadInput as exc:
        raise _invalid(exc) from None
    return _command_op(lambda c, j, cid: _ops().set_command_service(c, j, cid, service, _actor()), search)


# --- blade operations -------------------------------------------------------------------------


def _blade_targets(search: Any) -> list[dict]:
    cols = ["name", "ipaddr", "bladeid"]
    items = _items(search)
    if items is None:
        return _select("blade", search, cols, ["name", "ipaddr"], None, False)
    for x in items:
        if "name" not in x or "ipaddr" not in x:
            raise MissingTargetKey(f"blade target {dict(x)!r} needs name and ipaddr")
    wanted = {(x["name"], x["ipaddr"]) for x in items}
    every = _select("blade", "bladeid", cols, ["name", "ipaddr"], None, True)
    return [r for r in every if (r["name"], r["ipaddr"]) in wanted]


def _blade_op(fn: Callable[[Any, Any], Any], search: Any) -> list[dict]:
    rows = _blade_targets(search)
    conn = _connection()
    for r in rows:
        _operation(lambda: fn(conn, r["bladeid"]))
    return rows


def nimby(search: Any, allow: str | None = None) -> list[dict]:
    """Close blades: to every job not spooled from their host, or with allow= to all but that user's."""
    return _blade_op(lambda c, b: _ops().set_nimby(c, b, allow or "1", _actor()), search)


def unnimby(search: Any) -> list[dict]:
    return _blade_op(lambda c, b: _ops().set_nimby(c, b, "", _actor()), search)


def eject(search: Any) -> list[dict]:
    return _blade_op(lambda c, b: _ops().eject(c, b, _actor()), search)


def delist(search: Any) -> list[dict]:
    return _blade_op(lambda c, b: _ops().delist(c, b, _actor()), search)


def trace(search: Any, limit: int | None = None) -> dict[tuple[str, str], str]:
    """{(name, ipaddr): the dispatch-decision trace of the blade}, the text `tq trace` prints for it
    (``NAME: ...`` lines, each ending in a newline): what it would be offered now from the first
    `limit` ready commands (default 20; 0: all), in dispatch order, and why it would take each or not.
    Read-only: needs no ownership."""
    from ..db.trace import DEFAULT_LIMIT, trace_blades

    if limit is None:
        limit = DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidValue(f"limit must be a whole number (0 or more), not {limit!r}")
    rows = _blade_targets(search)
    if not rows:
        return {}
    traces = trace_blades(_connection(), [r["bladeid"] for r in rows], limit=limit)
    return {(t.name, t.ipaddr): "".join(f"{line}\n" for line in t.text_lines()) for t in traces}


def limits(names: Iterable[str] | str | None = None) -> list[dict]:
    """The site's limits (those named, or all) as `tq limits` lists them: each a dict with its maxima
    (`sitemax`, `sitecounting`, `ownermax`, `ownerexceptions`, `blademax`, `bladeexceptions`,
    `projectshares`, `crewshares`; -1: no maximum), `description`, and its use now: `inuse` (as SiteMax
    counts), `commands` (running), `owners`, `blades`, `projects` ({name: running commands}).
    Read-only."""
    from ..db import limits as limits_db

    wanted = None if names is None else _list_value(names)
    return limits_db.usage(_connection(), wanted or None)
