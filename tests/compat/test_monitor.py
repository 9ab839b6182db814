"""scripts/monitor.py: a monitoring script reading blades and invocations through tractor.api.query.

A real tractor-blade (profile "lnx-render" from the site's blade.toml, two
slots) runs a job of two short commands (one exits 3) and then a long
command of another job, and is still running it (so it is registered, up,
and has one slot in use) when the script runs; it is stopped at the end.

The script reads `tq.blades("up", columns=["slotsinuse"])` (name, numslots,
BladeUse.slotsinuse) and `tq.invocations(..., columns=["Blade.profile",
"Job.title"], sortby=[["starttime", 1]])`, parsing starttime and stoptime
with `datetime.strptime(value.split('.')[0], '%Y-%m-%d %H:%M:%S')`, under a
time zone that is not UTC (TZ=Asia/Kolkata, +05:30).  Checked: every value
printed equals the database's, timestamps in that local time to the second.
"""

from __future__ import annotations

import json
import signal
from zoneinfo import ZoneInfo

import pytest
from test_blade import sh

from tractorcli.jobs.model import Task

from .support import TqSite, run_script

BLADE_TOML = """
[[profile]]
name = "lnx-render"
hosts = ["*"]
provides = ["PixarRender", "Linux64"]
slots = 2
"""

TZ = "Asia/Kolkata"


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings, BLADE_TOML)
    yield s
    s.close()


def local(ts) -> str:
    return ts.astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M:%S")


def test_monitor_reads_blades_and_invocations(site):
    jid = site.spool(Task("ok", cmds=(sh("sleep 0.3; echo rendered"),)), Task("broken", cmds=(sh("exit 3"),)),
                     title="sh020 comp", job={"priority": 100.0})
    long = site.spool(Task("sim", cmds=(sh("sleep 60 & wait"),)), title="long sim", job={"priority": 1.0})
    blade = site.blade("--name", "rack1-n01", "--on-stop", "handback")
    site.wait(lambda: site.one("SELECT count(*) AS n FROM invocations WHERE jid = %s AND stoptime IS NOT NULL",
                               jid)["n"] == 2, msg="the job's two commands to finish")
    site.wait(lambda: site.one("SELECT slotsinuse FROM blades WHERE name = 'rack1-n01'")["slotsinuse"] == 1
              and site.states(long) == ["active"], msg="the long command to run")

    r = run_script(site, "monitor.py", str(jid), user="ann", TZ=TZ)
    got = json.loads(r.stdout)

    (b,) = site.all("SELECT * FROM blades")
    assert b["profile"] == "lnx-render" and b["slotsinuse"] == 1 and b["numslots"] == 2
    assert got["blades"] == [{"name": "rack1-n01", "profile": "lnx-render", "numslots": 2, "slotsinuse": 1,
                              "heartbeat": got["blades"][0]["heartbeat"]}]
    # (the blade heartbeats while the script runs: the time printed is one it had)
    hb = site.one("SELECT heartbeattime FROM blades")["heartbeattime"]
    assert got["blades"][0]["heartbeat"] <= local(hb)

    rows = site.all("SELECT i.*, t.title FROM invocations i JOIN tasks t USING (jid, tid) WHERE i.jid = %s "
                    "ORDER BY i.starttime", jid)
    assert len(rows) == 2
    want = [{
        "jid": jid, "tid": i["tid"], "cid": i["cid"], "job": "sh020 comp", "profile": "lnx-render",
        "rcode": i["rcode"], "start": local(i["starttime"]), "stop": local(i["stoptime"]),
        "elapsed": round(i["elapsedreal"], 3), "elapsed_text": format(i["elapsedreal"], ".1f"),
        "wall": got["invocations"][n]["wall"],
    } for n, i in enumerate(rows)]
    assert got["invocations"] == want
    assert {i["tid"]: i["rcode"] for i in got["invocations"]} == {1: 0, 2: 3}
    assert [i["start"] for i in got["invocations"]] == sorted(i["start"] for i in got["invocations"])
    ok = next(i for i in got["invocations"] if i["tid"] == 1)
    assert ok["elapsed"] >= 0.3 and 0 <= ok["wall"] <= 60

    # stop the blade (it hands the long command back); nothing is left running
    blade.proc.send_signal(signal.SIGTERM)
    assert blade.wait() == 0, blade.text()
    assert site.states(long) == ["ready"]
