"""The server killed with SIGKILL while blades claim and finish and a person operates on the jobs,
then started again: blades reconnect by themselves, no task stays stuck, each command ends with
exactly one result, and the audit is clean."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from test_blade import sh, states
from test_dbctl_lifecycle import ok

from conftest import dbctl
from test_outages import own_server, restart_connection  # noqa: F401 - own_server: the fixture
from test_server_faults import postmaster_pid
from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults


def test_a_server_killed_under_dispatch_and_operations_loses_nothing(own_server):  # noqa: F811
    cfg, settings, site = own_server()
    d.set_params(site.conn, {"BladeLeaseSecs": 3})
    jid = site.spool(*(Task(f"t{i}", cmds=(sh(f"sleep 0.0{i % 10}; echo t{i} >> runs.txt"),)) for i in range(60)))
    blades = [site.blade("--name", f"k{i}", "--slots", "2") for i in range(2)]
    stop = threading.Event()
    operated = []

    def operator() -> None:  # retries done tasks while the server dies under it
        while not stop.is_set():
            try:
                with connect(settings, autocommit=True) as conn:
                    while not stop.is_set():
                        done = [r["tid"] for r in conn.execute(
                            "SELECT tid FROM tasks WHERE jid = %s AND state = 'done' LIMIT 2", (jid,))]
                        operated.extend(d.retry(conn, jid, done))
                        time.sleep(0.05)
            except Exception:  # noqa: BLE001 - the server is killed under it: expected
                time.sleep(0.2)

    op = threading.Thread(target=operator)
    op.start()
    site.wait(lambda: (site.work / "runs.txt").exists() and len((site.work / "runs.txt").read_text().split()) >= 10,
              msg="dispatch under way")
    os.kill(postmaster_pid(settings), signal.SIGKILL)
    site.conn.close()
    time.sleep(1.0)
    stop.set()
    op.join(30)
    ok(dbctl(cfg, "--start"))
    restart_connection(site, settings)
    deadline = time.monotonic() + 60
    while set(states(site, jid).values()) != {"done"} and time.monotonic() < deadline:
        d.housekeep(site.conn)  # as the engine does
        time.sleep(0.2)
    assert set(states(site, jid).values()) == {"done"}, "\n".join(b.text() for b in blades)
    site.wait(lambda: site.one("SELECT count(*) AS n FROM invocations WHERE current AND stoptime IS NULL")["n"] == 0,
              msg="nothing left running")
    runs = site.all("SELECT cid, count(*) FILTER (WHERE current) AS current, "
                    "count(*) FILTER (WHERE current AND rcode = 0) AS ok FROM invocations WHERE jid = %s GROUP BY cid",
                    jid)
    assert len(runs) == 60 and all((r["current"], r["ok"]) == (1, 1) for r in runs), runs
    assert len(operated) > 0
    assert audit(site.conn) == []
    for b in blades:
        assert b.proc.poll() is None and "database connection restored" in b.text(), b.text()
