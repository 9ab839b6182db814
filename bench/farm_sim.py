"""A farm simulator: N simulated blades on one job database, multiplexed over K connections.

Not a benchmark itself (the runner loads only `bench_<name>.py`): the core
that `bench_farm_sim.py` measures and `tests/test_farm_sim.py` checks.

A simulated blade runs no processes.  It makes the calls a real
`tractor-blade` makes (`blade/worker.py`), through the same functions of
`tractorcli.db.dispatch` and nothing of its own:

* it registers (`dispatch.register` with a `BladeInfo`) and reads the
  service expressions (`ServiceCache.matching(..., refresh=True)`);
* a cycle: when it holds commands and their time (`hold` seconds) is up,
  `dispatch.finish_and_claim` reports them all (exit code 0) and claims up
  to its free slots (all of them: everything held was just reported) in one
  transaction; a blade holding nothing claims with `dispatch.claim` and,
  when that finds nothing, reads new service expressions and claims again
  if there were any (the real blade's `claim()`).  Before claiming,
  `ServiceCache.matching` reads new expressions at most once a second, as
  a real blade's cache does.  An empty claim is tried again after 10 ms,
  doubling up to the poll interval (1.5 s) while the blade found work
  recently, else at the next poll: 1.5 s later, or with `wakeups =
  "engine"` when a heartbeat says work is queued for it, at most every 2
  idle heartbeats (30 s): the real blade's back-off;
* every `heartbeat` seconds (10 s, the real blade's default; `idle_heartbeat`,
  15 s, while it holds nothing) `dispatch.heartbeat` with what it holds and
  the blade reload generation in the same statement, as a real blade's
  heartbeat does, and with `wakeups = "engine"` a blade holding nothing
  asks in it whether a claim could find anything (its poll, when due, runs
  right after it on the same connection, as in the real blade's loop); a
  held command the heartbeat does not give back is counted as revoked and
  dropped (it must not happen);
* with `wakeups = "engine"` a blade holding nothing sends its heartbeat to the
  engine as a datagram (`wakeups.beat_datagram`), which the engine's own
  `wakeups.Beats`, run here in a thread on its own connection, writes with
  the others every half second; the answer (ok, work, check) is read by one
  thread for all blades and acts at the blade's next step (a real blade acts
  on it at once); a blade told 'check', or whose beat went unanswered,
  heartbeats through the database at its next step (`beats=False`: every
  heartbeat through the database, as before beats);
* at the end, what it holds is reported (`finish_and_claim` with no free
  slots) and it leaves (`dispatch.blade_exit`, handback false).

What is left out: wake-ups (a real blade's LISTEN connection, or the
engine's datagrams: a simulated blade polls, as a real one does when no
wake-up comes), progress
reports, launch and the command's process, pids.  A blade whose claim comes
back short (fewer commands than slots) holds that batch to its end before it
claims again.

The pool: blades do not own connections.  K worker threads each hold one
connection and take the next due blade from one scheduler (a heap of (due
time, blade)); one step of a blade - one cycle or one heartbeat - runs on
whichever connection is free, as a pooler in transaction mode hands them
out: the one freed last (PgBouncer's default, `server_round_robin = 0`), so
a light load stays on a few warm backends (`lifo=False`: the one free
longest, spreading every load over all K).  A blade is in the heap at most once, so its steps never overlap.
Dispatch calls are run again when PostgreSQL aborts them to break a
deadlock (`db.rerun`, as the real blade does); the reruns are counted.  A
step aborted on every one of rerun's attempts is counted as given up and
tried again 0.1 s later (nothing of it happened; a real blade would stop
there: the error leaves its loop).
An optional engine thread runs `dispatch.housekeep` every 2 s on its own
connection, as `tractor-engine` does.

Through the site's pooler (`blade_settings`: settings that reach the site over
TCP with a blade login, `[pooler]` on): every simulated blade opens a
connection of its own, as a real blade's work connection, which goes through
PgBouncer (db/connection.py decides, as for a real blade), and registers and
steps on it; the K worker threads only take turns running the blades' steps.
The server then sees the pooler's server connections (at most its
`max_db_connections`), not one per blade; the engine and the sampler stay
direct, as tractor-engine does.  (A real blade's wake-up listener, direct to
the server, is left out here as always.)

Measured per run (`Farm.run`): claims and cycles, the claim calls' round
trips (`finish_and_claim`, or `claim` for a blade holding nothing: from
sending to the answer, not the wait for a connection), how late steps start
after they are due (the pool's backlog: from the later of its due time and
the end of the blade's step before), the server's CPU time (the postmaster
and all its children, from /proc: autovacuum and the WAL writer too) and
that of the farm's own backends (the pool's and the engine's connections),
the simulator's own CPU time (all its threads), and
the most connections to the database seen at once (pg_stat_activity,
sampled every 0.25 s, the sampler's own left out).

`check_exactly_once` checks the database afterwards: no command with two
invocations, none still running, every invocation ended with exit code 0,
the expected number of commands (and one-command tasks) done, and the audit
(`tractor_audit_v1`) clean.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from _common import BenchError, cpu_seconds, server_cpu

from tractorcli import wakeups
from tractorcli.blade.worker import ENGINE_POLL_BEATS, Blade, BladeOptions

# tractor-blade's own defaults and back-off (blade/worker.py), not copies of them
BLADE_HEARTBEAT = BladeOptions.heartbeat
BLADE_IDLE_HEARTBEAT = BladeOptions.idle_heartbeat  # (at most half of BladeLeaseSecs, 30 s by default)
BLADE_POLL = BladeOptions.poll
RETRY_FIRST = Blade.RETRY_FIRST  # the real blade's first retry after an empty claim
ENGINE_INTERVAL = 2.0  # tractor-engine's housekeeping interval
DEFAULT_POOL = 64
GIVE_UP_PAUSE = 0.1  # seconds before a step that deadlocked every time is tried again
SAMPLE_EVERY = 0.25  # seconds between samples of pg_stat_activity

# read-only queries of the checks and the sampler (literal text, no parameters pasted in)
# client backends only: an autovacuum worker also shows the database's name
_CONNECTIONS = ("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
_DUPLICATES = "SELECT jid, cid, count(*) AS n FROM invocations GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 10"
_INVOCATIONS = ("SELECT count(*) AS total, count(*) FILTER (WHERE stoptime IS NULL) AS running, "
                "count(*) FILTER (WHERE rcode IS DISTINCT FROM 0) AS failed, "
                "count(*) FILTER (WHERE lapsed) AS lapsed FROM invocations")
_DONE = ("SELECT (SELECT count(*) FROM commands WHERE state = 'done') AS commands, "
         "(SELECT count(*) FROM tasks WHERE state = 'done') AS tasks")
_AUDIT = "SELECT invariant, ids, detail FROM tractor_audit_v1(false)"


# --- the server's CPU time ------------------------------------------------------------------


def procs_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes (the farm's own backends)."""
    return sum(cpu_seconds(pid) for pid in pids)


