"""Permissions decided by PostgreSQL.

People run the installed programs as their own database roles (over TCP with their passwords, as
from a workstation: db.toml names the host, the port and their login) and plain SQL as those roles;
whatever the client does or skips, the database alone says who may spool as whom and operate on
which job.  The site's own role (the site owner) is the one that may do everything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import clean_env, dbctl, program

from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus

JOB = """Job -title {%s} -subtasks {
  Task {a} -cmds { RemoteCmd {/bin/true} }
  Task {b} -cmds { RemoteCmd {/bin/true} }
}
"""
PASSWORDS = {"ann": "ann pw", "bob": "bob pw", "wendy": "wendy pw"}


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A site with three people (roles with passwords) and a blade login."""
    from conftest import _stop_quietly, make_site

    cfg, s = make_site(db_toml='password = "site pw"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    for name, pw in PASSWORDS.items():
        ok(dbctl(cfg, "--add-user", name, "--password-file", "-", input=pw + "\n"))
    for blade in ("rack01", "rack02"):
        ok(dbctl(cfg, "--add-blade-login", blade, "--password-file", "-", input=f"{blade} pw\n"))
    base = tmp_path_factory.mktemp("people")
    people = {}
    for name, pw in {**PASSWORDS, "rack01": "rack01 pw", "rack02": "rack02 pw"}.items():
        d = base / name
        d.mkdir()
        (d / "tractor.toml").write_text(f'data_dir = "{d / "data"}"\nblade_run_as = "blade"\n')
        (d / "db.toml").write_text(f'host = "127.0.0.1"\nport = {s.db.port}\ndbname = "{s.db.dbname}"\n'
                                   f'login = "{name}"\npassword = "{pw}"\n')
        people[name] = d
    yield cfg, s, people
    _stop_quietly(s)


def run(prog: str, cfg: Path, *args: str, cwd: Path | None = None, env: dict | None = None):
    e = dict(clean_env(), COLUMNS="200", TZ="UTC", **(env or {}))
    return subprocess.run([program(prog), "--configdir", str(cfg), *args], capture_output=True, text=True,
                          env=e, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def spool(cfg: Path, title: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{title}.alf"
    path.write_text(JOB % title)
    return run("tractor-spool", cfg, *args, str(path))


def jid_of(r: subprocess.CompletedProcess) -> int:
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().rsplit(" ", 1)[1])


def as_role(s, name: str, password: str):
    """A plain connection as a person's or a blade's role (psycopg, as any client could)."""
    return psycopg.connect(host="127.0.0.1", port=s.db.port, dbname=s.db.dbname, user=name, password=password,
                           autocommit=True)


def job(s, jid: int) -> dict:
    with connect(s) as conn:
        return conn.execute("SELECT owner, priority, pausetime, deletetime FROM jobs WHERE jid = %s",
                            (jid,)).fetchone()


def test_a_persons_job_is_theirs_and_naming_another_owner_is_refused(farm, tmp_path):
    cfg, s, people = farm
    jid = jid_of(spool(people["ann"], "anns", tmp_path))
    assert job(s, jid)["owner"] == "ann"  # the logged-in role, whatever the OS login (root here)
    r = spool(people["ann"], "as-bob", tmp_path, "--user", "bob")
    assert r.returncode == ExitStatus.PERMISSION, r.stderr
    assert "ann may not spool jobs as bob (crews.toml)" in r.stderr and "Traceback" not in r.stderr
    with connect(s) as conn:
        assert conn.execute("SELECT count(*) AS n FROM jobs WHERE title = 'as-bob'").fetchone()["n"] == 0
    # --user naming oneself is fine; the site's own role may spool for anyone
    assert job(s, jid_of(spool(people["ann"], "as-ann", tmp_path, "--user", "ann")))["owner"] == "ann"
    assert job(s, jid_of(spool(cfg, "for-bob", tmp_path, "--user", "bob")))["owner"] == "bob"
    # a blade login may not spool at all
    r = spool(people["rack01"], "blade", tmp_path)
    assert r.returncode == ExitStatus.PERMISSION and "blades may not spool jobs" in r.stderr


def test_operations_on_anothers_job_are_refused_by_the_database(farm, tmp_path):
    cfg, s, people = farm
    anns = jid_of(spool(people["ann"], "ann-op", tmp_path))
    bobs = jid_of(spool(people["bob"], "bob-op", tmp_path))
    # tq prints the database's words; the job is untouched
    r = run("tq", people["ann"], "--yes", "pause", str(bobs))
    assert r.returncode == ExitStatus.PERMISSION and "tq: not job owner; use tq --force" in r.stderr
    r = run("tq", people["ann"], "--yes", "--force", "chpri", "-p", "7", str(bobs))
    assert r.returncode == ExitStatus.PERMISSION
    assert "not allowed for ann on bob's jobs (crews.toml)" in r.stderr
    # claiming to be bob (TRACTOR_USER) changes nothing: the role is ann
    r = run("tq", people["ann"], "--yes", "delete", str(bobs), env={"TRACTOR_USER": "bob", "USER": "bob"})
    assert r.returncode == ExitStatus.PERMISSION
    assert job(s, bobs)["pausetime"] is None and job(s, bobs)["priority"] != 7 and job(s, bobs)["deletetime"] is None
    # one's own job: fine
    ok(run("tq", people["ann"], "--yes", "pause", str(anns)))
    ok(run("tq", people["ann"], "--yes", "chpri", "-p", "7", str(anns)))
    assert job(s, anns)["pausetime"] is not None and job(s, anns)["priority"] == 7

    # every function people reach, called directly with the site's role named as p_as and force
    with as_role(s, "ann", PASSWORDS["ann"]) as conn:
        for sql in (f"SELECT tractor_job_set_v1({bobs}, 'priority', '42', true, 'bob')",
                    f"SELECT tractor_job_tasks_v1({bobs}, 'delete', true, 'bob')",
                    f"SELECT tractor_job_tasks_v1({bobs}, 'restart', true, '{s.db.user}')",
                    f"SELECT * FROM tractor_tasks_v1('retry', ARRAY[{bobs}]::bigint[], ARRAY[1], false, true, 'bob')",
                    f"SELECT * FROM tractor_tasks_v1('skip', ARRAY[{bobs}]::bigint[], ARRAY[1], false, true, 'bob')",
                    f"SELECT tractor_command_set_v1({bobs}, 1, 'argv', '[\"sh\"]', NULL, NULL, true, 'bob')",
                    f"SELECT tractor_command_service_v1({bobs}, 1, 'x', 'x', true, 'bob')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not allowed for ann on bob's jobs"):
                conn.execute(sql)
        # the state machine's own functions run as the caller: no table may be written
        for sql in (f"SELECT tractor_task_retry_v1({bobs}, ARRAY[1], false)",
                    f"SELECT tractor_job_restart_v1({bobs})",
                    f"SELECT * FROM tractor_tasks_kill_v1(ARRAY[{bobs}]::bigint[], ARRAY[1])",
                    f"UPDATE jobs SET priority = 42 WHERE jid = {bobs}",
                    f"DELETE FROM tasks WHERE jid = {bobs}",
                    "INSERT INTO crews (crew, members) VALUES ('Wranglers', '{ann}')",
                    "DELETE FROM crews_file"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        # one's own job through the same functions
        assert conn.execute(f"SELECT tractor_job_set_v1({anns}, 'priority', '3', false, NULL) AS ok"
                            ).fetchone()[0] is True
        # a temporary table standing in for the state machine's work table is refused
        conn.execute("CREATE TEMP TABLE tractor_resched (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary table tractor_resched"):
            conn.execute(f"SELECT * FROM tractor_tasks_v1('retry', ARRAY[{anns}]::bigint[], ARRAY[1], false, "
                         "false, NULL)")
    assert job(s, bobs)["priority"] == 1 and job(s, anns)["priority"] == 3


def test_a_persons_long_script_is_staged_and_stored_whole(farm, tmp_path):
    """A script over 1 MiB goes by COPY into the person's session, then into the staged job row."""
    cfg, s, people = farm
    path = tmp_path / "long.alf"
    path.write_text(JOB % "long" + "# " + "\u00e9" * 1_100_000 + "\n", encoding="utf-8")
    jid = jid_of(run("tractor-spool", people["ann"], str(path)))
    with connect(s) as conn:
        row = conn.execute("SELECT owner, script FROM jobs WHERE jid = %s", (jid,)).fetchone()
    assert row["owner"] == "ann" and row["script"] == path.read_text(encoding="utf-8")


def test_crews_in_the_database_let_a_wrangler_force_and_spool_for_others(farm, tmp_path):
    cfg, s, people = farm
    bobs = jid_of(spool(people["bob"], "bob-w", tmp_path))
    r = run("tq", people["wendy"], "--yes", "--force", "pause", str(bobs))
    assert r.returncode == ExitStatus.PERMISSION  # no crews.toml: only the site owner may force
    (cfg / "crews.toml").write_text('[crews]\nWranglers = ["wendy"]\n')
    try:
        # a person cannot load crews; the site owner can
        r = run("tq", people["wendy"], "reloadconfig", "--crews")
        assert r.returncode == ExitStatus.PERMISSION and "permission denied" in r.stderr
        assert "1 crew(s)" in ok(run("tq", cfg, "reloadconfig", "--crews")).stdout
        ok(run("tq", people["wendy"], "--yes", "--force", "pause", str(bobs)))
        assert job(s, bobs)["pausetime"] is not None
        assert job(s, jid_of(spool(people["wendy"], "for-bob", tmp_path, "--user", "bob")))["owner"] == "bob"
        # blade operations: a wrangler may, another person may not
        r = run("tq", people["ann"], "--yes", "nimby", "name=nosuch")
        assert r.returncode == 0  # no blades match: nothing to refuse
        with as_role(s, "ann", PASSWORDS["ann"]) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="blade operations need"):
                conn.execute("SELECT tractor_blade_set_v1(gen_random_uuid(), 'nimby', '1', NULL)")
        with as_role(s, "wendy", PASSWORDS["wendy"]) as conn:
            assert conn.execute("SELECT tractor_blade_set_v1(gen_random_uuid(), 'nimby', '1', NULL)"
                                ).fetchone()[0] is None  # allowed; no such blade
    finally:
        (cfg / "crews.toml").unlink()
        ok(run("tq", cfg, "reloadconfig", "--crews"))


def test_a_blade_login_cannot_operate_on_jobs(farm, tmp_path):
    cfg, s, people = farm
    bobs = jid_of(spool(people["bob"], "bob-b", tmp_path))
    with as_role(s, "rack01", "rack01 pw") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="rack01 is a blade login"):
            conn.execute(f"SELECT tractor_job_set_v1({bobs}, 'paused', 'true', true, NULL)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"UPDATE jobs SET pausetime = now() WHERE jid = {bobs}")
    assert job(s, bobs)["pausetime"] is None


def test_the_api_shows_the_databases_refusal(farm, tmp_path):
    import tractor.api.query as tq

    cfg, s, people = farm
    bobs = jid_of(spool(people["bob"], "bob-api", tmp_path))
    tq.setEngineClientParam(configdir=str(people["ann"]), force=True)
    try:
        with pytest.raises(tq.TractorQueryError, match="not allowed for ann on bob's jobs"):
            tq.pause({"jid": bobs})
    finally:
        tq.closeEngineClient()
    assert job(s, bobs)["pausetime"] is None


EXPAND = """Job -title {grows} -subtasks {
  Task {gen} -cmds { RemoteCmd {/bin/echo {Task {grafted} -cmds { RemoteCmd {/bin/true} }}} -expand 1 }
  Task {plain} -cmds { RemoteCmd {/bin/true} }
}
"""


def test_a_blade_login_runs_a_job_grafts_and_reports(farm, tmp_path):
    """A real tractor-blade logged in as a blade login (db.toml login, password, over TCP) registers,
    claims, runs, grafts an expand command's tasks and reports, all through the functions."""
    cfg, s, people = farm
    path = tmp_path / "grows.alf"
    path.write_text(EXPAND)
    jid = jid_of(run("tractor-spool", people["bob"], str(path)))
    blade = run("tractor-blade", people["rack01"], "--heartbeat", "0.2", "--exit-when-idle", "--name", "rackblade",
                "--slots", "2")
    assert blade.returncode == 0, blade.stderr
    with connect(s) as conn:
        tasks = conn.execute("SELECT title, state FROM tasks WHERE jid = %s AND attached ORDER BY tid", (jid,)
                             ).fetchall()
        assert [(t["title"], t["state"]) for t in tasks] == [("gen", "done"), ("plain", "done"), ("grafted", "done")]
        assert conn.execute("SELECT login FROM blades WHERE name = 'rackblade'").fetchone()["login"] == "rack01"


def _claim_as(conn, name: str, ip: str):
    b = conn.execute("SELECT tractor_blade_register_v1(%s, %s, 9005, 'default', '{PixarRender}', 1, 'linux', '', "
                     "'x', 1, '', '', '{}')", (name, ip)).fetchone()[0]
    svcids = [r[0] for r in conn.execute("SELECT svcid FROM service_exprs")]
    return b, conn.execute("SELECT jid, cid, iid FROM tractor_claim_v1(%s, %s, 'fakehost', 1)", (b, svcids)
                           ).fetchall()


def test_a_blade_login_cannot_act_for_another_blade(farm, tmp_path):
    cfg, s, people = farm
    bobs = jid_of(spool(people["bob"], "bob-fence", tmp_path))
    with as_role(s, "rack01", "rack01 pw") as r1, as_role(s, "rack02", "rack02 pw") as r2, \
            as_role(s, "ann", PASSWORDS["ann"]) as ann:
        b1, claimed = _claim_as(r1, "fence1", "10.9.0.1")
        mine = [c for c in claimed if c[0] == bobs]
        assert mine, claimed
        jid, cid, iid = mine[0]
        b2, _ = _claim_as(r2, "fence2", "10.9.0.2")
        finish = "SELECT tractor_finish_v1(%s, %s, %s, %s, 0, 0, 0, 0)"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="was not registered by rack02"):
            r2.execute(finish, (jid, cid, iid, b1))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="was not registered by rack02"):
            r2.execute("SELECT * FROM tractor_heartbeat_v1(%s, '{}', 0, 0, 0, '{}', '{}', '{}')", (b1,))
        assert r2.execute(finish, (jid, cid, iid, b2)).fetchone()[0] == "stale"  # not leased to it
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="registered by the login rack01"):
            r2.execute("SELECT tractor_blade_register_v1('fence1', '10.9.0.1', 9005, 'default', '{}', 1, "
                       "'linux', '', 'x', 1, '', '', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ann is not a blade login"):
            ann.execute("SELECT * FROM tractor_claim_v1(%s, '{1}', 'h', 1)", (b1,))
        # idle heartbeats written for blades by the engine (wakeups.py beats): the site's role only
        beat = json.dumps([{"bladeid": str(b2), "addr": "10.9.0.2", "reload": "0"}])
        for who in (r2, ann):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only tractor-engine"):
                who.execute("SELECT * FROM tractor_blade_beats_v1(%s::jsonb, '{}')", (beat,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r2.execute("UPDATE invocations SET bladeid = %s WHERE jid = %s", (b2, jid))
        assert r1.execute(finish, (jid, cid, iid, b1)).fetchone()[0] == "done"


def test_no_table_or_sequence_can_be_written_by_a_person_or_a_blade(farm):
    cfg, s, people = farm
    with connect(s) as conn:
        tables = [r["t"] for r in conn.execute(
            "SELECT c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1")]
        first = {r["t"]: r["c"] for r in conn.execute(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = 'public' AND ordinal_position = 1")}
        sequences = [r["s"] for r in conn.execute(
            "SELECT c.relname AS s FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'S'")]
    assert {"jobs", "tasks", "commands", "invocations", "blades", "ready", "crews", "params"} <= set(tables)
    for role, pw in (("ann", PASSWORDS["ann"]), ("rack01", "rack01 pw")):
        with as_role(s, role, pw) as conn:
            for t in tables:
                assert conn.execute(f'SELECT count(*) FROM "{t}"').fetchone() is not None  # reading is open
                for sql in (f'INSERT INTO "{t}" DEFAULT VALUES', f'UPDATE "{t}" SET "{first[t]}" = "{first[t]}"',
                            f'DELETE FROM "{t}"', f'TRUNCATE "{t}"'):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(sql)
            for q in sequences:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT nextval('{q}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE FUNCTION public.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'")


def test_a_staged_spool_with_values_outside_their_sets_is_refused(farm):
    """The job tables keep no CHECK constraints (migration 20): the staged spool a person writes
    by hand is checked by tractor_staged_values_ok, as the constraints did."""
    from tractorcli.db import queries

    _, s, _ = farm

    def stage(conn, runtype: str, maxactive: int):
        conn.execute(queries.get("spool_staging_tables"))
        conn.execute("INSERT INTO pg_temp.spool_jobs (owner, title, tier, numtasks, numready, maxtid, maxcid, "
                     "maxactive, scriptformat) VALUES ('ann', 'by hand', 'default', 1, 1, 1, 1, %s, 'generated')",
                     (maxactive,))
        conn.execute("INSERT INTO pg_temp.spool_tasks (jid, tid, title, state, pending, lasttid) "
                     "VALUES (0, 1, 't', 'ready', 0, 1)")
        conn.execute("INSERT INTO pg_temp.spool_commands (jid, cid, tid, argv, runtype, state) "
                     "VALUES (0, 1, 1, '{/bin/true}', %s, 'ready')", (runtype,))
        return conn.execute("SELECT * FROM tractor_spool_staged_v1('ann')").fetchone()

    with as_role(s, "ann", PASSWORDS["ann"]) as conn:
        for runtype, maxactive in (("sometimes", 0), ("regular", -2)):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="not one consistent job"):
                with conn.transaction():
                    stage(conn, runtype, maxactive)
        with conn.transaction():
            jid = stage(conn, "regular", 0)[0]
    assert job(s, jid)["owner"] == "ann"


def test_a_negative_maxactive_is_refused(farm, tmp_path):
    _, _, people = farm
    jid = jid_of(spool(people["ann"], "capped", tmp_path))
    r = run("tq", people["ann"], "--yes", "jattr", "-k", "maxactive", "-v", "-1", str(jid))
    assert r.returncode != 0 and "maxactive is 0 (no cap) or more, not -1" in r.stderr, r.stderr
    r = run("tq", people["ann"], "--yes", "jattr", "-k", "maxactive", "-v", "2", str(jid))
    assert r.returncode == 0, r.stderr
