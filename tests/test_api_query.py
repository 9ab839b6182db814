"""tractorcli.api.query against a real job database (a config dir pointing at this test's database)."""

from __future__ import annotations

import pytest
from test_dispatch import Blade
from test_tq import TqSite

import tractorcli.api.query as tq


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    tq.setEngineClientParam(configdir=str(s.cfg), user="ann", force=False)
    yield s
    tq.closeEngineClient()
    tq.setEngineClientParam(force=False)
    s.close()


def test_listings(site):
    j1 = site.job(2, title="first")
    j2 = site.job(3, owner="bob", title="second")
    rows = tq.jobs("mine", columns=["jid", "title", "Job.owner"])
    assert rows == [{"jid": j1, "title": "first", "Job.owner": "ann"}]
    assert [r["jid"] for r in tq.jobs("jid > 0", sortby=["-jid"])] == [j2, j1]
    assert {"jid", "owner", "priority", "numtasks"} <= set(tq.jobs(f"jid={j1}")[0])
    assert len(tq.tasks(f"jid={j2}", columns=["jid", "tid"])) == 3
    assert len(tq.tasks("jid > 0", columns=["tid"], limit=2)) == 2
    assert len(tq.tasks("jid > 0", columns=["tid"], limit=0)) == 5
    assert tq.commands(f"jid={j1}", columns=["cid", "argv"])[0]["argv"] == ["echo", "1"]
    assert tq.params("name=archiving", columns=["name", "value"]) == [{"name": "archiving", "value": "1"}]
    assert tq.invocations("jid > 0") == [] and tq.notes("mine") == []
    Blade(site.conn, name="b1")
    assert [b["name"] for b in tq.blades("up", columns=["name"])] == ["b1"]
    with pytest.raises(tq.MissingSearchClause):
        tq.jobs("")
    with pytest.raises(tq.InvalidValue, match="nosuch"):
        tq.jobs("nosuch=1")
    with pytest.raises(tq.TractorQueryError):
        tq.tasks("jid=", columns=["tid"])


def test_operations(site):
    jid = site.job(2)
    other = site.job(1, owner="bob")
    b = Blade(site.conn, name="b1", slots=1)
    (j, t), = b.claim()
    b.finish(j, t, rcode=1)
    assert site.states(jid) == ["error", "ready"]
    done = tq.retry({"jid": jid, "tid": t})
    assert done == [{"jid": jid, "tid": t, "owner": "ann"}]
    assert site.states(jid)[t - 1] == "ready"
    tq.skip(f"jid={jid} and tid={t}")
    assert site.states(jid)[t - 1] == "done"
    tq.pause(tq.jobs(f"jid={jid}", columns=["jid"]))
    assert site.jobrow(jid)["pausetime"] is not None
    tq.unpause(jid_clause := f"jid={jid}")
    assert site.jobrow(jid)["pausetime"] is None
    tq.chpri(jid_clause, priority=250)
    assert site.jobrow(jid)["priority"] == 250
    tq.jattr(jid_clause, key="tags", value="a,b")
    assert site.jobrow(jid)["tags"] == ["a", "b"]
    tq.delay(jid_clause, aftertime="2099-01-01 00:00:00")
    assert site.jobrow(jid)["aftertime"].year == 2099
    tq.undelay(jid_clause)
    assert site.jobrow(jid)["aftertime"] is None
    # other users' jobs: refused, nothing done, unless force
    with pytest.raises(tq.TractorQueryError, match="not job owner"):
        tq.pause(f"jid in [{jid} {other}]")
    assert site.jobrow(jid)["pausetime"] is None
    tq.setEngineClientParam(force=True)
    tq.pause({"jid": other})
    assert site.jobrow(other)["pausetime"] is not None
    tq.setEngineClientParam(force=False)
    with pytest.raises(tq.MissingTargetKey):
        tq.retry({"jid": jid})
    with pytest.raises(tq.MissingParameter):
        tq.chpri(jid_clause)
    with pytest.raises(tq.MissingSearchClause):
        tq.retry("")
    tq.interrupt(jid_clause)
    assert site.jobrow(jid)["pausetime"] is not None
    tq.restart(jid_clause)
    assert "done" not in site.states(jid)
    tq.delete(jid_clause)
    assert tq.jobs(jid_clause) == [] and len(tq.jobs(jid_clause, archive=True)) == 1
    tq.undelete(jid_clause)
    assert len(tq.jobs(jid_clause, columns=["jid"])) == 1
    assert jid in tq.jobdump(jid_clause)
    tq.nimby({"name": "b1", "ipaddr": "127.0.0.1"}, allow="ann")
    assert tq.blades("name=b1", columns=["nimby"]) == [{"nimby": "ann"}]
    tq.unnimby("name=b1")
    assert tq.blades("name=b1", columns=["nimby"]) == [{"nimby": ""}]
