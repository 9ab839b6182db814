"""The dispatch state machine (migration 0003) against a real database.

Blades are simulated by calls to db/dispatch.py (the real blade program is
tested end to end in test_blade.py); every transition is checked in the
task, command, invocation and job rows.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Command, Instance, Job, Task, resolve
from tractorcli.service import BladeFacts


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def C(*argv, **kw) -> Command:
    return Command(tuple(argv), **kw)


def spool(conn, job: Job, **opts) -> int:
    return spool_job(conn, resolve(job), owner="ann", spoolhost="ws1", **opts)


class Blade:
    """A simulated blade: claims, and finishes what it is told to."""

    def __init__(self, conn, name="b1", provides=("PixarRender", "linux"), slots=4):
        self.conn = conn
        self.facts = BladeFacts(provides=frozenset(provides), hostname=name, profile="default")
        self.id = d.register(conn, d.BladeInfo(name=name, provides=tuple(provides), numslots=slots))
        self.svc = d.ServiceCache()
        self.slots = slots
        self.running: dict[tuple[int, int], d.Claim] = {}

    def claim(self, slots=None) -> list[tuple[int, int]]:
        got = d.claim(self.conn, self.id, self.svc.matching(self.conn, self.facts, refresh=True), self.facts.hostname,
                      self.slots - len(self.running) if slots is None else slots)
        for c in got:
            self.running[(c.jid, c.tid)] = c
        return sorted((c.jid, c.tid) for c in got)

    def finish(self, jid, tid, rcode=0) -> str:
        c = self.running.pop((jid, tid))
        return d.finish(self.conn, c, self.id, rcode, real=0.1)


def task_states(conn, jid) -> dict[str, str]:
    return {r["title"]: r["state"] for r in conn.execute(
        "SELECT title, state FROM tasks WHERE jid = %s ORDER BY tid", (jid,))}


def job_row(conn, jid) -> dict:
    return conn.execute("SELECT * FROM jobs WHERE jid = %s", (jid,)).fetchone()


def check_counters(conn, jid) -> dict:
    """The job's counters agree with its tasks' states."""
    job = job_row(conn, jid)
    counts = {r["state"]: r["n"] for r in conn.execute(
        "SELECT state, count(*) AS n FROM tasks WHERE jid = %s GROUP BY state", (jid,))}
    for state in ("blocked", "ready", "active", "error", "done"):
        assert job[f"num{state}"] == counts.get(state, 0), (state, job, counts)
    ready_rows = conn.execute("SELECT count(*) AS n FROM ready WHERE jid = %s AND tid > 0", (jid,)).fetchone()["n"]
    assert ready_rows == counts.get("ready", 0)
    assert audit(conn) == []  # and every other invariant of the database
    return job


def tid_of(conn, jid, title) -> int:
    return conn.execute("SELECT tid FROM tasks WHERE jid = %s AND title = %s", (jid, title)).fetchone()["tid"]


# --- order ------------------------------------------------------------------------------


def test_subtasks_run_before_their_parent_and_the_job_finishes(conn):
    job = Job(title="tree", subtasks=(
        Task("comp", cmds=(C("comp"),), subtasks=(
            Task("fg", cmds=(C("render", "fg"),)),
            Task("bg", cmds=(C("render", "bg"),)),
        )),))
    jid = spool(conn, job)
    b = Blade(conn)
    assert b.claim() == [(jid, 2), (jid, 3)]  # fg, bg; not comp
    assert task_states(conn, jid) == {"comp": "blocked", "fg": "active", "bg": "active"}
    check_counters(conn, jid)
    assert b.finish(jid, 2) == "done"
    assert b.claim() == []
    assert b.finish(jid, 3) == "done"
    assert task_states(conn, jid)["comp"] == "ready"
    check_counters(conn, jid)
    assert b.claim() == [(jid, 1)]
    assert b.finish(jid, 1) == "done"
    job = check_counters(conn, jid)
    assert job["phase"] == "finished" and job["stoptime"] is not None and job["numdone"] == 3
    inv = conn.execute("SELECT * FROM invocations WHERE jid = %s ORDER BY cid", (jid,)).fetchall()
    assert [(i["cid"], i["iid"], i["rcode"], i["current"]) for i in inv] == [(1, 1, 0, True), (2, 1, 0, True),
                                                                         (3, 1, 0, True)]


def test_a_task_runs_its_commands_one_after_another(conn):
    jid = spool(conn, Job(subtasks=(Task("t", cmds=(C("a"), C("b"), C("c"))),)))
    b = Blade(conn)
    seen = []
    while True:
        got = b.claim()
        if not got:
            break
        assert len(got) == 1  # never two commands of one task at once
        c = b.running[got[0]]
        seen.append(c.cid)
        b.finish(*got[0])
    assert seen == [1, 2, 3]
    assert job_row(conn, jid)["phase"] == "finished"


def test_serial_subtasks_and_instances(conn):
    job = Job(subtasks=(
        Task("shots", serialsubtasks=True, subtasks=(
            Task("s1", cmds=(C("one"),)),
            Task("s2", subtasks=(Task("s2a", cmds=(C("two"),)),)),
            Task("s3", cmds=(C("three"),)),
        )),
        Task("lib", cmds=(C("lib"),)),
        Task("user", subtasks=(Instance("lib"),), cmds=(C("use"),)),
    ))
    jid = spool(conn, job)
    b = Blade(conn, slots=10)
    got = {t for _, t in b.claim()}
    titles = {tid_of(conn, jid, t): t for t in ("s1", "s2a", "s3", "lib", "user")}
    assert {titles.get(t) for t in got} == {"s1", "lib"}  # s2a is gated by s1; user waits on lib
    b.finish(jid, tid_of(conn, jid, "lib"))
    assert {titles.get(t) for _, t in b.claim()} == {"user"}
    b.finish(jid, tid_of(conn, jid, "s1"))
    assert {titles.get(t) for _, t in b.claim()} == {"s2a"}  # the gate lifts on s2's whole subtree
    b.finish(jid, tid_of(conn, jid, "s2a"))
    assert {titles.get(t) for _, t in b.claim()} == {"s3"}
    check_counters(conn, jid)


def test_empty_tasks_are_done_as_soon_as_they_would_be_ready(conn):
    job = Job(subtasks=(Task("group", subtasks=(Task("a", cmds=(C("a"),)), Task("empty"))),
                        Task("after", subtasks=(Instance("group"),))))
    jid = spool(conn, job)
    b = Blade(conn)
    assert b.claim() == [(jid, 2)]
    b.finish(jid, 2)
    # group (no commands) is done at once, and so is "after", which waited on it
    assert task_states(conn, jid) == {"group": "done", "a": "done", "empty": "done", "after": "done"}
    assert check_counters(conn, jid)["phase"] == "finished"


# --- errors and retries ---------------------------------------------------------------


def test_an_error_stops_its_branch_and_other_branches_go_on(conn):
    job = Job(subtasks=(
        Task("top", cmds=(C("top"),), subtasks=(Task("bad", cmds=(C("x"), C("never"))), Task("ok", cmds=(C("y"),)))),
        Task("other", cmds=(C("z"),))),
        postscript=(C("mail", "error", runtype="post_error"), C("mail", "done", runtype="post_done"),
                    C("log", runtype="post_always")))
    jid = spool(conn, job)
    b = Blade(conn, slots=10)
    assert b.claim() == [(jid, 2), (jid, 3), (jid, 4)]
    assert b.finish(jid, 2, 1) == "error"
    assert b.finish(jid, 3) == "done"
    assert task_states(conn, jid) == {"top": "blocked", "bad": "error", "ok": "done", "other": "active"}
    cmds = {r["cid"]: r["state"] for r in conn.execute("SELECT cid, state FROM commands WHERE jid = %s", (jid,))}
    assert cmds[2] == "error" and cmds[3] == "blocked"  # "never" did not run
    assert job_row(conn, jid)["phase"] == "live"  # "other" still runs
    b.finish(jid, 4)
    job = check_counters(conn, jid)
    # stalled with errors: the error and always postscripts run
    assert job["phase"] == "postscript"
    ready = conn.execute("SELECT c.argv FROM ready r JOIN commands c USING (jid, cid) WHERE r.jid = %s ORDER BY r.cid",
                         (jid,)).fetchall()
    assert [r["argv"] for r in ready] == [["mail", "error"], ["log"]]
    got = d.claim(conn, b.id, b.svc.matching(conn, b.facts), "b1", 5)
    assert [c.tid for c in got] == [0, 0]
    for c in got:
        assert d.finish(conn, c, b.id, 0) == "done"
    job = job_row(conn, jid)
    assert job["phase"] == "finished" and job["numerror"] == 1


def test_retryrc_retries_once_by_default_and_signals_never(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a", retryrc=(3,)),)), Task("b", cmds=(C("b", retryrc=(3,)),)))))
    b = Blade(conn)
    b.claim()
    assert b.finish(jid, 1, 3) == "retry"
    assert task_states(conn, jid)["a"] == "ready"
    assert b.finish(jid, 2, -15) == "error"  # killed by SIGTERM: never retried
    assert b.claim() == [(jid, 1)]
    assert b.running[(jid, 1)].iid == 2
    assert b.finish(jid, 1, 3) == "error"  # CmdRetryrcRetryAttempts is 1
    row = conn.execute("SELECT autoretries FROM commands WHERE jid = %s AND cid = 1", (jid,)).fetchone()
    assert row["autoretries"] == 1
    check_counters(conn, jid)


def test_auto_retry_attempts_for_any_failure(conn):
    d.set_params(conn, {"CmdAutoRetryAttempts": 2})
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn)
    outcomes = []
    for _ in range(3):
        assert b.claim() == [(jid, 1)]
        outcomes.append(b.finish(jid, 1, 7))
    assert outcomes == ["retry", "retry", "error"]
    assert conn.execute("SELECT retrycount FROM tasks WHERE jid = %s", (jid,)).fetchone()["retrycount"] == 2


# --- who gets what ----------------------------------------------------------------------


def test_priority_then_spool_order_and_job_gates(conn):
    low = spool(conn, Job(title="low", priority=1, subtasks=(Task("l", cmds=(C("l"),)),)))
    high = spool(conn, Job(title="high", priority=5, subtasks=(Task("h", cmds=(C("h"),)),)))
    rush = spool(conn, Job(title="rush", tier="rush", priority=0, subtasks=(Task("r", cmds=(C("r"),)),)))
    paused = spool(conn, Job(title="paused", priority=9, paused=True, subtasks=(Task("p", cmds=(C("p"),)),)))
    import datetime as dt

    later = spool(conn, Job(title="later", priority=9, after=dt.datetime.now().astimezone() + dt.timedelta(hours=1),
                            subtasks=(Task("x", cmds=(C("x"),)),)))
    waits = spool(conn, Job(title="waits", priority=9, afterjids=(low,), subtasks=(Task("w", cmds=(C("w"),)),)))
    b = Blade(conn, slots=1)
    order = []
    for _ in range(4):
        got = b.claim()
        if not got:
            break
        order.append(got[0][0])
        b.finish(*got[0])
    # the job after `low` becomes eligible once `low` has finished
    assert order == [rush, high, low, waits]
    assert b.claim() == []
    conn.execute("UPDATE jobs SET pausetime = NULL WHERE jid = %s", (paused,))
    conn.execute("UPDATE jobs SET aftertime = now() - interval '1 s' WHERE jid = %s", (later,))
    assert sorted(j for j, _ in b.claim(2)) == sorted([paused, later])


def test_maxactive_limits_a_job(conn):
    jid = spool(conn, Job(maxactive=2, subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(5))))
    b = Blade(conn, slots=10)
    assert len(b.claim()) == 2
    assert b.claim() == []
    b.finish(jid, 1)
    assert len(b.claim()) == 1


def test_service_keys_pick_the_blade(conn):
    jid = spool(conn, Job(subtasks=(Task("mac", cmds=(C("a", service="macos"),)),
                                    Task("any", cmds=(C("b"),)),
                                    Task("big", cmds=(C("c", service="linux && @.mem > 8"),)))))
    linux = Blade(conn, "lin", provides=("linux",), slots=5)
    mac = Blade(conn, "mac", provides=("macos",), slots=5)
    assert linux.claim() == [(jid, 2)]  # not "big": no memory reported
    assert mac.claim() == [(jid, 1)]
    linux.facts = BladeFacts(provides=frozenset({"linux"}), hostname="lin", metrics={"mem": 16})
    assert linux.claim() == [(jid, 3)]


def test_local_commands_run_on_the_spooling_host(conn):
    jid = spool(conn, Job(subtasks=(Task("here", cmds=(C("x", local=True),)),)))
    other = Blade(conn, "farm1")
    assert other.claim() == []
    home = Blade(conn, "ws1")
    assert home.claim() == [(jid, 1)]


def test_two_blades_never_get_the_same_command(db_settings):
    with connect(db_settings, autocommit=True) as c0:
        jid = spool(c0, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(300))))
    got: list[list] = [[], [], []]

    def worker(k):
        with connect(db_settings, autocommit=True) as c:
            b = Blade(c, f"b{k}", slots=3)
            while True:
                claims = b.claim()
                if not claims:
                    if not c.execute("SELECT numready FROM jobs WHERE jid = %s", (jid,)).fetchone()["numready"]:
                        return
                    continue
                got[k].extend(claims)
                for jt in claims:
                    b.finish(*jt)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    claimed = got[0] + got[1] + got[2]
    assert sorted(claimed) == [(jid, t) for t in range(1, 301)]  # each exactly once
    assert all(got)  # everyone got some work
    with connect(db_settings, autocommit=True) as c0:
        assert check_counters(c0, jid)["phase"] == "finished"
        assert c0.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s", (jid,)).fetchone()["n"] == 300


# --- lost blades and fencing -----------------------------------------------------------


def test_a_heartbeat_answers_the_blade_reload_generation_in_the_same_statement(conn):
    from tractorcli.db import reload

    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn, "beater")
    assert b.claim() == [(jid, 1)]
    (c,) = b.running.values()
    before = reload.generation(conn, "blade")
    kept = d.heartbeat(conn, b.id, [c.key], reload=True)
    assert kept == {(jid, 1, 1)} and kept.reload == before
    reload.request(conn, ["blade"])
    kept = d.heartbeat(conn, b.id, [c.key], reload=True)
    assert kept == {(jid, 1, 1)} and kept.reload == str(int(before) + 1)
    idle = Blade(conn, "idler")  # nothing held: the generation alone
    kept = d.heartbeat(conn, idle.id, [], reload=True)
    assert kept == set() and kept.reload == str(int(before) + 1)
    assert d.heartbeat(conn, idle.id, []).reload is None


def test_a_blade_cut_off_past_its_lease_keeps_what_nobody_took_since(conn):
    """Its commands were queued again (lapsed) while it could not reach the database; back, it
    reports one finished (the result counts) and still runs the other (its heartbeat takes it back)."""
    d.set_params(conn, {"BladeLeaseSecs": 1})
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),)))))
    cut = Blade(conn, "cut", slots=2)
    assert len(cut.claim()) == 2
    time.sleep(1.3)
    assert d.housekeep(conn)[0] == 2
    assert task_states(conn, jid) == {"a": "ready", "b": "ready"}
    assert cut.finish(jid, 1, 0) == "done"
    assert d.heartbeat(conn, cut.id, [c.key for c in cut.running.values()]) == {(jid, 2, 1)}
    assert task_states(conn, jid) == {"a": "done", "b": "active"}
    check_counters(conn, jid)
    assert Blade(conn, "other").claim() == []  # nothing was left in the queue
    assert cut.finish(jid, 2, 0) == "done"
    assert job_row(conn, jid)["numdone"] == 2
    runs = conn.execute("SELECT cid, iid, current, rcode FROM invocations WHERE jid = %s ORDER BY cid", (jid,))
    assert [tuple(r.values()) for r in runs] == [(1, 1, True, 0), (2, 1, True, 0)]
    check_counters(conn, jid)
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (cut.id,)).fetchone()["slotsinuse"] == 0


def test_a_lost_blade_loses_its_commands_after_the_lease(conn):
    d.set_params(conn, {"BladeLeaseSecs": 1})
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),)))))
    lost = Blade(conn, "lost", slots=2)
    assert len(lost.claim()) == 2
    held = [c.key for c in lost.running.values()]
    keep = d.heartbeat(conn, lost.id, held)
    assert keep == {(jid, 1, 1), (jid, 2, 1)}
    assert d.housekeep(conn) == (0, 0)  # leases still good
    time.sleep(1.3)
    assert d.housekeep(conn)[0] == 2
    assert task_states(conn, jid) == {"a": "ready", "b": "ready"}
    check_counters(conn, jid)
    other = Blade(conn, "other")
    assert other.claim() == [(jid, 1), (jid, 2)]
    assert {c.iid for c in other.running.values()} == {2}
    assert d.heartbeat(conn, lost.id, held) == set()  # the old blade must stop them
    # a late report from the lost blade's invocation changes nothing
    assert lost.finish(jid, 1, 0) == "stale"
    assert task_states(conn, jid)["a"] == "active"
    assert other.finish(jid, 1) == "done"
    old = conn.execute("SELECT current, rcode FROM invocations WHERE jid = %s AND cid = 1 AND iid = 1",
                       (jid,)).fetchone()
    assert old == {"current": False, "rcode": None}


def test_heartbeats_keep_the_lease(conn):
    d.set_params(conn, {"BladeLeaseSecs": 1})
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn)
    b.claim()
    version = "SELECT ctid::text AS v FROM invocations WHERE jid = %s"
    before = conn.execute(version, (jid,)).fetchone()["v"]
    for _ in range(4):  # past the lease the claim gave (1 s): the heartbeats keep it
        time.sleep(0.4)
        d.heartbeat(conn, b.id, [c.key for c in b.running.values()])
        assert d.housekeep(conn)[0] == 0
    # the lease is the blade's heartbeat: the invocation's row was not written again (a heartbeat
    # needs no new space, on a full disk too)
    assert conn.execute(version, (jid,)).fetchone()["v"] == before
    assert task_states(conn, jid) == {"a": "active"}


def test_a_claim_the_blade_never_heard_of_is_queued_again(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),)))))
    b = Blade(conn, slots=2)
    b.claim()
    phantom = b.running.pop((jid, 2))  # as if the answer to the claim had been lost
    # just claimed: in flight, kept
    assert d.heartbeat(conn, b.id, [c.key for c in b.running.values()]) == {(jid, 1, 1), (jid, 2, 1)}
    conn.execute("UPDATE invocations SET starttime = now() - interval '10 s' WHERE jid = %s", (jid,))
    assert d.heartbeat(conn, b.id, [c.key for c in b.running.values()]) == {(jid, 1, 1)}
    assert task_states(conn, jid) == {"a": "active", "b": "ready"}
    assert d.finish(conn, phantom, b.id, 0) == "stale"
    check_counters(conn, jid)


def test_a_restarted_blade_requeues_at_once_and_an_exiting_one_hands_back(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),)))))
    b = Blade(conn, "b1", slots=1)
    assert b.claim() == [(jid, 1)]
    again = Blade(conn, "b1", slots=1)  # same name, address and port: the same blade, restarted
    assert again.id == b.id
    assert task_states(conn, jid)["a"] == "ready"
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["slotsinuse"] == 0
    assert again.claim(2) == [(jid, 1), (jid, 2)]
    assert d.blade_exit(conn, again.id, handback=True) == 2
    assert task_states(conn, jid) == {"a": "ready", "b": "ready"}
    check_counters(conn, jid)
    assert conn.execute("SELECT status FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["status"] == "down"


def test_progress_is_fenced(conn):
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    b = Blade(conn)
    b.claim()
    c = b.running[(jid, 1)]
    assert d.progress(conn, c, b.id, 42.5)
    assert not d.progress(conn, d.Claim(jid, 1, 1, 9, 1), b.id, 80)
    assert conn.execute("SELECT progress FROM tasks WHERE jid = %s", (jid,)).fetchone()["progress"] == 42.5


def test_jobs_done_at_spool_are_finished_by_housekeeping(conn):
    jid = spool(conn, Job(subtasks=(Task("empty"),), cleanup=(C("rm", "x"),)))
    assert job_row(conn, jid)["phase"] == "live"
    d.housekeep(conn)
    assert job_row(conn, jid)["phase"] == "postscript"  # its -cleanup is queued
    b = Blade(conn)
    got = d.claim(conn, b.id, b.svc.matching(conn, b.facts), "b1", 1)
    assert [c.tid for c in got] == [0]
    d.finish(conn, got[0], b.id, 0)
    assert job_row(conn, jid)["phase"] == "finished"
    jid2 = spool(conn, Job(subtasks=(Task("empty"),)))
    assert d.housekeep(conn) == (0, 1)
    assert job_row(conn, jid2)["phase"] == "finished"


def test_launch_info(conn):
    jid = spool(conn, Job(title="J", projects=("p1",), subtasks=(Task("t", cmds=(C("x", "y", msg="hi"),)),)))
    info = d.launch_info(conn, jid, 1)
    assert info["argv"] == ["x", "y"] and info["msg"] == "hi" and info["owner"] == "ann"
    assert info["tasktitle"] == "t" and info["jobtitle"] == "J" and info["projects"] == ["p1"]


def test_a_resumewhile_checkpoint_runs_the_next_pass_on_the_same_blade(conn):
    jid = spool(conn, Job(subtasks=(Task("loop", resumeblock=True, subtasks=(
        Task("render", cmds=(C("r", resumewhile=("exitcode", "123"), resumepin=True),)),), cmds=(C("after"),)),)))
    a = Blade(conn, "a", slots=1)
    b = Blade(conn, "b", slots=1)
    assert a.claim() == [(jid, 2)]
    # a checkpoint: done for this pass, so the block's root runs (test_checkpoint.py has the rest)
    assert a.finish(jid, 2, 123) == "checkpoint"
    assert b.claim() == [(jid, 1)]
    assert b.finish(jid, 1) == "pass"  # the root ended a pass with a checkpoint in it: the next one
    assert conn.execute("SELECT resumecount, state FROM tasks WHERE jid = %s AND tid = 2", (jid,)).fetchone() == {
        "resumecount": 1, "state": "ready"}
    assert b.claim() == []  # pinned to blade a
    assert a.claim() == [(jid, 2)]
    inv = conn.execute("SELECT iid, resumecount FROM invocations WHERE jid = %s AND cid = 2 ORDER BY iid",
                       (jid,)).fetchall()
    assert [(i["iid"], i["resumecount"]) for i in inv] == [(1, 0), (2, 1)]  # %R of each pass
    assert a.finish(jid, 2, 0) == "done"
    assert a.claim() == [(jid, 1)]  # the loop's root runs once more, now final
    assert a.finish(jid, 1) == "done"
    check_counters(conn, jid)


def test_nimby_blades_take_only_local_or_one_users_jobs(conn):
    mine = spool(conn, Job(subtasks=(Task("m", cmds=(C("m"),)),)))  # owner ann, spooled from ws1
    other = spool_job(conn, resolve(Job(subtasks=(Task("o", cmds=(C("o"),)),))), owner="bob", spoolhost="ws9")
    local = Blade(conn, "ws1", slots=5)
    conn.execute("UPDATE blades SET nimby = '1' WHERE bladeid = %s", (local.id,))
    assert local.claim() == [(mine, 1)]  # only the job spooled from its own host
    bobs = Blade(conn, "farm", slots=5)
    conn.execute("UPDATE blades SET nimby = 'bob' WHERE bladeid = %s", (bobs.id,))
    assert bobs.claim() == [(other, 1)]


def test_service_cache_reads_an_expression_whose_spool_committed_late(db_settings):
    """Ids come from a sequence, commits in any order: an id below the highest read may appear later."""
    with connect(db_settings, autocommit=True) as reader, connect(db_settings) as slow, \
            connect(db_settings, autocommit=True) as fast:
        cache = d.ServiceCache()
        cache.refresh(reader)
        low = slow.execute("INSERT INTO service_exprs (expr) VALUES ('late') RETURNING svcid").fetchone()["svcid"]
        high = fast.execute("INSERT INTO service_exprs (expr) VALUES ('early') RETURNING svcid").fetchone()["svcid"]
        assert low < high
        cache.refresh(reader)
        assert high in cache.exprs and low not in cache.exprs and low in cache.holes()
        slow.commit()
        assert cache.refresh(reader) == 1
        facts = BladeFacts(provides=frozenset({"late"}), hostname="b", profile="default")
        assert low in cache.matching(reader, facts, refresh=False)
        assert low not in cache.holes()


def stats(conn, query: str) -> list[dict]:
    """`query` over the statistics views, this connection's counts flushed first and the views'
    snapshot taken anew (a backend sends its counts at most once a second otherwise)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute(query).fetchall()


