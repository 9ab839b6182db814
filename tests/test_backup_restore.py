"""Backups and restores, offline and online, compared row by row."""

from __future__ import annotations

import gzip
import tarfile
import threading
import time

import pytest

from conftest import dbctl
from test_dbctl_lifecycle import ok, one_line_error
from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus
from tractorcli.db.migrate import latest_version

LATEST = latest_version()

TABLES = ["jobs", "tasks", "task_edges", "commands", "ready", "blades", "invocations", "task_logs", "notes",
          "params", "service_exprs", "schema_migrations"]

FILL = """
INSERT INTO service_exprs (expr) VALUES ('PixarRender'), ('linux && @.mem > 4');
INSERT INTO jobs (owner, title, priority, tags, projects, afterjids, dirmap, metadata)
  SELECT 'user' || (g % 7), 'job ' || g, g / 3.0, ARRAY['prman', 'tag' || g], ARRAY['film'], ARRAY[g - 1]::bigint[],
         jsonb_build_array(jsonb_build_array('/a', '/b', 'NFS')), 'm' || g
  FROM generate_series(1, 40) g;
INSERT INTO tasks (jid, tid, title, state, parent_tid, position, pending)
  SELECT j, t, 'task ' || j || '.' || t, (ARRAY['blocked','ready','active','error','done'])[1 + t % 5],
         CASE WHEN t > 1 THEN 1 END, t, 0
  FROM generate_series(1, 40) j, generate_series(1, 25) t;
INSERT INTO task_edges (jid, parent_tid, child_tid, kind)
  SELECT jid, coalesce(parent_tid, 0), tid, 'tree' FROM tasks;
INSERT INTO commands (jid, cid, tid, argv, service, svcid, tags, envkey, retryrcodes)
  SELECT jid, tid, tid, ARRAY['prman', '-Progress', 'frame' || tid || '.rib'], 'PixarRender', 1, '{prman}', '{maya2024}', '{3,4}'
  FROM tasks;
INSERT INTO ready (jid, cid, tid, svcid) SELECT jid, cid, tid, svcid FROM commands WHERE cid % 5 = 1;
INSERT INTO blades (name, ipaddr, port, provides, heartbeattime, numcpu)
  SELECT 'blade' || g, '10.0.0.' || g, 9005, ARRAY['linux', 'PixarRender'], now(), 16 FROM generate_series(1, 5) g;
INSERT INTO invocations (jid, tid, cid, iid, bladeid, bladename, rcode, stoptime)
  SELECT c.jid, c.tid, c.cid, 1, b.bladeid, b.name, c.cid % 3, now()
  FROM commands c JOIN blades b ON b.name = 'blade' || (1 + c.cid % 5) WHERE c.cid % 5 IN (2, 3, 4);
INSERT INTO task_logs (jid, cid, iid, seq, tid, text)
  SELECT jid, cid, iid, 1, tid, E'line one\\nTR_PROGRESS 50%\\n' FROM invocations;
INSERT INTO notes (noteuser, notetext, itemtype, itemid) VALUES ('joe', 'look at frame 12', 'job', '{3}');
"""


def snapshot(settings) -> dict[str, list]:
    """Every row of every table, as text, in a stable order."""
    out = {}
    with connect(settings, autocommit=True) as conn:
        for t in TABLES:
            # tables only (not user text): the list above is ours
            rows = conn.execute(f"SELECT t::text AS r FROM {t} t ORDER BY 1").fetchall()  # noqa: S608
            out[t] = [r["r"] for r in rows]
        out["jid_seq"] = [str(conn.execute("SELECT last_value, is_called FROM jid_seq").fetchone())]
    return out