# --- the queue ----------------------------------------------------------------------------------


def spool_queue(settings, tasks: int, jobs: int, *, service: str = "PixarRender",
                argv: tuple[str, ...] = ("/bin/true",), log: Callable[[str], None] | None = None) -> list[int]:
    """`jobs` jobs of tasks/jobs one-command tasks each, all ready, spooled through the
    project's fast path (`db.spool.spool_job`: one transaction and binary COPY per job).
    The job is built and resolved once and spooled `jobs` times.  The jids."""
    from tractorcli.config import current_user
    from tractorcli.db.connection import connect
    from tractorcli.db.spool import spool_job
    from tractorcli.jobs.model import Command, Job, Task, resolve

    if jobs <= 0 or tasks % jobs:
        raise ValueError(f"{tasks} tasks do not divide into {jobs} jobs")
    per = tasks // jobs
    resolved = resolve(Job(title=f"farm sim x{per}", subtasks=tuple(
        Task(f"t{i}", cmds=(Command(argv, service=service),)) for i in range(per))))
    jids = []
    last = time.monotonic()
    with connect(settings, autocommit=True) as conn:
        for j in range(jobs):
            jids.append(spool_job(conn, resolved, owner=current_user(), spoolhost="farmsim"))
            if log and time.monotonic() - last > 10:
                last = time.monotonic()
                log(f"spooled {j + 1} of {jobs} jobs")
    return jids


