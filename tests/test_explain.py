"""tq explain / tq why and db.explain: why a task is not running, against a real job database."""

from __future__ import annotations

import json

import pytest
from test_dispatch import Blade
from test_tq import C, TqSite

from tractorcli.db import dispatch, ops
from tractorcli.db.explain import explain_task
from tractorcli.jobs.model import Instance, Task


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def kinds(site, jid, tid) -> list[str]:
    return [r.kind for r in explain_task(site.conn, jid, tid).reasons]


def why(site, jid, tid) -> dict:
    return {r.kind: r for r in explain_task(site.conn, jid, tid).reasons}


def tid(site, jid, title) -> int:
    return site.one("SELECT tid FROM tasks WHERE jid = %s AND title = %s", jid, title)["tid"]


def test_blocked_ready_busy_error_done(site):
    jid = site.spool(Task("parent", subtasks=(Task("a", cmds=(C("echo", "a", service="PixarRender"),)),
                                              Task("b", cmds=(C("echo", "b", service="PixarRender"),))),
                          cmds=(C("echo", "p", service="PixarRender"),)))
    p, a, b = tid(site, jid, "parent"), tid(site, jid, "a"), tid(site, jid, "b")
    w = why(site, jid, p)
    assert list(w) == ["subtasks"]
    assert "'a' (ready)" in w["subtasks"].text and "'b' (ready)" in w["subtasks"].text
    assert [t["tid"] for t in w["subtasks"].detail["tasks"]] == [a, b]
    assert kinds(site, jid, a) == ["noblades"]

    # a blade without the key: which keys are missing
    Blade(site.conn, name="lx1", provides=("linux",), slots=1)
    w = why(site, jid, a)["nomatch"]
    assert "lx1 (missing pixarrender)" in w.text
    assert w.detail["blades"][0]["missing"] == ["pixarrender"]

    # a matching blade with one slot: it takes one task, the other waits for a busy blade
    r1 = Blade(site.conn, name="r1", provides=("PixarRender",), slots=1)
    got = r1.claim()
    assert len(got) == 1
    other = b if got[0][1] == a else a
    assert kinds(site, jid, other) == ["busy"]
    assert "r1 (1/1 slots)" in why(site, jid, other)["busy"].text
    assert kinds(site, jid, got[0][1]) == ["active"]

    # NIMBY on the only matching blade with free slots
    r1.finish(*got[0], rcode=3)
    assert "exited with 3 on r1" in why(site, jid, got[0][1])["error"].text
    assert why(site, jid, got[0][1])["error"].detail["rcode"] == 3
    site.conn.execute("UPDATE blades SET nimby = 'zed' WHERE name = 'r1'")
    assert "only zed" in why(site, jid, other)["nimby"].text
    site.conn.execute("UPDATE blades SET nimby = '' WHERE name = 'r1'")
    assert kinds(site, jid, other) == ["waiting"]

    # the job: paused, delayed, maxactive, after other jobs
    ops.pause(site.conn, jid)
    assert "paused" in kinds(site, jid, other)
    assert "waiting" not in kinds(site, jid, other)
    ops.unpause(site.conn, jid)
    site.conn.execute("UPDATE jobs SET aftertime = now() + interval '1 day', maxactive = 1, numactive = 1 "
                      "WHERE jid = %s", (jid,))
    w = why(site, jid, other)
    assert "delayed until" in w["delayed"].text and "maxactive" in w
    site.conn.execute("UPDATE jobs SET aftertime = NULL, maxactive = 0, numactive = 0 WHERE jid = %s", (jid,))
    first = site.job(1, title="first")
    site.conn.execute("UPDATE jobs SET afterjids = %s WHERE jid = %s", ([first], jid))
    assert why(site, jid, other)["afterjids"].detail["afterjids"] == [first]
    site.conn.execute("UPDATE jobs SET afterjids = '{}' WHERE jid = %s", (jid,))

    dispatch.skip(site.conn, jid, [other])
    assert kinds(site, jid, other) == ["done"]
    assert explain_task(site.conn, jid, 999) is None


def test_serial_and_instance(site):
    jid = site.spool(Task("one", cmds=(C("echo", "1"),)), Task("two", cmds=(C("echo", "2"),)),
                     Task("three", subtasks=(Instance("one"),), cmds=(C("echo", "3"),)),
                     job={"serialsubtasks": True})
    two, three = tid(site, jid, "two"), tid(site, jid, "three")
    w = why(site, jid, two)
    assert "'one' (ready)" in w["serial"].text
    w = why(site, jid, three)
    assert "'two' (blocked)" in w["serial"].text
    assert "'one' (ready)" in w["instances"].text


def test_tq_explain_and_why(site):
    jid = site.spool(Task("parent", subtasks=(Task("a", cmds=(C("echo", "a", service="PixarRender"),)),),
                          cmds=(C("echo", "p", service="PixarRender"),)))
    p, a = tid(site, jid, "parent"), tid(site, jid, "a")
    out = site.tq("explain", str(jid), str(p)).stdout.splitlines()
    assert out[0] == f"{jid} {p} 'parent': blocked"
    assert out[1].startswith("  waits for 1 subtask(s):")
    rows = json.loads(site.tq("why", "--json", f"jid={jid}").stdout)
    assert [(r["tid"], r["state"]) for r in rows] == [(p, "blocked"), (a, "ready")]
    assert rows[1]["reasons"][0]["kind"] == "noblades"
    r = site.tq("explain", "jid=424242")
    assert r.stdout == "" and "no tasks found" in r.stderr
    assert site.tq("explain", status=2).stdout.startswith("Usage")


def test_an_atleast_command_waits_for_slots_gathered_across_blades(site):
    spread = site.spool(Task("spread", cmds=(C("r", service="PixarRender", atleast=3),)))
    one = site.spool(Task("one host", cmds=(C("r", service="PixarRender", atleast=3, samehost=True),)))
    for name in ("r1", "r2"):
        Blade(site.conn, name=name, provides=("PixarRender",), slots=2)
    w = why(site, spread, 1)["waiting"]
    assert "with slots the other matching blades lend: 4 free, 3 needed" in w.text
    # -samehost: no blade has 3 slots
    assert "every blade matching" in why(site, one, 1)["busy"].text
    site.conn.execute("UPDATE blades SET slotsinuse = 1")
    b = why(site, spread, 1)["busy"]
    assert "it needs 3 slots gathered across the blades matching" in b.text and "and 2 are free" in b.text
    assert b.detail["free"] == 2 and b.detail["samehost"] is False
