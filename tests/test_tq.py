"""tq end to end: the installed program against a real job database.

Each test has its own database (the session template's copy) and a config
dir pointing at it; jobs are spooled with db.spool.spool_job and blades are
simulated with db.dispatch (test_dispatch.Blade).  USER is set for each run,
so `mine` and the ownership checks see a known user.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
from test_blade import Site, alive, clean_env, program, sh
from test_dispatch import Blade

from tractorcli.jobs.model import Command, Task

TQ = program("tq")


def C(*argv, **kw) -> Command:
    return Command(tuple(argv), **kw)


class TqSite(Site):
    def tq(self, *args: str, input: str | None = None, user: str = "ann", status: int | None = 0):
        env = dict(clean_env(), USER=user, COLUMNS="200", TZ="UTC")
        r = subprocess.run([TQ, "--configdir", str(self.cfg), *args], input=input if input is not None else "",
                           capture_output=True, text=True, env=env, timeout=30, check=False)
        if status is not None:
            assert r.returncode == status, f"tq {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def job(self, n: int = 2, owner: str = "ann", title: str = "test", **kw) -> int:
        return self.spool(*(Task(f"t{i}", cmds=(C("echo", str(i)),)) for i in range(1, n + 1)),
                          owner=owner, title=title, **kw)

    def states(self, jid: int) -> list[str]:
        return [r["state"] for r in self.all("SELECT state FROM tasks WHERE jid = %s ORDER BY tid", jid)]

    def jobrow(self, jid: int) -> dict:
        return self.one("SELECT * FROM jobs WHERE jid = %s", jid)


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


# --- listings ------------------------------------------------------------------------


def test_jobs_plain_format(site):
    j1 = site.job(2, title="first")
    j2 = site.job(3, owner="bob", title="second")
    out = site.tq("jobs").stdout.splitlines()
    assert out[0].split() == ["jid", "user", "title", "pri", "blkd", "redy", "actv", "err", "done", "spooled"]
    assert set(out[1].replace(" ", "")) == {"="}
    # one divider per column, as wide as the header above it or the values below
    assert [len(w) for w in out[1].split(" ")] == [max(len(h), 1) for h in out[1].split(" ")]
    assert len(out[0]) <= len(out[1])
    assert len(out) == 4
    # sorted by user, then spool time; zero counts blank; numbers right-aligned
    assert out[2].split()[:5] == [str(j1), "ann", "first", "1", "2"]
    assert out[3].split()[:5] == [str(j2), "bob", "second", "1", "3"]
    widths = [len(w) for w in out[1].split(" ")]
    cells = []
    pos = 0
    for w in widths:
        cells.append(out[2][pos:pos + w])
        pos += w + 1
    assert cells[0] == str(j1).rjust(widths[0])
    assert cells[1] == "ann".ljust(widths[1])
    assert cells[5] == "2".rjust(widths[5])  # redy
    assert cells[4].strip() == ""  # blkd: 0 shows blank
    zeros = site.tq("--zeros", "jobs", "--nh").stdout.splitlines()
    assert zeros[0].split()[3:9] == ["1", "0", "2", "0", "0", "0"]


def test_machine_forms_have_stable_keys(site):
    jid = site.job(2)
    rows = json.loads(site.tq("jobs", "--json").stdout)
    assert list(rows[0]) == ["jid", "user", "title", "pri", "numblocked", "numready", "numactive", "numerror",
                             "numdone", "spooled"]
    assert rows[0]["jid"] == jid and rows[0]["numready"] == 2 and rows[0]["numblocked"] == 0
    assert "T" in rows[0]["spooled"]  # ISO 8601
    lines = site.tq("--json", "tasks", str(jid)).stdout
    tasks = json.loads(lines)
    assert [t["tid"] for t in tasks] == [1, 2]
    assert list(tasks[0]) == ["jid", "tid", "user", "title", "state", "statetime", "Blade.name"]
    nd = [json.loads(x) for x in site.tq("tasks", "--ndjson", str(jid)).stdout.splitlines()]
    assert nd == tasks
    got = list(csv.reader(io.StringIO(site.tq("commands", "--csv", str(jid)).stdout)))
    assert got == [["jid", "tid", "cid", "argv"], [str(jid), "1", "1", "echo,1"], [str(jid), "2", "2", "echo,2"]]
    assert site.tq("jobs", "--json", "user=nobody").stdout.strip() == "[]"


def test_columns_sort_limit_distinct(site):
    a = site.job(1, title="a")
    b = site.job(3, title="b", owner="bob")
    c = site.job(2, title="c")
    site.conn.execute("UPDATE jobs SET priority = 5 WHERE jid = %s", (b,))
    out = site.tq("jobs", "-c", "jid,title", "-s", "-pri", "--nh").stdout.split()
    assert out[:2] == [str(b), "b"]
    out = site.tq("jobs", "-c", "+numtasks", "--json").stdout
    assert "numtasks" in json.loads(out)[0]
    out = json.loads(site.tq("jobs", "-c", "-spooled", "-c", "-title", "--json").stdout)
    assert "spooled" not in out[0] and "title" not in out[0] and "jid" in out[0]
    assert len(site.tq("jobs", "--limit", "2", "--nh").stdout.splitlines()) == 2
    assert len(site.tq("jobs", "--limit", "0", "--nh").stdout.splitlines()) == 3
    # the site's cap when --limit is not given (tractor.toml SiteMaxListReplyCount)
    toml = site.cfg / "tractor.toml"
    toml.write_text(toml.read_text() + "SiteMaxListReplyCount = 2\n")
    r = site.tq("jobs", "--nh")
    assert len(r.stdout.splitlines()) == 2 and "showing the first 2 jobs; --limit 0 shows all" in r.stderr
    assert len(site.tq("jobs", "--limit", "3", "--nh").stdout.splitlines()) == 3
    toml.write_text(toml.read_text().replace("= 2", "= 0"))  # 0: no cap
    assert len(site.tq("jobs", "--nh").stdout.splitlines()) == 3
    out = site.tq("jobs", "-d", "user", "--nh").stdout.split()
    assert out == ["ann", "bob"]
    out = site.tq("jobs", "--delimiter", "|", "-c", "jid,user,title", "--nh").stdout.splitlines()
    assert out[0] == f"{a}|ann|a"
    assert site.tq("jobs", "--nf", "-c", "jid,title", "--nh", "-s", "jid").stdout.splitlines() == \
        [f"{a} a", f"{b} b", f"{c} c"]
    raw = site.tq("--raw", "jobs", "-c", "jid,spooled", "--nh", str(a)).stdout.split()
    assert "T" in raw[1]
    assert site.tq("--tf", "%Y", "jobs", "-c", "spooled", "--nh", str(a)).stdout.strip().isdigit()


def test_mine_positional_and_clauses(site):
    a = site.job(2)
    b = site.job(2, owner="bob")
    ids = lambda r: [int(x.split()[0]) for x in r.stdout.splitlines()]
    assert ids(site.tq("jobs", "mine", "--nh")) == [a]
    assert ids(site.tq("jobs", "mine", "--nh", user="bob")) == [b]
    assert ids(site.tq("jobs", str(a), str(b), "--nh")) == [a, b]
    rows = json.loads(site.tq("tasks", "--json", str(b), "2").stdout)
    assert [(r["jid"], r["tid"]) for r in rows] == [(b, 2)]
    bl = Blade(site.conn, slots=1)
    (jid, tid), = bl.claim()
    bl.finish(jid, tid, 1)
    rows = json.loads(site.tq("tasks", "--json", f"jid={jid} and error").stdout)
    assert [(r["jid"], r["tid"], r["state"]) for r in rows] == [(jid, tid, "error")]
    r = site.tq("tasks", "jid=999", status=0)
    assert r.stdout == "" and r.stderr.strip() == "no tasks found"
    assert site.tq("jobs", "user=zed").stderr.strip() == "no jobs found"


def test_errors_are_one_line(site):
    r = site.tq("jobs", "bogus=3", status=11)
    assert r.stderr.count("\n") == 1 and "bogus" in r.stderr and "column" in r.stderr
    r = site.tq("jobs", "-c", "nosuch", status=11)
    assert "nosuch" in r.stderr and r.stderr.count("\n") == 1
    r = site.tq("jobs", "title like '('", status=11)
    assert r.stderr.count("\n") == 1
    assert site.tq("nosuchcmd", status=2).stderr.startswith("tq: ")


def test_other_listings(site):
    jid = site.job(1)
    bl = Blade(site.conn, name="b1", slots=1)
    bl.claim()
    rows = json.loads(site.tq("blades", "--json").stdout)
    assert [r["name"] for r in rows] == ["b1"]
    rows = json.loads(site.tq("invos", "--json", str(jid)).stdout)
    assert rows[0]["Blade.name"] == "b1" and rows[0]["iid"] == 1
    assert json.loads(site.tq("cmds", "--json", str(jid)).stdout)[0]["argv"] == ["echo", "1"]
    params = {r["name"]: r["value"] for r in json.loads(site.tq("params", "--json").stdout)}
    assert "jidcounter" in params
    assert site.tq("notes").stderr.strip() == "no notes found"


# --- task operations ------------------------------------------------------------------


def fail_one(site, jid: int, rcode: int = 1) -> Blade:
    """A blade runs job `jid`'s first ready task and it fails; the others stay ready."""
    bl = Blade(site.conn, slots=1)
    (j, t), = bl.claim()
    assert j == jid
    bl.finish(j, t, rcode)
    return bl


