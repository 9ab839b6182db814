"""Multi-host commands (-atleast/-atmost across blades, -samehost, netrender-style local Cmds):
the claim's bindings on a real job database with simulated blades, then real blades running a
netrender-style Cmd whose %H names the servers it was given."""

from __future__ import annotations

import pytest
from test_blade import sh
from test_dispatch import C, Blade, spool

from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Job, Task, resolve


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


def bindings(conn, jid: int, cid: int = 1) -> list[tuple[str, int, bool, bool]]:
    return [(r["bladename"], r["slots"], r["lent"], r["active"]) for r in conn.execute(
        "SELECT * FROM bindings WHERE jid = %s AND cid = %s ORDER BY iid, seq", (jid, cid))]


def claimed(b: Blade, jid: int) -> d.Claim:
    return next(c for (j, _), c in b.running.items() if j == jid)


def warm(conn, *blades: Blade) -> None:
    """Each blade claims and finishes one plain command: it has matched the service expressions
    once, as a running blade has, so other claims may borrow its slots."""
    jid = spool(conn, Job(title="warm", subtasks=tuple(Task(f"w{i}", cmds=(C("true"),)) for i in range(len(blades)))))
    for b in blades:
        ((j, t),) = b.claim(1)
        b.finish(j, t)
    assert conn.execute("SELECT numdone FROM jobs WHERE jid = %s", (jid,)).fetchone()["numdone"] == len(blades)


def test_a_remote_command_gathers_slots_over_two_blades(conn):
    b1, b2 = Blade(conn, name="b1", slots=2), Blade(conn, name="b2", slots=2)
    warm(conn, b2)  # b2 has matched the service expressions once: it may lend
    jid = spool(conn, Job(subtasks=(Task("sim", cmds=(C("mpirun", "%h", atleast=3),)),)))
    assert b1.claim() == [(jid, 1)]
    c = claimed(b1, jid)
    assert c.numslots == 2  # b1 runs it in its own two slots
    assert c.info["hosts"] == ["b1", "b1", "b2"] and c.info["boundslots"] == 3
    assert bindings(conn, jid) == [("b1", 2, False, True), ("b2", 1, True, True)]
    # b2 lends one of its two slots: it takes only one command of two slots' worth of work
    other = spool(conn, Job(subtasks=tuple(Task(f"o{i}", cmds=(C("x"),)) for i in range(3))))
    assert b2.claim() == [(other, 1)]
    assert b2.claim() == []
    b1.finish(jid, 1)
    assert bindings(conn, jid) == [("b1", 2, False, False), ("b2", 1, True, False)]
    assert b2.claim() == [(other, 2)]  # the lent slot is free again


def test_atleast_is_a_minimum_and_atmost_a_maximum(conn):
    b1, b2, b3 = (Blade(conn, name=f"b{i}", slots=2) for i in (1, 2, 3))
    warm(conn, b2, b3)
    jid = spool(conn, Job(subtasks=(Task("t", cmds=(C("x", atleast=2, atmost=5),)),)))
    assert b1.claim() == [(jid, 1)]
    assert claimed(b1, jid).info["boundslots"] == 5
    assert sum(s for _, s, _, _ in bindings(conn, jid)) == 5
    # six slots on b1..b3, five bound: b4's one and the last free one make another two
    two = spool(conn, Job(subtasks=(Task("t", cmds=(C("y", atleast=2),)),)))
    b4 = Blade(conn, name="b4", slots=1)
    assert b4.claim() == [(two, 1)]
    assert sorted((n, k) for n, k, _, _ in bindings(conn, two)) == [("b3", 1), ("b4", 1)]
    # and nobody lends more than it has free: the farm is full
    three = spool(conn, Job(subtasks=(Task("t", cmds=(C("z", atleast=2),)),)))
    b5 = Blade(conn, name="b5", slots=1)
    assert b5.claim() == []
    assert conn.execute("SELECT count(*) AS n FROM bindings WHERE jid = %s", (three,)).fetchone()["n"] == 0
    assert conn.execute("SELECT state FROM tasks WHERE jid = %s", (three,)).fetchone()["state"] == "ready"


def test_samehost_needs_one_blade_with_room(conn):
    small, big = Blade(conn, name="small", slots=2), Blade(conn, name="big", slots=4)
    jid = spool(conn, Job(subtasks=(Task("t", cmds=(C("render", "-n", "%n", atleast=3, samehost=True),)),)))
    assert small.claim() == []  # two slots here, and a -samehost RemoteCmd runs where its slots are
    assert big.claim() == [(jid, 1)]
    c = claimed(big, jid)
    assert c.numslots == 3 and not c.info["hosts"]  # %h is this blade; %n its 3 slots
    assert bindings(conn, jid) == []


