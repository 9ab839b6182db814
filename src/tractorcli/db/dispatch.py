"""The dispatch calls blades and the engine make: thin wrappers over migration 0003.

Each call is one transaction on an autocommit connection (the SQL function
is the transaction), so a blade or engine killed between two calls leaves
the database consistent.  States, counters and fencing live in SQL; this
module only names the calls and shapes their results.

A blade's cycle::

    bladeid = register(conn, BladeInfo(...))
    svc = ServiceCache()                      # which expressions it matches
    for c in claim(conn, bladeid, svc.matching(conn, facts), host, free_slots):
        info = launch_info(conn, c.jid, c.cid)
        ...launch...
        finish(conn, c, bladeid, rcode, ...)  # 'done', 'retry', 'error' or 'stale'
    heartbeat(conn, bladeid, ...)             # renews leases; says what to keep running

The engine calls `housekeep(conn)` every few seconds.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ..service import BladeFacts


def _array(values: Iterable) -> str:
    """A PostgreSQL array literal of numbers or booleans (None: NULL), for a parameter the query
    casts (``%(jids)s::bigint[]``).  psycopg's dumper of a list checks every element's type:
    a blade's cycle of four reports spent 0.17 ms of its own CPU on its parameters that way,
    0.035 ms so.  (str() of an int, a float - inf and nan included - or a bool is what
    PostgreSQL reads; no other text can say None.)"""
    return "{" + ",".join(map(str, values)).replace("None", "NULL") + "}"


@dataclasses.dataclass(frozen=True, slots=True)
class BladeInfo:
    name: str
    ipaddr: str = "127.0.0.1"
    port: int = 0
    profile: str = "default"
    provides: tuple[str, ...] = ()
    numslots: int = 1
    osname: str = ""
    osversion: str = ""
    version: str = ""
    numcpu: int = 0
    zone: str = "nfs"
    nimby: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A command this blade now runs: (jid, cid, iid) is also its fencing token."""

    jid: int
    tid: int
    cid: int
    iid: int
    numslots: int
    # the launch_info() row, fetched with the claim
    info: dict | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.jid, self.cid, self.iid)


def _json(value: Any):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def register(conn: "psycopg.Connection", blade: BladeInfo) -> uuid.UUID:
    row = conn.execute(queries.get("blade_register"), {
        **{f.name: getattr(blade, f.name) for f in dataclasses.fields(blade)},
        "provides": list(blade.provides), "metrics": _json(blade.metrics)}).fetchone()
    return row["bladeid"]


class ServiceCache:
    """The service expressions of the database, parsed once, matched per poll.

    New expressions arrive with new jobs; each poll reads only those added
    since the last one.  Expressions that use blade metrics (@.mem ...) are
    evaluated again at every poll; the others only when the blade's keys
    change.  An expression that does not parse (written by hand into the
    database, or by a future version) matches no blade.
    """

    REFRESH_SECS = 1.0

    def __init__(self) -> None:
        self._refreshed = -1e9
        self.last = 0
        self.exprs: dict[int, Any] = {}  # svcid -> parsed expression, or None
        self._static: dict[int, bool] = {}
        self._facts_key: tuple | None = None

    # Ids are handed out by a sequence as spools insert them, but spools commit
    # in their own order: an id below the highest one read may still appear
    # (its spool committed later), or never (rolled back).  The latest such
    # holes are asked for again at each refresh.
    HOLES_ASKED = 256

    def holes(self) -> list[int]:
        """Ids below the highest one read that were not there yet (the latest HOLES_ASKED)."""
        if len(self.exprs) >= self.last:  # ids 1..last all read
            return []
        out = []
        for i in range(self.last - 1, max(0, self.last - 10_000), -1):
            if i not in self.exprs:
                out.append(i)
                if len(out) == self.HOLES_ASKED:
                    break
        return out

    def refresh(self, conn: "psycopg.Connection", *, unless_since: float | None = None) -> int:
        """Read the expressions added since the last call; how many there were.  Not when they
        were read at or after the time `unless_since` (time.monotonic()) already: a claim that
        found nothing asks again only if its expressions are older than the claim."""
        from ..service import ServiceExprError, parse

        if unless_since is not None and self._refreshed >= unless_since:
            return 0
        self._refreshed = time.monotonic()
        new = 0
        for r in conn.execute(queries.get("service_exprs_since"), {"after": self.last, "holes": self.holes()}):
            new += 1
            try:
                self.exprs[r["svcid"]] = parse(r["expr"])
            except ServiceExprError:
                self.exprs[r["svcid"]] = None
            self.last = max(self.last, r["svcid"])
        return new

    def matching(self, conn: "psycopg.Connection", facts: "BladeFacts", *, refresh: bool | None = None) -> list[int]:
        """The svcids `facts` match.  New expressions are read at most once a
        second (`refresh=True` forces it, False skips it): a blade that finds
        nothing to claim forces a refresh before it gives up."""
        now = time.monotonic()
        if refresh or (refresh is None and now - self._refreshed >= self.REFRESH_SECS):
            self.refresh(conn)
        key = (facts.keys,)
        if key != self._facts_key:
            self._static.clear()
            self._facts_key = key
        out = []
        for svcid, expr in self.exprs.items():
            if expr is None:
                continue
            hit = self._static.get(svcid)
            if hit is None:
                hit = expr.evaluate(facts)
                if "@." not in expr.source:
                    self._static[svcid] = hit
            if hit:
                out.append(svcid)
        return out


