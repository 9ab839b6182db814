"""Grafting the tasks an `-expand` command printed into its running job (reference §6.4).

`finish_expand(conn, claim, bladeid, rcode, nodes=...)` reports the end of
an expand command whose output the blade parsed into task nodes
(`jobs.expand.parse_output`), and grafts them, in ONE transaction (see
migration 0006 for the SQL half and the semantics):

1. `tractor_expand_begin_v1` fences the report and locks the job row; a
   stale report (the invocation is no longer current, or not this blade's)
   grafts nothing and finishes as `tractor_finish_v1` does ('stale');
2. the nodes become a fragment numbered as a job (`jobs.model.resolve`)
   whose settings are the job's (-service, -avoid, -envkey, -tags,
   -atleast/-atmost, as stored at spool) and whose -serialsubtasks is the
   expanding task's.  Its tids are shifted past the job's maxtid, its cids
   past maxcid, its top-level tasks become subtasks of the expanding task
   (after the ones it has), and its rows are written by the spool's own
   row builders (`db/spool.py`: initial states, pending counts, ready
   rows, effective service expressions stored once each);
3. `tractor_finish_v2` marks the new tasks (tasks.expandedby), counts them
   into the job and finishes the command: the expanding task now waits for
   them ('expanded'), or goes on at once if they were all done at spool
   (no commands).

A fragment that spool would refuse (a bad -service expression, an
Instance that closes a cycle through the expanding task's serial order)
grafts nothing: the command is reported as failed with `RC_EXPAND` and the
error (file:line:col: message) is returned for the blade to log, and
recorded as a note on the task.  A blade killed before the commit leaves
nothing: the transaction is discarded, and the command is run again after
its lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import uuid

    import psycopg

RC_EXPAND = 21003  # the expand output could not be grafted (blade/launch.py has the same code)


class _Refused(Exception):
    def __init__(self, message: str):
        self.message = message


def finish_expand(conn: "psycopg.Connection", c: Any, bladeid: "uuid.UUID", rcode: int, *, nodes: Sequence,
                  real: float = 0.0, app: float = 0.0, sys: float = 0.0) -> tuple[str, str | None]:
    """Report an expand command's end, grafting `nodes` when it exited 0.

    Returns (outcome, problem): outcome as `dispatch.finish` ('expanded',
    'done', 'error', 'stale', ...); problem is None, or why nothing was
    grafted (the command then counts as failed, code RC_EXPAND).
    """
    # psycopg errors are not translated: the blade tells a lost connection
    # (send the report again later) from the rest, as for dispatch.finish
    base = {"jid": c.jid, "cid": c.cid, "iid": c.iid, "bladeid": bladeid, "real": real, "app": app, "sys": sys}
    if rcode != 0 or not nodes:
        return _finish(conn, base, rcode, None, None), None
    try:
        with conn.transaction():
            row = conn.execute(queries.get("expand_begin"), base).fetchone()
            if row is None:  # stale: nothing grafted; the finish says so
                return _finish(conn, base, rcode, None, None), None
            first, last = _graft(conn, c.jid, row, nodes, base)
            return _finish(conn, base, rcode, first, last), None
    except _Refused as exc:
        problem = exc.message
    # nothing was grafted (the transaction rolled back): the command failed
    with conn.transaction():
        outcome = _finish(conn, base, RC_EXPAND, None, None)
        if outcome != "stale":
            conn.execute(queries.get("expand_note"), {**base, "text": f"expand output not grafted: {problem}"})
    return outcome, problem


def _finish(conn, base: dict, rcode: int, first: int | None, last: int | None) -> str:
    return conn.execute(queries.get("finish_expand"), {**base, "rcode": rcode, "first": first, "last": last}
                        ).fetchone()["outcome"]


def _graft(conn: "psycopg.Connection", jid: int, row: dict, nodes: Sequence, base: dict
           ) -> tuple[int, int] | tuple[None, None]:
    """Write the fragment's rows (step 2); (first tid, last tid), or (None, None) for no tasks.

    The site's role writes them into the job's tables; a blade login may
    not, and stages them as a person's spool does (pg_temp.spool_*) for
    tractor_graft_staged_v1, which checks they are a graft of this
    invocation's task and moves them in."""
    from psycopg.types.string import BytesBinaryDumper

    from ..jobs.model import Job, JobError, resolve
    from . import spool

    fragment = Job(subtasks=tuple(nodes), serialsubtasks=bool(row["serialsubtasks"]), tags=tuple(row["tags"]),
                   envkey=tuple(row["envkey"]), atleast=row["minslots"], atmost=row["maxslots"])
    try:
        resolved = resolve(fragment)
        spool.check_services(resolved, "")
    except JobError as exc:
        raise _Refused(str(exc)) from None
    if not resolved.tasks:
        return None, None
    p = spool.plan(resolved)
    toff, coff, x, posoff = row["maxtid"], row["maxcid"], row["tid"], row["nextposition"]

    # the job's -service as stored (spool ANDed --svckey into it) and -avoid
    expr_of: dict[str, str] = {}
    servers = spool.shared_servers(resolved)  # (a grafted command refers to the graft's own servers)
    for _, _, cmd in resolved.commands:
        svc = spool.service_of(cmd, servers)
        if svc not in expr_of:
            expr_of[svc] = spool.effective_service(svc, (row["service"], ""), tuple(row["avoid"]))
    svcid: dict[str, int] = {}
    exprs = sorted(set(expr_of.values()))
    staged = not conn.execute(queries.get("spool_may_write")).fetchone()["may"]
    if exprs:
        if staged:
            found = conn.execute(queries.get("spool_staged_service_ids"), {"exprs": exprs})
        else:
            conn.execute(queries.get("spool_add_service_exprs"), {"exprs": exprs})
            found = conn.execute(queries.get("spool_service_ids"), {"exprs": exprs})
        ids = {r["expr"]: r["svcid"] for r in found}
        svcid = {svc: ids[e] for svc, e in expr_of.items()}
    tables = None
    if staged:
        conn.execute(queries.get("spool_staging_tables"))
        tables = spool._tables()[1]

    def task_row(t: tuple) -> tuple:
        # (jid, tid, ..., parent_tid [14], position [15], pending [16], lasttid [17])
        parent = x if t[14] is None else t[14] + toff
        position = t[15] + posoff if t[14] is None else t[15]
        return (*t[:1], t[1] + toff, *t[2:14], parent, position, t[16], t[17] + toff)

    def shift_cmd(r: tuple) -> tuple:  # commands and ready rows: (jid, cid, tid, ...)
        return (r[0], r[1] + coff, r[2] + toff, *r[3:])

    cur = conn.cursor()
    cur.adapters.register_dumper(None, BytesBinaryDumper)  # the spool's binary arrays (see db/spool.py)
    copy = spool._copy  # looked up here: the tests replace it
    tasks = spool._task_rows(jid, resolved.tasks, p, row["graftime"])
    copy(cur, "spool_copy_tasks", spool._TASK_TYPES, (task_row(t) for t in tasks), tables)
    if p.edges:
        copy(cur, "spool_copy_task_edges", spool._EDGE_TYPES, ((jid, a + toff, b + toff, k) for a, b, k in p.edges),
             tables)
    if resolved.commands:
        commands = spool._command_rows(jid, resolved, p, svcid)
        copy(cur, "spool_copy_commands", spool._COMMAND_TYPES, (shift_cmd(r) for r in commands), tables)
    if staged:  # the ready queue is made in the database from the staged commands
        conn.execute(queries.get("graft_staged"), base)
    elif p.numready:
        ready = spool._ready_rows(jid, resolved, p, svcid, row["tierpri"], row["priority"], row["spoolhost"])
        copy(cur, "spool_copy_ready", spool._READY_TYPES, (shift_cmd(r) for r in ready))
    return toff + 1, toff + len(resolved.tasks)


__all__ = ["RC_EXPAND", "finish_expand"]
