"""soak: 8 blade slots run 100,000 short commands from 200 jobs under random operations.

200 jobs x 500 one-command tasks (`/bin/true`, the dispatch benchmark's
command) are spooled, 20 at first and the next one whenever fewer than 20
have work left (--ahead; 0 spools all at once, and the queue only drains).
2 real `tractor-blade` processes of 4 slots run them while housekeeping
runs each second (as `tractor-engine`'s does) and an operator thread
retries, skips, kills, pauses, unpauses, restarts (at most 1 job in 20)
and deletes (1 in 40) at random (tractorcli.db.dispatch and
tractorcli.db.ops, 0-50 ms between operations), recording what each
operation says it did.  The operator stops when every job is spooled and
none that is not paused has anything left to run; then every job is
unpaused and the run waits until nothing is left.

Reconciliation, exact, against the operator's record: for every job not
deleted its counters equal its tasks' states and nothing is blocked, ready
or active; a task is `error` exactly when the last thing that happened to
it was a kill that took effect (its command `error`, no invocation
current); `done` with its command `skipped` (no invocation current) exactly
when it was a skip; otherwise `done` with its command `done`, whose latest
invocation is the current one and exited 0; a task nothing touched ran
exactly once.  No invocation is left running, no blade slot held, and
`tractorcli.db.audit.audit()` is empty.  Then the killed tasks are retried
and every job must finish with every task done.

Bloat: every ~10 s the sizes of the hot tables (ready, invocations,
commands, tasks, jobs, blades: pg_total_relation_size, heap and indexes),
their dead tuples and autovacuum runs (pg_stat_user_tables), the oldest
open transaction and the autovacuum workers at work are sampled; reported
per table: start (after the first spool), peak, final, and the growth over
the second half; for `ready` and `blades` (rows that only churn) the peak
against the size after the first 10 % of the run.

    python bench/run.py soak                          # full size, into bench/results/latest.json
    python bench/bench_soak.py --jobs 10 --tasks 50   # a small run (JSON: bench/results/soak-10x50.json)
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from _common import BenchError, Site, clean_env, figure, log, pick_port
from bench_dispatch import blade_argv, spool

FULL = {"jobs": 200, "tasks": 500, "blades": 2, "slots": 4, "seed": 2026, "pause": 0.05, "ahead": 20}
QUICK = {"jobs": 20, "tasks": 100, "blades": 2, "slots": 4, "seed": 2026, "pause": 0.05, "ahead": 5}
SIZE: dict = {}  # set by the command line (python bench/bench_soak.py --jobs ...) before run.main runs us

HOT = ("ready", "invocations", "commands", "tasks", "jobs", "blades")
CHURN = ("ready", "blades")  # rows that come and go (or are rewritten) but do not accumulate
SAMPLE_EVERY = 10.0
KINDS = ("retry", "skip", "kill", "pause", "unpause", "restart", "delete")
WEIGHTS = (30, 20, 15, 10, 10, 5, 1)  # as the in-suite soak (tests/faults/test_soak.py)

# The benchmark's own SQL (reads only, parameters bound): named here, as bench_dispatch keeps its own.
SQL = {
    "running": "SELECT jid, tid FROM invocations WHERE current AND stoptime IS NULL",
    "with_work": """
        SELECT count(*) AS n FROM jobs
        WHERE jid = ANY(%(jids)s) AND deletetime IS NULL AND numblocked + numready + numactive > 0""",
    "progress": """
        SELECT coalesce(sum(numblocked + numready + numactive), 0) AS left_all,
               coalesce(sum(numblocked + numready + numactive) FILTER (WHERE pausetime IS NULL), 0) AS left_unpaused,
               coalesce(sum(numdone), 0) AS done, coalesce(sum(numerror), 0) AS error,
               count(*) FILTER (WHERE pausetime IS NOT NULL) AS paused
        FROM jobs WHERE jid = ANY(%(jids)s) AND deletetime IS NULL""",
    "counts": """
        SELECT (SELECT count(*) FROM invocations WHERE jid = ANY(%(jids)s)) AS invocations,
               (SELECT count(*) FROM invocations WHERE jid = ANY(%(jids)s) AND stoptime IS NULL) AS running,
               (SELECT count(*) FROM ready WHERE jid = ANY(%(jids)s)) AS ready""",
    "sizes": """
        SELECT s.relname AS rel, pg_total_relation_size(s.relid) AS total, pg_relation_size(s.relid) AS heap,
               pg_indexes_size(s.relid) AS indexes, s.n_live_tup AS live, s.n_dead_tup AS dead,
               s.autovacuum_count AS autovacuums, s.autoanalyze_count AS autoanalyzes, s.vacuum_count AS vacuums,
               s.last_autovacuum, s.n_tup_upd AS upd, s.n_tup_hot_upd AS hot_upd, s.n_tup_del AS del,
               s.n_tup_ins AS ins
        FROM pg_stat_user_tables s WHERE s.relname = ANY(%(tables)s)""",
    "horizon": """
        SELECT extract(epoch FROM max(now() - xact_start) FILTER (WHERE backend_type = 'client backend'
                                                               AND pid <> pg_backend_pid()))::float AS oldest_xact_s,
               max(age(backend_xmin)) FILTER (WHERE pid <> pg_backend_pid()) AS oldest_xmin_age,
               count(*) FILTER (WHERE backend_type = 'autovacuum worker') AS av_workers,
               (SELECT string_agg(c.relname || ':' || p.phase, ',') FROM pg_stat_progress_vacuum p
                JOIN pg_class c ON c.oid = p.relid) AS vacuuming
        FROM pg_stat_activity""",
    "settings": """
        SELECT name, setting, unit FROM pg_settings
        WHERE name LIKE 'autovacuum%%' OR name IN ('shared_buffers', 'log_autovacuum_min_duration', 'vacuum_cost_limit',
                                                   'vacuum_cost_delay', 'maintenance_work_mem', 'track_counts')
        ORDER BY name""",
    "reloptions": "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%(tables)s) AND relkind = 'r'",
    "jobs": """
        SELECT jid, phase, numtasks, numblocked, numready, numactive, numerror, numdone, pausetime, deletetime
        FROM jobs WHERE jid = ANY(%(jids)s)""",
    "tasks": "SELECT jid, tid, state, attached FROM tasks WHERE jid = ANY(%(jids)s)",
    "commands": """
        SELECT c.jid, c.tid, c.cid, c.state, count(i.iid) AS runs,
               count(*) FILTER (WHERE i.current) AS current,
               max(i.iid) AS last_iid, max(i.iid) FILTER (WHERE i.current) AS current_iid,
               coalesce(bool_or(i.iid IS NOT NULL AND i.stoptime IS NULL), false) AS running,
               (array_agg(i.rcode ORDER BY i.iid DESC))[1] AS last_rcode
        FROM commands c LEFT JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid
        WHERE c.jid = ANY(%(jids)s) AND c.runtype = 'regular'
        GROUP BY c.jid, c.tid, c.cid""",
    "invocations": """
        SELECT count(*) AS total, count(*) FILTER (WHERE rcode = 0) AS exited_0,
               count(*) FILTER (WHERE rcode IS NOT NULL AND rcode <> 0) AS exited_other,
               count(*) FILTER (WHERE rcode IS NULL AND stoptime IS NOT NULL) AS stopped,
               count(*) FILTER (WHERE stoptime IS NULL) AS running
        FROM invocations WHERE jid = ANY(%(jids)s)""",
    "error_tasks": "SELECT jid, tid FROM tasks WHERE jid = ANY(%(jids)s) AND state = 'error'",
    "slots": "SELECT coalesce(sum(slotsinuse), 0) AS n FROM blades",
    "ready_of": "SELECT count(*) AS n FROM ready WHERE jid = ANY(%(jids)s)",
}


# --- the operator ---------------------------------------------------------------------


class Operator(threading.Thread):
    """Random operations on the jobs, each recorded with what the database says it did."""

    def __init__(self, settings, jids: list[int], tasks: int, seed: int, budget: dict, pause: float):
        super().__init__(name="operator", daemon=True)
        self.settings, self.jids, self.ntasks = settings, jids, tasks  # jids: the main thread appends as it spools
        self.rng = random.Random(seed)
        self.budget = budget  # {"restart": n, "delete": n}
        self.pause = pause  # at most this long between two operations (uniform)
        self.kind: str | None = None
        self.stop = threading.Event()
        self.seq = 0
        self.deleted: set[int] = set()
        self.paused: set[int] = set()
        self.last: dict[tuple[int, int], tuple[int, str]] = {}  # (jid, tid) -> (seq, kind) of the last effect
        self.restarted: dict[int, int] = {}  # jid -> seq of its last restart
        self.history: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
        self.killed: set[tuple[int, int]] = set()  # killed and not acted on since
        self.asked: Counter = Counter()
        self.took: Counter = Counter()  # operations that changed something
        self.touched: Counter = Counter()  # tasks (jobs) acted on, per kind
        self.failed: Counter = Counter()
        self.failures: list[str] = []
        self.secs: Counter = Counter()  # time spent in the operations, per kind
        self.error: BaseException | None = None

    def live(self) -> list[int]:
        return [j for j in self.jids if j not in self.deleted]

    def _running(self, conn) -> list[tuple[int, int]]:
        return [(r["jid"], r["tid"]) for r in conn.execute(SQL["running"]).fetchall() if r["jid"] not in self.deleted]

    def _targets(self, conn, kind: str) -> tuple[int, list[int]]:
        """A job and 1-3 of its tasks: running ones (a kill needs one; 30 % of retries and skips), killed ones
        (20 % of retries: some are left in error at the end), or any."""
        rng = self.rng
        pick = rng.random()
        if kind == "kill" or (kind in ("retry", "skip") and pick < 0.3):
            running = self._running(conn)
            if running:
                jid, tid = rng.choice(running)
                return jid, [tid]
        if kind == "retry" and pick < 0.5 and self.killed:
            jid, tid = rng.choice(sorted(self.killed))
            return jid, [tid]
        jid = rng.choice(self.live())
        return jid, sorted({rng.randint(1, self.ntasks) for _ in range(rng.randint(1, 3))})

    def _mark(self, jid: int, tids, kind: str) -> None:
        for tid in tids:
            self.last[(jid, tid)] = (self.seq, kind)
            self.history[(jid, tid)].append((self.seq, kind))
            if kind == "kill":
                self.killed.add((jid, tid))
            else:
                self.killed.discard((jid, tid))

    def one(self, conn) -> None:
        from tractorcli.db import dispatch as d
        from tractorcli.db import ops

        rng = self.rng
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind in self.budget and self.budget[kind] <= 0:
            kind = "pause" if kind == "delete" else "retry"
        self.seq += 1
        self.kind = kind
        self.asked[kind] += 1
        if kind in ("retry", "skip", "kill"):
            jid, tids = self._targets(conn, kind)
            done = {"retry": d.retry, "skip": d.skip, "kill": d.kill}[kind](conn, jid, tids)
            self._mark(jid, done, kind)
            self.touched[kind] += len(done)
            self.took[kind] += bool(done)
        elif kind == "pause":
            jid = rng.choice(self.live())
            if ops.pause(conn, jid):
                self.paused.add(jid)
                self.took[kind] += 1
        elif kind == "unpause":
            jid = rng.choice(sorted(self.paused) or self.live())
            if ops.unpause(conn, jid):
                self.paused.discard(jid)
                self.took[kind] += 1
        elif kind == "restart":
            jid = rng.choice(self.live())
            tids = ops.restart(conn, jid)
            self.budget[kind] -= 1
            self.restarted[jid] = self.seq
            self.killed = {k for k in self.killed if k[0] != jid}
            for tid in tids:
                self.history[(jid, tid)].append((self.seq, "restart"))
            self.touched[kind] += len(tids)
            self.took[kind] += bool(tids)
        elif kind == "delete":
            live = self.live()
            if len(live) <= 1:
                return
            jid = rng.choice(live)
            ops.delete(conn, jid)
            self.budget[kind] -= 1
            self.deleted.add(jid)
            self.paused.discard(jid)
            self.killed = {k for k in self.killed if k[0] != jid}
            self.took[kind] += 1

    def run(self) -> None:
        import psycopg

        from tractorcli.db.connection import connect

        try:
            with connect(self.settings, autocommit=True) as conn:
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        self.kind = None
                        self.one(conn)
                    except psycopg.Error as exc:  # one statement, autocommit: it did nothing; go on
                        self.failed[exc.__class__.__name__] += 1
                        if len(self.failures) < 20:
                            self.failures.append(f"seq {self.seq}: {exc.__class__.__name__}: {str(exc).strip()[:300]}")
                        if conn.closed:
                            raise
                    self.secs[self.kind] += time.perf_counter() - t0
                    self.stop.wait(self.rng.uniform(0.0, self.pause))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def expected(self, jid: int, tid: int) -> str:
        """What the task's last effect says it ends as: 'kill', 'skip' or 'run' (retry, restart, nothing)."""
        seq, kind = self.last.get((jid, tid), (0, "run"))
        if self.restarted.get(jid, -1) > seq:
            return "run"
        return kind if kind in ("kill", "skip") else "run"

    def untouched(self, jid: int, tid: int) -> bool:
        return (jid, tid) not in self.history and jid not in self.restarted


