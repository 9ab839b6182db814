"""The farm simulator (bench/farm_sim.py, measured by bench/bench_farm_sim.py) run small: 20
simulated blades, multiplexed over a pool of connections, take 2,000 ready tasks through the
dispatch functions real blades call, and every task is finished exactly once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import farm_sim  # noqa: E402
from _common import BenchError  # noqa: E402

from tractorcli.db import dispatch  # noqa: E402
from tractorcli.db.connection import connect  # noqa: E402

TASKS = 2000


def test_twenty_simulated_blades_finish_two_thousand_tasks_each_exactly_once(db_settings):
    jids = farm_sim.spool_queue(db_settings, TASKS, 4)
    farm = farm_sim.Farm(db_settings, 20, pool=8, hold=0.0)
    result = farm.run(until=lambda f: f.finished >= TASKS, timeout=120)

    assert result.total_claims == TASKS and result.finished == TASKS
    assert result.outcomes == {"done": TASKS} and result.revoked == 0 and not result.sim_duplicates
    assert result.cycles > 0 and result.claim_latencies and result.connections_max <= 8 + 1  # pool + engine
    farm_sim.check_exactly_once(db_settings, TASKS, result)
    with connect(db_settings, autocommit=True) as conn:
        per_command = conn.execute("SELECT count(*) AS n, count(DISTINCT (jid, cid)) AS distinct_n, max(iid) AS top "
                                   "FROM invocations").fetchone()
        assert per_command == {"n": TASKS, "distinct_n": TASKS, "top": 1}
        assert conn.execute("SELECT count(*) AS n FROM tasks WHERE state <> 'done'").fetchone()["n"] == 0
        jobs = conn.execute("SELECT jid, numdone, numtasks, numactive, numready FROM jobs ORDER BY jid").fetchall()
        assert [j["jid"] for j in jobs] == jids
        assert all(j["numdone"] == j["numtasks"] == TASKS // 4 and j["numactive"] == j["numready"] == 0 for j in jobs)
        assert conn.execute("SELECT count(*) AS n FROM blades WHERE status = 'up'").fetchone()["n"] == 0

        # the check catches a command run twice: one task retried and run again by one blade
        dispatch.retry(conn, jids[0], [1])
    again = farm_sim.Farm(db_settings, 1, hold=0.0, prefix="again")
    second = again.run(until=lambda f: f.finished >= 1, timeout=60)
    assert second.total_claims == 1
    with pytest.raises(BenchError, match="more than one invocation"):
        farm_sim.check_exactly_once(db_settings, TASKS + 1, second)


def test_idle_simulated_blades_heartbeat_through_the_engines_beats(db_settings):
    # engine wake-ups: blades holding nothing send their heartbeats to the engine's Beats (the
    # real one, in a thread), which writes a batch of them per statement; only the first
    # heartbeat of each (before it has read the reload generation) goes through the database
    farm = farm_sim.Farm(db_settings, 20, pool=4, hold=0.0, wakeups="engine", heartbeat=0.3, idle_heartbeat=0.3,
                         provides=("NoSuchKey",), prefix="beat")
    result = farm.run(seconds=3.0, warmup=0.5)
    assert result.total_claims == 0
    assert result.beats >= 20 * 5, result.beats
    # (beats sent oftener than the engine writes: it writes a blade's last; 'check' only for beats
    # that arrive after their blade left, at the end)
    answers = result.beat_answers
    assert answers["ok"] >= 20 * 3 and answers["work"] == 0 and answers["check"] <= 20, answers
    assert result.beat_batches < sum(result.beat_answers.values()) / 4  # many beats per statement
    assert len(result.heartbeat_latencies) < 20  # through the database: none in the window, bar a check
    assert result.beat_latencies and max(result.beat_latencies) < 2.0
    assert result.heartbeat_gap_max < 1.0