def test_retry_with_yes_and_the_row_and_word(site):
    jid = site.job(2)
    fail_one(site, jid)
    assert site.states(jid) == ["error", "ready"]
    r = site.tq("--yes", "retry", f"jid={jid} and error")
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{jid} 1 ann t1 error") and lines[0].endswith(" retried")
    assert site.states(jid) == ["ready", "ready"]
    assert site.jobrow(jid)["numerror"] == 0


def test_prompts_read_stdin_empty_is_yes(site):
    jid = site.job(3)
    bl = Blade(site.conn, slots=3)
    for j, t in bl.claim():
        bl.finish(j, t, 1)
    assert site.states(jid) == ["error"] * 3
    r = site.tq("skip", str(jid), "1", "2", "3", input="\nn\nyes\n")
    assert r.stderr.count("Skip this task? yes/no [y]: ") == 3
    assert site.states(jid) == ["done", "error", "done"]
    assert [ln.split()[-1] for ln in r.stdout.splitlines() if ln.endswith("skipped")] == ["skipped", "skipped"]
    # end of input is no
    site.tq("retry", str(jid), "2", input="")
    assert site.states(jid) == ["done", "error", "done"]


def test_force_is_needed_for_other_users_jobs(site):
    jid = site.job(1, owner="bob")
    fail_one(site, jid)
    r = site.tq("--yes", "retry", str(jid), "1", status=8)
    assert "not job owner; use tq --force" in r.stderr
    assert site.states(jid) == ["error"]
    site.tq("--force", "--yes", "retry", "error")
    assert site.states(jid) == ["ready"]
    assert site.tq("--yes", "retry", "error").stderr.strip() == "no tasks found"


