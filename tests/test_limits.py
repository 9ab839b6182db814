"""Limits (limits.toml), tiers and scheduling modes: the file read and checked, and the claim obeying
them on a real job database (blades simulated by db/dispatch.py calls, as in test_dispatch.py; the
real programs run in test_farm_controls.py)."""

from __future__ import annotations

import threading

import pytest
from test_dispatch import C, Blade, spool

from tractorcli.config import ConfigError, load_settings
from tractorcli.db import dispatch as d
from tractorcli.db import limits as limits_db
from tractorcli.db.connection import connect
from tractorcli.db.explain import explain_task
from tractorcli.db.trace import trace_blades
from tractorcli.errors import BadInput, ExitStatus
from tractorcli.jobs.model import Job, Task
from tractorcli.limits import LIMITS_FILE, Limits, load_limits


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def limits_of(tmp_path, text: str) -> Limits:
    (tmp_path / LIMITS_FILE).write_text(text, encoding="utf-8")
    return load_limits(tmp_path)


@pytest.fixture
def with_limits(conn, tmp_path):
    """with_limits(text): store limits.toml `text` in the database."""

    def store(text: str) -> int:
        return limits_db.store(conn, limits_of(tmp_path, text))

    return store


def job(n: int, *argv: str, title: str = "j", **kw) -> Job:
    tags = kw.pop("cmdtags", ())
    return Job(title=title, subtasks=tuple(Task(f"t{i}", cmds=(C(*(argv or ("render",)), tags=tags),))
                                           for i in range(n)), **kw)


def running(conn, name: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM invocations WHERE current AND stoptime IS NULL "
                        "AND limits @> ARRAY[%s]", (name,)).fetchone()["n"]


# --- the file --------------------------------------------------------------------------------


def test_the_file_with_tractors_names(tmp_path):
    lim = limits_of(tmp_path, """
[limits.nuke]
SiteMax = 40
OwnerMax = 0.25          # a fraction of SiteMax, rounded up
OwnerExceptions = { bob = 2 }
BladeMax = 1
BladeExceptions = { bighost = 4 }
ProjectShares = { showA = 0.5, showB = 12 }
CrewShares = { Lighting = 0.1 }
Description = "Nuke licences"

[limits.houdini]
sitemax = 25
sitemaxcounting = "perhost"
""")
    assert lim.configured and [x.name for x in lim.limits] == ["nuke", "houdini"]
    nuke, houdini = lim.limits
    assert (nuke.sitemax, nuke.ownermax, nuke.blademax) == (40, 10, 1)
    assert nuke.ownerexceptions == {"bob": 2} and nuke.bladeexceptions == {"bighost": 4}
    assert nuke.projectshares == {"showA": 20, "showB": 12} and nuke.crewshares == {"Lighting": 4}
    assert nuke.description == "Nuke licences"
    assert (houdini.sitemax, houdini.sitecounting, houdini.ownermax) == (25, "perHost", -1)
    assert not load_limits(tmp_path / "nowhere").configured


@pytest.mark.parametrize("text, line, words", [
    ("[limits.nuke]\nSiteMax = -2\n", 2, "limits.nuke.SiteMax: expected -1 (no maximum) or a count"),
    ("[limits.nuke]\nOwnerMax = 0.5\n", 2, "a fraction (0.5) needs a SiteMax"),
    ("[limits.nuke]\nSiteMax = 4\nOwnerMax = 1.5\n", 3, "a fraction of SiteMax is above 0 and at most 1"),
    ("[limits.nuke]\nSiteMax = 4\nSiteMaxCounting = \"perJob\"\n", 3, "expected perInvocation or perHost"),
    ("[limits.nuke]\nSiteMax = 4\nLicences = 3\n", 3, "unknown key 'Licences'"),
    ("[limits.nuke]\nSiteMax = true\n", 2, "expected a number"),
    ("[limits.nuke]\nOwnerExceptions = 3\n", 2, "expected a table of names and counts"),
    ("[nuke]\nSiteMax = 4\n", 1, "unknown section or key 'nuke'"),
    ("[limits.nuke]\nSiteMax = 4\n[limits.nuke]\n", 3, "malformed TOML"),
    ('[limits."a b"]\nSiteMax = 4\n', 1, "is not a limit tag"),
])
def test_bad_files_are_one_line_with_file_and_line(tmp_path, text, line, words):
    with pytest.raises(ConfigError) as info:
        limits_of(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / LIMITS_FILE}:{line}")
    assert words in msg
    assert info.value.status == ExitStatus.CONFIG


