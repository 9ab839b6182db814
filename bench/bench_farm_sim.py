"""farm_sim: N simulated blades on one database, through a pool of connections (issue 14).

One scratch site; a queue of 1,000,000 ready one-command tasks (`/bin/true`,
service "PixarRender") in 1,000 jobs (`--quick`: 50,000 in 100 jobs),
spooled through `db.spool.spool_job` (one transaction and binary COPY per
job).  Then `farm_sim.Farm` (bench/farm_sim.py, which says exactly what a
simulated blade does) runs N blades of 4 slots that make the calls a real
`tractor-blade` makes, through `tractorcli.db.dispatch` and nothing else,
multiplexed over K = min(N, 64) connections as a pooler in transaction mode
would hand them out, with an engine thread housekeeping every 2 s on one
more connection.  No processes are started.

* The curve: N = 50, 200, 500, 1,000 (`--quick`: 20, 50) blades holding
  each command 0 s (claim, report at once, claim again: the database's
  throughput), each for 20 s (`--quick`: 5 s) after a 3 s warm-up (1 s),
  one after another on the same queue.  Per N:
  `farm_N_claims_per_s` (commands claimed per second in the window),
  `farm_N_claim_p50` / `_p99` (the claim call's round trip,
  `finish_and_claim` - or `claim` for a blade holding nothing - from
  sending to the answer, not counting the wait for a free connection),
  `farm_N_server_cpu_per_claim` (the server's user + system CPU over the
  window - the postmaster and all its children, from /proc - per command
  claimed), `farm_N_server_connections` (the most connections to the job
  database seen at once, sampled from pg_stat_activity every 0.25 s, the
  sampler's own left out: the pool and the engine) and `farm_N_sim_cpu`
  (this process's CPU, all threads, as a percentage of one core: on this
  2-core machine the simulator and the server share the CPUs).  The JSON
  adds the window, cycles, heartbeats' p99, the longest gap between two
  heartbeats of one blade (the lease is 30 s), how late steps started after
  they were due (the pool's backlog: p50/p99 `lag_ms`), deadlock reruns
  and steps given up after all of rerun's attempts (`gave_up`: a real blade
  would stop there).
  A blade that holds nothing claims again at once: N blades keep N calls in
  flight, the database's throughput is the figure, and a call waits behind
  the others (Little's law: p50 about the connections in use over the
  cycles per second), so these p99s grow with N by construction.
* Steady: 1,000 blades (`--quick`: 50) holding each command 10 s (2 s),
  for 30 s (5 s) after a warm-up of one hold (the blades' first claims are
  spread over it): a farm at work rather than flat out.  Claims/s, claim
  p50/p99 and the server's CPU as a percentage of one core (informational);
  then the same farm through 16 connections, a pooler's pool for a 2-core
  server (`steady_1000_pool16_*`): each claim's round trip shrinks as fewer
  backends share the cores, and the wait for a connection (`lag`) grows.
* At work: 1,000 blades (`--quick`: 50) holding each command 60 s (5 s), a
  farm of short renders, for 40 s (5 s) after a warm-up of one hold (the
  first claims spread over it), through 16 connections: `work_N_claims_per_s`,
  `work_N_claim_p50` / `_p99` (the claim call's round trip, as above),
  `work_N_lag_p99` (the wait for a free connection) and the server's CPU.
  Target (issue 14): claim p99 under 20 ms at 1,000 blades.
* Idle cost: 1,000 blades (`--quick`: 50) whose keys match no job (their
  claims find nothing while the rest of the queue is still ready) for 30 s
  (5 s), as real blades of a site with `BladeWakeups = "engine"`: they
  heartbeat every 15 s (their idle heartbeat) to the engine as a datagram
  (the engine's own `wakeups.Beats`, in a thread, writes each half second's
  in one statement), each heartbeat asking whether work is queued for
  them, and claim only when told so (never, here), as real blades do when
  no datagram wakes them.
  `idle_N_server_cpu`: the server's CPU (engine housekeeping included) as a
  percentage of one core.  Target (issue 14): under 5 % at 1,000 blades.
  `idle_N_server_cpu_db_heartbeats`: the same blades with every heartbeat
  through the database, one statement each (as before beats; informational).
  `idle_N_server_cpu_listen`: blades that LISTEN each (the default; a
  connection each): they poll every 1.5 s (informational).
  `idle_N_server_cpu_pool8`: the
  same farm through 8 connections (informational: the same calls cost the
  server less on fewer, busier backends; a pooler's pool size).

Before every run the tables are vacuumed and analyzed and the WAL
checkpointed (settled, as autovacuum keeps a farm's: no run pays for the
one before's dead rows).  The server's CPU is the whole server's
(autovacuum, WAL writer and checkpointer too); the JSON also has the farm's
own backends' (`backends_cpu_pct`, `backends_per_claim_ms`).

After every run each blade reports what it holds and leaves, and the whole
database is checked (`farm_sim.check_exactly_once`): as many commands and
tasks done as the simulator claimed in all runs so far, one invocation each,
none running or failed, no report answered other than 'done', the audit
(`tractor_audit_v1`) clean; anything else fails the benchmark.  A run that
drains the queue fails it too (its rate would not mean what it says).
The targets apply at 1,000 blades; `--quick` reports the same figures
without targets.

Run directly for one farm of any size, e.g.
`python bench/bench_farm_sim.py --blades 20 --tasks 20000 --jobs 20 --hold 0 --seconds 5`.
With `--pooler` the scratch site runs its pooler (db.toml `[pooler]`: PgBouncer in
transaction mode, `--max-db-connections`, default 100) and every simulated blade opens a
connection of its own through it, logging in over TCP with a blade login (one shared login, or
`--logins N` spread over N logins: a pool each), as real blades on other hosts do;
`server_connections` is then what the pooler holds on the server (plus the engine's), against
one per blade without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, Site, figure, log, percentile, pick_port, settle  # noqa: E402
from farm_sim import BLADE_POLL, Farm, FarmResult, check_exactly_once, spool_queue  # noqa: E402

SLOTS = 4
SMALL_POOL = 8  # the idle farm again through this many connections
STEADY_SMALL_POOL = 16  # the steady farm again through this many (a pooler's pool for a 2-core server)


def _ms(x: float) -> float:
    return round(x * 1000, 2)


def _ready_left(site: Site) -> int:
    with site.connect() as conn:
        return conn.execute("SELECT count(*) FROM ready").fetchone()[0]


class Runner:
    """One site, its queue, and the count of commands claimed so far (for the checks)."""

    def __init__(self, site: Site, lifo: bool = True):
        self.site = site
        self.claimed = 0
        self.lifo = lifo  # which free connection takes a step: the one freed last (PgBouncer's way)

    def farm(self, blades: int, *, hold: float, seconds: float, warmup: float, provides=("PixarRender",),
             prefix: str, pool: int | None = None, wakeups: str = "listen", blade_settings=None,
             beats: bool | None = None) -> FarmResult:
        settle(self.site)
        farm = Farm(self.site.settings, blades, pool=pool, slots=SLOTS, hold=hold, provides=provides, prefix=prefix,
                    data_dir=self.site.db_data_dir, wakeups=wakeups, blade_settings=blade_settings, lifo=self.lifo,
                    beats=beats)
        r = farm.run(seconds=seconds, warmup=warmup, log=log)
        self.claimed += r.total_claims
        check_exactly_once(self.site.settings, self.claimed, r)
        if provides == ("PixarRender",) and _ready_left(self.site) == 0:
            raise BenchError(f"{blades} blades drained the queue: the figures would not mean what they say")
        return r


def _describe(label: str, r: FarmResult) -> str:
    cpu = f", server {_pct(r.server_cpu, r):.0f} % of a core (the farm's backends {_pct(r.backends_cpu, r):.0f})" \
        if r.server_cpu is not None else ""
    return (f"{label}: {r.claims_per_s:.0f} claims/s, claim p50 {_ms(percentile(r.claim_latencies, 50))} "
            f"p99 {_ms(percentile(r.claim_latencies, 99))} ms, lag p99 {_ms(percentile(r.lags, 99))} ms{cpu}, "
            f"simulator {_pct(r.sim_cpu, r):.0f} %, {r.connections_max} connections, {r.reruns} reruns, {r.gave_up} given up, "
            f"heartbeat gap max {r.heartbeat_gap_max:.1f} s"
            + (f", {r.beats} beats to the engine in {r.beat_batches} statements" if r.beats else ""))


def _pct(cpu: float | None, r: FarmResult) -> float | None:
    """CPU seconds over the window, as a percentage of one core."""
    return round(cpu / r.window * 100, 2) if cpu is not None else None


def _extra(r: FarmResult) -> dict:
    """What the JSON keeps besides the figure."""
    return dict(
        blades=r.blades, pool=r.pool, hold=r.hold, window_s=round(r.window, 2), cycles=r.cycles, claims=r.claims,
        server_cpu_pct=_pct(r.server_cpu, r), backends_cpu_pct=_pct(r.backends_cpu, r), sim_cpu_pct=_pct(r.sim_cpu, r),
        connections=r.connections_max, heartbeats=len(r.heartbeat_latencies),
        heartbeat_p99_ms=_ms(percentile(r.heartbeat_latencies, 99)) if r.heartbeat_latencies else None,
        claim_p99_ms=_ms(percentile(r.claim_latencies, 99)) if r.claim_latencies else None,
        lag_p50_ms=_ms(percentile(r.lags, 50)), lag_p99_ms=_ms(percentile(r.lags, 99)), reruns=r.reruns,
        gave_up=r.gave_up, heartbeat_gap_max_s=round(r.heartbeat_gap_max, 2), beats=r.beats,
        beat_batches=r.beat_batches, beat_answers=r.beat_answers,
        beat_p99_ms=_ms(percentile(r.beat_latencies, 99)) if r.beat_latencies else None)


def curve_figures(n: int, r: FarmResult) -> list[dict]:
    lat = r.claim_latencies
    if not lat or not r.claims:
        raise BenchError(f"{n} blades claimed nothing in {r.window:.1f} s")

    def per_claim(cpu: float | None) -> float | None:
        return round(cpu / r.claims * 1000, 3) if cpu is not None else None

    return [
        figure(f"farm_{n}_claims_per_s", round(r.claims_per_s), "commands/s", **_extra(r)),
        figure(f"farm_{n}_claim_p50", _ms(percentile(lat, 50)), "ms"),
        figure(f"farm_{n}_claim_p99", _ms(percentile(lat, 99)), "ms"),
        figure(f"farm_{n}_server_cpu_per_claim", per_claim(r.server_cpu), "ms",
               server_cpu_pct=_pct(r.server_cpu, r), backends_per_claim_ms=per_claim(r.backends_cpu)),
        figure(f"farm_{n}_server_connections", r.connections_max, "connections"),
        figure(f"farm_{n}_sim_cpu", _pct(r.sim_cpu, r), "% of a core", per_claim_ms=per_claim(r.sim_cpu)),
    ]


def run(quick: bool) -> list[dict]:
    tasks, jobs = (50_000, 100) if quick else (1_000_000, 1000)
    sizes = (20, 50) if quick else (50, 200, 500, 1000)
    seconds, warmup = (5.0, 1.0) if quick else (20.0, 3.0)
    steady_n, steady_hold, steady_secs = (50, 2.0, 5.0) if quick else (1000, 10.0, 30.0)
    work_n, work_hold, work_secs = (50, 5.0, 5.0) if quick else (1000, 60.0, 40.0)
    idle_n, idle_secs = (50, 5.0) if quick else (1000, 30.0)
    out: list[dict] = []
    with Site("farm_sim", pick_port(9929)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        log(f"spooling {tasks:,} one-command tasks in {jobs:,} jobs")
        t0 = time.perf_counter()
        spool_queue(site.settings, tasks, jobs, log=log)
        took = time.perf_counter() - t0
        out.append(figure("farm_queue_spool", round(took, 1), "s", tasks=tasks, jobs=jobs, rate=round(tasks / took)))
        runner = Runner(site)
        for n in sizes:
            log(f"{n} blades of {SLOTS} slots, hold 0 s, {warmup:g} + {seconds:g} s")
            r = runner.farm(n, hold=0.0, seconds=seconds, warmup=warmup, prefix=f"b{n}-")
            log(_describe(f"{n} blades", r))
            out += curve_figures(n, r)

        # the steady farm through the default pool, and through a pooler's few connections (the
        # claim's round trip shrinks, the wait for a connection grows: lag)
        for pool, tag in ((None, ""), (STEADY_SMALL_POOL, f"_pool{STEADY_SMALL_POOL}")):
            log(f"steady: {steady_n} blades holding each command {steady_hold:g} s, {steady_secs:g} s"
                + (f", through {pool} connections" if pool else ""))
            r = runner.farm(steady_n, hold=steady_hold, seconds=steady_secs, warmup=steady_hold + 1,
                            prefix=f"steady{tag}-", pool=pool)
            log(_describe(f"steady {steady_n} blades", r))
            out.append(figure(f"steady_{steady_n}{tag}_claims_per_s", round(r.claims_per_s), "commands/s",
                              **_extra(r)))
            out.append(figure(f"steady_{steady_n}{tag}_claim_p50", _ms(percentile(r.claim_latencies, 50)), "ms"))
            out.append(figure(f"steady_{steady_n}{tag}_claim_p99", _ms(percentile(r.claim_latencies, 99)), "ms"))
            out.append(figure(f"steady_{steady_n}{tag}_lag_p99", _ms(percentile(r.lags, 99)), "ms"))
            out.append(figure(f"steady_{steady_n}{tag}_server_cpu", _pct(r.server_cpu, r), "% of a core",
                              backends_cpu_pct=_pct(r.backends_cpu, r)))

        # a farm at work: every blade busy with commands of a minute (a short render), through a
        # pooler's pool; the claim's round trip is what a blade waits for at each command's end
        log(f"at work: {work_n} blades holding each command {work_hold:g} s, {work_secs:g} s, through "
            f"{STEADY_SMALL_POOL} connections")
        r = runner.farm(work_n, hold=work_hold, seconds=work_secs, warmup=work_hold, prefix="work-",
                        pool=STEADY_SMALL_POOL)
        log(_describe(f"at work, {work_n} blades", r))
        out.append(figure(f"work_{work_n}_claims_per_s", round(r.claims_per_s), "commands/s", **_extra(r)))
        out.append(figure(f"work_{work_n}_claim_p50", _ms(percentile(r.claim_latencies, 50)), "ms"))
        out.append(figure(f"work_{work_n}_claim_p99", _ms(percentile(r.claim_latencies, 99)), "ms",
                          "< 20" if work_n == 1000 else None))
        out.append(figure(f"work_{work_n}_lag_p99", _ms(percentile(r.lags, 99)), "ms"))
        out.append(figure(f"work_{work_n}_server_cpu", _pct(r.server_cpu, r), "% of a core",
                          backends_cpu_pct=_pct(r.backends_cpu, r)))

        out += idle_figures(runner, idle_n, idle_secs)
    return out


# The idle farms, one per mode: (what the log says, the figure's suffix, the farm's prefix, how the
# farm runs, what the figure's JSON says of it).  Engine wake-ups (the target: idle heartbeats to
# the engine, which writes them in batches), the same with every heartbeat through the database
# (as before beats), each blade LISTENing, and engine wake-ups through SMALL_POOL connections (each
# backend busier, the server cheaper: a pooler's pool size).
_IDLE = {
    "engine": ("engine wake-ups", "", "idle-", {"wakeups": "engine"}, {"wakeups": "engine"}),
    "engine-db": ("engine wake-ups, heartbeats through the database", "_db_heartbeats", "idled-",
                  {"wakeups": "engine", "beats": False}, {"wakeups": "engine", "heartbeats_through": "database"}),
    "listen": (f"each LISTENing (polls every {BLADE_POLL:g} s)", "_listen", "idlel-", {}, {"wakeups": "listen"}),
    f"pool{SMALL_POOL}": (f"through {SMALL_POOL} connections", f"_pool{SMALL_POOL}", "idle8-",
                          {"pool": SMALL_POOL, "wakeups": "engine"}, {}),
}
IDLE_MODES = tuple(_IDLE)


def idle_figures(runner: Runner, idle_n: int, idle_secs: float, modes=IDLE_MODES) -> list[dict]:
    """The idle farm's figures, one per mode (_IDLE); the target is engine wake-ups'."""
    out = []
    for mode in modes:
        how, suffix, prefix, farm_kw, extra = _IDLE[mode]
        log(f"idle: {idle_n} blades whose keys match no job, {idle_secs:g} s, {how}")
        r = runner.farm(idle_n, hold=0.0, seconds=idle_secs, warmup=3.0, provides=("NoSuchKey",), prefix=prefix,
                        **farm_kw)
        log(_describe(f"idle {idle_n} blades, {how}", r))
        if r.total_claims:
            raise BenchError(f"idle blades claimed {r.total_claims} commands")
        target = "< 5" if mode == "engine" and idle_n == 1000 else None
        out.append(figure(f"idle_{idle_n}_server_cpu{suffix}", _pct(r.server_cpu, r), "% of a core", target,
                          **extra, **_extra(r)))
    return out


def pooler_table(max_db_connections: int, pool_size: int | None, blades: int, idle_timeout: float) -> str:
    """db.toml's [pooler] for a scratch site whose blades come through it (on a free port)."""
    return (f"[pooler]\nenabled = true\nport = {pick_port(6432)}\nmax_db_connections = {max_db_connections}\n"
            f"pool_size = {pool_size or max_db_connections}\nmax_client_conn = {max(5000, 2 * blades)}\n"
            f"server_idle_timeout = {idle_timeout:g}\n")


