"""Insert a whole job into the job database: one transaction, bulk COPY.

`spool_job(conn, resolved, owner=..., ...)` takes a job numbered by
`jobs.model.resolve()` and writes its `jobs` row, then `tasks`,
`task_edges` (Instance edges), `commands` and `ready` with binary COPY, all inside one
transaction, and returns the new jid.  Every statement is a named block of
`db/sql/queries.sql` (the `spool_*` ones).

Atomicity
    Everything happens inside `conn.transaction()`.  An exception half way
    (while streaming a COPY, say) rolls it all back; a client killed with
    SIGKILL or a server that dies leaves an uncommitted transaction, which
    PostgreSQL discards.  Either the whole job is there or none of it.  The
    one thing not rolled back is the job counter: `nextval('jid_seq')` is
    not transactional, so a failed spool spends its jid (a gap), and jids
    are never reused.  Concurrent spools get distinct jids, increasing in
    the order their INSERTs run (commit order may differ).

Foreign keys
    The rows of one spool reference only each other, the new `jobs` row and
    the `service_exprs` rows it uses, and no other transaction can see them
    before commit: the per-row foreign key checks PostgreSQL would run (six
    per task of a one-command job: 600,000 queries, about 3 s of server
    time for 100,000 tasks, twice the cost of the COPYs themselves) cannot
    fail.  So the spool turns them off for the COPYs: it sets
    session_replication_role to 'replica', transaction-locally, and sets it
    back before committing (what logical replication and pg_restore
    --disable-triggers do), when the role may: a superuser - the default
    local site - or one granted SET on that parameter (PostgreSQL 15+).
    Other roles spool with the checks: slower (about 3x), same rows.  The
    expressions it uses are locked FOR KEY SHARE as a foreign key check
    would lock them.  The schema, its foreign keys and their cascades are
    unchanged for every other writer; the tests check the spooled rows
    against every foreign key.

Initial states (event-driven readiness; the engine never scans a job)
    A task's `pending` counts what it waits for: its tree children, its
    Instance targets (each distinct target once), and, when its parent (the
    job, for top-level tasks) has -serialsubtasks and it is not the first
    Task among its siblings, its previous Task sibling (Instance nodes are
    not part of a serial chain: they are dependencies of the parent).  That
    serial gate holds the sibling's whole subtree: every task below it also
    counts the previous sibling once, so nothing under "render frames" can
    start before "generate IFDs" is done.
    With `pending` 0:
    * a task with at least one regular command (-cmds) is `ready`: its first
      -cmds command is `ready` and has a `ready` row; its other commands
      stay `blocked`;
    * a task without -cmds is `done` at once (Tractor: "a task without
      commands becomes done as soon as it would become ready"), and that
      decrements `pending` of everything waiting on it - its tree parent,
      its Instance referrers (one per edge row), its next serial sibling -
      which may cascade.  This is computed in Python before any COPY.  Its
      -cleanup commands stay `blocked`: when and whether they run is the
      engine's business, as for every cleanup.
    Everything else is `blocked`; job-level commands (-cleanup,
    -postscript; tid 0) are `blocked`.  The engine's contract on finishing
    a task: decrement `pending` of its tree parent (`parent_tid`, when not
    NULL), once per `task_edges` row whose child is that task (parent_tid >
    0: `task_edges` holds only Instance edges, since migration 0002), and,
    under a serial parent, once for every
    task in the subtree of the Task whose `position` is one more among the
    same `parent_tid` (the subtree is a contiguous tid range: that sibling's
    tid up to the tid before the end of its subtree).

    `position` of a task is its index among its parent's Task children
    (0, 1, 2 ...; Instance nodes are not counted), so the next serial
    sibling is simply position + 1.  `position` of a command is its index
    in its task's -cmds followed by -cleanup (job-level: -cleanup followed
    by -postscript), i.e. cids in order.

    A job whose every task is done at spool (all empty, or no tasks) stays
    in phase 'live' with numdone = numtasks, and no stoptime: the engine's
    housekeeping finishes it like any other job (running its postscript),
    so there is one way for a job to end.

    Paused jobs get their `ready` rows like any other: dispatch checks
    `jobs.pausetime` (as it must check aftertime and afterjids), so pausing
    and unpausing never touch the ready queue.

Commands
    runtype follows where the command is written: -cmds are 'regular',
    task and job -cleanup are 'cleanup', -postscript ones keep their -when
    ('post_always' when they carry none).
    The effective service expression - the one blades match - is
    command -service AND job -service AND `extra_service` (tractor-spool
    --svckey) AND NOT each job -avoid key, written canonically as
    ``(a) && (b) && !(c)`` with empty parts left out and repeated parts
    once (a lone positive part is stored bare: ``pixarRender``; nothing at
    all is the empty expression '', which matches every blade).  Each
    distinct text is stored once in `service_exprs`; commands carry its
    svcid (never NULL).  Existing expressions are found without locking
    them (INSERT ... WHERE NOT EXISTS ... ON CONFLICT DO NOTHING, then a
    SELECT), so concurrent spools do not queue on a popular expression's
    row; a spool that introduces a new expression while another
    uncommitted spool introduces the same one waits for that one to end.
    -refersto binding is the dispatcher's business; the expression is the
    same.  A task's own -service (shared-server checkout) is stored on the
    task, not ANDed in.
    tags = command -tags followed by job -tags (each once); envkey =
    command's, else job's; minslots/maxslots = command -atleast/-atmost,
    else the task's, else the job's.

Job row
    Spool-time options win over the job's own attributes: paused,
    priority (else Job.priority, else `default_priority`), tier (else
    Job.tier, else 'default'), projects (else Job.projects, else
    ['default']; an empty list counts as none given), aftertime (else
    Job.after), afterjids, maxactive.
    `extra_service` is also ANDed into the stored job -service, so the job
    row shows the job-wide requirement its commands got.  spoolcwd is the
    job's own -spoolcwd, else the argument.  A naive aftertime is local
    time.  pausetime is now() when paused.  dirmap is stored as
    [[src, dst, zone], ...], assignments as {var: value} (a later Assign of
    the same variable wins).

Speed
    Rows are built lazily by generators (one tuple per row) and streamed
    with binary COPY; arrays are encoded here (see below), the rest by
    psycopg's C dumpers.  Client and server work overlap (two processes).
    Measured on the 2-core development VM (PostgreSQL 15, a second busy
    process on the machine), one-command tasks: 100,000 tasks in 1.4-2.2 s
    wall (client 0.5 s CPU, server 1.4-1.9 s CPU: 300,000 rows and 6
    index entries per task - 7 before schema 25 - over half of the
    server's time in the indexes); 1,000,000 tasks in about 22 s.  The rows are built from
    Resolved's arrays (a flat job's plan is not counted at all); a script
    over 1 MiB goes by COPY in pieces (as a parameter the client held two
    more copies of it and took seconds to send it) and is stored with lz4
    where the server has it.  A 1,000,000-task spool peaks at about
    0.95 GB, the spool adding some 30 MB to the job model (bench/README.md,
    `spool`).  With the foreign key checks on (a role that may not turn
    them off), 100,000 tasks take about 5.5 s.

Transactions
    Use an autocommit connection (as the CLI does): the spool is then its
    own transaction and the job is committed when spool_job returns.  In a
    caller's open transaction it runs in a savepoint and is committed (or
    not) with the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from ..jobs.model import FlatTasks, Resolved, Task
from . import queries
from .connection import settings_of, translated

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

# the stock tiers, as a new site's database has them (tractor.toml [tiers] changes them)
TIER_PRIORITY = {"admin": 111, "rush": 99, "default": 50, "batch": 10}

BLOCKED, READY, DONE = 0, 1, 2
_STATE_NAMES = ("blocked", "ready", "done")


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolOptions:
    """How a job is spooled: who, from where, and spool-time overrides.

    None means "as the job says" for the overrides.
    """

    owner: str | None  # None: the logged-in person (a site-role spool: the login name)
    spoolhost: str = ""
    spoolfile: str = ""
    spoolcwd: str = ""
    spooladdr: str = ""
    script: str | None = None
    scriptformat: str | None = None  # 'alfred', 'json' or 'generated'
    extra_service: str = ""  # tractor-spool --svckey: ANDed into every command
    paused: bool | None = None
    priority: float | None = None
    tier: str | None = None
    projects: Sequence[str] | None = None
    aftertime: dt.datetime | None = None
    afterjids: Sequence[int] | None = None
    maxactive: int | None = None
    default_priority: float = 1.0


def spool_job(conn: "psycopg.Connection", resolved: Resolved, options: SpoolOptions | None = None,
              **fields: Any) -> int:
    """Insert `resolved` as a new job in one transaction; return its jid.

    Give either a `SpoolOptions` or its fields as keywords (`owner=` at
    least), or both (keywords then replace the options' fields).
    """
    if options is None:
        options = SpoolOptions(**fields)
    elif fields:
        options = dataclasses.replace(options, **fields)
    with translated(settings_of(conn)):
        return _spool(conn, resolved, options)


# --- the state plan (pure Python, no database) -----------------------------------


@dataclasses.dataclass(slots=True)
class Plan:
    """Initial states of a resolved job's tasks (lists indexed by tid; [0] unused)."""

    state: bytearray  # BLOCKED / READY / DONE
    pending: list[int]  # prerequisites not yet done
    positions: list[int] | None  # order among Task siblings; None: FlatTask.position is it
    size: list[int]  # subtree sizes: the subtree of t is t .. t + size[t] - 1
    edges: list[tuple[int, int, str]]  # task_edges rows (Instance edges), duplicates removed
    numready: int
    numdone: int

    @property
    def numblocked(self) -> int:
        return len(self.state) - 1 - self.numready - self.numdone

    def state_name(self, tid: int) -> str:
        return _STATE_NAMES[self.state[tid]]


def plan(resolved: Resolved) -> Plan:
    """Count each task's prerequisites and settle what is ready or done at spool."""
    objs, parents = resolved.tasks.task, resolved.tasks.parent
    n = len(objs)
    job_serial = resolved.job.serialsubtasks
    edges = resolved.edges
    if not job_serial and not edges and not any(parents):
        return _flat_plan(objs)
    pending = [0] * (n + 1)
    serial_last: dict[int, int] = {}  # serial parent -> its last Task child so far
    next_serial: list[int] | None = None  # tid -> next serial sibling (0: none)

    # Subtree sizes: tids count depth-first, so the subtree of t is the
    # contiguous range t .. t + size[t] - 1.
    size = [1] * (n + 1)
    for tid in range(n, 0, -1):
        p = parents[tid - 1]
        if p:
            size[p] += size[tid]

    for tid, p in enumerate(parents, 1):
        if p:
            pending[p] += 1
            serial = objs[p - 1].serialsubtasks
        else:
            serial = job_serial
        if serial:
            prev = serial_last.get(p)
            if prev is not None:
                # the previous sibling gates this sibling's whole subtree:
                # nothing under it may start before the previous one is done
                for u in range(tid, tid + size[tid]):
                    pending[u] += 1
                if next_serial is None:
                    next_serial = [0] * (n + 1)
                next_serial[prev] = tid
            serial_last[p] = tid

    # Instance edges: one per (referrer, target); none where the tree already has it.
    referrers: dict[int, list[int]] = {}
    positions: list[int] | None = None
    if edges:
        seen: set[tuple[int, int]] = set()
        kept = []
        for e in edges:
            parent, child, _ = e
            if parents[child - 1] == parent or (parent, child) in seen:
                continue
            seen.add((parent, child))
            if parent:
                pending[parent] += 1
                referrers.setdefault(child, []).append(parent)
            kept.append(e)
        edges = kept
        # Instance nodes took places among siblings: number the Tasks alone.
        counter: dict[int, int] = {}
        positions = [0] * (n + 1)
        for tid, p in enumerate(parents, 1):
            k = counter.get(p, 0)
            positions[tid] = k
            counter[p] = k + 1

    state = bytearray(n + 1)
    numready = numdone = 0
    work: list[int] = []
    for tid, t in enumerate(objs, 1):
        if pending[tid] == 0:
            if t.cmds:
                state[tid] = READY
                numready += 1
            else:
                state[tid] = DONE
                numdone += 1
                work.append(tid)
    # cascade: a done task releases its waiters
    while work:
        t = work.pop()
        waiters = [parents[t - 1]]
        if t in referrers:
            waiters.extend(referrers[t])
        if next_serial is not None and next_serial[t]:
            nxt = next_serial[t]
            waiters.extend(range(nxt, nxt + size[nxt]))  # lift the gate on the whole subtree
        for w in waiters:
            if not w:
                continue
            pending[w] -= 1
            if pending[w] == 0:
                if objs[w - 1].cmds:
                    state[w] = READY
                    numready += 1
                else:
                    state[w] = DONE
                    numdone += 1
                    work.append(w)
    return Plan(state, pending, positions, size, edges, numready, numdone)


def _flat_plan(objs: list[Task]) -> Plan:
    """plan() of a job whose tasks are all top-level, with no Instances and no serial order (the
    shape of most big jobs): nothing waits, so a task with -cmds is ready, one without is done."""
    n = len(objs)
    state = bytearray([READY if t.cmds else DONE for t in objs])
    state[0:0] = b"\0"  # [0] unused
    numready = state.count(READY)
    zeros = [0] * (n + 1)
    return Plan(state, zeros, None, [1] * (n + 1), [], numready, n - numready)


# --- service expressions ---------------------------------------------------------


def effective_service(command_service: str, job_parts: Sequence[str], avoid: Sequence[str]) -> str:
    """The canonical text of command AND job AND NOT avoid (service.combine)."""
    from ..service import combine

    job_service, extra = (tuple(job_parts) + ("", ""))[:2]
    return combine(command_service, job_service, tuple(avoid), extra)


def check_services(resolved: Resolved, extra: str) -> None:
    """Every service expression of the job parses, or the error names its place.

    Checked before anything is written, so a bad expression spools nothing.
    """
    from ..jobs.model import JobError
    from ..service import ServiceExprError, parse

    job = resolved.job

    def check(text: str, what: str, where) -> None:
        try:
            parse(text)
        except ServiceExprError as exc:
            raise JobError(f"{what} {text!r}: column {exc.column}: {exc.reason}", where) from None

    check(job.service, "Job -service", job.where)
    if job.avoid:
        from ..service import combine

        try:
            combine("", "", tuple(job.avoid), "")
        except ServiceExprError as exc:
            raise JobError(f"Job -avoid {' '.join(job.avoid)!r}: column {exc.column}: {exc.reason}",
                           job.where) from None
    if extra:
        try:
            parse(extra)
        except ServiceExprError as exc:
            from ..errors import BadInput

            raise BadInput(f"--svckey {extra!r}: column {exc.column}: {exc.reason}") from None
    seen: set[str] = set()
    for c in resolved.commands.command:
        if c.service not in seen:
            seen.add(c.service)
            check(c.service, f"{'Cmd' if c.local else 'RemoteCmd'} -service", c.where)


def _job_service(job_service: str, extra: str) -> str:
    parts = [p for p in (job_service.strip(), extra.strip()) if p]
    if len(parts) == 2 and parts[0] != parts[1]:
        return f"({parts[0]}) && ({parts[1]})"
    return parts[0] if parts else ""


# --- binary COPY of arrays -----------------------------------------------------------
#
# Array columns are declared "bytea" to psycopg's COPY (set_types only picks
# the client-side dumper; binary COPY rows carry no type oids), and their
# values are the binary array representation built here: psycopg's C bytes
# dumper passes them through, so no Python dumper runs per value, and the
# frequent empty and repeated arrays are constants or cached.

_INT = struct.Struct("!i")
_HEAD = struct.Struct("!iiiii")  # ndim, has-null, element oid, length, lower bound
_TEXT_OID, _INT4_OID = 25, 23
_EMPTY_TEXT = struct.pack("!iii", 0, 0, _TEXT_OID)
_EMPTY_INT4 = struct.pack("!iii", 0, 0, _INT4_OID)
_INT4_ITEM = struct.Struct("!ii")


def _text_array(items: Sequence[str], pack=_INT.pack, head=_HEAD.pack) -> bytes:
    if not items:
        return _EMPTY_TEXT
    out = bytearray(head(1, 0, _TEXT_OID, len(items), 1))  # (a plain loop: half the time of comprehensions)
    for s in items:
        b = s.encode()
        out += pack(len(b))
        out += b
    return bytes(out)


def _int4_array(items: Sequence[int]) -> bytes:
    if not items:
        return _EMPTY_INT4
    return _HEAD.pack(1, 0, _INT4_OID, len(items), 1) + b"".join(
        [_INT4_ITEM.pack(4, int(v)) for v in items])


def _copy(cur, name: str, types: Sequence[str], rows: Iterable[tuple], tables: Any = None) -> None:
    """COPY rows by the named query; its {table} names come from `tables` (the site's by default)."""
    from psycopg import sql

    with cur.copy(sql.SQL(queries.get(name)).format(**(tables or _tables()[0]))) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)


