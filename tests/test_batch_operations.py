"""Task operations over many jobs in one call (migration 0005).

Random job shapes (nested, -serialsubtasks, Instances, tasks without
commands, several commands per task) are run by a simulated blade to random
points with random failures; then random sets of tasks of several jobs are
retried with `dispatch.retry_many` (`tractor_tasks_retry_v1`), each in a
transaction that is rolled back, and checked against what retry means:
exactly the tasks and what depends on them (computed here) are reset, with
their counts, invocations, slots and commands as Tractor's retry leaves
them; nothing else running or failed moves; every job is settled (a
from-scratch reschedule changes nothing) and its counters agree.
"""

from __future__ import annotations

import random

import pytest

from test_dispatch import Blade, C, check_counters, spool
from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.errors import TractorError
from tractorcli.jobs.model import Instance, Job, Task, resolve


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def random_job(rng: random.Random, n: int) -> Job:
    """A job of about `n` tasks: random nesting, serial flags, commands and Instances."""
    titles: list[str] = []

    def task(depth: int) -> Task:
        title = f"t{len(titles)}"
        titles.append(title)
        kids: list = []
        if depth < 3 and len(titles) < n:
            for _ in range(rng.choice((0, 0, 1, 2, 3))):
                kids.append(task(depth + 1))
        if len(titles) > 3 and rng.random() < 0.15:
            kids.append(Instance(rng.choice(titles[:-1])))
        ncmds = rng.choice((0, 1, 1, 1, 2))
        return Task(title, cmds=tuple(C("echo", title, str(k)) for k in range(ncmds)), subtasks=tuple(kids),
                    serialsubtasks=rng.random() < 0.3)

    tops = []
    while len(titles) < n:
        tops.append(task(0))
    return Job(title="random", subtasks=tuple(tops), serialsubtasks=rng.random() < 0.3)


def spool_random(conn, rng: random.Random, n: int) -> int:
    while True:
        job = random_job(rng, n)
        try:
            resolve(job)
        except TractorError:  # an Instance that would deadlock: draw another
            continue
        return spool(conn, job)


def run_some(b: Blade, rng: random.Random, steps: int) -> None:
    """Claim and finish (some failing) for a while; leave some commands running."""
    for _ in range(steps):
        got = b.claim()
        if not got and not b.running:
            return
        for key in list(b.running):
            if rng.random() < 0.8:
                b.finish(*key, rcode=1 if rng.random() < 0.2 else 0)


TASK_COLS = "jid, tid, title, parent_tid, state, pending, retrycount, resumecount, recover, currcid, progress"


def rows(conn, sql: str, *args) -> list[dict]:
    return conn.execute(sql, args).fetchall()