def claim(conn: "psycopg.Connection", bladeid: uuid.UUID, svcids: Iterable[int], host: str,
          slots: int) -> list[Claim]:
    if slots <= 0:  # no svcids still claims: local Cmds that bind servers run on their spooling host
        return []
    rows = conn.execute(queries.get("claim"), {"bladeid": bladeid, "svcids": _array(svcids), "host": host,
                                               "slots": slots}).fetchall()
    return [Claim(r["jid"], r["tid"], r["cid"], r["iid"], r["numslots"], r) for r in rows]


def launch_info(conn: "psycopg.Connection", jid: int, cid: int) -> dict:
    return conn.execute(queries.get("launch_info"), {"jid": jid, "cid": cid}).fetchone()


def finish(conn: "psycopg.Connection", c: Claim, bladeid: uuid.UUID, rcode: int, *, real: float = 0.0,
           app: float = 0.0, sys: float = 0.0, checkpoint: bool = False) -> str:
    """`checkpoint`: the command's -resumewhile {testcheckpoint ...} was true (it exited 0)."""
    return conn.execute(queries.get("finish_checkpoint" if checkpoint else "finish"), {
        "jid": c.jid, "cid": c.cid, "iid": c.iid, "bladeid": bladeid, "rcode": rcode,
        "real": real, "app": app, "sys": sys}).fetchone()["outcome"]


def _pids_params(bladeid: uuid.UUID, pids: list[tuple[tuple[int, int, int], int]]) -> dict:
    return {"bladeid": bladeid, "jids": _array(k[0] for k, _ in pids), "cids": _array(k[1] for k, _ in pids),
            "iids": _array(k[2] for k, _ in pids), "pids": _array(p for _, p in pids)}


