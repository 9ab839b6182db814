"""scripts/wrangler_retry.py: a wrangler retrying the last day's error tasks through tractor.api.query.

Set-up: jobs whose commands fail, run by a real tractor-blade (--exit-when-idle)
so their tasks end in error: three of the wrangler's (one spooled two days ago),
one of another user, one without errors.  The script lists jobs with
`tq.jobs(..., sortby=["-priority"], limit=0)`, their error tasks with
`tq.tasks(..., columns=["Job.owner"])`, and retries them with a bare
{"jid", "tid"} dict and with the list of result rows; operations return None.

Checked: the order the jobs come in; the wrangler's recent error tasks are
ready again, their invocations no longer current (rcode kept), and a second
blade run launches them again; the other user's job raises TractorQueryError
(tractorcli.api.query refuses another user's job without force=True, and
changes nothing) and is untouched; the old job is not in the listing.
"""

from __future__ import annotations

import json

import pytest
from test_blade import sh

from tractorcli.jobs.model import Task

from .support import TqSite, run_script

WRANGLER = "wendy"


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def failing(title: str, script: str = "exit 3") -> Task:
    return Task(title, cmds=(sh(script),))


def invocations(site, jid: int) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for i in site.all("SELECT * FROM invocations WHERE jid = %s ORDER BY tid, iid", jid):
        out.setdefault(i["tid"], []).append(i)
    return out


def test_wrangler_retries_the_last_days_error_tasks(site):
    a = site.spool(Task("ok", cmds=(sh("true"),)), failing("fail exit 3"), failing("fail false", "false"),
                   owner=WRANGLER, title="A lighting", job={"priority": 10.0})
    b = site.spool(failing("fail"), owner=WRANGLER, title="B fx", job={"priority": 50.0})
    c = site.spool(failing("fail"), owner="bob", title="C bob's", job={"priority": 30.0})
    old = site.spool(failing("fail"), owner=WRANGLER, title="D old", job={"priority": 40.0})
    fine = site.spool(Task("ok", cmds=(sh("true"),)), owner=WRANGLER, title="E fine", job={"priority": 60.0})

    blade = site.blade("--exit-when-idle", "--slots", "2")
    assert blade.wait() == 0, blade.text()
    assert site.states(a) == ["done", "error", "error"]
    assert site.states(b) == site.states(c) == site.states(old) == ["error"]
    assert site.states(fine) == ["done"]
    site.conn.execute("UPDATE jobs SET spooltime = spooltime - interval '2 days' WHERE jid = %s", (old,))
    before = {j: invocations(site, j) for j in (a, b, c, old)}
    assert [[(len(v), v[0]["current"], v[0]["rcode"]) for _, v in sorted(inv.items())] for inv in before.values()] == [
        [(1, True, 0), (1, True, 3), (1, True, 1)], [(1, True, 3)], [(1, True, 3)], [(1, True, 3)]]

    r = run_script(site, "wrangler_retry.py", WRANGLER, user=WRANGLER)
    *lines, last = r.stdout.splitlines()
    summary = json.loads(last)
    # last day's jobs with errors, highest priority first; the old one and the fine one are not listed
    assert summary["order"] == [b, c, a]
    assert summary["refused"] == [c]
    assert sorted(map(tuple, summary["retried"])) == [(a, 2), (a, 3), (b, 1)]
    assert lines[0] == f"job {b} (B fx): retried 1 task(s)"
    assert lines[1].startswith(f"job {c} (C bob's, owner bob): not retried: job {c} (bob's), user {WRANGLER}: not job owner")
    assert lines[2] == f"job {a} (A lighting): retried 2 task(s)"
    assert r.stderr == ""

    # the wrangler's error tasks are ready again; the tries stay, no longer current
    assert site.states(a) == ["done", "ready", "ready"]
    assert site.states(b) == ["ready"]
    for jid, tids in ((a, (2, 3)), (b, (1,))):
        row = site.jobrow(jid)
        assert (row["numerror"], row["numready"]) == (0, len(tids))
        after = invocations(site, jid)
        for tid in tids:
            (inv,) = after[tid]
            assert not inv["current"] and inv["rcode"] == before[jid][tid][0]["rcode"]
            assert inv["stoptime"] == before[jid][tid][0]["stoptime"]
            # a retry of a task that was not running is not counted (Tractor: retrycount++ if active)
            assert site.task(jid, tid)["retrycount"] == 0
    # bob's job and the old one: untouched
    for jid in (c, old):
        assert site.states(jid) == ["error"]
        assert site.jobrow(jid)["numerror"] == 1
        assert invocations(site, jid) == before[jid]

    # a blade picks the retried tasks up again: a second try of each, nothing else
    again = site.blade("--exit-when-idle", "--slots", "2")
    assert again.wait() == 0, again.text()
    after = {j: invocations(site, j) for j in (a, b, c, old)}
    assert [len(after[a][t]) for t in (1, 2, 3)] == [1, 2, 2]
    assert len(after[b][1]) == 2 and after[b][1][1]["current"] and after[b][1][1]["rcode"] == 3
    assert after[c] == before[c] and after[old] == before[old]
    assert site.states(a) == ["done", "error", "error"]
