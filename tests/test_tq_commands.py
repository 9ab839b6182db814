"""tq chkeys and tq cattr end to end: the installed program against a real job database.

Set up as tests/test_tq.py (TqSite: a fresh database per test, jobs spooled
with db.spool, blades simulated with db.dispatch); every change is checked
in the command, ready-queue and job rows, and by which blade gets to claim.
"""

from __future__ import annotations

import threading
import time

import pytest
from test_dispatch import Blade
from test_tq import C, TqSite

from tractorcli.errors import BadInput
from tractorcli.jobs.model import Task
from tractorcli.service import combine


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def spool(site, n: int = 2, owner: str = "ann", service: str = "PixarRender", **kw) -> int:
    """n one-command tasks (cid i in task i), all ready."""
    return site.spool(*(Task(f"t{i}", cmds=(C("render", f"f{i}.rib", service=service),)) for i in range(1, n + 1)),
                      owner=owner, **kw)


def cmd(site, jid: int, cid: int) -> dict:
    return site.one("SELECT c.*, s.expr FROM commands c LEFT JOIN service_exprs s ON s.svcid = c.svcid "
                    "WHERE c.jid = %s AND c.cid = %s", jid, cid)


def ready_svcid(site, jid: int, cid: int):
    row = site.one("SELECT svcid FROM ready WHERE jid = %s AND cid = %s", jid, cid)
    return row["svcid"] if row else None


def snapshot(site, jid: int) -> tuple:
    """Everything chkeys/cattr may touch, to check that nothing changed."""
    return (site.all("SELECT * FROM commands WHERE jid = %s ORDER BY cid", jid),
            site.all("SELECT jid, cid, svcid FROM ready WHERE jid = %s ORDER BY cid", jid),
            site.one("SELECT svcids FROM jobs WHERE jid = %s", jid),
            site.one("SELECT count(*) AS n FROM service_exprs"))


# --- chkeys -------------------------------------------------------------------------------


def test_chkeys_repoints_a_ready_command_and_only_matching_blades_claim_it(site):
    jid = spool(site, 2)
    before = cmd(site, jid, 1)
    assert before["expr"] == "pixarrender" and ready_svcid(site, jid, 1) == before["svcid"]
    r = site.tq("--yes", "chkeys", "-k", "PixarRender && gpu", str(jid), "1")
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{jid} 1 1 ") and lines[0].endswith(" keys changed")
    after = cmd(site, jid, 1)
    assert after["service"] == "PixarRender && gpu"
    assert after["expr"] == combine("PixarRender && gpu") == "gpu && pixarrender"
    assert after["svcid"] != before["svcid"]
    assert ready_svcid(site, jid, 1) == after["svcid"]  # the queue row follows
    assert after["svcid"] in site.jobrow(jid)["svcids"]  # claims find the job by it
    assert cmd(site, jid, 2)["svcid"] == before["svcid"]  # the other command is untouched
    plain = Blade(site.conn, name="plain", provides=("PixarRender", "linux"), slots=4)
    gpu = Blade(site.conn, name="gpu1", provides=("PixarRender", "gpu"), slots=4)
    assert plain.claim() == [(jid, 2)]  # not task 1 any more, although a slot is free
    assert gpu.claim() == [(jid, 1)]


def test_chkeys_keeps_the_job_service_and_avoid_and_applies_at_the_next_launch(site):
    jid = spool(site, 1, service="", job={"service": "linux", "avoid": ("slowbox",)})
    assert cmd(site, jid, 1)["expr"] == "linux && !slowbox"
    b1 = Blade(site.conn, name="b1", provides=("linux",), slots=1)
    assert b1.claim() == [(jid, 1)]
    # active: the running launch is not touched, the next one needs gpu
    site.tq("--yes", "chkeys", "-k", "gpu", str(jid), "1")
    c = cmd(site, jid, 1)
    assert (c["service"], c["expr"], c["state"]) == ("gpu", combine("gpu", "linux", ("slowbox",)), "active")
    assert b1.finish(jid, 1, 1) == "error"
    site.tq("--yes", "retry", str(jid), "1")
    assert ready_svcid(site, jid, 1) == c["svcid"]
    assert b1.claim() == []
    assert Blade(site.conn, name="slowbox", provides=("linux", "gpu"), slots=1).claim() == []  # -avoid still holds
    assert Blade(site.conn, name="b3", provides=("gpu",), slots=1).claim() == []  # the job's linux too
    assert Blade(site.conn, name="b4", provides=("linux", "gpu"), slots=1).claim() == [(jid, 1)]


