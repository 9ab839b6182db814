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
  query and one datagram per blade.  Such blades poll and heartbeat every
  `idle_heartbeat` seconds while idle (blade/worker.py): a datagram that is
  lost, or an engine that is down, costs that long at most.

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

__all__ = ["COALESCE", "MESSAGE", "WAKEUP_MODES", "WakePort", "Waker"]

MESSAGE = b"tractor-wake\n"
COALESCE = 0.02  # seconds: at most one fan-out this often while notifications keep coming
RECONNECT_MAX = 4.0


class WakePort:
    """The blade's end: a UDP socket on a port the system picks; `run` calls `wake` per datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.settimeout(1.0)
        self.port: int = self.sock.getsockname()[1]

    def run(self, wake: Callable[[], None], closing: threading.Event) -> None:
        while not closing.is_set():
            try:
                self.sock.recv(64)
            except socket.timeout:
                continue
            except OSError:  # closed under us
                return
            wake()

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

        n = 0
        for row in conn.execute(queries.get("wake_targets")).fetchall():
            addr = "127.0.0.1" if self._is_local(row["ipaddr"]) else row["ipaddr"]
            try:
                self.sock.sendto(MESSAGE, (addr, row["wakeport"]))
                n += 1
            except OSError:  # an address this host cannot reach just now: the blade's poll covers it
                pass
        self.fanouts += 1
        self.sent += n
        return n

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping`: LISTEN on a connection of its own, reconnecting with back-off."""
        from .db.connection import connect

        wait = 0.5
        while not stopping.is_set():
            try:
                conn = connect(self.settings, autocommit=True)
            except TractorError:
                stopping.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX)
                continue
            wait = 0.5
            try:
                conn.execute("LISTEN tractor_ready")
                self.fan_out(conn)  # what was queued while nobody listened
                while not stopping.is_set():
                    if not any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
                        continue
                    self.fan_out(conn)
                    # what else arrives within COALESCE is one more fan-out, not one each
                    until = time.monotonic() + COALESCE
                    more = False
                    while (left := until - time.monotonic()) > 0:
                        more = any(True for _ in conn.notifies(timeout=left)) or more
                    if more:
                        self.fan_out(conn)
            except Exception:  # noqa: BLE001 - the server went away: listen again once it is back
                stopping.wait(wait)
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