def blade_logins(site: Site, n: int) -> list:
    """n blade logins (farmsim0, ...) with passwords, and the settings of a blade host that logs in
    as each over TCP (localhost), through the site's pooler."""
    import dataclasses

    from tractorcli.db import roles
    from tractorcli.db.connection import connect

    settings = site.settings
    out = []
    with connect(settings, autocommit=True) as conn:
        for k in range(n):
            name, password = f"farmsim{k}", f"farm sim {k}"
            roles.add_login(conn, name, "blade", password, settings.db.user)
            out.append(dataclasses.replace(settings, db=dataclasses.replace(
                settings.db, host="127.0.0.1", login=name, password=password)))
    return out


def idle_only(args) -> int:
    """--idle-only: the idle figures as `run` makes them (engine wake-ups, listening, through
    SMALL_POOL connections), on one site, --repeat times; each figure printed as it comes."""
    import sys as _sys

    blades = args.blades if "--blades" in _sys.argv else 1000
    seconds = args.seconds if "--seconds" in _sys.argv else 30.0
    tasks = args.tasks if "--tasks" in _sys.argv else 1_000_000
    jobs = args.jobs if "--jobs" in _sys.argv else 1000
    modes = tuple(m.strip() for m in args.idle_modes.split(",") if m.strip())
    bad = [m for m in modes if m not in IDLE_MODES]
    if bad:
        raise SystemExit(f"--idle-modes: unknown {', '.join(bad)} (choose from {', '.join(IDLE_MODES)})")
    out = []
    with Site("farm_sim", pick_port(9929)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        log(f"spooling {tasks:,} tasks in {jobs:,} jobs")
        spool_queue(site.settings, tasks, jobs, log=log)
        runner = Runner(site, lifo=not args.fifo_pool)
        for k in range(args.repeat):
            for f in idle_figures(runner, blades, seconds, modes):
                f["run"] = k + 1
                print(json.dumps({"figure": f["figure"], "value": f["value"], "run": k + 1,
                                  "backends_cpu_pct": f.get("backends_cpu_pct")}), flush=True)
                out.append(f)
    print(json.dumps(out, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="One simulated farm on a scratch site (see the module docstring).")
    ap.add_argument("--blades", type=int, default=20)
    ap.add_argument("--pool", type=int, default=None, help="connections (default min(blades, 64))")
    ap.add_argument("--hold", type=float, default=0.0, help="seconds each command is held")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--idle", action="store_true", help="blades whose keys match no job")
    ap.add_argument("--idle-only", action="store_true",
                    help="only the idle figures of the full run (idle_N_server_cpu ...: --blades, default 1,000, "
                         "for --seconds, default 30, on a queue of --tasks in --jobs, default 1,000,000 in 1,000), "
                         "--repeat times")
    ap.add_argument("--idle-modes", default=",".join(IDLE_MODES),
                    help=f"with --idle-only: which of {', '.join(IDLE_MODES)} (default all)")
    ap.add_argument("--repeat", type=int, default=1, help="with --idle-only: run the idle figures this many times")
    ap.add_argument("--fifo-pool", action="store_true",
                    help="a step goes to the connection free longest (spread over all), not the one freed last "
                         "(PgBouncer's default)")
    ap.add_argument("--wakeups", choices=("listen", "engine"), default="listen",
                    help="the site's BladeWakeups: how an idle blade polls (every 1.5 s, or when a heartbeat says "
                         "work is queued for it)")
    ap.add_argument("--pooler", action="store_true",
                    help="run the site's pooler (PgBouncer, transaction mode); each blade connects through it")
    ap.add_argument("--max-db-connections", type=int, default=100,
                    help="with --pooler: the pooler's server connections, all logins together (default 100)")
    ap.add_argument("--pool-size", type=int, default=None,
                    help="with --pooler: server connections of one login (default: --max-db-connections)")
    ap.add_argument("--logins", type=int, default=1,
                    help="with --pooler: blade logins the blades are spread over, a pool each (default 1: shared)")
    ap.add_argument("--server-idle-timeout", type=float, default=10.0,
                    help="with --pooler: seconds an idle server connection is kept (default 10)")
    args = ap.parse_args()
    if args.idle_only:
        return idle_only(args)
    with Site("farm_sim", pick_port(9929)) as site:
        if args.pooler:
            with open(site.config_dir / "db.toml", "a", encoding="utf-8") as f:
                f.write(pooler_table(args.max_db_connections, args.pool_size, args.blades, args.server_idle_timeout))
        site.dbctl("--start-for-engine", timeout=600)
        blade_settings = blade_logins(site, args.logins) if args.pooler else None
        log(f"spooling {args.tasks:,} tasks in {args.jobs:,} jobs")
        spool_queue(site.settings, args.tasks, args.jobs, log=log)
        runner = Runner(site, lifo=not args.fifo_pool)
        r = runner.farm(args.blades, hold=args.hold, seconds=args.seconds, warmup=args.warmup, pool=args.pool,
                        provides=("NoSuchKey",) if args.idle else ("PixarRender",), prefix="b", wakeups=args.wakeups,
                        blade_settings=blade_settings)
        how = f" through the pooler (max_db_connections {args.max_db_connections}, {args.logins} login(s))" \
            if args.pooler else ""
        log(_describe(f"{args.blades} blades{how}", r))
        figures = curve_figures(args.blades, r) if r.claims else [_extra(r)]
        if args.pooler:
            figures[0].update(pooler=True, max_db_connections=args.max_db_connections, logins=args.logins,
                              client_connections=args.blades)
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
