"""tractor-dbctl end to end: the installed program, on real servers, as a user runs it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import dbctl, root_only
from tractorcli.errors import ExitStatus
from tractorcli.db.migrate import latest_version

LATEST = latest_version()


def ok(proc, status: int = 0):
    assert proc.returncode == status, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def one_line_error(proc, status: ExitStatus, *fragments: str):
    assert proc.returncode == status, f"exit {proc.returncode}: {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {proc.stderr!r}"
    assert lines[0].startswith("tractor-dbctl"), lines[0]
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"


def test_full_lifecycle(tmp_site):
    cfg, s = tmp_site()
    st = ok(dbctl(cfg, "--status"), ExitStatus.NOT_RUNNING)
    assert "server: not running" in st.stdout and "(no database cluster)" in st.stdout

    ok(dbctl(cfg, "--init"))
    assert (s.db_data_dir / "PG_VERSION").is_file()
    assert stat.S_IMODE(s.db_data_dir.stat().st_mode) == 0o700
    ok(dbctl(cfg, "--start"))
    st = ok(dbctl(cfg, "--status"))
    assert "server: running (pid" in st.stdout
    # localhost is not trusted: the server answers there, and asks for a password
    assert f"port: {s.db.port} on localhost (reachable, password required)" in st.stdout
    assert 'database "tractor": missing' in st.stdout

    ok(dbctl(cfg, "--build"))
    st = json.loads(ok(dbctl(cfg, "--status", "--json")).stdout)
    assert st["running"] and st["database_exists"] and st["localhost_answer"] == "needs password"

    params = dict(line.split(" = ", 1) for line in ok(dbctl(cfg, "--show-params")).stdout.splitlines())
    assert params["jidcounter"] == "0" and params["schema-version"] == str(LATEST) and params["archiving"] == "1"

    ok(dbctl(cfg, "--stop"))
    ok(dbctl(cfg, "--status"), ExitStatus.NOT_RUNNING)
    # the cluster survives a stop/start
    ok(dbctl(cfg, "--start"))
    assert f"schema-version = {LATEST}" in ok(dbctl(cfg, "--show-params")).stdout
    ok(dbctl(cfg, "--stop"))


def test_refusals_in_the_wrong_state(tmp_site):
    cfg, s = tmp_site()
    one_line_error(dbctl(cfg, "--start"), ExitStatus.STATE, "no database cluster", "--init")
    one_line_error(dbctl(cfg, "--stop"), ExitStatus.NOT_RUNNING, "not running")
    one_line_error(dbctl(cfg, "--show-params"), ExitStatus.NOT_RUNNING, "not running", "--start")
    ok(dbctl(cfg, "--init"))
    one_line_error(dbctl(cfg, "--init"), ExitStatus.STATE, "already holds a database cluster")
    ok(dbctl(cfg, "--start"))
    one_line_error(dbctl(cfg, "--start"), ExitStatus.STATE, "already in use by a running server")
    one_line_error(dbctl(cfg, "--show-params"), ExitStatus.STATE, 'job database "tractor" does not exist', "--build")
    one_line_error(dbctl(cfg, "--init"), ExitStatus.STATE, "while the database server is running")
    one_line_error(dbctl(cfg, "--destroy", "--yes"), ExitStatus.STATE, "while the database server is running")
    one_line_error(dbctl(cfg, "--purge-logs"), ExitStatus.STATE, "while the database server is running")
    ok(dbctl(cfg, "--build"))
    one_line_error(dbctl(cfg, "--build"), ExitStatus.STATE, "already exists", "--upgrade")
    up = ok(dbctl(cfg, "--upgrade"))
    assert f"up to date (version {LATEST})" in up.stderr
    assert ok(dbctl(cfg, "--check-upgrade")).stdout == ""
    assert json.loads(ok(dbctl(cfg, "--check-upgrade", "--json")).stdout) == {"current": LATEST, "target": LATEST, "pending": [],
                                                                                  "functions": []}


def test_start_for_engine_is_idempotent_and_honours_the_switches(tmp_site):
    cfg, s = tmp_site()
    first = ok(dbctl(cfg, "--start-for-engine"))
    for said in ("initialized a new database cluster", "started the database server", 'created the job database "tractor"',
                 f"schema version {LATEST} created"):
        assert said in first.stderr
    again = ok(dbctl(cfg, "--start-for-engine"))
    assert "using the running database server" in again.stderr and "created" not in again.stderr
    # DBShutdown off: the engine leaves the server running
    (cfg / "db.toml").write_text((cfg / "db.toml").read_text() + "DBShutdown = false\n")
    assert "leaving the database server running" in ok(dbctl(cfg, "--stop-for-engine")).stderr
    ok(dbctl(cfg, "--status"))
    (cfg / "db.toml").write_text((cfg / "db.toml").read_text().replace("DBShutdown = false", "DBShutdown = true"))
    assert "stopped the database server" in ok(dbctl(cfg, "--stop-for-engine")).stderr
    ok(dbctl(cfg, "--status"), ExitStatus.NOT_RUNNING)
    # DBStartup off: start-for-engine will not start it
    (cfg / "db.toml").write_text((cfg / "db.toml").read_text() + "DBStartup = false\n")
    one_line_error(dbctl(cfg, "--start-for-engine"), ExitStatus.STATE, "DBStartup is off")


def test_start_for_engine_without_dbinit_refuses_a_missing_cluster(tmp_site):
    cfg, s = tmp_site(db_toml="DBInit = false\n")
    one_line_error(dbctl(cfg, "--start-for-engine"), ExitStatus.STATE, "DBInit is off")
    assert not s.db_data_dir.exists() or not any(s.db_data_dir.iterdir())


def test_start_for_engine_no_auto_upgrade(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--init"))
    ok(dbctl(cfg, "--start"))
    from tractorcli.db.connection import connect

    with connect(s, dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE tractor")
    # an empty database always gets its schema: there is nothing to keep
    ok(dbctl(cfg, "--start-for-engine", "--no-auto-upgrade"))
    assert f"schema-version = {LATEST}" in ok(dbctl(cfg, "--show-params")).stdout


def test_destroy_asks_unless_yes(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--stop"))
    one_line_error(dbctl(cfg, "--destroy"), ExitStatus.USAGE, "--yes")
    assert (s.db_data_dir / "PG_VERSION").exists()
    ok(dbctl(cfg, "--destroy", "--yes"))
    assert s.db_data_dir.is_dir() and not any(s.db_data_dir.iterdir())
    assert "nothing to destroy" in ok(dbctl(cfg, "--destroy", "--yes")).stderr


def test_job_counter_params_and_sql(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) SELECT 'joe', 'j' || g FROM generate_series(1, 3) g"))
    assert ok(dbctl(cfg, "--exec-sql", "SELECT jid, title FROM jobs ORDER BY jid")).stdout == "1|j1\n2|j2\n3|j3\n"
    rows = json.loads(ok(dbctl(cfg, "--exec-sql", "SELECT jid FROM jobs ORDER BY jid", "--json")).stdout)
    assert rows == [{"jid": 1}, {"jid": 2}, {"jid": 3}]
    one_line_error(dbctl(cfg, "--set-job-counter", "3"), ExitStatus.BAD_INPUT, "already at 3", "must be greater")
    one_line_error(dbctl(cfg, "--set-job-counter", "2"), ExitStatus.BAD_INPUT, "already at 3")
    said = ok(dbctl(cfg, "--set-job-counter", "100")).stderr
    assert "The job counter will continue from 100" in said and "jid 101" in said
    assert "jidcounter = 100" in ok(dbctl(cfg, "--show-params")).stdout
    assert ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner) VALUES ('joe') RETURNING jid")).stdout == "101\n"
    one_line_error(dbctl(cfg, "--exec-sql", "SELEC 1"), ExitStatus.BAD_INPUT, "SQL error", "syntax error")
    # --update-params pushes DBArchiving from db.toml
    (cfg / "db.toml").write_text((cfg / "db.toml").read_text() + "DBArchiving = false\n")
    ok(dbctl(cfg, "--update-params"))
    assert "archiving = 0" in ok(dbctl(cfg, "--show-params")).stdout


def test_purges_and_history(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", """
        INSERT INTO jobs (owner, title, deletetime, stoptime, phase) VALUES
          ('a', 'deleted 2024-03', '2024-03-15', NULL, 'live'),
          ('a', 'deleted 2024-05', '2024-05-02', NULL, 'live'),
          ('a', 'finished long ago', NULL, now() - interval '40 days', 'finished'),
          ('a', 'finished just now', NULL, now() - interval '1 minute', 'finished'),
          ('a', 'live, old', NULL, NULL, 'live')"""))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO tasks (jid, tid, title) VALUES (1, 1, 't')"))
    assert "removed 1 archived job(s) deleted before 2024-04-01" in ok(dbctl(cfg, "--purge-archive-to-year-month", "24-03")).stderr
    one_line_error(dbctl(cfg, "--purge-archive-to-year-month", "2024-13"), ExitStatus.BAD_INPUT, "month 1-12")
    one_line_error(dbctl(cfg, "--clear-history", "soon"), ExitStatus.BAD_INPUT, "30m, 6h, 3d")
    assert "removed 2 finished or deleted job(s) older than 30d" in ok(dbctl(cfg, "--clear-history", "30d")).stderr
    left = ok(dbctl(cfg, "--exec-sql", "SELECT title FROM jobs ORDER BY jid")).stdout.splitlines()
    assert left == ["finished just now", "live, old"]
    ok(dbctl(cfg, "--purge-jobs"))
    assert "jobs = 0" in ok(dbctl(cfg, "--show-params")).stdout
    assert "jidcounter = 5" in ok(dbctl(cfg, "--show-params")).stdout
    ok(dbctl(cfg, "--purge-jobs", "--reset-job-counter"))
    assert "jidcounter = 0" in ok(dbctl(cfg, "--show-params")).stdout
    assert ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner) VALUES ('b') RETURNING jid")).stdout == "1\n"


def test_vacuum_and_logs(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    assert "vacuumed the job database" in ok(dbctl(cfg, "--vacuum")).stderr
    logname = ok(dbctl(cfg, "--log-filename")).stdout.strip()
    assert logname.startswith(str(s.db_data_dir / "log" / "postgresql-"))
    assert "database system is ready to accept connections" in ok(dbctl(cfg, "--get-log")).stdout
    assert ok(dbctl(cfg, "--logs-usage")).stdout.strip().endswith("MB")
    ok(dbctl(cfg, "--stop"))
    said = ok(dbctl(cfg, "--vacuum")).stderr
    assert "started for it and stopped again" in said
    ok(dbctl(cfg, "--status"), ExitStatus.NOT_RUNNING)
    assert "deleted" in ok(dbctl(cfg, "--purge-logs")).stderr
    one_line_error(dbctl(cfg, "--get-log"), ExitStatus.NOT_FOUND, "no server log")


def test_two_sites_side_by_side(tmp_site):
    cfg_a, a = tmp_site()
    cfg_b, b = tmp_site()
    ok(dbctl(cfg_a, "--start-for-engine"))
    ok(dbctl(cfg_b, "--start-for-engine"))
    ok(dbctl(cfg_a, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('a', 'only in A')"))
    assert ok(dbctl(cfg_a, "--exec-sql", "SELECT title FROM jobs")).stdout == "only in A\n"
    assert ok(dbctl(cfg_b, "--exec-sql", "SELECT count(*) FROM jobs")).stdout == "0\n"
    ok(dbctl(cfg_a, "--stop"))
    ok(dbctl(cfg_b, "--status"))


def test_a_data_directory_in_use_is_refused_to_another_site(tmp_site):
    cfg_a, a = tmp_site()
    ok(dbctl(cfg_a, "--start-for-engine"))
    cfg_b, b = tmp_site(db_toml=f'data_dir = "{a.db_data_dir}"\n')
    one_line_error(dbctl(cfg_b, "--start"), ExitStatus.STATE, "already in use by a running server")
    one_line_error(dbctl(cfg_b, "--restore", "/dev/null"), ExitStatus.NOT_FOUND)  # not a file
    ok(dbctl(cfg_a, "--status"))


def test_a_taken_port_is_explained_and_nothing_is_lost(tmp_site):
    import socket

    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('a', 'keep me')"))
    ok(dbctl(cfg, "--stop"))
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", s.db.port))
        squatter.listen()
        one_line_error(dbctl(cfg, "--start"), ExitStatus.STATE, f"port {s.db.port} is already in use", "db.toml")
    ok(dbctl(cfg, "--start"))
    assert ok(dbctl(cfg, "--exec-sql", "SELECT title FROM jobs")).stdout == "keep me\n"


@root_only
def test_as_root_the_server_runs_as_the_unprivileged_account(tmp_site):
    import pwd

    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    pid = int((s.db_data_dir / "postmaster.pid").read_text().split()[0])
    uid = int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:")).split()[1])
    assert pwd.getpwuid(uid).pw_name == "postgres"
    st = s.db_data_dir.stat()
    assert pwd.getpwuid(st.st_uid).pw_name == "postgres" and stat.S_IMODE(st.st_mode) == 0o700


@root_only
def test_as_root_a_missing_or_blocked_account_is_explained(tmp_site):
    cfg, s = tmp_site(db_toml='os_user = "no-such-account-here"\n')
    one_line_error(dbctl(cfg, "--init"), ExitStatus.PERMISSION, "no-such-account-here", "does not exist")
    cfg, s = tmp_site(db_toml='os_user = "root"\n')
    one_line_error(dbctl(cfg, "--init"), ExitStatus.PERMISSION, "refuses to run as root")
    blocked = s.data_dir.parent / "private"
    blocked.mkdir(mode=0o700)
    os.chmod(blocked, 0o700)
    cfg, s = tmp_site(db_toml=f'data_dir = "{blocked}/psql"\n')
    one_line_error(dbctl(cfg, "--init"), ExitStatus.PERMISSION, "cannot enter", str(blocked))


def test_engine_owner_other_than_root_is_honoured_for_root_only(tmp_site):
    cfg, s = tmp_site(tractor_toml='engine_owner = "nobody-in-particular"\n')
    if os.geteuid() == 0:
        ok(dbctl(cfg, "--init"))  # root may act for the engine owner
    else:
        one_line_error(dbctl(cfg, "--init"), ExitStatus.PERMISSION, "engine owner")


def test_verbose_and_quiet(tmp_site):
    cfg, s = tmp_site()
    v = dbctl(cfg, "-v", "--init")
    assert v.returncode == 0
    assert f"config directory: {cfg} (tractor.toml, db.toml)" in v.stderr
    assert "PostgreSQL binaries: /" in v.stderr
    q = dbctl(cfg, "-q", "--start")
    assert q.returncode == 0 and q.stderr == "" and q.stdout == ""


def test_tail_log_follows_the_server_log(tmp_site):
    import subprocess
    import time

    from conftest import dbctl_path

    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    proc = subprocess.Popen([dbctl_path(), "--configdir", str(cfg), "--tail-log"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        # an error in the server log shows up in the follower's output
        dbctl(cfg, "--exec-sql", "SELECT * FROM no_table_called_this")
        deadline = time.monotonic() + 20
        seen = ""
        while "no_table_called_this" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "no_table_called_this" in seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class SourceProxy:
    """Forwards 127.0.0.1:<port> to a server from the source address 127.0.0.2.

    The server then sees a client that is not localhost, as a render host on
    the network would be, while everything stays on loopback.
    """

    def __init__(self, target_port: int, source: str = "127.0.0.2"):
        import socket
        import threading

        self.target = ("127.0.0.2", target_port)
        self.source = source
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket()
            upstream.bind((self.source, 0))
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while chunk := a.recv(65536):
                b.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_listening_beyond_localhost_requires_the_password(tmp_site):
    """Clients from other addresses must give the password; local ones are trusted."""
    import psycopg

    from tractorcli.db.probe import Probe, probe

    cfg, s = tmp_site(db_toml='listen_addresses = ["localhost", "127.0.0.2"]\npassword = "s3cret-pw"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    proxy = SourceProxy(s.db.port)
    try:
        assert probe(host="127.0.0.1", port=proxy.port, user="root", dbname="tractor") is Probe.NEEDS_PASSWORD
        # localhost is not trusted either
        assert probe(host="127.0.0.1", port=s.db.port, user="root", dbname="tractor") is Probe.NEEDS_PASSWORD
        psycopg.connect(host="127.0.0.1", port=s.db.port, user="root", dbname="tractor", password="s3cret-pw").close()
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=proxy.port, user="root", dbname="tractor", password="wrong").close()
        psycopg.connect(host="127.0.0.1", port=proxy.port, user="root", dbname="tractor", password="s3cret-pw").close()
        # a client site that reaches this server "over the network", with and without the password
        remote_cfg, _ = tmp_site()
        (remote_cfg / "db.toml").write_text(f'host = "127.0.0.1"\nport = {proxy.port}\npassword = "s3cret-pw"\n')
        assert f"schema-version = {LATEST}" in ok(dbctl(remote_cfg, "--show-params")).stdout
        (remote_cfg / "db.toml").write_text(f'host = "127.0.0.1"\nport = {proxy.port}\npassword = "nope"\n')
        one_line_error(dbctl(remote_cfg, "--show-params"), ExitStatus.PERMISSION, "password")
        # Tractor's Python APIs: PasswordRequired until the password is given (setEngineClientParam or
        # TRACTOR_PASSWORD); then queries and spools go through
        import tractor.api.author as author
        import tractor.api.query as tq

        (remote_cfg / "db.toml").write_text(f'host = "127.0.0.1"\nport = {proxy.port}\n')
        tq.setEngineClientParam(configdir=str(remote_cfg), user="ann")
        assert tq.needsPassword() is True
        with pytest.raises(tq.PasswordRequired, match="password"):
            tq.jobs("jid > 0")
        tq.setEngineClientParam(password="s3cret-pw")
        assert tq.needsPassword() is False and tq.jobs("jid > 0") == []
        job = author.Job(title="over the network")
        job.newTask(title="t", argv="true")
        jid = job.spool()
        assert [r["title"] for r in tq.jobs(f"jid={jid}")] == ["over the network"]
        tq.ModuleEngineClient.reset()
        tq.setEngineClientParam(configdir=str(remote_cfg))
        os.environ["TRACTOR_PASSWORD"] = "s3cret-pw"
        try:
            assert [r["jid"] for r in tq.jobs("jid > 0")] == [jid]
        finally:
            del os.environ["TRACTOR_PASSWORD"]
    finally:
        proxy.close()


def _set_password(settings, password: str) -> None:
    """The site role's password, set by the site owner through the server's socket."""
    from psycopg import sql

    from tractorcli.db.connection import connect

    with connect(settings, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(settings.db.user),
                                                                 sql.Literal(password)))


def test_localhost_only_by_default(tmp_site):
    from tractorcli.db.probe import Probe, probe

    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    assert probe(host="127.0.0.2", port=s.db.port, user="root", dbname="tractor") is Probe.NO_RESPONSE
    # localhost answers, and (not trusted) asks for a password; the socket lets the site owner in
    assert probe(host="127.0.0.1", port=s.db.port, user="root", dbname="tractor") is Probe.NEEDS_PASSWORD
    assert probe(socket_path=str(s.db_socket_dir / f".s.PGSQL.{s.db.port}"), user="root",
                 dbname="tractor") is Probe.READY


def test_a_remote_host_is_used_but_never_controlled(tmp_site):
    cfg_a, a = tmp_site()
    ok(dbctl(cfg_a, "--init"))
    ok(dbctl(cfg_a, "--start"))
    cfg_r, r = tmp_site()
    (cfg_r / "db.toml").write_text(f'host = "127.0.0.1"\nport = {a.db.port}\n')
    # over TCP the server asks for the role's password, which the site owner sets on its socket
    assert "answers: needs password" in ok(dbctl(cfg_r, "--status")).stdout
    _set_password(a, "remote-pw")
    (cfg_r / "db.toml").write_text(f'host = "127.0.0.1"\nport = {a.db.port}\npassword = "remote-pw"\n')
    assert "answers: no database" in ok(dbctl(cfg_r, "--status")).stdout
    said = ok(dbctl(cfg_r, "--start-for-engine")).stderr
    assert f"using the database server on 127.0.0.1:{a.db.port}" in said and f"schema version {LATEST} created" in said
    assert "answers: ready" in ok(dbctl(cfg_r, "--status")).stdout
    assert f"schema-version = {LATEST}" in ok(dbctl(cfg_a, "--show-params")).stdout  # it landed on A's server
    for op in ("--start", "--stop", "--init", "--get-log"):
        one_line_error(dbctl(cfg_r, op), ExitStatus.STATE, "host in db.toml", "only the site's own local server")
    one_line_error(dbctl(cfg_r, "--backup", str(r.data_dir.parent / "x.tgz")), ExitStatus.STATE, "host in db.toml")
    assert "nothing to stop here" in ok(dbctl(cfg_r, "--stop-for-engine")).stderr
    ok(dbctl(cfg_a, "--status"))
    assert not r.db_data_dir.exists()


def test_db_use_existing_takes_the_server_already_on_the_port(tmp_site):
    cfg_a, a = tmp_site()
    ok(dbctl(cfg_a, "--start-for-engine"))
    ok(dbctl(cfg_a, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('a', 'on the existing server')"))
    # site B shares the port but has its own (empty) data directory
    cfg_b, b = tmp_site(port=a.db.port)
    one_line_error(dbctl(cfg_b, "--start-for-engine"), ExitStatus.STATE, f"port {a.db.port} is already in use")
    ok(dbctl(cfg_b, "--destroy", "--yes"))
    # that server is reached on localhost, where it asks for the password of its role
    _set_password(a, "existing-pw")
    (cfg_b / "db.toml").write_text((cfg_b / "db.toml").read_text() + 'DBUseExisting = true\npassword = "existing-pw"\n')
    said = ok(dbctl(cfg_b, "--start-for-engine")).stderr
    assert "already listening on localhost" in said and "initialized" not in said
    assert not (b.db_data_dir / "PG_VERSION").exists()
    assert ok(dbctl(cfg_b, "--exec-sql", "SELECT title FROM jobs")).stdout == "on the existing server\n"
