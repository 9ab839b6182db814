"""tractor-engine, run as a user runs it, on new sites; and tractor-spool --wait."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from conftest import clean_env, dbctl, program
from test_blade import alive
from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect


class EngineProcess:
    def __init__(self, cfg: Path, *args: str, netns: str | None = None):
        """`netns`: run it in that network namespace (test_farm_hosts.py's hosts)."""
        self.log = cfg.parent / f"engine-{time.monotonic_ns()}.log"
        where = ["ip", "netns", "exec", netns] if netns else []  # (ip netns exec execs: the pid is the engine's)
        self.proc = subprocess.Popen([*where, program("tractor-engine"), "--configdir", str(cfg), "--interval", "0.2",
                                      *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env=clean_env())

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"the engine exited: {self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} in: {self.text()}"
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the engine did not stop in {timeout} s: {self.text()}") from None


def spool(cfg: Path, text: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    path = cfg.parent / f"job-{time.monotonic_ns()}.alf"
    path.write_text(text)
    return subprocess.run([program("tractor-spool"), "--configdir", str(cfg), *args, str(path)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)


def test_engine_brings_a_new_site_up_finishes_jobs_and_stops_the_database(tmp_site):
    cfg, settings = tmp_site()
    eng = EngineProcess(cfg)
    try:
        eng.wait_for("tractor-engine running")
        assert dbctl(cfg, "--status").returncode == 0
        r = spool(cfg, "Job -title {empty} -subtasks {Task {a}; Task {b} -subtasks {Instance {a}}}\n", "--wait")
        assert r.returncode == 0, r.stderr
        assert "OK job script accepted, jid: 1" in r.stdout
        assert "J1 done" in r.stderr
        # a second engine on the same site is refused
        second = subprocess.run([program("tractor-engine"), "--configdir", str(cfg)], capture_output=True, text=True,
                                timeout=60, env=clean_env(), stdin=subprocess.DEVNULL)
        assert second.returncode == 5 and "another tractor-engine runs this site" in second.stderr
    finally:
        assert eng.stop() == 0
    assert "stopped the database server" in eng.text()
    assert dbctl(cfg, "--status").returncode == 4


def test_engine_requeues_the_work_of_a_lost_blade_and_keep_db(tmp_site):
    cfg, settings = tmp_site("blade_lease_secs = 1\n")
    eng = EngineProcess(cfg, "--keep-db")
    try:
        eng.wait_for("tractor-engine running")
        r = spool(cfg, "Job -subtasks {Task {a} -cmds {RemoteCmd {sleep 100}}}\n")
        assert r.returncode == 0, r.stderr
        with connect(settings, autocommit=True) as conn:
            assert conn.execute("SELECT value FROM params WHERE name = 'BladeLeaseSecs'").fetchone()["value"] == "1"
            bid = d.register(conn, d.BladeInfo(name="doomed", provides=("PixarRender",)))
            svc = d.ServiceCache()
            from tractorcli.service import BladeFacts

            (c,) = d.claim(conn, bid, svc.matching(conn, BladeFacts(provides={"pixarrender"}, hostname="doomed")),
                           "doomed", 1)
            # the blade never heartbeats again: the engine gives its command back
            eng.wait_for("1 command(s) of lost blades queued again", timeout=30)
            row = conn.execute("SELECT state FROM tasks WHERE jid = %s", (c.jid,)).fetchone()
            assert row["state"] == "ready"
            # a late report still counts while nobody has taken the command since (issue 13)
            assert d.finish(conn, c, bid, 0) == "done"
            assert conn.execute("SELECT state FROM tasks WHERE jid = %s", (c.jid,)).fetchone()["state"] == "done"
    finally:
        assert eng.stop() == 0
    assert "leaving the database server running" in eng.text()
    assert dbctl(cfg, "--status").returncode == 0
    dbctl(cfg, "--stop")


def test_wait_reports_a_job_that_ends_in_error(tmp_site):
    cfg, settings = tmp_site()
    eng = EngineProcess(cfg)
    try:
        eng.wait_for("tractor-engine running")
        path = cfg.parent / "bad.alf"
        path.write_text("Job -title {bad} -subtasks {Task {a} -cmds {RemoteCmd {false}}}\n")
        waiter = subprocess.Popen([program("tractor-spool"), "--configdir", str(cfg), "--wait", str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
                                  stdin=subprocess.DEVNULL)
        with connect(settings, autocommit=True) as conn:
            from tractorcli.service import BladeFacts

            bid = d.register(conn, d.BladeInfo(name="b", provides=("PixarRender",)))
            facts = BladeFacts(provides={"pixarrender"}, hostname="b")
            svc = d.ServiceCache()
            deadline = time.monotonic() + 30
            claims = []
            while not claims:
                assert time.monotonic() < deadline
                claims = d.claim(conn, bid, svc.matching(conn, facts), "b", 1)
                time.sleep(0.05)
            assert d.finish(conn, claims[0], bid, 1) == "error"
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 12, err
        assert "J1 ended with 1 task(s) in error" in err
    finally:
        assert eng.stop() == 0


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_spool_runs_the_example_job_start_to_end_on_a_local_blade(tmp_site):
    cfg, settings = tmp_site()
    r = subprocess.run([program("tractor-engine"), "--configdir", str(cfg), "--blades", "2", "--interval", "0.5",
                        "--blade-option=--heartbeat=0.5", "--spool", str(EXAMPLES / "frames.alf")],
                       capture_output=True, text=True, timeout=180, env=clean_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "J1: 11/11 done" in r.stderr and "J1 done" in r.stderr
    assert "stopped the database server" in r.stderr
    log = (settings.data_dir / "cmd-logs").rglob("T2.log")
    assert "rendering frame 1" in next(log).read_text()


def test_children_get_the_config_dir_only_when_it_exists(tmp_path):
    import dataclasses

    from tractorcli.config import load_settings
    from tractorcli.engine import site_args

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    settings = load_settings(cfg)
    assert site_args(settings) == ["--configdir", str(cfg)]
    # no configuration at all: the children find the same default themselves
    assert site_args(dataclasses.replace(settings, config_dir=tmp_path / "absent")) == []


def test_engine_wakes_idle_blades_by_datagram_without_a_connection_each(tmp_site):
    # BladeWakeups = "engine" (wakeups.py): the engine LISTENs once and sends each idle blade a
    # datagram; the blade polls only when a heartbeat (30 s here) says work is queued for it, and
    # at most every 2 idle heartbeats (60 s after its last claim), so a job that ends within 10 s
    # was started by the wake-up
    cfg, settings = tmp_site('blade_wakeups = "engine"\nblade_lease_secs = 300\n')
    eng = EngineProcess(cfg, "--blades", "2", "--blade-option=--idle-heartbeat=30", "--blade-option=--heartbeat=60")
    try:
        eng.wait_for("tractor-engine running")
        with connect(settings, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while True:
                row = conn.execute("SELECT wakeport, status FROM blades").fetchone()
                if row is not None and row["wakeport"] is not None:
                    break
                assert time.monotonic() < deadline, "the local blade did not register a wake port"
                time.sleep(0.05)
            time.sleep(1.0)  # its first claim found nothing: it is idle until its next poll
            for n in (1, 2):  # idle again between the two jobs
                start = time.monotonic()
                r = spool(cfg, "Job -subtasks {Task {a} -cmds {RemoteCmd {true}}}\n", "--wait")
                took = time.monotonic() - start
                assert r.returncode == 0, r.stderr
                assert took < 10, f"job {n} took {took:.1f} s: not woken"
            # the engine's three connections (housekeeping, LISTEN, idle blades' beats) and the
            # blade's one, besides ours; a blade that LISTENs itself holds two
            others = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                  "AND pid <> pg_backend_pid()").fetchone()["n"]
            assert others == 4
            # a running command retried: the engine tells its blade (tractor_check), which stops it
            # at once, not at its next heartbeat (60 s here)
            pidfile = cfg.parent / "sleeper.pid"
            r = spool(cfg, f"Job -subtasks {{Task {{a}} -cmds {{RemoteCmd {{/bin/sh -c {{sleep 300 & echo $! > {pidfile}; "
                           "wait}}}}\n")
            assert r.returncode == 0, r.stderr
            deadline = time.monotonic() + 30
            while not (pidfile.exists() and pidfile.read_text().strip()):
                assert time.monotonic() < deadline, "the sleeper did not start"
                time.sleep(0.05)
            pid = int(pidfile.read_text())
            jid = conn.execute("SELECT max(jid) AS j FROM jobs").fetchone()["j"]
            assert d.retry(conn, jid, [1]) == [1]
            deadline = time.monotonic() + 10
            while alive(pid):
                assert time.monotonic() < deadline, "the retried command still runs"
                time.sleep(0.05)
            d.kill(conn, jid, [1])  # (its second run, if it started again: the engine's stop waits for none)
    finally:
        assert eng.stop() == 0


def _heartbeat_calls_since(conn, since) -> int:
    """Backends whose last statement, ended after `since`, was a blade's heartbeat."""
    return conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%%tractor_heartbeat_v3%%' "
                        "AND state_change > %s AND pid <> pg_backend_pid()", (since,)).fetchone()["n"]


def test_idle_blades_heartbeat_through_the_engine_and_without_it_through_the_database(tmp_site):
    # wakeups.py beats: an idle blade's heartbeat is a datagram the engine writes with the others';
    # the blade's own connection stays quiet.  With the engine stopped (SIGSTOP: no answers) the
    # blade heartbeats through the database after BEAT_ANSWER_WAIT, and its row stays fresh.
    from tractorcli.wakeups import BEAT_ANSWER_WAIT

    cfg, settings = tmp_site('blade_wakeups = "engine"\nblade_lease_secs = 300\n')
    eng = EngineProcess(cfg, "--blades", "1", "--blade-option=--idle-heartbeat=0.3", "--blade-option=--heartbeat=0.3",
                        "--blade-option=--debug")
    try:
        eng.wait_for("tractor-engine running")
        with connect(settings, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) AS n FROM blades WHERE wakeport IS NOT NULL").fetchone()["n"] == 0 \
                    or d.engine_beats(conn) is None:
                assert time.monotonic() < deadline, "no blade with a wake port, or no beats address"
                time.sleep(0.05)
            time.sleep(1.0)  # past its first claim and the heartbeats before the engine's address was out
            since = conn.execute("SELECT now() AS t").fetchone()["t"]
            beats = []
            for _ in range(30):  # 3 s: some ten idle heartbeats
                beats.append(conn.execute("SELECT heartbeattime AS t FROM blades").fetchone()["t"])
                assert _heartbeat_calls_since(conn, since) == 0, "an idle heartbeat went through the database"
                time.sleep(0.1)
            assert len(set(beats)) >= 5, beats
            eng.proc.send_signal(signal.SIGSTOP)
            try:
                time.sleep(BEAT_ANSWER_WAIT + 1.0)
                since = conn.execute("SELECT now() AS t").fetchone()["t"]
                deadline = time.monotonic() + 10
                while _heartbeat_calls_since(conn, since) == 0:
                    assert time.monotonic() < deadline, "no heartbeat through the database without the engine"
                    time.sleep(0.05)
                fresh = conn.execute("SELECT now() - heartbeattime < interval '3 seconds' AS ok FROM blades"
                                     ).fetchone()["ok"]
                assert fresh
            finally:
                eng.proc.send_signal(signal.SIGCONT)
    finally:
        assert eng.stop() == 0
    # a clean stop withdraws the address: blades no longer send beats to a port nobody reads
