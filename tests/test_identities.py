"""Who connects: peer authentication on the server's socket, passwords over TCP (localhost too),
people's and blades' login roles (tractor-dbctl --add-user, --add-blade-login, --remove-user,
--list-users), and what those roles may do with plain SQL: read, not write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dbctl, root_only

from tractorcli.db.connection import connect

PSQL = shutil.which("psql")
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def os_account():
    """An ordinary local account (made for the test, removed after)."""
    name = "trtest_ann"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name],
                          capture_output=True, text=True).returncode == 0
    yield name
    if made:
        subprocess.run(["userdel", name], capture_output=True)


def psql_as(account: str | None, settings, sql: str, *, host: str | None = None, user: str | None = None,
            password: str | None = None) -> subprocess.CompletedProcess:
    """psql (the client anyone has) run as an OS account, through the socket or over TCP."""
    argv = [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host or str(settings.db_socket_dir),
            "-p", str(settings.db.port), "-d", settings.db.dbname, "-c", sql]
    if user:
        argv += ["-U", user]
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5"}
    if password:
        env["PGPASSWORD"] = password
    if account:
        argv = [RUNUSER, "-u", account, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


@root_only
@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_local_accounts_are_themselves_and_may_only_read(tmp_site, os_account):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('root', 'root''s job')"))

    # an account the site does not know: refused on the socket (no such role), and it cannot
    # pass itself off as the site's role
    r = psql_as(os_account, s, "SELECT 1")
    assert r.returncode != 0 and f'role "{os_account}" does not exist' in r.stderr
    r = psql_as(os_account, s, "SELECT 1", user=s.db.user)
    assert r.returncode != 0 and "Peer authentication failed" in r.stderr
    # localhost is not trusted: the site's role needs its password there
    r = psql_as(os_account, s, "SELECT 1", host="127.0.0.1", user=s.db.user)
    assert r.returncode != 0 and "password" in r.stderr

    # made a person: on the socket as itself, no password
    said = ok(dbctl(cfg, "--add-user", os_account)).stderr
    assert f"added user {os_account}" in said
    assert psql_as(os_account, s, "SELECT title FROM jobs").stdout == "root's job\n"  # reading is open
    assert psql_as(os_account, s, "SELECT current_user").stdout == f"{os_account}\n"
    for statement in ("UPDATE jobs SET priority = 1", "DELETE FROM jobs",
                      "INSERT INTO jobs (owner, title) VALUES ('x', 'y')", "DELETE FROM tasks",
                      "UPDATE commands SET argv = '{sh}'", "CREATE TABLE mine (x int)",
                      "COPY jobs TO PROGRAM 'id'"):
        r = psql_as(os_account, s, statement)
        assert r.returncode != 0 and ("permission denied" in r.stderr or "must be superuser" in r.stderr), (
            statement, r.stderr)
    with connect(s, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == 1
    # without a password, not over TCP
    r = psql_as(os_account, s, "SELECT 1", host="127.0.0.1", user=os_account)
    assert r.returncode != 0 and "password" in r.stderr

    # with a password (from a file, or stdin): over TCP as well
    pw = s.data_dir.parent / "pw"
    pw.write_text("ann's secret\n")
    said = ok(dbctl(cfg, "--add-user", os_account, "--password-file", str(pw))).stderr
    assert f"updated user {os_account}" in said
    r = psql_as(os_account, s, "SELECT current_user", host="127.0.0.1", user=os_account, password="ann's secret")
    assert r.stdout == f"{os_account}\n", r.stderr
    r = psql_as(os_account, s, "SELECT 1", host="127.0.0.1", user=os_account, password="wrong")
    assert r.returncode != 0 and "password authentication failed" in r.stderr

    # a blade login, and the listing
    ok(dbctl(cfg, "--add-blade-login", "rack01", "--password-file", "-", input="blade pw\n"))
    listing = json.loads(ok(dbctl(cfg, "--list-users", "--json")).stdout)
    assert listing == [{"name": os_account, "kind": "person", "password": True},
                       {"name": "rack01", "kind": "blade", "password": True}]
    plain = ok(dbctl(cfg, "--list-users")).stdout.splitlines()
    assert plain[0].split() == ["name", "kind", "password"] and plain[1].split() == [os_account, "person", "yes"]
    r = psql_as(None, s, "UPDATE blades SET nimby = 'x'", host="127.0.0.1", user="rack01", password="blade pw")
    assert r.returncode != 0 and "permission denied" in r.stderr

    # refusals, one line each
    for args, words in ((("--add-user", s.db.user), "site's own role"),
                        (("--add-user", "pg_monitor"), "keeps for itself"),
                        (("--add-user", "bad name"), "a user name is"),
                        (("--add-blade-login", os_account), "a person login already"),
                        (("--remove-user", "nobody"), "no person or blade login")):
        r = dbctl(cfg, *args)
        assert r.returncode != 0 and words in r.stderr and len(r.stderr.strip().splitlines()) <= 2, (args, r.stderr)

    ok(dbctl(cfg, "--remove-user", os_account))
    r = psql_as(os_account, s, "SELECT 1")
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert [u["name"] for u in json.loads(ok(dbctl(cfg, "--list-users", "--json")).stdout)] == ["rack01"]


# --- the programs, run by an ordinary local account on the engine's host -------------------


def _reachable_by_all(path: Path) -> bool:
    """Whether every directory on the way to `path` may be entered by any account."""
    return all(os.stat(p).st_mode & 0o001 for p in [*reversed(path.parents)] if p != path)


@pytest.fixture(scope="module")
def programs_for_anyone(tmp_path_factory):
    """A Python and copies of tractorcli and its dependencies that any account can run (the
    installed ones may sit in root's home, which others cannot enter)."""
    import importlib.util

    exe = Path(sys.executable)
    if not _reachable_by_all(exe):
        exe = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
        if not exe.exists():
            pytest.skip("no Python that other accounts can run")
    lib = tmp_path_factory.mktemp("anyone-lib")
    for name in ("tractorcli", "tractor", "click", "psycopg", "psycopg_binary", "rich", "markdown_it", "mdurl",
                 "pygments", "typing_extensions"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            src = Path(list(spec.submodule_search_locations)[0])
            shutil.copytree(src, lib / name, ignore=shutil.ignore_patterns("__pycache__"))
            libs = src.parent / f"{name}.libs"  # a binary wheel's shared libraries
            if libs.is_dir():
                shutil.copytree(libs, lib / libs.name)
        else:
            shutil.copy2(spec.origin, lib / Path(spec.origin).name)
    for p in [lib, *lib.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o005 | (0o050 if p.is_dir() else 0o040))
    p = lib.parent
    while p != Path("/"):
        p.chmod(p.stat().st_mode | 0o001)
        p = p.parent
    return exe, lib


def run_as(account: str, programs, module: str, cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe, lib = programs
    code = f"import sys; from tractorcli.cli.{module} import main; sys.exit(main())"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib), "TRACTOR_CONFIGDIR": str(cfg), "HOME": str(cwd),
           "LANG": "C.UTF-8", "COLUMNS": "200"}
    return subprocess.run([RUNUSER, "-u", account, "--", str(exe), "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


@root_only
def test_a_local_account_spools_and_operates_as_itself_through_the_socket(tmp_site, os_account,
                                                                          programs_for_anyone):
    import tempfile

    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--add-user", os_account))  # no password: the socket only
    home = Path(tempfile.mkdtemp(prefix="trtest-home-"))  # pytest's own are root's alone
    (home / "cfg").mkdir(parents=True)
    # all the account needs: where the site's socket is (no password: the OS says who it is)
    (home / "cfg" / "db.toml").write_text(f'host = "{s.db_socket_dir}"\nport = {s.db.port}\n')
    (home / "job.alf").write_text("Job -title {mine} -subtasks { Task {a} -cmds { RemoteCmd {/bin/true} } }\n")
    for p in (home, home / "cfg", home / "cfg" / "db.toml", home / "job.alf"):
        shutil.chown(p, os_account)
    r = run_as(os_account, programs_for_anyone, "spool", home / "cfg", str(home / "job.alf"), cwd=home)
    assert r.returncode == 0, r.stderr
    jid = int(r.stdout.strip().rsplit(" ", 1)[1])
    r = run_as(os_account, programs_for_anyone, "spool", home / "cfg", "--user", "root", str(home / "job.alf"),
               cwd=home)
    assert r.returncode == 8 and f"{os_account} may not spool jobs as root" in r.stderr
    with connect(s, autocommit=True) as conn:
        assert conn.execute("SELECT owner FROM jobs WHERE jid = %s", (jid,)).fetchone()["owner"] == os_account
        roots = conn.execute("INSERT INTO jobs (owner, title) VALUES ('root', 'r') RETURNING jid").fetchone()["jid"]
    ok(run_as(os_account, programs_for_anyone, "tq", home / "cfg", "--yes", "pause", str(jid), cwd=home))
    r = run_as(os_account, programs_for_anyone, "tq", home / "cfg", "--yes", "--force", "pause", str(roots), cwd=home)
    assert r.returncode == 8 and f"not allowed for {os_account} on root's jobs" in r.stderr
    with connect(s, autocommit=True) as conn:
        paused = {r["jid"]: r["p"] for r in conn.execute("SELECT jid, pausetime IS NOT NULL AS p FROM jobs")}
    assert paused == {jid: True, roots: False}
    shutil.rmtree(home, ignore_errors=True)
