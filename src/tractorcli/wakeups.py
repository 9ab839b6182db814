"""Wake-ups: how an idle blade learns that work is queued.

Whatever queues work (a spool, a finish that readies a successor, a retry)
sends the `tractor_ready` notification in its transaction.  A site picks how
it reaches the blades (tractor.toml `BladeWakeups`):

* "listen" (the default): every blade holds a second connection to the
  server that LISTENs for it.  Simple, and fine for tens of blades; a
  thousand blades hold a thousand server connections that idle nearly all
  the time.
* "engine": tractor-engine LISTENs once for the farm (`Waker`).  A blade
  binds a UDP port of its own (`WakePort`), records it in its row
  (`tractor_blade_wakeport_v1`) and waits on it; on a notification the
  engine reads the blades that are up with a free slot and sends each one
  datagram.  A burst of notifications (a spool of many jobs, finishes
  arriving hundreds a second) is one fan-out every `COALESCE` seconds: one
  query and one datagram per blade.  Such blades poll when a heartbeat
  says work is queued for them (every idle heartbeat asks: blade/worker.py):
  a datagram that is lost, or an engine that is down, costs an idle
  heartbeat or two at most.

The same way a blade hears `tractor_check`: a command it runs was taken
from it (tq retry, kill, ...: the payload is its id), or `tq reloadconfig
--blade` asked every blade ('*').  It heartbeats at once, and the answer
says what to stop.  So a kill takes effect in milliseconds, not at the next
heartbeat, and heartbeats can be seconds apart.

A datagram tells a blade nothing but "ask now": whoever can send to its
port can make it claim sooner, not claim anything the database would not
give it.  The engine sends to blades on its own host through the loopback
address.

Beats: with engine wake-ups an idle blade (holding and running nothing) does
not heartbeat through the database either.  It sends its heartbeat to the
engine as a datagram from its wake port (`beat_datagram`), to the address
the engine publishes in `params` ('engine-beats': `Beats.publish`, read by
`beats_address`).  The engine gathers them (`Beats`) and writes each half
second's in one statement (`tractor_blade_beats_v1`), then answers each
blade: 'ok', 'work' (a claim could find something: the blade claims) or
'check' (heartbeat through the database now: the beat could not stand in for
it).  A blade that hears no answer in BEAT_ANSWER_WAIT seconds heartbeats
through the database, so an engine that is down, or a datagram lost, costs
one ordinary heartbeat.  The function renews only an idle blade that is up,
from the address it registered: a forged datagram can keep an idle blade's
row marked up, never a lease of work.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable

from .config import WAKEUP_MODES, SiteSettings
from .errors import TractorError

__all__ = ["ANSWER", "BEAT", "BEAT_ANSWER_WAIT", "Beats", "CHECK", "COALESCE", "MESSAGE", "WAKEUP_MODES", "WakePort",
           "Waker", "beat_datagram", "beats_address", "parse_answer", "parse_beat"]

MESSAGE = b"tractor-wake\n"  # work is queued: claim
CHECK = b"tractor-check\n"  # heartbeat now: something this blade runs was taken from it, or a reload
COALESCE = 0.02  # seconds: at most one fan-out this often while notifications keep coming
RECONNECT_MAX = 4.0
BEAT = b"tractor-beat "  # blade -> engine: an idle blade's heartbeat, JSON after it
ANSWER = b"tractor-beat-answer "  # engine -> blade: b"ok|work|check <bladeid>\n"
ANSWERS = ("ok", "work", "check")
BEAT_EVERY = 0.5  # seconds: the engine writes the beats it gathered at most this often
BEAT_ANSWER_WAIT = 2.0  # seconds: a beat not answered by then, the blade heartbeats through the database
BEAT_MAX = 8192  # bytes: a longer beat (a blade matching very many service expressions) is not sent
_INT32 = 2**31


class WakePort:
    """The blade's end: a UDP socket on a port the system picks; `run` calls `wake(data)` per
    datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.settimeout(1.0)
        self.port: int = self.sock.getsockname()[1]

    def run(self, wake: Callable[[bytes], None], closing: threading.Event) -> None:
        while not closing.is_set():
            try:
                data = self.sock.recv(64)
            except socket.timeout:
                continue
            except OSError:  # closed under us
                return
            wake(data)

    def send(self, data: bytes, to: tuple[str, int]) -> bool:
        """A datagram from this port (the engine answers a beat here); whether it went."""
        try:
            self.sock.sendto(data, to)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


