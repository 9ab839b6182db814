"""Idle blades' heartbeats through tractor-engine (wakeups.py beats; tractor_blade_beats_v1).

The engine's end (`Beats`) against a real database, blades registered through the same
dispatch calls a blade makes, the datagrams over real UDP sockets; the whole path with a
real engine and a real blade is in test_engine.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

from tractorcli import wakeups as w
from tractorcli.db import dispatch as d
from tractorcli.db.connection import connect
from tractorcli.db.spool import spool_job
from tractorcli.jobs.model import Command, Job, Task, resolve
from tractorcli.service import BladeFacts


@pytest.fixture
def conn(db_settings):
    with connect(db_settings, autocommit=True) as c:
        yield c


class Ear:
    """A blade's wake port as the engine sees it: a UDP socket that collects answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.addr = self.sock.getsockname()

    def answers(self, n: int) -> dict[str, str]:
        got = {}
        for _ in range(n):
            word, bladeid = w.parse_answer(self.sock.recv(256))
            got[bladeid] = word
        return got


def beat(bladeid, conn, *, addr="127.0.0.1", svcids=None, after=None, reload=None, load=0.5) -> dict:
    gen = conn.execute("SELECT coalesce((SELECT value FROM params WHERE name = 'reload-blade'), '0') AS g"
                       ).fetchone()["g"]
    if after is None:
        after = conn.execute("SELECT coalesce(max(svcid), 0) AS m FROM service_exprs").fetchone()["m"]
    data = w.beat_datagram(bladeid, reload=gen if reload is None else reload, svcids=svcids, host="h1", after=after,
                           metrics={"sa": 4.0, "cpu": 0.25}, loadavg=load, availmemory=12.5, availdisk=80.0)
    return w.parse_beat(data, addr)


def write(conn, beats: list[dict]) -> dict[str, str]:
    """The engine's write of these beats; the answers each blade's port got."""
    ear = Ear()
    engine_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = w.Beats(None, engine_sock, lambda t: None)
    b.write(conn, {(x["bladeid"], x["addr"]): (x, ear.addr) for x in beats})
    return ear.answers(len(beats))


def heartbeat_time(conn, bladeid):
    return conn.execute("SELECT heartbeattime, loadavg, metrics FROM blades WHERE bladeid = %s", (bladeid,)).fetchone()


def register(conn, name, ipaddr="127.0.0.1", provides=("PixarRender",)):
    return d.register(conn, d.BladeInfo(name=name, ipaddr=ipaddr, provides=provides, numslots=4))


def test_datagrams_round_trip_and_anything_malformed_is_dropped():
    bid = uuid.uuid4()
    data = w.beat_datagram(bid, reload="3", svcids=[1, 2], host="h", after=7, metrics={"sa": 1.0},
                           loadavg=0.5, availmemory=1.0, availdisk=2.0)
    beat_ = w.parse_beat(data, "10.0.0.5")
    assert beat_ == {"bladeid": str(bid), "addr": "10.0.0.5", "metrics": {"sa": 1.0}, "loadavg": 0.5,
                     "availmemory": 1.0, "availdisk": 2.0, "reload": "3", "host": "h", "after": 7, "svcids": [1, 2]}
    good = json.loads(data[len(w.BEAT):])
    for change in ({"id": "nope"}, {"load": "NaN"}, {"load": float("inf")}, {"svcids": [2**31]}, {"svcids": ["1"]},
                   {"after": True}, {"metrics": [1]}, {"metrics": {"x": "y"}}, {"reload": 3}, {"host": None}):
        bad = w.BEAT + json.dumps({**good, **change}).encode()
        assert w.parse_beat(bad, "1.2.3.4") is None, change
    for junk in (b"tractor-beat {", b"tractor-beat [1]", b"hello", w.BEAT + b'{"id": 1}'):
        assert w.parse_beat(junk, "1.2.3.4") is None
    assert w.parse_answer(w.answer_datagram("work", str(bid))) == ("work", str(bid))
    assert w.parse_answer(b"tractor-beat-answer maybe x") is None and w.parse_answer(w.MESSAGE) is None
    # a blade matching so many expressions that its beat would not fit a datagram heartbeats as before
    assert w.beat_datagram(bid, reload="0", svcids=list(range(5000)), host="h", after=0, metrics={},
                           loadavg=0, availmemory=0, availdisk=0) is None
    assert w.beats_address(None, "db1") is None and w.beats_address("", "db1") is None
    assert w.beats_address(" 4000", "db1") == ("db1", 4000)
    assert w.beats_address(" 4000", "/run/pg") == ("127.0.0.1", 4000)
    assert w.beats_address("10.1.2.3 4000", "db1") == ("10.1.2.3", 4000)


