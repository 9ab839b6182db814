"""-expand: tasks printed by a command grafted into its running job, and tq restart.

End to end with real blades running real commands (the Site of
test_blade.py), plus SQL-level checks with a simulated blade (the Blade of
test_dispatch.py) for what a real blade cannot be made to do on cue: a
stale report, a graft that fails half way.
"""

from __future__ import annotations

import pytest
from test_blade import Site, sh, states
from test_dispatch import Blade, check_counters

from tractorcli.db import dispatch as d
from tractorcli.db import ops, spool
from tractorcli.db.connection import connect
from tractorcli.db.expand import RC_EXPAND, finish_expand
from tractorcli.db.explain import explain_task
from tractorcli.jobs.expand import parse_output
from tractorcli.jobs.model import Command, Job, JobError, Task, resolve


@pytest.fixture
def site(db_settings):
    sites: list[Site] = []

    def make() -> Site:
        sites.append(Site(db_settings))
        return sites[-1]

    yield make
    for s in sites:
        s.close()


def append(word: str) -> Command:
    """A command that appends `word` to order.txt in the spool directory."""
    return sh(f"echo {word} >> order.txt")


TWO_TASKS = """\
Task {e1} -cmds { RemoteCmd {/bin/sh -c {echo e1 >> order.txt}} }
TR_PROGRESS 50%
Task {e2} -cmds { RemoteCmd {/bin/sh -c {echo e2 >> order.txt}} }
"""


def order(s: Site) -> list[str]:
    p = s.work / "order.txt"
    return p.read_text().split() if p.exists() else []


def counters_agree(s: Site, jid: int) -> dict:
    job = s.one("SELECT * FROM jobs WHERE jid = %s", jid)
    counts = {r["state"]: r["n"] for r in s.all(
        "SELECT state, count(*) AS n FROM tasks WHERE jid = %s AND attached GROUP BY state", jid)}
    for state in ("blocked", "ready", "active", "error", "done"):
        assert job[f"num{state}"] == counts.get(state, 0), (state, job, counts)
    assert job["numtasks"] == sum(counts.values())
    assert job["maxtid"] == s.one("SELECT max(tid) AS m FROM tasks WHERE jid = %s", jid)["m"]
    assert job["maxcid"] == s.one("SELECT max(cid) AS m FROM commands WHERE jid = %s", jid)["m"]
    return job


def expand_job(s: Site) -> int:
    """gen (serial): an expand command printing e1 and e2, then "after"; then its serial sibling."""
    (s.work / "tasks.tcl").write_text(TWO_TASKS)
    gen = Task("gen", serialsubtasks=True, cmds=(
        Command(("/bin/sh", "-c", "cat tasks.tcl; echo to-the-log >&2"), expand=""),
        append("after")))
    return s.spool(gen, Task("next", cmds=(append("next"),)), job={"serialsubtasks": True})


# --- end to end ---------------------------------------------------------------------


def test_expand_output_runs_before_the_rest_of_the_task_and_its_serial_sibling(site):
    s = site()
    jid = expand_job(s)
    b = s.blade("--exit-when-idle", "--slots", "2")
    assert b.wait() == 0, b.text()
    # the grafted tasks (in order: they inherit gen's -serialsubtasks), then gen's next
    # command, then the serial sibling: the expanding task was not done before them
    assert order(s) == ["e1", "e2", "after", "next"], b.text()
    rows = s.all("SELECT tid, title, parent_tid, position, expandedby, state FROM tasks WHERE jid = %s ORDER BY tid",
                 jid)
    assert [(r["tid"], r["title"], r["parent_tid"], r["position"], r["expandedby"], r["state"]) for r in rows] == [
        (1, "gen", None, 0, None, "done"), (2, "next", None, 1, None, "done"),
        (3, "e1", 1, 0, 1, "done"), (4, "e2", 1, 1, 1, "done")]
    job = counters_agree(s, jid)
    assert (job["phase"], job["numtasks"], job["numdone"], job["maxtid"], job["maxcid"]) == ("finished", 4, 4, 4, 5)
    # each command ran once: the expand command was not run again when gen went on
    assert [(i["cid"], i["iid"], i["rcode"]) for i in s.invocations(jid)] == [
        (1, 1, 0), (2, 1, 0), (3, 1, 0), (4, 1, 0), (5, 1, 0)]
    log = s.log(jid, 1)
    assert "Task {e1}" in log and "to-the-log" in log and "expand: 2 task definition(s) read from stdout" in log
    assert "not grafted" not in log
    assert "-> expanded" in b.text()


