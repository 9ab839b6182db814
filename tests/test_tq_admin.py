"""tq trace, queuestats, reloadconfig end to end: the installed tq against a real job database,
and real tractor-blade / tractor-engine processes picking up tq reloadconfig."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

import pytest
from test_blade import HB, alive, sh  # noqa: F401 - HB: the blades' heartbeat
from test_dispatch import Blade
from test_tq import TqSite, C

from tractorcli.db import reload
from tractorcli.jobs.model import Task
from conftest import clean_env, program


@pytest.fixture
def site(db_settings):
    s = TqSite(db_settings)
    yield s
    s.close()


def lines(r) -> list[str]:
    return r.stdout.splitlines()


# --- trace -------------------------------------------------------------------------------


def test_trace_matching_and_not_matching_commands_in_dispatch_order(site):
    a = site.spool(Task("render", cmds=(C("echo", "a", service="linux && PixarRender"),)), title="a")
    b = site.spool(Task("comp", cmds=(C("echo", "b", service="nuke"),)), title="b")
    c = site.spool(Task("urgent", cmds=(C("echo", "c", service="PixarRender"),)), title="c", job={"priority": 200})
    Blade(site.conn, name="rack01", provides=("PixarRender", "linux"), slots=4)
    out = lines(site.tq("trace", "rack01"))
    assert out == [
        "rack01: 4 of 4 slots free",
        "rack01: all 3 ready command(s), in dispatch order",
        f"rack01: jid {c} tid 1 cid 1 ready: matches (pixarrender)",
        f"rack01: jid {a} tid 1 cid 1 ready: matches (linux && pixarrender)",
        f"rack01: jid {b} tid 1 cid 1 skipped: needs key 'nuke' (service: nuke)",
        "rack01: would take 2 of them",
    ]
    # the same blades by a clause; --limit says how many are shown
    assert lines(site.tq("trace", "name=rack01")) == out
    short = lines(site.tq("trace", "--limit", "1", "rack01"))
    assert short[1] == "rack01: first 1 of 3 ready command(s), in dispatch order (--limit 1)"
    assert short[2:] == [out[2], "rack01: would take 1 of them"]
    rows = json.loads(site.tq("--json", "trace", "rack01").stdout)
    assert [r["blade"] for r in rows] == ["rack01"]
    cmds = [x for x in rows[0]["lines"] if "jid" in x]
    assert [(x["jid"], x["kind"], x.get("reason")) for x in cmds] == [
        (c, "ready", None), (a, "ready", None), (b, "skipped", "service")]
    assert cmds[2]["detail"]["missing"] == ["nuke"]
    # what the trace says is what the claim does
    assert Blade(site.conn, name="rack01", provides=("PixarRender", "linux"), slots=4).claim() == [(a, 1), (c, 1)]


def test_trace_nimby_full_slots_paused_and_unique(site):
    ann = site.job(2, title="anns")
    bob = site.job(1, owner="bob", title="bobs")
    paused = site.job(1, title="held", job={"paused": True})
    bl = Blade(site.conn, name="rack01", slots=2)
    site.tq("--yes", "nimby", "--allow", "ann", "name=rack01")
    out = lines(site.tq("trace", "rack01"))
    assert out[0] == "rack01: nimby: only ann's jobs"
    assert out[1] == "rack01: 2 of 2 slots free"
    assert f"rack01: jid {ann} tid 1 cid 1 ready: matches (no service requirement)" in out
    assert f"rack01: jid {ann} tid 2 cid 2 ready: matches (no service requirement)" in out
    bobs = [x for x in out if f"jid {bob} " in x]
    assert bobs == [f"rack01: jid {bob} tid 1 cid 1 skipped: nimby: only ann's jobs (job of bob, spooled from "
                    f"{site.jobrow(bob)['spoolhost']})"]
    assert [x for x in out if f"jid {paused} " in x][0].startswith(
        f"rack01: jid {paused} tid 1 cid 1 skipped: job paused (since ")
    assert out[-1] == "rack01: would take 2 of them"
    # -u: every line starts with [blade]
    uniq = lines(site.tq("trace", "-u", "rack01"))
    assert uniq == [f"[rack01] {x}" for x in out]
    # the blade takes ann's two commands: all its slots are in use
    assert bl.claim() == [(ann, 1), (ann, 2)]
    site.tq("--yes", "unnimby", "name=rack01")
    site.tq("--yes", "unpause", str(paused))
    out = lines(site.tq("trace", "rack01"))
    assert out[0] == "rack01: all 2 slots in use"
    assert f"rack01: jid {bob} tid 1 cid 1 skipped: matches (no service requirement), but no free slot " \
           "(2 of 2 in use)" in out
    assert out[-1] == "rack01: would take 0 of them"


def test_trace_slots_used_up_by_the_commands_above_and_maxactive(site):
    one = site.job(3, title="capped", job={"maxactive": 1})
    two = site.job(2, title="open")
    Blade(site.conn, name="b1", slots=2)
    out = lines(site.tq("trace", "b1"))
    assert out[2:] == [
        f"b1: jid {one} tid 1 cid 1 ready: matches (no service requirement)",
        f"b1: jid {one} tid 2 cid 2 skipped: matches (no service requirement), but its job reaches -maxactive 1 "
        "with the commands above",
        f"b1: jid {one} tid 3 cid 3 skipped: matches (no service requirement), but its job reaches -maxactive 1 "
        "with the commands above",
        f"b1: jid {two} tid 1 cid 1 ready: matches (no service requirement)",
        f"b1: jid {two} tid 2 cid 2 skipped: matches (no service requirement), but no free slot (2 of 2 in use "
        "with the commands above)",
        "b1: would take 2 of them",
    ]


def test_trace_needs_a_target_and_says_when_nothing_matches(site):
    r = site.tq("trace", status=2)
    assert "Usage: tq trace" in r.stdout
    r = site.tq("trace", "nosuch")
    assert r.stdout == "" and r.stderr.strip() == "no blades found"
    assert site.tq("--json", "trace", "nosuch").stdout.strip() == "[]"
    Blade(site.conn, name="idle")
    assert lines(site.tq("trace", "up")) == ["idle: 4 of 4 slots free", "idle: no ready commands"]
    site.tq("trace", "name=", status=11)


# --- queuestats ----------------------------------------------------------------------------


def stats_of(site, *args) -> dict[str, str]:
    out = {}
    for line in lines(site.tq("queuestats", *args)):
        name, value = line.rsplit(" ", 1)
        out[name] = value
    return out


def test_queuestats_figures_plain_and_json(site):
    done = site.job(1, title="done")
    b1 = Blade(site.conn, name="b1", slots=4)
    assert b1.claim(slots=1) == [(done, 1)]
    b1.finish(done, 1)
    live = site.spool(*(Task(f"t{i}", cmds=(C("echo", str(i), service="linux"),)) for i in range(3)), title="live")
    paused = site.job(2, title="paused", job={"paused": True})
    delayed = site.job(1, title="delayed", job={"after": dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)})
    deleted = site.job(1, title="deleted")
    site.conn.execute("UPDATE jobs SET deletetime = now() WHERE jid = %s", (deleted,))
    assert b1.claim(slots=1) == [(live, 1)]
    site.conn.execute("UPDATE ready SET readytime = now() - interval '100 seconds' WHERE jid = %s AND tid = 2",
                      (live,))
    b2 = Blade(site.conn, name="b2", slots=2)
    site.conn.execute("UPDATE blades SET nimby = '1' WHERE name = 'b2'")
    gone = Blade(site.conn, name="gone", slots=8)
    site.conn.execute("UPDATE blades SET cleartime = now() + interval '1 second' WHERE name = 'gone'")
    down = Blade(site.conn, name="down", slots=16)
    site.conn.execute("UPDATE blades SET status = 'down' WHERE name = 'down'")
    del b2, gone, down

    s = stats_of(site)
    wait = float(s.pop("ready.oldest_wait_secs"))
    assert 99 <= wait < 160
    assert s == {
        "jobs.total": "5", "jobs.live": "1", "jobs.postscript": "0", "jobs.paused": "1", "jobs.delayed": "1",
        "jobs.finished": "1", "jobs.deleted": "1",
        "tasks.blocked": "0", "tasks.ready": "5", "tasks.active": "1", "tasks.error": "0", "tasks.done": "1",
        "ready.commands": "6", "ready.held": "4",
        "ready.service[]": "4", "ready.service[linux]": "2",
        "active.commands": "1", "active.slots": "1",
        "blades.registered": "3", "blades.up": "2", "blades.nimby": "1",
        "slots.total": "6", "slots.in_use": "1", "slots.free": "5",
    }
    names = [line.rsplit(" ", 1)[0] for line in lines(site.tq("queuestats"))]
    assert names[:3] == ["jobs.total", "jobs.live", "jobs.postscript"] and names[-1] == "slots.free"
    j = json.loads(site.tq("--json", "queuestats").stdout)
    assert j["jobs"] == {"total": 5, "live": 1, "postscript": 0, "paused": 1, "delayed": 1, "finished": 1,
                         "deleted": 1}
    assert j["tasks"]["ready"] == 5 and j["active"] == {"commands": 1, "slots": 1}
    assert [(x["service"], x["commands"]) for x in j["ready"]["services"]] == [("", 4), ("linux", 2)]
    assert j["slots"] == {"total": 6, "in_use": 1, "free": 5}
    assert j["blades"] == {"registered": 3, "up": 2, "nimby": 1}
    csv = lines(site.tq("queuestats", "--csv"))
    assert csv[0] == "name,value" and "jobs.paused,1" in csv
    assert paused and delayed  # (named for the reader)


def test_queuestats_of_an_empty_farm(site):
    s = stats_of(site)
    assert s["jobs.total"] == "0" and s["ready.commands"] == "0" and s["ready.oldest_wait_secs"] == "0.0"
    assert s["blades.registered"] == "0" and s["slots.total"] == "0"
    assert not any(k.startswith("ready.service[") for k in s)


# --- reloadconfig -------------------------------------------------------------------------


def params(site) -> dict[str, str]:
    return {r["name"]: r["value"] for r in json.loads(site.tq("--json", "params").stdout)}


def test_reloadconfig_records_a_request_per_part(site):
    assert "reload-tractor" not in params(site)
    out = lines(site.tq("reloadconfig"))
    assert out[0] == "reload requested: tractor, blade"
    assert out[1] == "tractor: tractor-engine re-reads tractor.toml at its next housekeeping pass (request 1)"
    assert out[2] == "blade: every running tractor-blade re-reads blade.toml at its next heartbeat (request 1)"
    assert out[3] == "crews: loaded: no crews.toml: only the site owner may force on others' jobs"
    assert out[4] == "limits: loaded: no limits.toml: no limits"
    p = params(site)
    assert (p["reload-tractor"], p["reload-blade"]) == ("1", "1")
    assert lines(site.tq("reloadconfig", "--blade"))[0] == "reload requested: blade"
    p = params(site)
    assert (p["reload-tractor"], p["reload-blade"]) == ("1", "2")
    out = lines(site.tq("reloadconfig", "--crews", "--limits"))
    assert [x.split(":")[0] for x in out] == ["crews", "limits"]
    assert params(site)["reload-blade"] == "2"
    j = json.loads(site.tq("--json", "reloadconfig", "--tractor", "--limits").stdout)
    assert j["requested"] == {"tractor": 2} and j["loaded"] == {"limits": "no limits.toml: no limits"}


PROFILE = """
[[profile]]
name = "farm"
provides = [{keys}]
slots = {slots}
"""


def test_reloadconfig_blade_takes_new_provides_keys_and_slots(site):
    site.cfg.joinpath("blade.toml").write_text(PROFILE.format(keys='"PixarRender"', slots=1))
    jid = site.spool(Task("comp", cmds=(sh("echo comped > nuke.txt", service="nuke"),)))
    b = site.blade("--name", "rb1")
    site.wait(lambda: site.one("SELECT 1 FROM blades WHERE name = 'rb1' AND status = 'up'"), msg="registration")
    # the blade polls and passes the command over: it lacks the key
    site.wait(lambda: "blade rb1 up" in b.text(), msg="the blade to start")
    time.sleep(1.0)
    assert site.states(jid) == ["ready"]
    assert f"rb1: jid {jid} tid 1 cid 1 skipped: needs key 'nuke' (service: nuke)" in lines(site.tq("trace", "rb1"))
    site.cfg.joinpath("blade.toml").write_text(PROFILE.format(keys='"PixarRender", "nuke"', slots=3))
    assert lines(site.tq("reloadconfig", "--blade"))[0] == "reload requested: blade"
    site.wait(lambda: (site.work / "nuke.txt").exists(), timeout=20, msg="the blade to run the nuke command")
    site.wait(lambda: site.states(jid) == ["done"], msg="the task to be done")
    row = site.one("SELECT provides, numslots, profile FROM blades WHERE name = 'rb1'")
    assert "nuke" in row["provides"] and row["numslots"] == 3 and row["profile"] == "farm"
    assert "reloaded blade profile: farm, 3 slot(s), keys PixarRender, nuke" in b.text()
    # a profile that does not load leaves the current one
    site.cfg.joinpath("blade.toml").write_text("[[profile]]\nname = 'x'\nslots = 'many'\n")
    site.tq("reloadconfig", "--blade")
    site.wait(lambda: "the blade profile does not load" in b.text(), msg="the blade to refuse the profile")
    assert b.proc.poll() is None
    assert site.one("SELECT numslots FROM blades WHERE name = 'rb1'")["numslots"] == 3


class EngineOnSite:
    """tractor-engine on the test's database (the session's server, never stopped by it)."""

    def __init__(self, site: TqSite):
        with open(site.cfg / "db.toml", "a") as f:
            f.write("shutdown = false\n")
        self.log = site.root / "engine.log"
        self.proc = subprocess.Popen([program("tractor-engine"), "--configdir", str(site.cfg), "--interval", "0.2",
                                      "--keep-db"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env=clean_env())

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"the engine exited: {self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} in: {self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def test_reloadconfig_tractor_makes_the_engine_reread_tractor_toml(site):
    eng = EngineOnSite(site)
    try:
        eng.wait_for("tractor-engine running")
        assert params(site)["CmdAutoRetryAttempts"] == "0"
        with open(site.cfg / "tractor.toml", "a") as f:
            f.write("cmd_auto_retry_attempts = 3\nBladeLeaseSecs = 45\n")
        time.sleep(0.5)
        assert params(site)["CmdAutoRetryAttempts"] == "0"  # nothing happens without the request
        assert lines(site.tq("reloadconfig", "--tractor"))[0] == "reload requested: tractor"
        eng.wait_for("reloaded ")
        p = params(site)
        assert (p["CmdAutoRetryAttempts"], p["BladeLeaseSecs"]) == ("3", "45")
        assert "CmdAutoRetryAttempts 3, CmdRetryrcRetryAttempts 1, BladeLeaseSecs 45" in eng.text()
        # a blade request is not the engine's
        site.tq("reloadconfig", "--blade")
        with open(site.cfg / "tractor.toml", "a") as f:
            f.write("cmd_retryrc_retry_attempts = 'x'\n")
        reload.request(site.conn, ["tractor"])  # tq itself refuses to run with that file
        eng.wait_for("the configuration does not load")
        assert eng.text().count("reloaded ") == 1
        assert site.one("SELECT value FROM params WHERE name = 'CmdAutoRetryAttempts'")["value"] == "3"
    finally:
        assert eng.stop() == 0, eng.text()
    assert "leaving the database server running" in eng.text()
    assert site.one("SELECT 1 AS x")["x"] == 1  # the server still runs