# --- the claim obeys them ----------------------------------------------------------------------


def test_a_site_limit_of_two_holds_the_third_command_ready_until_one_ends(conn, with_limits):
    with_limits("[limits.nuke]\nSiteMax = 2\n")
    jid = spool(conn, job(3, "/opt/nuke/bin/nuke", "-x", "comp.nk"))  # the program's name is a tag
    b = Blade(conn, slots=8)
    assert b.claim() == [(jid, 1), (jid, 2)]
    assert running(conn, "nuke") == 2
    assert b.claim() == []
    states = {r["tid"]: r["state"] for r in conn.execute("SELECT tid, state FROM tasks WHERE jid = %s", (jid,))}
    assert states == {1: "active", 2: "active", 3: "ready"}  # never failed, only held
    b.finish(jid, 1)
    assert b.claim() == [(jid, 3)]
    # other work is not held by it
    other = spool(conn, job(1, "render"))
    assert b.claim() == [(other, 1)]


def test_job_and_command_tags_count(conn, with_limits):
    with_limits("[limits.lic]\nSiteMax = 1\n")
    a = spool(conn, job(2, "render", tags=("lic",)))          # the job's -tags
    b_ = spool(conn, job(2, "render", cmdtags=("lic",)))      # a command's -tags
    c = spool(conn, job(1, "render"))
    b = Blade(conn, slots=8)
    assert b.claim() == [(a, 1), (c, 1)]
    b.finish(a, 1)
    assert b.claim() == [(a, 2)]
    b.finish(a, 2)
    assert b.claim() == [(b_, 1)]


def test_a_per_blade_limit_and_its_exceptions(conn, with_limits):
    with_limits("[limits.sim]\nBladeMax = 1\nBladeExceptions = { big = 3 }\n")
    jid = spool(conn, job(6, "sim"))
    small, big = Blade(conn, name="small", slots=4), Blade(conn, name="big", slots=4)
    assert len(small.claim()) == 1
    assert len(big.claim()) == 3
    assert small.claim() == [] and big.claim() == []
    assert running(conn, "sim") == 4
    assert conn.execute("SELECT numready FROM jobs WHERE jid = %s", (jid,)).fetchone()["numready"] == 2


def test_owner_maxima_and_exceptions(conn, with_limits):
    with_limits("[limits.maya]\nSiteMax = 10\nOwnerMax = 2\nOwnerExceptions = { bob = 3 }\n")
    ann = spool(conn, job(5, "maya"))  # spool() spools as ann
    from tractorcli.db.spool import spool_job
    from tractorcli.jobs.model import resolve

    bobs = spool_job(conn, resolve(job(5, "maya")), owner="bob", spoolhost="ws2")
    b = Blade(conn, slots=10)
    got = b.claim()
    assert sorted(j for j, _ in got) == [ann, ann, bobs, bobs, bobs]


