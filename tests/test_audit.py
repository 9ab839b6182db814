"""The invariant audit (tractor-dbctl --check, tq audit): a clean database passes; each kind of
damage is found with its ids, and --repair sets right what can be derived."""

from __future__ import annotations

import json

import pytest
from test_dispatch import Blade, C
from test_tq import TqSite

from conftest import dbctl
from tractorcli.db.audit import INVARIANTS, audit
from tractorcli.errors import ExitStatus
from tractorcli.jobs.model import Task


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def two_jobs(site: TqSite) -> tuple[int, int, Blade]:
    """A job half run (one task done, one running, one ready) and a fresh one."""
    a = site.spool(*(Task(f"t{i}", cmds=(C("echo", str(i)),)) for i in range(1, 4)))
    b = site.spool(Task("x", cmds=(C("echo", "x"),)))
    blade = Blade(site.conn, "auditee", slots=1)
    blade.claim()
    blade.finish(a, 1)
    blade.claim()
    return a, b, blade


def test_a_database_in_use_keeps_every_invariant(site):
    two_jobs(site)
    assert audit(site.conn) == []
    r = site.tq("audit")
    assert r.stdout.strip() == "the job database keeps every invariant"
    assert dbctl(site.cfg, "--check").returncode == 0


def test_a_deleted_job_keeps_its_queued_commands_for_undelete(site):
    from tractorcli.db import ops

    a, b, _ = two_jobs(site)
    ops.delete(site.conn, b)
    ops.pause(site.conn, a)
    assert audit(site.conn) == [] and audit(site.conn, repair=True) == []  # (the soak bench found 990)
    ops.undelete(site.conn, b)
    assert Blade(site.conn, "second", slots=1).claim() == [(b, 1)]  # (job a is paused)
    assert audit(site.conn) == []


def test_damage_is_found_and_what_can_be_derived_is_repaired(site):
    a, b, blade = two_jobs(site)
    site.conn.execute("UPDATE jobs SET numdone = 7, numready = 0 WHERE jid = %s", (a,))  # counters
    site.conn.execute("DELETE FROM ready WHERE jid = %s", (b,))  # a ready command not queued
    site.conn.execute("UPDATE blades SET slotsinuse = 3 WHERE bladeid = %s", (blade.id,))
    site.conn.execute("UPDATE commands SET state = 'active' WHERE jid = %s AND cid = 3", (a,))  # no invocation
    site.conn.execute("DELETE FROM ready WHERE jid = %s AND cid = 3", (a,))

    found = audit(site.conn)
    assert {r["invariant"] for r in found} <= set(INVARIANTS)
    assert [(r["invariant"], r["ids"]) for r in found] == [
        ("job counters", f"job {a}"),
        ("active commands", f"job {a} command 3"),
        ("ready queue", f"job {b} command 1"),
        ("blade slots", "blade auditee"),
    ]
    assert "tasks/blocked/ready/active/error/done 3/0/0/1/0/7, but its tasks are 3/0/1/1/0/1" in found[0]["detail"]

    r = site.tq("audit", status=ExitStatus.INVARIANT)
    assert r.stdout.splitlines()[2] == f"ready queue: job {b} command 1: ready, but not queued"
    r = site.tq("--json", "audit", status=ExitStatus.INVARIANT)
    assert len(json.loads(r.stdout)) == 4
    check = dbctl(site.cfg, "--check")
    assert check.returncode == ExitStatus.INVARIANT and "blade slots: blade auditee: 3 slot(s) in use" in check.stdout

    repaired = dbctl(site.cfg, "--check", "--repair")
    assert repaired.returncode == ExitStatus.INVARIANT  # the active command is only reported
    assert "(repaired)" in repaired.stdout and "3 repaired" in repaired.stderr
    left = audit(site.conn)
    assert [(r["invariant"], r["ids"]) for r in left] == [("active commands", f"job {a} command 3")]
    assert site.one("SELECT count(*) AS n FROM ready WHERE jid = %s", b)["n"] == 1
    assert site.one("SELECT slotsinuse FROM blades WHERE bladeid = %s", blade.id)["slotsinuse"] == 1
    job = site.jobrow(a)
    assert (job["numdone"], job["numready"], job["numactive"]) == (1, 1, 1)


def test_a_task_running_before_its_subtask_is_found(site):
    jid = site.spool(Task("parent", cmds=(C("echo", "p"),), subtasks=(Task("child", cmds=(C("echo", "c"),)),)))
    site.conn.execute("UPDATE tasks SET state = 'ready', pending = 0 WHERE jid = %s AND title = 'parent'", (jid,))
    found = audit(site.conn)
    assert ("task order", f"job {jid} task 1") in [(r["invariant"], r["ids"]) for r in found]
    assert any(r["detail"] == "ready while its subtask 2 is not done" for r in found)


def test_a_value_outside_its_set_is_found(site):
    # the hot tables keep no CHECK constraints (migration 20): the audit looks at their values
    a, b, _ = two_jobs(site)
    site.conn.execute("UPDATE tasks SET state = 'dancing', progress = 120 WHERE jid = %s AND tid = 3", (a,))
    site.conn.execute("UPDATE commands SET runtype = 'sometimes' WHERE jid = %s AND cid = 1", (b,))
    site.conn.execute("UPDATE jobs SET phase = 'over' WHERE jid = %s", (b,))
    found = [(r["invariant"], r["ids"], r["detail"]) for r in audit(site.conn) if r["invariant"] == "row values"]
    assert found == [
        ("row values", f"job {a} task 3", "progress 120"),
        ("row values", f"job {a} task 3", "state 'dancing'"),
        ("row values", f"job {b}", "phase 'over'"),
        ("row values", f"job {b} command 1", "runtype 'sometimes'"),
    ]
