"""Spooling a job into a real database (db/spool.py): rows, states, atomicity, speed."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from tractorcli.db import admin, spool
from tractorcli.db.connection import connect
from tractorcli.db.spool import SpoolOptions, effective_service, plan, spool_job
from tractorcli.jobs.model import Command, DirMap, Instance, Job, JobError, Task, resolve

C = Command
JOB_TABLES = ("jobs", "tasks", "task_edges", "commands", "ready")


def small_job(**changes) -> Job:
    """Nested tasks, an Instance, serial subtasks, empty tasks, cleanup and postscript."""
    job = Job(
        title="small", service="linux", avoid=("slow",), tags=("jt",), envkey=("shot=a",), atleast=2,
        crews=("lighting",), comment="c", metadata="m", editpolicy="strict", etalevel=2, maxactive=5,
        dirmaps=(DirMap("/a", "/b", "nfs"),), assignments=(("X", "1"), ("Y", "2"), ("X", "3")),
        cleanup=(C(("rm", "-rf", "/tmp/x"), runtype="cleanup"),),
        postscript=(C(("mail", "done"), runtype="post_done"), C(("mail", "any"))),
        subtasks=(
            Task("render", serialsubtasks=True, cmds=(C(("comp",)),), subtasks=(
                Task("A", cmds=(C(("a1",), service="pixarRender"), C(("a2",), retryrc=(3, 4)))),
                Instance("shared"),
                Task("B", cmds=(C(("b1",), tags=("bt", "jt"), envkey=("own",), atmost=8),),
                     cleanup=(C(("bclean",)),)),
                Task("E"),
            )),
            Task("shared", id="sh", preview=("it", "%h"), metadata="tm",
                 cmds=(C(("s1",), atleast=4, local=True, msg="hi", expand="", id="c1", minrunsecs=1.5,
                         resumewhile=("exitcode", "3"), resumepin=True, metrics="mx", metadata="cm"),)),
            Task("empty group", subtasks=(Task("e1"), Task("e2", subtasks=(Task("e3"),)))),
        ),
    )
    return job.copy(**changes) if changes else job


def rows(conn, table: str, jid: int | None = None, order: str = "1, 2, 3") -> list[dict]:
    where = "" if jid is None else f" WHERE jid = {int(jid)}"
    return conn.execute(f"SELECT * FROM {table}{where} ORDER BY {order}").fetchall()


def counts(conn) -> dict[str, int]:
    out = {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in JOB_TABLES}
    out["service_exprs"] = conn.execute("SELECT count(*) AS n FROM service_exprs").fetchone()["n"]
    return out


def foreign_key_orphans(conn) -> int:
    """Rows that break any foreign key of the job tables (the spool may skip the per-row checks)."""
    return conn.execute("""
        SELECT (SELECT count(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.jid = t.jid))
             + (SELECT count(*) FROM task_edges e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.jid = e.jid)
                   OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.jid = e.jid AND t.tid = e.child_tid))
             + (SELECT count(*) FROM commands c WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.jid = c.jid)
                   OR (c.svcid IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM service_exprs s WHERE s.svcid = c.svcid)))
             + (SELECT count(*) FROM ready r
                   WHERE NOT EXISTS (SELECT 1 FROM commands c WHERE c.jid = r.jid AND c.cid = r.cid)) AS n
    """).fetchone()["n"]


def check_consistent(conn, jid: int) -> dict:
    """Job counters match the task rows; ready rows match ready commands; FKs hold."""
    job = conn.execute("SELECT * FROM jobs WHERE jid = %s", (jid,)).fetchone()
    by_state = {r["state"]: r["n"] for r in conn.execute(
        "SELECT state, count(*) AS n FROM tasks WHERE jid = %s GROUP BY state", (jid,))}
    assert job["numtasks"] == sum(by_state.values()) == job["maxtid"]
    assert job["numready"] == by_state.get("ready", 0)
    assert job["numblocked"] == by_state.get("blocked", 0)
    assert job["numdone"] == by_state.get("done", 0)
    assert job["maxcid"] == conn.execute("SELECT count(*) AS n FROM commands WHERE jid = %s", (jid,)).fetchone()["n"]
    ready_cmds = conn.execute("SELECT count(*) AS n FROM commands WHERE jid = %s AND state = 'ready'",
                              (jid,)).fetchone()["n"]
    ready_rows = conn.execute("SELECT count(*) AS n FROM ready WHERE jid = %s", (jid,)).fetchone()["n"]
    assert ready_cmds == ready_rows == job["numready"]
    assert foreign_key_orphans(conn) == 0
    return job


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


# --- every table's rows for a small job ------------------------------------------


def test_small_job_rows_in_every_table(conn):
    r = resolve(small_job())
    jid = spool_job(conn, r, owner="joe", spoolhost="h1", spoolfile="/s/job.alf", spoolcwd="/s",
                    spooladdr="10.0.0.1", script="Job {}", scriptformat="alfred", extra_service="!Irix")
    assert jid == 1

    job = check_consistent(conn, jid)
    assert {k: job[k] for k in (
        "owner", "spoolhost", "spoolfile", "spoolcwd", "spooladdr", "title", "assignments", "tier", "priority",
        "crews", "projects", "tags", "service", "avoid", "envkey", "editpolicy", "minslots", "maxslots",
        "etalevel", "afterjids", "pausetime", "aftertime", "numtasks", "numblocked", "numready", "numdone",
        "maxtid", "maxcid", "comment", "metadata", "maxactive", "serialsubtasks", "dirmap", "phase",
        "script", "scriptformat", "stoptime")} == {
        "owner": "joe", "spoolhost": "h1", "spoolfile": "/s/job.alf", "spoolcwd": "/s", "spooladdr": "10.0.0.1",
        "title": "small", "assignments": {"X": "3", "Y": "2"}, "tier": "default", "priority": 1.0,
        "crews": ["lighting"], "projects": ["default"], "tags": ["jt"], "service": "(linux) && (!Irix)",
        "avoid": ["slow"], "envkey": ["shot=a"], "editpolicy": "strict", "minslots": 2, "maxslots": None,
        "etalevel": 2, "afterjids": [], "pausetime": None, "aftertime": None,
        "numtasks": 9, "numblocked": 3, "numready": 2, "numdone": 4, "maxtid": 9, "maxcid": 9,
        "comment": "c", "metadata": "m", "maxactive": 5, "serialsubtasks": False,
        "dirmap": [["/a", "/b", "nfs"]], "phase": "live", "script": "Job {}", "scriptformat": "alfred",
        "stoptime": None}

    cols = ("tid", "title", "id", "parent_tid", "position", "pending", "state", "serialsubtasks")
    tasks = [tuple(t[c] for c in cols) for t in rows(conn, "tasks", jid)]
    assert tasks == [
        (1, "render", None, None, 0, 4, "blocked", True),  # A, B, E + Instance of "shared"
        (2, "A", None, 1, 0, 0, "ready", False),
        (3, "B", None, 1, 1, 1, "blocked", False),  # after A (serial)
        (4, "E", None, 1, 2, 1, "blocked", False),  # empty, but after B (serial)
        (5, "shared", "sh", None, 1, 0, "ready", False),
        (6, "empty group", None, None, 2, 0, "done", False),  # cascade: e1, e3 -> e2 -> here
        (7, "e1", None, 6, 0, 0, "done", False),
        (8, "e2", None, 6, 1, 0, "done", False),
        (9, "e3", None, 8, 0, 0, "done", False),
    ]
    t5 = rows(conn, "tasks", jid)[4]
    assert t5["preview"] == ["it", "%h"] and t5["metadata"] == "tm" and t5["chaser"] == []
    assert t5["readytime"] == job["spooltime"] and rows(conn, "tasks", jid)[0]["readytime"] is None

    # the tree is tasks.parent_tid; task_edges holds the Instance edges
    assert [(e["parent_tid"], e["child_tid"], e["kind"]) for e in rows(conn, "task_edges", jid)] == [
        (1, 5, "instance")]

    svc = {s["expr"]: s["svcid"] for s in rows(conn, "service_exprs", order="1")}
    assert set(svc) == {"linux && !irix && !slow", "linux && pixarrender && !irix && !slow"}
    plain = svc["linux && !irix && !slow"]
    cols = ("cid", "tid", "position", "argv", "runtype", "state", "svcid", "tags", "envkey", "minslots",
            "maxslots", "retryrcodes")
    cmds = [tuple(c[k] for k in cols) for c in rows(conn, "commands", jid)]
    env, jt = ["shot=a"], ["jt"]
    assert cmds == [
        (1, 1, 0, ["comp"], "regular", "blocked", plain, jt, env, 2, None, []),
        (2, 2, 0, ["a1"], "regular", "ready", svc["linux && pixarrender && !irix && !slow"], jt, env,
         2, None, []),
        (3, 2, 1, ["a2"], "regular", "blocked", plain, jt, env, 2, None, [3, 4]),
        (4, 3, 0, ["b1"], "regular", "blocked", plain, ["bt", "jt"], ["own"], 2, 8, []),
        (5, 3, 1, ["bclean"], "cleanup", "blocked", plain, jt, env, 2, None, []),
        (6, 5, 0, ["s1"], "regular", "ready", plain, jt, env, 4, None, []),
        (7, 0, 0, ["rm", "-rf", "/tmp/x"], "cleanup", "blocked", plain, jt, env, 2, None, []),
        (8, 0, 1, ["mail", "done"], "post_done", "blocked", plain, jt, env, 2, None, []),
        (9, 0, 2, ["mail", "any"], "post_always", "blocked", plain, jt, env, 2, None, []),
    ]
    c6 = rows(conn, "commands", jid)[5]
    assert {k: c6[k] for k in ("local", "msg", "expand", "id", "refersto", "minrunsecs", "maxrunsecs",
                               "resumewhile", "resumepin", "metrics", "metadata", "service", "samehost")} == {
        "local": True, "msg": "hi", "expand": "", "id": "c1", "refersto": None, "minrunsecs": 1.5,
        "maxrunsecs": None, "resumewhile": ["exitcode", "3"], "resumepin": True, "metrics": "mx",
        "metadata": "cm", "service": "", "samehost": False}
    assert rows(conn, "commands", jid)[1]["service"] == "pixarRender"

    ready = [(r["cid"], r["tid"], r["svcid"], r["tierpri"], r["priority"], r["local"], r["spoolhost"],
              r["readytime"] == job["spooltime"]) for r in rows(conn, "ready", jid)]
    assert ready == [(2, 2, cmds[1][6], 50, 1.0, False, "h1", True), (6, 5, plain, 50, 1.0, True, "h1", True)]


def test_deleting_the_job_still_cascades(conn):
    jid = spool_job(conn, resolve(small_job()), owner="joe")
    conn.execute("DELETE FROM jobs WHERE jid = %s", (jid,))
    assert {t: n for t, n in counts(conn).items() if t != "service_exprs"} == dict.fromkeys(JOB_TABLES, 0)


# --- initial states ---------------------------------------------------------------


def test_plan_without_a_database():
    job = Job(serialsubtasks=True, subtasks=(
        Task("first, empty"),                                   # 1: done at once
        Task("second", cmds=(C(("x",)),)),                      # 2: released by 1 -> ready
        Task("lib", subtasks=(Task("leaf", cmds=(C(("y",)),)),)),  # 3: waits for 2 (serial) and 4;
        Task("third", subtasks=(Instance("lib"),)),             # 4 is under lib: gated by 2 too
    ))                                                          # 5: waits for 3 (serial) and lib
    p = plan(resolve(job))
    assert [p.state_name(t) for t in range(1, 6)] == ["done", "ready", "blocked", "blocked", "blocked"]
    assert p.pending[1:] == [0, 0, 2, 1, 2]
    assert (p.numready, p.numdone, p.numblocked) == (1, 1, 3)


def test_a_serial_deadlock_is_refused():
    # "third" waits on "lib", whose serial turn comes after "third": it would never run
    job = Job(serialsubtasks=True, subtasks=(
        Task("third", subtasks=(Instance("lib"),)),
        Task("lib", subtasks=(Task("leaf", cmds=(C(("y",)),)),)),
    ))
    with pytest.raises(JobError, match="dependency cycle: task 'leaf' waits"):
        resolve(job)


def test_a_serial_predecessor_gates_the_whole_next_subtree():
    frames = tuple(Task(f"frame {i}", cmds=(C(("mantra", str(i))),)) for i in range(3))
    job = Job(serialsubtasks=True, subtasks=(
        Task("setup"),                                        # 1: empty, done at spool
        Task("ifd", cmds=(C(("hbatch",)),)),                  # 2: ready once 1 is done
        Task("render", subtasks=(Task("batch", subtasks=frames),)),  # 3..7: all wait for 2
    ))
    p = plan(resolve(job))
    assert [p.state_name(t) for t in range(1, 8)] == ["done", "ready"] + ["blocked"] * 5
    assert p.pending[3:] == [2, 4, 1, 1, 1]  # render: gate + batch; batch: gate + 3 frames; frames: gate


def test_empty_tasks_cascade_through_instances_and_serial_chains(conn):
    job = Job(subtasks=(
        Task("top", cmds=(C(("t",)),), subtasks=(Instance("x"), Instance("x"), Task("y"))),  # Instance twice
        Task("s", serialsubtasks=True, subtasks=(Task("s1"), Task("s2"), Task("s3", cmds=(C(("z",)),)),
                                                 Task("s4"))),
        Task("x", subtasks=(Task("x1", subtasks=(Task("x2"),)),)),
    ))
    jid = spool_job(conn, resolve(job), owner="o")
    got = {t["title"]: (t["state"], t["pending"]) for t in rows(conn, "tasks", jid)}
    assert got == {
        "top": ("ready", 0),  # x (Instance, counted once) and y finished at spool
        "y": ("done", 0),
        "s": ("blocked", 2),  # s3 and s4 to go
        "s1": ("done", 0), "s2": ("done", 0), "s3": ("ready", 0), "s4": ("blocked", 1),
        "x": ("done", 0), "x1": ("done", 0), "x2": ("done", 0),
    }
    assert [(e["parent_tid"], e["child_tid"], e["kind"]) for e in rows(conn, "task_edges", jid)] == [
        (1, 8, "instance")]
    job_row = check_consistent(conn, jid)
    assert (job_row["numready"], job_row["numblocked"], job_row["numdone"]) == (2, 2, 6)


def test_leaves_ready_parents_blocked_and_serial_siblings_blocked(conn):
    leaves = tuple(Task(f"f{i}", cmds=(C(("r", str(i))), C(("post", str(i))))) for i in range(5))
    job = Job(subtasks=(Task("par", cmds=(C(("m",)),), subtasks=leaves),
                        Task("ser", serialsubtasks=True, subtasks=leaves)))
    jid = spool_job(conn, resolve(job), owner="o")
    t = rows(conn, "tasks", jid)
    assert [(x["title"], x["state"], x["pending"]) for x in t] == (
        [("par", "blocked", 5)] + [(f"f{i}", "ready", 0) for i in range(5)]
        + [("ser", "blocked", 5), ("f0", "ready", 0)] + [(f"f{i}", "blocked", 1) for i in range(1, 5)])
    c = rows(conn, "commands", jid)
    ready_cids = [x["cid"] for x in c if x["state"] == "ready"]
    assert ready_cids == [2, 4, 6, 8, 10, 12]  # first command of each ready task only
    assert [r["cid"] for r in rows(conn, "ready", jid)] == ready_cids
    check_consistent(conn, jid)


def test_a_job_done_at_spool_stays_live_with_everything_counted_done(conn):
    jid = spool_job(conn, resolve(Job(subtasks=(Task("a", subtasks=(Task("b"),)),),
                                      postscript=(C(("echo",)),))), owner="o")
    job = check_consistent(conn, jid)
    assert (job["phase"], job["numdone"], job["numtasks"], job["stoptime"]) == ("live", 2, 2, None)
    assert rows(conn, "ready", jid) == []
    assert [c["state"] for c in rows(conn, "commands", jid)] == ["blocked"]


def test_a_job_without_tasks(conn):
    jid = spool_job(conn, resolve(Job(title="nothing")), owner="o")
    job = check_consistent(conn, jid)
    assert (job["numtasks"], job["maxcid"]) == (0, 0)


# --- service expressions -----------------------------------------------------------


def test_effective_service_text():
    assert effective_service("", ("", ""), ()) == ""
    # service.combine's canonical text: keys in lower case, && only, sorted, each once
    assert effective_service("pixarRender", ("", ""), ()) == "pixarrender"
    assert effective_service(" a ", ("b", ""), ("x", "y")) == "a && b && !x && !y"
    assert effective_service("a", ("a", "a || b"), ("x", "x")) == "a && (a || b) && !x"
    assert effective_service("", ("", ""), ("slow",)) == "!slow"
    assert effective_service("B, a", ("a && b", ""), ()) == "a && b"


def test_service_expressions_are_stored_once(conn):
    def job(title):
        return Job(title=title, service="linux", subtasks=tuple(
            Task(f"t{i}", cmds=(C(("x",), service="pixarRender" if i % 2 else ""),)) for i in range(50)))

    jid1 = spool_job(conn, resolve(job("one")), owner="o")
    before = rows(conn, "service_exprs", order="1")
    assert [s["expr"] for s in before] == ["linux", "linux && pixarrender"]
    jid2 = spool_job(conn, resolve(job("two")), owner="o", extra_service="fast")
    after = rows(conn, "service_exprs", order="1")
    assert after[:2] == before  # existing ones kept, not rewritten, ids stable
    assert [s["expr"] for s in after[2:]] == ["fast && linux", "fast && linux && pixarrender"]
    svc = {s["expr"]: s["svcid"] for s in after}
    ids1 = {c["svcid"] for c in rows(conn, "commands", jid1)}
    ids2 = {c["svcid"] for c in rows(conn, "commands", jid2)}
    assert ids1 == {svc["linux"], svc["linux && pixarrender"]}
    assert ids2 == {svc["fast && linux"], svc["fast && linux && pixarrender"]}
    assert {r["svcid"] for r in rows(conn, "ready", jid2)} == ids2
    spool_job(conn, resolve(job("three")), owner="o")
    assert len(rows(conn, "service_exprs", order="1")) == 4
    # no service at all: the empty expression, stored once like any other
    spool_job(conn, resolve(Job(subtasks=(Task("t", cmds=(C(("x",)),)),))), owner="o")
    assert "" in {s["expr"] for s in rows(conn, "service_exprs", order="1")}
    assert conn.execute("SELECT count(*) AS n FROM commands WHERE svcid IS NULL").fetchone()["n"] == 0


# --- spool-time overrides ----------------------------------------------------------


def test_the_jobs_own_attributes_and_the_defaults(conn):
    after = dt.datetime(2030, 6, 23, 13, 45, tzinfo=dt.timezone.utc)
    job = small_job(priority=7.0, tier="rush", projects=("show",), after=after, afterjids=(3, 4), paused=True,
                    maxactive=2, spoolcwd="/from/job")
    jid = spool_job(conn, resolve(job), owner="o", spoolcwd="/arg", default_priority=2.0)
    j = rows(conn, "jobs", jid)[0]
    assert (j["priority"], j["tier"], j["projects"], j["aftertime"], j["afterjids"], j["maxactive"],
            j["spoolcwd"]) == (7.0, "rush", ["show"], after, [3, 4], 2, "/from/job")
    assert j["pausetime"] == j["spooltime"]
    # a paused job still has its ready rows: dispatch checks pausetime
    assert [(r["tierpri"], r["priority"]) for r in rows(conn, "ready", jid)] == [(99, 7.0), (99, 7.0)]

    jid = spool_job(conn, resolve(small_job(spoolcwd="")), owner="o", spoolcwd="/arg", default_priority=2.0)
    j = rows(conn, "jobs", jid)[0]
    assert (j["priority"], j["tier"], j["projects"], j["pausetime"], j["spoolcwd"]) == (
        2.0, "default", ["default"], None, "/arg")


def test_spool_time_overrides_win(conn):
    job = small_job(priority=7.0, tier="rush", projects=("show",), afterjids=(3,), paused=True, maxactive=2,
                    after=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    later = dt.datetime(2031, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    opts = SpoolOptions(owner="o", paused=False, priority=9.5, tier="admin", projects=("a", "b"),
                        aftertime=later, afterjids=(1, 2), maxactive=7)
    jid = spool_job(conn, resolve(job), opts)
    j = rows(conn, "jobs", jid)[0]
    assert (j["pausetime"], j["priority"], j["tier"], j["projects"], j["aftertime"], j["afterjids"],
            j["maxactive"]) == (None, 9.5, "admin", ["a", "b"], later, [1, 2], 7)
    assert {(r["tierpri"], r["priority"]) for r in rows(conn, "ready", jid)} == {(111, 9.5)}
    # keywords replace fields of a given SpoolOptions; a tier's name matches in any case
    jid = spool_job(conn, resolve(job), opts, tier="Batch", paused=True)
    j = rows(conn, "jobs", jid)[0]
    assert (j["tier"], j["pausetime"] is not None) == ("Batch", True)
    assert {r["tierpri"] for r in rows(conn, "ready", jid)} == {10}
    # a tier the site does not have is refused (test_limits.py: the message), and nothing is spooled
    from tractorcli.errors import BadInput

    before = conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]
    with pytest.raises(BadInput, match="unknown tier 'overnight'"):
        spool_job(conn, resolve(job), opts, tier="overnight")
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == before


def test_a_naive_after_time_is_local_time(conn):
    naive = dt.datetime(2030, 6, 23, 13, 45)
    jid = spool_job(conn, resolve(small_job(after=naive)), owner="o")
    assert rows(conn, "jobs", jid)[0]["aftertime"] == naive.astimezone()


# --- atomicity -----------------------------------------------------------------------


def test_a_failure_half_way_leaves_no_trace(conn, monkeypatch):
    first = spool_job(conn, resolve(small_job()), owner="o")
    before = counts(conn)
    real = spool._command_rows

    def failing(*args):
        for i, row in enumerate(real(*args)):
            if i == 4:
                raise RuntimeError("disk on fire")
            yield row

    monkeypatch.setattr(spool, "_command_rows", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        spool_job(conn, resolve(small_job(service="brand-new")), owner="o")
    assert counts(conn) == before  # no job, task, edge, command, ready row or service expression
    assert conn.info.transaction_status.name == "IDLE"
    # The failed spool spent a jid (sequences are not transactional): a gap, never a reuse.  The
    # job counter says the last jid used.
    assert admin.job_counter(conn) == first
    monkeypatch.setattr(spool, "_command_rows", real)
    assert spool_job(conn, resolve(small_job()), owner="o") == first + 2


_KILLED_CHILD = textwrap.dedent("""
    import sys
    from tractorcli.config import load_settings
    from tractorcli.db import spool
    from tractorcli.db.connection import connect
    from tractorcli.jobs.model import Command, Job, Task, resolve
    import dataclasses

    settings = load_settings(sys.argv[1])
    settings = dataclasses.replace(settings, db=dataclasses.replace(settings.db, dbname=sys.argv[2]))
    n = int(sys.argv[3])
    job = Job(subtasks=tuple(Task(f"t{i}", cmds=(Command(("render", str(i)), service="huge"),))
                             for i in range(n)))
    real = spool._command_rows

    def stalling(*args):
        for i, row in enumerate(real(*args)):
            if i == n // 2:
                print(conn.info.backend_pid, flush=True)
                sys.stdin.read()  # wait here, mid-COPY, to be killed
            yield row

    spool._command_rows = stalling
    with connect(settings, autocommit=True) as conn:
        spool.spool_job(conn, resolve(job), owner="doomed")