def test_expand_file_and_chunks(site):
    s = site()
    (s.work / "chunk.src").write_text('Task {c2} -subtasks { Instance {c1} } -cmds { RemoteCmd {/bin/sh -c '
                                      '{echo c2 >> order.txt}} }\n')
    script = ("echo 'Task {c1} -cmds { RemoteCmd {/bin/sh -c {echo c1 >> order.txt}} }' > out.tcl; "
              "cp chunk.src chunk.tcl; echo 'TR_EXPAND_CHUNK \"chunk.tcl\"'; sleep 0.3; rm chunk.tcl")
    jid = s.spool(Task("gen", cmds=(Command(("/bin/sh", "-c", script), expand="out.tcl"),)),
                  Task("next", cmds=(append("next"),)), job={"serialsubtasks": True})
    b = s.blade("--exit-when-idle", "--slots", "2")
    assert b.wait() == 0, b.text()
    # the chunk was read when announced (the command removed it), the file at the exit;
    # c2 waits for c1 by Instance, across the two pieces
    assert order(s) == ["c1", "c2", "next"], b.text()
    assert states(s, jid) == {"gen": "done", "next": "done", "c1": "done", "c2": "done"}
    assert s.one("SELECT count(*) AS n FROM task_edges WHERE jid = %s AND parent_tid = 4 AND child_tid = 3",
                 jid)["n"] == 1
    counters_agree(s, jid)
    assert "read from out.tcl, chunk.tcl" in s.log(jid, 1)


def test_expand_output_that_does_not_parse_fails_the_command_and_grafts_nothing(site):
    s = site()
    bad = "Task {ok} -cmds { RemoteCmd {/bin/true} }\nTask {broken} -cmds {\n RemoteCmd {/bin/true} -bogus\n}\n"
    (s.work / "bad.tcl").write_text(bad)
    jid = s.spool(Task("gen", cmds=(Command(("/bin/cat", "bad.tcl"), expand=""), append("after"))),
                  Task("next", cmds=(append("next"),)), job={"serialsubtasks": True})
    b = s.blade("--exit-when-idle")
    assert b.wait() == 0, b.text()
    assert states(s, jid) == {"gen": "error", "next": "blocked"}
    assert order(s) == []
    assert [i["rcode"] for i in s.invocations(jid)] == [RC_EXPAND]
    log = s.log(jid, 1)
    assert "expand output: stdout:3:24: RemoteCmd: option -bogus needs a value on the same line" in log, log
    job = counters_agree(s, jid)
    assert (job["numtasks"], job["maxtid"], job["maxcid"], job["numerror"]) == (2, 2, 3, 1)