def test_project_and_crew_shares(conn, with_limits, tmp_path):
    from tractorcli.crews import load_crews
    from tractorcli.db import crews as crews_db
    from tractorcli.db.spool import spool_job
    from tractorcli.jobs.model import resolve

    (tmp_path / "crews.toml").write_text('[crews]\nLighting = ["carol", "dave"]\n')
    crews_db.store(conn, load_crews(tmp_path))
    with_limits("[limits.prman]\nSiteMax = 10\nProjectShares = { showA = 0.3 }\nCrewShares = { Lighting = 2 }\n")
    show_a = spool_job(conn, resolve(job(5, "prman", projects=("showA",))), owner="ann", spoolhost="ws")
    carol = spool_job(conn, resolve(job(3, "prman")), owner="carol", spoolhost="ws")
    dave = spool_job(conn, resolve(job(3, "prman")), owner="dave", spoolhost="ws")
    other = spool_job(conn, resolve(job(3, "prman")), owner="erin", spoolhost="ws")
    b = Blade(conn, slots=20)
    got = [j for j, _ in b.claim()]
    assert got.count(show_a) == 3  # 30% of 10
    assert got.count(carol) + got.count(dave) == 2  # the crew's share
    assert got.count(other) == 3
    assert len(got) == 8


def test_per_host_counting_counts_a_host_once(conn, with_limits):
    with_limits("[limits.hou]\nSiteMax = 2\nSiteMaxCounting = \"perHost\"\n")
    spool(conn, job(9, "hou"))
    b1, b2, b3 = (Blade(conn, name=f"h{i}", slots=3) for i in range(3))
    assert len(b1.claim()) == 3 and len(b2.claim()) == 3
    assert b3.claim() == []  # a third host would make three
    usage = limits_db.usage(conn, ["hou"])[0]
    assert (usage["inuse"], usage["commands"]) == (2, 6)


def test_every_way_of_ending_gives_the_place_back(conn, with_limits):
    with_limits("[limits.x]\nSiteMax = 1\n")
    jid = spool(conn, job(3, "x"))
    b = Blade(conn, slots=4)
    assert b.claim() == [(jid, 1)]
    b.finish(jid, 1, rcode=1)  # an error
    assert b.claim() == [(jid, 2)]
    d.kill(conn, jid, [2])  # killed by an operator
    b.running.clear()
    assert b.claim() == [(jid, 3)]
    d.blade_exit(conn, b.id, handback=True)  # handed back by a stopping blade
    b.running.clear()
    assert len(b.claim()) == 1
    assert running(conn, "x") == 1


def test_a_reload_applies_to_the_next_claim(conn, with_limits):
    with_limits("[limits.x]\nSiteMax = 1\n")
    spool(conn, job(4, "x"))
    b = Blade(conn, slots=4)
    assert len(b.claim()) == 1
    with_limits("[limits.x]\nSiteMax = 3\n")
    assert len(b.claim()) == 2
    limits_db.store(conn, Limits())  # no limits.toml: no limits
    assert len(b.claim()) == 1


def race(db_settings, n: int, name: str, slots: int, work) -> list[int]:
    """`n` blades (`name`0.., `slots` each) on connections of their own start together and run
    work(conn, blade, seen) at once; what they appended to `seen`.  A blade's exception fails the test."""
    seen: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def blade(i: int) -> None:
        try:
            with connect(db_settings, autocommit=True) as c:
                b = Blade(c, name=f"{name}{i}", slots=slots)
                start.wait()
                work(c, b, seen)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=blade, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return seen


def test_blades_claiming_at_once_never_pass_the_limit(db_settings, conn, with_limits):
    """Eight blades race for one limit of 5, each on its own connection; the running count is checked
    by every blade after each claim."""
    with_limits("[limits.lic]\nSiteMax = 5\n")
    jid = spool(conn, job(200, "lic"))

    def work(c, b, seen) -> None:
        for _ in range(40):
            got = b.claim()
            seen.append(running(c, "lic"))
            for jt in got:
                b.finish(*jt)

    seen = race(db_settings, 8, "r", 4, work)
    assert max(seen) <= 5
    done = conn.execute("SELECT numdone FROM jobs WHERE jid = %s", (jid,)).fetchone()["numdone"]
    assert done > 20  # they did work, five at a time


