"""The site's pooler (db.toml [pooler]: PgBouncer in transaction mode, run by tractor-dbctl beside
the server; src/tractorcli/pooler.py): started, reported and stopped with the server; people and
blades log in through it with their own passwords and nobody else does; a real blade runs a job
through it; many clients share a capped number of server connections.  Real PgBouncer (Debian's
package, which .ci/run installs) and real PostgreSQL, started by the project's own code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import _stop_quietly, clean_env, dbctl, make_site, program

from tractorcli.config import load_settings
from tractorcli.db.connection import ADMIN, BLADE, CLIENT, LISTEN, connect, conninfo, pooled
from tractorcli.errors import ConfigError, PermissionDenied
from tractorcli.pooler import Pooler, find_program

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
needs_pgbouncer = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed (apt-get install "
                                                                "pgbouncer; .ci/run does)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs the server and the pooler as postgres: needs root")

CAP = 10  # max_db_connections of the test site
POOLED_ROLES = ("ann", "rack", "tractor_pooler")  # whoever comes through the pooler (and its look-ups)
# the server's backends of those roles: connections the pooler holds (and none else here: the
# test's own direct connections are the site role's)
SERVER_CONNS = ("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND usename = ANY(%s)")


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def client_config(base: Path, name: str, site, login: str, password: str, *, port: int | None = None) -> Path:
    """The db.toml of a host that reaches the site over TCP (localhost here), through its pooler."""
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    (d / "tractor.toml").write_text(f'data_dir = "{d / "data"}"\nblade_run_as = "blade"\n')
    (d / "db.toml").write_text(f'host = "127.0.0.1"\nport = {port or site.db.port}\nlogin = "{login}"\n'
                               f'password = "{password}"\n'
                               f"[pooler]\nenabled = true\nport = {site.db.pooler_port}\n")
    return d


def gone(pid: int) -> bool:
    """The process has ended (a zombie left for an init that does not reap counts as ended)."""
    try:
        state = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:"))
    except (OSError, StopIteration):
        return True
    return state.split()[1] in ("Z", "X")


def as_login(settings, login: str, password: str):
    db = dataclasses.replace(settings.db, host="127.0.0.1", login=login, password=password)
    return dataclasses.replace(settings, db=db)


# --- configuration and who goes through it (no server) ----------------------------------


def test_the_pooler_table_of_db_toml(tmp_path):
    (tmp_path / "db.toml").write_text("port = 7000\n[pooler]\nenabled = true\nmax_db_connections = 40\n"
                                      "default_pool_size = 8\nserver_idle_timeout = 2.5\n")
    s = load_settings(tmp_path)
    p = s.db.pooler
    assert (p.enabled, p.max_db_connections, p.pool_size, p.server_idle_timeout) == (True, 40, 8, 2.5)
    assert s.db.pooler_port == 7001  # the database's port + 1 unless given
    assert s.pooler_dir == s.db_data_dir.parent / "pgbouncer"

    (tmp_path / "db.toml").write_text("port = 7000\n\n[pooler]\nenabled = true\npool_sise = 8\n")
    with pytest.raises(ConfigError, match=r"db\.toml:5: \[pooler\] pool_sise: unknown key"):
        load_settings(tmp_path)
    (tmp_path / "db.toml").write_text("[pooler]\nmax_db_connections = 0\n")
    with pytest.raises(ConfigError, match=r"db\.toml:2: \[pooler\] max_db_connections: expected an integer"):
        load_settings(tmp_path)
    (tmp_path / "db.toml").write_text('auth = "ldap"\nlisten_addresses = ["localhost", "10.1.1.1"]\n'
                                      'password = "x"\n[pooler]\nenabled = true\n')
    with pytest.raises(ConfigError, match=r"checks passwords \(scram-sha-256\) only"):
        load_settings(tmp_path)
    (tmp_path / "db.toml").write_text("port = 7000\n[pooler]\nenabled = true\nport = 7000\n")
    with pytest.raises(ConfigError, match="the database's own port"):
        load_settings(tmp_path)


def test_conninfo_sends_only_short_work_over_tcp_through_the_pooler(tmp_path):
    (tmp_path / "db.toml").write_text("port = 7000\n[pooler]\nenabled = true\nport = 6432\n")
    local = load_settings(tmp_path)
    # on the server's host, the socket (peer authentication): never the pooler
    for purpose in (BLADE, CLIENT, LISTEN, ADMIN):
        assert not pooled(local, purpose) and conninfo(local, purpose=purpose)["port"] == 7000
    remote = as_login(local, "rack", "pw")
    for purpose in (BLADE, CLIENT):
        info = conninfo(remote, purpose=purpose)
        assert pooled(remote, purpose) and info["port"] == 6432 and info["prepare_threshold"] is None
    for purpose in (LISTEN, ADMIN):  # a session of their own: the server itself
        info = conninfo(remote, purpose=purpose)
        assert not pooled(remote, purpose) and info["port"] == 7000 and "prepare_threshold" not in info
    off = dataclasses.replace(remote, db=dataclasses.replace(remote.db, pooler=dataclasses.replace(
        remote.db.pooler, enabled=False)))
    assert conninfo(off, purpose=BLADE)["port"] == 7000


# --- a site with the pooler --------------------------------------------------------------


@pytest.fixture(scope="module")
def site():
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("runs the server and the pooler as postgres: needs root")
    from conftest import free_port

    cfg, s = make_site(db_toml=f"[pooler]\nenabled = true\nport = {free_port()}\nmax_db_connections = {CAP}\n"
                               f"pool_size = {CAP}\nserver_idle_timeout = 1\n")
    try:
        said = ok(dbctl(cfg, "--start-for-engine")).stderr
        assert "started the pooler (PgBouncer, pid" in said and f"at most {CAP} server connections" in said
        ok(dbctl(cfg, "--add-user", "ann", "--password-file", "-", input="ann pw\n"))
        ok(dbctl(cfg, "--add-blade-login", "rack", "--password-file", "-", input="rack pw\n"))
        yield cfg, s
    finally:
        Pooler(s).stop()
        _stop_quietly(s)


@needs_pgbouncer
@needs_root
def test_status_reports_the_pooler_running_as_the_server_account_on_localhost(site):
    cfg, s = site
    out = ok(dbctl(cfg, "--status")).stdout
    assert "pooler: running (pid" in out and f"on port {s.db.pooler_port} (answers), at most {CAP}" in out
    facts = json.loads(ok(dbctl(cfg, "--status", "--json")).stdout)["pooler"]
    assert facts["running"] and facts["enabled"] and facts["port"] == s.db.pooler_port
    assert facts["max_db_connections"] == CAP
    pid = facts["pid"]
    uid = int(next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if ln.startswith("Uid:")).split()[1])
    import pwd

    assert pwd.getpwuid(uid).pw_name == "postgres"  # like the server: never root
    d = s.pooler_dir
    assert d.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o077 == 0 for f in d.glob("*.txt"))  # the look-up role's password
    ini = (d / "pgbouncer.ini").read_text()
    assert "pool_mode = transaction" in ini and "listen_addr = 127.0.0.1\n" in ini and "unix_socket_dir =\n" in ini
    assert f"host=127.0.0.1 port={s.db.port}" in ini  # to the server on loopback only
    assert f"max_db_connections = {CAP}" in ini
    assert "scram-sha-256" in (d / "hba.conf").read_text() and "trust" not in (d / "hba.conf").read_text()


@needs_pgbouncer
@needs_root
def test_people_and_blades_log_in_through_it_as_themselves_and_nobody_else_does(site, tmp_path):
    cfg, s = site
    for login, password, kind in (("ann", "ann pw", CLIENT), ("rack", "rack pw", BLADE)):
        with connect(as_login(s, login, password), autocommit=True, purpose=kind) as conn:
            row = conn.execute("SELECT session_user AS who, inet_server_port() AS port").fetchone()
            assert row == {"who": login, "port": s.db.port}  # the pooler logged in as them
            assert conn.info.port == s.db.pooler_port
    with pytest.raises(PermissionDenied, match=r"through the pooler on 127\.0\.0\.1:\d+: password authentication "
                                               r"failed for ann"):
        connect(as_login(s, "ann", "guess"), purpose=CLIENT)
    with pytest.raises(PermissionDenied, match="password authentication failed for nobody"):
        connect(as_login(s, "nobody", "x"), purpose=CLIENT)
    # the site's role (a superuser) has a password here and may use it on the server, not on the pooler
    ok(dbctl(cfg, "--exec-sql", "ALTER ROLE root PASSWORD 'site pw'"))
    with pytest.raises(PermissionDenied) as e:
        connect(as_login(s, "root", "site pw"), purpose=CLIENT)
    assert "people's and blades' logins only" in e.value.hint
    with connect(as_login(s, "root", "site pw"), purpose=ADMIN) as conn:
        assert conn.execute("SELECT session_user AS who").fetchone()["who"] == "root"
        # the look-up answers for people and blades only
        secrets = {r["usename"]: r["passwd"][:14] for name in ("ann", "rack", "root", "tractor_pooler")
                   for r in conn.execute("SELECT * FROM tractor_pooler_auth_v1(%s)", (name,))}
        assert secrets == {"ann": "SCRAM-SHA-256$", "rack": "SCRAM-SHA-256$"}
    # and nobody but the pooler's role may ask it
    import psycopg

    for login, password in (("ann", "ann pw"), ("rack", "rack pw")):
        with connect(as_login(s, login, password), autocommit=True, purpose=CLIENT) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM tractor_pooler_auth_v1('ann')")

    # the programs: ann spools (her rows staged in temporary tables, in one transaction) and
    # lists with tq through the pooler; the wrong password is refused at its door
    ws = client_config(tmp_path, "ws", s, "ann", "ann pw")
    job = tmp_path / "j.alf"
    job.write_text("Job -title {through the pooler} -subtasks { Task {t} -cmds { RemoteCmd {/bin/true} } }\n")
    env = clean_env()
    r = ok(subprocess.run([program("tractor-spool"), "--configdir", str(ws), str(job)], capture_output=True,
                          text=True, env=env, timeout=60, stdin=subprocess.DEVNULL))
    jid = int(r.stdout.strip().rsplit(" ", 1)[1])
    r = ok(subprocess.run([program("tq"), "--configdir", str(ws), "jobs", f"jid={jid}", "--cols", "jid,owner,title"],
                          capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL))
    assert "ann" in r.stdout and "through the pooler" in r.stdout
    out = ok(dbctl(ws, "--status")).stdout  # the workstation's view: the server and the pooler answer her
    assert f"pooler: 127.0.0.1:{s.db.pooler_port} ([pooler] in db.toml) answers: ready" in out
    bad = client_config(tmp_path, "bad", s, "ann", "guess")
    r = subprocess.run([program("tq"), "--configdir", str(bad), "jobs"], capture_output=True, text=True, env=env,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 8 and "password authentication failed for ann" in r.stderr and "pooler" in r.stderr


@needs_pgbouncer
@needs_root
def test_a_real_blade_runs_a_job_to_the_end_through_the_pooler(site, tmp_path):
    cfg, s = site
    tasks = "\n".join(f"  Task {{t{i}}} -cmds {{ RemoteCmd {{/bin/sh -c {{echo frame {i}}}}} }}" for i in range(6))
    job = tmp_path / "job.alf"
    job.write_text(f"Job -title {{pooled farm}} -serialsubtasks 0 -subtasks {{\n{tasks}\n}}\n")
    r = ok(subprocess.run([program("tractor-spool"), "--configdir", str(cfg), str(job)], capture_output=True,
                          text=True, env=clean_env(), timeout=60, stdin=subprocess.DEVNULL))
    jid = int(r.stdout.strip().rsplit(" ", 1)[1])
    # the blade's db.toml names a port where no server listens: only its wake-up listener goes
    # to the server itself (and fails: the blade polls), so all its work - register, claims,
    # heartbeats, reports, logs - can only have gone through the pooler
    from conftest import free_port

    bcfg = client_config(tmp_path, "render1", s, "rack", "rack pw", port=free_port())
    blade = subprocess.run([program("tractor-blade"), "--configdir", str(bcfg), "--name", "pooled-render1",
                            "--slots", "2", "--heartbeat", "0.3", "--exit-when-idle"],
                           capture_output=True, text=True, env=clean_env(), timeout=120, stdin=subprocess.DEVNULL)
    assert blade.returncode == 0, blade.stderr
    with connect(s, autocommit=True) as conn:
        assert conn.execute("SELECT numdone, numtasks FROM jobs WHERE jid = %s", (jid,)).fetchone() == {
            "numdone": 6, "numtasks": 6}
        ran = conn.execute("SELECT b.name, b.login, count(*) AS n, bool_and(i.rcode = 0) AS fine FROM invocations i "
                           "JOIN blades b ON b.bladeid = i.bladeid WHERE i.jid = %s GROUP BY 1, 2", (jid,)).fetchall()
        assert ran == [{"name": "pooled-render1", "login": "rack", "n": 6, "fine": True}]


@needs_pgbouncer
@needs_root
def test_fifty_clients_share_at_most_max_db_connections_server_connections(site):
    cfg, s = site
    clients = 50
    logins = [("ann", "ann pw", CLIENT), ("rack", "rack pw", BLADE)]  # two roles: two pools, one cap
    errors: list[BaseException] = []
    done = []
    go = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        login, password, purpose = logins[k % 2]
        try:
            with connect(as_login(s, login, password), autocommit=True, purpose=purpose) as conn:
                go.wait(30)
                for _ in range(2):
                    with conn.transaction():
                        conn.execute("SELECT pg_sleep(0.1)")
                        who = conn.execute("SELECT session_user AS who").fetchone()["who"]
                    assert who == login
            done.append(k)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            go.abort()

    seen = 0
    with connect(s, autocommit=True) as monitor:
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        go.wait(30)  # all 50 connected to the pooler before any works
        while any(t.is_alive() for t in threads):
            seen = max(seen, monitor.execute(SERVER_CONNS, (list(POOLED_ROLES),)).fetchone()["n"])
            time.sleep(0.01)
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert sorted(done) == list(range(clients))
    # the server saw at most the cap (the pooler's look-ups included), and the cap was reached
    assert CAP - 2 <= seen <= CAP, seen


@needs_pgbouncer
@needs_root
def test_stop_stops_the_pooler_with_the_server_and_start_brings_both_back(site):
    cfg, s = site
    pid = Pooler(s).status(ask=False).pid
    said = ok(dbctl(cfg, "--stop")).stderr
    assert "stopped the pooler" in said and "database server stopped" in said
    assert gone(pid) and not (s.pooler_dir / "pgbouncer.pid").exists()
    r = dbctl(cfg, "--status")
    assert r.returncode == 4 and f"pooler: not running (enabled in db.toml, port {s.db.pooler_port})" in r.stdout
    said = ok(dbctl(cfg, "--start")).stderr
    assert "database server started" in said and "started the pooler" in said
    st = Pooler(s).status()
    assert st.running and st.pid != pid
    # the new look-up password works: a login through it
    with connect(as_login(s, "rack", "rack pw"), autocommit=True, purpose=BLADE) as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    # the engine's start finds it running and keeps it
    said = ok(dbctl(cfg, "--start-for-engine")).stderr
    assert f"using the running pooler (pid {st.pid})" in said


def test_a_missing_pgbouncer_is_named_with_the_places_looked(tmp_path, monkeypatch):
    (tmp_path / "db.toml").write_text('[pooler]\nenabled = true\nprogram = "/nonexistent/pgbouncer"\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    s = load_settings(tmp_path)
    if os.access("/usr/sbin/pgbouncer", os.X_OK):
        assert find_program(s) == Path("/usr/sbin/pgbouncer")
        return
    from tractorcli.errors import NotFound

    with pytest.raises(NotFound, match=r"PgBouncer not found .*program in db\.toml \[pooler\] \(/nonexistent"):
        find_program(s)