def test_claims_and_finishes_never_scan_the_invocations(conn):
    # a blade's connection keeps the plans it made first; made on a new site's empty tables they
    # were whole-table scans that grew with the table (functions/blades.sql, enable_seqscan)
    conn.execute("VACUUM ANALYZE invocations, jobs, blades")  # the tables empty, as on a new site
    jid = spool(conn, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(200))))
    b = Blade(conn, "scanless", slots=4)
    svcids = b.svc.matching(conn, b.facts, refresh=True)

    def scans() -> dict[str, int]:
        return {r["relname"]: r["seq_scan"] for r in stats(
            conn, "SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname IN ('invocations', 'jobs', 'blades')")}

    scans()  # (what the spool did is counted at the next flush: this one)
    before = scans()
    held = d.claim(conn, b.id, svcids, "scanless", 4)
    for k in range(49):
        # the pids of what was launched since the last report come with it (tractor_pids_v1)
        _, held = d.finish_and_claim(conn, b.id, [(c, 0, 0.1, 0.0, 0.0, False) for c in held], svcids, "scanless", 4,
                                     [(c.key, 1000 + k) for c in held])
    d.heartbeat(conn, b.id, [c.key for c in held], reload=True)
    assert scans() == before
    assert len(held) == 4 and job_row(conn, jid)["numdone"] == 196