def test_claims_far_from_a_cap_share_it_and_near_it_count_alone(db_settings, conn, with_limits):
    """Two claims in flight at once (neither committed): far from the cap (64 places to spare: 8
    stripes of 8) both take a command; nearer, the first holds every stripe and the second takes
    nothing until the first commits."""
    with_limits("[limits.lic]\nSiteMax = 66\n")
    for k in range(6):  # a job each: claims of one job queue for its row
        spool(conn, job(1, "lic", title=f"j{k}"))
    blades = [Blade(conn, name=f"s{i}", slots=1) for i in range(3)]

    def claim(c, b) -> int:
        return len(d.claim(c, b.id, b.svc.matching(conn, b.facts, refresh=True), b.facts.hostname, 1))

    with connect(db_settings) as a, connect(db_settings) as b:  # transactions left open
        assert claim(a, blades[0]) == 1 and claim(b, blades[1]) == 1
        a.commit()
        b.commit()
        assert running(conn, "lic") == 2
        assert claim(a, blades[2]) == 1  # 2 + 64 = 66: still on one stripe
        a.commit()
        assert claim(a, Blade(conn, name="s3", slots=1)) == 1  # 3 + 64 > 66: every stripe
        assert claim(b, Blade(conn, name="s4", slots=1)) == 0
        b.rollback()
        a.commit()
        assert claim(b, Blade(conn, name="s5", slots=1)) == 1
        b.commit()
    assert running(conn, "lic") == 5


def test_many_blades_fill_a_wide_limit_exactly(db_settings, conn, with_limits):
    """Ten blades of ten slots race to fill a limit of 70 (past the 64 places taken on one stripe);
    nothing finishes, so the running count must end exactly at the cap."""
    with_limits("[limits.lic]\nSiteMax = 70\n[limits.mine]\nOwnerMax = 68\n")
    spool(conn, job(150, "lic", cmdtags=("mine",)))

    def work(c, b, seen) -> None:
        empty = 0
        while empty < 5 and len(b.running) < 10:
            got = b.claim(slots=1)
            seen.append(running(c, "lic"))
            empty = 0 if got else empty + 1

    seen = race(db_settings, 10, "w", 10, work)
    assert max(seen) <= 68
    # what the race left, claimed one blade at a time: to the cap and no further
    for i in range(10):
        b = Blade(conn, name=f"after{i}", slots=10)
        while b.claim(slots=1):
            pass
    assert running(conn, "lic") == running(conn, "mine") == 68


def test_explain_and_trace_name_the_full_limit_and_who_holds_it(conn, with_limits):
    with_limits("[limits.nuke]\nSiteMax = 2\n")
    jid = spool(conn, job(3, "nuke"))
    b = Blade(conn, slots=2)
    assert len(b.claim()) == 2
    idle = Blade(conn, name="b2", slots=2)
    why = explain_task(conn, jid, 3)
    assert why.reasons[0].kind == "limit"
    assert why.reasons[0].text == "ready; limit nuke is full: 2 of 2 on the site (SiteMax); held by ann 2"
    (t,) = trace_blades(conn, [idle.id])
    (line,) = [x for x in t.lines if x.jid == jid]
    assert line.reason == "limit"
    assert line.text.endswith("but limit nuke is full: 2 of 2 on the site (SiteMax); held by ann 2")
    rows = limits_db.usage(conn)
    assert rows[0]["owners"] == {"ann": 2} and rows[0]["blades"] == {"b1": 2} and rows[0]["inuse"] == 2


# --- tiers ---------------------------------------------------------------------------------------


def test_tiers_come_first_and_jobs_move_between_them(conn):
    batch = spool(conn, job(1, title="batch", tier="batch", priority=100))
    default = spool(conn, job(1, title="default", priority=1))
    rush = spool(conn, job(1, title="rush", tier="RUSH", priority=0))
    moved = spool(conn, job(1, title="moved", tier="batch"))
    from tractorcli.db import ops

    ops.set_attr(conn, moved, "tier", "admin")
    assert conn.execute("SELECT tier, tierpri FROM jobs WHERE jid = %s", (moved,)).fetchone() == \
        {"tier": "admin", "tierpri": 111}
    b = Blade(conn, slots=1)
    order = []
    for _ in range(4):
        ((j, t),) = b.claim()
        order.append(j)
        b.finish(j, t)
    assert order == [moved, rush, default, batch]


