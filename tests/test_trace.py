"""The cores of tq trace, queuestats and reloadconfig (db/trace.py, db/queuestats.py, db/reload.py),
called directly on a real job database."""

from __future__ import annotations

import datetime as dt

import pytest
from test_blade import Site
from test_dispatch import Blade

from tractorcli.db import reload
from tractorcli.db.queuestats import flat, queue_stats
from tractorcli.db.trace import trace_blades
from tractorcli.jobs.model import Command, Task


@pytest.fixture
def site(db_settings):
    s = Site(db_settings)
    yield s
    s.close()


def job(site, n=1, **kw) -> int:
    cmd = kw.pop("cmd", {})
    return site.spool(*(Task(f"t{i}", cmds=(Command(("echo", str(i)), **cmd),)) for i in range(n)), **kw)


def trace(site, blade, **kw):
    (t,) = trace_blades(site.conn, [blade.id], **kw)
    return t


def commands(t) -> list[tuple[int, str, str | None]]:
    return [(x.jid, x.kind, x.reason) for x in t.lines if x.jid is not None]


def test_job_level_refusals_in_claim_order(site):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    first = job(site, title="first")
    delayed = job(site, title="delayed", job={"after": later})
    waiting = job(site, title="waiting", job={"afterjids": (first,)})
    b = Blade(site.conn, name="b1", slots=4)
    t = trace(site, b)
    assert commands(t) == [(first, "ready", None), (delayed, "skipped", "delayed"), (waiting, "skipped", "afterjids")]
    texts = [x.text for x in t.lines]
    assert any(x.startswith(f"jid {delayed} tid 1 cid 1 skipped: job delayed until 20") for x in texts)
    assert f"jid {waiting} tid 1 cid 1 skipped: job waits for job(s) {first} to finish" in texts
    site.conn.execute("UPDATE jobs SET deletetime = now() WHERE jid = %s", (first,))
    # a deleted job is not waited for: as traced, the blade takes the waiting job's command
    assert commands(trace(site, b)) == [(first, "skipped", "deleted"), (delayed, "skipped", "delayed"),
                                        (waiting, "ready", None)]
    assert b.claim() == [(waiting, 1)]


def test_slots_needed_local_cmds_and_a_blade_that_is_down(site):
    big = job(site, cmd={"atleast": 3}, title="big")
    local = job(site, cmd={"local": True}, spoolhost="elsewhere", title="local")
    small = job(site, title="small")
    b = Blade(site.conn, name="b1", slots=2)
    t = trace(site, b)
    assert commands(t) == [(big, "skipped", "slots"), (local, "skipped", "local"), (small, "ready", None)]
    assert "but needs 3 slots and 2 are free" in t.lines[2].text
    assert "runs only on its spooling host 'elsewhere'" in t.lines[3].text
    assert [(x.jid, x.tid) for x in t.taken] == [(small, 1)]
    site.conn.execute("UPDATE blades SET status = 'down' WHERE bladeid = %s", (b.id,))
    t = trace(site, b)
    assert t.lines[0].kind == "down" and t.lines[0].text.startswith("not up (status down, last heartbeat ")
    assert t.lines[-1].text == "would take 1 of them once it is up"
    assert t.text_lines(unique=True)[0].startswith("[b1] b1: not up")
    d = t.as_dict()
    assert d["blade"] == "b1" and d["lines"][0]["kind"] == "down"


def test_an_atleast_command_counts_the_slots_other_blades_would_lend(site):
    big = job(site, cmd={"atleast": 3}, title="big")
    pinned = job(site, cmd={"atleast": 3, "samehost": True}, title="one host")
    b1 = Blade(site.conn, name="b1", slots=2)
    b2 = Blade(site.conn, name="b2", slots=2)
    # a blade lends to commands of the service expressions it matched at its last claim
    site.conn.execute("UPDATE jobs SET pausetime = now()")
    assert b2.claim() == []
    site.conn.execute("UPDATE jobs SET pausetime = NULL")
    t = trace(site, b1)
    assert commands(t) == [(big, "ready", None), (pinned, "skipped", "slots")]
    assert t.lines[2].text.endswith("; 2 slot(s) here, 1 to be lent by other blades that match it")
    assert t.lines[2].detail["lent"] == 1
    assert "but no free slot (2 of 2 in use with the commands above)" in t.lines[3].text
    # as traced, the claim takes it, with a slot of b2
    assert b1.claim() == [(big, 1)]
    assert site.one("SELECT bladename, slots FROM bindings WHERE jid = %s AND lent", big) == {"bladename": "b2",
                                                                                             "slots": 1}
    # a lender that is NIMBY for another user lends nothing: the command waits
    site.conn.execute("UPDATE blades SET nimby = 'zed' WHERE name = 'b2'")
    again = job(site, cmd={"atleast": 3}, title="again")
    b3 = Blade(site.conn, name="b3", slots=2)
    (line,) = [x for x in trace(site, b3).lines if x.jid == again]
    assert (line.kind, line.reason) == ("skipped", "slots") and "needs 3 slots and 2 are free" in line.text


def test_limit_and_blade_order(site):
    jids = [job(site, title=f"j{i}") for i in range(5)]
    zb = Blade(site.conn, name="zz", slots=1)
    ab = Blade(site.conn, name="aa", slots=1)
    traces = trace_blades(site.conn, [zb.id, ab.id], limit=2)
    assert [t.name for t in traces] == ["aa", "zz"]
    assert [x.jid for x in traces[0].lines if x.jid] == jids[:2]
    assert traces[0].lines[1].text == "first 2 of 5 ready command(s), in dispatch order (--limit 2)"
    assert len([x for x in trace_blades(site.conn, [ab.id], limit=0)[0].lines if x.jid]) == 5
    assert trace_blades(site.conn, []) == []


def test_queue_stats_and_flat_names(site):
    job(site, 2, cmd={"service": "linux"})
    stats = queue_stats(site.conn)
    assert stats["ready"]["commands"] == 2 and stats["tasks"]["ready"] == 2 and stats["jobs"]["live"] == 1
    names = [n for n, _ in flat(stats)]
    assert "ready.service[linux]" in names and names.index("ready.commands") < names.index("ready.service[linux]")
    assert len(names) == len(set(names))


def test_reload_generations(site):
    assert reload.generation(site.conn, "tractor") == "0"
    assert reload.request(site.conn, ["tractor", "crews", "blade"]) == {"tractor": 1, "blade": 1}
    assert reload.request(site.conn, ["blade"]) == {"blade": 2}
    assert (reload.generation(site.conn, "tractor"), reload.generation(site.conn, "blade")) == ("1", "2")
    site.conn.execute("UPDATE params SET value = 'junk' WHERE name = 'reload-blade'")
    assert reload.request(site.conn, ["blade"]) == {"blade": 1}
    with pytest.raises(ValueError):
        reload.generation(site.conn, "crews")
