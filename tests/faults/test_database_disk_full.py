"""exploration"""
from __future__ import annotations
import subprocess, time, os
import pytest
from test_blade import Site, sh, states
from test_server_faults import small_mount  # noqa: F401
from test_dbctl_lifecycle import ok
from conftest import clean_env, dbctl, program, root_only
from tractorcli.jobs.model import Task
from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect

pytestmark = pytest.mark.faults


def fill(path):
    with open(path, "wb", buffering=0) as f:
        for n in (1 << 20, 65536, 4096, 512):
            try:
                while True:
                    f.write(b"x" * n)
            except OSError:
                pass


@root_only
def test_explore(small_mount, tmp_site):  # noqa: F811
    point = small_mount("160m")
    cfg, settings = tmp_site(db_toml=f'data_dir = "{point}/psql"\n')
    ok(dbctl(cfg, "--start-for-engine"))
    site = Site(settings)
    try:
        d.set_params(site.conn, {"BladeLeaseSecs": 2})
        jid = site.spool(*(Task(f"t{i}", cmds=(sh(f"echo t{i} >> runs.txt; sleep 0.05"),)) for i in range(300)))
        blade = site.blade("--name", "b", "--slots", "2")
        site.wait(lambda: (site.work / "runs.txt").exists() and len((site.work / "runs.txt").read_text().split()) > 30)
        fill(point / "filler")
        t0 = time.monotonic()
        print("filled at", len((site.work / "runs.txt").read_text().split()))
        while time.monotonic() - t0 < 6:
            try:
                d.housekeep(site.conn)
            except Exception as e:
                print("housekeep", repr(e))
            time.sleep(0.2)
        print("after 6s", len((site.work / "runs.txt").read_text().split()))
        print(blade.text()[-3000:])
        try:
            print(site.one("select pg_switch_wal()"))
        except Exception as e:
            print("EXC", repr(e))
        time.sleep(3)
        print("after switch", len((site.work / "runs.txt").read_text().split()))
        (point / "filler").unlink()
        t1 = time.monotonic()
        ok(dbctl(cfg, "--start"))
        print("start took", time.monotonic() - t1)
        site.conn = connect(settings, autocommit=True)
        n = len((site.work / "runs.txt").read_text().split())
        site.wait(lambda: len((site.work / "runs.txt").read_text().split()) > n)
        print("dispatch resumed after", time.monotonic() - t1)
        site.wait(lambda: set(states(site, jid).values()) == {"done"}, timeout=60)
        runs = (site.work / "runs.txt").read_text().split()
        print(len(runs), len(set(runs)))
        print(site.all("select count(*), count(*) filter (where current) cur from invocations where jid=%s", jid))
        print(audit(site.conn))
        print(blade.text()[-6000:])
    finally:
        site.close()
