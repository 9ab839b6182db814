"""Task operations in the database (migration 0004): retry, resume, skip, kill.

Blades are simulated with db/dispatch.py as in test_dispatch.py; after every
operation the job's counters must agree with its tasks and the ready queue
with the ready tasks.
"""

from __future__ import annotations

import pytest

from test_dispatch import Blade, C, check_counters, job_row, spool, task_states, tid_of
from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.jobs.model import Instance, Job, Task


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def settled(conn, jid) -> None:
    """What an operation left is what a job-wide reschedule computes from scratch."""
    snap = "SELECT tid, state, pending FROM tasks WHERE jid = %s ORDER BY tid"
    before = conn.execute(snap, (jid,)).fetchall()
    conn.execute("SELECT tractor_reschedule_v1(%s)", (jid,))
    assert conn.execute(snap, (jid,)).fetchall() == before
    check_counters(conn, jid)


def run_all(b: Blade, fail: dict | None = None) -> list[str]:
    """Claim and finish until nothing is ready; titles in the order they ran."""
    fail = fail or {}
    ran = []
    while True:
        got = b.claim()
        if not got:
            return ran
        for jid, tid in got:
            title = b.conn.execute("SELECT title FROM tasks WHERE jid = %s AND tid = %s", (jid, tid)).fetchone()["title"]
            ran.append(title)
            b.finish(jid, tid, fail.get(title, 0))


def test_retry_of_an_error_task_runs_it_and_its_dependents_again(conn):
    job = Job(subtasks=(
        Task("comp", cmds=(C("comp"),), subtasks=(Task("fg", cmds=(C("fg"),)), Task("bg", cmds=(C("bg"),)))),
        Task("user", cmds=(C("use"),), subtasks=(Instance("bg"),)),
        Task("other", cmds=(C("other"),)),
    ))
    jid = spool(conn, job)
    b = Blade(conn, slots=1)
    assert run_all(b, fail={"bg": 1}) == ["fg", "bg", "other"]
    assert task_states(conn, jid) == {"comp": "blocked", "fg": "done", "bg": "error", "user": "blocked",
                                      "other": "done"}
    assert job_row(conn, jid)["phase"] == "finished"  # stalled on its error: ended
    reset = d.retry(conn, jid, [tid_of(conn, jid, "bg")])
    assert sorted(reset) == sorted(tid_of(conn, jid, t) for t in ("bg", "comp", "user"))
    assert task_states(conn, jid) == {"comp": "blocked", "fg": "done", "bg": "ready", "user": "blocked",
                                      "other": "done"}
    settled(conn, jid)
    job = check_counters(conn, jid)
    assert job["phase"] == "live" and job["stoptime"] is None  # the ended job lives again
    assert run_all(b) == ["bg", "comp", "user"]
    assert check_counters(conn, jid)["phase"] == "finished"
    assert conn.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s AND tid = %s",
                        (jid, tid_of(conn, jid, "bg"))).fetchone()["n"] == 2


def test_retry_of_an_active_task_stops_it_and_counts_the_retry(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn)
    assert b.claim() == [(jid, 1)]
    held = [c.key for c in b.running.values()]
    d.retry(conn, jid, [1])
    # the blade is told to stop it, and its late report counts for nothing
    assert d.heartbeat(conn, b.id, held) == set()
    assert b.finish(jid, 1, 0) == "stale"
    row = conn.execute("SELECT state, retrycount, recover FROM tasks WHERE jid = %s", (jid,)).fetchone()
    assert row == {"state": "ready", "retrycount": 1, "recover": False}
    settled(conn, jid)
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["slotsinuse"] == 0
    assert b.claim() == [(jid, 1)] and b.running[(jid, 1)].iid == 2
    check_counters(conn, jid)


def test_resume_launches_with_recover(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn)
    b.claim()
    b.finish(jid, 1, 1)
    d.retry(conn, jid, [1], recover=True)
    b.claim()
    assert b.running[(jid, 1)].info["recover"] is True  # %r = 1 for this launch
    b.finish(jid, 1, 0)
    d.retry(conn, jid, [1])
    b.claim()
    assert b.running[(jid, 1)].info["recover"] is False


def test_retry_under_serial_subtasks_waits_again_for_the_earlier_sibling(conn):
    jid = spool(conn, Job(subtasks=(Task("s", serialsubtasks=True, subtasks=(
        Task("one", cmds=(C("1"),)), Task("two", subtasks=(Task("two-a", cmds=(C("2a"),)),)),
        Task("three", cmds=(C("3"),)))),)))
    b = Blade(conn, slots=1)
    b.claim()
    b.finish(jid, tid_of(conn, jid, "one"))
    assert task_states(conn, jid)["two-a"] == "ready"
    d.retry(conn, jid, [tid_of(conn, jid, "one")])
    # "one" runs again first: the gate over two's subtree is back
    assert task_states(conn, jid) == {"s": "blocked", "one": "ready", "two": "blocked", "two-a": "blocked",
                                      "three": "blocked"}
    settled(conn, jid)
    assert run_all(b) == ["one", "two-a", "three"]  # "s" has no commands: done with them
    assert job_row(conn, jid)["phase"] == "finished"