def test_resume_and_kill(site):
    jid = site.job(2)
    bl = Blade(site.conn, slots=2)
    bl.claim()
    assert site.states(jid) == ["active", "active"]
    site.tq("kill", "--yes", str(jid), "1")
    assert site.states(jid) == ["error", "active"]
    site.tq("resume", "--yes", str(jid), "1")
    assert site.states(jid) == ["ready", "active"]
    assert site.one("SELECT recover FROM tasks WHERE jid = %s AND tid = 1", jid)["recover"] is True


def test_an_operation_without_a_clause_prints_its_help(site):
    r = site.tq("retry", status=2)
    assert "Usage:" in r.stdout and "retry" in r.stdout


# --- job operations ------------------------------------------------------------------


def test_pause_unpause_delay_undelay_lock(site):
    jid = site.job(1)
    assert site.tq("--yes", "pause", str(jid)).stdout.strip().endswith("paused")
    assert site.jobrow(jid)["pausetime"] is not None
    assert Blade(site.conn).claim() == []  # paused: nothing dispatched
    site.tq("--yes", "unpause", str(jid))
    assert site.jobrow(jid)["pausetime"] is None
    site.tq("--yes", "delay", "-t", "3/25|10:30am", str(jid))
    t = site.jobrow(jid)["aftertime"]
    assert (t.month, t.day) == (3, 25)
    site.tq("--yes", "undelay", str(jid))
    assert site.jobrow(jid)["aftertime"] is None
    assert site.tq("--yes", "delay", "-t", "notatime", str(jid), status=11).stderr.count("\n") == 1
    site.tq("--yes", "lock", "-n", "mine now", str(jid))
    row = site.jobrow(jid)
    assert (row["lockowner"], row["locknote"]) == ("ann", "mine now") and row["locktime"] is not None
    site.tq("--yes", "unlock", str(jid))
    assert site.jobrow(jid)["lockowner"] is None


