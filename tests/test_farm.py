"""A small farm on one machine: several real blades, the engine, restarts.

Side effects are counted from what the commands themselves write, so a
command run twice, or not at all, shows.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import time

from conftest import dbctl
from test_blade import BladeProc, program, sh
from test_blade import site  # noqa: F401 - the fixture
from test_engine import EngineProcess
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Job, Task, resolve
from tractorcli.submit import default_host


def test_four_blades_four_thousand_commands_each_exactly_once(site):  # noqa: F811 - the fixture
    s = site()
    out = s.work / "ran.txt"
    n = 4_000  # (the dispatch bench runs more, for its figures)
    jid = s.spool(*(Task(f"t{i}", cmds=(sh(f"echo %t >> {out}"),)) for i in range(n)), title="many")
    blades = [s.blade("--name", f"farm{k}", "--slots", "2", "--exit-when-idle") for k in range(4)]
    for b in blades:
        assert b.wait(timeout=600) == 0, b.text()
    job = s.one("SELECT phase, numdone, numtasks FROM jobs WHERE jid = %s", jid)
    assert job == {"phase": "finished", "numdone": n, "numtasks": n}
    counts = collections.Counter(out.read_text().split())
    assert len(counts) == n and set(counts.values()) == {1}  # every task's command ran, once
    assert sorted(int(t) for t in counts) == list(range(1, n + 1))
    per_blade = s.all("SELECT bladename, count(*) AS n FROM invocations WHERE jid = %s GROUP BY 1 ORDER BY 1", jid)
    assert [r["bladename"] for r in per_blade] == ["farm0", "farm1", "farm2", "farm3"]  # all four did work
    assert s.one("SELECT count(*) AS n FROM invocations WHERE jid = %s", jid)["n"] == n


def test_engine_and_database_restart_under_running_blades(tmp_site):
    cfg, settings = tmp_site()
    work = cfg.parent / "work"
    work.mkdir()
    out = work / "ran.txt"
    eng = EngineProcess(cfg)
    blade = None
    try:
        eng.wait_for("tractor-engine running")
        with connect(settings, autocommit=True) as conn:
            jid = spool_job(conn, resolve(Job(title="restart", subtasks=tuple(
                Task(f"t{i}", cmds=(sh(f"sleep 1.5; echo %t >> {out}"),)) for i in range(6)))),
                owner="ann", spoolhost=default_host())
        blade = subprocess.Popen([program("tractor-blade"), "--configdir", str(cfg), "--heartbeat", "0.2",
                                  "--slots", "3"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(cfg.parent / "blade.log", "w"))
        with connect(settings, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT numactive FROM jobs WHERE jid = %s", (jid,)).fetchone()["numactive"] < 3:
                assert time.monotonic() < deadline, (cfg.parent / "blade.log").read_text()
                time.sleep(0.05)
        # stop the engine (and with it the database) while three commands run
        assert eng.stop() == 0
        assert "stopped the database server" in eng.text()
        assert dbctl(cfg, "--status").returncode == 4
        time.sleep(2.5)  # the running commands end while nobody can hear them
        assert blade.poll() is None, "the blade must outlive the database"
        eng = EngineProcess(cfg)
        eng.wait_for("tractor-engine running")
        with connect(settings, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT phase FROM jobs WHERE jid = %s", (jid,)).fetchone()["phase"] != "finished":
                assert time.monotonic() < deadline, (cfg.parent / "blade.log").read_text()
                time.sleep(0.1)
            job = conn.execute("SELECT numdone, numerror FROM jobs WHERE jid = %s", (jid,)).fetchone()
            runs = conn.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s", (jid,)).fetchone()["n"]
        assert job == {"numdone": 6, "numerror": 0}
        assert runs == 6  # the reports held during the outage were delivered; nothing ran again
        counts = collections.Counter(out.read_text().split())
        assert sorted(counts) == [str(t) for t in range(1, 7)] and set(counts.values()) == {1}
    finally:
        if blade is not None and blade.poll() is None:
            blade.send_signal(signal.SIGTERM)
            blade.wait(30)
        eng.stop()


def test_retryrc_with_a_real_blade(site):  # noqa: F811 - the fixture
    s = site()
    marker = s.work / "tries.txt"
    # fails with 3 the first time, succeeds the second: -retryrc 3 retries it once
    cmd = sh(f"echo try >> {marker}; test $(wc -l < {marker}) -ge 2 || exit 3", retryrc=(3,))
    jid = s.spool(Task("flaky", cmds=(cmd,)), Task("broken", cmds=(sh("exit 4", retryrc=(3,)),)))
    b = s.blade("--exit-when-idle")
    assert b.wait(60) == 0, b.text()
    assert marker.read_text().count("try") == 2
    rows = s.all("SELECT t.title, t.state, i.iid, i.rcode FROM invocations i JOIN tasks t USING (jid, tid) "
                 "WHERE i.jid = %s ORDER BY t.title, i.iid", jid)
    assert [(r["title"], r["iid"], r["rcode"]) for r in rows] == [("broken", 1, 4), ("flaky", 1, 3), ("flaky", 2, 0)]
    assert {r["title"]: r["state"] for r in rows} == {"broken": "error", "flaky": "done"}


__all__ = ["BladeProc"]
