"""Schema migrations against a real server: from empty, checksums, refusals."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tractorcli.db import migrate, queries
from tractorcli.db.connection import connect
from tractorcli.errors import SchemaError

SNAPSHOT = Path(__file__).with_name("schema_snapshot.txt")
# statements on roles (run by tests/test_identities.py against real roles)
TABLES = {"jobs", "tasks", "task_edges", "commands"}
ROLE_DDL = {"set_role_password", "create_login_role", "grant_login_group", "set_login_password",
            "clear_login_password", "drop_login_role", "pooler_login"}


def catalog(conn) -> str:
    rows = conn.execute(queries.get("schema_catalog")).fetchall()
    # sequence owned-by defaults embed the database-specific nothing; keep as is
    return "\n".join(f"{r['kind']}\t{r['object']}\t{r['detail']}" for r in rows) + "\n"


def test_every_migration_from_empty_gives_the_expected_schema(empty_db):
    with connect(empty_db, autocommit=True) as conn:
        assert migrate.plan(conn).current == 0
        applied = migrate.upgrade(conn)
        assert [m.version for m in applied] == list(range(1, migrate.latest_version() + 1))
        got = catalog(conn)
    if os.environ.get("TRACTOR_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(got)
    expected = SNAPSHOT.read_text()
    assert got == expected, (
        "the migrated schema differs from tests/schema_snapshot.txt; if the change is intended, "
        "rerun with TRACTOR_UPDATE_SNAPSHOT=1 and commit the snapshot"
    )


def test_upgrade_is_idempotent_and_recorded(db_settings):
    with connect(db_settings, autocommit=True) as conn:
        assert migrate.upgrade(conn) == []
        p = migrate.plan(conn)
        assert p.up_to_date and p.current == p.target == migrate.latest_version()
        rows = list(conn.execute(queries.get("applied_migrations")))
        assert [r["checksum"] for r in rows] == [m.checksum for m in migrate.available()]


def test_every_named_query_is_valid_against_the_schema(db_settings):
    """Each statement of queries.sql parses and plans against the migrated schema.

    DML is PREPAREd (planned, not run); other statements run in a
    transaction that is rolled back.
    """
    from psycopg import sql

    not_in_transaction = {"vacuum_full", "create_database"}
    with connect(db_settings) as conn:
        for name in queries.names():
            if name in not_in_transaction or name in ROLE_DDL:
                continue  # cannot run in a transaction / would need a role "x"
            text = queries.get(name)
            numbers: dict[str, int] = {}
            text = re.sub(r"%\((\w+)\)s", lambda m: f"${numbers.setdefault(m.group(1), len(numbers) + 1)}", text)
            # {jobs}, {tasks} ...: the table a statement may also run on a staged copy of
            stmt = sql.SQL(text.replace("%%", "%")).format(
                **{k: sql.Identifier(k if k in TABLES else "x") for k in re.findall(r"\{(\w+)\}", text)})
            body = stmt.as_string(conn)
            first = re.sub(r"^(\s*--[^\n]*\n)*", "", body).lstrip().split(None, 1)[0].upper()
            with conn.transaction(force_rollback=True):
                if "pg_temp.spool_script" in body:  # a table the spool makes in its session first
                    conn.execute(queries.get("spool_script_table"))
                if first in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                    conn.execute(f"PREPARE check_{name} AS {body}")
                elif first == "COPY":
                    with conn.cursor().copy(body):
                        pass  # no rows: the table and its columns are checked
                else:
                    assert not numbers, name
                    conn.execute(body)


def test_a_changed_migration_is_detected(db_settings):
    with connect(db_settings, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'feedface' WHERE version = 1")
        with pytest.raises(SchemaError, match=r"migration 0001_initial was applied with checksum feedface"):
            migrate.plan(conn)


def test_a_newer_database_is_refused_with_advice(db_settings):
    with connect(db_settings, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
        with pytest.raises(SchemaError) as e:
            migrate.plan(conn)
        assert "schema version 999, newer than this tractorcli" in str(e.value)
        assert "install the tractorcli that upgraded it" in e.value.hint
        with pytest.raises(SchemaError):
            migrate.upgrade(conn)


def test_a_failing_migration_leaves_the_previous_version(db_settings, tmp_path):
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    for m in migrate.available():
        (mdir / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    n = migrate.latest_version() + 1
    (mdir / f"{n:04d}_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT no_such_function();\n")
    migrations = migrate.available(mdir)
    import psycopg

    with connect(db_settings, autocommit=True) as conn:
        with pytest.raises(psycopg.Error):
            migrate.upgrade(conn, migrations)
        assert migrate.plan(conn, migrations).current == n - 1
        assert conn.execute("SELECT to_regclass('half_done') AS t").fetchone()["t"] is None


def test_pending_migrations_are_applied_in_order(db_settings, tmp_path):
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    for m in migrate.available():
        (mdir / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    n = migrate.latest_version()
    (mdir / f"{n + 1:04d}_add_a.sql").write_text("CREATE TABLE extra_a (x int);")
    (mdir / f"{n + 2:04d}_add_b.sql").write_text("ALTER TABLE extra_a ADD COLUMN y int;")
    migrations = migrate.available(mdir)
    with connect(db_settings, autocommit=True) as conn:
        p = migrate.plan(conn, migrations)
        assert [m.name for m in p.pending] == ["add_a", "add_b"]
        assert [m.version for m in migrate.upgrade(conn, migrations)] == [n + 1, n + 2]
        conn.execute("INSERT INTO extra_a (x, y) VALUES (1, 2)")


def test_badly_numbered_migrations_are_rejected(tmp_path):
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(SchemaError, match="not numbered"):
        migrate.available(tmp_path)
    (tmp_path / "0002-b.sql").write_text("")
    with pytest.raises(SchemaError, match="NNNN_name.sql"):
        migrate.available(tmp_path)


def test_the_job_counter_is_a_sequence_starting_at_one(db_settings):
    with connect(db_settings, autocommit=True) as conn:
        assert conn.execute(queries.get("job_counter")).fetchone()["jidcounter"] == 0
        jid = conn.execute("INSERT INTO jobs (owner) VALUES ('joe') RETURNING jid").fetchone()["jid"]
        assert jid == 1
        assert conn.execute(queries.get("job_counter")).fetchone()["jidcounter"] == 1


def test_the_job_counter_never_goes_back_when_the_newest_jobs_are_removed(db_settings):
    with connect(db_settings, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("INSERT INTO jobs (owner) VALUES ('joe')")
        conn.execute("DELETE FROM jobs WHERE jid >= 2")
        assert conn.execute(queries.get("job_counter")).fetchone()["jidcounter"] == 3
        conn.execute("INSERT INTO jobs (owner) VALUES ('joe')")
        conn.execute("TRUNCATE jobs CASCADE")
        assert conn.execute(queries.get("job_counter")).fetchone()["jidcounter"] == 4


def test_queries_file_parser():
    parsed = queries.parse("-- name: a\nSELECT 1\n\n-- name: b\n-- comment\nSELECT 2;\n")
    assert parsed == {"a": "SELECT 1", "b": "-- comment\nSELECT 2;"}
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


# A job as tractorcli 0.1 (schema version 1) spooled it: a serial parent with
# two children, an Instance, tree rows in task_edges, one ready command.
V1_JOB = """
INSERT INTO service_exprs (svcid, expr) VALUES (1, 'pixarRender');
INSERT INTO jobs (jid, owner, title, tier, priority, numtasks, numblocked, numready, maxtid, maxcid)
VALUES (7, 'ann', 'old job', 'rush', 5, 4, 3, 1, 4, 4);
INSERT INTO tasks (jid, tid, title, state, parent_tid, position, pending, serialsubtasks) VALUES
  (7, 1, 'shots', 'blocked', NULL, 0, 2, true),
  (7, 2, 's1', 'ready', 1, 0, 0, false),
  (7, 3, 's2', 'blocked', 1, 1, 1, false),
  (7, 4, 'after', 'blocked', NULL, 1, 1, false);
