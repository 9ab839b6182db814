"""A farm of several hosts, for real: the engine's host, two render hosts and an artist's
workstation, each in its own network namespace with a private address, joined by a bridge.

The site's server runs on the engine's host and listens on its address; the blades and the
workstation have nothing but a db.toml naming the host, the port and their identity (a blade
login, a person), with passwords over TCP.  A job spooled at the workstation runs on both render
hosts; the wrong password is refused at the door.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import clean_env, make_site, program, root_only
from test_engine import EngineProcess

from tractorcli.db.connection import connect

NET = "10.77.{}.{}"  # a private network made by the test, inside its namespaces only
HOSTS = {"eng": 1, "b1": 2, "b2": 3, "ws": 4}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {r.stderr}")
    return r


@pytest.fixture
def hosts():
    """Namespaces tr<tag>-eng, -b1, -b2, -ws on 10.77.<n>.0/24 through a bridge in tr<tag>-sw."""
    if os.geteuid() != 0 or sh("ip", "netns", "list", check=False).returncode != 0:
        pytest.skip("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:4]
    subnet = int(tag, 16) % 200 + 20
    names = {h: f"tr{tag}-{h}" for h in HOSTS}
    sw = f"tr{tag}-sw"
    made = []
    try:
        for ns in (sw, *names.values()):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for h, n in HOSTS.items():
            ns = names[h]
            sh("ip", "-n", sw, "link", "add", f"v-{h}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", sw, "link", "set", f"v-{h}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{NET.format(subnet, n)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
    except AssertionError as exc:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
        pytest.skip(f"cannot build test hosts here: {exc}")
    yield {h: (names[h], NET.format(subnet, n)) for h, n in HOSTS.items()}
    for ns in made:
        # whatever still runs in a namespace (a server, a blade) goes with it
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            sh("kill", "-9", pid, check=False)
        sh("ip", "netns", "del", ns, check=False)


def on(host: tuple[str, str], prog: str, cfg: Path, *args: str, input: str | None = None,
       **kw) -> subprocess.CompletedProcess:
    """Run an installed program on a test host (in its namespace)."""
    return subprocess.run(["ip", "netns", "exec", host[0], program(prog), "--configdir", str(cfg), *args],
                          capture_output=True, text=True, timeout=120, env=dict(clean_env(), TZ="UTC"),
                          input=input, stdin=None if input is not None else subprocess.DEVNULL, **kw)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def remote_config(base: Path, name: str, engine_addr: str, port: int, login: str, password: str) -> Path:
    d = base / name
    d.mkdir()
    (d / "tractor.toml").write_text(f'data_dir = "{d / "data"}"\nblade_run_as = "blade"\n')
    (d / "db.toml").write_text(f'host = "{engine_addr}"\nport = {port}\nlogin = "{login}"\n'
                               f'password = "{password}"\n')
    return d


JOB = """Job -title {across the farm} -subtasks {
%s
}
"""


@root_only
def test_a_job_from_a_workstation_runs_on_two_render_hosts(hosts, tmp_path):
    eng = hosts["eng"]
    cfg, s = make_site(db_toml=f'password = "site pw"\nlisten_addresses = ["localhost", "{eng[1]}"]\n')
    try:
        ok(on(eng, "tractor-dbctl", cfg, "--start-for-engine"))
        for blade in ("b1", "b2"):
            ok(on(eng, "tractor-dbctl", cfg, "--add-blade-login", f"rack-{blade}", "--password-file", "-",
                  input=f"{blade} pw\n"))
        ok(on(eng, "tractor-dbctl", cfg, "--add-user", "ann", "--password-file", "-", input="ann pw\n"))

        ws = remote_config(tmp_path, "ws", eng[1], s.db.port, "ann", "ann pw")
        tasks = "\n".join(f"  Task {{t{i}}} -cmds {{ RemoteCmd {{/bin/sleep 0.4}} }}" for i in range(8))
        job = tmp_path / "farm.alf"
        job.write_text(JOB % tasks)
        r = ok(on(hosts["ws"], "tractor-spool", ws, str(job)))
        jid = int(r.stdout.strip().rsplit(" ", 1)[1])

        blades = []
        for blade in ("b1", "b2"):
            bcfg = remote_config(tmp_path, blade, eng[1], s.db.port, f"rack-{blade}", f"{blade} pw")
            blades.append(subprocess.Popen(
                ["ip", "netns", "exec", hosts[blade][0], program("tractor-blade"), "--configdir", str(bcfg),
                 "--heartbeat", "0.2", "--exit-when-idle", "--name", f"render-{blade}", "--slots", "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=clean_env()))
        for b in blades:
            _, err = b.communicate(timeout=90)
            assert b.returncode == 0, err

        # the workstation follows its job with tq
        out = ok(on(hosts["ws"], "tq", ws, "jobs", f"jid={jid}", "--cols", "jid,owner,numdone")).stdout
        assert f"{jid}" in out and "ann" in out

        with connect(s, autocommit=True) as conn:
            assert conn.execute("SELECT owner, numdone, numtasks FROM jobs WHERE jid = %s", (jid,)).fetchone() == {
                "owner": "ann", "numdone": 8, "numtasks": 8}
            ran = conn.execute("SELECT b.name, b.login, count(*) AS n FROM invocations i JOIN blades b "
                               "ON b.bladeid = i.bladeid WHERE i.jid = %s GROUP BY 1, 2 ORDER BY 1", (jid,)).fetchall()
            assert [(r["name"], r["login"]) for r in ran] == [("render-b1", "rack-b1"), ("render-b2", "rack-b2")]
            assert sum(r["n"] for r in ran) == 8
            # the server saw them come from their own hosts
            seen = {r["usename"]: r["addr"] for r in conn.execute(
                "SELECT usename, host(client_addr) AS addr FROM pg_stat_activity WHERE usename = 'ann'")}
            assert seen == {} or seen == {"ann": hosts["ws"][1]}

        # the wrong password, or none, is refused at the door
        bad = remote_config(tmp_path, "bad", eng[1], s.db.port, "ann", "guess")
        r = on(hosts["ws"], "tq", bad, "jobs")
        assert r.returncode != 0 and "password authentication failed" in r.stderr
    finally:
        on(eng, "tractor-dbctl", cfg, "--stop")
        time.sleep(0.2)


def _wait(what: str, pred, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (got := pred()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return got


@root_only
def test_engine_wakeups_and_beats_across_hosts(hosts, tmp_path):
    # BladeWakeups = "engine" on a farm of hosts: the engine (on its host) wakes the render hosts'
    # blades by datagram, and their idle heartbeats come to it as datagrams, written in batches
    # (wakeups.py); a beat forged from the workstation for a render blade is not written.
    from tractorcli import wakeups
    from tractorcli.db import dispatch

    eng = hosts["eng"]
    cfg, s = make_site('blade_wakeups = "engine"\nblade_lease_secs = 300\n',
                       f'password = "site pw"\nlisten_addresses = ["localhost", "{eng[1]}"]\n')
    engine = EngineProcess(cfg, netns=eng[0])
    blades = []
    try:
        engine.wait_for("tractor-engine running")
        for blade in ("b1", "b2"):
            ok(on(eng, "tractor-dbctl", cfg, "--add-blade-login", f"rack-{blade}", "--password-file", "-",
                  input=f"{blade} pw\n"))
        ok(on(eng, "tractor-dbctl", cfg, "--add-user", "ann", "--password-file", "-", input="ann pw\n"))
        for blade in ("b1", "b2"):
            bcfg = remote_config(tmp_path, blade, eng[1], s.db.port, f"rack-{blade}", f"{blade} pw")
            (bcfg / "tractor.toml").write_text((bcfg / "tractor.toml").read_text() + 'blade_wakeups = "engine"\n')
            blades.append(subprocess.Popen(
                ["ip", "netns", "exec", hosts[blade][0], program("tractor-blade"), "--configdir", str(bcfg),
                 "--heartbeat", "0.3", "--idle-heartbeat", "0.3", "--name", f"render-{blade}", "--slots", "1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env()))
        with connect(s, autocommit=True) as conn:
            rows = _wait("the render blades did not register their wake ports", lambda: (
                r := conn.execute("SELECT bladeid, name, ipaddr FROM blades WHERE wakeport IS NOT NULL "
                                  "ORDER BY name").fetchall()) and len(r) == 2 and r)
            assert [r["ipaddr"] for r in rows] == [hosts["b1"][1], hosts["b2"][1]]
            # the engine took over their idle heartbeats: their rows stay fresh while their own
            # connections last heartbeat through the database before the window
            time.sleep(1.5)
            since = conn.execute("SELECT now() AS t").fetchone()["t"]
            first = {r["name"]: r["t"] for r in conn.execute("SELECT name, heartbeattime AS t FROM blades")}
            time.sleep(2.0)
            later = {r["name"]: r["t"] for r in conn.execute("SELECT name, heartbeattime AS t FROM blades")}
            assert all(later[n] > first[n] for n in first), (first, later)
            through_db = conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE usename LIKE 'rack-%%' AND state_change > %s "
                "AND query LIKE '%%tractor_heartbeat_v3%%'", (since,)).fetchone()["n"]
            assert through_db == 0

            # a beat for render-b1 forged on the workstation: answered 'check', not written
            value = dispatch.engine_beats(conn)
            to = wakeups.beats_address(value, eng[1])
            assert to[0] == eng[1]
            forged = wakeups.beat_datagram(rows[0]["bladeid"], reload="0", svcids=None, host="x", after=0,
                                           metrics={}, loadavg=99.0, availmemory=0, availdisk=0)
            probe = tmp_path / "forge.py"
            probe.write_text(
                "import socket, sys\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
                f"s.sendto({forged!r}, ({to[0]!r}, {to[1]}))\n"
                "sys.stdout.write(s.recv(256).decode())\n")
            r = subprocess.run(["ip", "netns", "exec", hosts["ws"][0], "python3", str(probe)], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr + engine.text()
            assert wakeups.parse_answer(r.stdout.encode()) == ("check", str(rows[0]["bladeid"]))
            assert conn.execute("SELECT loadavg FROM blades WHERE name = 'render-b1'").fetchone()["loadavg"] != 99.0

            # a job spooled at the workstation wakes them (datagrams from the engine's host)
            ws = remote_config(tmp_path, "ws", eng[1], s.db.port, "ann", "ann pw")
            tasks = "\n".join(f"  Task {{t{i}}} -cmds {{ RemoteCmd {{/bin/sleep 0.3}} }}" for i in range(4))
            job = tmp_path / "farm.alf"
            job.write_text(JOB % tasks)
            jid = int(ok(on(hosts["ws"], "tractor-spool", ws, str(job))).stdout.strip().rsplit(" ", 1)[1])
            _wait("the job did not finish on the woken blades", lambda: conn.execute(
                "SELECT numdone FROM jobs WHERE jid = %s", (jid,)).fetchone()["numdone"] == 4, timeout=30)
            ran = {r["name"] for r in conn.execute("SELECT DISTINCT b.name FROM invocations i JOIN blades b "
                                                  "ON b.bladeid = i.bladeid WHERE i.jid = %s", (jid,))}
            assert ran <= {"render-b1", "render-b2"} and ran
    finally:
        _stop(*blades)
        _stop(engine.proc, timeout=60)


def _stop(*procs: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL what has not ended `timeout` seconds later."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
