"""Work PostgreSQL aborts to break a deadlock runs again (db/rerun.py), on a real server.

The deadlock is the one the soak test met: a blade's transaction holds its
own blade row (a finish frees its slots) and then wants a job row, while an
operator's `retry` holds that job and wants the blade row to free the slots
of the command it stops.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect, translate
from tractorcli.db.rerun import ATTEMPTS, SiteConnection, rerun
from tractorcli.errors import StateError

from test_dispatch import C, Blade, check_counters, spool, task_states
from tractorcli.jobs.model import Job, Task


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def _deadlock_under(db_settings, conn, operation) -> tuple[object, str]:
    """Run `operation` (an operator's call on its own SiteConnection) against a blade-like
    transaction that takes the locks in the other order; returns its result and what the
    blade-like side saw."""
    jid = spool(conn, Job(title="dl", subtasks=(Task("a", cmds=(C("r"),)), Task("b", cmds=(C("r"),)))))
    blade = Blade(conn, slots=2)
    assert blade.claim() == [(jid, 1), (jid, 2)]
    result: list[object] = []
    errors: list[BaseException] = []

    with psycopg.connect(**_info(db_settings)) as other, connect(db_settings, autocommit=True) as op:
        assert isinstance(op, SiteConnection)
        other.execute("UPDATE blades SET slotsinuse = slotsinuse WHERE bladeid = %s", (blade.id,))

        def run() -> None:
            try:
                result.append(operation(op, jid))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)  # the operation holds the job and waits for the blade row
        seen = "took both locks"
        try:
            other.execute("UPDATE jobs SET numactive = numactive WHERE jid = %s", (jid,))
            other.commit()
        except psycopg.errors.DeadlockDetected:
            other.rollback()
            seen = "was the deadlock's victim"
        t.join(30)
    assert not errors, errors
    check_counters(conn, jid)
    return result[0], seen


def _info(db_settings) -> dict:
    from tractorcli.db.connection import conninfo

    return conninfo(db_settings)


def test_an_operation_aborted_by_a_deadlock_runs_again_and_does_its_work(db_settings, conn):
    reset, seen = _deadlock_under(db_settings, conn, lambda op, jid: d.retry(op, jid, [1]))
    # the operation waited first, so PostgreSQL broke the cycle on its side: it ran again
    assert seen == "took both locks"
    assert reset == [1]
    jid = conn.execute("SELECT max(jid) AS j FROM jobs").fetchone()["j"]
    assert task_states(conn, jid) == {"a": "ready", "b": "active"}


def test_inside_a_callers_transaction_nothing_is_run_again(db_settings, conn):
    def in_a_block(op, jid):
        with op.transaction():
            return d.retry(op, jid, [1])

    with pytest.raises(AssertionError, match="DeadlockDetected"):
        _deadlock_under(db_settings, conn, in_a_block)


def test_rerun_gives_up_after_its_attempts_and_the_error_reads_as_one_line():
    calls = []

    def always():
        calls.append(1)
        raise psycopg.errors.DeadlockDetected("deadlock detected\nDETAIL: Process 1 waits ...")

    with pytest.raises(psycopg.errors.DeadlockDetected) as info:
        rerun(always)
    assert len(calls) == 6
    err = translate(info.value)
    assert isinstance(err, StateError)
    assert "\n" not in err.message and "run it again" in err.message


def test_a_blades_cycle_does_not_hold_its_row_while_an_operation_stops_its_commands(db_settings, conn):
    """The cycle's order (functions/blades.sql, lock order): a blade that has reported one job's
    command and is about to claim from another does not hold its own row yet, so `tq retry` of a
    command running there goes through at once instead of waiting for the blade (and then
    deadlocking with its claim)."""
    from psycopg.rows import dict_row

    from tractorcli.db import queries

    j1 = spool(conn, Job(title="one", subtasks=(Task("a", cmds=(C("r"),)),)))
    j2 = spool(conn, Job(title="two", subtasks=(Task("b", cmds=(C("r"),)), Task("c", cmds=(C("r"),)))))
    blade = Blade(conn, slots=2)
    assert blade.claim() == [(j1, 1), (j2, 1)]
    done: list[object] = []
    # (the cycle's connection closes first, so a failing run does not leave the operation waiting)
    with psycopg.connect(**_info(db_settings), autocommit=True, row_factory=dict_row) as op, \
            psycopg.connect(**_info(db_settings), row_factory=dict_row) as cycle:
        cycle.execute(queries.get("cycle_begin"), {"bladeid": blade.id})
        assert d.finish(cycle, blade.running.pop((j1, 1)), blade.id, 0) == "done"  # open: j1 and its rows held
        t = threading.Thread(target=lambda: done.append(d.retry(op, j2, [1])))  # a plain connection: no rerun
        t.start()
        t.join(5)
        assert done == [[1]], "tq retry waited for the blade's open cycle"
        got = d.claim(cycle, blade.id, blade.svc.matching(conn, blade.facts, refresh=True), blade.facts.hostname, 1)
        cycle.execute(queries.get("cycle_end"), {"bladeid": blade.id})
        cycle.commit()
    assert [(c.jid, c.tid) for c in got] == [(j2, 1)]  # the retried task, ready again, comes first
    blade.running[(j2, 1)] = got[0]
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (blade.id,)).fetchone()["slotsinuse"] == 1
    check_counters(conn, j1)
    check_counters(conn, j2)


def test_a_blade_keeps_its_connection_when_a_call_is_aborted_by_deadlocks_every_time(db_settings):
    """Five reruns aborted too (a busy farm under P+RR): the blade keeps its connection and its
    reports for the loop's next turn, where before it dropped the connection as if lost."""
    from tractorcli.blade import worker

    blade = worker.Blade(db_settings, worker.BladeOptions())
    blade.conn = blade._connect()
    calls = []

    def always_a_deadlock(conn):
        calls.append(1)
        conn.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")

    try:
        with pytest.raises(worker._Contended):
            blade._db(always_a_deadlock)
        assert len(calls) == ATTEMPTS
        assert not blade.conn.closed and blade.conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
    finally:
        blade.conn.close()