def test_chkeys_an_empty_expression_is_any_blade_and_an_existing_one_is_reused(site):
    jid = spool(site, 3)
    site.tq("--yes", "chkeys", "-k", "gpu", str(jid), "1")
    n = site.one("SELECT count(*) AS n FROM service_exprs")["n"]
    site.tq("--yes", "chkeys", "-k", "GPU", str(jid), "2")  # the same canonical expression
    assert site.one("SELECT count(*) AS n FROM service_exprs")["n"] == n
    assert cmd(site, jid, 2)["svcid"] == cmd(site, jid, 1)["svcid"]
    site.tq("--yes", "chkeys", "-k", "", str(jid), "3")
    assert cmd(site, jid, 3)["expr"] == ""
    assert Blade(site.conn, name="bare", provides=(), slots=4).claim() == [(jid, 3)]


def test_chkeys_bad_expression_is_one_line_with_the_column_and_changes_nothing(site):
    jid = spool(site, 2)
    before = snapshot(site, jid)
    r = site.tq("--yes", "chkeys", "-k", "linux &&", str(jid), "1", status=11)
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert r.stderr.startswith("tq: -k/--keystr 'linux &&': column 9: ")
    r = site.tq("--yes", "chkeys", "--keystr", "a = b", str(jid), status=11)
    assert "--keystr 'a = b': column 3: " in r.stderr and "==" in r.stderr
    r = site.tq("--yes", "cattr", "-k", "service", "-v", "render*", str(jid), status=11)
    assert r.stderr.startswith("tq: -v/--value 'render*': column 1: ") and r.stderr.count("\n") == 1
    assert snapshot(site, jid) == before


def test_chkeys_positional_forms_clauses_and_nothing_found(site):
    jid = spool(site, 3)
    other = spool(site, 1)
    r = site.tq("--yes", "chkeys", "-k", "gpu", str(jid), "1", "3")
    assert [ln.split()[2] for ln in r.stdout.splitlines()] == ["1", "3"]
    assert [cmd(site, jid, c)["service"] for c in (1, 2, 3)] == ["gpu", "PixarRender", "gpu"]
    site.tq("--yes", "chkeys", "-k", "osx", f"jid={jid} and service=PixarRender")
    assert [cmd(site, jid, c)["service"] for c in (1, 2, 3)] == ["gpu", "osx", "gpu"]
    assert cmd(site, other, 1)["service"] == "PixarRender"
    site.tq("--yes", "chkeys", "-k", "linux", str(other))  # JID alone: all its commands
    assert cmd(site, other, 1)["service"] == "linux"
    r = site.tq("--yes", "chkeys", "-k", "gpu", "999", "1")
    assert r.stdout == "" and r.stderr.strip() == "no commands found"
    r = site.tq("chkeys", "-k", "gpu", status=2)  # no target: the help
    assert "Usage:" in r.stdout and "Examples:" in r.stdout
    assert "--keystr" in site.tq("chkeys", str(jid), status=2).stderr  # -k is required


def test_chkeys_and_cattr_need_the_owner_or_force(site):
    jid = spool(site, 1, owner="bob")
    before = snapshot(site, jid)
    r = site.tq("--yes", "chkeys", "-k", "gpu", str(jid), "1", status=8)
    assert "not job owner; use tq --force" in r.stderr and r.stdout.startswith(f"{jid} 1 1 ")
    r = site.tq("--yes", "cattr", "-k", "tags", "-a", "x", str(jid), "1", status=8)
    assert "not job owner" in r.stderr
    assert snapshot(site, jid) == before
    site.tq("--force", "--yes", "chkeys", "-k", "gpu", str(jid), "1")
    site.tq("--yes", "cattr", "--force", "-k", "tags", "-a", "x", str(jid), "1")
    assert (cmd(site, jid, 1)["service"], cmd(site, jid, 1)["tags"]) == ("gpu", ["x"])
    site.tq("--yes", "cattr", "-k", "msg", "-v", "hi", str(jid), "1", user="bob")  # the owner needs no --force
    assert cmd(site, jid, 1)["msg"] == "hi"


def test_prompts_an_empty_answer_is_yes(site):
    jid = spool(site, 3)
    r = site.tq("chkeys", "-k", "gpu", str(jid), input="\nn\ny\n")
    assert r.stderr.count("Change the service keys of this command? yes/no [y]: ") == 3
    assert [cmd(site, jid, c)["service"] for c in (1, 2, 3)] == ["gpu", "PixarRender", "gpu"]
    assert sum(ln.endswith("keys changed") for ln in r.stdout.splitlines()) == 2
    r = site.tq("cattr", "-k", "msg", "-v", "hello", str(jid), "2", input="")  # end of input is no
    assert "Change msg of this command? yes/no [y]: " in r.stderr
    assert cmd(site, jid, 2)["msg"] is None
    r = site.tq("cattr", "-k", "msg", "-v", "hello", str(jid), "2", input="yes\n")
    assert cmd(site, jid, 2)["msg"] == "hello" and r.stdout.rstrip().endswith("msg changed")


