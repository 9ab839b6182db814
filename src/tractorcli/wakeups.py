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
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from .config import WAKEUP_MODES, SiteSettings
from .errors import TractorError

__all__ = ["CHECK", "COALESCE", "MESSAGE", "WAKEUP_MODES", "WakePort", "Waker"]

MESSAGE = b"tractor-wake\n"  # work is queued: claim
CHECK = b"tractor-check\n"  # heartbeat now: something this blade runs was taken from it, or a reload
COALESCE = 0.02  # seconds: at most one fan-out this often while notifications keep coming
RECONNECT_MAX = 4.0


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

    def close(self) -> None:
        self.sock.close()


class Waker:
    """The engine's end: LISTEN tractor_ready, fan out to the blades that may take work."""

    def __init__(self, settings: SiteSettings, say: Callable[[str], None]):
        self.settings = settings
        self.say = say
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.fanouts = 0  # how many times blades were woken (for tests and the bench)
        self.sent = 0  # datagrams sent
        self._local: set[str] | None = None

    def _is_local(self, ipaddr: str) -> bool:
        if self._local is None:
            from .host import host_addresses

            self._local = set(host_addresses(socket.gethostname()))
        return ipaddr.startswith("127.") or ipaddr in self._local

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
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
