"""Blades killed with SIGKILL at random points of their commands' lives (just claimed, launching,
running, between a command's exit and its report): every command ends exactly once, and a command
runs again only for an invocation that was lost with its blade."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from test_blade import sh, site, states  # noqa: F401 - site: the fixture

from tractorcli.db import dispatch as d
from tractorcli.db.audit import audit
from tractorcli.jobs.model import Task

pytestmark = pytest.mark.faults

TASKS = 16


def test_blades_killed_at_random_points_lose_nothing_and_run_nothing_twice_unseen(site):
    rng = random.Random(1306)  # fixed: a failure can be replayed
    s = site()
    d.set_params(s.conn, {"BladeLeaseSecs": 1})
    jid = s.spool(*(Task(f"t{i}", cmds=(sh(f"echo t{i} >> started.txt; sleep 0.{rng.randint(1, 4)}; "
                                            f"echo t{i} >> ended.txt"),)) for i in range(TASKS)))
    kills = 0
    deadline = time.monotonic() + 120
    while set(states(s, jid).values()) != {"done"}:
        assert time.monotonic() < deadline, f"not done: {states(s, jid)}"
        blade = s.blade("--name", f"victim{kills}", "--slots", "3")
        if kills < 12:
            # from its first claim on (a loaded machine starts a blade slowly: a kill before it
            # claims would test nothing), a random point of its commands' lives
            name = f"victim{kills}"
            s.wait(lambda: s.one("SELECT count(*) AS n FROM invocations WHERE jid = %s AND bladename = %s",
                                 jid, name)["n"], timeout=30, msg=f"{name}'s first claim")
            time.sleep(rng.uniform(0.0, 0.6))
            blade.proc.send_signal(signal.SIGKILL)
            blade.proc.wait(10)
            kills += 1
            # the engine is not here: housekeep as it would until the dead blade's leases run out
            t0 = time.monotonic()
            while s.one("SELECT count(*) AS n FROM invocations WHERE jid = %s AND current AND stoptime IS NULL",
                        jid)["n"] and time.monotonic() - t0 < 10:
                d.housekeep(s.conn)
                time.sleep(0.1)
        else:
            s.wait(lambda: set(states(s, jid).values()) == {"done"}, timeout=60, msg="the last blade to finish")
    time.sleep(0.5)  # an orphaned process of a killed blade would have written by now
    started = Counter((s.work / "started.txt").read_text().split())
    ended = Counter((s.work / "ended.txt").read_text().split())
    runs = s.all("SELECT cid, iid, current, stoptime IS NOT NULL AS stopped, rcode FROM invocations "
                 "WHERE jid = %s ORDER BY cid, iid", jid)
    by_cmd: dict[int, list[dict]] = {}
    for r in runs:
        by_cmd.setdefault(r["cid"], []).append(r)
    assert sorted(by_cmd) == list(range(1, TASKS + 1))
    for cid, invs in by_cmd.items():
        task = f"t{cid - 1}"
        *lost, last = invs
        assert (last["current"], last["rcode"]) == (True, 0), (task, invs)  # one result, the last run's
        assert all(not i["current"] and i["rcode"] is None for i in lost), (task, invs)
        # every run the command had was an invocation of its own: none ran unseen
        assert 1 <= ended[task] <= started[task] <= len(invs), (task, started[task], ended[task], invs)
    assert kills == 12 and sum(len(v) for v in by_cmd.values()) > TASKS  # the kills did cost runs
    assert audit(s.conn) == []