@pytest.fixture
def filled_site(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    with connect(s, autocommit=True) as conn:
        conn.execute(FILL)
    return cfg, s


@pytest.mark.parametrize("online", [False, True], ids=["offline", "online"])
def test_round_trip_restores_every_row(filled_site, online):
    cfg, s = filled_site
    before = snapshot(s)
    assert len(before["tasks"]) == 1000 and len(before["invocations"]) == 600
    backup = s.data_dir.parent / "jobs.tgz"
    if not online:
        ok(dbctl(cfg, "--stop"))
    said = ok(dbctl(cfg, "--backup", str(backup))).stderr
    assert ("online backup" if online else "offline backup") in said
    with tarfile.open(backup) as tar:  # Tractor's layout: everything under psql/
        names = tar.getnames()
    assert "psql/PG_VERSION" in names and all(n == "tractor-backup.json" or n.startswith("psql") for n in names)
    assert "psql/postmaster.pid" not in names
    if online:
        # the server kept running; writes after the backup must not show up in the restore
        with connect(s, autocommit=True) as conn:
            conn.execute("INSERT INTO jobs (owner, title) VALUES ('late', 'after the backup')")
        ok(dbctl(cfg, "--stop"))
    ok(dbctl(cfg, "--destroy", "--yes"))
    ok(dbctl(cfg, "--restore", str(backup)))
    ok(dbctl(cfg, "--start"))
    assert snapshot(s) == before


def test_online_backup_while_writes_go_on_is_consistent(filled_site, tmp_site):
    """Writers commit jobs of 10 tasks each while the backup runs; the restore
    holds every job committed before the backup began, none half-written."""
    cfg, s = filled_site
    committed: list[tuple[float, int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            with connect(s, autocommit=True) as conn:
                while not stop.is_set():
                    with conn.transaction():
                        jid = conn.execute("INSERT INTO jobs (owner, title) VALUES ('w', 'busy') RETURNING jid").fetchone()["jid"]
                        conn.execute("INSERT INTO tasks (jid, tid, title) SELECT %s, g, 't' FROM generate_series(1, 10) g", (jid,))
                    committed.append((time.monotonic(), jid))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    backup = s.data_dir.parent / "busy.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    before_backup = {jid for when, jid in committed if when < started}
    assert len(before_backup) > 10 and len(committed) > len(before_backup)

    # restore into a second site, leaving the first one running
    cfg2, s2 = tmp_site()
    ok(dbctl(cfg2, "--restore", str(backup), "--verify"))
    ok(dbctl(cfg2, "--start"))
    with connect(s2, autocommit=True) as conn:
        rows = conn.execute("SELECT j.jid, count(t.tid) AS n FROM jobs j LEFT JOIN tasks t USING (jid) "
                            "WHERE j.owner = 'w' GROUP BY j.jid").fetchall()
        restored = {r["jid"]: r["n"] for r in rows}
        assert conn.execute("SELECT count(*) AS n FROM tasks WHERE jid <= 40").fetchone()["n"] == 1000
    assert before_backup <= set(restored)
    assert set(restored) <= {jid for _, jid in committed}
    assert set(restored.values()) == {10}


def test_job_ids_resume_from_the_backup(filled_site):
    cfg, s = filled_site
    ok(dbctl(cfg, "--set-job-counter", "1234"))
    backup = s.data_dir.parent / "counter.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    for _ in range(3):  # jobs submitted after the backup
        ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner) VALUES ('x')"))
    assert "jidcounter = 1237" in ok(dbctl(cfg, "--show-params")).stdout
    ok(dbctl(cfg, "--stop"))
    ok(dbctl(cfg, "--destroy", "--yes"))
    ok(dbctl(cfg, "--restore", str(backup)))
    ok(dbctl(cfg, "--start"))
    assert "jidcounter = 1234" in ok(dbctl(cfg, "--show-params")).stdout
    assert ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner) VALUES ('y') RETURNING jid")).stdout == "1235\n"
    # and the counter can be moved past the ids used after the backup
    ok(dbctl(cfg, "--set-job-counter", "1237"))
    assert ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner) VALUES ('z') RETURNING jid")).stdout == "1238\n"


def test_restore_refusals(filled_site, tmp_path):
    cfg, s = filled_site
    backup = s.data_dir.parent / "r.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    one_line_error(dbctl(cfg, "--restore", str(backup)), ExitStatus.STATE, "while the database server is running")
    ok(dbctl(cfg, "--stop"))
    one_line_error(dbctl(cfg, "--restore", str(backup)), ExitStatus.STATE, "not empty", "--destroy")
    one_line_error(dbctl(cfg, "--restore", str(tmp_path / "nope.tgz")), ExitStatus.NOT_FOUND, "does not exist")
    ok(dbctl(cfg, "--start"))  # nothing was touched by the refusals
    assert "jobs = 40" in ok(dbctl(cfg, "--show-params")).stdout