def test_unknown_tiers_are_refused_with_the_sites_tiers(conn):
    with pytest.raises(BadInput, match=r"unknown tier 'gold': the site's tiers are admin, rush, default, batch"):
        spool(conn, job(1, tier="gold"))
    assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == 0
    jid = spool(conn, job(1))
    import psycopg

    from tractorcli.db import ops

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown tier gold: the site's tiers are admin"):
        ops.set_attr(conn, jid, "tier", "gold")


def test_the_sites_tiers_from_tractor_toml(conn, tmp_path):
    (tmp_path / "tractor.toml").write_text("SchedulingMode = \"p+rr\"\n[tiers]\nAdmin = 111\nrush = 80\n"
                                           "default = 50\nnight = 5\n")
    s = load_settings(tmp_path)
    assert s.scheduling_mode == "P+RR"
    assert s.tiers == {"admin": 111, "rush": 80, "default": 50, "night": 5}
    live = spool(conn, job(2, tier="rush"))
    assert d.store_tiers(conn, s.tiers) == 1  # the live rush job moves to the new priority
    assert conn.execute("SELECT DISTINCT tierpri FROM ready WHERE jid = %s", (live,)).fetchone()["tierpri"] == 80
    night = spool(conn, job(1, tier="night"))
    assert conn.execute("SELECT tierpri FROM jobs WHERE jid = %s", (night,)).fetchone()["tierpri"] == 5
    with pytest.raises(BadInput, match="the site's tiers are admin, rush, default, night"):
        spool(conn, job(1, tier="batch"))
    (tmp_path / "tractor.toml").write_text("[tiers]\nrush = \"high\"\n")
    with pytest.raises(ConfigError, match=r"tractor.toml:1: tiers: tier rush: expected an integer priority"):
        load_settings(tmp_path)
    (tmp_path / "tractor.toml").write_text("SchedulingMode = \"random\"\n")
    with pytest.raises(ConfigError, match=r"tractor.toml:1: SchedulingMode: expected one of P\+FIFO"):
        load_settings(tmp_path)


# --- scheduling modes ------------------------------------------------------------------------------


def test_fifo_runs_the_older_job_first_and_rr_takes_turns(conn):
    big = spool(conn, job(50, title="big"))
    small = spool(conn, job(3, title="small"))
    b = Blade(conn, slots=2)
    assert [j for j, _ in b.claim()] == [big, big]  # P+FIFO (the default): spool order
    for jt in list(b.running):
        b.finish(*jt)
    d.set_params(conn, {"SchedulingMode": "P+RR"})
    got = []
    for _ in range(3):
        claimed = b.claim()
        got += [j for j, _ in claimed]
        for jt in claimed:
            b.finish(*jt)
    assert got.count(small) == 3  # one of each job's commands per claim, turn about


def test_atcl_prefers_the_job_with_fewest_active_commands(conn):
    d.set_params(conn, {"SchedulingMode": "P+ATCL"})
    a = spool(conn, job(10, title="a"))
    b_ = spool(conn, job(10, title="b"))
    one, two = Blade(conn, name="one", slots=3), Blade(conn, name="two", slots=1)
    assert [j for j, _ in one.claim()] == [a, a, a]  # within one claim the job's count is not re-read
    assert [j for j, _ in two.claim()] == [b_]
    one.finish(a, 1)
    assert [j for j, _ in one.claim()] == [b_]  # a runs 2, b 1: b has the fewest


def test_the_example_file_loads():
    from pathlib import Path

    lim = load_limits(Path(__file__).resolve().parent.parent / "examples")
    assert [x.name for x in lim.limits] == ["nuke", "prman", "houdini"]
    assert lim.limits[0].ownermax == 10 and lim.limits[2].sitecounting == "perHost"