def test_a_report_reads_its_own_invocation_not_every_running_one(conn):
    # the statistics taken while nothing ran (a quiet night), then a farm at work: the planner took
    # the partial index of running invocations for a report's lookup by key and read all of them,
    # for every report (functions/finish.sql, tractor_running_invocation)
    conn.execute("VACUUM ANALYZE invocations")
    spool(conn, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(440))))
    busy = Blade(conn, "busy", slots=400)
    assert len(busy.claim()) == 400
    b = Blade(conn, "reporter", slots=2)
    svcids = b.svc.matching(conn, b.facts, refresh=True)

    def fetched() -> int:
        return stats(conn, "SELECT idx_tup_fetch FROM pg_stat_user_tables WHERE relname = 'invocations'"
                     )[0]["idx_tup_fetch"]

    held = d.claim(conn, b.id, svcids, "reporter", 2)
    before = fetched()
    for _ in range(12):  # past the custom plans: a function's statements go generic after five
        outcomes, held = d.finish_and_claim(conn, b.id, [(c, 0, 0.1, 0.0, 0.0, False) for c in held], svcids,
                                            "reporter", 2, [])
        assert outcomes == ["done", "done"] and len(held) == 2
    # two reports and two claims a cycle, a few rows each; every running one would be 24 x 400
    assert fetched() - before < 200