def test_damaged_backups_are_rejected_and_leave_nothing_behind(filled_site, tmp_path):
    cfg, s = filled_site
    ok(dbctl(cfg, "--stop"))
    good = s.data_dir.parent / "good.tgz"
    ok(dbctl(cfg, "--backup", str(good)))
    ok(dbctl(cfg, "--destroy", "--yes"))

    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"this is not a tarball\n" * 100)
    one_line_error(dbctl(cfg, "--restore", str(garbage)), ExitStatus.BAD_INPUT, "damaged or unreadable backup")
    assert not any(s.db_data_dir.iterdir())

    truncated = tmp_path / "truncated.tgz"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    one_line_error(dbctl(cfg, "--restore", str(truncated), "--verify"), ExitStatus.BAD_INPUT, "damaged")
    assert not any(s.db_data_dir.iterdir())

    foreign = tmp_path / "foreign.tgz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(__file__, arcname="etc/passwd")
    one_line_error(dbctl(cfg, "--restore", str(foreign)), ExitStatus.BAD_INPUT, "not a tractor job database backup")

    said = ok(dbctl(cfg, "--restore", str(good), "--verify")).stderr
    assert f"verified: schema version {LATEST}, job counter 40, 40 jobs, 1000 tasks" in said


def test_backup_never_leaves_a_partial_file(filled_site):
    cfg, s = filled_site
    target = s.data_dir.parent / "no-such-dir" / "x.tgz"
    proc = dbctl(cfg, "--backup", str(target))
    assert proc.returncode == ExitStatus.NOT_FOUND, proc.stderr
    assert not target.exists()
    d = s.data_dir.parent
    one_line_error(dbctl(cfg, "--backup", str(d)), ExitStatus.USAGE)
    assert not [p for p in d.iterdir() if p.name.endswith(".partial")]


def test_backup_is_gzip_compressed(filled_site):
    cfg, s = filled_site
    ok(dbctl(cfg, "--stop"))
    backup = s.data_dir.parent / "c.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    with gzip.open(backup) as f:
        f.read(512)
    size_data = sum(p.stat().st_size for p in s.db_data_dir.rglob("*") if p.is_file())
    assert backup.stat().st_size < size_data / 2


def test_offline_backup_keeps_only_the_wal_a_clean_stop_needs(filled_site):
    cfg, s = filled_site
    # churn so that pg_wal holds several segments, old and recycled
    with connect(s, autocommit=True) as conn:
        for _ in range(4):
            conn.execute("INSERT INTO task_logs (jid, cid, iid, seq, tid, text) "
                         "SELECT jid, cid, iid, 100 + g, tid, repeat('x', 4000) FROM invocations, generate_series(1, 20) g")
            conn.execute("DELETE FROM task_logs WHERE seq >= 100")
            conn.execute("CHECKPOINT")
    ok(dbctl(cfg, "--stop"))
    on_disk = [p.name for p in (s.db_data_dir / "pg_wal").iterdir() if len(p.name) == 24]
    assert len(on_disk) > 1
    backup = s.data_dir.parent / "lean.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    with tarfile.open(backup) as tar:
        wal = [n for n in tar.getnames() if n.startswith("psql/pg_wal/") and len(n.rsplit("/", 1)[1]) == 24]
    assert len(wal) == 1, wal
    ok(dbctl(cfg, "--start"))
    before = snapshot(s)
    ok(dbctl(cfg, "--stop"))
    ok(dbctl(cfg, "--destroy", "--yes"))
    ok(dbctl(cfg, "--restore", str(backup), "--verify"))
    ok(dbctl(cfg, "--start"))
    snapshot_after_start = snapshot(s)
    assert snapshot_after_start == before


def test_offline_backup_after_a_crash_keeps_all_wal(filled_site):
    import os
    import signal

    cfg, s = filled_site
    with connect(s, autocommit=True) as conn:
        conn.execute("INSERT INTO jobs (owner, title) VALUES ('crash', 'committed before the crash')")
    os.kill(int((s.db_data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    time.sleep(0.5)
    on_disk = sorted(p.name for p in (s.db_data_dir / "pg_wal").iterdir() if len(p.name) == 24)
    backup = s.data_dir.parent / "crashed.tgz"
    ok(dbctl(cfg, "--backup", str(backup)))
    with tarfile.open(backup) as tar:
        wal = sorted(n.rsplit("/", 1)[1] for n in tar.getnames()
                     if n.startswith("psql/pg_wal/") and len(n.rsplit("/", 1)[1]) == 24)
    assert wal == on_disk
    ok(dbctl(cfg, "--destroy", "--yes"))
    ok(dbctl(cfg, "--restore", str(backup)))
    ok(dbctl(cfg, "--start"))
    assert ok(dbctl(cfg, "--exec-sql", "SELECT title FROM jobs WHERE owner = 'crash'")).stdout == "committed before the crash\n"
