"""From a job file (or a generated job) to a spooled jid: what tractor-spool does.

Kept free of click so the authoring API and tests can spool the same way.
Input format: Tractor JSON with `-J`, Alfred with `-A`; otherwise a file
whose first non-blank character is `{` (or that starts with a `#!` line
followed by one) is read as JSON, anything else as Alfred.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from . import config
from .config import SiteSettings
from .errors import BadInput, NotFound, from_os_error
from .jobs.model import Job, Resolved, resolve
from .jobs.script_text import read_script


# a spool's owner and host when none are named (in config.py, which the database layer also reads)
default_owner = config.default_owner
default_host = config.default_host


@dataclasses.dataclass
class Loaded:
    job: Job
    text: str
    format: str  # 'alfred', 'json' or 'generated'
    path: str
    resolved: Resolved | None = None  # set by load(): the checks number the job anyway


def read_job_file(path: str) -> str:
    try:
        return read_script(path)
    except FileNotFoundError:
        raise NotFound(f"tractor-spool - no access to file: {path}") from None
    except OSError as exc:
        raise from_os_error(exc, f"reading {path}") from None


def looks_like_json(text: str) -> bool:
    body = text.lstrip()
    if body.startswith("#!"):
        body = body.split("\n", 1)[1].lstrip() if "\n" in body else ""
    return body.startswith("{")


def load(path: str, *, fmt: str | None = None, strict: bool = False, remotecleankey: str | None = None,
         text: str | None = None) -> Loaded:
    """Parse a job file (or `text` named `path`) into a checked Job."""
    text = read_job_file(path) if text is None else text
    kind = fmt or ("json" if looks_like_json(text) else "alfred")
    if kind == "json":
        from .jobs.jsonjob import from_json

        job = from_json(text, path)
    else:
        from .jobs.alfred import parse

        job = parse(text, path, strict=strict, remotecleankey=remotecleankey, check=False)
    return Loaded(job, text, kind, path, resolve(job))


def parse_aftertime(text: str) -> dt.datetime:
    """tractor-spool --aftertime: 'MM DD HH:MM', 'HH:MM', or ISO 'YYYY-MM-DD HH:MM' (local time)."""
    from .jobs.alfred import local_time

    now = dt.datetime.now()
    t = text.strip()
    try:
        m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})", t)
        if m:
            y, mo, d, h, mi = map(int, m.groups())
            return dt.datetime(y, mo, d, h, mi).astimezone()
        m = re.fullmatch(r"(\d{1,2})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})", t)
        if m:
            mo, d, h, mi = map(int, m.groups())
            return local_time(mo, d, h, mi, now)
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", t)
        if m:
            h, mi = map(int, m.groups())
            return local_time(now.month, now.day, h, mi, now)
    except ValueError as exc:
        raise BadInput(f"--aftertime {text!r}: {exc}") from None
    raise BadInput(f"--aftertime {text!r}: expected 'MM DD HH:MM', 'HH:MM' or 'YYYY-MM-DD HH:MM'")


def parse_jids(text: str, option: str = "--afterjid") -> list[int]:
    items = [x for x in re.split(r"[\s,]+", text.strip()) if x]
    try:
        jids = [int(x) for x in items]
    except ValueError:
        raise BadInput(f"{option} {text!r}: expected job ids such as 12 or 12,13") from None
    if not jids or any(j <= 0 for j in jids):
        raise BadInput(f"{option} {text!r}: expected positive job ids")
    return jids


def spool(settings: SiteSettings, resolved: Resolved, options) -> int:
    """Insert a resolved job; returns its jid."""
    from .db import migrate
    from .db.connection import CLIENT, connect, translated
    from .db.spool import spool_job

    with connect(settings, autocommit=True, purpose=CLIENT) as conn, translated(settings):
        migrate.check_compatible(conn)
        return spool_job(conn, resolved, options)


def retire(settings: SiteSettings, jid: int, owner: str | None) -> None:
    """tractor-spool --jdelete: move a job out of the queue (to the archive), as `owner` (None: the
    logged-in user; the database decides who may: db/ops.py)."""
    import psycopg.errors as pe

    from .db import ops, queries
    from .db.connection import CLIENT, connect, translated
    from .errors import PermissionDenied

    with connect(settings, autocommit=True, purpose=CLIENT) as conn, translated(settings):
        found = conn.execute(queries.get("job_owner"), {"jid": jid}).fetchone()
        if found is None:
            raise NotFound(f"no job {jid}")
        if found["deletetime"] is not None:
            raise BadInput(f"job {jid} was already deleted")
        try:
            ops.delete(conn, jid, ops.Actor(user=owner or default_owner(), force=False))
        except pe.InsufficientPrivilege as exc:
            raise PermissionDenied(f"job {jid} belongs to {found['owner']}: {exc.diag.message_primary}",
                                   hint="the owner, or tq --force where crews.toml allows") from None
