"""Who connects: peer authentication on the server's socket, passwords over TCP (localhost too),
people's and blades' login roles (tractor-dbctl --add-user, --add-blade-login, --remove-user,
--list-users), and what those roles may do with plain SQL: read, not write."""

from __future__ import annotations

import json
import shutil
import subprocess

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