# a script longer than this (characters) is compressed with lz4 (queries.sql spool_script_lz4);
# below it pglz takes well under a millisecond
_LZ4_SCRIPT = 256 * 1024
# a script longer than this (characters) is sent by COPY in pieces of _PIECE (spool_script_table)
_COPY_SCRIPT = 1024 * 1024
_PIECE = 1024 * 1024

_ARRAY = "bytea"  # see above
_TASK_TYPES = ("int8", "int4", "text", "text", "text", "int4", "int4", "bool", "bool",
               "text", "timestamptz", _ARRAY, _ARRAY, "text", "int4", "int4", "int4", "int4")
_EDGE_TYPES = ("int8", "int4", "int4", "text")
_COMMAND_TYPES = ("int8", "int4", "int4", "int4", _ARRAY, "bool", "text", "text", "text", "text", "int4",
                  _ARRAY, "text", "text", "int4", "int4", "bool", _ARRAY, _ARRAY,
                  "text", "text", _ARRAY, "bool", "float8", "float8", "text")
_READY_TYPES = ("int8", "int4", "int4", "int4", "int4", "float8", "bool", "text")


# --- the spool ------------------------------------------------------------------------


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is not None and t.tzinfo is None:
        return t.astimezone()  # a naive time is the spooling host's local time
    return t