def test_chpri_chcrews_jattr_jobdump(site):
    jid = site.job(2)
    assert site.tq("--yes", "chpri", "-p", "250", str(jid)).stdout.rstrip().endswith("priority changed")
    assert site.jobrow(jid)["priority"] == 250
    assert {r["priority"] for r in site.all("SELECT priority FROM ready WHERE jid = %s", jid)} == {250}
    site.tq("--yes", "chcrews", "-k", "a,b", str(jid))
    assert site.jobrow(jid)["crews"] == ["a", "b"]
    site.tq("--yes", "chcrews", "--add", "c", "-r", "a", str(jid))
    assert site.jobrow(jid)["crews"] == ["b", "c"]
    site.tq("--yes", "jattr", "-k", "comment", "-v", "for review", str(jid))
    assert site.jobrow(jid)["comment"] == "for review"
    site.tq("--yes", "jattr", "-k", "tags", "-a", "hero,fx", str(jid))
    site.tq("--yes", "jattr", "-k", "tags", "-r", "fx", str(jid))
    assert site.jobrow(jid)["tags"] == ["hero"]
    site.tq("--yes", "jattr", "-k", "maxactive", "-v", "3", str(jid))
    assert site.jobrow(jid)["maxactive"] == 3
    site.tq("--yes", "jattr", "-k", "afterjids", "-v", "1,2", str(jid))
    assert site.jobrow(jid)["afterjids"] == [1, 2]
    assert site.tq("--yes", "jattr", "-k", "owner", "-v", "x", str(jid), status=11)
    site.conn.execute("UPDATE jobs SET script = 'Job -title {x}' WHERE jid = %s", (jid,))
    r = site.tq("jobdump", str(jid), user="someone-else")
    assert r.stdout == "Job -title {x}\n"


def test_interrupt_restart_errors_delete_undelete(site):
    jid = site.job(3)
    bl = Blade(site.conn, slots=2)
    got = bl.claim()
    bl.finish(*got[0], 1)  # t1 error, t2 active, t3 ready
    assert site.states(jid) == ["error", "active", "ready"]
    site.tq("--yes", "interrupt", str(jid))
    assert site.states(jid) == ["error", "error", "ready"] and site.jobrow(jid)["pausetime"] is not None
    site.tq("--yes", "unpause", str(jid))
    site.tq("--yes", "skipallerrs", str(jid))
    assert site.states(jid) == ["done", "done", "ready"]
    site.tq("--yes", "restart", str(jid))
    assert site.states(jid) == ["ready", "ready", "ready"]
    bl2 = Blade(site.conn, name="b2", slots=1)
    bl2.finish(*bl2.claim()[0], 2)
    assert site.states(jid).count("error") == 1
    site.tq("--yes", "retryallerrs", str(jid))
    assert site.states(jid) == ["ready", "ready", "ready"]
    bl2.claim()
    assert "active" in site.states(jid)
    site.tq("--yes", "delete", str(jid))
    assert site.jobrow(jid)["deletetime"] is not None
    assert "active" not in site.states(jid)
    assert site.tq("jobs", str(jid)).stderr.strip() == "no jobs found"
    assert site.tq("-a", "jobs", "--nh", str(jid)).stdout.split()[0] == str(jid)
    site.tq("--yes", "undelete", str(jid))
    assert site.jobrow(jid)["deletetime"] is None