def test_a_netrender_style_local_cmd_binds_servers_of_its_service(conn):
    r1 = Blade(conn, name="r1", provides=("PixarNRM",), slots=2)
    r2 = Blade(conn, name="r2", provides=("PixarNRM",), slots=1)
    ws = Blade(conn, name="ws1", provides=("linux",), slots=1)  # the spooling host: no PixarNRM
    jid = spool(conn, Job(subtasks=(Task("nr", cmds=(
        C("netrender", "%H", "/net/my_ribs/a.rib", local=True, service="PixarNRM", atleast=3),)),)))
    assert r1.claim() == [] and r2.claim() == []  # a local Cmd: only its spooling host runs the client
    assert ws.claim() == [(jid, 1)]
    c = claimed(ws, jid)
    assert c.numslots == 1  # the client's slot
    assert c.info["hosts"] == ["r1", "r1", "r2"] and c.info["boundslots"] == 3
    # servers short: nothing is bound, the command waits
    ws.finish(jid, 1)
    again = spool(conn, Job(subtasks=(Task("nr", cmds=(
        C("netrender", "%H", "b.rib", local=True, service="PixarNRM", atleast=4),)),)))
    assert ws.claim() == []
    assert bindings(conn, again) == []


def test_lent_slots_come_back_however_the_command_ends(conn):
    b1, b2 = Blade(conn, name="b1", slots=1), Blade(conn, name="b2", slots=1)
    warm(conn, b2)
    jid = spool(conn, Job(subtasks=tuple(Task(f"t{i}", cmds=(C("x", atleast=2),)) for i in range(3))))
    assert b1.claim() == [(jid, 1)]
    d.kill(conn, jid, [1])
    b1.running.clear()
    assert bindings(conn, jid, 1)[-1] == ("b2", 1, True, False)
    assert b1.claim() == [(jid, 2)]
    d.blade_exit(conn, b1.id, handback=True)  # handed back: requeued
    b1.running.clear()
    assert all(not active for _, _, _, active in bindings(conn, jid, 2))
    assert conn.execute("SELECT sum(slots) AS n FROM bindings WHERE active").fetchone()["n"] is None


# --- real blades --------------------------------------------------------------------------------


def test_real_blades_run_a_netrender_style_cmd_with_three_server_slots_on_two_blades(db_settings):
    """The seed's `Cmd {netrender %H /net/my_ribs/a.rib} -service {PixarNRM} -atleast 2`, with 3:
    the client runs on a blade of its spooling host (here every blade is), the servers are slots
    of blades providing PixarNRM (the default keys), on at least two blades."""
    from test_blade import Site

    from tractorcli.jobs.model import Command

    s = Site(db_settings)
    try:
        jid = s.spool(Task("netrender", cmds=(Command(
            ("/bin/sh", "-c", 'echo "netrender $@" > nr.txt; echo %n > n.txt', "sh", "%H", "/net/my_ribs/a.rib"),
            local=True, service="PixarNRM", atleast=3),)), title="nr")
        s.blade("--name", "nrm1", "--slots", "2")
        s.blade("--name", "nrm2", "--slots", "1")
        s.blade("--name", "nrm3", "--slots", "1")
        s.wait(lambda: s.one("SELECT numdone FROM jobs WHERE jid = %s", jid)["numdone"] == 1, timeout=30,
               msg="the netrender job")
        bound = [r["bladename"] for r in s.all(
            "SELECT b.bladename, k FROM bindings b, generate_series(1, b.slots) k WHERE b.jid = %s "
            "ORDER BY b.seq, k", jid)]
        words = (s.work / "nr.txt").read_text().split()
        assert words[0] == "netrender" and words[-1] == "/net/my_ribs/a.rib"
        assert words[1:-1] == [w for h in bound for w in ("-h", h)]
        assert len(bound) == 3 and len(set(bound)) >= 2
        assert (s.work / "n.txt").read_text().strip() == "3"
        inv = s.one("SELECT bladename, numslots, lent FROM invocations WHERE jid = %s", jid)
        assert inv["lent"] >= 1 and inv["numslots"] + inv["lent"] == 4  # the client's slot and 3 servers
        assert s.one("SELECT count(*) AS n FROM bindings WHERE active")["n"] == 0  # all given back
    finally:
        s.close()


def test_real_blades_samehost(db_settings):
    from test_blade import Site

    s = Site(db_settings)
    try:
        jid = s.spool(Task("t", cmds=(sh("echo %n %h > same.txt", atleast=2, atmost=3, samehost=True),)))
        s.blade("--name", "one", "--slots", "1")
        s.blade("--name", "four", "--slots", "4")
        s.wait(lambda: s.one("SELECT numdone FROM jobs WHERE jid = %s", jid)["numdone"] == 1, timeout=30)
        assert (s.work / "same.txt").read_text().split()[0] == "3"  # %n: the slots it holds there
        assert s.one("SELECT bladename, numslots FROM invocations WHERE jid = %s", jid) == \
            {"bladename": "four", "numslots": 3}
    finally:
        s.close()


def test_a_spooled_alf_job_with_atleast_keeps_its_slots(conn):
    from tractorcli.jobs.alfred import parse

    job = parse("Job -subtasks { Task t -cmds { RemoteCmd {x} -atleast 2 -atmost 4 -samehost 1 } }\n")
    jid = spool_job(conn, resolve(job), owner="ann", spoolhost="ws")
    row = conn.execute("SELECT minslots, maxslots, samehost FROM commands WHERE jid = %s", (jid,)).fetchone()
    assert row == {"minslots": 2, "maxslots": 4, "samehost": True}