def test_a_batch_renews_idle_blades_and_says_who_has_work(conn):
    idle = register(conn, "idle1")
    wants = register(conn, "wants1")
    other = register(conn, "other1", provides=("Nuke",))
    before = {b: heartbeat_time(conn, b)["heartbeattime"] for b in (idle, wants, other)}
    # a job for PixarRender: ready, its expression known
    spool_job(conn, resolve(Job(title="t", service="PixarRender",
                                 subtasks=[Task(title="a", cmds=[Command(("true",))])])),
              owner="ann", spoolhost="ws1")
    facts = BladeFacts(provides=frozenset({"PixarRender"}), hostname="wants1", profile="default")
    pixar = d.ServiceCache().matching(conn, facts, refresh=True)
    nuke = d.ServiceCache().matching(conn, BladeFacts(provides=frozenset({"Nuke"}), hostname="other1",
                                                      profile="default"), refresh=True)
    assert pixar and not nuke
    time.sleep(0.01)
    got = write(conn, [beat(idle, conn), beat(wants, conn, svcids=pixar, load=2.5), beat(other, conn, svcids=nuke)])
    assert got == {str(idle): "ok", str(wants): "work", str(other): "ok"}
    for b in (idle, wants, other):
        assert heartbeat_time(conn, b)["heartbeattime"] > before[b]
    row = heartbeat_time(conn, wants)
    assert row["loadavg"] == 2.5 and row["metrics"] == {"sa": 4.0, "cpu": 0.25}
    # an expression the blade has not read yet: a claim could find something
    assert write(conn, [beat(other, conn, svcids=nuke, after=0)]) == {str(other): "work"}


def test_a_beat_that_cannot_stand_in_for_a_heartbeat_is_answered_check_and_writes_nothing(conn, db_settings):
    busy = register(conn, "busy1")
    spool_job(conn, resolve(Job(title="t", service="PixarRender",
                                 subtasks=[Task(title="a", cmds=[Command(("true",))])])),
              owner="ann", spoolhost="ws1")
    facts = BladeFacts(provides=frozenset({"PixarRender"}), hostname="busy1", profile="default")
    claims = d.claim(conn, busy, d.ServiceCache().matching(conn, facts, refresh=True), "busy1", 4)
    assert len(claims) == 1
    elsewhere = register(conn, "far1", ipaddr="10.77.0.9")
    lost = register(conn, "lost1")
    conn.execute("UPDATE blades SET status = 'lost' WHERE bladeid = %s", (lost,))
    stale = register(conn, "stale1")
    locked = register(conn, "locked1")
    fine = register(conn, "fine1")
    nobody = uuid.uuid4()
    before = {b: heartbeat_time(conn, b)["heartbeattime"] for b in (busy, elsewhere, lost, stale, locked)}
    with connect(db_settings) as holder:
        holder.execute("SELECT 1 FROM blades WHERE bladeid = %s FOR UPDATE", (locked,))
        got = write(conn, [
            beat(busy, conn),  # runs something: its lease is the heartbeat's to renew, not a datagram's
            beat(elsewhere, conn),  # registered from 10.77.0.9, the datagram came from 127.0.0.1
            beat(lost, conn),  # marked lost: the heartbeat marks it up again
            beat(stale, conn, reload="-1"),  # a reload it has not acted on
            beat(locked, conn),  # its row held just then
            beat(fine, conn),
            {**beat(fine, conn), "bladeid": str(nobody)},  # no such blade
        ])
    assert got == {str(busy): "check", str(elsewhere): "check", str(lost): "check", str(stale): "check",
                   str(locked): "check", str(fine): "ok", str(nobody): "check"}
    for b, t in before.items():
        assert heartbeat_time(conn, b)["heartbeattime"] == t, b
    # a beat forged elsewhere in the same batch as the blade's own: each answered, only its own written
    own, forger, fine_id = Ear(), Ear(), str(fine)
    real, forged = beat(fine, conn, load=1.5), beat(fine, conn, addr="10.66.0.1", load=99.0)
    w.Beats(None, socket.socket(socket.AF_INET, socket.SOCK_DGRAM), lambda t: None).write(
        conn, {(fine_id, "10.66.0.1"): (forged, forger.addr), (fine_id, "127.0.0.1"): (real, own.addr)})
    assert own.answers(1) == {fine_id: "ok"} and forger.answers(1) == {fine_id: "check"}
    assert heartbeat_time(conn, fine)["loadavg"] == 1.5
    # from the address it registered, or a loopback one when that is one of the engine's host's
    assert write(conn, [beat(elsewhere, conn, addr="10.77.0.9")]) == {str(elsewhere): "ok"}
    rows = conn.execute("SELECT bladeid, answer FROM tractor_blade_beats_v1(%s::jsonb, %s)",
                        (json.dumps([beat(elsewhere, conn)]), ["10.77.0.9"])).fetchall()
    assert [(r["bladeid"], r["answer"]) for r in rows] == [(elsewhere, "ok")]


def test_the_engine_publishes_where_it_takes_beats_answers_them_and_withdraws(conn, db_settings):
    bid = register(conn, "eng1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    beats = w.Beats(db_settings, sock, lambda t: None)
    stopping = threading.Event()
    t = threading.Thread(target=beats.run, args=(stopping,), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while (value := d.engine_beats(conn)) is None:
            assert time.monotonic() < deadline, "the engine did not publish its beats address"
            time.sleep(0.02)
        # the test connects by the socket: the engine is on the database's host
        to = w.beats_address(value, db_settings.db.host)
        assert to == ("127.0.0.1", beats.port)
        ear = Ear()
        ear.sock.sendto(b"tractor-beat garbage", to)
        before = heartbeat_time(conn, bid)["heartbeattime"]
        data = w.beat_datagram(bid, reload="0", svcids=None, host="h", after=0, metrics={}, loadavg=0,
                               availmemory=0, availdisk=0)
        ear.sock.sendto(data, to)
        assert w.parse_answer(ear.sock.recv(256)) == ("ok", str(bid))
        assert heartbeat_time(conn, bid)["heartbeattime"] > before
        assert beats.refused == 1 and beats.batches == 1
    finally:
        stopping.set()
        t.join(10)
    assert not t.is_alive() and d.engine_beats(conn) is None