def test_a_report_sent_with_its_commands_pid_writes_the_invocation_once(conn):
    # a trivial command has ended when its pid goes out with the next cycle, and that cycle
    # reports it: the finish records the pid (functions/finish.sql, p_pid); only the pids of
    # commands still running are written apart (tractor_pids_v1)
    jid = spool(conn, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(12))))
    b = Blade(conn, "pids", slots=4)
    svcids = b.svc.matching(conn, b.facts, refresh=True)
    first = d.claim(conn, b.id, svcids, "pids", 4)

    def updates() -> int:
        return stats(conn, "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'invocations'")[0]["n_tup_upd"]

    before = updates()
    # the four ended and their pids go with their reports; four more are claimed
    outcomes, second = d.finish_and_claim(conn, b.id, [(c, 0, 0.1, 0.0, 0.0, False) for c in first], svcids, "pids",
                                          4, [(c.key, 5000 + k) for k, c in enumerate(first)])
    assert outcomes == ["done"] * 4 and len(second) == 4
    assert updates() - before == 4  # one write each: the end and the pid together
    # the next cycle reports nothing yet: the pids of the four running are written apart
    d.finish_and_claim(conn, b.id, [], svcids, "pids", 0, [(c.key, 6000 + k) for k, c in enumerate(second)])
    pids = {(r["cid"], r["pid"]) for r in conn.execute("SELECT cid, pid FROM invocations WHERE jid = %s", (jid,))}
    assert pids == ({(c.cid, 5000 + k) for k, c in enumerate(first)} | {(c.cid, 6000 + k) for k, c in enumerate(second)})
    assert conn.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s AND stoptime IS NOT NULL",
                        (jid,)).fetchone()["n"] == 4