def dependents(conn, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The tasks and, transitively, their tree parents and Instance referrers, and the running tasks
    behind the serial gates these close (computed here, in Python)."""
    up: dict[tuple[int, int], set[tuple[int, int]]] = {}
    jids = sorted({j for j, _ in pairs})
    for r in rows(conn, "SELECT jid, tid, parent_tid FROM tasks WHERE jid = ANY(%s)", jids):
        up.setdefault((r["jid"], r["tid"]), set())
        if r["parent_tid"] is not None:
            up[(r["jid"], r["tid"])].add((r["jid"], r["parent_tid"]))
    for r in rows(conn, "SELECT jid, parent_tid, child_tid FROM task_edges WHERE jid = ANY(%s) AND parent_tid > 0",
                  jids):
        up[(r["jid"], r["child_tid"])].add((r["jid"], r["parent_tid"]))
    seen: set[tuple[int, int]] = set()
    todo = [p for p in pairs if p in up]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += up[p]
    # and the running tasks behind the serial gates those close: the subtree of the next sibling
    # (the first task after one's subtree, with its parent) under a -serialsubtasks parent or job
    task = {(r["jid"], r["tid"]): r for r in rows(
        conn, "SELECT t.jid, t.tid, t.parent_tid, t.lasttid, t.attached, t.state, "
              "coalesce(p.serialsubtasks, j.serialsubtasks) AS serial FROM tasks t JOIN jobs j ON j.jid = t.jid "
              "LEFT JOIN tasks p ON p.jid = t.jid AND p.tid = t.parent_tid WHERE t.jid = ANY(%s)", jids)}
    gated = set()
    for jid, tid in seen:
        me = task[(jid, tid)]
        nxt = task.get((jid, (me["lasttid"] or tid) + 1))
        if nxt is None or nxt["parent_tid"] != me["parent_tid"] or not nxt["attached"] or not me["serial"]:
            continue
        for g in range(nxt["tid"], (nxt["lasttid"] or nxt["tid"]) + 1):
            if task[(jid, g)]["state"] == "active":
                gated.add((jid, g))
    return seen | gated


def check_retry(conn, pairs: list[tuple[int, int]], recover: bool) -> None:
    """Retry `pairs` with the batch function (in a transaction rolled back) and check what it did."""
    jids = sorted({j for j, _ in pairs})
    key = lambda r: (r["jid"], r["tid"])  # noqa: E731
    with conn.transaction(force_rollback=True):
        before = {key(r): r for r in rows(conn, f"SELECT {TASK_COLS} FROM tasks WHERE jid = ANY(%s)", jids)}
        running = {key(r): r["n"] for r in rows(
            conn, "SELECT c.jid, c.tid, sum(i.numslots) AS n FROM invocations i JOIN commands c "
                  "ON c.jid = i.jid AND c.cid = i.cid WHERE i.jid = ANY(%s) AND i.current AND i.stoptime IS NULL "
                  "GROUP BY c.jid, c.tid", jids)}
        slots = {r["bladeid"]: r["slotsinuse"] for r in rows(conn, "SELECT bladeid, slotsinuse FROM blades")}
        want = dependents(conn, pairs)

        got = d.retry_many(conn, pairs, recover=recover)

        assert got == sorted(want)
        after = {key(r): r for r in rows(conn, f"SELECT {TASK_COLS} FROM tasks WHERE jid = ANY(%s)", jids)}
        for k in want:
            a, b = after[k], before[k]
            assert a["state"] in ("blocked", "ready", "done"), (k, a)
            assert a["progress"] == (100 if a["state"] == "done" else 0), (k, a)
            assert a["currcid"] is None
            assert a["recover"] == (recover if k in pairs else b["recover"])
            assert a["retrycount"] == b["retrycount"] + (1 if k in running and not recover else 0)
            assert a["resumecount"] == (b["resumecount"] if recover else 0)
        # nothing of theirs runs or is current any more; the blades got the slots back
        assert not rows(conn, "SELECT c.jid, c.tid FROM invocations i JOIN commands c ON c.jid = i.jid "
                              "AND c.cid = i.cid WHERE i.jid = ANY(%s) AND i.current "
                              "AND (c.jid, c.tid) IN (SELECT * FROM unnest(%s::bigint[], %s::int[]))",
                        jids, [j for j, _ in want], [t for _, t in want])
        freed = sum(n for k, n in running.items() if k in want)
        now_slots = {r["bladeid"]: r["slotsinuse"] for r in rows(conn, "SELECT bladeid, slotsinuse FROM blades")}
        assert sum(slots.values()) - sum(now_slots.values()) == freed
        # what runs elsewhere and what was finished elsewhere is as it was, bar the waits it reopens
        for k, b in before.items():
            if k not in want and b["state"] in ("active", "error"):
                assert after[k]["state"] == b["state"], (k, b, after[k])
        # commands: a reset task's are blocked but for the first of a ready one
        for c in rows(conn, "SELECT c.jid, c.tid, c.cid, c.state, c.runtype, t.state AS tstate FROM commands c "
                            "JOIN tasks t ON t.jid = c.jid AND t.tid = c.tid WHERE c.jid = ANY(%s)", jids):
            if (c["jid"], c["tid"]) in want and c["tstate"] != "done":
                assert c["state"] in (("ready", "blocked") if c["tstate"] == "ready" else ("blocked",)), c
        # settled and counted: a job-wide pass from scratch changes nothing
        for jid in jids:
            check_counters(conn, jid)
            snap = "SELECT tid, state, pending FROM tasks WHERE jid = %s ORDER BY tid"
            mine = rows(conn, snap, jid)
            conn.execute("SELECT tractor_reschedule_v1(%s)", (jid,))
            assert rows(conn, snap, jid) == mine, jid


@pytest.mark.parametrize("seed", range(12))
def test_batch_retry_resets_what_depends_and_leaves_the_jobs_settled(conn, seed):
    rng = random.Random(seed)
    jids = [spool_random(conn, rng, rng.choice((6, 12, 25))) for _ in range(4)]
    b = Blade(conn, slots=rng.choice((1, 3, 6)))
    run_some(b, rng, rng.choice((2, 5, 40)))
    tasks = rows(conn, "SELECT jid, tid, state FROM tasks WHERE jid = ANY(%s)", jids)
    for trial in range(8):
        if trial % 4 == 0:
            picked = [(r["jid"], r["tid"]) for r in tasks if r["state"] in ("error", "active")]
        else:
            picked = [(r["jid"], r["tid"]) for r in rng.sample(tasks, rng.randint(1, min(8, len(tasks))))]
        if picked:
            check_retry(conn, sorted(set(picked)), recover=trial % 3 == 2)


def test_the_per_job_function_of_0004_does_what_the_batch_one_does(conn):
    rng = random.Random(7)
    jid = spool_random(conn, rng, 25)
    b = Blade(conn, slots=3)
    run_some(b, rng, 6)
    tids = [r["tid"] for r in rows(conn, "SELECT tid FROM tasks WHERE jid = %s AND state IN ('active', 'error', "
                                         "'done') ORDER BY tid LIMIT 4", jid)]
    snap = f"SELECT {TASK_COLS} FROM tasks WHERE jid = %s ORDER BY tid"
    with conn.transaction(force_rollback=True):
        old = conn.execute("SELECT tractor_task_retry_v1(%s, %s::integer[], false) AS t", (jid, tids)).fetchone()["t"]
        old_rows = rows(conn, snap, jid)
    with conn.transaction(force_rollback=True):
        new = d.retry(conn, jid, tids)
        assert rows(conn, snap, jid) == old_rows
    assert old == new and set(tids) <= set(new)


def test_batch_retry_of_error_tasks_of_many_jobs_readies_them_all(conn):
    jobs = [spool(conn, Job(subtasks=tuple(Task(f"f{i}", cmds=(C("r", str(i)),)) for i in range(5))))
            for _ in range(3)]
    b = Blade(conn, slots=20)
    b.claim()
    for key in list(b.running):
        b.finish(*key, rcode=1 if key[1] % 2 else 0)
    errors = [(r["jid"], r["tid"]) for r in conn.execute(
        "SELECT jid, tid FROM tasks WHERE jid = ANY(%s) AND state = 'error' ORDER BY jid, tid", (jobs,))]
    assert len(errors) == 9
    assert d.retry_many(conn, errors + errors[:2]) == errors  # duplicates count once
    assert conn.execute("SELECT count(*) AS n FROM tasks WHERE jid = ANY(%s) AND state = 'ready'",
                        (jobs,)).fetchone()["n"] == 9
    for jid in jobs:
        job = check_counters(conn, jid)
        assert job["phase"] == "live" and job["numready"] == 3
    assert d.retry_many(conn, []) == []
    assert d.retry_many(conn, [(jobs[0], 999), (987654, 1)]) == []  # no such tasks: nothing happens


def test_ready_rows_go_with_their_job(conn):
    """The queue has no foreign key since 0005: its rows go with their job by trigger."""
    from tractorcli.db import queries

    job = Job(subtasks=(Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),))))
    j1, j2, j3 = (spool(conn, job) for _ in range(3))
    count = lambda jid: conn.execute("SELECT count(*) AS n FROM ready WHERE jid = %s", (jid,)).fetchone()["n"]  # noqa: E731
    assert count(j1) == count(j2) == count(j3) == 2
    conn.execute("UPDATE jobs SET deletetime = '2020-01-01' WHERE jid = %s", (j1,))
    conn.execute(queries.get("purge_archive_to"), {"before": "2021-01-01"})  # tractor-dbctl's purge
    assert count(j1) == 0 and count(j2) == 2
    conn.execute("DELETE FROM jobs WHERE jid = %s", (j2,))
    assert count(j2) == 0 and count(j3) == 2
    conn.execute(queries.get("purge_jobs"))
    assert conn.execute("SELECT count(*) AS n FROM ready").fetchone()["n"] == 0


# --- skip and kill (migration 0007): the batch functions against the per-job ones of 0004 ------


FULL_TASK_COLS = TASK_COLS + ", statetime IS NULL AS nostate, readytime IS NULL AS noready"


def everything(conn, jids: list[int]) -> dict:
    q = {
        "tasks": f"SELECT {FULL_TASK_COLS} FROM tasks WHERE jid = ANY(%s) ORDER BY jid, tid",
        "commands": "SELECT jid, cid, state FROM commands WHERE jid = ANY(%s) ORDER BY jid, cid",
        "ready": "SELECT jid, cid, tid, svcid, pinblade FROM ready WHERE jid = ANY(%s) ORDER BY jid, cid",
        "invocations": "SELECT jid, cid, iid, current, stoptime IS NULL AS running, leasetime IS NULL AS nolease "
                       "FROM invocations WHERE jid = ANY(%s) ORDER BY jid, cid, iid",
        "jobs": "SELECT jid, numblocked, numready, numactive, numerror, numdone, phase, stoptime IS NULL AS open "
                "FROM jobs WHERE jid = ANY(%s) ORDER BY jid",
        "blades": "SELECT bladeid, slotsinuse FROM blades WHERE %s IS NOT NULL ORDER BY bladeid",
    }
    return {k: rows(conn, sql, jids) for k, sql in q.items()}


@pytest.mark.parametrize("op", ["skip", "kill"])
@pytest.mark.parametrize("seed", range(8))
def test_batch_skip_and_kill_do_what_the_per_job_ones_do(conn, op, seed):
    rng = random.Random(seed)
    jids = [spool_random(conn, rng, rng.choice((6, 12, 25))) for _ in range(4)]
    b = Blade(conn, slots=rng.choice((1, 3, 6)))
    run_some(b, rng, rng.choice((2, 5, 40)))
    tasks = rows(conn, "SELECT jid, tid, state FROM tasks WHERE jid = ANY(%s)", jids)
    for trial in range(6):
        if trial % 3 == 0:
            picked = [(r["jid"], r["tid"]) for r in tasks if r["state"] in ("error", "active")]
        else:
            picked = [(r["jid"], r["tid"]) for r in rng.sample(tasks, rng.randint(1, min(8, len(tasks))))]
        picked = sorted(set(picked))
        if not picked:
            continue
        touched = sorted({j for j, _ in picked})
        with conn.transaction(force_rollback=True):
            old = []
            for jid in touched:
                tids = [t for j, t in picked if j == jid]
                got = conn.execute(f"SELECT tractor_task_{op}_v1(%s, %s::integer[]) AS t", (jid, tids)).fetchone()
                old += [(jid, t) for t in got["t"]]
            want = everything(conn, jids)
        with conn.transaction(force_rollback=True):
            new = getattr(d, f"{op}_many")(conn, picked)
            got = everything(conn, jids)
            for jid in touched:
                check_counters(conn, jid)
        assert new == sorted(old)
        for table in want:
            assert got[table] == want[table], (op, seed, trial, table, picked)


def test_batch_skip_frees_what_waits_across_jobs(conn):
    jobs = [spool(conn, Job(subtasks=(Task("comp", cmds=(C("comp"),), subtasks=(
        Task("a", cmds=(C("a"),)), Task("b", cmds=(C("b"),)))),))) for _ in range(3)]
    b = Blade(conn, slots=20)
    b.claim()
    for key in list(b.running):
        b.finish(*key, rcode=1)  # a and b fail in every job
    errors = [(r["jid"], r["tid"]) for r in rows(
        conn, "SELECT jid, tid FROM tasks WHERE jid = ANY(%s) AND state = 'error' ORDER BY jid, tid", jobs)]
    assert len(errors) == 6
    assert d.skip_many(conn, errors) == errors
    assert rows(conn, "SELECT DISTINCT state FROM tasks WHERE jid = ANY(%s) AND title = 'comp'", jobs) == \
        [{"state": "ready"}]  # every comp goes on
    for jid in jobs:
        assert check_counters(conn, jid)["numready"] == 1
    assert d.skip_many(conn, errors) == []  # done already: nothing to skip
    assert d.kill_many(conn, errors) == []  # nothing active