def finish_and_claim(conn: "psycopg.Connection", bladeid: uuid.UUID,
                     reports: list[tuple[Claim, int, float, float, float, bool]], svcids: Iterable[int],
                     host: str, slots: int, pids: list[tuple[tuple[int, int, int], int]] = ()
                     ) -> tuple[list[str], list[Claim]]:
    """Report ended commands (claim, rcode, real, app, sys, checkpoint) and claim new ones; `pids`:
    the process ids of commands launched since the last report, recorded too.

    One statement (functions/blades.sql, tractor_cycle_v1): one round trip
    and one transaction, which the server commits without waiting for this
    process, so the job rows the reports take are held for the server's
    work alone.  If anything fails, nothing of it happened and the caller
    sends the same reports again.
    """
    pids = list(pids)
    rows = conn.execute(queries.get("cycle"), {
        "bladeid": bladeid, "jids": _array(r[0].jid for r in reports), "cids": _array(r[0].cid for r in reports),
        "iids": _array(r[0].iid for r in reports), "rcodes": _array(r[1] for r in reports),
        "real": _array(r[2] for r in reports), "app": _array(r[3] for r in reports),
        "sys": _array(r[4] for r in reports), "checkpoints": _array(r[5] for r in reports),
        "svcids": _array(svcids), "host": host, "slots": slots,
        "pid_jids": _array(k[0] for k, _ in pids), "pid_cids": _array(k[1] for k, _ in pids),
        "pid_iids": _array(k[2] for k, _ in pids), "pids": _array(p for _, p in pids)}).fetchall()
    outcomes: list[str] = [""] * len(reports)
    claims = []
    for r in rows:
        if r["report"] is not None:
            outcomes[r["report"] - 1] = r["outcome"]
        else:
            claims.append(Claim(r["jid"], r["tid"], r["cid"], r["iid"], r["numslots"], r))
    return outcomes, claims


def progress(conn: "psycopg.Connection", c: Claim, bladeid: uuid.UUID, percent: float) -> bool:
    return conn.execute(queries.get("progress"), {"jid": c.jid, "cid": c.cid, "iid": c.iid, "bladeid": bladeid,
                                                  "progress": percent}).fetchone()["ok"]


class Kept(frozenset):
    """What a heartbeat says the blade should still be running: (jid, cid, iid) of each, and
    the blade reload generation (db/reload.py) when the heartbeat was asked for it, and whether
    a claim could find anything for the blade now when it was asked that (`work`; else None)."""

    reload: str | None = None
    work: bool | None = None


def heartbeat(conn: "psycopg.Connection", bladeid: uuid.UUID, holding: Iterable[tuple[int, int, int]] = (), *,
              metrics: dict | None = None, loadavg: float = 0.0, availmemory: float = 0.0,
              availdisk: float = 0.0, pids: list[tuple[tuple[int, int, int], int]] = (),
              reload: bool = False, svcids: Iterable[int] | None = None, host: str = "",
              svc: ServiceCache | None = None) -> Kept:
    """Renew the leases of what the blade holds (jid, cid, iid); what it should still be running.
    `pids`: the process ids of commands launched since the last report, recorded first (in the
    same round trip); `reload`: the blade reload generation too (`Kept.reload`, same statement).
    `svcids` (a blade that would claim now: the service expressions it matches, from its `svc`
    cache without reading new ones; `host` as for `claim`): also whether a claim could find
    anything for it (`Kept.work`: a ready command it matches, or service expressions its cache
    has not read), in the same statement: an idle blade's poll rides on its heartbeat.

    The blade's other unfinished invocations (older than a few seconds) are
    queued again: nothing runs them.
    """
    holding = list(holding)
    ask = svcids is not None
    params = {"bladeid": bladeid, "metrics": _json(metrics or {}), "loadavg": loadavg, "availmemory": availmemory,
              "availdisk": availdisk, "jids": _array(h[0] for h in holding), "cids": _array(h[1] for h in holding),
              "iids": _array(h[2] for h in holding)}
    if reload or ask:
        params.update(svcids=_array(svcids) if ask else None, host=host, svc_after=svc.last if svc else 0,
                      svc_holes=_array(svc.holes() if svc else ()))
    query = queries.get("heartbeat_reload" if reload or ask else "heartbeat")
    if pids:
        with conn.pipeline():  # one round trip
            conn.execute(queries.get("pids"), _pids_params(bladeid, list(pids)))
            cur = conn.execute(query, params)
        rows = cur.fetchall()
    else:
        rows = conn.execute(query, params).fetchall()
    kept = Kept((r["jid"], r["cid"], r["iid"]) for r in rows if r["jid"] is not None)
    if reload or ask:
        kept.reload = rows[-1]["reload"]
        kept.work = rows[-1]["work"]
    return kept


def set_wakeport(conn: "psycopg.Connection", bladeid: uuid.UUID, port: int | None) -> None:
    """Where tractor-engine wakes the blade (a UDP port; None: it LISTENs itself; wakeups.py)."""
    conn.execute(queries.get("blade_wakeport"), {"bladeid": bladeid, "port": port})