# --- blades and the scheduler ------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SimBlade:
    name: str
    provides: tuple[str, ...]
    slots: int
    bladeid: uuid.UUID | None = None
    svc: object = None  # its dispatch.ServiceCache
    facts: object = None  # its service.BladeFacts
    held: list = dataclasses.field(default_factory=list)  # dispatch.Claim
    held_until: float = 0.0
    next_hb: float = 0.0
    last_hb: float | None = None  # when its last heartbeat was sent
    next_claim: float = 0.0  # when a blade holding nothing claims (again)
    retry_delay: float = RETRY_FIRST
    settings: object = None  # the settings it connects with through the pooler, or None: the pool's
    last_work: float = -1e9
    work_seen: bool | None = None  # what its last heartbeat said about work for it (engine wake-ups)
    reload: str = "0"  # the blade reload generation its last heartbeat read
    beat_sent: float | None = None  # when its first beat still unanswered went (engine wake-ups)
    beat_asked: bool = False  # whether its last beat asked about work
    check: bool = False  # its next heartbeat goes through the database (the engine said so)
    gone: bool = False
    conn: object = None  # its own connection (through the pooler), or None: the pool's

    def due(self) -> float:
        if self.held:
            return min(self.next_hb, self.held_until)
        # with engine wake-ups an idle blade polls only when its heartbeat said there is work
        return min(self.next_hb, self.next_claim if self.work_seen is not False else float("inf"))


class Scheduler:
    """The due blades, earliest first; each worker takes the next due one.

    Which free worker (connection) takes it: the one freed last (`lifo`, as PgBouncer hands
    out server connections by default: a light load stays on few, warm backends), or the one
    free longest (FIFO: spread over all of them)."""

    def __init__(self, lifo: bool = True) -> None:
        self._heap: list[tuple[float, int, float, SimBlade]] = []
        self._lock = threading.Lock()
        self._idle: list[threading.Condition] = []  # the free workers' own conditions, freed last at the end
        self._seq = itertools.count()
        self.lifo = lifo
        self.draining = False
        self.closed = False

    def _next(self) -> threading.Condition:
        return self._idle[-1] if self.lifo else self._idle[0]

    def put(self, due: float, blade: SimBlade) -> None:
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._seq), time.monotonic(), blade))
            if self._idle:
                self._next().notify()

    def get(self) -> tuple[float, SimBlade] | None:
        """The next blade when it is due (at once when draining), and since when it was due:
        the later of its due time and when it was put back (a step that came due while the blade
        was busy with the one before is not late); None once closed.  Only the free worker next
        in turn takes a blade; the others wait until it has."""
        with self._lock:
            me = threading.Condition(self._lock)
            self._idle.append(me)
            try:
                while True:
                    if self.closed:
                        return None
                    if self._heap and self._next() is me:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0 or self.draining:
                            due, _, put, blade = heapq.heappop(self._heap)
                            return max(due, put), blade
                        me.wait(wait)
                    else:
                        me.wait()
            finally:
                self._idle.remove(me)
                if self._idle and (self._heap or self.closed):
                    self._next().notify()  # the next in turn watches the heap now

    def _wake_all(self) -> None:
        for c in self._idle:
            c.notify()

    def drain(self) -> None:
        with self._lock:
            self.draining = True
            self._wake_all()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wake_all()


@dataclasses.dataclass
class _Tally:
    """One worker's counts (merged at the end: no lock per step)."""

    claim_samples: list = dataclasses.field(default_factory=list)  # (start, seconds, claimed)
    hb_samples: list = dataclasses.field(default_factory=list)  # (start, seconds)
    lags: list = dataclasses.field(default_factory=list)  # (start, seconds late)
    claimed: list = dataclasses.field(default_factory=list)  # (jid, cid) of every claim
    outcomes: Counter = dataclasses.field(default_factory=Counter)
    revoked: int = 0
    reruns: int = 0
    hb_gap_max: float = 0.0
    gave_up: int = 0
    beats: int = 0  # heartbeats sent to the engine as datagrams