def test_retry_under_a_serial_job_waits_again_for_the_earlier_top_level_task(conn):
    # the serial gate of a top-level task: its previous sibling's whole subtree comes before it
    jid = spool(conn, Job(serialsubtasks=True, subtasks=(
        Task("one", cmds=(C("1"),)), Task("two", subtasks=(Task("two-a", subtasks=(Task("deep", cmds=(C("d"),)),)),)),
        Task("three", cmds=(C("3"),)))))
    b = Blade(conn, slots=1)
    b.claim()
    b.finish(jid, tid_of(conn, jid, "one"))
    assert task_states(conn, jid)["deep"] == "ready"
    d.retry(conn, jid, [tid_of(conn, jid, "one")])
    assert task_states(conn, jid) == {"one": "ready", "two": "blocked", "two-a": "blocked", "deep": "blocked",
                                      "three": "blocked"}
    settled(conn, jid)
    assert run_all(b) == ["one", "deep", "three"]
    assert job_row(conn, jid)["phase"] == "finished"


def test_retry_of_a_serial_predecessor_stops_its_running_successor(conn):
    """A serial successor runs only after its predecessor is done: retrying the predecessor while
    the successor runs stops the successor (its process group is killed within a heartbeat) and
    it waits again; both then run in order, and the audit finds nothing."""
    jid = spool(conn, Job(serialsubtasks=True, subtasks=(
        Task("one", cmds=(C("1"),)), Task("two", cmds=(C("2"),)), Task("three", cmds=(C("3"),)))))
    b = Blade(conn, slots=1)
    b.claim()
    b.finish(jid, tid_of(conn, jid, "one"))
    assert b.claim() == [(jid, tid_of(conn, jid, "two"))]
    two = b.running.pop((jid, tid_of(conn, jid, "two")))
    d.retry(conn, jid, [tid_of(conn, jid, "one")])
    assert task_states(conn, jid) == {"one": "ready", "two": "blocked", "three": "blocked"}
    inv = conn.execute("SELECT current, stoptime IS NOT NULL AS stopped FROM invocations "
                       "WHERE jid = %s AND cid = %s AND iid = %s", (jid, two.cid, two.iid)).fetchone()
    assert inv == {"current": False, "stopped": True}
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["slotsinuse"] == 0
    assert d.finish(conn, two, b.id, 0) == "stale"  # its late report changes nothing
    settled(conn, jid)
    assert conn.execute("SELECT count(*) AS n FROM tractor_audit_v1(false)").fetchone()["n"] == 0
    assert run_all(b) == ["one", "two", "three"]
    assert job_row(conn, jid)["phase"] == "finished"


def test_skip_lets_dependents_go_on_and_kill_leaves_an_error(conn):
    jid = spool(conn, Job(subtasks=(Task("parent", cmds=(C("p"),), subtasks=(
        Task("slow", cmds=(C("s"),)), Task("broken", cmds=(C("b"),)))),)))
    b = Blade(conn, slots=2)
    b.claim()
    held = [c.key for c in b.running.values()]
    assert d.kill(conn, jid, [tid_of(conn, jid, "slow")]) == [tid_of(conn, jid, "slow")]
    assert task_states(conn, jid)["slow"] == "error"
    assert d.heartbeat(conn, b.id, held) == {(jid, tid_of(conn, jid, "broken"), 1)}
    b.finish(jid, tid_of(conn, jid, "broken"), 3)
    check_counters(conn, jid)
    assert sorted(d.skip(conn, jid, [tid_of(conn, jid, "slow"), tid_of(conn, jid, "broken")])) == [2, 3]
    assert task_states(conn, jid) == {"parent": "ready", "slow": "done", "broken": "done"}
    skipped = conn.execute("SELECT state FROM commands WHERE jid = %s AND tid IN (2, 3)", (jid,)).fetchall()
    assert {r["state"] for r in skipped} == {"skipped"}
    check_counters(conn, jid)
    assert run_all(b) == ["parent"]
    assert job_row(conn, jid)["phase"] == "finished"


def test_operations_on_nothing_change_nothing(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    assert d.retry(conn, jid, [99]) == []
    assert d.skip(conn, jid, []) == []
    assert d.kill(conn, jid, [1]) == []  # not active
    assert task_states(conn, jid) == {"a": "ready"}
    check_counters(conn, jid)


def test_retry_of_a_done_task_with_an_empty_parent_and_instances(conn):
    # "group" has no commands: done as soon as "a" is; retrying "a" puts it back to waiting
    jid = spool(conn, Job(subtasks=(
        Task("group", subtasks=(Task("a", cmds=(C("a"),)),)),
        Task("user", subtasks=(Instance("group"),), cmds=(C("u"),)),
        Task("serial", serialsubtasks=True, subtasks=(Task("s1", cmds=(C("1"),)), Task("s2", cmds=(C("2"),)))))))
    b = Blade(conn, slots=1)
    assert run_all(b) == ["a", "user", "s1", "s2"]
    d.retry(conn, jid, [tid_of(conn, jid, "a")])
    settled(conn, jid)
    assert task_states(conn, jid) == {"group": "blocked", "a": "ready", "user": "blocked", "serial": "done",
                                      "s1": "done", "s2": "done"}
    d.retry(conn, jid, [tid_of(conn, jid, "s1")])  # s2 is done: it stays done
    settled(conn, jid)
    assert task_states(conn, jid)["s1"] == "ready" and task_states(conn, jid)["serial"] == "blocked"
    assert run_all(b) == ["a", "user", "s1"]
    settled(conn, jid)
    assert job_row(conn, jid)["phase"] == "finished"