class Waker:
    """The engine's end: LISTEN tractor_ready, fan out to the blades that may take work."""

    def __init__(self, settings: SiteSettings, say: Callable[[str], None]):
        self.settings = settings
        self.say = say
        # bound now: blades' beats come to this port (Beats), and its answers and wake-ups leave it
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.fanouts = 0  # how many times blades were woken (for tests and the bench)
        self.sent = 0  # datagrams sent

    @staticmethod
    def _is_local(ipaddr: str) -> bool:
        return ipaddr.startswith("127.") or ipaddr in local_addresses()

    def fan_out(self, conn) -> int:
        """One datagram to each blade that is up with a free slot; how many were sent."""
        from .db import queries

        n = self._send(conn.execute(queries.get("wake_targets")).fetchall(), MESSAGE)
        self.fanouts += 1
        return n

    def check(self, conn, ids: set[str]) -> int:
        """Tell the blades of these ids ('*': all) to heartbeat now; how many were told."""
        from .db import queries

        return self._send(conn.execute(queries.get("wake_check_targets"), {"ids": sorted(ids)}).fetchall(), CHECK)

    def _send(self, rows, message: bytes) -> int:
        n = 0
        for row in rows:
            addr = "127.0.0.1" if self._is_local(row["ipaddr"]) else row["ipaddr"]
            try:
                self.sock.sendto(message, (addr, row["wakeport"]))
                n += 1
            except OSError:  # an address this host cannot reach just now: the blade's poll covers it
                pass
        self.sent += n
        return n

    def _dispatch(self, conn, notes) -> bool:
        """Act on a batch of notifications; whether there was any."""
        ready = False
        checks: set[str] = set()
        for n in notes:
            if n.channel == "tractor_check":
                checks.add(n.payload)
            else:
                ready = True
        if checks:
            self.check(conn, checks)
        if ready:
            self.fan_out(conn)
        return ready or bool(checks)

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: LISTEN on a connection of its own, reconnecting with back-off."""
        from .db.connection import LISTEN, connect

        wait = 0.5
        while not stopping.is_set():
            try:
                conn = connect(self.settings, autocommit=True, purpose=LISTEN)
            except TractorError:
                stopping.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX)
                continue
            wait = 0.5
            try:
                conn.execute("LISTEN tractor_ready")
                conn.execute("LISTEN tractor_check")
                self.fan_out(conn)  # what was queued while nobody listened
                while not stopping.is_set():
                    if not self._dispatch(conn, list(conn.notifies(timeout=1.0, stop_after=1))):
                        continue
                    # what else arrives within COALESCE is one more fan-out, not one each
                    until = time.monotonic() + COALESCE
                    notes = []
                    while (left := until - time.monotonic()) > 0:
                        notes += conn.notifies(timeout=left)
                    self._dispatch(conn, notes)
            except Exception:  # noqa: BLE001 - the server went away: listen again once it is back
                stopping.wait(wait)
            finally:
                _close(conn)


_local: list[str] | None = None


def local_addresses() -> list[str]:
    """This host's own IPv4 addresses (read once)."""
    global _local
    if _local is None:
        from .host import host_addresses

        _local = host_addresses(socket.gethostname())
    return _local


# --- beats: idle blades' heartbeats through the engine -----------------------------------------

def beat_datagram(bladeid, *, reload: str, svcids: list[int] | None, host: str, after: int,
                  metrics: dict[str, float], loadavg: float, availmemory: float, availdisk: float) -> bytes | None:
    """An idle blade's heartbeat as a datagram (None: too long for one; it heartbeats through the
    database).  `svcids`: the service expressions it would claim with now (None: it would not
    claim); `after`: the highest service expression id its cache has read."""
    data = BEAT + json.dumps({"id": str(bladeid), "reload": reload, "svcids": svcids, "host": host, "after": after,
                              "metrics": metrics, "load": loadavg, "mem": availmemory, "disk": availdisk},
                             separators=(",", ":")).encode()
    return data if len(data) <= BEAT_MAX else None


def _real(v) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError("not a finite number")
    return f