# --- cattr --------------------------------------------------------------------------------


def test_cattr_argv_set_add_remove_and_the_next_launch_gets_it(site):
    jid = spool(site, 2)
    r = site.tq("--yes", "cattr", "-k", "argv", "-v", "prman -Progress {my file.rib}", str(jid), "1")
    assert r.stdout.rstrip().endswith("argv changed")
    assert cmd(site, jid, 1)["argv"] == ["prman", "-Progress", "my file.rib"]
    site.tq("--yes", "cattr", "-k", "argv", "-a", "-t:4,-v", str(jid), "1")
    assert cmd(site, jid, 1)["argv"] == ["prman", "-Progress", "my file.rib", "-t:4", "-v"]
    site.tq("--yes", "cattr", "-k", "argv", "-r", "-Progress", "-r", "-v", str(jid), "1")
    assert cmd(site, jid, 1)["argv"] == ["prman", "my file.rib", "-t:4"]
    assert cmd(site, jid, 2)["argv"] == ["render", "f2.rib"]
    bl = Blade(site.conn, slots=2)
    bl.claim()
    assert bl.running[(jid, 1)].info["argv"] == ["prman", "my file.rib", "-t:4"]
    # never empty, and a malformed Tcl list is one line
    before = snapshot(site, jid)
    assert "argv cannot be empty" in site.tq("--yes", "cattr", "-k", "argv", "-v", " ", str(jid), "2",
                                             status=11).stderr
    r = site.tq("--yes", "cattr", "-k", "argv", "-v", "a {b", str(jid), "2", status=11)
    assert "unmatched open brace" in r.stderr and r.stderr.count("\n") == 1
    assert "argv cannot be empty" in site.tq("--yes", "cattr", "-k", "argv", "-r", "render,f2.rib", str(jid), "2",
                                             status=11).stderr
    assert snapshot(site, jid) == before


def test_cattr_tags_envkey_and_retryrcodes(site):
    jid = spool(site, 1)
    site.tq("--yes", "cattr", "-k", "tags", "-v", "a,b", str(jid))
    assert cmd(site, jid, 1)["tags"] == ["a", "b"]
    r = site.tq("--yes", "cattr", "-k", "tags", "-a", "b,c", "-r", "a", str(jid))
    assert r.stdout.rstrip().endswith("tags changed")
    assert cmd(site, jid, 1)["tags"] == ["b", "c"]
    site.tq("--yes", "cattr", "-k", "tags", "-v", "", str(jid))
    assert cmd(site, jid, 1)["tags"] == []
    site.tq("--yes", "cattr", "-k", "envkey", "-v", "maya2024, rman26", str(jid))
    site.tq("--yes", "cattr", "-k", "envkey", "--remove", "maya2024", "--add", "nuke", str(jid))
    assert cmd(site, jid, 1)["envkey"] == ["rman26", "nuke"]
    site.tq("--yes", "cattr", "-k", "retryrcodes", "-v", "2,3", str(jid))
    assert cmd(site, jid, 1)["retryrcodes"] == [2, 3]
    r = site.tq("--yes", "cattr", "-k", "retryrc", "-a", "4,3", "-r", "2", str(jid))  # the query alias
    assert r.stdout.rstrip().endswith("retryrcodes changed")
    assert cmd(site, jid, 1)["retryrcodes"] == [3, 4]
    r = site.tq("--yes", "cattr", "-k", "retryrcodes", "-v", "2,x", str(jid), status=11)
    assert "retryrcodes takes integers" in r.stderr and r.stderr.count("\n") == 1
    assert cmd(site, jid, 1)["retryrcodes"] == [3, 4]
    # an exit code listed now is retried automatically
    bl = Blade(site.conn, slots=1)
    bl.claim()
    assert bl.finish(jid, 1, 4) == "retry"


