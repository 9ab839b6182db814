"""tractorcli.api.query against a real job database (a config dir pointing at this test's database)."""

from __future__ import annotations

import pytest
from test_dispatch import Blade
from test_tq import C, TqSite

import tractorcli.api.query as tq
from tractorcli.jobs.model import Task


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


# --- command operations, trace, retry of many jobs -----------------------------------------------


def _cmd(jid: int, cid: int = 1, cols=("argv", "tags", "envkey", "retryrcodes", "service", "maxrunsecs")) -> dict:
    return tq.commands(f"jid={jid} and cid={cid}", columns=list(cols))[0]


def test_cattr_set_add_remove_and_invalid(site):
    jid = site.job(2)
    target = {"jid": jid, "cid": 1}
    assert tq.cattr(target, key="tags", value="hero, fx") == [{"jid": jid, "cid": 1, "owner": "ann"}]
    assert _cmd(jid)["tags"] == ["hero", "fx"]
    tq.cattr(target, key="tags", add=["lit", "fx"])  # fx is there already
    assert _cmd(jid)["tags"] == ["hero", "fx", "lit"]
    tq.cattr(target, key="tags", remove="hero")
    assert _cmd(jid)["tags"] == ["fx", "lit"]
    tq.cattr(target, key="argv", value="prman -Progress {my file.rib}")  # a Tcl list
    assert _cmd(jid)["argv"] == ["prman", "-Progress", "my file.rib"]
    tq.cattr(target, key="argv", add=["-t:4"], remove="-Progress")
    assert _cmd(jid)["argv"] == ["prman", "my file.rib", "-t:4"]
    tq.cattr(tq.commands(f"jid={jid}", columns=["jid", "cid"]), key="retryrc", value=[2, 3])  # alias
    assert [c["retryrcodes"] for c in tq.commands(f"jid={jid}", columns=["retryrcodes"], sortby=["cid"])] == [
        [2, 3], [2, 3]]
    tq.cattr(f"jid={jid} and cid=2", key="maxrunsecs", value=3600)
    assert _cmd(jid, 2)["maxrunsecs"] == 3600
    tq.cattr(f"jid={jid} and cid=2", key="maxrunsecs", value="")  # no bound
    assert _cmd(jid, 2)["maxrunsecs"] is None
    before = _cmd(jid)
    with pytest.raises(tq.InvalidValue, match="cattr cannot set 'nosuch'.*settable: argv") as info:
        tq.cattr(target, key="nosuch", value="1")
    assert "\n" not in str(info.value)
    with pytest.raises(tq.InvalidValue, match="retryrcodes takes integers"):
        tq.cattr(target, key="retryrcodes", value="2,x")
    with pytest.raises(tq.InvalidValue, match="maxrunsecs takes a number of seconds"):
        tq.cattr(target, key="maxrunsecs", value="-1")
    with pytest.raises(tq.InvalidValue, match="argv cannot be empty"):
        tq.cattr(target, key="argv", remove=["prman", "my file.rib", "-t:4"])
    with pytest.raises(tq.InvalidValue, match="list attribute"):
        tq.cattr(target, key="msg", add="x")
    assert _cmd(jid) == before
    with pytest.raises(tq.MissingParameter):
        tq.cattr(target, key="tags")
    with pytest.raises(tq.MissingParameter):
        tq.cattr(target, value="x")
    with pytest.raises(tq.MissingTargetKey):
        tq.cattr({"jid": jid}, key="tags", value="a")


def test_chkeys_changes_the_expression_and_refuses_a_bad_one(site):
    jid = site.job(1)
    b = Blade(site.conn, name="b1", provides=("linux",), slots=2)
    tq.chkeys({"jid": jid, "cid": 1}, keystr="  nuke && !slow ")
    assert _cmd(jid)["service"] == "nuke && !slow"
    assert b.claim() == []  # the ready command follows its new expression
    with pytest.raises(tq.InvalidValue, match=r"^keystr= 'linux &&': column \d+") as info:
        tq.chkeys(f"jid={jid}", keystr="linux &&")
    assert "\n" not in str(info.value)
    assert _cmd(jid)["service"] == "nuke && !slow"
    with pytest.raises(tq.MissingParameter):
        tq.chkeys(f"jid={jid}")
    tq.chkeys(f"jid={jid} and cid=1", keystr="linux")
    assert _cmd(jid)["service"] == "linux"
    assert b.claim() == [(jid, 1)]


