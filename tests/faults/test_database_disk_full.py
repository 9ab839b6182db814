"""The job database's disk fills up under a working farm, then room comes back.

What PostgreSQL does on a full disk comes in two stages, and both are shown here:

1. A table or index cannot grow: that statement fails (`could not extend file ...`), its
   transaction is rolled back, the server stays up and serves what needs no new space.  A
   spool is refused with one clear line and leaves nothing behind; a blade keeps its commands
   running, holds their results and keeps heartbeating (so the engine's housekeeping does not
   take its commands away), and says why in words that are not "lost the connection".
2. The WAL needs a new segment file: PostgreSQL PANICs and, unable to write its end-of-recovery
   checkpoint, shuts down.  That is PostgreSQL's own behaviour.  Here the segment's end is
   brought forward with pg_switch_wal() (what a busy hour's traffic does by itself).  While the
   disk stays full every program says so in one line; once the space is back,
   `tractor-dbctl --start` recovers, every job committed before is intact, the blade reconnects
   by itself, reports what it held, and every command has run exactly once.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from test_blade import Site, sh, states
from test_dbctl_lifecycle import ok, one_line_error
from test_server_faults import small_mount  # noqa: F401 - the fixture

from conftest import clean_env, dbctl, program, root_only
from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults

LEASE = 2  # BladeLeaseSecs: the disk stays full for longer than this
QUICK = 100  # quick commands: claims and reports soon need a new page of some table


def fill(path: Path) -> None:
    """Write `path` until the file system has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"x" * size)
            except OSError:
                pass


def spool_program(site: Site, *args: str) -> subprocess.CompletedProcess:
    """tractor-spool as a user runs it, in the site's work directory."""
    return subprocess.run([program("tractor-spool"), "--configdir", str(site.cfg), "--user", "ann", *args],
                          cwd=site.work, capture_output=True, text=True, env=clean_env(), timeout=60,
                          stdin=subprocess.DEVNULL)


def one_line(proc: subprocess.CompletedProcess, status: ExitStatus, prog: str, *fragments: str) -> str:
    assert proc.returncode == status, f"exit {proc.returncode}: {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def housekeep(conn) -> None:
    """A housekeeping pass as the engine runs it: on a full disk it cannot store what it would
    change (a lease that lapsed) either, and the engine says so and tries again next pass."""
    from tractorcli.db.connection import translate
    from tractorcli.errors import StorageError

    try:
        d.housekeep(conn)
    except Exception as exc:  # noqa: BLE001 - only a full disk is expected
        if not isinstance(translate(exc), StorageError):
            raise