@dataclasses.dataclass
class FarmResult:
    blades: int
    pool: int
    hold: float
    window: float  # seconds measured
    claims: int  # commands claimed in the window
    cycles: int  # claim calls in the window
    claim_latencies: list[float]  # seconds, claim calls started in the window
    heartbeat_latencies: list[float]
    lags: list[float]  # seconds steps started after they were due, in the window
    server_cpu: float | None  # seconds, in the window
    backends_cpu: float | None  # seconds of the pool's and the engine's backends, in the window
    sim_cpu: float  # seconds of this process, in the window
    connections_max: int
    total_claims: int  # the whole run, drain included
    finished: int  # reports answered 'done'
    outcomes: dict[str, int]
    revoked: int
    reruns: int
    gave_up: int  # steps still aborted by deadlocks after db.rerun's attempts (tried again)
    heartbeat_gap_max: float  # seconds between two heartbeats of one blade, at most (the lease is 30 s)
    beats: int  # idle heartbeats sent to the engine as datagrams, the whole run
    beat_latencies: list[float]  # seconds from a beat to its answer, beats sent in the window
    beat_answers: dict[str, int]  # the engine's answers (ok, work, check), the whole run
    beat_batches: int  # the engine's statements that wrote them, the whole run
    sim_duplicates: list[tuple[int, int]]  # (jid, cid) claimed twice in this run

    @property
    def claims_per_s(self) -> float:
        return self.claims / self.window if self.window > 0 else 0.0