def test_restart_detaches_expanded_tasks_and_grafts_fresh_ones(site):
    s = site()
    jid = expand_job(s)
    b = s.blade("--exit-when-idle", "--slots", "2")
    assert b.wait() == 0, b.text()
    assert order(s) == ["e1", "e2", "after", "next"]

    tids = ops.restart(s.conn, jid)
    assert tids == [1, 2]
    rows = {r["tid"]: r for r in s.all("SELECT * FROM tasks WHERE jid = %s", jid)}
    assert [t for t, r in rows.items() if not r["attached"]] == [3, 4]
    assert (rows[1]["state"], rows[2]["state"]) == ("ready", "blocked")
    job = counters_agree(s, jid)
    assert (job["phase"], job["numtasks"], job["numready"], job["numblocked"]) == ("live", 2, 1, 1)
    why = explain_task(s.conn, jid, 3)
    assert [r.kind for r in why.reasons] == ["detached"]
    assert s.one("SELECT count(*) AS n FROM invocations WHERE jid = %s AND current", jid)["n"] == 0

    b = s.blade("--exit-when-idle", "--slots", "2")
    assert b.wait() == 0, b.text()
    # the expand command ran again and its fresh tasks ran; the detached ones did not
    assert order(s) == ["e1", "e2", "after", "next"] * 2, b.text()
    rows = s.all("SELECT tid, title, attached, expandedby, state FROM tasks WHERE jid = %s ORDER BY tid", jid)
    assert [(r["tid"], r["title"], r["attached"], r["expandedby"], r["state"]) for r in rows] == [
        (1, "gen", True, None, "done"), (2, "next", True, None, "done"),
        (3, "e1", False, 1, "done"), (4, "e2", False, 1, "done"),
        (5, "e1", True, 1, "done"), (6, "e2", True, 1, "done")]
    job = counters_agree(s, jid)
    assert (job["phase"], job["numtasks"], job["numdone"], job["maxtid"], job["maxcid"]) == ("finished", 4, 4, 6, 7)
    assert [(i["cid"], i["iid"]) for i in s.invocations(jid) if i["current"]] == [
        (1, 2), (2, 2), (3, 2), (6, 1), (7, 1)]
    # the grafted tasks' positions follow the detached ones, one place apart: no previous
    # sibling (detached, maybe unfinished) for the first of them to wait for
    assert [r["position"] for r in s.all("SELECT position FROM tasks WHERE jid = %s AND parent_tid = 1 "
                                         "ORDER BY tid", jid)] == [0, 1, 3, 4]


# --- SQL level: a simulated blade ---------------------------------------------------------


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def _spool(conn, *tasks, **job) -> int:
    return spool.spool_job(conn, resolve(Job(title="x", subtasks=tasks, **job)), owner="ann", spoolhost="ws1")


def _nodes(text: str) -> tuple:
    return parse_output(text, "stdout")


def _graft(conn, b: Blade, jid: int, tid: int, text: str, rcode: int = 0) -> tuple[str, str | None]:
    c = b.running.pop((jid, tid))
    return finish_expand(conn, c, b.id, rcode, nodes=_nodes(text), real=0.1)


def _titles(conn, jid) -> dict[str, tuple[int, str]]:
    return {r["title"]: (r["tid"], r["state"]) for r in conn.execute(
        "SELECT tid, title, state FROM tasks WHERE jid = %s AND attached ORDER BY tid", (jid,))}