def engine_beats(conn: "psycopg.Connection") -> str | None:
    """Where tractor-engine takes idle blades' heartbeats as datagrams (the 'engine-beats' param:
    wakeups.beats_address reads it), or None: no engine does."""
    return conn.execute(queries.get("engine_beats")).fetchone()["value"]


def blade_exit(conn: "psycopg.Connection", bladeid: uuid.UUID, *, handback: bool) -> int:
    return conn.execute(queries.get("blade_exit"), {"bladeid": bladeid, "handback": handback}).fetchone()["requeued"]


def housekeep(conn: "psycopg.Connection") -> tuple[int, int]:
    """Requeue work of lost blades; move finished jobs on.  (requeued, jobs finished)."""
    row = conn.execute(queries.get("housekeep")).fetchone()
    return row["requeued"], row["finished"]


def retry(conn: "psycopg.Connection", jid: int, tids: Iterable[int], *, recover: bool = False) -> list[int]:
    """tq retry (resume with recover=True): the tasks and what depends on them start over."""
    return [t for _, t in retry_many(conn, [(jid, t) for t in tids], recover=recover)]


def _pairs(conn: "psycopg.Connection", query: str, tasks: Iterable[tuple[int, int]], **params: Any
           ) -> list[tuple[int, int]]:
    pairs = sorted(set(tasks))
    if not pairs:
        return []
    rows = conn.execute(queries.get(query), {"jids": [j for j, _ in pairs], "tids": [t for _, t in pairs],
                                             **params}).fetchall()
    return [(r["jid"], r["tid"]) for r in rows]


def retry_many(conn: "psycopg.Connection", tasks: Iterable[tuple[int, int]], *,
               recover: bool = False) -> list[tuple[int, int]]:
    """`retry` of (jid, tid) pairs of any jobs in one transaction (one statement):
    returns the (jid, tid) pairs reset, the given ones and what depends on them."""
    return _pairs(conn, "task_retry", tasks, recover=recover)


def skip(conn: "psycopg.Connection", jid: int, tids: Iterable[int]) -> list[int]:
    """tq skip: the tasks count as done; what waits for them goes on."""
    return [t for _, t in skip_many(conn, [(jid, t) for t in tids])]


def skip_many(conn: "psycopg.Connection", tasks: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """`skip` of (jid, tid) pairs of any jobs in one statement; the pairs skipped (those not done)."""
    return _pairs(conn, "task_skip", tasks)


def kill(conn: "psycopg.Connection", jid: int, tids: Iterable[int]) -> list[int]:
    """tq kill: stop the tasks' running commands; the tasks are left in error."""
    return [t for _, t in kill_many(conn, [(jid, t) for t in tids])]


def kill_many(conn: "psycopg.Connection", tasks: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """`kill` of (jid, tid) pairs of any jobs in one statement; the pairs that were active."""
    return _pairs(conn, "task_kill", tasks)


def set_params(conn: "psycopg.Connection", values: dict[str, Any]) -> None:
    """Site settings the SQL functions read (CmdAutoRetryAttempts, BladeLeaseSecs, ...)."""
    for name, value in values.items():
        conn.execute(queries.get("set_param"), {"name": name, "value": str(value)})


def store_tiers(conn: "psycopg.Connection", tiers: dict[str, int]) -> int:
    """The site's tiers (tractor.toml [tiers]) into the `tiers` table the spool and tq jattr read;
    live jobs of a tier whose priority changed move with it.  Returns the jobs moved."""
    from psycopg.types.json import Jsonb

    return conn.execute(queries.get("tiers_store"), {"tiers": Jsonb(tiers)}).fetchone()["moved"]


__all__ = ["BladeInfo", "Claim", "ServiceCache", "register", "claim", "launch_info", "finish", "finish_and_claim",

           "progress", "store_tiers",
           "heartbeat", "blade_exit", "housekeep", "set_params", "retry", "retry_many", "skip", "skip_many", "kill",
           "kill_many"]