# --- blade operations ------------------------------------------------------------------


def test_nimby_unnimby_eject_delist(site):
    jid = site.job(1)
    bl = Blade(site.conn, name="b1", slots=1)
    site.tq("--yes", "nimby", "name=b1")
    assert site.one("SELECT nimby FROM blades WHERE name = 'b1'")["nimby"] == "1"
    site.tq("--yes", "unnimby", "b1")  # the bare-name form
    assert site.one("SELECT nimby FROM blades WHERE name = 'b1'")["nimby"] == ""
    site.tq("--yes", "nimby", "b1")
    assert site.one("SELECT nimby FROM blades WHERE name = 'b1'")["nimby"] == "1"
    assert "no blades found" in site.tq("--yes", "nimby", "b2").stderr
    site.tq("--yes", "nimby", "--allow", "ann", "name=b1")
    assert site.one("SELECT nimby FROM blades WHERE name = 'b1'")["nimby"] == "ann"
    r = site.tq("--yes", "unnimby", "name=b1")
    assert r.stdout.rstrip().endswith("unnimbied")
    assert site.one("SELECT nimby FROM blades WHERE name = 'b1'")["nimby"] == ""
    bl.claim()
    assert site.states(jid) == ["active"]
    site.tq("--yes", "eject", "name=b1")
    assert site.states(jid) == ["ready"]
    site.tq("--yes", "delist", "name=b1")
    assert site.tq("blades").stderr.strip() == "no blades found"
    assert "b1" in site.tq("-a", "blades").stdout


# --- log, ping, help -------------------------------------------------------------------


def test_log_lasttry_unique_and_missing(site):
    jid = site.job(2)
    d = site.data / "cmd-logs" / "ann" / f"J{jid}"
    d.mkdir(parents=True)
    (d / "T1.log").write_text("====[run 1]====\nfirst\n\n====[run 2]====\nsecond\n")
    assert site.tq("log", str(jid), "1").stdout == "====[run 1]====\nfirst\n\n====[run 2]====\nsecond\n"
    assert site.tq("log", "-l", str(jid), "1").stdout == "====[run 2]====\nsecond\n"
    out = site.tq("log", "-u", "-l", str(jid), "1", user="bob").stdout  # logs need no --force
    assert out.splitlines() == [f"[ann {jid} 1] ====[run 2]====", f"[ann {jid} 1] second"]
    r = site.tq("log", str(jid), "2", status=7)
    assert "no log for task" in r.stderr
    r = site.tq("log", str(jid))  # several tasks: a header before each log
    assert r.stdout.startswith(f"==== ann {jid} 1 t1 ====\n") and "no log for task" in r.stderr
    assert site.tq("log", "-f", str(jid), "1").stdout.endswith("second\n")  # not active: returns at once


def test_ping_help_aliases_attributes(site):
    assert "is reachable" in site.tq("ping").stdout
    assert "regular" in site.tq("help", "queries").stdout
    assert "Usage: tq retry" in site.tq("help", "retry").stdout
    assert site.tq("help", "nosuch", status=2).stderr.startswith("tq: ")
    assert "mine" in site.tq("aliases").stdout
    out = site.tq("attributes", "tasks").stdout
    assert out.startswith("Task (tasks):") and "retrycount" in out
    assert "Blade (blades):" in site.tq("help", "attributes").stdout