def test_cattr_scalars(site):
    jid = spool(site, 1)
    for key, value, column, want in (
        ("msg", "frame 1 of 10", "msg", "frame 1 of 10"),
        ("metadata", '{"shot": "a01"}', "metadata", '{"shot": "a01"}'),
        ("minrunsecs", "30", "minrunsecs", 30.0),
        ("maxrunsecs", "3600.5", "maxrunsecs", 3600.5),
        ("minslots", "2", "minslots", 2),
        ("maxslots", "4", "maxslots", 4),
        ("resumepin", "1", "resumepin", True),
    ):
        r = site.tq("--yes", "cattr", "-k", key, "-v", value, str(jid), "1")
        assert r.stdout.rstrip().endswith(f"{key} changed"), r.stdout
        assert cmd(site, jid, 1)[column] == want, key
    site.tq("--yes", "cattr", "-k", "maxrunsecs", "-v", "", str(jid), "1")
    site.tq("--yes", "cattr", "-k", "resumepin", "-v", "false", str(jid), "1")
    c = cmd(site, jid, 1)
    assert (c["maxrunsecs"], c["resumepin"], c["minrunsecs"]) == (None, False, 30.0)
    before = snapshot(site, jid)
    for key, value in (("minrunsecs", "soon"), ("maxrunsecs", "-1"), ("minslots", "0"), ("resumepin", "maybe")):
        r = site.tq("--yes", "cattr", "-k", key, "-v", value, str(jid), "1", status=11)
        assert key in r.stderr and r.stderr.count("\n") == 1
    assert snapshot(site, jid) == before
    # minslots: a blade with fewer free slots does not take it
    assert Blade(site.conn, name="small", slots=1).claim() == []
    assert Blade(site.conn, name="big", slots=2).claim() == [(jid, 1)]


def test_cattr_service_is_chkeys(site):
    jid = spool(site, 1)
    r = site.tq("--yes", "cattr", "-k", "service", "-v", "gpu", str(jid), "1")
    assert r.stdout.rstrip().endswith("service changed")
    c = cmd(site, jid, 1)
    assert (c["service"], c["expr"], ready_svcid(site, jid, 1)) == ("gpu", "gpu", c["svcid"])
    assert Blade(site.conn, name="b1", provides=("PixarRender",), slots=1).claim() == []
    assert Blade(site.conn, name="b2", provides=("gpu",), slots=1).claim() == [(jid, 1)]


def test_cattr_refuses_unknown_attributes_and_bad_option_combinations(site):
    jid = spool(site, 1)
    before = snapshot(site, jid)
    r = site.tq("--yes", "cattr", "-k", "runtype", "-v", "cleanup", str(jid), status=11)
    assert r.stderr.count("\n") == 1 and "'runtype'" in r.stderr
    assert "settable: argv, tags, envkey, retryrcodes, service, msg" in r.stderr
    assert site.tq("--yes", "cattr", "-k", "msg", "-a", "x", str(jid), status=2).stderr.count("list attribute")
    assert site.tq("--yes", "cattr", "-k", "tags", str(jid), status=2)
    assert site.tq("--yes", "cattr", "-k", "tags", "-v", "a", "-a", "b", str(jid), status=2)
    assert site.tq("--yes", "cattr", "-v", "a", str(jid), status=2)  # -k is required
    assert snapshot(site, jid) == before


# --- db/ops.py directly ---------------------------------------------------------------------


def test_a_claim_in_progress_makes_chkeys_wait_and_then_the_queue_row_follows(site, db_settings):
    """A transaction holding the command's queue row (as a blade's claim does) delays
    the edit (it gives way and tries again), and the edit lands after it."""
    from tractorcli.db import ops
    from tractorcli.db.connection import connect

    jid = spool(site, 1)
    holder = connect(db_settings)
    holder.execute("SELECT 1 FROM ready WHERE jid = %s AND cid = 1 FOR UPDATE", (jid,))
    done: dict = {}

    def edit():
        with connect(db_settings, autocommit=True) as conn:
            done["svcid"] = ops.set_command_service(conn, jid, 1, "gpu")

    t = threading.Thread(target=edit)
    t.start()
    time.sleep(0.7)  # longer than the lock timeout: at least one attempt gave way
    assert "svcid" not in done and t.is_alive()
    holder.rollback()
    holder.close()
    t.join(10)
    assert done["svcid"] == cmd(site, jid, 1)["svcid"] == ready_svcid(site, jid, 1)
    assert cmd(site, jid, 1)["expr"] == "gpu"


def test_ops_on_a_missing_command_change_nothing(site):
    from tractorcli.db import ops

    assert ops.set_command_service(site.conn, 999, 1, "gpu") is None
    assert ops.set_command_attr(site.conn, 999, 1, "msg", "x") is False
    assert ops.set_command_attr(site.conn, 999, 1, "tags", add=["x"]) is False
    assert ops.command_value("argv", 'a "b c" {d e}') == ["a", "b c", "d e"]
    assert ops.command_items("retryrcodes", "1, 2 3") == [1, 2, 3]
    with pytest.raises(BadInput) as e:
        ops.check_service('a"\n"', "-k/--keystr")  # the reason quotes the pattern: still one line
    assert "\n" not in str(e.value) and str(e.value).startswith("-k/--keystr 'a\"\\n\"': column 2: ")
