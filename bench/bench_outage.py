"""outage: the job database stopped for twice BladeLeaseSecs under a blade running commands.

A blade of 4 slots runs 4 commands of 3 s (each counts its runs in a file)
while `tractor-engine --keep-db --interval 1` does its housekeeping; the
server is stopped (`tractor-dbctl --stop`) while they run and started again
10 s later (BladeLeaseSecs 5).  Figures: the blade's and the engine's CPU
time while the database was away (target: they wait, they do not spin), the
time from the server's start to a new job's command finished on that blade
(target < 10 s), and the commands lost or run twice (target: none).
(Issue 13.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import BenchError, Site, clean_env, cpu_seconds, figure, log, pick_port
from bench_dispatch import blade_argv, spool, wait_finished

LEASE = 5
OUTAGE = 2 * LEASE


def _engine_argv(site: Site) -> list[str]:
    exe = Path(sys.executable).parent / "tractor-engine"
    found = str(exe) if exe.is_file() else shutil.which("tractor-engine")
    if not found:
        raise BenchError("tractor-engine is not installed (pip install -e .)")
    return [found, "--configdir", str(site.config_dir), "--keep-db", "--interval", "1"]


def run(quick: bool) -> list[dict]:
    from tractorcli.db import dispatch as d
    from tractorcli.jobs.model import Command, Job, Task

    with Site("outage", pick_port(9927)) as site:
        site.dbctl("--start-for-engine", timeout=600)
        work = site.root / "work"
        work.mkdir()
        from tractorcli.db.connection import connect

        engine_log = site.root / "engine.log"
        engine = subprocess.Popen(_engine_argv(site), stdin=subprocess.DEVNULL, stdout=open(engine_log, "w"),
                                  stderr=subprocess.STDOUT, env=clean_env())
        deadline = time.monotonic() + 60
        while "tractor-engine running" not in engine_log.read_text():
            if engine.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"tractor-engine did not come up:\n{engine_log.read_text()}")
            time.sleep(0.1)
        # (it wrote the site's params as it started: the bench's lease goes after them)
        with connect(site.settings, autocommit=True) as conn:
            d.set_params(conn, {"BladeLeaseSecs": LEASE})
        runs = work / "runs.txt"
        job = Job(title="through an outage", subtasks=tuple(
            Task(f"t{i}", cmds=(Command(("/bin/sh", "-c", f"sleep 3; echo t{i} >> {runs}"),),)) for i in range(4)))
        jid = spool(site, job)
        blade = subprocess.Popen(blade_argv(site, "steady", 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=clean_env())
        try:
            with site.connect(autocommit=True) as conn:
                deadline = time.monotonic() + 30
                while conn.execute("SELECT count(*) FROM invocations WHERE jid = %s", (jid,)).fetchone()[0] < 4:
                    if time.monotonic() > deadline:
                        raise BenchError("the blade did not start the 4 commands")
                    time.sleep(0.05)
            log(f"4 commands running; stopping the server for {OUTAGE} s (BladeLeaseSecs {LEASE})")
            site.dbctl("--stop")
            cpu0, engine_cpu0 = cpu_seconds(blade.pid), cpu_seconds(engine.pid)
            time.sleep(OUTAGE)
            cpu, engine_cpu = cpu_seconds(blade.pid) - cpu0, cpu_seconds(engine.pid) - engine_cpu0
            site.dbctl("--start")
            started = time.monotonic()
            probe = spool(site, Job(title="after", subtasks=(Task("p", cmds=(Command(("/bin/true",)),)),)))
            wait_finished(site, probe, timeout=60)
            resumed = time.monotonic() - started
            wait_finished(site, jid, timeout=60)
            time.sleep(1.0)
            if "answers again" not in engine_log.read_text():
                raise BenchError(f"the engine did not say it reconnected:\n{engine_log.read_text()}")
            counted = runs.read_text().split() if runs.exists() else []
            twice = sum(1 for t in set(counted) if counted.count(t) > 1)
            lost = 4 - len(set(counted))
        finally:
            blade.terminate()
            blade.wait(30)
            engine.terminate()
            engine.wait(30)
    return [figure("blade_cpu_while_database_away", round(cpu, 2), "CPU-s", "< 0.5", outage_s=OUTAGE),
            figure("engine_cpu_while_database_away", round(engine_cpu, 2), "CPU-s", "< 0.5", outage_s=OUTAGE),
            figure("dispatch_after_server_start", round(resumed, 2), "s", "< 10"),
            figure("commands_run_twice", twice, "commands", "== 0"),
            figure("commands_lost", lost, "commands", "== 0")]
