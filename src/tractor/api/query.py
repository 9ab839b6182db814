"""Tractor's `tractor.api.query`: list and operate on the farm's jobs from Python.

    import tractor.api.query as tq

    tq.setEngineClientParam(user="wrangler")
    for task in tq.tasks("error and spooltime > -24h", columns=["Job.owner"]):
        tq.retry(task)

A face over `tractorcli.api.query` (the same search clauses as `tq`; the
same engine client as `tractor.api.author`) giving what Tractor's module
gives:

* rows hold every attribute of the entity, and besides the columns asked
  of other entities keyed by qualified name (``row["Job.title"]``,
  ``row["BladeUse.slotsinuse"]``);
* timestamps are strings in local time, ``YYYY-MM-DD HH:MM:SS.ffffff``
  (what ``value.split('.')[0]`` and ``strptime('%Y-%m-%d %H:%M:%S')`` read);
  ids are ints, list attributes lists, `metadata` a string, `rcode` None
  while a command runs, blade ids strings;
* operations return None, except `log` ({(jid, tid): text}), `jobdump`
  ({jid: script}) and `trace` ({(name, ipaddr): text});
* `blades()` lists registered blades unless ``archive=True``.
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
from typing import Any

from tractorcli.api import query as _q
from tractorcli.api.client import InvalidParamError, ModuleEngineClient
from tractorcli.api.query import (
    InvalidValue,
    MissingParameter,
    MissingSearchClause,
    MissingTargetKey,
    PasswordRequired,
    SortNotAllowed,
    TractorQueryError,
    closeEngineClient,
    needsPassword,
    setEngineClientParam,
)

__all__ = [
    "InvalidParamError", "InvalidValue", "MissingParameter", "MissingSearchClause", "MissingTargetKey",
    "ModuleEngineClient", "PasswordRequired", "SortNotAllowed", "TractorQueryError",
    "blades", "cattr", "chcrews", "chkeys", "chpri", "closeEngineClient", "commands", "delay", "delete",
    "delist", "eject", "interrupt", "invocations", "jattr", "jobdump", "jobs", "kill", "lock", "log",
    "needsPassword", "nimby", "notes", "params", "pause", "restart", "resume", "retry", "retryactive",
    "retryerrors", "setEngineClientParam", "skip", "skiperrors", "tasks", "trace", "undelay", "undelete",
    "unlock", "unnimby", "unpause",
]


# --- values as Tractor's rows hold them -----------------------------------------------------


def _value(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return (v.astimezone() if v.tzinfo else v).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, _uuid.UUID):
        return str(v)
    return v


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: _value(v) for k, v in r.items()} for r in rows]


# --- listings -------------------------------------------------------------------------------


def jobs(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
         archive: bool = False) -> list[dict]:
    """Jobs matching the clause `search`: every job attribute, plus the `columns` asked of other entities."""
    return _rows(_q.jobs(search, columns, sortby, limit, archive, full=True))


def tasks(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
          archive: bool = False) -> list[dict]:
    """Tasks matching `search`: every task attribute, plus the `columns` asked (``"Job.owner"``)."""
    return _rows(_q.tasks(search, columns, sortby, limit, archive, full=True))


def commands(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
             archive: bool = False) -> list[dict]:
    """Commands matching `search`: every command attribute, plus the `columns` asked."""
    return _rows(_q.commands(search, columns, sortby, limit, archive, full=True))


def invocations(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
                archive: bool = False) -> list[dict]:
    """Invocations matching `search`: every invocation attribute, plus the `columns` asked
    (``"Blade.profile"``, ``"Job.title"``)."""
    return _rows(_q.invocations(search, columns, sortby, limit, archive, full=True))


def blades(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
           archive: bool = False) -> list[dict]:
    """Registered blades (all with archive=True) matching `search`; BladeUse figures keyed
    ``"BladeUse.slotsinuse"`` when asked."""
    return _rows(_q.blades(search, columns, sortby, limit, archive, full=True))


def params(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
           archive: bool = False) -> list[dict]:
    """Site parameters (name, value) matching `search`."""
    return _rows(_q.params(search, columns, sortby, limit, archive, full=True))


def notes(search: str = "", columns: Any = [], sortby: Any = [], limit: int | None = None,  # noqa: B006
          archive: bool = False) -> list[dict]:
    """Notes matching `search`."""
    return _rows(_q.notes(search, columns, sortby, limit, archive, full=True))


# --- operations: None, as Tractor's -----------------------------------------------------------
# Targets: a clause, one result dict, a list of them, or a bare {"jid": .., "tid": ..} dict.


def chcrews(search: Any, crews: Any = None) -> None:
    _q.chcrews(search, crews=crews)


def chpri(search: Any, priority: Any = None) -> None:
    _q.chpri(search, priority=priority)


def jattr(search: Any, key: str | None = None, value: Any = None) -> None:
    _q.jattr(search, key=key, value=value)


def pause(search: Any) -> None:
    _q.pause(search)


def unpause(search: Any) -> None:
    _q.unpause(search)


def lock(search: Any, note: str = "") -> None:
    _q.lock(search, note=note)


def unlock(search: Any) -> None:
    _q.unlock(search)


def interrupt(search: Any) -> None:
    _q.interrupt(search)


def restart(search: Any) -> None:
    _q.restart(search)


def retryactive(search: Any) -> None:
    _q.retryactive(search)


def retryerrors(search: Any) -> None:
    _q.retryerrors(search)


def skiperrors(search: Any) -> None:
    _q.skiperrors(search)


def delay(search: Any, aftertime: Any = None) -> None:
    _q.delay(search, aftertime=aftertime)


def undelay(search: Any) -> None:
    _q.undelay(search)


def delete(search: Any) -> None:
    _q.delete(search)


def undelete(search: Any) -> None:
    _q.undelete(search)


def jobdump(search: Any) -> dict:
    """{jid: the job script as spooled}."""
    return _q.jobdump(search)


def retry(search: Any) -> None:
    _q.retry(search)


def resume(search: Any) -> None:
    _q.resume(search)


def kill(search: Any) -> None:
    _q.kill(search)


def skip(search: Any) -> None:
    _q.skip(search)


def log(search: Any) -> dict:
    """{(jid, tid): the task's output log}."""
    return _q.log(search)


def cattr(search: Any, key: str | None = None, value: Any = None) -> None:
    _q.cattr(search, key=key, value=value)


def chkeys(search: Any, keystr: str | None = None) -> None:
    _q.chkeys(search, keystr=keystr)


def nimby(search: Any, allow: str | None = None) -> None:
    _q.nimby(search, allow=allow)


def unnimby(search: Any) -> None:
    _q.unnimby(search)


def eject(search: Any) -> None:
    _q.eject(search)


def delist(search: Any) -> None:
    _q.delist(search)


def trace(search: Any) -> dict:
    """{(name, ipaddr): the blade's dispatch trace}."""
    return _q.trace(search)