def test_command_ops_check_ownership(site):
    mine = site.job(1)
    bobs = site.job(1, owner="bob")
    with pytest.raises(tq.TractorQueryError, match=f"job {bobs} \\(bob's\\), user .*: not job owner"):
        tq.cattr(f"jid in [{mine} {bobs}]", key="tags", value="x")
    with pytest.raises(tq.TractorQueryError, match="not job owner"):
        tq.chkeys({"jid": bobs, "cid": 1}, keystr="linux")
    assert _cmd(mine)["tags"] == [] and _cmd(bobs)["tags"] == [] and _cmd(bobs)["service"] == ""
    tq.setEngineClientParam(force=True)
    assert tq.chkeys({"jid": bobs, "cid": 1}, keystr="linux") == [{"jid": bobs, "cid": 1, "owner": "bob"}]
    assert _cmd(bobs)["service"] == "linux"


def test_trace_names_a_matching_ready_command(site):
    jid = site.spool(Task("render", cmds=(C("echo", "a", service="PixarRender"),)))
    other = site.spool(Task("comp", cmds=(C("echo", "b", service="nuke"),)))
    Blade(site.conn, name="rack01", provides=("PixarRender", "linux"), slots=4)
    Blade(site.conn, name="rack02", provides=("nuke",), slots=1)
    ip = tq.blades("name=rack01", columns=["ipaddr"])[0]["ipaddr"]
    out = tq.trace("name=rack01")
    assert list(out) == [("rack01", ip)]
    text = out[("rack01", ip)]
    assert text.endswith("\n")
    lines = text.splitlines()
    assert f"rack01: jid {jid} tid 1 cid 1 ready: matches (pixarrender)" in lines
    assert f"rack01: jid {other} tid 1 cid 1 skipped: needs key 'nuke' (service: nuke)" in lines
    assert lines[-1] == "rack01: would take 1 of them"
    both = tq.trace(tq.blades("name like ^rack", columns=["name", "ipaddr"]), limit=1)
    assert sorted(n for n, _ in both) == ["rack01", "rack02"]
    assert all(t.splitlines()[-1] in ("rack01: would take 1 of them", "rack02: would take 0 of them",
                                      "rack02: would take 1 of them") for t in both.values())
    assert tq.trace({"name": "nosuch", "ipaddr": "10.9.9.9"}) == {}
    with pytest.raises(tq.MissingTargetKey):
        tq.trace({"name": "rack01"})
    with pytest.raises(tq.InvalidValue):
        tq.trace("name=rack01", limit=-1)


def test_retry_and_resume_tasks_of_two_jobs_in_one_call(site, monkeypatch):
    from tractorcli.db import ops

    j1 = site.job(2)
    j2 = site.job(2)
    b = Blade(site.conn, name="b1", slots=4)
    claimed = b.claim()
    assert claimed == [(j1, 1), (j1, 2), (j2, 1), (j2, 2)]
    for j, t in claimed:
        b.finish(j, t, rcode=1)
    calls = []
    real = ops.tasks

    def spy(conn, op, tasks, actor, *, recover=False):
        tasks = list(tasks)
        calls.append((sorted(tasks), recover))
        return real(conn, op, tasks, actor, recover=recover)

    monkeypatch.setattr(ops, "tasks", spy)
    done = tq.retry([{"jid": j1, "tid": 2}, {"jid": j2, "tid": 1}])
    assert sorted((r["jid"], r["tid"]) for r in done) == [(j1, 2), (j2, 1)]
    assert calls == [([(j1, 2), (j2, 1)], False)]
    assert site.states(j1) == ["error", "ready"] and site.states(j2) == ["ready", "error"]
    tq.resume(f"(jid={j1} and tid=1) or (jid={j2} and tid=2)")
    assert calls[1] == ([(j1, 1), (j2, 2)], True)
    assert len(calls) == 2
    assert site.states(j1) == ["ready", "ready"] and site.states(j2) == ["ready", "ready"]