def _int32(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not -_INT32 <= v < _INT32:
        raise ValueError("not a 32-bit integer")
    return v


def parse_beat(data: bytes, addr: str) -> dict | None:
    """A beat as `tractor_blade_beats_v1` takes it, every value of the type the function reads;
    None for anything else (whoever can reach the engine's port can send it anything: nothing
    malformed may fail the statement the other blades' beats go in)."""
    if not data.startswith(BEAT):
        return None
    try:
        d = json.loads(data[len(BEAT):])
        svcids = d["svcids"]
        metrics = d["metrics"]
        if not isinstance(metrics, dict) or not isinstance(d["reload"], str) or not isinstance(d["host"], str):
            return None
        return {"bladeid": str(uuid.UUID(d["id"])), "addr": addr,
                "metrics": {str(k)[:64]: _real(v) for k, v in list(metrics.items())[:64]},
                "loadavg": _real(d["load"]), "availmemory": _real(d["mem"]), "availdisk": _real(d["disk"]),
                "reload": d["reload"][:64], "host": d["host"][:255], "after": _int32(d["after"]),
                "svcids": None if svcids is None else [_int32(i) for i in svcids]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def answer_datagram(answer: str, bladeid: str) -> bytes:
    return ANSWER + f"{answer} {bladeid}\n".encode()


def parse_answer(data: bytes) -> tuple[str, str] | None:
    """(answer, blade id) of an engine's answer to a beat; None for any other datagram."""
    if not data.startswith(ANSWER):
        return None
    word, _, bladeid = data[len(ANSWER):].decode("ascii", "replace").strip().partition(" ")
    return (word, bladeid) if word in ANSWERS else None


def beats_address(value: str | None, db_host: str) -> tuple[str, int] | None:
    """Where a blade sends its beats, from the engine's 'engine-beats' param (None: no engine
    takes them).  An empty address: the engine is on the database's host (`db_host`, as the blade
    reaches it; a socket directory or nothing: this host)."""
    if not value:
        return None
    addr, _, port = value.rpartition(" ")
    if not port.isdigit():
        return None
    if not addr:
        addr = db_host if db_host and not db_host.startswith("/") else "127.0.0.1"
    return addr, int(port)


class Beats:
    """The engine's end of beats: gather idle blades' datagrams on the waker's port, write each
    BEAT_EVERY's in one statement, answer each blade (see the module docstring)."""

    def __init__(self, settings: SiteSettings, sock: socket.socket, say: Callable[[str], None]):
        self.settings = settings
        self.sock = sock
        self.say = say
        self.port: int = sock.getsockname()[1]
        self.published: str | None = None  # the param's value this engine wrote
        self.batches = 0  # statements written (for tests and the bench)
        self.beats = 0  # beats written
        self.answers: dict[str, int] = dict.fromkeys(ANSWERS, 0)
        self.refused = 0  # datagrams that were not beats
        self.backend_pid: int | None = None  # its connection's server process, once connected

    def write(self, conn, pending: dict[tuple[str, str], tuple[dict, tuple[str, int]]]) -> None:
        """Write the gathered beats ((blade id, address) -> (beat, where it came from)) and
        answer each."""
        from psycopg.types.json import Jsonb

        from .db import queries

        rows = conn.execute(queries.get("blade_beats"),
                            {"beats": Jsonb([beat for beat, _ in pending.values()]),
                             "local": local_addresses()}).fetchall()
        self.batches += 1
        self.beats += len(rows)
        for row in rows:
            bladeid = str(row["bladeid"])
            self.answers[row["answer"]] += 1
            try:
                self.sock.sendto(answer_datagram(row["answer"], bladeid), pending[bladeid, row["addr"]][1])
            except OSError:  # the blade hears nothing: it heartbeats through the database
                pass

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: receive, and write every BEAT_EVERY; a connection of its own,
        opened again with back-off (beats that arrive meanwhile go unanswered: their blades
        heartbeat through the database)."""
        from .db.connection import connect

        conn = None
        wait = 0.5
        retry_at = 0.0
        # a blade's last beat from each address (one forged elsewhere does not hide its own)
        pending: dict[tuple[str, str], tuple[dict, tuple[str, int]]] = {}
        write_at = None
        try:
            while not stopping.is_set():
                now = time.monotonic()
                if conn is None and now >= retry_at:
                    try:
                        conn = connect(self.settings, autocommit=True)
                        self.published = self.publish(conn)
                        self.backend_pid = conn.info.backend_pid
                        wait = 0.5
                    except Exception:  # noqa: BLE001 - the server is away: try again later
                        conn = _close(conn)
                        retry_at = now + wait
                        wait = min(wait * 2, RECONNECT_MAX)
                self.sock.settimeout(max(0.01, (write_at or now + 1.0) - now))
                try:
                    data, src = self.sock.recvfrom(BEAT_MAX + 1)
                except socket.timeout:
                    data = None
                except OSError:  # closed under us
                    return
                if data is not None:
                    beat = parse_beat(data, src[0])
                    if beat is None:
                        self.refused += 1
                    elif conn is not None:
                        pending[beat["bladeid"], beat["addr"]] = (beat, src)
                        write_at = write_at or time.monotonic() + BEAT_EVERY
                if write_at is not None and time.monotonic() >= write_at:
                    batch, pending, write_at = pending, {}, None
                    try:
                        self.write(conn, batch)
                    except Exception as exc:  # noqa: BLE001 - unanswered: those blades heartbeat through the database
                        self.say(f"writing {len(batch)} blade heartbeat(s) failed: {exc}; connecting again")
                        conn = _close(conn)
                        retry_at = time.monotonic() + wait
        finally:
            self.withdraw(conn)
            _close(conn)

    def publish(self, conn) -> str:
        """Tell blades where the engine takes beats (the 'engine-beats' param): the engine's
        address as the server sees its connection, '' when that is this host's loopback or
        socket (blades then send to the database's host), and this port; the value written."""
        from .db import queries

        return conn.execute(queries.get("engine_beats_publish"), {"port": self.port}).fetchone()["value"]

    def withdraw(self, conn) -> None:
        """The engine stops: blades no longer send beats here (the param goes, unless another
        engine wrote its own since)."""
        from .db import queries

        if conn is None or self.published is None:
            return
        try:
            conn.execute(queries.get("engine_beats_withdraw"), {"value": self.published})
        except Exception:  # noqa: BLE001 - the server is away: blades find out by their beats going unanswered
            pass


def _close(conn) -> None:
    """Close `conn` (None: nothing) whatever state it is in; None, for `conn = _close(conn)`."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    return None
