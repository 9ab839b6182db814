"""api: Tractor's Python API (`tractor.api.author`, `tractor.api.query`).

* `import_author`, `import_query`: wall time of a whole Python process
  (fork to exit) that runs `import tractor.api.author` (resp.
  `tractor.api.query`), median of RUNS runs after two warm-up runs, the
  commands round-robin with the `python -c pass` baseline (as the `startup`
  benchmark times `--help`).  The bytecode of `tractor` and `tractorcli` is
  written first (`compileall`, as `bench/run.py` does for `tractorcli`), so
  the figures are those of an installed copy.  Also whether either import
  loads psycopg (from `python -X importtime`; informational: the database
  driver is only needed once a job is spooled or a query runs).
* `author_build_10k`, `author_spool_10k`, `author_build_spool_10k`: in a
  fresh Python process, a job of 10,000 tasks is built with the author API
  the way pipeline code writes it (`job.newTask(title=..., argv=[...])`,
  each task given an `id`, and every 100th task waiting on the task before
  it through `author.Instance(title=<its id>)`), then `job.spool()` commits
  it to a real job database (a scratch site brought up with
  `tractor-dbctl --start-for-engine`; the API pointed at it with
  `author.setEngineClientParam(configdir=...)`).  Build and spool are timed
  inside that process (perf_counter around each step; the spool includes
  reading the site configuration, writing the Alfred script that is stored
  with the job, resolving, connecting and the one-transaction COPY).  After
  every spool the job's `numtasks`, its task and command rows and its
  instance edges are checked, so a broken spool cannot pass as fast.
  Median of several processes (5; 3 with --quick), each spooling a new job.
  `author_process_10k` is the whole process (startup, import, build, spool,
  exit) and `author_peak_mem_10k` its peak RSS (informational).

Targets (the issue): `import tractor.api.author` under 150 ms; building
and spooling a 10,000-task job under 3 s.
"""

from __future__ import annotations

import compileall
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import BenchError, Site, clean_env, figure, log, pick_port, run_measured, summary
from bench_startup import _uses, imported_modules, interleaved

IMPORT_TARGET_MS = "< 150"
BUILD_SPOOL_TARGET_MS = "< 3000"
RUNS_FULL = 20
RUNS_QUICK = 8
TASKS = 10_000
INSTANCE_EVERY = 100
SPOOLS_FULL = 5
SPOOLS_QUICK = 3

# The process that builds and spools the job: argv is CONFIGDIR NTASKS EVERY;
# prints one JSON line with the timings (ms) and the jid.
CHILD = r'''
import time
T_START = time.time()
import json, sys
t0 = time.perf_counter()
import tractor.api.author as author
t_import = time.perf_counter() - t0

configdir, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
author.setEngineClientParam(configdir=configdir)

t0 = time.perf_counter()
job = author.Job(title="bench api %d tasks" % n, priority=100, service="PixarRender",
                 tags=["bench"], projects=["bench"])
prev = None
for i in range(1, n + 1):
    task = job.newTask(title="Frame %d" % i,
                       argv=["prman", "-Progress", "-t:4", "/net/ribs/shot010/frame.%04d.rib" % i],
                       service="PixarRender")
    task.id = "frame%d" % i
    if i % every == 0 and prev is not None:
        task.addChild(author.Instance(title=prev.id))
    prev = task
t_build = time.perf_counter() - t0

t0 = time.perf_counter()
jid = job.spool()
t_spool = time.perf_counter() - t0
print(json.dumps({"start": T_START, "end": time.time(), "jid": jid, "import_ms": t_import * 1000,
                  "build_ms": t_build * 1000, "spool_ms": t_spool * 1000}), flush=True)
'''


def compile_packages() -> None:
    """Bytecode for `tractor` and `tractorcli`, as a regular install has (see run.compile_package)."""
    import tractor
    import tractorcli

    for pkg in (tractor, tractorcli):
        compileall.compile_dir(str(Path(pkg.__file__).parent), quiet=1)


