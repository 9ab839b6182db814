"""Limits, tiers and scheduling modes end to end: real tractor-blade processes running real
commands, the installed tq loading limits.toml and showing the limits, tractor-engine writing the
scheduling mode and the tiers of tractor.toml."""

from __future__ import annotations

import json
import time

import pytest
from test_blade import sh
from test_tq import TqSite
from test_tq_admin import EngineOnSite, params

from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Job, Task, resolve


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def gate(i: int) -> str:
    """A command that says it started, then waits for its gate file."""
    return f"touch started.{i}; while [ ! -e gate.{i} ]; do sleep 0.05; done"


def started(site) -> set[int]:
    return {int(p.suffix[1:]) for p in site.work.glob("started.*")}


def running(site, jid: int) -> list[dict]:
    return site.all("SELECT tid, bladename FROM invocations WHERE jid = %s AND current AND stoptime IS NULL "
                    "ORDER BY tid", jid)


def test_a_limit_of_two_holds_the_third_command_ready_until_one_ends(site):
    (site.cfg / "limits.toml").write_text('[limits.lic]\nSiteMax = 2\nDescription = "two seats"\n')
    assert site.tq("reloadconfig", "--limits").stdout.strip() == \
        f"limits: loaded: {site.cfg / 'limits.toml'}: 1 limit(s)"
    jid = site.spool(*(Task(f"t{i}", cmds=(sh(gate(i)),)) for i in (1, 2, 3)), job={"tags": ("lic",)})
    site.blade("--slots", "4", "--name", "rack1")
    site.wait(lambda: len(started(site)) == 2, msg="two commands to start")
    time.sleep(1.0)  # many claims later, still two
    assert started(site) == {1, 2}
    assert site.task(jid, 3)["state"] == "ready"
    out = site.tq("limits").stdout.splitlines()
    assert out[0] == "lic: 2 of 2 in use  (two seats)"
    assert out[1] == "  held by owners: ann 2; blades: rack1 2; projects: default 2"
    assert json.loads(site.tq("--json", "limits", "lic").stdout)[0]["inuse"] == 2
    why = site.tq("explain", f"jid={jid} and tid=3").stdout
    assert "limit lic is full: 2 of 2 on the site (SiteMax); held by ann 2" in why
    trace = site.tq("trace", "rack1").stdout
    assert f"jid {jid} tid 3 cid 3 skipped: matches (no service requirement), but limit lic is full" in trace
    (site.work / "gate.1").touch()
    site.wait(lambda: 3 in started(site), msg="the third command to start once the first ended")
    for i in (2, 3):
        (site.work / f"gate.{i}").touch()
    site.wait(lambda: site.one("SELECT numdone FROM jobs WHERE jid = %s", jid)["numdone"] == 3)
    assert site.tq("limits", "nosuch", status=7).stderr.strip() == "no limit named nosuch"


def test_a_per_host_limit(site):
    (site.cfg / "limits.toml").write_text("[limits.sh]\nBladeMax = 1\n")  # the program's name is a tag
    site.tq("reloadconfig", "--limits")
    jid = site.spool(*(Task(f"t{i}", cmds=(sh(gate(i)),)) for i in range(4)))
    site.blade("--slots", "3", "--name", "hostA")
    site.blade("--slots", "3", "--name", "hostB")
    site.wait(lambda: len(started(site)) == 2, msg="one command on each host")
    time.sleep(0.8)
    rows = running(site, jid)
    assert sorted(r["bladename"] for r in rows) == ["hostA", "hostB"]
    for i in range(4):
        (site.work / f"gate.{i}").touch()
    site.wait(lambda: site.one("SELECT numdone FROM jobs WHERE jid = %s", jid)["numdone"] == 4)


def test_round_robin_does_not_starve_a_small_job_behind_a_big_one(site):
    with open(site.cfg / "tractor.toml", "a") as f:
        f.write('SchedulingMode = "P+RR"\n')
    eng = EngineOnSite(site)
    try:
        eng.wait_for("tractor-engine running")
        assert params(site)["SchedulingMode"] == "P+RR"
        big = spool_job(site.conn, resolve(Job(title="big", subtasks=tuple(
            Task(f"f{i}", cmds=(sh("sleep 0.02"),)) for i in range(10_000)))), owner="ann", spoolhost="ws",
            spoolcwd=str(site.work))
        small = site.spool(*(Task(f"s{i}", cmds=(sh("true"),)) for i in range(3)), title="small")
        site.blade("--slots", "2")
        site.wait(lambda: site.one("SELECT numdone FROM jobs WHERE jid = %s", small)["numdone"] == 3,
                  timeout=30, msg="the small job to finish")
        assert site.one("SELECT numdone FROM jobs WHERE jid = %s", big)["numdone"] < 100
    finally:
        eng.stop()


def test_the_engine_writes_the_tiers_and_tq_moves_a_job_between_them(site):
    with open(site.cfg / "tractor.toml", "a") as f:
        f.write("[tiers]\nadmin = 111\nrush = 99\ndefault = 50\nnight = 1\n")
    eng = EngineOnSite(site)
    try:
        eng.wait_for("tractor-engine running")
        site.wait(lambda: site.one("SELECT count(*) AS n FROM tiers WHERE name = 'night'")["n"] == 1)
        assert site.one("SELECT count(*) AS n FROM tiers WHERE name = 'batch'")["n"] == 0
    finally:
        eng.stop()
    night = site.spool(Task("n", cmds=(sh("true"),)), title="night", tier="night")
    day = site.spool(Task("d", cmds=(sh("true"),)), title="day")
    assert site.one("SELECT tierpri FROM jobs WHERE jid = %s", night)["tierpri"] == 1
    site.tq("--yes", "jattr", "-k", "tier", "-v", "rush", str(night))
    assert site.one("SELECT tier, tierpri FROM jobs WHERE jid = %s", night) == {"tier": "rush", "tierpri": 99}
    assert [r["jid"] for r in site.all("SELECT jid FROM ready ORDER BY tierpri DESC, jid")] == [night, day]
    r = site.tq("--yes", "jattr", "-k", "tier", "-v", "gold", str(day), status=None)
    assert r.returncode != 0 and "unknown tier gold: the site's tiers are admin, rush, default, night" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
