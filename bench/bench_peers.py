"""peers: tractorcli against other job queues on the same workload (issue 14).

The workload: N commands `/bin/true` (5,000; 500 with --quick), each forked and exec'd by
the queue's worker, at most 16 at once: tractorcli's 4 blades of 4 slots (the dispatch
benchmark's machinery, `bench_dispatch.run_job`; a log file per task, on tmpfs as there),
against

* pgqueuer (PyPI, pinned in `peers/pgq_peer.py`, in its own venv `bench/peers/.venv`): 4
  worker processes, each dequeuing 2 jobs at a time and running at most 4 at once, whose
  entrypoint runs `/bin/true` as a subprocess; the same PostgreSQL server build and settings
  (a scratch site's).  Also once at pgqueuer's defaults (batch 10, no concurrency limit),
  informational.
* Slurm (Debian's slurm-wlm, installed with apt-get when missing; skipped with a note when it
  cannot be): one node of 16 declared CPUs, one job array of N tasks each exec'ing /bin/true.

Rates are N over first dequeue to last completion by each queue's own records (tractorcli's
invocations, pgqueuer's log); Slurm's is N over submission to the last task done (its records
have whole seconds).  tractorcli and pgqueuer alternate for 3 rounds (1 with --quick) and the
medians are compared; Slurm, whose rate is set by its scheduler's passes, runs once.
`ratio_tractorcli_<peer>` is tractorcli's rate over the peer's; target >= 1.

    python bench/run.py peers [--quick]
    python bench/bench_peers.py [--commands N] [--rounds R] [--no-slurm]   # one run, table to stdout
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, Site, figure, log, pick_port, summary  # noqa: E402
from bench_dispatch import SLOTS, run_job, true_job  # noqa: E402
from peers import pgq_peer, slurm_peer  # noqa: E402

BLADES = 4
# pgqueuer, made like the blades: a worker process per blade, each running as many commands at
# once as a blade has slots.  pgqueuer wants its limit at least twice its batch size.
PGQ_WORKERS = BLADES
PGQ_MAX_CONCURRENT = SLOTS
PGQ_BATCH = SLOTS // 2
PGQ_DEFAULT_BATCH = 10  # pgqueuer's own defaults: batch 10, no limit on concurrent jobs


def tractorcli_round(site: Site, n: int) -> dict:
    budget: dict = {}
    jid, took = run_job(site, true_job(n), BLADES, SLOTS, budget)
    with site.connect(autocommit=True) as conn:
        span = conn.execute("SELECT extract(epoch FROM max(stoptime) - min(starttime)) FROM invocations"
                            " WHERE jid = %s", (jid,)).fetchone()[0]
    return {"seconds": float(span), "seconds_launch": took, "worker": budget["blade"], "child": budget["child"],
            "server": budget["server"]}


def _rates(rounds: list[dict], n: int, key: str) -> dict:
    return summary([n / r[key] for r in rounds])


def _cpu_ms(rounds: list[dict], n: int) -> float:
    return round(statistics.median((r["worker"] + r["child"] + r["server"]) / n * 1000 for r in rounds), 3)


def _spread(s: dict, digits: int = 1) -> dict:
    """A summary's min, max, runs and samples for the JSON (the value is the figure's own)."""
    return {k: (round(v, digits) if isinstance(v, float) else [round(x, digits) for x in v] if k == "samples" else v)
            for k, v in s.items() if k != "value"}


def run(quick: bool, commands: int | None = None, rounds: int | None = None, slurm: bool = True) -> list[dict]:
    n = commands or (500 if quick else 5000)
    rounds = rounds or (1 if quick else 3)
    out: list[dict] = []
    versions = pgq_peer.ensure_venv()
    log(f"pgqueuer {versions['pgqueuer']} (asyncpg {versions['asyncpg']}, uvloop {versions['uvloop']}) in {pgq_peer.VENV}")

    tq: list[dict] = []
    pq: list[dict] = []
    pq_defaults: dict | None = None
    with Site("peers", pick_port(9930)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        # tractorcli's blades write a log per task (the peers none): on tmpfs, as the dispatch
        # benchmark's, this machine's disk aside (_common.Site.logs_on_tmpfs)
        logs = site.logs_on_tmpfs()
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}: tractorcli, {n} x /bin/true on {BLADES} blades of {SLOTS} slots")
            tq.append(tractorcli_round(site, n))
            log(f"round {r + 1}/{rounds}: pgqueuer, {n} jobs on {PGQ_WORKERS} workers of {PGQ_MAX_CONCURRENT}")
            pq.append(pgq_peer.run_workers(site, n, PGQ_WORKERS, PGQ_BATCH, PGQ_MAX_CONCURRENT))
        log(f"pgqueuer at its defaults (batch {PGQ_DEFAULT_BATCH}, no limit), {PGQ_WORKERS} workers")
        pq_defaults = pgq_peer.run_workers(site, n, PGQ_WORKERS, PGQ_DEFAULT_BATCH, 0)

    t_rate, p_rate = _rates(tq, n, "seconds"), _rates(pq, n, "seconds")
    common = {"commands": n}
    out.append(figure("tractorcli_rate", round(t_rate["value"]), "commands/s", None, **common,
                      **_spread(t_rate), blades=BLADES, slots=SLOTS, logs=logs,
                      note="first claim to last finish (invocations' start and stop times)"))
    out.append(figure("tractorcli_rate_from_launch", round(_rates(tq, n, "seconds_launch")["value"]), "commands/s",
                      None, **_spread(_rates(tq, n, "seconds_launch")),
                      note="blades started to job finished, as dispatch_rate_4_blades"))
    out.append(figure("tractorcli_cpu_ms", _cpu_ms(tq, n), "ms/command", None,
                      note="blades + their commands + server, CPU"))
    out.append(figure("pgqueuer_rate", round(p_rate["value"]), "commands/s", None, **common, **_spread(p_rate),
                      workers=PGQ_WORKERS, batch_size=PGQ_BATCH, max_concurrent_tasks=PGQ_MAX_CONCURRENT,
                      versions=versions, note="first 'picked' to last 'successful' (pgqueuer_log)"))
    out.append(figure("pgqueuer_rate_from_launch", round(_rates(pq, n, "seconds_launch")["value"]), "commands/s",
                      None, **_spread(_rates(pq, n, "seconds_launch"))))
    out.append(figure("pgqueuer_cpu_ms", _cpu_ms(pq, n), "ms/command", None,
                      note="workers + their commands + server, CPU"))
    out.append(figure("pgqueuer_rate_defaults", round(n / pq_defaults["seconds"]), "commands/s", None,
                      workers=PGQ_WORKERS, batch_size=PGQ_DEFAULT_BATCH, max_concurrent_tasks=None,
                      note="informational: pgqueuer's default batch and no concurrency limit (one run)"))
    paired = [round(p["seconds"] / t["seconds"], 2) for t, p in zip(tq, pq)]
    out.append(figure("ratio_tractorcli_pgqueuer", round(t_rate["value"] / p_rate["value"], 2), "x", ">= 1",
                      round_ratios=paired, note="median rates; round_ratios: each round's pair"))
    out.extend(slurm_figures(n, t_rate["value"]) if slurm else
               skipped_slurm("not run (--no-slurm)"))
    return out


def skipped_slurm(why: str) -> list[dict]:
    log(f"slurm skipped: {why}")
    return [figure("slurm_rate", None, "commands/s", None, note=f"skipped: {why}"),
            figure("ratio_tractorcli_slurm", None, "x", None, note=f"skipped: {why}")]


def slurm_figures(n: int, tractorcli_rate: float) -> list[dict]:
    why = slurm_peer.ensure_installed()
    if why:
        return skipped_slurm(why)
    cpus = BLADES * SLOTS
    version = slurm_peer.version()
    log(f"{version}: one node of {cpus} CPUs, an array of {n} x /bin/true")
    with slurm_peer.SlurmNode(cpus=cpus, max_array=n) as node:
        res = node.true_array(n)
        sched = {"scheduler": node.scheduler, "scheduler_parameters": node.sched_params}
    rate = n / res["seconds"]
    out = [figure("slurm_rate", round(rate, 1), "commands/s", None, commands=n, version=version, cpus=cpus,
                  seconds=round(res["seconds"], 2), **sched,
                  note="submission (sbatch --array) to no task left (squeue)")]
    if res["seconds_start_end"]:
        out.append(figure("slurm_rate_start_end", round(n / res["seconds_start_end"], 1), "commands/s", None,
                          note="first task's StartTime to last EndTime (whole seconds)"))
    out.append(figure("ratio_tractorcli_slurm", round(tractorcli_rate / rate, 2), "x", ">= 1"))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--commands", type=int, default=None, help="commands per run (default 5000, 500 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="tractorcli/pgqueuer rounds (default 3, 1 with --quick)")
    ap.add_argument("--no-slurm", action="store_true", help="leave Slurm out")
    args = ap.parse_args(argv)
    try:
        figures = run(args.quick, args.commands, args.rounds, slurm=not args.no_slurm)
    except BenchError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 1
    for f in figures:
        print(f"{f['figure']:32} {f['value']!s:>10} {f['unit']:12} {f['target'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