def spool_once(site: Site, script: Path, n: int, every: int) -> dict:
    """Run the job script once: its timings, the process's wall time and peak RSS (run_measured); the job
    checked in the database."""
    out_path = site.root / "child.out"
    err_path = site.root / "child.err"
    argv = [sys.executable, str(script), str(site.config_dir), str(n), str(every)]
    with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
        # (through run_measured: the peak RSS is the script's own, not this process's)
        m = run_measured(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f, env=clean_env(),
                         cwd=str(site.root))
    stdout, stderr = out_path.read_bytes(), err_path.read_bytes()
    if m.code != 0:
        raise BenchError(f"author job script exited {m.code}: {stderr.decode(errors='replace')[-800:]}")
    try:
        res = json.loads(stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise BenchError(f"author job script printed no result: {stdout[-300:]!r} {stderr[-300:]!r}") from exc
    res["process_ms"] = m.wall * 1000
    res["peak_rss_mb"] = m.rss_kb / 1024
    # the process outside the script's timed steps: interpreter startup, and exit (wall clock)
    res["startup_ms"] = (res.pop("start") - m.forked) * 1000
    res["exit_ms"] = (m.reaped - res.pop("end")) * 1000
    verify(site, int(res["jid"]), n, every)
    return res


def verify(site: Site, jid: int, n: int, every: int) -> None:
    """The job is in the database as built: numtasks, tasks, commands, instance edges."""
    with site.connect(autocommit=True) as conn:
        row = conn.execute("SELECT numtasks FROM jobs WHERE jid = %s", (jid,)).fetchone()
        if row is None:
            raise BenchError(f"job {jid} is not in the database")
        tasks = conn.execute("SELECT count(*) FROM tasks WHERE jid = %s", (jid,)).fetchone()[0]
        cmds = conn.execute("SELECT count(*) FROM commands WHERE jid = %s", (jid,)).fetchone()[0]
        inst = conn.execute("SELECT count(*) FROM task_edges WHERE jid = %s AND kind = 'instance'",
                            (jid,)).fetchone()[0]
    want_inst = n // every - (1 if every == 1 else 0)
    got = dict(numtasks=row[0], tasks=tasks, commands=cmds, instance_edges=inst)
    want = dict(numtasks=n, tasks=n, commands=n, instance_edges=want_inst)
    if got != want:
        raise BenchError(f"job {jid} in the database: {got}, expected {want}")


def run(quick: bool) -> list[dict]:
    runs = RUNS_QUICK if quick else RUNS_FULL
    spools = SPOOLS_QUICK if quick else SPOOLS_FULL
    py = sys.executable
    compile_packages()
    out: list[dict] = []

    log(f"import tractor.api.author / .query ({runs} runs each, interleaved)")
    cases = {
        "python_startup": dict(argv=[py, "-c", "pass"], target=None,
                               note="python -c pass: the floor for any Python program here"),
        "import_author": dict(argv=[py, "-c", "import tractor.api.author"], target=IMPORT_TARGET_MS),
        "import_query": dict(argv=[py, "-c", "import tractor.api.query"], target=IMPORT_TARGET_MS),
    }
    out += interleaved(cases, runs)
    for name, mod in (("author", "tractor.api.author"), ("query", "tractor.api.query")):
        mods, top = imported_modules([py, "-c", f"import {mod}"])
        out.append(figure(f"import_{name}_imports_psycopg", _uses(mods, "psycopg"), "bool", None,
                          slowest_imports=top))

    label = f"{TASKS // 1000}k"
    with Site("api", pick_port(9938)) as site:
        log(f"bringing up a site on port {site.port}")
        site.dbctl("--start-for-engine", timeout=600)
        script = site.root / "author_job.py"
        script.write_text(CHILD)
        results = []
        for i in range(spools):
            log(f"author API: build and spool a job of {TASKS:,} tasks ({i + 1}/{spools})")
            r = spool_once(site, script, TASKS, INSTANCE_EVERY)
            log(f"  jid {r['jid']}: build {r['build_ms']:.0f} ms, spool {r['spool_ms']:.0f} ms, "
                f"process {r['process_ms']:.0f} ms (startup {r['startup_ms']:.0f}, exit {r['exit_ms']:.0f})")
            results.append(r)

    def fig(name: str, key: str, target: str | None = None, **extra) -> dict:
        s = summary([r[key] for r in results])
        return figure(name, round(s.pop("value"), 1), "ms", target, **extra, **s)

    total = [r["build_ms"] + r["spool_ms"] for r in results]
    for r, t in zip(results, total):
        r["total_ms"] = t
    out += [
        fig(f"author_build_{label}", "build_ms",
            note=f"{TASKS:,} x job.newTask(title=, argv=[...]) + task.id, an Instance every {INSTANCE_EVERY}th"),
        fig(f"author_spool_{label}", "spool_ms",
            note="job.spool(): script, resolve, connect, one-transaction COPY; checked in the database"),
        fig(f"author_build_spool_{label}", "total_ms", BUILD_SPOOL_TARGET_MS,
            jids=[r["jid"] for r in results]),
        figure(f"author_build_spool_{label}_rate", round(TASKS / (statistics.median(total) / 1000)), "tasks/s"),
        fig("author_import_in_process", "import_ms",
            note="import tractor.api.author timed inside the spooling process (no interpreter startup)"),
        fig(f"author_process_{label}", "process_ms",
            note="the whole process: startup, import, build, spool, exit",
            startup_ms=[round(r["startup_ms"], 1) for r in results],
            exit_ms=[round(r["exit_ms"], 1) for r in results]),
        figure(f"author_peak_mem_{label}", round(max(r["peak_rss_mb"] for r in results)), "MB"),
    ]
    return out