def test_graft_numbering_settings_and_what_follows(conn):
    jid = _spool(conn,
                 Task("gen", cmds=(Command(("gen",), expand=""), Command(("after",)))),
                 Task("other", cmds=(Command(("other",), service="Linux"),)),
                 service="PixarRender", avoid=("badhost",), tags=("prman",), envkey=("maya2024",))
    b = Blade(conn, provides=("PixarRender", "Linux"))
    assert b.claim() == [(jid, 1), (jid, 2)]
    outcome, problem = _graft(conn, b, jid, 1, """
        Task {g1} -cmds { RemoteCmd {g1} -service {Linux} -tags {nuke} }
        Task {g2} -subtasks { Task {g2a} -cmds { RemoteCmd {g2a} } } -cmds { RemoteCmd {g2} -envkey {own} }
        Task {empty}
    """)
    assert (outcome, problem) == ("expanded", None)
    # tids and cids after the job's (gen 1, other 2; cids 1-3), depth-first
    assert _titles(conn, jid) == {"gen": (1, "blocked"), "other": (2, "active"), "g1": (3, "ready"),
                                  "g2": (4, "blocked"), "g2a": (5, "ready"), "empty": (6, "done")}
    rows = {r["tid"]: r for r in conn.execute("SELECT * FROM tasks WHERE jid = %s", (jid,))}
    assert [(rows[t]["parent_tid"], rows[t]["position"], rows[t]["expandedby"], rows[t]["lasttid"])
            for t in (3, 4, 5, 6)] == [(1, 0, 1, 3), (1, 1, 1, 5), (4, 0, 1, 5), (1, 2, 1, 6)]
    assert rows[1]["pending"] == 2  # g1 and g2 (empty was done at once)
    # tq's clauses see them (expandedby, expandcid: beyond Tractor)
    from tractorcli.query import build_select
    q = build_select("tasks", f"jid={jid} and expandedby=1 and expandcid=1 and attached",
                     columns=["tid", "expandedby"], sortby=["tid"], user="ann")
    assert [r["tid"] for r in conn.execute(q.sql, q.params)] == [3, 4, 5, 6]
    cmds = {r["cid"]: r for r in conn.execute(
        "SELECT c.*, s.expr FROM commands c JOIN service_exprs s USING (svcid) WHERE jid = %s", (jid,))}
    assert [(cid, cmds[cid]["tid"], cmds[cid]["argv"][0], cmds[cid]["state"]) for cid in (4, 5, 6)] == [
        (4, 3, "g1", "ready"), (5, 4, "g2", "blocked"), (6, 5, "g2a", "ready")]
    # the job's settings, exactly as spool gives them
    assert cmds[4]["expr"] == cmds[3]["expr"]  # same -service Linux, same job -service and -avoid
    assert cmds[6]["expr"] == cmds[1]["expr"]
    assert (cmds[4]["tags"], cmds[6]["tags"]) == (["nuke", "prman"], ["prman"])
    assert (cmds[5]["envkey"], cmds[6]["envkey"]) == (["own"], ["maya2024"])
    job = check_counters(conn, jid)
    assert (job["numtasks"], job["maxtid"], job["maxcid"]) == (6, 6, 6)
    assert set(job["svcids"]) == {cmds[c]["svcid"] for c in cmds}

    # the grafted tasks run; then gen's next command, not the expand command again
    assert b.claim() == [(jid, 3), (jid, 5)]
    assert b.finish(jid, 3) == "done" and b.finish(jid, 5) == "done"
    assert b.claim() == [(jid, 4)]
    assert b.finish(jid, 4) == "done"
    assert _titles(conn, jid)["gen"] == (1, "ready")
    assert b.claim() == [(jid, 1)]
    assert b.running[(jid, 1)].cid == 2
    assert b.finish(jid, 1) == "done" and b.finish(jid, 2) == "done"
    job = check_counters(conn, jid)
    assert (job["numdone"], job["phase"]) == (6, "finished")


def test_skipping_a_grafted_task_does_not_run_the_expand_command_again(conn):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""),)), Task("next", cmds=(Command(("n",)),)),
                 serialsubtasks=True)
    b = Blade(conn)
    b.claim()
    assert _graft(conn, b, jid, 1, "Task {g} -cmds { RemoteCmd {g} }")[0] == "expanded"
    assert b.claim() == [(jid, 3)]
    assert b.finish(jid, 3, rcode=1) == "error"
    d.skip(conn, jid, [3])
    # gen has nothing left to run: it is done, and its serial sibling ready
    assert _titles(conn, jid) == {"gen": (1, "done"), "next": (2, "ready"), "g": (3, "done")}
    assert b.claim() == [(jid, 2)]
    assert b.running[(jid, 2)].cid == 2
    assert conn.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s AND cid = 1", (jid,)
                        ).fetchone()["n"] == 1
    check_counters(conn, jid)


def test_a_stale_report_grafts_nothing(conn):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""),)))
    b = Blade(conn)
    b.claim()
    c = b.running[(jid, 1)]
    d.blade_exit(conn, b.id, handback=True)  # the invocation is no longer current
    outcome, problem = finish_expand(conn, c, b.id, 0, nodes=_nodes("Task {g} -cmds { RemoteCmd {g} }"))
    assert (outcome, problem) == ("stale", None)
    job = check_counters(conn, jid)
    assert (job["numtasks"], job["maxtid"], job["maxcid"], job["numready"]) == (1, 1, 1, 1)
    assert conn.execute("SELECT count(*) AS n FROM commands WHERE jid = %s", (jid,)).fetchone()["n"] == 1
    # another blade's report for the new invocation is fenced from this one's too
    b2 = Blade(conn, name="b2")
    assert b2.claim() == [(jid, 1)]
    outcome, _ = finish_expand(conn, b2.running[(jid, 1)], b.id, 0, nodes=_nodes("Task {g}"))
    assert outcome == "stale"
    assert conn.execute("SELECT maxtid FROM jobs WHERE jid = %s", (jid,)).fetchone()["maxtid"] == 1