INSERT INTO task_edges (jid, parent_tid, child_tid, kind) VALUES
  (7, 0, 1, 'tree'), (7, 1, 2, 'tree'), (7, 1, 3, 'tree'), (7, 0, 4, 'tree'), (7, 4, 1, 'instance');
INSERT INTO commands (jid, cid, tid, position, argv, svcid, state) VALUES
  (7, 1, 1, 0, '{comp}', 1, 'blocked'), (7, 2, 2, 0, '{one}', 1, 'ready'),
  (7, 3, 3, 0, '{two}', 1, 'blocked'), (7, 4, 4, 0, '{last}', 1, 'blocked');
INSERT INTO ready (jid, cid, tid, svcid) VALUES (7, 2, 2, 1);
SELECT setval('jid_seq', 7);
"""


def test_an_upgrade_keeps_a_job_spooled_under_schema_1_and_it_runs(empty_db):
    from tractorcli.db import dispatch
    from tractorcli.service import BladeFacts

    with connect(empty_db, autocommit=True) as conn:
        migrate.upgrade(conn, migrate.available()[:1])
        conn.execute(V1_JOB)
        applied = migrate.upgrade(conn)
        assert [m.version for m in applied] == list(range(2, migrate.latest_version() + 1))
        job = conn.execute("SELECT tierpri, svcids, numtasks FROM jobs WHERE jid = 7").fetchone()
        assert job == {"tierpri": 99, "svcids": [1], "numtasks": 4}
        lasttid = {r["tid"]: r["lasttid"] for r in conn.execute("SELECT tid, lasttid FROM tasks WHERE jid = 7")}
        assert lasttid == {1: 3, 2: 2, 3: 3, 4: 4}
        assert [(r["parent_tid"], r["child_tid"]) for r in conn.execute(
            "SELECT parent_tid, child_tid FROM task_edges WHERE jid = 7")] == [(4, 1)]  # the tree is parent_tid
        blade = dispatch.register(conn, dispatch.BladeInfo(name="b", provides=("pixarRender",)))
        facts = BladeFacts(provides={"pixarrender"}, hostname="b")
        svc = dispatch.ServiceCache()
        order = []
        while True:
            got = dispatch.claim(conn, blade, svc.matching(conn, facts, refresh=True), "b", 4)
            if not got:
                break
            for c in got:
                order.append(c.info["argv"][0])
                assert dispatch.finish(conn, c, blade, 0) == "done"
        assert order == ["one", "two", "comp", "last"]  # serial, then the parent, then its Instance referrer
        assert conn.execute("SELECT phase, numdone FROM jobs WHERE jid = 7").fetchone() == {
            "phase": "finished", "numdone": 4}
        # and new jobs continue after it
        assert conn.execute("SELECT nextval('jid_seq') AS n").fetchone()["n"] == 8


# --- the state machine's function files ------------------------------------------------------

_CREATE_FUNCTION = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.I)


def test_every_function_lives_in_one_function_file_and_no_later_migration(db_settings):
    """The state machine is readable in one place: each function of the schema is created in exactly
    one db/sql/functions file (by CREATE OR REPLACE), and migrations after the one that introduced
    the files hold tables and data only."""
    defined: dict[str, str] = {}
    for f in migrate.function_files():
        for name in _CREATE_FUNCTION.findall(f.sql):
            assert name not in defined, f"{name} is in {defined[name]} and {f.name}"
            defined[name] = f.name
        assert not re.search(r"CREATE\s+FUNCTION", f.sql), f"{f.name}: use CREATE OR REPLACE FUNCTION"
    for m in migrate.available():
        if m.version >= 8:
            assert not _CREATE_FUNCTION.search(m.sql), f"migration {m.version:04d}_{m.name} defines a function"
    with connect(db_settings, autocommit=True) as conn:
        in_db = {r["proname"] for r in conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind = 'f'")}
    assert in_db == set(defined)


def test_a_database_of_version_7_upgrades_to_the_fresh_schema(empty_db, db_settings):
    """Upgrading a database built by the migrations alone (version 7) applies migration 8 and the
    function files, and ends with exactly the schema (and function definitions) of a new one."""
    with connect(empty_db, autocommit=True) as old, connect(db_settings, autocommit=True) as fresh:
        migrate.upgrade(old, migrate.available()[:7])
        assert migrate.plan(old).functions == migrate.function_files()
        assert [m.version for m in migrate.upgrade(old)] == list(range(8, migrate.latest_version() + 1))
        assert migrate.plan(old).up_to_date
        assert catalog(old) == catalog(fresh)


def test_a_changed_function_file_is_applied_by_the_next_upgrade(db_settings, tmp_path):
    with connect(db_settings, autocommit=True) as conn:
        assert migrate.plan(conn).up_to_date
        # a function file this database has another version of (as after installing a newer tractorcli)
        conn.execute("UPDATE schema_functions SET checksum = 'old' WHERE file = 'queue.sql'")
        conn.execute("CREATE OR REPLACE FUNCTION tractor_param_int(p_name text, p_default integer) "
                     "RETURNS integer LANGUAGE sql STABLE AS $$ SELECT -1 $$")
        p = migrate.plan(conn)
        assert [f.name for f in p.functions] == ["queue.sql"] and not p.pending and not p.up_to_date
        assert conn.execute("SELECT tractor_param_int('nosuch', 5) AS v").fetchone()["v"] == -1
        assert migrate.upgrade(conn) == []
        assert conn.execute("SELECT tractor_param_int('nosuch', 5) AS v").fetchone()["v"] == 5
        assert migrate.plan(conn).up_to_date
        rows = {r["file"]: r["checksum"] for r in conn.execute(queries.get("applied_function_files"))}
        assert rows == {f.name: f.checksum for f in migrate.function_files()}


def test_every_security_definer_function_has_a_fixed_search_path(db_settings):
    """A SECURITY DEFINER function runs as the site's role: its search_path is fixed, with the
    caller's temporary objects last, so nothing a person makes can stand in for a table."""
    with connect(db_settings, autocommit=True) as conn:
        rows = conn.execute("SELECT p.proname AS name, p.proconfig AS config FROM pg_proc p "
                            "JOIN pg_namespace n ON n.oid = p.pronamespace "
                            "WHERE n.nspname = 'public' AND p.prosecdef ORDER BY 1").fetchall()
    assert len(rows) >= 25
    wrong = [r["name"] for r in rows if "search_path=pg_catalog, public, pg_temp" not in (r["config"] or [])]
    assert wrong == []