def _once(*groups: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for x in g:
            if x not in out:
                out.append(x)
    return tuple(out)


def _spool(conn: "psycopg.Connection", resolved: Resolved, o: SpoolOptions) -> int:
    from psycopg import sql
    from psycopg.types.json import Jsonb
    from psycopg.types.string import BytesBinaryDumper

    job = resolved.job
    tasks = resolved.tasks
    commands = resolved.commands
    p = plan(resolved)

    # effective service expression per distinct command -service
    check_services(resolved, o.extra_service)
    job_parts = (job.service, o.extra_service)
    expr_of: dict[str, str] = {}
    servers = shared_servers(resolved)
    if servers:
        services = {service_of(c, servers) for c in commands.command}
    else:
        services = {c.service for c in commands.command}
    for svc in sorted(services):
        expr_of[svc] = effective_service(svc, job_parts, job.avoid)

    paused = job.paused if o.paused is None else o.paused
    if o.priority is not None:
        priority = float(o.priority)
    elif job.priority is not None:
        priority = float(job.priority)
    else:
        priority = float(o.default_priority)
    tier = o.tier or job.tier or "default"
    projects = list(o.projects or job.projects or ("default",))
    n = len(tasks)
    jobrow = {
        "owner": o.owner, "spoolhost": o.spoolhost, "spoolfile": o.spoolfile,
        "spoolcwd": job.spoolcwd or o.spoolcwd, "spooladdr": o.spooladdr, "title": job.title,
        "assignments": Jsonb(dict(job.assignments)), "tier": tier, "priority": priority,
        "crews": list(job.crews), "projects": projects, "tags": list(job.tags),
        "service": _job_service(job.service, o.extra_service), "avoid": list(job.avoid),
        "envkey": list(job.envkey), "editpolicy": job.editpolicy,
        "minslots": job.atleast, "maxslots": job.atmost,
        "etalevel": job.etalevel if job.etalevel is not None else 1,
        "afterjids": [int(j) for j in (o.afterjids if o.afterjids is not None else job.afterjids)],
        "paused": bool(paused), "aftertime": _aware(o.aftertime if o.aftertime is not None else job.after),
        "numtasks": n, "numblocked": p.numblocked, "numready": p.numready, "numdone": p.numdone,
        "maxtid": n, "maxcid": len(commands),
        "comment": job.comment, "metadata": job.metadata,
        "maxactive": o.maxactive if o.maxactive is not None else job.maxactive,
        "serialsubtasks": job.serialsubtasks,
        "dirmap": Jsonb([[d.src, d.dst, d.zone] for d in job.dirmaps]),
        "script": o.script, "scriptformat": o.scriptformat,
    }

    site_tables, staged_tables = _tables()
    with conn.transaction():
        # the site's role writes the rows; a person's role may not, and stages
        # them for tractor_spool_staged_v1 (db/sql/functions/spool.sql)
        staged = not conn.execute(queries.get("spool_may_write")).fetchone()["may"]
        if staged:
            restore = None
            conn.execute(queries.get("spool_staging_tables"))
            table = staged_tables
            if jobrow["owner"] is None:
                jobrow["owner"] = ""  # staged rows need one; '' is the logged-in person (tractor_spool_staged_v1)
        else:
            restore = _fk_checks_off(conn)
            table = site_tables
            if jobrow["owner"] is None:
                from ..config import default_owner

                jobrow["owner"] = default_owner()
        exprs = sorted(set(expr_of.values()))
        svcid_of_expr: dict[str, int] = {}
        if exprs:
            if staged:
                found = conn.execute(queries.get("spool_staged_service_ids"), {"exprs": exprs})
            else:
                conn.execute(queries.get("spool_add_service_exprs"), {"exprs": exprs})
                found = conn.execute(queries.get("spool_service_ids"), {"exprs": exprs})
            for r in found:
                svcid_of_expr[r["expr"]] = r["svcid"]
        svcid = {svc: svcid_of_expr[e] for svc, e in expr_of.items()}
        if o.script is not None and len(o.script) > _LZ4_SCRIPT:
            conn.execute(queries.get("spool_script_lz4"))
        copy_script = o.script is not None and len(o.script) > _COPY_SCRIPT
        if copy_script:
            jobrow["script"] = None  # sent by COPY below
        tierpri = _tier_priority(conn, tier)
        jobrow["tierpri"] = tierpri
        jobrow["svcids"] = sorted(set(svcid.values()))

        r = conn.execute(sql.SQL(queries.get("spool_insert_job")).format(jobs=table["jobs"]), jobrow).fetchone()
        jid, now = (0 if staged else r["jid"]), r["spooltime"]

        cur = conn.cursor()
        if copy_script:
            conn.execute(queries.get("spool_script_table"))
            _copy_script(cur, o.script)
            conn.execute(sql.SQL(queries.get("spool_set_script")).format(jobs=table["jobs"]), {"jid": jid})
        # bytea values as they are, by psycopg's C dumper where there is one
        # (by default "bytea" picks a Python one that also takes dbapi Binary)
        cur.adapters.register_dumper(None, BytesBinaryDumper)
        if tasks:
            _copy(cur, "spool_copy_tasks", _TASK_TYPES, _task_rows(jid, tasks, p, now), table)
            if p.edges:  # Instance edges; the tree itself is tasks.parent_tid
                _copy(cur, "spool_copy_task_edges", _EDGE_TYPES, ((jid, a, b, k) for a, b, k in p.edges), table)
        if commands:
            _copy(cur, "spool_copy_commands", _COMMAND_TYPES, _command_rows(jid, resolved, p, svcid, servers), table)
        if staged:
            # the owner, the ready queue, the counters' check: in the database
            jid = conn.execute(queries.get("spool_commit_staged"), {"owner": jobrow["owner"]}).fetchone()["jid"]
            return jid
        if p.numready:
            with cur.copy(queries.get("spool_copy_ready")) as copy:
                copy.set_types(_READY_TYPES)
                for row in _ready_rows(jid, resolved, p, svcid, tierpri, priority, o.spoolhost, servers):
                    copy.write_row(row)
        if p.numready:
            conn.execute(queries.get("spool_notify"), {"jid": jid})
        if restore is not None:  # for a caller's transaction that goes on after ours
            conn.execute(queries.get("spool_set_replication_role"), {"role": restore})
    return jid


def _copy_script(cur, text: str) -> None:
    """COPY the script into pg_temp.spool_script (queries.sql spool_script_table), one row of
    one text value, in binary and in pieces of _PIECE characters."""
    if text.isascii():
        size = len(text)
    else:  # its length in UTF-8 first, without keeping a copy
        size = sum(len(text[i:i + _PIECE].encode()) for i in range(0, len(text), _PIECE))
    with cur.copy(queries.get("spool_copy_script")) as copy:
        # (the whole binary format: signature, flags, no header extension; one field; trailer)
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!iihi", 0, 0, 1, size))
        for i in range(0, len(text), _PIECE):
            copy.write(text[i:i + _PIECE].encode())
        copy.write(b"\xff\xff")


def _tier_priority(conn: "psycopg.Connection", tier: str) -> int:
    """The priority of the site's tier `tier` (tractor.toml [tiers], in the `tiers` table; names match
    without regard to case); BadInput naming the site's tiers when there is none of that name."""
    from ..errors import BadInput

    row = conn.execute(queries.get("spool_tier"), {"tier": tier}).fetchone()
    if row["priority"] is None:
        raise BadInput(f"unknown tier {tier!r}: the site's tiers are {', '.join(row['names'] or [])}",
                       hint="name one of them with -tier or --tier (tractor.toml [tiers] lists them)")
    return row["priority"]


def _tables() -> tuple[dict, dict]:
    """The tables a spool writes: the job's own, or (a person's spool) the session's staging copies
    (named in queries.sql, spool_staging_tables)."""
    from psycopg import sql

    return ({n: sql.Identifier(n) for n in ("jobs", "tasks", "task_edges", "commands")},
            {"jobs": sql.Identifier("pg_temp", "spool_jobs"), "tasks": sql.Identifier("pg_temp", "spool_tasks"),
             "task_edges": sql.Identifier("pg_temp", "spool_task_edges"),
             "commands": sql.Identifier("pg_temp", "spool_commands")})


def _fk_checks_off(conn: "psycopg.Connection") -> str | None:
    """Turn off per-row foreign key checks in this transaction, if the role may.

    Returns the setting to put back afterwards (None: nothing changed).  Tried
    in a savepoint: a role that may not set session_replication_role just
    spools with the checks (slower, same result).
    """
    from psycopg import errors as pe

    previous = conn.execute(queries.get("spool_replication_role")).fetchone()["role"]
    if previous == "replica":
        return None
    try:
        with conn.transaction():
            conn.execute(queries.get("spool_set_replication_role"), {"role": "replica"})
    except pe.InsufficientPrivilege:
        return None
    return previous


def _task_rows(jid: int, tasks: FlatTasks, p: Plan, now: dt.datetime) -> Iterator[tuple]:
    state, pending, positions, size = p.state, p.pending, p.positions, p.size
    names = _STATE_NAMES
    empty, text_array = _EMPTY_TEXT, _text_array
    if positions is None:
        positions = tasks.position
        shift = -1  # FlatTasks.position is indexed by tid - 1; Plan.positions by tid
    else:
        shift = 0
    for tid, t, parent in zip(range(1, len(tasks) + 1), tasks.task, tasks.parent):
        s = state[tid]
        yield (jid, tid, t.title, t.id, t.service, t.atleast, t.atmost, t.serialsubtasks, t.resumeblock,
               names[s], now if s == READY else None,
               text_array(t.preview) if t.preview else empty, text_array(t.chaser) if t.chaser else empty,
               t.metadata, parent or None, positions[tid + shift], pending[tid], tid + size[tid] - 1)


def shared_servers(resolved: Resolved) -> dict[str, str]:
    """The job's shared servers: the -id of each Task with a -service (a check-out) -> that service."""
    return {t.id: t.service for t in resolved.tasks.task if t.id and t.service}


def service_of(c, servers: dict[str, str]) -> str:
    """The service a command is matched by: a shared server's when it -refersto one (it replaces
    the command's own), else its own -service."""
    if c.refersto and c.refersto in servers:
        return servers[c.refersto]
    return c.service


def _command_rows(jid: int, resolved: Resolved, p: Plan, svcid: dict[str, int],
                  servers: dict[str, str] | None = None) -> Iterator[tuple]:
    if servers is None:
        servers = shared_servers(resolved)
    job = resolved.job
    objs = resolved.tasks.task
    state = p.state
    job_tags = tuple(job.tags)
    job_env = tuple(job.envkey)
    tags_cache: dict[tuple[str, ...], bytes] = {}
    env_cache: dict[tuple[str, ...], bytes] = {}
    job_env_bytes = _text_array(job_env)
    text_array = _text_array
    int4_array = _int4_array
    empty_text, empty_int4 = _EMPTY_TEXT, _EMPTY_INT4
    job_cleanup = len(job.cleanup)
    job_min, job_max = job.atleast, job.atmost

    prev_tid = -1
    pos = nregular = 0
    tmin = tmax = None
    first_ready = False
    for cid, tid, c in resolved.commands:
        if tid != prev_tid:
            prev_tid = tid
            pos = 0
            if tid:
                t = objs[tid - 1]
                nregular = len(t.cmds)
                tmin = t.atleast if t.atleast is not None else job_min
                tmax = t.atmost if t.atmost is not None else job_max
                first_ready = state[tid] == READY
            else:
                nregular = 0
                tmin, tmax = job_min, job_max
                first_ready = False
        if tid:
            runtype = "regular" if pos < nregular else "cleanup"
        elif pos < job_cleanup:
            runtype = "cleanup"
        else:
            runtype = c.runtype if c.runtype.startswith("post_") else "post_always"
        ctags = c.tags
        tags = tags_cache.get(ctags)
        if tags is None:
            tags = tags_cache[ctags] = text_array(_once(ctags, job_tags))
        if c.envkey:
            env = env_cache.get(c.envkey)
            if env is None:
                env = env_cache[c.envkey] = text_array(c.envkey)
        else:
            env = job_env_bytes
        yield (jid, cid, tid, pos, text_array(c.argv), c.local, c.expand, runtype, c.msg, c.service,
               svcid[servers[c.refersto] if c.refersto and c.refersto in servers else c.service], tags, c.id,
               c.refersto, c.atleast if c.atleast is not None else tmin, c.atmost if c.atmost is not None else tmax,
               c.samehost, env, int4_array(c.retryrc) if c.retryrc else empty_int4,
               c.metadata, c.metrics, text_array(c.resumewhile) if c.resumewhile else empty_text,
               c.resumepin, c.minrunsecs, c.maxrunsecs,
               "ready" if pos == 0 and first_ready else "blocked")
        pos += 1


def _ready_rows(jid: int, resolved: Resolved, p: Plan, svcid: dict[str, int], tierpri: int, priority: float,
                spoolhost: str, servers: dict[str, str] | None = None) -> Iterator[tuple]:
    """The first command of each ready task: cids follow tasks in tid order (resolve())."""
    if servers is None:
        servers = shared_servers(resolved)
    state = p.state
    commands, cmd_tids = resolved.commands.command, resolved.commands.tid
    cid = 1
    for tid, t in enumerate(resolved.tasks.task, 1):
        if state[tid] == READY:
            c = commands[cid - 1]
            assert cmd_tids[cid - 1] == tid, "resolve() numbering changed"
            yield (jid, cid, tid, svcid[servers[c.refersto] if c.refersto and c.refersto in servers else c.service],
                   tierpri, priority, c.local, spoolhost)
        cid += len(t.cmds) + len(t.cleanup)


__all__ = ["SpoolOptions", "spool_job", "plan", "Plan", "effective_service", "TIER_PRIORITY"]