def test_a_graft_that_fails_half_way_leaves_nothing(conn, monkeypatch):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""),)))
    b = Blade(conn)
    b.claim()
    c = b.running[(jid, 1)]
    real_copy = spool._copy

    def copy(cur, name, types, rows, tables=None):
        if name == "spool_copy_commands":  # the tasks are written: die now
            raise RuntimeError("killed half way")
        real_copy(cur, name, types, rows, tables)

    monkeypatch.setattr(spool, "_copy", copy)
    with pytest.raises(RuntimeError):
        finish_expand(conn, c, b.id, 0, nodes=_nodes("Task {g} -cmds { RemoteCmd {g} }"))
    monkeypatch.undo()
    assert conn.execute("SELECT count(*) AS n FROM tasks WHERE jid = %s", (jid,)).fetchone()["n"] == 1
    assert _titles(conn, jid) == {"gen": (1, "active")}
    # the report can be sent again (a blade reconnecting does so) and grafts once
    assert finish_expand(conn, c, b.id, 0, nodes=_nodes("Task {g} -cmds { RemoteCmd {g} }"))[0] == "expanded"
    assert _titles(conn, jid) == {"gen": (1, "blocked"), "g": (2, "ready")}
    check_counters(conn, jid)


def test_output_spool_would_refuse_fails_the_command(conn):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""),)))
    b = Blade(conn)
    b.claim()
    outcome, problem = _graft(conn, b, jid, 1, "Task {g} -cmds {\n  RemoteCmd {g} -service {a &&}\n}")
    assert outcome == "error"
    assert problem.startswith("stdout:2:3: RemoteCmd -service 'a &&'"), problem
    assert _titles(conn, jid) == {"gen": (1, "error")}
    inv = conn.execute("SELECT rcode FROM invocations WHERE jid = %s", (jid,)).fetchone()
    assert inv["rcode"] == RC_EXPAND
    note = conn.execute("SELECT * FROM notes WHERE itemtype = 'task' AND itemid = %s",
                        ([str(jid), "1"],)).fetchone()
    assert "stdout:2:3" in note["notetext"]
    check_counters(conn, jid)


def test_restart_while_grafted_tasks_run(conn):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""),)))
    b = Blade(conn)
    b.claim()
    assert _graft(conn, b, jid, 1, "Task {g1} -cmds { RemoteCmd {g1} }\nTask {g2} -cmds { RemoteCmd {g2} }"
                  )[0] == "expanded"
    assert b.claim() == [(jid, 2), (jid, 3)]
    assert b.finish(jid, 2) == "done"
    assert ops.restart(conn, jid) == [1]
    # the running grafted command was stopped; nothing of the detached tasks is queued
    assert conn.execute("SELECT count(*) AS n FROM invocations WHERE jid = %s AND current", (jid,)
                        ).fetchone()["n"] == 0
    assert conn.execute("SELECT tid FROM ready WHERE jid = %s", (jid,)).fetchall() == [{"tid": 1}]
    assert conn.execute("SELECT slotsinuse FROM blades WHERE bladeid = %s", (b.id,)).fetchone()["slotsinuse"] == 0
    assert b.finish(jid, 3) == "stale"
    job = check_counters_attached(conn, jid)
    assert (job["numtasks"], job["numready"], job["maxtid"]) == (1, 1, 3)
    b.running.clear()
    assert b.claim() == [(jid, 1)]
    assert b.running[(jid, 1)].iid == 2
    assert _graft(conn, b, jid, 1, "Task {g3} -cmds { RemoteCmd {g3} }")[0] == "expanded"
    assert _titles(conn, jid) == {"gen": (1, "blocked"), "g3": (4, "ready")}
    job = check_counters_attached(conn, jid)
    assert (job["numtasks"], job["maxtid"], job["maxcid"]) == (2, 4, 4)


