"""The job database goes away under running blades (its server stopped, as by an engine stop or a
reboot) and comes back: blades wait without spinning, reconnect by themselves, and no command is
lost or run twice, even when the outage outlasts BladeLeaseSecs."""

from __future__ import annotations

import time

import pytest
from test_blade import Site, sh, states
from test_dbctl_lifecycle import ok

from conftest import dbctl
from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def own_server(tmp_site):
    """A site with a server of its own (the shared one must not be stopped) and a blade Site on it."""
    cfg, settings = tmp_site()
    ok(dbctl(cfg, "--start-for-engine"))
    sites: list[Site] = []

    def make() -> tuple:
        site = Site(settings)
        sites.append(site)
        return cfg, settings, site

    yield make
    for site in sites:
        site.close()


def restart_connection(site: Site, settings) -> None:
    site.conn = connect(settings, autocommit=True)


def test_a_blade_waits_for_a_stopped_server_without_spinning_and_resumes(own_server):
    cfg, settings, site = own_server()
    blade = site.blade("--name", "patient")
    jid = site.spool(Task("before", cmds=(sh("echo before >> runs.txt"),)))
    site.wait(lambda: states(site, jid) == {"before": "done"}, msg="the first job")
    site.conn.close()
    ok(dbctl(cfg, "--stop"))
    time.sleep(1.0)  # the blade notices
    used = cpu_seconds(blade.proc.pid)
    time.sleep(5.0)
    used = cpu_seconds(blade.proc.pid) - used
    assert used < 0.5, f"the blade used {used:.2f} CPU-seconds in 5 s without a database"
    assert blade.proc.poll() is None, blade.text()
    ok(dbctl(cfg, "--start"))
    started = time.monotonic()
    restart_connection(site, settings)
    jid = site.spool(Task("after", cmds=(sh("echo after >> runs.txt"),)))
    site.wait(lambda: states(site, jid) == {"after": "done"}, timeout=10, step=0.1,
              msg="dispatch within 10 s of the server's start")
    assert time.monotonic() - started < 10
    assert (site.work / "runs.txt").read_text().split() == ["before", "after"]
    assert "lost the database connection" in blade.text() and "database connection restored" in blade.text()
    assert audit(site.conn) == []


def test_an_outage_longer_than_the_lease_runs_nothing_twice(own_server):
    """Two commands finish while the server is down for twice BladeLeaseSecs; the engine's
    housekeeping runs as soon as it is back.  Each ran once, and its result is the one kept."""
    cfg, settings, site = own_server()
    d.set_params(site.conn, {"BladeLeaseSecs": 2})
    jid = site.spool(*(Task(t, cmds=(sh(f"echo {t} >> started.txt; sleep 1.5; echo {t} >> runs.txt"),))
                       for t in ("a", "b")))
    blade = site.blade("--name", "cut-off")
    site.wait(lambda: (site.work / "started.txt").exists()
              and len((site.work / "started.txt").read_text().split()) == 2, msg="both commands to start")
    site.conn.close()
    ok(dbctl(cfg, "--stop"))
    time.sleep(4.0)  # the commands end meanwhile; their leases run out twice over
    ok(dbctl(cfg, "--start"))
    restart_connection(site, settings)
    deadline = time.monotonic() + 20
    while states(site, jid) != {"a": "done", "b": "done"} and time.monotonic() < deadline:
        d.housekeep(site.conn)  # as the engine does, from the moment the server is back
        time.sleep(0.2)
    assert states(site, jid) == {"a": "done", "b": "done"}, blade.text()
    time.sleep(1.0)  # anything run again would have started by now
    assert sorted((site.work / "runs.txt").read_text().split()) == ["a", "b"]
    assert sorted((site.work / "started.txt").read_text().split()) == ["a", "b"]
    runs = site.all("SELECT cid, iid, current, rcode FROM invocations WHERE jid = %s ORDER BY cid", jid)
    assert [tuple(r.values()) for r in runs] == [(1, 1, True, 0), (2, 1, True, 0)]
    assert audit(site.conn) == []
