"""Task operations over many jobs in one call (migration 0005).

`dispatch.retry_many` (`tractor_tasks_retry_v1`) must leave the database
exactly as the per-job function of migration 0004 (`tractor_task_retry_v1`)
followed by a from-scratch reschedule of each job leaves it, and a
from-scratch reschedule after it must find nothing to change.  Random job shapes (nested, -serialsubtasks, Instances, tasks
without commands, several commands per task) are run by a simulated blade to
random points with random failures; then a random set of tasks of several
jobs is retried both ways, each in a transaction that is rolled back, and
every row the operation may touch is compared.
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


TASK_COLS = "jid, tid, state, pending, retrycount, resumecount, recover, currcid, progress"


def snapshot(conn, jids: list[int]) -> dict:
    q = {
        "tasks": f"SELECT {TASK_COLS} FROM tasks WHERE jid = ANY(%s) ORDER BY jid, tid",
        "commands": "SELECT jid, cid, state, autoretries FROM commands WHERE jid = ANY(%s) ORDER BY jid, cid",
        "ready": "SELECT jid, cid, tid, svcid, tierpri, priority, pinblade FROM ready WHERE jid = ANY(%s) "
                 "ORDER BY jid, cid",
        "invocations": "SELECT jid, cid, iid, current, stoptime IS NULL AS running, leasetime IS NULL AS nolease "
                       "FROM invocations WHERE jid = ANY(%s) ORDER BY jid, cid, iid",
        "jobs": "SELECT jid, numblocked, numready, numactive, numerror, numdone, phase, stoptime IS NULL AS open "
                "FROM jobs WHERE jid = ANY(%s) ORDER BY jid",
        "blades": "SELECT bladeid, slotsinuse FROM blades WHERE %s IS NOT NULL ORDER BY bladeid",
    }
    return {k: conn.execute(sql, (jids,)).fetchall() for k, sql in q.items()}


def both_ways(conn, pairs: list[tuple[int, int]], recover: bool) -> tuple[dict, dict, list, list]:
    jids = sorted({j for j, _ in pairs})
    with conn.transaction(force_rollback=True):
        old_reset = []
        for jid in jids:
            tids = [t for j, t in pairs if j == jid]
            got = conn.execute("SELECT tractor_task_retry_v1(%s, %s::integer[], %s) AS tids",
                               (jid, tids, recover)).fetchone()["tids"]
            old_reset += [(jid, t) for t in got]
            # the per-job function may leave what a job-wide pass then corrects
            # (it did, before 0005, when a task without commands freed another)
            conn.execute("SELECT tractor_reschedule_v1(%s)", (jid,))
        old = snapshot(conn, jids)
    with conn.transaction(force_rollback=True):
        new_reset = d.retry_many(conn, pairs, recover=recover)
        new = snapshot(conn, jids)
        for jid in jids:
            check_counters(conn, jid)
            # settled: a job-wide pass from scratch finds nothing to change
            conn.execute("SELECT tractor_reschedule_v1(%s)", (jid,))
        assert snapshot(conn, jids)["tasks"] == new["tasks"]
    return old, new, sorted(old_reset), new_reset


@pytest.mark.parametrize("seed", range(6))
def test_batch_retry_does_what_the_per_job_retry_does(conn, seed):
    rng = random.Random(seed)
    jids = [spool_random(conn, rng, rng.choice((6, 12, 25))) for _ in range(4)]
    b = Blade(conn, slots=rng.choice((1, 3, 6)))
    run_some(b, rng, rng.choice((2, 5, 40)))
    tasks = conn.execute("SELECT jid, tid, state FROM tasks WHERE jid = ANY(%s)", (jids,)).fetchall()
    for trial in range(8):
        if trial % 4 == 0:
            picked = [(r["jid"], r["tid"]) for r in tasks if r["state"] in ("error", "active")]
        else:
            picked = [(r["jid"], r["tid"]) for r in rng.sample(tasks, rng.randint(1, min(8, len(tasks))))]
        if not picked:
            continue
        recover = trial % 3 == 2
        old, new, old_reset, new_reset = both_ways(conn, picked, recover)
        assert new_reset == old_reset
        for table in old:
            assert new[table] == old[table], (seed, trial, table, picked)


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