def check_counters_attached(conn, jid) -> dict:
    job = conn.execute("SELECT * FROM jobs WHERE jid = %s", (jid,)).fetchone()
    counts = {r["state"]: r["n"] for r in conn.execute(
        "SELECT state, count(*) AS n FROM tasks WHERE jid = %s AND attached GROUP BY state", (jid,))}
    for state in ("blocked", "ready", "active", "error", "done"):
        assert job[f"num{state}"] == counts.get(state, 0), (state, job, counts)
    assert job["numtasks"] == sum(counts.values())
    return job


def test_an_expand_command_run_again_replaces_what_it_grafted(conn):
    jid = _spool(conn, Task("gen", cmds=(Command(("gen",), expand=""), Command(("after",)))))
    b = Blade(conn)
    b.claim()
    assert _graft(conn, b, jid, 1, "Task {g1} -cmds { RemoteCmd {g1} }\nTask {g2} -cmds { RemoteCmd {g2} }"
                  )[0] == "expanded"
    assert b.claim() == [(jid, 2), (jid, 3)]
    assert b.finish(jid, 2) == "done" and b.finish(jid, 3, rcode=1) == "error"
    # retrying g2 resets gen (it depends on g2), so gen's expand command runs again after g2
    d.retry(conn, jid, [3])
    assert _titles(conn, jid) == {"gen": (1, "blocked"), "g1": (2, "done"), "g2": (3, "ready")}
    assert b.claim() == [(jid, 3)]
    assert b.finish(jid, 3) == "done"
    assert b.claim() == [(jid, 1)]
    assert b.running[(jid, 1)].cid == 1
    # its new output replaces the old: g1 and g2 are detached, g3 grafted
    assert _graft(conn, b, jid, 1, "Task {g3} -cmds { RemoteCmd {g3} }")[0] == "expanded"
    assert _titles(conn, jid) == {"gen": (1, "blocked"), "g3": (4, "ready")}
    assert [r["tid"] for r in conn.execute("SELECT tid FROM tasks WHERE jid = %s AND NOT attached ORDER BY tid",
                                           (jid,))] == [2, 3]
    job = check_counters_attached(conn, jid)
    assert (job["numtasks"], job["maxtid"], job["maxcid"]) == (2, 4, 5)
    assert b.claim() == [(jid, 4)]
    assert b.finish(jid, 4) == "done"
    assert b.claim() == [(jid, 1)]
    assert b.running[(jid, 1)].cid == 2  # "after"
    # printing nothing the next time detaches what it grafted, too
    d.retry(conn, jid, [1])
    assert b.running.pop((jid, 1)) and b.claim() == [(jid, 1)]
    c = b.running.pop((jid, 1))
    assert finish_expand(conn, c, b.id, 0, nodes=()) == ("done", None)
    assert _titles(conn, jid) == {"gen": (1, "ready")}
    check_counters_attached(conn, jid)


# --- reading expand output (no database) ------------------------------------------------


def test_parse_output_forms_and_errors():
    nodes = parse_output("TR_PROGRESS 10%\nTask {a} -cmds { RemoteCmd {a} }\nALF_EXIT_STATUS 0\n"
                         "Iterate i -from 1 -to 2 -template { Task {f$i} }\n", "stdout")
    assert [n.title for n in nodes] == ["a", "f1", "f2"]
    js = parse_output('[{"data": {"title": "j", "commands": [{"argv": ["x"], "service": "Linux"}]},'
                      ' "children": [{"data": {"title": "k"}}]}]', "out.json")
    assert [(n.title, [c.argv for c in n.cmds], [k.title for k in n.subtasks]) for n in js] == [
        ("j", [("x",)], ["k"])]
    assert [n.title for n in parse_output('{"data": {"title": "one"}}', "o.json")] == ["one"]
    for text, where in (("Task {a} -cmds {\n", "stdout:1:16"), ("\n\nJob -title {x}", "stdout:3:1"),
                        ("Task {a}\n  RemoteCmd {x}", "stdout:2:3"), ('[{"data": {"title": 1}}]', "stdout:1:"),
                        ('{"data": {', "stdout:1:11")):
        with pytest.raises(JobError) as exc:
            parse_output(text, "stdout")
        assert str(exc.value).startswith(where), (text, str(exc.value))