def test_a_claim_takes_the_next_ready_command_without_reading_the_rest_of_the_job(conn):
    # planned on a new site's statistics (the ready table empty), the walk for a job's next ready
    # command read all the job's ready rows and sorted them, for every command claimed
    # (functions/blades.sql, tractor_claim_v3: enable_bitmapscan off)
    conn.execute("VACUUM ANALYZE ready")
    spool(conn, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x"),)) for i in range(2000))))
    b = Blade(conn, "walker", slots=4)
    svcids = b.svc.matching(conn, b.facts, refresh=True)

    def read() -> int:
        return stats(conn, "SELECT sum(idx_tup_read) AS n FROM pg_stat_user_indexes WHERE relname = 'ready'")[0]["n"]

    held = d.claim(conn, b.id, svcids, "walker", 4)
    before = read()
    for _ in range(12):  # past the custom plans
        _, held = d.finish_and_claim(conn, b.id, [(c, 0, 0.1, 0.0, 0.0, False) for c in held], svcids, "walker", 4, [])
        assert len(held) == 4
    # 48 commands claimed, each a few index entries on (the claimed ones before it are dead);
    # the whole job's would be 48 x 2,000
    assert read() - before < 2000


def test_array_parameters_read_back_as_they_were_sent(conn):
    # the dispatch calls send their lists as array literals (dispatch._array), read by the casts
    # of their queries
    row = conn.execute("SELECT %(i)s::bigint[] AS i, %(f)s::double precision[] AS f, %(b)s::boolean[] AS b,"
                       " %(e)s::integer[] AS e", {
                           "i": d._array([1, -2, 2**40, None]), "f": d._array([0.1, 1e-05, float("inf"), 2.0]),
                           "b": d._array([True, False]), "e": d._array(())}).fetchone()
    assert row == {"i": [1, -2, 2**40, None], "f": [0.1, 1e-05, float("inf"), 2.0], "b": [True, False], "e": []}


# what a blade's cycle and heartbeats, and the engine's housekeeping, call
_DISPATCH_ENTRY_POINTS = ("tractor_cycle_v1", "tractor_claim_v3", "tractor_finish_v1", "tractor_finish_checkpoint_v1",
                          "tractor_pids_v1", "tractor_heartbeat_v3", "tractor_housekeep_v1")


def test_the_dispatch_path_calls_no_sql_function_that_is_planned_at_every_call(conn):
    # A SQL function the planner cannot take into its caller's statement (its body reads a table
    # or has a subquery; or it is SECURITY DEFINER, has SET, returns a set) is planned again at
    # every call from plpgsql: tractor_ready_for cost every claim 0.1 ms that way, and
    # tractor_blade_generation every heartbeat.  plpgsql functions keep their plans.
    procs = {r["proname"]: r for r in conn.execute(
        "SELECT p.proname, l.lanname, p.prosrc, p.prosecdef, p.proconfig IS NOT NULL AS config, p.proretset"
        " FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
        " WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'tractor%'")}
    reached, todo = set(), list(_DISPATCH_ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in reached or name not in procs:
            continue
        reached.add(name)
        todo += re.findall(r"\b(tractor_\w+)\s*\(", procs[name]["prosrc"])
    assert set(_DISPATCH_ENTRY_POINTS) <= reached and len(reached) > 20
    planned_each_call = sorted(
        n for n in reached if procs[n]["lanname"] == "sql"
        and (procs[n]["prosecdef"] or procs[n]["config"] or procs[n]["proretset"]
             or re.search(r"(?i)\bFROM\b|\(\s*SELECT\b", procs[n]["prosrc"])))
    assert planned_each_call == []


def test_a_heartbeat_that_moves_nothing_does_not_wait_for_the_disk(conn):
    b = Blade(conn, "beater")
    with conn.transaction():
        d.heartbeat(conn, b.id, [])
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "off"
    assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"  # its own only
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    assert b.claim() == [(jid, 1)]
    conn.execute("UPDATE invocations SET starttime = now() - interval '1 minute' WHERE jid = %s", (jid,))
    with conn.transaction():  # one that requeues a command the blade no longer holds waits, as any
        assert d.heartbeat(conn, b.id, []) == set()
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    assert task_states(conn, jid) == {"a": "ready"}


def test_an_idle_blades_heartbeat_says_whether_a_claim_could_find_anything(conn):
    """With engine wake-ups an idle blade polls only when its heartbeat says so (blade/worker.py):
    a ready command it matches, a local Cmd of its host, or a service expression it has not read."""
    b = Blade(conn, "asker", provides=("linux",))
    svcids = b.svc.matching(conn, b.facts, refresh=True)

    def ask(blade=b, ids=None, host="asker"):
        kept = d.heartbeat(conn, blade.id, [], reload=True, svcids=svcids if ids is None else ids, host=host,
                           svc=blade.svc)
        assert kept == set() and kept.reload is not None
        return kept.work

    assert ask() is False  # nothing queued at all
    assert d.heartbeat(conn, b.id, [], reload=True).work is None  # not asked
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a", service="linux"),)),)))
    assert ask() is True  # an expression it has not read yet
    svcids = b.svc.matching(conn, b.facts, refresh=True)
    assert svcids and ask() is True  # a ready command it matches
    assert ask(ids=[]) is False  # ... that a blade matching nothing would not get
    other = Blade(conn, "other", provides=("windows",))
    other.svc.matching(conn, other.facts, refresh=True)
    assert ask(blade=other, ids=other.svc.matching(conn, other.facts)) is False
    assert b.claim() == [(jid, 1)]
    (c,) = b.running.values()
    kept = d.heartbeat(conn, b.id, [c.key], reload=True, svcids=svcids, host="asker", svc=b.svc)
    assert kept == {c.key} and kept.work is False  # taken: nothing left for it
    assert b.finish(jid, 1) == "done"
    # a job spooled from this host may have local Cmds for it whatever its keys
    spool_job(conn, resolve(Job(subtasks=(Task("l", cmds=(C("true", local=True, service="windows"),)),))),
              owner="ann", spoolhost="asker")
    b.svc.matching(conn, b.facts, refresh=True)
    assert ask(ids=[]) is True and ask(ids=[], host="elsewhere") is False


def test_an_idle_heartbeat_writes_the_blades_row_alone_and_does_not_wait_for_the_disk(conn):
    b = Blade(conn, "idler")
    before = conn.execute("SELECT heartbeattime FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["heartbeattime"]
    with conn.transaction():
        kept = d.heartbeat(conn, b.id, [], reload=True, svcids=[], host="idler", metrics={"x": 1.0}, loadavg=0.5)
        assert kept == set() and kept.work is False
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "off"
    row = conn.execute("SELECT heartbeattime, metrics, loadavg, status FROM blades WHERE bladeid = %s",
                       (b.id,)).fetchone()
    assert row["heartbeattime"] > before and row["metrics"] == {"x": 1.0} and row["loadavg"] == 0.5
    assert row["status"] == "up"
    # a claim whose answer the blade never heard: it holds nothing, but the database says it runs
    # something; the heartbeat goes the whole way and queues it again (and waits for the disk)
    jid = spool(conn, Job(subtasks=(Task("a", cmds=(C("a"),)),)))
    assert b.claim() == [(jid, 1)]
    conn.execute("UPDATE invocations SET starttime = now() - interval '1 minute' WHERE jid = %s", (jid,))
    with conn.transaction():
        kept = d.heartbeat(conn, b.id, [], reload=True, svcids=b.svc.matching(conn, b.facts), host="idler",
                           svc=b.svc)
        assert kept == set() and kept.work is True  # queued again: there is work for it
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    assert task_states(conn, jid) == {"a": "ready"}
    check_counters(conn, jid)


def test_plain_commands_are_claimed_in_a_batch_that_stops_at_one_that_is_not(conn):
    # tractor_claim_v3 claims a job's first plain commands (one slot, no servers, no limit, no %
    # sequence) with one statement each for all of them, then walks on one by one from the first
    # that is not plain; what a blade gets is the same either way
    def job(title: str) -> Job:
        tasks = [Task(f"t{i}", cmds=(C("render", f"f{i}", envkey=("e1",)),)) for i in (1, 2, 3)]
        tasks.append(Task("t4", cmds=(C("render", "wide", atleast=2),)))  # two slots: the walk's
        tasks += [Task(f"t{i}", cmds=(C("render", f"f{i}"),)) for i in (5, 6)]
        return Job(title=title, subtasks=tuple(tasks))

    def job_updates(claim):  # the claims, and how many times it wrote a job's row
        def n():
            return conn.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'jobs'"
                                ).fetchone()["n_tup_upd"]
        with conn.transaction():
            before = n()
            got = claim()
            return got, n() - before

    single = spool(conn, job("one by one"))
    b = Blade(conn, "wide", slots=16)
    svcids = b.svc.matching(conn, b.facts, refresh=True)
    # one slot a claim: the walk alone, which writes the job's row once a command
    alone, per_claim = [], []
    for _ in range(3):
        got, n = job_updates(lambda: d.claim(conn, b.id, svcids, "wide", 1))
        alone += got
        per_claim.append(n)
    assert [(c.jid, c.cid, c.numslots) for c in alone] == [(single, 1, 1), (single, 2, 1), (single, 3, 1)]
    assert per_claim == [1, 1, 1]
    batched = spool(conn, job("batched"))
    conn.execute("UPDATE jobs SET priority = 2 WHERE jid = %s", (batched,))  # claimed before the other
    got, n = job_updates(lambda: d.claim(conn, b.id, svcids, "wide", 7))
    assert [(c.jid, c.cid, c.iid, c.numslots) for c in got] == [
        (batched, 1, 1, 1), (batched, 2, 1, 1), (batched, 3, 1, 1), (batched, 4, 1, 2), (batched, 5, 1, 1),
        (batched, 6, 1, 1)]
    # the job's row written once for the batch of three, then once for each of the other three
    assert n == 4
    differ = {"jid", "tid", "cid", "iid", "jobtitle", "priority"}
    for x, y in zip(got[:3], alone):
        assert {k: v for k, v in x.info.items() if k not in differ} == {k: v for k, v in y.info.items() if k not in differ}
        assert x.info["argv"] == y.info["argv"] and x.info["cmd_envkey"] == ["e1"]
    rows = conn.execute("SELECT cid, numslots, current, limits, leasetime > now() AS leased FROM invocations "
                        "WHERE jid = %s ORDER BY cid", (batched,)).fetchall()
    assert [(r["cid"], r["numslots"], r["current"], r["leased"]) for r in rows] == [
        (1, 1, True, True), (2, 1, True, True), (3, 1, True, True), (4, 2, True, True), (5, 1, True, True),
        (6, 1, True, True)]
    assert rows[0]["limits"] == ["render"]  # the program's name, as the walk records it
    assert set(task_states(conn, batched).values()) == {"active"}
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["slotsinuse"] == 10
    job_ = check_counters(conn, batched)
    assert (job_["numactive"], job_["numready"]) == (6, 0)
    check_counters(conn, single)