class Farm:
    """N simulated blades over a pool of K connections; see the module docstring."""

    def __init__(self, settings, blades: int, *, pool: int | None = None, slots: int = 4, hold: float = 0.0,
                 heartbeat: float = BLADE_HEARTBEAT, poll: float = BLADE_POLL,
                 idle_heartbeat: float = BLADE_IDLE_HEARTBEAT, wakeups: str = "listen",
                 provides: tuple[str, ...] = ("PixarRender",), prefix: str = "sim", engine: bool = True,
                 data_dir: Path | None = None, seed: int = 0, blade_settings=None, lifo: bool = True,
                 beats: bool | None = None) -> None:
        self.settings = settings
        # one settings per blade (taken in turn), or None: blades share the pool's connections
        self.blade_settings = list(blade_settings) if blade_settings is not None else None
        self.pool = pool or min(blades, DEFAULT_POOL)
        self.hold = hold
        self.heartbeat = heartbeat
        self.idle_heartbeat = max(heartbeat, idle_heartbeat)
        # with engine wake-ups an idle blade polls when a heartbeat says there is work, at most every
        # few idle heartbeats (blade/worker.py)
        self.idle_poll = ENGINE_POLL_BEATS * self.idle_heartbeat if wakeups == "engine" else poll
        self.ask = wakeups == "engine"  # heartbeats of blades that would claim ask whether there is work
        self.poll = poll
        self.engine = engine
        # idle heartbeats as datagrams to the engine: with engine wake-ups, unless told not to
        self.beats = (wakeups == "engine" and engine) if beats is None else beats
        self._beats: wakeups.Beats | None = None
        self._ear: object = None  # the blades' one UDP socket: beats leave it, answers come back to it
        self._by_id: dict[str, SimBlade] = {}
        self._beat_samples: list[tuple[float, float]] = []  # (sent, seconds to the answer)
        self.data_dir = data_dir
        self.rng = random.Random(seed)
        self.host = f"{prefix}host"
        self.blades = [SimBlade(f"{prefix}{i}", tuple(provides), slots,
                                settings=self.blade_settings[i % len(self.blade_settings)]
                                if self.blade_settings else None) for i in range(blades)]
        self.sched = Scheduler(lifo)
        self.stopping = False
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._gone = 0
        self.finished = 0  # reports answered 'done', live (the test's stop condition)
        self.window = (float("inf"), float("inf"))

    # -- the calls, each run again when PostgreSQL aborts it to break a deadlock (as blades do)

    @staticmethod
    def _call(tally: _Tally, fn, conn, *args, **kw):
        from tractorcli.db.rerun import rerun

        attempts = 0

        def once():
            nonlocal attempts
            attempts += 1
            return fn(conn, *args, **kw)

        try:
            return rerun(once)
        finally:
            tally.reruns += attempts - 1

    # -- one blade's steps

    def _register(self, conn, b: SimBlade) -> None:
        from tractorcli.db import dispatch
        from tractorcli.service import BladeFacts

        b.bladeid = dispatch.register(conn, dispatch.BladeInfo(
            name=b.name, provides=b.provides, numslots=b.slots, profile="farmsim", osname="Linux",
            numcpu=b.slots, metrics={"nCPUs": b.slots}))
        b.svc = dispatch.ServiceCache()
        b.facts = BladeFacts(provides=frozenset(b.provides), hostname=b.name, addresses=("127.0.0.1",),
                             profile="farmsim", metrics={"sa": float(b.slots)})
        b.svc.matching(conn, b.facts, refresh=True)

    def _record(self, tally: _Tally, outcomes: list[str]) -> None:
        done = 0
        for outcome in outcomes:
            tally.outcomes[outcome] += 1
            done += outcome == "done"
        if done:
            with self._lock:
                self.finished += done

    def _heartbeat(self, conn, tally: _Tally, b: SimBlade, now: float) -> None:
        from tractorcli.db import dispatch

        t0 = time.monotonic()
        if b.last_hb is not None:
            tally.hb_gap_max = max(tally.hb_gap_max, t0 - b.last_hb)
        b.last_hb = t0
        if self._beat(tally, b, now):
            return
        b.check = False
        b.beat_sent = None
        # a blade holding nothing would claim: with engine wake-ups it asks (its cached expressions)
        svcids = b.svc.matching(None, b.facts, refresh=False) if self.ask and not b.held else None
        keep = self._call(tally, dispatch.heartbeat, conn, b.bladeid, [c.key for c in b.held],
                          metrics={"nCPUs": b.slots, "sa": 0.0}, loadavg=0.0, availmemory=64.0, availdisk=500.0,
                          reload=True, svcids=svcids, host=self.host, svc=b.svc)
        tally.hb_samples.append((t0, time.monotonic() - t0))
        b.work_seen = keep.work
        b.reload = keep.reload
        kept = [c for c in b.held if c.key in keep]
        tally.revoked += len(b.held) - len(kept)
        b.held = kept
        b.next_hb = now + (self.heartbeat if b.held else self.idle_heartbeat)

    def _beat(self, tally: _Tally, b: SimBlade, now: float) -> bool:
        """An idle blade's heartbeat as a datagram to the engine, as a real blade sends it
        (Blade.beat); False when it goes through the database instead."""
        if (self._beats is None or b.held or b.check or b.svc.holes()
                or (b.beat_sent is not None and now - b.beat_sent >= wakeups.BEAT_ANSWER_WAIT)):
            return False
        svcids = b.svc.matching(None, b.facts, refresh=False)
        data = wakeups.beat_datagram(b.bladeid, reload=b.reload, svcids=svcids, host=self.host, after=b.svc.last,
                                     metrics={"nCPUs": b.slots, "sa": float(b.slots)}, loadavg=0.0,
                                     availmemory=64.0, availdisk=500.0)
        if data is None:
            return False
        b.beat_asked = True
        if b.beat_sent is None:
            b.beat_sent = time.monotonic()
        self._ear.sendto(data, ("127.0.0.1", self._beats.port))
        tally.beats += 1
        b.next_hb = now + self.idle_heartbeat
        return True

    def _hear(self, stop: threading.Event) -> None:
        """The engine's answers to every blade's beats (one socket for the farm)."""
        import socket

        self._ear.settimeout(0.2)
        while not stop.is_set():
            try:
                data = self._ear.recv(256)
            except socket.timeout:
                continue
            except OSError:
                return
            answer = wakeups.parse_answer(data)
            b = self._by_id.get(answer[1]) if answer else None
            if b is None:
                continue
            sent, b.beat_sent = b.beat_sent, None
            if sent is not None:
                self._beat_samples.append((sent, time.monotonic() - sent))
            if answer[0] == "check":
                b.check = True
            else:
                b.work_seen = (answer[0] == "work") if b.beat_asked else None

    def _cycle(self, conn, tally: _Tally, b: SimBlade, now: float) -> None:
        from tractorcli.db import dispatch

        b.work_seen = False  # told: claiming now (the next heartbeat asks again)
        asked = time.monotonic()
        svcids = b.svc.matching(conn, b.facts)  # new expressions at most once a second
        t0 = time.monotonic()
        if b.held:
            reports = [(c, 0, self.hold, 0.0, 0.0, False) for c in b.held]
            outcomes, claims = self._call(tally, dispatch.finish_and_claim, conn, b.bladeid, reports, svcids,
                                          self.host, b.slots)
            took = time.monotonic() - t0
            self._record(tally, outcomes)
        else:
            claims = self._call(tally, dispatch.claim, conn, b.bladeid, svcids, self.host, b.slots)
            took = time.monotonic() - t0
            if not claims and b.svc.refresh(conn, unless_since=asked):  # a job with an expression it had not seen
                svcids = b.svc.matching(conn, b.facts, refresh=False)
                t1 = time.monotonic()
                claims = self._call(tally, dispatch.claim, conn, b.bladeid, svcids, self.host, b.slots)
                took += time.monotonic() - t1
        tally.claim_samples.append((t0, took, len(claims)))
        tally.claimed.extend((c.jid, c.cid) for c in claims)
        end = time.monotonic()
        b.held = claims
        b.held_until = end + self.hold
        # the real blade's back-off after an empty claim (Worker._after_claim)
        if claims:
            b.last_work = end
            b.retry_delay = RETRY_FIRST
            b.next_claim = end + self.idle_poll
            b.next_hb = min(b.next_hb, end + self.heartbeat)
        elif end - b.last_work < 2 * self.poll:
            b.next_claim = end + b.retry_delay
            b.retry_delay = min(b.retry_delay * 2, self.poll)
        else:
            b.next_claim = end + self.idle_poll

    def _leave(self, conn, tally: _Tally, b: SimBlade) -> None:
        from tractorcli.db import dispatch

        if b.held:
            reports = [(c, 0, self.hold, 0.0, 0.0, False) for c in b.held]
            outcomes, _ = self._call(tally, dispatch.finish_and_claim, conn, b.bladeid, reports, [], self.host, 0)
            self._record(tally, outcomes)
            b.held = []
        self._call(tally, dispatch.blade_exit, conn, b.bladeid, handback=False)
        b.gone = True
        with self._lock:
            self._gone += 1
            last = self._gone == len(self.blades)
        if last:
            self.sched.close()

    # -- threads

    def _worker(self, conn, tally: _Tally) -> None:
        from tractorcli.db.rerun import CONFLICTS

        try:
            while True:
                got = self.sched.get()
                if got is None:
                    return
                since, b = got
                now = time.monotonic()
                try:
                    use = b.conn or conn
                    if self.sched.draining:
                        self._leave(use, tally, b)
                        continue
                    tally.lags.append((now, now - since))
                    if now >= b.next_hb:
                        self._heartbeat(use, tally, b, now)
                        if not b.held and b.due() <= now:  # its poll right after (the blade's loop turn)
                            self._cycle(use, tally, b, now)
                    else:
                        self._cycle(use, tally, b, now)
                except CONFLICTS:
                    # aborted to break a deadlock ATTEMPTS times running: nothing of the step
                    # happened; counted, and tried again shortly (a real blade stops here: the
                    # error leaves its loop)
                    tally.gave_up += 1
                    self.sched.put(time.monotonic() + GIVE_UP_PAUSE, b)
                    continue
                self.sched.put(b.due(), b)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            with self._lock:
                self.errors.append(exc)
            self.sched.close()

    def _engine(self, conn, stop: threading.Event) -> None:
        from tractorcli.db import dispatch
        from tractorcli.db.rerun import rerun

        try:
            while not stop.wait(ENGINE_INTERVAL):
                rerun(dispatch.housekeep, conn)
        except BaseException as exc:  # noqa: BLE001
            with self._lock:
                self.errors.append(exc)
            self.sched.close()

    def _registrar(self, conn, blades: list[SimBlade]) -> None:
        from tractorcli.db.connection import BLADE, connect

        try:
            for b in blades:
                if b.settings is not None:
                    b.conn = connect(b.settings, autocommit=True, purpose=BLADE)
                self._register(b.conn or conn, b)
        except BaseException as exc:  # noqa: BLE001
            with self._lock:
                self.errors.append(exc)

    # -- the run

    def run(self, *, seconds: float | None = None, warmup: float = 0.0,
            until: Callable[[Farm], bool] | None = None, timeout: float = 600.0,
            log: Callable[[str], None] | None = None) -> FarmResult:
        """Register the blades, run them for `warmup` + `seconds` (or until `until(farm)` is true,
        at most `timeout` seconds), let every blade report what it holds and leave; the figures
        of the window after the warm-up."""
        from tractorcli.db.connection import connect

        conns = []
        tallies = [_Tally() for _ in range(self.pool)]
        try:
            for _ in range(self.pool):
                # through the pooler every blade has its own connection: the workers none
                conns.append(connect(self.settings, autocommit=True) if self.blade_settings is None else None)
            engine_conn = connect(self.settings, autocommit=True) if self.engine else None
            monitor = connect(self.settings, autocommit=True)
            conns += [c for c in (engine_conn, monitor) if c is not None]
            backends = [c.info.backend_pid for c in conns if c is not None and c is not monitor]
            stop_engine = threading.Event()
            threads = []
            if self.beats:
                backends.append(self._start_beats(stop_engine, threads))
            # registration, spread over the pool's connections
            t_reg = time.monotonic()
            regs = [threading.Thread(target=self._registrar, args=(conns[k], self.blades[k::self.pool]), daemon=True)
                    for k in range(self.pool)]
            for t in regs:
                t.start()
            for t in regs:
                t.join()
            if self.errors:
                raise BenchError(f"registering the blades failed: {self.errors[0]!r}") from self.errors[0]
            self._by_id = {str(b.bladeid): b for b in self.blades}
            if log:
                over = f"over {self.pool} connections" if self.blade_settings is None else \
                    f"each on its own connection through the pooler, {self.pool} threads"
                log(f"{len(self.blades)} blades registered in {time.monotonic() - t_reg:.1f} s {over}")
            start = time.monotonic()
            for b in self.blades:
                b.next_hb = start + self.rng.uniform(0, self.heartbeat)
                b.next_claim = start + (self.rng.uniform(0, self.hold) if self.hold > 0 else 0.0)
                self.sched.put(b.due(), b)
            threads = [threading.Thread(target=self._worker, args=(conns[k], tallies[k]), daemon=True,
                                        name=f"pool{k}") for k in range(self.pool)] + threads
            if engine_conn is not None:
                threads.append(threading.Thread(target=self._engine, args=(engine_conn, stop_engine), daemon=True,
                                                name="engine"))
            for t in threads:
                if t.ident is None:  # (the engine's beats and the blades' ear run already)
                    t.start()
            w0 = start + warmup
            deadline = start + (warmup + seconds if seconds is not None else timeout)
            measuring = False
            cpu0 = be0 = sim0 = None
            conn_max = 0
            next_sample = start
            while True:
                now = time.monotonic()
                if self.errors:
                    break
                if not measuring and now >= w0:
                    measuring = True
                    cpu0 = server_cpu(self.data_dir) if self.data_dir else None
                    be0 = procs_cpu(backends) if self.data_dir else None
                    sim0 = time.process_time()
                    w0 = now
                if until is not None and until(self):
                    break
                if now >= deadline:
                    if seconds is None:
                        raise BenchError(f"the farm did not get there within {timeout} s "
                                         f"({self.finished} commands finished)")
                    break
                if measuring and now >= next_sample:
                    next_sample = now + SAMPLE_EVERY
                    conn_max = max(conn_max, monitor.execute(_CONNECTIONS).fetchone()["n"])
                time.sleep(min(0.01, max(0.0, deadline - now)))
            w1 = time.monotonic()
            if not measuring:  # `until` was true before the warm-up ended
                w0, cpu0, be0, sim0 = start, None, None, time.process_time()
            cpu1 = server_cpu(self.data_dir) if self.data_dir and cpu0 is not None else None
            be1 = procs_cpu(backends) if self.data_dir and be0 is not None else None
            sim1 = time.process_time()
            conn_max = max(conn_max, monitor.execute(_CONNECTIONS).fetchone()["n"])
            self.window = (w0, w1)
            # every blade reports what it holds and leaves
            self.stopping = True
            self.sched.drain()
            for t in threads[:self.pool]:
                t.join(timeout)
            stop_engine.set()
            for t in threads[self.pool:]:
                t.join(30)
            if self.errors:
                exc = self.errors[0]
                raise BenchError(f"the farm stopped on an error: {exc!r}") from exc
            if any(t.is_alive() for t in threads):
                raise BenchError("the farm's threads did not end")
        finally:
            self.sched.close()
            stop_engine.set()
            if self._ear is not None:
                self._ear.close()
            for c in [c for c in conns if c is not None] + [b.conn for b in self.blades if b.conn is not None]:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass

        def inside(t: float) -> bool:
            return w0 <= t < w1

        samples = [s for tl in tallies for s in tl.claim_samples if inside(s[0])]
        claimed = [k for tl in tallies for k in tl.claimed]
        seen: set = set()
        dups = []
        for k in claimed:
            if k in seen:
                dups.append(k)
            seen.add(k)
        outcomes: Counter = Counter()
        for tl in tallies:
            outcomes.update(tl.outcomes)
        return FarmResult(
            blades=len(self.blades), pool=self.pool, hold=self.hold, window=w1 - w0,
            claims=sum(s[2] for s in samples), cycles=len(samples), claim_latencies=[s[1] for s in samples],
            heartbeat_latencies=[s[1] for tl in tallies for s in tl.hb_samples if inside(s[0])],
            lags=[s[1] for tl in tallies for s in tl.lags if inside(s[0])],
            server_cpu=(cpu1 - cpu0) if cpu1 is not None else None,
            backends_cpu=(be1 - be0) if be1 is not None else None, sim_cpu=sim1 - sim0,
            connections_max=conn_max, total_claims=len(claimed), finished=outcomes.get("done", 0),
            outcomes=dict(outcomes), revoked=sum(tl.revoked for tl in tallies),
            reruns=sum(tl.reruns for tl in tallies), gave_up=sum(tl.gave_up for tl in tallies),
            heartbeat_gap_max=max(tl.hb_gap_max for tl in tallies),
            beats=sum(tl.beats for tl in tallies),
            beat_latencies=[s[1] for s in self._beat_samples if inside(s[0])],
            beat_answers=dict(self._beats.answers) if self._beats else {},
            beat_batches=self._beats.batches if self._beats else 0,
            sim_duplicates=dups[:10])

    def _start_beats(self, stop: threading.Event, threads: list) -> int:
        """The engine's beats (wakeups.Beats on a port of its own) and the blades' one socket,
        each in a thread (appended to `threads`, started); the backend pid of the beats'
        connection, once it has published where it takes them."""
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self._beats = wakeups.Beats(self.settings, sock, lambda text: None)
        self._ear = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._ear.bind(("127.0.0.1", 0))
        for target, name in ((self._beats.run, "beats"), (self._hear, "ear")):
            t = threading.Thread(target=target, args=(stop,), daemon=True, name=name)
            t.start()
            threads.append(t)
        deadline = time.monotonic() + 30
        while self._beats.backend_pid is None:
            if time.monotonic() > deadline:
                raise BenchError("the engine's beats did not connect to the database")
            time.sleep(0.01)
        return self._beats.backend_pid


