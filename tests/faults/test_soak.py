"""A small soak: 8 blade slots run 500 short commands from 20 jobs while an operator retries,
skips, kills, pauses, restarts and deletes at random.  At the end every job left finishes, each
of its tasks ran to a result or was skipped, nothing runs, and the audit is clean.  (The full
size, 100,000 commands from 200 jobs, is a bench figure.)"""

from __future__ import annotations

import random
import threading
import time

import pytest
from test_blade import site  # noqa: F401 - the fixture

from tractorcli.db import dispatch as d
from tractorcli.db import ops
from tractorcli.db.audit import audit
from tractorcli.db.connection import connect
from tractorcli.jobs.model import Command, Task

pytestmark = pytest.mark.faults

JOBS, TASKS = 20, 25


def test_a_small_soak_under_random_operations_reconciles(site, db_settings):  # noqa: F811
    rng = random.Random(2026)
    s = site()
    jids = [s.spool(*(Task(f"t{i}", cmds=(Command(("/bin/sh", "-c", "exit 0")),)) for i in range(TASKS)),
                    title=f"soak {j}") for j in range(JOBS)]
    blades = [s.blade("--name", f"soak{k}", "--slots", "4") for k in range(2)]
    deleted: set[int] = set()
    done_ops: dict[str, int] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def operator() -> None:
        try:
            with connect(db_settings, autocommit=True) as conn:
                while not stop.is_set():
                    jid = rng.choice([j for j in jids if j not in deleted])
                    op = rng.choices(["retry", "skip", "kill", "pause", "unpause", "restart", "delete"],
                                     [30, 20, 15, 10, 10, 5, 1])[0]
                    tid = rng.randint(1, TASKS)
                    if op == "retry":
                        d.retry(conn, jid, [tid])
                    elif op == "skip":
                        d.skip(conn, jid, [tid])
                    elif op == "kill":
                        d.kill(conn, jid, [tid])
                    elif op == "pause":
                        ops.pause(conn, jid)
                    elif op == "unpause":
                        ops.unpause(conn, jid)
                    elif op == "restart":
                        ops.restart(conn, jid)
                    elif op == "delete" and len(deleted) < 2:
                        ops.delete(conn, jid)
                        deleted.add(jid)
                    done_ops[op] = done_ops.get(op, 0) + 1
                    time.sleep(rng.uniform(0.0, 0.02))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=operator)
    t.start()
    time.sleep(8.0)
    stop.set()
    t.join(30)
    assert not errors, errors
    assert sum(done_ops.values()) > 100, done_ops
    live = [j for j in jids if j not in deleted]
    for jid in live:
        ops.unpause(s.conn, jid)
        d.retry(s.conn, jid, [r["tid"] for r in s.all("SELECT tid FROM tasks WHERE jid = %s AND state = 'error'", jid)])
    s.wait(lambda: all(s.one("SELECT phase FROM jobs WHERE jid = %s", j)["phase"] == "finished" for j in live),
           timeout=120, step=0.2, msg="every job left to finish")
    s.wait(lambda: s.one("SELECT count(*) AS n FROM invocations WHERE current AND stoptime IS NULL")["n"] == 0,
           timeout=30, msg="nothing running")
    for jid in live:
        job = s.one("SELECT numtasks, numdone FROM jobs WHERE jid = %s", jid)
        assert job["numdone"] == job["numtasks"] == TASKS
        # each task's command ended with one result, or was skipped without one
        rows = s.all("""SELECT c.cid, c.state, count(i.*) FILTER (WHERE i.current) AS current,
                               count(i.*) FILTER (WHERE i.current AND i.rcode = 0) AS ok
                        FROM commands c LEFT JOIN invocations i ON i.jid = c.jid AND i.cid = c.cid
                        WHERE c.jid = %s GROUP BY c.cid, c.state""", jid)
        for r in rows:
            assert (r["state"], r["current"], r["ok"]) in {("done", 1, 1), ("skipped", 0, 0), ("skipped", 1, 0),
                                                           ("skipped", 1, 1)}, (jid, r)
    assert s.one("SELECT sum(slotsinuse) AS n FROM blades")["n"] == 0
    assert audit(s.conn) == []
    for b in blades:
        assert b.proc.poll() is None, b.text()