def words(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@root_only
def test_a_full_database_disk_loses_nothing_and_recovers_once_there_is_room(small_mount, tmp_site):  # noqa: F811
    point = small_mount("160m")  # initdb and the schema take ~42 MB, one WAL segment 16 MB
    cfg, settings = tmp_site(db_toml=f'data_dir = "{point}/psql"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    site = Site(settings)
    try:
        d.set_params(site.conn, {"BladeLeaseSecs": LEASE})
        early = site.spool(Task("early", cmds=(sh("echo early >> runs.txt"),)), title="early")
        # one long command, held until the test says go, and many quick ones
        long_cmd = sh("echo long >> started.txt; while [ ! -e go ]; do sleep 0.05; done; echo long >> runs.txt")
        jid = site.spool(Task("long", cmds=(long_cmd,)),
                         *(Task(f"q{i}", cmds=(sh(f"echo q{i} >> runs.txt"),)) for i in range(QUICK)), title="work")
        blade = site.blade("--name", "busy", "--slots", "2")
        site.wait(lambda: words(site.work / "started.txt") == ["long"] and len(words(site.work / "runs.txt")) >= 10,
                  msg="the long command to start and some quick ones to finish")

        # --- stage 1: the disk is full; the server is up --------------------------------------------------
        fill(point / "filler")
        big = site.work / "big.alf"
        big.write_text("##AlfredToDo 3.0\nJob -title {big} -subtasks {\n" + "\n".join(
            f"  Task {{b{i}}} -cmds {{ RemoteCmd {{/bin/sh -c {{echo b{i} >> runs.txt}}}} }}" for i in range(2000))
            + "\n}\n")
        one_line(spool_program(site, "big.alf"), ExitStatus.STORAGE, "tractor-spool", "the disk is full",
                 "No space left on device", str(settings.db_data_dir))
        assert site.one("SELECT count(*) AS n FROM jobs WHERE title = 'big'")["n"] == 0
        assert site.one("SELECT count(*) AS n FROM tasks WHERE jid NOT IN (SELECT jid FROM jobs)")["n"] == 0

        # the blade's claims meet the full disk; then the long command ends and its result cannot be
        # stored either.  The blade holds it, keeps its connection and keeps heartbeating, so the
        # engine's housekeeping does not take its commands away however long the disk stays full.
        site.wait(lambda: "No space left on device" in blade.text(), msg="the blade to meet the full disk")
        (site.work / "go").touch()
        site.wait(lambda: words(site.work / "runs.txt").count("long") == 1, msg="the long command to end")
        held = time.monotonic()
        while time.monotonic() - held < LEASE + 1.5:  # longer than a lease, housekeeping as the engine does
            housekeep(site.conn)
            beat = site.one("SELECT now() - heartbeattime AS age FROM blades WHERE name = 'busy'")["age"]
            assert beat.total_seconds() < LEASE, f"the blade stopped heartbeating:\n{blade.text()}"
            time.sleep(0.2)
        # its one run, still the blade's (its result is held, or went through when a write found room)
        long_inv = site.all("SELECT iid, current, lapsed FROM invocations WHERE jid = %s AND cid = 1", jid)
        assert [tuple(r.values()) for r in long_inv] == [(1, True, False)], blade.text()
        said = blade.text()
        assert "the disk is full" in said and "lost the database connection" not in said, said
        st = dbctl(cfg, "--status")
        assert st.returncode == 0 and "Traceback" not in st.stdout + st.stderr, st

        # --- stage 2: the WAL needs a new segment: PostgreSQL PANICs and shuts down -------------------
        site.one("SELECT pg_switch_wal()")
        site.wait(lambda: dbctl(cfg, "--status").returncode == ExitStatus.NOT_RUNNING, timeout=30, step=0.2,
                  msg="PostgreSQL to go down for want of WAL space")
        site.conn.close()
        st = dbctl(cfg, "--status")
        assert "not running" in st.stdout and "Traceback" not in st.stdout + st.stderr, st
        one_line_error(dbctl(cfg, "--start"), ExitStatus.STORAGE, "MB free", "needs at least",
                       str(settings.db_data_dir))
        one_line(spool_program(site, "-c", "/bin/sh", "-c", "echo refused >> runs.txt"), ExitStatus.UNAVAILABLE,
                 "tractor-spool", "not running")
        site.wait(lambda: "lost the database connection" in blade.text(), msg="the blade to notice")
        assert blade.proc.poll() is None, blade.text()

        # --- room again ----------------------------------------------------------------------------------
        restored = blade.text().count("database connection restored")
        (point / "filler").unlink()
        freed = time.monotonic()
        ok(dbctl(cfg, "--start"))
        started = time.monotonic() - freed
        site.conn = connect(settings, autocommit=True)
        after = spool_program(site, "-c", "/bin/sh", "-c", "echo after >> runs.txt")
        assert after.returncode == 0, after.stderr
        later = int(after.stdout.split()[-1])
        site.wait(lambda: blade.text().count("database connection restored") > restored, timeout=15,
                  msg="the blade to reconnect by itself")
        reconnected = time.monotonic() - freed
        while set(states(site, jid).values()) != {"done"} or set(states(site, later).values()) != {"done"}:
            d.housekeep(site.conn)  # as the engine does from the moment the server is back
            if time.monotonic() - freed > 30:
                pytest.fail(f"the work did not finish: {states(site, jid)}\n{blade.text()}")
            time.sleep(0.1)
        finished = time.monotonic() - freed
        print(f"\nafter the space came back: server up in {started:.2f} s, the blade reconnected in "
              f"{reconnected:.2f} s, all work done (a job spooled then included) in {finished:.2f} s")

        # every command ran exactly once, and the result kept is that run's
        runs = words(site.work / "runs.txt")
        expected = ["early", "long", *(f"q{i}" for i in range(QUICK)), "after"]
        assert sorted(runs) == sorted(expected), sorted(set(runs) ^ set(expected))
        assert words(site.work / "started.txt") == ["long"]
        for j in (jid, later):
            invs = site.invocations(j)
            assert all((i["iid"], i["current"], i["rcode"]) == (1, True, 0) for i in invs), invs
        assert len(site.invocations(jid)) == QUICK + 1
        assert states(site, early) == {"early": "done"}
        assert len(states(site, jid)) == QUICK + 1
        assert "database connection restored" in blade.text()
        for noise in ("Traceback", "internal error", "error ignored"):
            assert noise not in blade.text(), blade.text()
        assert audit(site.conn) == []
        assert "keeps every invariant" in ok(dbctl(cfg, "--check")).stderr
        assert blade.proc.poll() is None, blade.text()
    finally:
        site.close()