# --- the checks -------------------------------------------------------------------------------------


def check_exactly_once(settings, expected: int, result: FarmResult | None = None) -> None:
    """Every command claimed was finished exactly once: `expected` commands (and one-command
    tasks) done, as many invocations, none twice for one command, none running, none failed,
    and the audit clean.  Raises BenchError saying what is wrong."""
    from tractorcli.db.connection import connect

    problems = []
    if result is not None:
        if result.sim_duplicates:
            problems.append(f"the simulator was handed these commands twice: {result.sim_duplicates}")
        bad = {k: v for k, v in result.outcomes.items() if k != "done"}
        if bad:
            problems.append(f"reports not answered 'done': {bad}")
        if result.revoked:
            problems.append(f"{result.revoked} held command(s) taken back by a heartbeat")
        if result.finished != result.total_claims:
            problems.append(f"{result.total_claims} commands claimed, {result.finished} finished")
    with connect(settings, autocommit=True) as conn:
        dups = conn.execute(_DUPLICATES).fetchall()
        if dups:
            problems.append("commands with more than one invocation: "
                            + ", ".join(f"J{r['jid']} C{r['cid']} x{r['n']}" for r in dups))
        inv = conn.execute(_INVOCATIONS).fetchone()
        if inv["total"] != expected:
            problems.append(f"{inv['total']} invocations, {expected} expected")
        if inv["running"]:
            problems.append(f"{inv['running']} invocations still running")
        if inv["failed"]:
            problems.append(f"{inv['failed']} invocations without exit code 0")
        if inv["lapsed"]:
            problems.append(f"{inv['lapsed']} invocations lapsed (a blade's heartbeat came later than its lease)")
        done = conn.execute(_DONE).fetchone()
        if done["commands"] != expected or done["tasks"] != expected:
            problems.append(f"{done['commands']} commands and {done['tasks']} tasks done, {expected} expected")
        audit = conn.execute(_AUDIT).fetchall()
        if audit:
            problems.append(f"the audit found {len(audit)}: "
                            + "; ".join(f"{r['invariant']}: {r['ids']}: {r['detail']}" for r in audit[:5]))
    if problems:
        raise BenchError("not exactly once: " + "; ".join(problems))