""")


def test_a_spooler_killed_mid_copy_leaves_no_trace(db_settings, shared_site, conn):
    before = counts(conn)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(shared_site[0]), db_settings.db.dbname, "200000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(child.stdout.readline())  # tasks and edges copied, commands half way
        act = conn.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        assert act["query"].lstrip().replace('"', "").startswith("COPY commands") and act["state"] == "active"
        assert counts(conn) == before  # nothing visible while uncommitted
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()["n"]:
        assert time.monotonic() < deadline, "the server kept the dead spooler's session"
        time.sleep(0.05)
    assert counts(conn) == before
    jid = spool_job(conn, resolve(small_job()), owner="o")  # nothing left locked; the jid was spent
    assert jid == admin.job_counter(conn) and jid >= 2
    check_consistent(conn, jid)


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_spools_get_distinct_jids_and_complete_jobs(db_settings):
    n_threads, n_tasks = 8, 2000
    jobs = [resolve(Job(title=f"job{k}", service=f"svc{k % 3}", subtasks=tuple(
        Task(f"t{i}", cmds=(C(("r", str(i)), service="shared"),)) for i in range(n_tasks))))
        for k in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    got: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(k):
        try:
            with connect(db_settings, autocommit=True) as c:
                barrier.wait(30)
                got[k] = spool_job(c, jobs[k], owner=f"user{k}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(got.values()) == list(range(1, n_threads + 1))
    with connect(db_settings, autocommit=True) as c:
        for k, jid in got.items():
            job = check_consistent(c, jid)
            assert (job["title"], job["owner"], job["numtasks"], job["numready"]) == (
                f"job{k}", f"user{k}", n_tasks, n_tasks)
        assert sorted(s["expr"] for s in rows(c, "service_exprs", order="1")) == [
            "shared && svc0", "shared && svc1", "shared && svc2"]


# --- a role that may not skip the per-row foreign key checks --------------------------


def test_a_plain_role_spools_the_same_rows_with_the_checks(conn):
    role = f"spooler_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}")
    try:
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        with conn.transaction(force_rollback=True):
            assert spool._fk_checks_off(conn) == "origin"  # the test server's user is a superuser
        fast = spool_job(conn, resolve(small_job()), owner="o")
        conn.execute(f"SET ROLE {role}")
        with conn.transaction(force_rollback=True):
            assert spool._fk_checks_off(conn) is None
        slow = spool_job(conn, resolve(small_job()), owner="o")
        conn.execute("RESET ROLE")

        def table(t):
            skip = {"jid", "spooltime", "statetime", "readytime", "pausetime"}
            return [{k: v for k, v in r.items() if k not in skip} for r in rows(conn, t)]

        for t in JOB_TABLES:  # the first job's rows, then the second's: the same
            both = table(t)
            assert both[:len(both) // 2] == both[len(both) // 2:], t
        check_consistent(conn, slow)
        assert slow == fast + 1
        # the checks are really on for such a role: a dangling row is refused
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(Exception, match="foreign key"):
            conn.execute("INSERT INTO tasks (jid, tid) VALUES (999, 1)")
    finally:
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_inside_a_callers_transaction_the_checks_come_back_on(conn):
    import psycopg

    with conn.transaction():
        jid = spool_job(conn, resolve(small_job()), owner="o")
        assert conn.execute("SELECT current_setting('session_replication_role') AS r").fetchone()["r"] == "origin"
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("INSERT INTO tasks (jid, tid) VALUES (999, 1)")
    check_consistent(conn, jid)


# --- size -------------------------------------------------------------------------------


def test_a_100k_task_job(conn):
    n = 100_000
    job = Job(title="big", subtasks=(Task("all", subtasks=tuple(
        Task(f"frame {i}", cmds=(C(("prman", "-Progress", f"/shots/a/frame.{i:04d}.rib"),
                                   service="pixarRender", tags=("prman",)),)) for i in range(1, n + 1))),))
    r = resolve(job)
    jid = spool_job(conn, r, owner="o")  # its speed is measured in bench/bench_spool.py
    job_row = check_consistent(conn, jid)
    assert (job_row["numtasks"], job_row["numready"], job_row["numblocked"], job_row["maxcid"]) == (
        n + 1, n, 1, n)
    assert conn.execute("SELECT count(*) AS n FROM task_edges WHERE jid = %s", (jid,)).fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM tasks WHERE jid = %s AND parent_tid = 1",
                        (jid,)).fetchone()["n"] == n


def test_a_long_script_is_stored_whole(conn):
    """A script over 1 MiB goes by COPY in pieces, compressed with lz4 where the server has it:
    stored as given, with characters of every UTF-8 length, twice in one caller's transaction."""
    piece = "# \u00e9 \u6f22 \U0001f3ac frame\n"
    long = "Job -title {long} -subtasks {}\n" + piece * (1_200_000 // len(piece))
    assert len(long) > spool._COPY_SCRIPT and not long.isascii()
    scripts = (long, long + "x", "#" * (spool._COPY_SCRIPT + 10))
    with conn.transaction():
        jids = [spool_job(conn, resolve(small_job()), owner="o", script=s, scriptformat="alfred") for s in scripts]
    lz4 = conn.execute("SELECT 'lz4' = ANY(enumvals) AS y FROM pg_settings "
                       "WHERE name = 'default_toast_compression'").fetchone()["y"]
    for jid, s in zip(jids, scripts):
        row = conn.execute("SELECT script, pg_column_compression(script) AS how FROM jobs WHERE jid = %s",
                           (jid,)).fetchone()
        assert row["script"] == s and row["how"] == ("lz4" if lz4 else "pglz")
        check_consistent(conn, jid)
    assert conn.execute("SELECT count(*) AS n FROM pg_temp.spool_script").fetchone()["n"] == 0


def test_bad_service_expressions_are_refused_with_their_place(conn):
    from tractorcli.errors import BadInput
    from tractorcli.jobs.alfred import parse

    before = counts(conn)
    job = parse("Job -subtasks {\n Task {a} -cmds {\n  RemoteCmd {x} -service {linux &&}\n }\n}\n", "bad.alf")
    with pytest.raises(JobError) as e:
        spool_job(conn, resolve(job), owner="o")
    assert str(e.value) == ("bad.alf:3:3: RemoteCmd -service 'linux &&': column 9: "
                            "expected a key, a pattern or '('")
    job = parse("Job -service {(a} -subtasks {Task {a} -cmds {RemoteCmd {x}}}", "j.alf")
    with pytest.raises(JobError, match=r"^j.alf:1:1: Job -service '\(a': column 3"):
        spool_job(conn, resolve(job), owner="o")
    with pytest.raises(BadInput, match=r"--svckey '!!': column 3"):
        spool_job(conn, resolve(small_job()), owner="o", extra_service="!!")
    assert counts(conn) == before  # nothing was written