class Housekeeper(threading.Thread):
    """What tractor-engine's loop does each second: lost blades' work back, finished jobs on."""

    def __init__(self, settings):
        super().__init__(name="housekeeper", daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.requeued = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from tractorcli.db import dispatch as d
        from tractorcli.db.connection import connect

        try:
            with connect(self.settings, autocommit=True) as conn:
                while not self.stop.is_set():
                    self.requeued += d.housekeep(conn)[0]
                    self.stop.wait(1.0)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc


# --- sampling ---------------------------------------------------------------------------


def sample(conn, t: float) -> dict:
    rows = conn.execute(SQL["sizes"], {"tables": list(HOT)}).fetchall()
    h = conn.execute(SQL["horizon"]).fetchone()
    return {"t": round(t, 1), "tables": {r["rel"]: {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                                     for k, v in r.items() if k != "rel"} for r in rows},
            "oldest_xact_s": round(h["oldest_xact_s"] or 0.0, 2), "oldest_xmin_age": h["oldest_xmin_age"],
            "av_workers": h["av_workers"], "vacuuming": h["vacuuming"]}


def bloat_report(samples: list[dict], start: dict, wall: float) -> dict:
    """Per table: start, peak, final size and dead tuples, autovacuum runs; churn tables bounded?"""
    out = {}
    t10 = 0.1 * wall
    after10 = next((s for s in samples if s["t"] >= t10), samples[-1])
    half = next((s for s in samples if s["t"] >= 0.5 * wall), samples[-1])
    for rel in HOT:
        series = [s["tables"][rel] for s in samples if rel in s["tables"]]
        if not series:
            continue
        peak = max(series, key=lambda r: r["total"])
        final = series[-1]
        d = {"start_bytes": start["tables"][rel]["total"], "peak_bytes": peak["total"],
             "peak_heap_bytes": max(r["heap"] for r in series), "peak_index_bytes": max(r["indexes"] for r in series),
             "final_bytes": final["total"], "final_heap_bytes": final["heap"], "final_index_bytes": final["indexes"],
             "dead_peak": max(r["dead"] for r in series), "dead_final": final["dead"], "live_final": final["live"],
             "autovacuums": final["autovacuums"] - start["tables"][rel]["autovacuums"],
             "autoanalyzes": final["autoanalyzes"] - start["tables"][rel]["autoanalyzes"],
             "last_autovacuum": final["last_autovacuum"],
             "half_bytes": half["tables"][rel]["total"],
             "second_half_growth": round(final["total"] / max(half["tables"][rel]["total"], 1), 3),
             "updates": final["upd"] - start["tables"][rel]["upd"],
             "hot_update_pct": round(100.0 * (final["hot_upd"] - start["tables"][rel]["hot_upd"])
                                     / max(final["upd"] - start["tables"][rel]["upd"], 1), 1)}
        if rel in CHURN:
            base = after10["tables"][rel]["total"]
            d["after_10pct_bytes"] = base
            d["peak_over_10pct"] = round(peak["total"] / max(base, 1), 2)
        out[rel] = d
    return out


def print_bloat(report: dict) -> None:
    def mb(x: int) -> str:
        return f"{x / 1e6:8.2f}"

    log("bloat (MB; dead tuples; autovacuum runs during the run):")
    print(f"    {'table':12} {'start':>8} {'peak':>8} {'final':>8} {'heap/idx final':>17} {'dead peak':>10} "
          f"{'dead end':>9} {'av':>4} {'HOT%':>5} {'2nd half':>8}  bounded", file=sys.stderr)
    for rel, d in report.items():
        bounded = f"peak/10% {d['peak_over_10pct']}" if "peak_over_10pct" in d else ""
        print(f"    {rel:12} {mb(d['start_bytes'])} {mb(d['peak_bytes'])} {mb(d['final_bytes'])} "
              f"{mb(d['final_heap_bytes'])}/{mb(d['final_index_bytes']).strip():>7} {d['dead_peak']:>10,} "
              f"{d['dead_final']:>9,} {d['autovacuums']:>4} {d['hot_update_pct']:>5} x{d['second_half_growth']:<7}  {bounded}",
              file=sys.stderr)


# --- reconciliation -------------------------------------------------------------------------


def reconcile(conn, op: Operator, live: list[int]) -> dict:
    """Every live job's final state against the operator's record; the mismatches, exactly."""
    bad: list[str] = []
    jobs = {r["jid"]: r for r in conn.execute(SQL["jobs"], {"jids": live}).fetchall()}
    tasks = defaultdict(list)
    for r in conn.execute(SQL["tasks"], {"jids": live}).fetchall():
        tasks[r["jid"]].append(r)
    cmds = {(r["jid"], r["tid"]): r for r in conn.execute(SQL["commands"], {"jids": live}).fetchall()}
    outcome = Counter()
    phases = Counter()
    explained_live = 0
    for jid in live:
        j = jobs[jid]
        ts = [t for t in tasks[jid] if t["attached"]]
        by_state = Counter(t["state"] for t in ts)
        counters = {s: j[f"num{s}"] for s in ("blocked", "ready", "active", "error", "done")}
        if j["numtasks"] != len(ts) or any(counters[s] != by_state.get(s, 0) for s in counters):
            bad.append(f"job {jid}: counters {counters} numtasks {j['numtasks']} but tasks {dict(by_state)} "
                       f"({len(ts)} attached)")
        if j["pausetime"] is not None:
            bad.append(f"job {jid}: still paused")
        want_error = 0
        for t in ts:
            key = (jid, t["tid"])
            c = cmds.get(key)
            exp = op.expected(jid, t["tid"])
            want_error += exp == "kill"
            got = (t["state"], c and c["state"])
            why = None
            if c is None:
                why = "no command"
            elif c["running"]:
                why = "an invocation still running"
            elif exp == "kill":
                if got != ("error", "error") or c["current"] != 0:
                    why = "killed last: expected error/error, no current invocation"
            elif exp == "skip":
                if got != ("done", "skipped") or c["current"] != 0:
                    why = "skipped last: expected done/skipped, no current invocation"
            else:
                if got != ("done", "done") or c["current"] != 1 or c["current_iid"] != c["last_iid"] \
                        or c["last_rcode"] != 0:
                    why = "expected done/done, the latest invocation current and exited 0"
                elif op.untouched(jid, t["tid"]) and c["runs"] != 1:
                    why = f"untouched by the operator but ran {c['runs']} times"
            outcome[(exp, t["state"], c and c["state"], c and c["current"])] += 1
            if why:
                bad.append(f"task {jid}/{t['tid']} (cid {c and c['cid']}): {why}; got task {t['state']}, command "
                           f"{c and c['state']}, runs {c and c['runs']}, current {c and c['current']} "
                           f"(iid {c and c['current_iid']} of {c and c['last_iid']}, rcode {c and c['last_rcode']}); "
                           f"operator history {op.history.get(key, [])}, job restarted at seq "
                           f"{op.restarted.get(jid)}")
        phases[j["phase"]] += 1
        if want_error == 0 and j["phase"] != "finished":
            bad.append(f"job {jid}: nothing killed last, yet phase {j['phase']} ({counters})")
        elif want_error:
            explained_live += 1
    return {"mismatches": len(bad), "details": bad[:50], "phases": dict(phases),
            "jobs_left_with_killed_tasks": explained_live,
            "outcomes": {f"{e}->{ts}/{cs}/current{cur}": n for (e, ts, cs, cur), n in sorted(outcome.items(),
                                                                                         key=str)}}


# --- the run ----------------------------------------------------------------------------------


def _wait(conn, jids: list[int], pred, timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred(conn, jids):
            return True
        time.sleep(0.5)
    log(f"timed out after {timeout:.0f} s waiting for {what}")
    return False


def _quiet(conn, jids: list[int]) -> bool:
    p = conn.execute(SQL["progress"], {"jids": jids}).fetchone()
    c = conn.execute(SQL["counts"], {"jids": jids}).fetchone()
    return p["left_all"] == 0 and c["running"] == 0 and c["ready"] == 0


def soak(size: dict) -> list[dict]:
    from tractorcli.db.audit import audit, describe
    from tractorcli.db.connection import connect
    from tractorcli.db import dispatch as d
    from tractorcli.db import ops
    from tractorcli.jobs.model import Command, Job, Task

    njobs, ntasks, nblades, nslots = size["jobs"], size["tasks"], size["blades"], size["slots"]
    total = njobs * ntasks
    out: list[dict] = []
    with Site("soak", pick_port(9930)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        settings = site.settings
        conn = connect(settings, autocommit=True)
        server = {r["name"]: (r["setting"] + (r["unit"] or "")) for r in conn.execute(SQL["settings"]).fetchall()}
        reloptions = {r["relname"]: r["reloptions"] for r in conn.execute(SQL["reloptions"], {"tables": list(HOT)})}
        ahead = size["ahead"] if 0 < size["ahead"] < njobs else njobs

        def spool_next() -> None:
            jids.append(spool(site, Job(title=f"soak {len(jids)}", subtasks=tuple(
                Task(f"t{i}", cmds=(Command(("/bin/true",), service="PixarRender"),)) for i in range(ntasks)))))

        log(f"spooling {ahead} of {njobs} jobs x {ntasks} tasks of /bin/true"
            + (f" (the others as jobs finish: {ahead} with work at a time)" if ahead < njobs else ""))
        t0 = time.perf_counter()
        jids: list[int] = []
        for _ in range(ahead):
            spool_next()
        spool_s = time.perf_counter() - t0
        spool_run_s = 0.0
        log(f"spooled {ahead * ntasks:,} tasks in {spool_s:.1f} s")
        start = sample(conn, 0.0)

        budget = {"restart": max(1, njobs // 20), "delete": max(1, njobs // 40)}
        op = Operator(settings, jids, ntasks, size["seed"], budget, size["pause"])
        keeper = Housekeeper(settings)
        logs = site.root / "blade-logs"
        logs.mkdir()
        procs, files = [], []
        samples: list[dict] = []
        timed_out = False
        t_start = time.perf_counter()
        try:
            for k in range(nblades):
                f = open(logs / f"soak{k}.log", "wb")  # noqa: SIM115 - closed below
                files.append(f)
                procs.append(subprocess.Popen(blade_argv(site, f"soak{k}", nslots), stdin=subprocess.DEVNULL,
                                              stdout=f, stderr=subprocess.STDOUT, env=clean_env()))
            keeper.start()
            op.start()
            log(f"{nblades} blades x {nslots} slots, operator and housekeeping running")
            limit = max(900.0, total / 20.0)  # 20 commands/s at worst
            next_sample = next_log = time.perf_counter()
            while True:
                now = time.perf_counter()
                t = now - t_start
                if now >= next_sample:
                    samples.append(sample(conn, t))
                    next_sample += SAMPLE_EVERY
                if len(jids) < njobs:  # keep `ahead` jobs with work spooled
                    t1 = time.perf_counter()
                    for _ in range(ahead - conn.execute(SQL["with_work"], {"jids": op.live()}).fetchone()["n"]):
                        if len(jids) < njobs:
                            spool_next()
                    spool_run_s += time.perf_counter() - t1
                p = conn.execute(SQL["progress"], {"jids": op.live()}).fetchone()
                if now >= next_log:
                    inv = conn.execute(SQL["counts"], {"jids": jids}).fetchone()["invocations"]
                    log(f"t={t:5.0f} s: {inv:,} invocations ({inv / max(t, 1e-9):.0f}/s), {p['left_all']:,} tasks "
                        f"left ({p['left_unpaused']:,} in unpaused jobs), {p['error']} error, {p['paused']} "
                        f"paused, {sum(op.asked.values()):,} operations, {len(jids)} jobs spooled")
                    next_log += 30.0
                if op.error or keeper.error:
                    raise BenchError(f"operator/housekeeper failed: {op.error or keeper.error!r}")
                dead = [k for k, pr in enumerate(procs) if pr.poll() is not None]
                if dead:
                    raise BenchError(f"blade soak{dead[0]} exited {procs[dead[0]].returncode}: "
                                     f"{(logs / f'soak{dead[0]}.log').read_text(errors='replace')[-800:]}")
                if op.is_alive() and p["left_unpaused"] == 0 and len(jids) == njobs:
                    op.stop.set()
                    op.join(60)
                    log(f"t={t:5.0f} s: every unpaused job has nothing left; operator stopped after "
                        f"{sum(op.asked.values()):,} operations; unpausing {len(op.paused)} job(s)")
                    for jid in op.live():
                        ops.unpause(conn, jid)
                    if op.error:
                        raise BenchError(f"operator failed: {op.error!r}")
                if not op.is_alive() and _quiet(conn, op.live()):
                    break
                if t > limit:
                    timed_out = True
                    log(f"not quiet after {limit:.0f} s: reconciling as it is")
                    op.stop.set()
                    op.join(60)
                    break
                time.sleep(1.0)
            wall = time.perf_counter() - t_start
            samples.append(sample(conn, wall))
            live = op.live()
            inv = conn.execute(SQL["invocations"], {"jids": jids}).fetchone()
            log(f"quiet after {wall:.1f} s: {inv['total']:,} invocations ({inv['total'] / wall:.0f}/s); reconciling")

            # -- reconcile the state as the operations left it
            rec = reconcile(conn, op, live)
            running_left = conn.execute(SQL["counts"], {"jids": jids}).fetchone()["running"]
            slots = conn.execute(SQL["slots"]).fetchone()["n"]
            found = audit(conn)
            deleted_ready = conn.execute(SQL["ready_of"], {"jids": sorted(op.deleted)}).fetchone()["n"]
            for line in rec["details"][:20]:
                log(f"MISMATCH {line}")
            for row in found[:20]:
                log(f"AUDIT {describe(row)}")
            if len(found) > 20:
                log(f"AUDIT ... {len(found)} violations in all: {dict(Counter(r['invariant'] for r in found))}")

            # -- then the killed tasks are retried: every job must finish, every task done
            errs = conn.execute(SQL["error_tasks"], {"jids": live}).fetchall()
            want = sum(1 for jid in live for t in range(1, ntasks + 1) if op.expected(jid, t) == "kill")
            d.retry_many(conn, [(r["jid"], r["tid"]) for r in errs])
            t2 = time.perf_counter()
            quiet2 = _wait(conn, live, _quiet, max(300.0, len(errs) / 5.0), "the retried tasks")
            finish_s = time.perf_counter() - t2
            fin = conn.execute(SQL["jobs"], {"jids": live}).fetchall()
            unfinished = [r["jid"] for r in fin if r["phase"] != "finished" or r["numdone"] != r["numtasks"]]
            cmd_states = Counter(r["state"] for r in conn.execute(SQL["commands"], {"jids": live}).fetchall())
            found2 = audit(conn)
            samples.append(sample(conn, time.perf_counter() - t_start))
            alive = [pr.poll() is None for pr in procs]
        finally:
            op.stop.set()
            keeper.stop.set()
            for pr in procs:
                pr.terminate()
            for pr in procs:
                try:
                    pr.wait(30)
                except subprocess.TimeoutExpired:
                    pr.kill()
            for f in files:
                f.close()
            op.join(30)
            keeper.join(30)
            conn.close()

    report = bloat_report(samples[:-1], start, wall)  # the run itself; the retry phase's sample apart
    print_bloat(report)
    log("(2nd half: final size / size at half the run; bounded: peak / size after the first 10 %)")
    log(f"server: {', '.join(f'{k}={v}' for k, v in server.items())}; reloptions {reloptions}")
    peak_xact = max(samples, key=lambda s: s["oldest_xact_s"])
    ops_total = sum(op.asked.values())

    out.append(figure("soak_commands_run", inv["total"], "invocations", None, jobs=njobs, tasks=ntasks,
                      blades=nblades, slots=nslots, seed=size["seed"], pause=size["pause"], ahead=ahead, **{k: inv[k] for k in inv if k != "total"}))
    out.append(figure("soak_wall", round(wall, 1), "s", None, spool_s=round(spool_s, 1), ahead=ahead,
                      spool_during_run_s=round(spool_run_s, 1),
                      note="blades started to every job quiet (nothing blocked, ready or running)"))
    out.append(figure("soak_rate", round(inv["total"] / wall, 1), "commands/s", None,
                      note="invocations (each launched on a blade) per second of wall time"))
    out.append(figure("soak_operations", ops_total, "operations", None, rate_per_s=round(ops_total / wall, 1),
                      failed=dict(op.failed), failures=op.failures))
    for kind in KINDS:
        out.append(figure(f"soak_ops_{kind}", op.asked[kind], "operations", None, took_effect=op.took[kind],
                          mean_ms=round(1000 * op.secs[kind] / max(op.asked[kind], 1), 1),
                          tasks_acted_on=op.touched[kind] if kind in ("retry", "skip", "kill", "restart") else None))
    out.append(figure("soak_operations_failed", sum(op.failed.values()), "operations", "== 0",
                      by_error=dict(op.failed), failures=op.failures))
    out.append(figure("soak_quiet_in_time", not timed_out, "", "== true"))
    out.append(figure("soak_reconcile_mismatches", rec["mismatches"], "", "== 0", details=rec["details"],
                      outcomes=rec["outcomes"], phases=rec["phases"], live_jobs=len(live), deleted=sorted(op.deleted),
                      jobs_left_with_killed_tasks=rec["jobs_left_with_killed_tasks"],
                      housekeeping_requeued=keeper.requeued))
    out.append(figure("soak_error_tasks_all_killed", len(errs) == want, "", "== true", error_tasks=len(errs),
                      killed_last=want))
    out.append(figure("soak_invocations_left_running", running_left, "", "== 0"))
    out.append(figure("soak_blade_slots_held", slots, "", "== 0"))
    out.append(figure("soak_deleted_jobs_ready_rows", deleted_ready, "", None))
    out.append(figure("soak_audit_violations", len(found), "", "== 0", rows=[describe(r) for r in found][:100],
                      by_invariant=dict(Counter(r["invariant"] for r in found))))
    out.append(figure("soak_after_retry_unfinished_jobs", len(unfinished) + (0 if quiet2 else 1), "jobs", "== 0",
                      jids=unfinished[:20], seconds=round(finish_s, 1), command_states=dict(cmd_states),
                      audit=[describe(r) for r in found2]))
    out.append(figure("soak_blades_alive", all(alive), "", "== true"))
    for rel, dd in report.items():
        out.append(figure(f"soak_size_{rel}", dd["final_bytes"], "bytes", None, **dd))
        out.append(figure(f"soak_dead_{rel}_peak", dd["dead_peak"], "tuples", None, final=dd["dead_final"],
                          autovacuums=dd["autovacuums"]))
    for rel in CHURN:
        if rel in report:
            out.append(figure(f"soak_{rel}_peak_over_10pct", report[rel]["peak_over_10pct"], "x", "<= 2",
                              note="peak total size / total size after the first 10 % of the run"))
    out.append(figure("soak_oldest_xact_peak", peak_xact["oldest_xact_s"], "s", None, at_t=peak_xact["t"],
                      xmin_age=peak_xact["oldest_xmin_age"]))
    out.append(figure("soak_samples", len(samples), "samples", None, server_settings=server, reloptions=reloptions,
                      every_s=SAMPLE_EVERY, samples=samples))
    return out


def run(quick: bool) -> list[dict]:
    size = dict(QUICK if quick else FULL)
    size.update(SIZE)
    return soak(size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/bench_soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=FULL["jobs"])
    ap.add_argument("--tasks", type=int, default=FULL["tasks"], help="tasks (one command each) per job")
    ap.add_argument("--blades", type=int, default=FULL["blades"])
    ap.add_argument("--slots", type=int, default=FULL["slots"], help="slots per blade")
    ap.add_argument("--seed", type=int, default=FULL["seed"], help="the operator's random seed")
    ap.add_argument("--ahead", type=int, default=FULL["ahead"],
                    help="spool this many jobs first and the next whenever fewer have work left (0: all at once)")
    ap.add_argument("--pause", type=float, default=FULL["pause"],
                    help="the operator waits 0 to this many seconds between two operations")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON file (default: bench/results/latest.json at full size, else soak-JOBSxTASKS.json)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    args = ap.parse_args(argv)
    bench_dir = Path(__file__).resolve().parent
    sys.path.insert(0, str(bench_dir))
    import bench_soak  # the module run.main loads by name: give it the sizes
    import run as runner

    bench_soak.SIZE.update(jobs=args.jobs, tasks=args.tasks, blades=args.blades, slots=args.slots, seed=args.seed,
                           pause=args.pause, ahead=args.ahead)
    full = all(bench_soak.SIZE[k] == FULL[k] for k in FULL)
    out = args.out or bench_dir / "results" / ("latest.json" if full else f"soak-{args.jobs}x{args.tasks}.json")
    return runner.main(["soak", "--out", str(out)] + (["--strict"] if args.strict else []))


if __name__ == "__main__":
    sys.exit(main())
