"""tractor-blade end to end: the installed program running real commands from a real job database.

Each test has its own job database (a copy of the session's template) and
its own site config dir pointing at it, so blades of different tests never
see each other's work.  Jobs are spooled with the real tractor-spool or with
db.spool.spool_job; blades run as subprocesses with short heartbeats.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import base_dir, clean_env, program

from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Command, Job, Task, resolve
from tractorcli.submit import default_host

HB = "0.2"


class Site:
    """A config dir whose job database is this test's fresh database."""

    def __init__(self, settings, blade_toml: str = ""):
        self.root = base_dir() / f"blade-{time.monotonic_ns()}"
        self.cfg = self.root / "config"
        self.data = self.root / "data"
        self.work = self.root / "work"
        for p in (self.cfg, self.data, self.work):
            p.mkdir(parents=True)
        (self.cfg / "tractor.toml").write_text(f'data_dir = "{self.data}"\nblade_run_as = "blade"\n')
        (self.cfg / "db.toml").write_text(f'port = {settings.db.port}\ndata_dir = "{settings.db_data_dir}"\n'
                                          f'dbname = "{settings.db.dbname}"\n')
        if blade_toml:
            (self.cfg / "blade.toml").write_text(blade_toml)
        self.conn = connect(settings, autocommit=True)
        self.blades: list[BladeProc] = []

    def spool(self, *tasks: Task, owner: str = "ann", spoolhost: str | None = None, **kw) -> int:
        job = Job(title=kw.pop("title", "test"), subtasks=tasks, **kw.pop("job", {}))
        return spool_job(self.conn, resolve(job), owner=owner, spoolhost=spoolhost or default_host(),
                         spoolcwd=str(self.work), **kw)

    def blade(self, *args: str, env: dict | None = None) -> BladeProc:
        b = BladeProc(self, *args, env=env)
        self.blades.append(b)
        return b

    def one(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchall()

    def invocations(self, jid: int) -> list[dict]:
        return self.all("SELECT * FROM invocations WHERE jid = %s ORDER BY cid, iid", jid)

    def task(self, jid: int, tid: int) -> dict:
        return self.one("SELECT * FROM tasks WHERE jid = %s AND tid = %s", jid, tid)

    def log(self, jid: int, tid: int, owner: str = "ann") -> str:
        return (self.data / "cmd-logs" / owner / f"J{jid}" / f"T{tid}.log").read_text()

    def wait(self, what, timeout: float = 20, step: float = 0.05, msg: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() > deadline:
                logs = "\n".join(b.text() for b in self.blades)
                pytest.fail(f"timed out waiting {msg or what}\nblade logs:\n{logs}")
            time.sleep(step)

    def close(self) -> None:
        for b in self.blades:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(10)
        self.conn.close()


class BladeProc:
    def __init__(self, site: Site, *args: str, env: dict | None = None):
        self.logfile = site.root / f"blade-{len(site.blades)}.log"
        self.proc = subprocess.Popen([program("tractor-blade"), "--configdir", str(site.cfg), "--heartbeat", HB, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.logfile, "w"), env=dict(clean_env(), **(env or {})))

    def text(self) -> str:
        return self.logfile.read_text()

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the blade did not exit:\n{self.text()}")


@pytest.fixture
def site(db_settings):
    sites: list[Site] = []

    def make(blade_toml: str = "") -> Site:
        s = Site(db_settings, blade_toml)
        sites.append(s)
        return s

    yield make
    for s in sites:
        s.close()


def sh(script: str, **kw) -> Command:
    return Command(("/bin/sh", "-c", script), **kw)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def states(site: Site, jid: int) -> dict[str, str]:
    return {r["title"]: r["state"] for r in site.all("SELECT title, state FROM tasks WHERE jid = %s", jid)}


# --- order and placement ------------------------------------------------------------


ORDER_JOB = """##AlfredToDo 3.0
Job -title {order} -subtasks {
  Task {comp} -subtasks {
    Task {fg} -cmds {
      RemoteCmd {/bin/sh -c {echo fg1 >> order.txt}}
      RemoteCmd {/bin/sh -c {echo fg2 >> order.txt}}
    }
    Task {bg} -cmds { RemoteCmd {/bin/sh -c {echo bg >> order.txt}} }
  } -cmds { RemoteCmd {/bin/sh -c {echo comp >> order.txt}} }
  Task {last} -subtasks { Instance {comp} } -cmds { RemoteCmd {/bin/sh -c {echo last >> order.txt}} }
}
"""


def test_dependency_order_on_one_blade(site):
    s = site()
    (s.work / "order.alf").write_text(ORDER_JOB)
    spooled = subprocess.run([program("tractor-spool"), "--configdir", str(s.cfg), "--user", "ann", "order.alf"],
                             cwd=s.work, capture_output=True, text=True, env=clean_env(), timeout=60,
                             stdin=subprocess.DEVNULL)
    assert spooled.returncode == 0, spooled.stderr
    jid = int(spooled.stdout.split()[-1])
    b = s.blade("--exit-when-idle", "--slots", "1")
    assert b.wait() == 0, b.text()
    # commands start in the spool directory; subtasks first, a task's commands in order
    assert (s.work / "order.txt").read_text().split() == ["fg1", "fg2", "bg", "comp", "last"]
    job = s.one("SELECT * FROM jobs WHERE jid = %s", jid)
    assert (job["phase"], job["numdone"], job["numerror"]) == ("finished", 4, 0)
    assert [i["rcode"] for i in s.invocations(jid)] == [0] * 5
    assert "no work ready and nothing running: exiting" in b.text()


def test_two_blades_with_profiles_and_service_keys(site):
    s = site("""
[[profile]]
name = "gpu"
provides = ["GPU", "Render"]
slots = 2

[[profile]]
name = "cpu"
provides = ["CPU", "Render"]
slots = 2
""")
    t = lambda title, svc: Task(title, cmds=(sh(f"echo {title}", service=svc),))
    jid = s.spool(t("g1", "GPU"), t("g2", "GPU && !CPU"), t("c1", "CPU"), t("c2", "cpu"), t("named", "bladec"),
                  t("either", "Render && (GPU || CPU)"), t("nobody", "Houdini"))
    gpu = s.blade("--profile", "gpu", "--name", "bladeg", "--exit-when-idle")
    cpu = s.blade("--profile", "cpu", "--name", "bladec", "--exit-when-idle")
    assert gpu.wait() == 0 and cpu.wait() == 0, gpu.text() + cpu.text()
    ran = {r["title"]: r["bladename"] for r in s.all(
        "SELECT t.title, i.bladename FROM invocations i JOIN tasks t USING (jid, tid) WHERE i.jid = %s", jid)}
    assert {k: v for k, v in ran.items() if k != "either"} == {
        "g1": "bladeg", "g2": "bladeg", "c1": "bladec", "c2": "bladec", "named": "bladec"}
    assert ran["either"] in ("bladeg", "bladec")
    assert states(s, jid)["nobody"] == "ready"  # no blade provides Houdini
    blades = {r["name"]: r for r in s.all("SELECT * FROM blades")}
    assert blades["bladeg"]["profile"] == "gpu" and blades["bladeg"]["numslots"] == 2
    assert set(blades["bladec"]["provides"]) >= {"CPU", "Render", "bladec"}
    assert all(b["status"] == "down" for b in blades.values())


def test_max_commands(site):
    s = site()
    jid = s.spool(*(Task(f"t{i}", cmds=(sh(f"echo {i}"),)) for i in range(3)))
    b = s.blade("--max-commands", "2", "--slots", "2")
    assert b.wait() == 0, b.text()
    assert sorted(states(s, jid).values()) == ["done", "done", "ready"]
    assert "ran 2 command(s) (--max-commands): exiting" in b.text()


# --- what a command sees ---------------------------------------------------------------


def test_substitutions_environment_msg_and_appended_log(site):
    s = site("""
[defaults]
env = { SITE_VAR = "from-profile" }
""")
    script = ('echo "args %j %t %c n=%n"; echo "env $TR_ENV_JID $TR_ENV_TID $TR_ENV_CID $TR_ENV_JOB_PROJECT"; '
              'echo "site $SITE_VAR key $FOO"; echo "cwd $(pwd)"; echo "stdin: $(cat)"; echo oops >&2')
    jid = s.spool(Task("sub", cmds=(
        sh(script, msg="hello %j from msg", envkey=("setenv FOO=bar",)),
        Command(("/bin/echo", "second", "%t", "%%c"), local=True),  # a local Cmd, spooled from this host
    )), projects=["film", "fx"])
    other = s.spool(Task("elsewhere", cmds=(Command(("/bin/echo", "x"), local=True),)), spoolhost="otherhost")
    b = s.blade("--exit-when-idle")
    assert b.wait() == 0, b.text()
    log = s.log(jid, 1)
    assert f"args {jid} 1 1 n=1\n" in log
    assert f"env {jid} 1 1 film fx\n" in log
    assert "site from-profile key bar\n" in log
    assert f"cwd {s.work}\n" in log
    assert f"stdin: hello {jid} from msg\n" in log
    assert "oops\n" in log  # stderr too
    assert "second 1 %c\n" in log
    # one header and one footer per invocation, in order
    assert log.count("====[") == 4 and log.index(f"/J{jid}/T1/C1.1") < log.index(f"/J{jid}/T1/C2.1")
    assert log.count("process complete, exit code: 0") == 2
    assert states(s, jid) == {"sub": "done"}
    assert states(s, other) == {"elsewhere": "ready"}  # local Cmds run only on their spooling host

    # the same task run again (a retry, a reused job id) appends to its log
    jid2 = s.spool(Task("again", cmds=(sh("echo again"),)))
    log_before = s.log(jid, 1)
    path = s.data / "cmd-logs" / "ann" / f"J{jid2}" / "T1.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("earlier run\n")
    b = s.blade("--exit-when-idle")
    assert b.wait() == 0, b.text()
    assert s.log(jid2, 1).startswith("earlier run\n") and "again\n" in s.log(jid2, 1)
    assert s.log(jid, 1) == log_before


def test_progress_and_exit_status_directives(site):
    s = site()
    jid = s.spool(
        Task("progress", cmds=(sh("echo TR_PROGRESS 40%; sleep 1.2; echo ALF_PROGRESS 75; sleep 0.6; "
                                  "echo TR_EXIT_STATUS 0; exit 3"),)),
        Task("override", cmds=(sh("echo TR_EXIT_STATUS 7; exit 0"),)),
        Task("linger", cmds=(sh("echo TR_EXIT_STATUS 0; sleep 30"),)),
    )
    b = s.blade("--exit-when-idle", "--slots", "3")
    s.wait(lambda: s.task(jid, 1)["progress"] == 40, msg="progress 40")
    assert s.task(jid, 1)["state"] == "active"
    s.wait(lambda: s.task(jid, 1)["progress"] == 75, msg="progress 75")
    assert b.wait() == 0, b.text()
    rc = {i["tid"]: i["rcode"] for i in s.invocations(jid)}
    assert rc == {1: 0, 2: 7, 3: 0}
    assert states(s, jid) == {"progress": "done", "override": "error", "linger": "done"}
    log = s.log(jid, 1)
    assert "\nTR_PROGRESS 40%" not in log and "\nALF_PROGRESS" not in log and "exit status 0 from TR_EXIT_STATUS (the process gave 3)" in log
    # a process that printed TR_EXIT_STATUS is killed ~2 s later instead of sleeping 30 s
    inv3 = s.invocations(jid)[2]
    assert inv3["elapsedreal"] < 10


def test_exit_codes(site):
    s = site()
    (s.work / "plain.txt").write_text("not a program\n")
    os.chmod(s.work / "plain.txt", 0o644)
    jid = s.spool(
        Task("fails", cmds=(sh("exit 3"),)),
        Task("signal", cmds=(sh("kill -TERM $$"),)),
        Task("missing", cmds=(Command(("no-such-program-here", "x")),)),
        Task("noexec", cmds=(Command((str(s.work / "plain.txt"),)),)),
        Task("toolong", cmds=(Command(("sleep", "20"), maxrunsecs=0.5),)),
        Task("tooshort", cmds=(Command(("true",), minrunsecs=30),)),
        Task("second", cmds=(sh("exit 0"), sh("echo never"))),
    )
    b = s.blade("--exit-when-idle", "--slots", "4")
    assert b.wait() == 0, b.text()
    rc = {r["title"]: r["rcode"] for r in s.all(
        "SELECT t.title, i.rcode FROM invocations i JOIN tasks t USING (jid, tid) WHERE i.jid = %s AND i.cid = "
        "(SELECT min(cid) FROM commands c WHERE c.jid = i.jid AND c.tid = i.tid)", jid)}
    assert rc == {"fails": 3, "signal": -15, "missing": 20002, "noexec": 20013, "toolong": 21001,
                  "tooshort": 21002, "second": 0}
    st = states(s, jid)
    assert all(st[t] == "error" for t in rc if t != "second") and st["second"] == "done"
    assert "program not found" in s.log(jid, 3)
    assert "ran longer than -maxrunsecs 0.5: killed" in s.log(jid, 5)
    assert "sooner than -minrunsecs 30" in s.log(jid, 6)
    elapsed = {i["tid"]: i["elapsedreal"] for i in s.invocations(jid)}
    assert elapsed[5] < 5


def test_builtins(site):
    s = site()
    (s.work / "a.tmp").write_text("a")
    (s.work / "b.tmp").write_text("b")
    jid = s.spool(
        Task("echo", cmds=(Command(("TractorBuiltIn", "Echo", "hello", "J%j")),
                           Command(("TractorBuiltIn", "sleep", "0.3")),
                           Command(("TractorBuiltIn", "PrintEnv", "TR_ENV_TID")),
                           Command(("TractorBuiltIn", "System", "echo sys $TR_ENV_CID | tr a-z A-Z")))),
        Task("files", cmds=(Command(("TractorBuiltIn", "File", "mkdir", "out/sub")),
                            Command(("TractorBuiltIn", "File", "copy", "a.tmp", "out/sub")),
                            Command(("TractorBuiltIn", "File", "list", "out/sub")),
                            Command(("TractorBuiltIn", "File", "delete", "*.tmp")),
                            Command(("TractorBuiltIn", "File", "delete", "*.nothing")))),
        Task("unknown", cmds=(Command(("TractorBuiltIn", "Frobnicate")),)),
    )
    b = s.blade("--exit-when-idle", "--slots", "3")
    assert b.wait() == 0, b.text()
    log = s.log(jid, 1)
    assert f"hello J{jid}\n" in log and "\n1\n" in log and "SYS 4\n" in log
    assert {i["cid"]: i["rcode"] for i in s.invocations(jid)} == {
        1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 20002, 10: 20022}
    assert (s.work / "out" / "sub" / "a.tmp").read_text() == "a"
    assert not (s.work / "a.tmp").exists() and not (s.work / "b.tmp").exists()
    assert "a.tmp\n" in s.log(jid, 2) and "no files matched" in s.log(jid, 2)
    assert "unknown TractorBuiltIn command 'Frobnicate'" in s.log(jid, 3)
    echo_sleep = next(i for i in s.invocations(jid) if i["cid"] == 2)
    assert echo_sleep["elapsedreal"] >= 0.3


# --- faults and control ---------------------------------------------------------------


def test_invocations_record_the_commands_pid(site):
    s = site()
    jid = s.spool(Task("quick", cmds=(sh("echo $$ > quick.pid"),)),
                  Task("slow", cmds=(sh("echo $$ > slow.pid; sleep 1.5"),)))
    b = s.blade("--name", "pids", "--exit-when-idle")
    assert b.wait() == 0, b.text()
    pids = {r["cid"]: r["pid"] for r in s.invocations(jid)}
    assert pids == {1: int((s.work / "quick.pid").read_text()), 2: int((s.work / "slow.pid").read_text())}


def test_a_sigkilled_blade_loses_no_work(site):
    s = site()
    d.set_params(s.conn, {"BladeLeaseSecs": 1})
    jid = s.spool(Task("work", cmds=(sh("echo started >> runs.txt; sleep 2; echo finished >> runs.txt"),)))
    a = s.blade("--name", "doomed")
    s.wait(lambda: (s.work / "runs.txt").exists(), msg="the first run")
    a.proc.kill()
    a.proc.wait(10)
    # the engine is not here: housekeep as it would, until the lease has run out
    s.wait(lambda: d.housekeep(s.conn)[0] == 1, step=0.2, msg="the lease to run out")
    assert states(s, jid) == {"work": "ready"}
    b = s.blade("--name", "rescuer", "--exit-when-idle")
    assert b.wait() == 0, b.text()
    time.sleep(0.3)
    assert (s.work / "runs.txt").read_text().split() == ["started", "started", "finished"]  # killed with its blade
    inv = s.invocations(jid)
    assert [(i["iid"], i["bladename"], i["current"], i["rcode"]) for i in inv] == [
        (1, "doomed", False, None), (2, "rescuer", True, 0)]
    assert states(s, jid) == {"work": "done"}


def test_a_sigkilled_blade_holding_a_batch_gives_every_command_back(site):
    # one claim took four commands at once (a batch); the blade dies with all four running
    s = site()
    d.set_params(s.conn, {"BladeLeaseSecs": 1})
    jid = s.spool(*(Task(f"t{i}", cmds=(sh("echo $$ >> pids.txt; sleep 2"),)) for i in range(4)))
    a = s.blade("--name", "doomed", "--slots", "4")
    pids = s.work / "pids.txt"
    s.wait(lambda: pids.exists() and len(pids.read_text().split()) == 4, msg="four commands running")
    assert {i["bladename"] for i in s.invocations(jid)} == {"doomed"}
    a.proc.kill()
    a.proc.wait(10)
    first = [int(p) for p in pids.read_text().split()]
    s.wait(lambda: not any(alive(p) for p in first), timeout=5, msg="the batch killed with its blade")
    # the engine is not here: housekeep as it would, until the lease has run out
    s.wait(lambda: d.housekeep(s.conn)[0] == 4, step=0.2, msg="the four leases to run out")
    assert set(states(s, jid).values()) == {"ready"}
    b = s.blade("--name", "rescuer", "--slots", "4", "--exit-when-idle")
    assert b.wait() == 0, b.text()
    assert set(states(s, jid).values()) == {"done"}
    runs = [(i["cid"], i["iid"], i["bladename"], i["current"], i["rcode"]) for i in s.invocations(jid)]
    assert sorted(runs) == sorted([(c, 1, "doomed", False, None) for c in range(1, 5)]
                                  + [(c, 2, "rescuer", True, 0) for c in range(1, 5)])


def test_the_whole_process_group_dies_with_a_sigkilled_blade(site):
    # the blade's warden (blade/warden.py) kills each command's process group when the blade
    # dies: the command and what it started, here a background sleep
    s = site()
    jid = s.spool(Task("long", cmds=(sh("sleep 300 & echo $! > child.pid; sleep 300"),)))
    a = s.blade("--name", "doomed")
    pidfile = s.work / "child.pid"
    s.wait(lambda: pidfile.exists() and pidfile.read_text().strip(), msg="the command to start")
    child = int(pidfile.read_text())
    main = s.wait(lambda: s.invocations(jid)[0]["pid"], msg="the pid recorded")
    assert alive(child) and alive(main)
    a.proc.kill()
    a.proc.wait(10)
    s.wait(lambda: not alive(child) and not alive(main), timeout=5, msg="the command's group to be killed")


def test_a_task_retried_while_active_is_killed(site):
    s = site()
    jid = s.spool(Task("long", cmds=(sh("sleep 60 & echo $! > pid.txt; wait"),)))
    b = s.blade("--name", "b1")
    pidfile = s.work / "pid.txt"
    s.wait(lambda: pidfile.exists() and pidfile.read_text().strip(), msg="the command to start")
    pid = int(pidfile.read_text())
    assert alive(pid)
    t0 = time.monotonic()
    # what tq retry does to the running invocation: it is no longer current
    s.conn.execute("UPDATE invocations SET current = false WHERE jid = %s", (jid,))
    s.wait(lambda: not alive(pid), timeout=10, msg="the process group to be killed")
    assert time.monotonic() - t0 < 5
    s.wait(lambda: "no longer this blade's" in b.text(), timeout=5)
    assert b.proc.poll() is None  # the blade carries on
    b.proc.send_signal(signal.SIGTERM)
    assert b.wait() == 0, b.text()
    assert s.invocations(jid)[0]["rcode"] is None  # a stale end is not reported


def test_ends_close_together_are_reported_in_one_cycle(site):
    # --report-gather: after a command ends the blade waits that long for its other running
    # commands before it reports, so one cycle (one transaction: one now()) carries their ends
    s = site()
    tasks = [Task(f"t{i}", cmds=(sh(f"sleep {d}"),)) for i, d in enumerate((0.1, 0.4, 0.7))]
    gathered = s.spool(*tasks)
    assert s.blade("--slots", "3", "--report-gather", "3", "--exit-when-idle").wait() == 0
    at_once = s.spool(*tasks)
    assert s.blade("--slots", "3", "--report-gather", "0", "--exit-when-idle").wait() == 0
    for jid, stoptimes in ((gathered, 1), (at_once, 3)):
        runs = s.invocations(jid)
        assert [r["rcode"] for r in runs] == [0, 0, 0]
        assert len({r["stoptime"] for r in runs}) == stoptimes


def test_a_retry_is_heard_at_once_not_at_the_next_heartbeat(site):
    # the invocation taken from the blade sends tractor_check with its id (functions/blades.sql);
    # the blade's listener hears it and heartbeats now: with a heartbeat of 60 s, a kill within
    # a few seconds was that
    s = site()
    d.set_params(s.conn, {"BladeLeaseSecs": 300})
    jid = s.spool(Task("long", cmds=(sh("sleep 60 & echo $! > pid.txt; wait"),)))
    b = s.blade("--name", "b1", "--heartbeat", "60")
    pidfile = s.work / "pid.txt"
    s.wait(lambda: pidfile.exists() and pidfile.read_text().strip(), msg="the command to start")
    pid = int(pidfile.read_text())
    time.sleep(0.5)  # past the claim's own heartbeat
    assert d.retry(s.conn, jid, [1]) == [1]
    s.wait(lambda: not alive(pid), timeout=10, msg="the process group to be killed")
    s.wait(lambda: "no longer this blade's" in b.text(), timeout=5)


def test_stopping_wait_handback_and_a_second_signal(site):
    s = site()
    jid = s.spool(Task("long", cmds=(sh("sleep 60 & echo $! >> pids.txt; wait"),)))
    pids = s.work / "pids.txt"

    def started(n: int) -> list[int]:
        lines = pids.read_text().split() if pids.exists() else []
        return [int(x) for x in lines] if len(lines) >= n else []

    # --on-stop handback: the command is killed and back in the queue at once
    hb = s.blade("--name", "hb", "--on-stop", "handback")
    pid = s.wait(lambda: started(1), msg="the command to start")[0]
    hb.proc.send_signal(signal.SIGTERM)
    assert hb.wait(15) == 0, hb.text()
    assert not alive(pid)
    assert "1 command(s) handed back to the queue" in hb.text()
    assert s.task(jid, 1)["state"] == "ready" and s.invocations(jid)[0]["current"] is False

    # --on-stop wait (the default): a second signal kills and hands back
    w = s.blade("--name", "w")
    pid = s.wait(lambda: started(2), msg="the command to start again")[1]
    w.proc.send_signal(signal.SIGTERM)
    time.sleep(0.6)
    assert w.proc.poll() is None and alive(pid)  # waiting for its command
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait(15) == 0, w.text()
    assert not alive(pid) and s.task(jid, 1)["state"] == "ready"

    # --on-stop wait: the running command finishes and is reported; nothing new is claimed
    short = s.spool(Task("short", cmds=(sh("sleep 1; echo done > short.txt"),)), priority=500)
    w2 = s.blade("--name", "w2")
    s.wait(lambda: s.task(short, 1)["state"] == "active", msg="the short command to start")
    w2.proc.send_signal(signal.SIGTERM)
    assert w2.wait(15) == 0, w2.text()
    assert (s.work / "short.txt").read_text() == "done\n" and s.task(short, 1)["state"] == "done"
    assert s.task(jid, 1)["state"] == "ready"  # the long one was not started


def test_explain(site):
    s = site("""
[[profile]]
name = "gpu"
provides = ["GPU", "Render"]
slots = 3
""")

    def explain(*args):
        return subprocess.run([program("tractor-blade"), "--configdir", str(s.cfg), *args], capture_output=True,
                              text=True, env=clean_env(), timeout=30, stdin=subprocess.DEVNULL)

    ok = explain("--explain", "gpu && @.sa >= 3")
    assert ok.returncode == 0 and ok.stdout.startswith("matches: gpu && @.sa >= 3"), ok
    no = explain("--explain", "Render && !GPU")
    assert no.returncode == 1 and "does not match" in no.stdout and "gpu" in no.stdout, no
    named = explain("--name", "special", "--explain", "special")
    assert named.returncode == 0, named
    bad = explain("--explain", "GPU &&")
    assert bad.returncode == 11 and "column 7" in bad.stderr, bad
    # no database is needed: a site whose server does not exist
    (s.cfg / "db.toml").write_text("port = 1\n")
    assert explain("--explain", "gpu").returncode == 0