def test_force_yes_retry_active_kills_and_reruns_on_a_real_blade(site):
    """The downgrade recipe's `tq --force --yes retry active`: the running process is
    killed and the task runs again (other users' jobs included)."""
    jid = site.spool(Task("long", cmds=(sh("echo $$ >> pids.txt; sleep 60 & wait"),)), owner="bob")
    site.blade("--name", "b1")
    pids = site.work / "pids.txt"

    def started(n: int) -> list[int]:
        lines = pids.read_text().split() if pids.exists() else []
        return [int(x) for x in lines] if len(lines) >= n else []

    first = site.wait(lambda: started(1), msg="the command to start")[0]
    r = site.tq("--force", "--yes", "retry", "active")
    assert r.stdout.rstrip().endswith("retried") and f"{jid} 1 bob long active" in r.stdout
    site.wait(lambda: not alive(first), timeout=10, msg="the first run to be killed")
    second = site.wait(lambda: started(2), timeout=10, msg="the task to run again")[1]
    assert second != first and site.states(jid) == ["active"]
    assert site.one("SELECT retrycount FROM tasks WHERE jid = %s", jid)["retrycount"] == 1


def test_plain_format_exactly_and_the_footer(site):
    a = site.job(1, title="first")
    b = site.job(1, title="second title", owner="bob")
    assert (a, b) == (1, 2)  # a fresh database: the job counter starts at 1
    out = site.tq("jobs", "-c", "jid,user,title,numready,numdone", "-s", "jid").stdout
    assert out == ("jid user title        redy done\n"
                   "=== ==== ============ ==== ====\n"
                   "  1 ann  first           1\n"
                   "  2 bob  second title    1\n")
    # a width is an upper bound for text
    out = site.tq("jobs", "-c", "jid,title=5", "-s", "jid", "--nh").stdout
    assert out == "1 first\n2 secon\n"
    for _ in range(38):
        site.job(1)
    lines = site.tq("jobs", "-c", "jid", "-s", "jid").stdout.splitlines()
    assert len(lines) == 2 + 40 + 2 and lines[-2:] == ["===", "jid"]
    assert site.tq("jobs", "-c", "jid", "--limit", "39").stdout.splitlines()[-1] != "jid"


# --- render (no database) -----------------------------------------------------------------


def test_column_specs_and_values():
    import datetime as dt

    from tractorcli.cli import render

    names = lambda cols: [c.name for c in cols]
    base = ("jid=10", "user", "title")
    assert names(render.columns(None, base)) == ["jid", "user", "title"]
    assert names(render.columns("a,b", base)) == ["a", "b"]
    assert names(render.columns("+numtasks,-user", base)) == ["jid", "title", "numtasks"]
    cols = render.columns("=jid=3", base)
    assert cols[0].width == 3
    spec = render.parse_spec("rss=6.3:red")
    assert (spec.name, spec.width, spec.precision, spec.color) == ("rss", 6, 3, "red")
    with pytest.raises(render.SpecError):
        render.parse_spec("a b")
    with pytest.raises(render.SpecError):
        render.columns("-jid,-user,-title", base)
    style = render.Style()
    dur = render.ColSpec("elapsedsecs", type="duration", canonical="elapsedsecs")
    assert render.text_value(3725.0, dur, style) == "1:02:05"
    assert render.text_value(3725.0, dur, render.Style(raw=True)) == "3725.0"
    t = dt.datetime(2026, 3, 15, 16, 5, tzinfo=dt.timezone.utc)
    assert render.text_value(t, render.ColSpec("spooled", type="timestamp"), render.Style(timefmt="%Y")) == "2026"
    pri = render.parse_spec("pri=4.0")
    pri.type = "float"
    assert render.text_value(100.0, pri, style) == "100"
    assert render.json_value([t]) == ["2026-03-15T16:05:00+00:00"]


def test_rich_table_on_a_terminal():
    from rich.console import Console

    from tractorcli.cli import render

    cols = render.columns(None, ("jid", "state"))
    cols[0].type, cols[1].canonical = "int", "state"
    console = Console(record=True, width=80, force_terminal=True)
    console.print(render.rich_table([{"jid": 1, "state": "error"}], cols, render.Style()))
    text = console.export_text(styles=True)
    assert "jid" in text and "error" in text and "\x1b[31m" in text  # errors in red
    plain = Console(record=True, width=80, force_terminal=True)
    plain.print(render.rich_table([{"jid": 1, "state": "error"}], cols, render.Style(color=False)))
    assert "\x1b[31m" not in plain.export_text(styles=True)
