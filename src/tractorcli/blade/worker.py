"""The blade's main loop: register, heartbeat, claim, launch, report.

One blade process serves one host (or one `--name` on it).  It

1. picks its profile (`blade.toml`: the first whose host tests this host
   passes, or the one named by `--profile`), and registers with the job
   database under its name (the host name unless `--name`), offering the
   profile's slots and service keys;
2. loops:
   * every `heartbeat` seconds (`idle_heartbeat` while it runs nothing;
     and at once when a `tractor_check` notification or the engine's
     datagram says a command was taken from it or a reload was asked),
     renews the leases of what it runs and sends
     its metrics (load, free memory and disk); whatever it runs that the
     answer does not list any more (retried or killed with tq, or given to
     another blade after a lost lease) is killed at once: SIGTERM to the
     command's process group, SIGKILL 3 s later, and not reported; and
     when `tq reloadconfig --blade` asked for it (db/reload.py), picks its
     profile from blade.toml again and updates its keys, slots and zone
     in place (what it runs goes on);
   * when woken by a `tractor_ready` notification (a second connection
     LISTENs; or, with BladeWakeups = "engine", a datagram from
     tractor-engine: wakeups.py), when one of its commands ends, or every
     `poll` seconds, claims ready commands whose service expressions it
     matches, up to its free slots, and launches each (`launch.py`).  With
     engine wake-ups the poll rides on the heartbeat: a blade with free
     slots asks in its heartbeat whether anything is queued that it could
     run, and claims when so (at most every 2 idle heartbeats);
   * reports each command's end (`dispatch.finish`) and its progress
     (`dispatch.progress`, at most 4 times a second per command).
3. stops on SIGTERM/SIGINT: with `on_stop="wait"` it claims nothing more,
   lets running commands finish and report, then exits; with "handback"
   (or on a second signal) it kills its commands and hands them back to the
   queue at once (`dispatch.blade_exit(handback=True)`).

Local `Cmd` commands are claimed only on their spooling host: the claim
passes the short host name, which is what `tractor-spool` records.

The profile's capacity thresholds (`max_load` per CPU, `min_ram` and
`min_disk` GB free) hold back new claims while they are not met.  Not done
by this version: NIMBY (sent with the registration; the claim does not
check it yet), `recent_error_throttle`.

`-expand` commands: the run reads the task definitions the command
printed (its stdout, its -expand file, the TR_EXPAND_CHUNK files it
announced; see `launch.py`); when it exits 0, its report is sent on its
own, grafting them into the job in the same transaction (`db/expand.py`,
migration 0006).  Output that does not parse
is reported as a failure (code 21003) with file:line:col in the log.

When the database connection breaks, running commands go on; the blade
reconnects every few seconds and then sends what it could not (finishes are
kept in order).  Work whose lease ran out meanwhile has been given to
other blades: the next heartbeat says so and those commands are killed.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import SiteSettings
from ..db import queries
from ..db.reload import generation as reload_generation
from ..errors import ConfigError, DatabaseUnavailable, SchemaError, TractorError
from ..host import host_addresses
from ..interrupts import set_from_signal
from ..wakeups import BEAT_ANSWER_WAIT
from .launch import KILL_GRACE, BladeSide, Run, prepare
from .profile import Profile, default_profile, load_profiles, select_profile

__all__ = ["Blade", "BladeOptions", "Identity", "explain", "host_addresses", "host_metrics", "identify", "run_blade"]

ON_STOP = ("wait", "handback")
PROGRESS_INTERVAL = 0.25  # seconds between progress reports of one command
# an unreachable database is asked again after 0.5 s, then twice as long each time up to 4 s: a
# restarted server is found within seconds, and a long outage costs the blade almost no CPU
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 4.0
REVOKED = "no longer assigned to this blade"  # kill reasons of runs that are not reported
HANDBACK = "handback"
OFFLINE_STOP_WAIT = 10.0  # a stopping blade gives up on an unreachable database after this long
# with BladeWakeups = "engine" an idle blade polls when its heartbeat says work is queued for it, at
# most every 2 idle heartbeats (30 s by default)
ENGINE_POLL_BEATS = 2
STALL_CLEAR = 5.0  # a database that refused to store (disk full) stores again after this long without refusing


@dataclasses.dataclass
class BladeOptions:
    name: str | None = None  # default: the host name
    slots: int | None = None  # default: the profile's (0: CPU count)
    profile: str | None = None  # force a profile by name
    # at most a third of BladeLeaseSecs.  A command taken from the blade (tq kill, retry) or a
    # reload is told at once (tractor_check, wakeups.py): the heartbeat only renews leases and
    # records metrics, and a thousand blades heartbeating every 2 s would keep a server core busy
    heartbeat: float = 10.0
    # while nothing runs here (as seldom or less often), at most half of BladeLeaseSecs: an idle
    # blade holds no lease, its heartbeat keeps its row up (marked lost a lease after the last)
    idle_heartbeat: float = 15.0
    poll: float = 1.5  # seconds between claims when nothing wakes the blade (BladeWakeups listen)
    # after a command ends, how long the blade waits for its other running commands to end too
    # before it reports (one cycle for them all: Blade._gather_ends)
    report_gather: float = 0.002
    on_stop: str = "wait"
    exit_when_idle: bool = False
    max_commands: int | None = None
    log_dir: Path | None = None


# --- the host ----------------------------------------------------------------------

def _meminfo_gb() -> tuple[float | None, float | None]:
    """(available, total) memory in GB, or None when unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            fields = {}
            for line in f:
                k, _, v = line.partition(b":")
                fields[k] = v
        avail = int(fields[b"MemAvailable"].split()[0]) / 2**20
        total = int(fields[b"MemTotal"].split()[0]) / 2**20
        return avail, total
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        import psutil  # optional

        vm = psutil.virtual_memory()
        return vm.available / 2**30, vm.total / 2**30
    except Exception:  # noqa: BLE001 - not installed, or not on this platform
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page / 2**30, os.sysconf("SC_PHYS_PAGES") * page / 2**30
    except (AttributeError, ValueError, OSError):
        return None, None


def host_metrics(disk_path: str | os.PathLike) -> dict[str, float | None]:
    """Load average, normalised CPU use, free memory and disk (GB), CPU count."""
    ncpu = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    mem, _total = _meminfo_gb()
    path = Path(disk_path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        disk = shutil.disk_usage(path).free / 2**30
    except OSError:
        disk = None
    return {"loadavg": load, "cpu": None if load is None else load / ncpu, "mem": mem, "disk": disk,
            "nCPUs": float(ncpu)}


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who this blade is: name, host, addresses, profile and slots."""

    name: str
    hostname: str  # the full host name (%h, a service key)
    short_host: str  # what tractor-spool records as the spooling host (local Cmds)
    addresses: tuple[str, ...]
    profile: Profile
    slots: int
    disk_path: str

    @property
    def provides(self) -> tuple[str, ...]:
        keys = list(self.profile.provides)
        if self.name.lower() not in (self.hostname.lower(), self.short_host.lower()):
            keys.append(self.name)  # a --name is a service key too
        return tuple(keys)

    def facts(self, metrics: dict[str, float | None], free_slots: int):
        from ..service import BladeFacts

        m = {k: metrics.get(k) for k in ("disk", "mem", "nCPUs", "cpu")}
        m["sa"] = float(free_slots)
        return BladeFacts(provides=frozenset(self.provides), hostname=self.hostname, addresses=self.addresses,
                          profile=self.profile.name, metrics=m)

    def nimby(self) -> str:
        n = self.profile.nimby
        return "" if n is False else "1" if n is True else str(n)


def identify(settings: SiteSettings, options: BladeOptions) -> Identity:
    """Pick the profile and work out names, addresses and slots.  Raises ConfigError."""
    from ..submit import default_host

    hostname = socket.gethostname() or "localhost"
    short = default_host() or hostname
    name = options.name or short
    # first the address it reaches the database's host with: where the engine there reaches it
    addresses = tuple(host_addresses(hostname, settings.db.host))
    if Path(settings.config_dir).is_dir():
        profiles = load_profiles(settings.config_dir, data_dir=settings.data_dir)
    else:  # no site configuration at all: the built-in default profile
        profiles = [default_profile(settings.data_dir)]
    if options.profile:
        found = [p for p in profiles if p.name.lower() == options.profile.lower()]
        if not found:
            raise ConfigError(f"no blade profile named {options.profile!r} "
                              f"(profiles: {', '.join(p.name for p in profiles)})")
        profile = found[0]
    else:
        profile = select_profile(profiles, list(dict.fromkeys([name, hostname, short])), addresses=addresses)
    if options.log_dir is not None:
        template = Path(options.log_dir).absolute() / "%u" / "J%j" / "T%t.log"
        profile = dataclasses.replace(profile, cmd_output_logging=str(template))
    if options.slots is not None:
        slots = options.slots if options.slots > 0 else (os.cpu_count() or 1)
    else:
        slots = profile.effective_slots()
    disk = profile.min_disk_path or str(settings.data_dir)
    return Identity(name=name, hostname=hostname, short_host=short, addresses=addresses, profile=profile,
                    slots=slots, disk_path=disk)


def explain(settings: SiteSettings, options: BladeOptions, expr: str):
    """(Explanation, Identity, facts) of whether this blade matches `expr`.

    Needs no database.  Raises ServiceExprError (bad input, with the column)."""
    from ..service import explain as _explain
    from ..service import parse

    parsed = parse(expr)  # a syntax error first, before any host probing
    ident = identify(settings, options)
    facts = ident.facts(host_metrics(ident.disk_path), ident.slots)
    return _explain(parsed, facts), ident, facts


# --- the loop -------------------------------------------------------------------------

class _Offline(Exception):
    """The database connection broke; the loop reconnects."""


class _Stalled(_Offline):
    """The database is there but cannot store anything just now (its disk is full, it is out of
    memory): the connection is kept; what was not stored is kept and sent again, and the
    heartbeats go on, so the leases of what runs here do not run out."""


class _Contended(_Offline):
    """PostgreSQL aborted the call to break a lock cycle each time it was run again (db/rerun.py):
    the connection is kept and what was not stored is sent again at the loop's next turn."""


class Blade:
    """One blade process.  `run()` returns the exit status."""

    def __init__(self, settings: SiteSettings, options: BladeOptions, *,
                 say: Callable[[str], None] = lambda text: None,
                 detail: Callable[[str], None] = lambda text: None):
        if options.on_stop not in ON_STOP:
            raise ValueError(f"on_stop must be one of {ON_STOP}")
        self.settings = settings
        self.options = options
        self.say = say
        self.detail = detail
        self.ident: Identity | None = None
        self.conn = None
        self.bladeid = None
        self.runs: dict[tuple[int, int, int], Run] = {}
        self.reports: list[tuple[Any, Run]] = []  # (claim, run) ended, not yet reported
        self.pending: list[Any] = []  # claimed, not launched yet (the connection broke in between)
        self.wake = threading.Event()
        self.notified = False
        self.check_now = False  # heartbeat at the next turn (wakeups.CHECK, tractor_check)
        # what the last heartbeat said about work for this blade (dispatch.Kept.work): with engine
        # wake-ups an idle blade polls only when told there is some; None: not asked
        self.work_seen: bool | None = None
        self.stop_mode: str | None = None  # None, "wait" or "handback"
        self.signals = 0
        self.launched = 0
        self.closing = threading.Event()
        self._listener: threading.Thread | None = None
        self._wakeport = None  # wakeups.WakePort with BladeWakeups = "engine"
        # where the engine takes this blade's idle heartbeats (wakeups.beats_address), and when the
        # beat it waits an answer to went (None: none unanswered)
        self._beats_to: tuple[str, int] | None = None
        self._beat_sent: float | None = None
        self._beat_asked = False
        self._svc = None
        self._base_env: dict[str, str] | None = None
        self._metrics: dict[str, float | None] = {}
        self._metrics_at = 0.0
        self._held_back: str | None = None
        self.unsent_pids: list[tuple[tuple[int, int, int], int]] = []  # launched, pid not yet recorded
        self._stalled: TractorError | None = None  # why the database cannot store just now
        self._stalled_since = 0.0  # when it first refused
        self._stalled_last = 0.0  # when it last refused

    # -- database ------------------------------------------------------------------

    def _connect(self, purpose: str | None = None):
        """The work connection (claims, heartbeats, reports: through the site's pooler when there
        is one), or with purpose LISTEN the wake-up listener's (straight to the server)."""
        from ..db.connection import BLADE, connect

        return connect(self.settings, autocommit=True, purpose=purpose or BLADE)

    def _db(self, fn, *args, **kw):
        """Call a dispatch function; a broken connection raises _Offline.  Work the database
        aborted to break a deadlock runs again (each dispatch call is safe to repeat)."""
        import psycopg

        from ..db.rerun import ATTEMPTS, CONFLICTS, rerun

        if self.conn is None:
            raise _Offline()
        try:
            return rerun(fn, self.conn, *args, **kw)
        except CONFLICTS as exc:
            # (before the OperationalErrors they are: the connection is fine)
            self.detail(f"the database aborted this call {ATTEMPTS} times to break deadlocks "
                        f"({str(exc).splitlines()[0]}); trying again at the next turn")
            raise _Contended() from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if (getattr(exc, "sqlstate", None) or "").startswith("53") and not self.conn.broken:
                # class 53, insufficient resources (disk full, out of memory): the server is there
                self._stall(exc)
                raise _Stalled() from None
            self._drop(exc)
            raise _Offline() from None
        except psycopg.Error as exc:
            from ..db.connection import translate

            raise translate(exc, self.settings) from None

    def _stall(self, exc: Exception) -> None:
        """The server refused to store something for want of space (or memory); said once."""
        from ..db.connection import translate

        error = translate(exc, self.settings)
        now = time.monotonic()
        if self._stalled is None:
            self._stalled_since = now
            self.say(f"{error.message}: nothing can be stored there just now; commands keep running, "
                     "their results are held and sent again until it can")
        else:
            self.detail(f"still cannot store: {error.message}")
        self._stalled, self._stalled_last = error, now

    def _stored(self) -> None:
        """Something was stored (a result, a claim, a heartbeat).  On a nearly full disk some
        writes find room and others do not: the database counts as storing again once nothing
        was refused for STALL_CLEAR seconds."""
        if self._stalled is not None and time.monotonic() - self._stalled_last >= STALL_CLEAR:
            self._stalled = None
            self.say(f"the job database stores again (it refused to for "
                     f"{self._stalled_last - self._stalled_since:.0f} s)")

    def _drop(self, exc: Exception) -> None:
        first = str(exc).strip().splitlines()
        reason = first[0] if first else exc.__class__.__name__
        if "pipeline mode" in reason:
            # libpq's words when the server went away in the middle of a pipelined call (a blade's
            # report): what it said before going is lost with the connection
            reason = "the server closed it during a call"
        self.say(f"lost the database connection ({reason}); commands keep running, reconnecting")
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        self.conn = None
        self._reconnect_wait = RECONNECT_FIRST
        self._next_reconnect = time.monotonic() + self._reconnect_wait

    def _reconnect(self) -> None:
        if self.conn is not None or time.monotonic() < self._next_reconnect:
            return
        try:
            self.conn = self._connect()
        except TractorError as exc:
            self.detail(f"reconnect failed: {exc.message}")
            self._reconnect_wait = min(self._reconnect_wait * 2, RECONNECT_MAX)
            self._next_reconnect = time.monotonic() + self._reconnect_wait
            return
        self.say("database connection restored")

    def _woken(self, data: bytes = b"") -> None:
        """Work was queued (a notification, or the engine's datagram): claim at the next turn.
        Or (CHECK) a command running here was taken from it, or a reload was asked: heartbeat.
        Or the engine's answer to a beat: as a heartbeat's answer ('check': heartbeat through the
        database now)."""
        from ..wakeups import CHECK, parse_answer

        answer = parse_answer(data)
        if answer is not None:  # the engine wrote a beat of this blade's (or could not stand in for it)
            word, bladeid = answer
            if self.bladeid is None or bladeid != str(self.bladeid):
                return
            self._beat_sent = None
            if word == "check":
                self.check_now = True
            else:  # as a heartbeat's answer: whether a claim could find anything, when it asked
                self.work_seen = (word == "work") if self._beat_asked else None
        elif data == CHECK:
            self.check_now = True
        else:
            self.notified = True
        self.wake.set()

    def _check(self, payload: str) -> None:
        """A tractor_check notification: for this blade (its id) or all ('*')."""
        if payload == "*" or (self.bladeid is not None and payload == str(self.bladeid)):
            self.check_now = True
            self.wake.set()

    def _listen(self) -> None:
        """Wake the loop on every `tractor_ready` notification (own connection)."""
        from ..db.connection import LISTEN

        while not self.closing.is_set():
            try:
                conn = self._connect(LISTEN)  # LISTEN holds a session: not through the pooler
            except TractorError:
                self.closing.wait(RECONNECT_MAX)
                continue
            try:
                conn.execute("LISTEN tractor_ready")
                conn.execute("LISTEN tractor_check")
                while not self.closing.is_set():
                    for n in conn.notifies(timeout=1.0):
                        if n.channel == "tractor_check":
                            self._check(n.payload)
                        else:
                            self._woken()
            except Exception:  # noqa: BLE001 - fall back to polling until it works again
                self.closing.wait(RECONNECT_MAX)
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    # -- metrics -------------------------------------------------------------------

    def metrics(self, max_age: float = 0.5) -> dict[str, float | None]:
        now = time.monotonic()
        if now - self._metrics_at > max_age:
            self._metrics = host_metrics(self.ident.disk_path)
            self._metrics_at = now
        return self._metrics

    def free_slots(self) -> int:
        return self.ident.slots - sum(r.numslots for r in self.runs.values())

    def _capacity_ok(self, m: dict[str, float | None]) -> bool:
        p = self.ident.profile
        why = None
        if p.max_load and m.get("cpu") is not None and m["cpu"] >= p.max_load:
            why = f"load {m['cpu']:.2f} per CPU is at or above max_load {p.max_load:g}"
        elif p.min_ram and m.get("mem") is not None and m["mem"] < p.min_ram:
            why = f"{m['mem']:.1f} GB free memory is below min_ram {p.min_ram:g}"
        elif p.min_disk and m.get("disk") is not None and m["disk"] < p.min_disk:
            why = f"{m['disk']:.1f} GB free disk is below min_disk {p.min_disk:g}"
        if why != self._held_back:
            self.say(f"not asking for work: {why}" if why else "asking for work again")
            self._held_back = why
        return why is None

    # -- the steps -------------------------------------------------------------------

    def register(self) -> None:
        from ..db import dispatch

        ident = self.ident
        m = self.metrics(0)
        info = dispatch.BladeInfo(
            name=ident.name, ipaddr=ident.addresses[0], port=0, profile=ident.profile.name,
            provides=ident.provides, numslots=ident.slots, osname=platform.system(),
            osversion=platform.release(), version=__version__, numcpu=os.cpu_count() or 1,
            zone=ident.profile.dirmap_zone, nimby=ident.nimby(), metrics=_clean(m))
        self.bladeid = self._db(dispatch.register, info)
        self._db(dispatch.set_wakeport, self.bladeid, self._wakeport.port if self._wakeport else None)
        self._svc = dispatch.ServiceCache()
        self._reload_seen = self._db(reload_generation, "blade")
        self._find_beats()

    def _find_beats(self) -> None:
        """Where the engine takes beats now (with engine wake-ups; None: nowhere, or not told)."""
        from ..db import dispatch
        from ..wakeups import beats_address

        if self._wakeport is not None:
            self._beats_to = beats_address(self._db(dispatch.engine_beats), self.settings.db.host)

    def beat(self) -> bool:
        """An idle blade's heartbeat as a datagram to the engine (wakeups.py beats), asking
        whether there is work when it would claim; False when it cannot go that way (no engine
        takes beats, or the beat would not fit a datagram): heartbeat through the database."""
        from ..wakeups import beat_datagram

        if self._beats_to is None or self._svc is None or self._svc.holes() or self.unsent_pids:
            return False
        m = self.metrics()
        svcids = self._claim_svcids(m)
        data = beat_datagram(self.bladeid, reload=self._reload_seen, svcids=svcids,
                             host=self.ident.short_host, after=self._svc.last, **self._vitals(m))
        if data is None:
            return False
        self._beat_asked = svcids is not None
        first = self._beat_sent is None  # the first beat still unanswered is the one that times out
        if first:
            self._beat_sent = time.monotonic()  # (before it goes: its answer may come back at once)
        if not self._wakeport.send(data, self._beats_to):
            if first:
                self._beat_sent = None
            return False
        return True

    def _vitals(self, m: dict[str, float | None]) -> dict:
        """What a heartbeat records of this host, by the database or in a beat."""
        return {"metrics": {**_clean(m), "sa": self.free_slots()}, "loadavg": m.get("loadavg") or 0.0,
                "availmemory": m.get("mem") or 0.0, "availdisk": m.get("disk") or 0.0}

    def heartbeat(self, ask: bool = False) -> None:
        """`ask`: a blade that would claim now (with free slots and room, not stopping) also asks
        whether a claim could find anything (`work_seen`), in the same statement."""
        from ..db import dispatch

        m = self.metrics()
        pids = list(self.unsent_pids)
        holding = [*self.runs, *(c.key for c in self.pending), *(c.key for c, _ in self.reports)]
        svcids = self._claim_svcids(m) if ask else None
        keep = self._db(dispatch.heartbeat, self.bladeid, holding, pids=pids, reload=True, svcids=svcids,
                        host=self.ident.short_host, svc=self._svc, **self._vitals(m))
        del self.unsent_pids[:len(pids)]
        self.work_seen = keep.work
        self._stored()
        for key, run in list(self.runs.items()):
            if key not in keep and run.kill_reason is None:
                self.say(f"J{key[0]} C{key[1]}: no longer this blade's (retried, killed or requeued); killing it")
                run.log_line("the command was retried, killed or given to another blade; stopping it")
                run.terminate(REVOKED)
        if keep.reload != self._reload_seen:
            self.reload(keep.reload)

    # -- tq reloadconfig --blade -------------------------------------------------------

    _reload_seen: str | None = None  # the reload-blade generation acted on (db/reload.py)

    def reload(self, generation: str) -> None:
        """Pick the profile again from blade.toml and update the blade's row in place
        (keys, slots, profile, zone; NIMBY when the profile's changed).  What it runs
        goes on; a profile that does not load leaves the current one in force.
        `generation`: the reload-blade generation the heartbeat just read, now acted on."""
        self._reload_seen = generation
        try:
            ident = identify(self.settings, self.options)
        except TractorError as exc:
            self.say(f"reload requested, but the blade profile does not load: {exc.message}; keeping "
                     f"profile {self.ident.profile.name}")
            return
        old, self.ident = self.ident, ident
        nimby = ident.nimby() if ident.nimby() != old.nimby() else None
        self._db(lambda conn: conn.execute(queries.get("blade_reconfigure"), {
            "bladeid": self.bladeid, "profile": ident.profile.name, "provides": list(ident.provides),
            "numslots": ident.slots, "nimby": nimby, "zone": ident.profile.dirmap_zone}))
        self.notified = True  # new keys or slots: claim again now
        self.say(f"reloaded blade profile: {ident.profile.name}, {ident.slots} slot(s), "
                 f"keys {', '.join(ident.provides) or '-'}")

    _plugin: Any = None  # the profile's keys plug-in (blade/keys_plugin.py), for self._plugin_path
    _plugin_path: Path | None = None

    def _facts(self, metrics: dict, free: int):
        """What the service expressions are matched against for this claim: the profile's keys, or
        what the site's keys plug-in offers instead."""
        facts = self.ident.facts(metrics, free)
        p = self.ident.profile
        path = None
        if p.keys_plugin:
            path = Path(p.keys_plugin)
            if not path.is_absolute():
                path = (p.source.parent if p.source else self.settings.config_dir) / path
        if path != self._plugin_path:  # first use, or a reloaded profile
            from .keys_plugin import KeysPlugin

            self._plugin_path = path
            self._plugin = KeysPlugin(path, self.say) if path else None
        if self._plugin is None:
            return facts
        keys = self._plugin.offer(tuple(self.ident.provides), {
            "name": self.ident.name, "profile": p.name, "slots": self.ident.slots, "free_slots": free,
            "metrics": dict(facts.metrics)})
        return dataclasses.replace(facts, provides=frozenset(keys))

    # A claim can come back empty while work is ready: another blade's claim holds the ready rows
    # (SKIP LOCKED) or a limit's lock for a moment.  Right after finding work, an empty claim is
    # tried again soon (RETRY_FIRST seconds, doubling up to the poll interval) instead of waiting
    # for a notification that may not come (nothing new became ready).
    RETRY_FIRST = 0.01
    _last_work = -1e9  # monotonic time of the last claim that got work
    _retry_delay = RETRY_FIRST
    retry_at = float("inf")  # when to claim again although nothing woke the blade

    def _after_claim(self, got: int, free: int) -> None:
        now = time.monotonic()
        if got:
            self._last_work = now
            self._retry_delay = self.RETRY_FIRST
            self.retry_at = float("inf")
        elif free > 0 and now - self._last_work < 2 * self.options.poll:
            self.retry_at = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.options.poll)
        else:
            self.retry_at = float("inf")

    def _may_poll(self, engine: bool) -> bool:
        """Whether a poll is wanted when due: always, but with engine wake-ups not after a
        heartbeat said nothing is queued for this blade."""
        return not engine or self.work_seen is not False

    def _claimable(self) -> int:
        """The slots a claim may fill now (0: none)."""
        free = self.free_slots()
        if self.options.max_commands is not None:
            free = min(free, self.options.max_commands - self.launched)
        return max(free, 0)

    def _claim_svcids(self, m: dict) -> list[int] | None:
        """The service expressions a claim would pass now, as the blade's cache knows them (no
        query: new ones are the database's to tell); None when it would not claim."""
        if self.stop_mode is not None or self._svc is None or self._claimable() <= 0 or not self._capacity_ok(m):
            return None
        return self._svc.matching(None, self._facts(m, self.free_slots()), refresh=False)

    def claim(self) -> int:
        """Claim and launch up to the free slots; the number launched."""
        from ..db import dispatch

        free = self._claimable()
        if free <= 0:
            return 0
        m = self.metrics()
        if not self._capacity_ok(m):
            return 0
        facts = self._facts(m, self.free_slots())
        asked = time.monotonic()
        svcids = self._db(self._svc.matching, facts)
        claims = self._db(dispatch.claim, self.bladeid, svcids, self.ident.short_host, free)
        if not claims and self._db(self._svc.refresh, unless_since=asked):
            # a job with a service expression this blade had not seen yet
            svcids = self._db(self._svc.matching, facts, refresh=False)
            claims = self._db(dispatch.claim, self.bladeid, svcids, self.ident.short_host, free)
        self._after_claim(len(claims), free)
        if claims:
            self._stored()
        self.pending += claims
        self.launch_pending()
        return len(claims)

    def launch_pending(self) -> None:
        """Launch what was claimed; kept for later if the connection breaks in between."""
        while self.pending:
            self.launch(self.pending[0])
            self.pending.pop(0)

    def launch(self, c) -> None:
        from ..db import dispatch

        info = c.info if c.info is not None else self._db(dispatch.launch_info, c.jid, c.cid)
        p = self.ident.profile
        if self._base_env is None:
            # the blade's environment, read once: os.environ decodes every variable on each read
            self._base_env = dict(os.environ)
        side = BladeSide(name=self.ident.name, hostname=self.ident.hostname, zone=p.dirmap_zone,
                         base_env=self._base_env,
                         env_handlers=p.env_handlers(), log_path=p.log_path, data_dir=self.settings.data_dir,
                         exit_status_terminate=p.exit_status_terminate,
                         run_as=p.run_as or self.settings.blade_run_as)
        spec = prepare(info or {"argv": []}, c, side)
        run = Run(spec, numslots=c.numslots, wake=self.wake, claim=c)
        self.runs[c.key] = run
        self.launched += 1
        run.start()
        if run.pid:
            self.unsent_pids.append((c.key, run.pid))
        if run.log_error:
            self.say(f"J{c.jid} T{c.tid}: {run.log_error}")
            run.log_error_said = run.log_error
        self.say(f"J{c.jid} T{c.tid} C{c.cid}.{c.iid}: launched {' '.join(spec.argv)!s:.200}"
                 + (f" (pid {run.pid})" if run.pid else ""))

    def collect(self) -> None:
        """Move ended runs to the report queue; send progress."""
        now = time.monotonic()
        for key, run in list(self.runs.items()):
            if run.done.is_set():
                del self.runs[key]
                if run.kill_reason in (REVOKED, HANDBACK):
                    self.detail(f"J{key[0]} C{key[1]}.{key[2]}: stopped ({run.rcode}); not reported")
                    continue
                self.reports.append((run.claim, run))
                continue
            run.tick(now)
            p = run.progress
            if p is not None and p != run.sent_progress and now - run.sent_progress_at >= PROGRESS_INTERVAL:
                from ..db import dispatch

                run.sent_progress, run.sent_progress_at = p, now
                self._db(dispatch.progress, run.claim, self.bladeid, p)

    def report(self) -> None:
        """Report ended commands; when the blade may take work, claim in the same transaction."""
        from ..db import dispatch

        if not self.reports:
            return
        self.report_expansions()
        if not self.reports:
            return
        batch = list(self.reports)
        free = 0
        svcids: list[int] = []
        limit_reached = self.options.max_commands is not None and self.launched >= self.options.max_commands
        if self.stop_mode is None and not limit_reached:
            free = self.free_slots() - sum(c.numslots for c in self.pending)
            if self.options.max_commands is not None:
                free = min(free, self.options.max_commands - self.launched - len(self.pending))
            if free > 0:
                m = self.metrics()
                if self._capacity_ok(m):
                    svcids = self._db(self._svc.matching, self._facts(m, free))
                else:
                    free = 0
        pids = list(self.unsent_pids)
        outcomes, claims = self._db(dispatch.finish_and_claim, self.bladeid,
                                    [(c, run.rcode, run.elapsed, run.utime, run.stime, run.checkpoint)
                                     for c, run in batch],
                                    svcids, self.ident.short_host, free, pids)
        del self.reports[:len(batch)]
        del self.unsent_pids[:len(pids)]
        self._stored()
        for (c, run), outcome in zip(batch, outcomes):
            self.say(f"J{c.jid} T{c.tid} C{c.cid}.{c.iid}: exit code {run.rcode}"
                     + (f" ({run.note})" if run.note else "") + f" -> {outcome}")
            if run.log_error and run.log_error != run.log_error_said:
                self.say(f"J{c.jid} T{c.tid}: {run.log_error}")
        self._after_claim(len(claims), free)
        if claims:
            self.pending += claims
            self.launch_pending()
            self.notified = True  # a slot may still be free: ask again

    def _gather_ends(self, seconds: float) -> None:
        """A command ended: wait up to `seconds` (--report-gather) for this blade's other running
        commands to end as well, so that one report - one cycle, one transaction - carries them
        all.  A cycle's own cost (the round trip, the claim's walk, the statements around them)
        is most of a very short command's: with 4 blades of 4 slots running trivial commands, the
        server's CPU per command fell by a sixth waiting 2 ms (medians of five pairs: 1.27 ms
        reporting at once, 1.08 ms); a command of minutes loses nothing."""
        until = time.monotonic() + seconds
        while not all(r.done.is_set() for r in self.runs.values()):
            left = until - time.monotonic()
            if left <= 0 or not self.wake.wait(left):
                return
            self.wake.clear()

    def report_expansions(self) -> None:
        """Report the expand commands that succeeded, one transaction each,
        grafting the tasks they printed with the finish (db/expand.py; also
        when they printed none: what an earlier run of the command grafted
        is then detached).  Before the other reports of the batch, which
        they do not depend on."""
        from ..db.expand import finish_expand

        for c, run in [r for r in self.reports if r[1].expansion is not None]:
            outcome, problem = self._db(finish_expand, c, self.bladeid, run.rcode, nodes=run.expansion,
                                        real=run.elapsed, app=run.utime, sys=run.stime)
            self.reports.remove((c, run))
            self._stored()
            if problem is not None:
                run.append_log(f"expand output not grafted: {problem}; the command counts as failed")
            self.say(f"J{c.jid} T{c.tid} C{c.cid}.{c.iid}: exit code {run.rcode}"
                     + (f" ({problem})" if problem else f" ({len(run.expansion)} task(s) to graft)")
                     + f" -> {outcome}")
            self.notified = True  # the grafted tasks may be ready: claim now

    # -- signals -----------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stop_mode = self.options.on_stop
        else:
            self.stop_mode = "handback"
        set_from_signal(self.wake)  # (not self.wake.set(): interrupts.py)

    def _install_signals(self) -> dict:
        old = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                old[s] = signal.signal(s, self._on_signal)
        return old

    # -- run -----------------------------------------------------------------------------

    def run(self) -> int:
        self.ident = identify(self.settings, self.options)
        ident = self.ident
        if self.settings.blade_wakeups == "engine":
            from ..wakeups import WakePort

            self._wakeport = WakePort()
        self.conn = self._connect()
        self._next_reconnect = 0.0
        self._reconnect_wait = RECONNECT_FIRST
        try:
            self.register()
        except _Stalled:
            raise self._stalled from None
        except _Offline:
            raise DatabaseUnavailable("lost the database connection while registering") from None
        self.say(f"blade {ident.name} up: profile {ident.profile.name}, {ident.slots} slot(s), "
                 f"keys {', '.join(ident.provides) or '-'}; host {ident.hostname} {', '.join(ident.addresses)}")
        old = self._install_signals()
        if self._wakeport is not None:
            self._listener = threading.Thread(target=self._wakeport.run, args=(self._woken, self.closing),
                                              daemon=True, name="wake port")
        else:
            self._listener = threading.Thread(target=self._listen, daemon=True, name="listen")
        self._listener.start()
        try:
            return self._loop()
        finally:
            self.closing.set()
            if self._wakeport is not None:
                self._wakeport.close()
            for s, h in old.items():
                signal.signal(s, h)
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def _stop_runs(self, why: str) -> None:
        """End the running commands (TERM, then KILL after KILL_GRACE) without reporting them:
        their leases run out and they are queued again."""
        for run in self.runs.values():
            run.terminate(why)
        deadline = time.monotonic() + KILL_GRACE
        for run in self.runs.values():
            run.join(max(0.0, deadline - time.monotonic()))
        for run in self.runs.values():
            if run.running:
                run.signal(signal.SIGKILL)
                run.join(1.0)

    def _loop(self) -> int:
        from ..db import dispatch

        opts = self.options
        # an idle blade heartbeats less often: it holds no lease, and its row stays up (housekeeping
        # marks a blade lost a lease after its last heartbeat) with a heartbeat's room to spare.
        # A busy one renews its leases three times a lease.  With engine wake-ups each
        # heartbeat of a blade that could claim asks whether anything is queued for it, and the
        # blade polls only when told so, at most every ENGINE_POLL_BEATS idle heartbeats (a lost
        # datagram, or an engine that is down, costs an idle heartbeat; work that is queued but
        # that no claim gives it - paused, limits - a claim that often); else it polls every
        # `poll` seconds, and a notification can be missed only while its listener reconnects
        lease = self.settings.blade_lease_secs
        busy_hb = min(opts.heartbeat, lease / 3)
        idle_hb = max(busy_hb, min(opts.idle_heartbeat, lease / 2))
        engine = self._wakeport is not None
        poll = ENGINE_POLL_BEATS * idle_hb if engine else opts.poll
        now = time.monotonic()
        next_hb = now + busy_hb
        next_poll = now  # claim at once
        stop_announced = None
        stop_at = 0.0
        handback_started = None
        idle_checked = False
        while True:
            now = time.monotonic()
            self._reconnect()
            try:
                try:
                    self.launch_pending()
                    self.collect()
                    self.report()
                except _Stalled:
                    pass  # held; the heartbeat still goes, so the leases of what runs here stay ours
                if (self._beat_sent is not None and now - self._beat_sent >= BEAT_ANSWER_WAIT
                        and self.conn is not None):
                    # the engine did not answer the beat: heartbeat through the database, and ask
                    # again where (or whether) the engine takes beats
                    self._beat_sent = None
                    self.check_now = True
                    self._find_beats()
                if (now >= next_hb or self.check_now) and self.conn is not None:
                    check, self.check_now = self.check_now, False
                    busy = self.runs or self.reports or self.pending
                    next_hb = now + (busy_hb if busy else idle_hb)
                    # an idle blade's heartbeat goes to the engine when it takes them (a check
                    # always goes through the database: a beat could not stand in for it)
                    if check or busy or not engine or not self.beat():
                        self.heartbeat(ask=engine)

                if self.stop_mode != stop_announced:
                    stop_announced = self.stop_mode
                    stop_at = now
                    if self.stop_mode == "wait" and not self.runs:
                        self.say("stopping")
                    elif self.stop_mode == "wait":
                        self.say(f"stopping: waiting for {len(self.runs)} running command(s) to finish "
                                 "(signal again to kill them and hand them back)")
                    else:
                        self.say(f"stopping: killing {len(self.runs)} running command(s) and handing them back")
                if self.stop_mode == "handback":
                    if handback_started is None:
                        handback_started = now
                        for run in self.runs.values():
                            run.terminate(HANDBACK)
                    if not self.runs:
                        n = self._db(dispatch.blade_exit, self.bladeid, handback=True)
                        self.say(f"stopped; {n} command(s) handed back to the queue")
                        return 0
                elif self.stop_mode == "wait" and not self.runs and not self.reports and not self.pending:
                    self._db(dispatch.blade_exit, self.bladeid, handback=False)
                    self.say("stopped")
                    return 0

                limit_reached = opts.max_commands is not None and self.launched >= opts.max_commands
                poll_due = now >= next_poll and self._may_poll(engine)
                if (self.stop_mode is None and not limit_reached and self.conn is not None
                        and (self.notified or poll_due or now >= self.retry_at or idle_checked is False)):
                    self.notified = False
                    self.work_seen = False  # told: claiming now (the next heartbeat asks again)
                    next_poll = now + poll
                    self.retry_at = float("inf")  # the claim sets it again when it comes back empty
                    got = self.claim()
                    idle_checked = True
                    if got:
                        self.notified = True
                        next_hb = min(next_hb, now + busy_hb)  # busy now: its leases renewed every heartbeat
                        continue  # maybe more (another slot, another job)
                    if opts.exit_when_idle and not self.runs and not self.reports and not self.pending:
                        self._db(dispatch.blade_exit, self.bladeid, handback=False)
                        self.say("no work ready and nothing running: exiting (--exit-when-idle)")
                        return 0
                if limit_reached and not self.runs and not self.reports and not self.pending:
                    self._db(dispatch.blade_exit, self.bladeid, handback=False)
                    self.say(f"ran {self.launched} command(s) (--max-commands): exiting")
                    return 0
            except _Offline:
                pass
            except SchemaError as exc:
                # the job database is of another version than this blade and lacks what it calls:
                # nothing can be claimed or reported, so it stops and says why
                self.say(f"stopping: {exc.message}" + (f"; {exc.hint}" if exc.hint else ""))
                self._stop_runs("stopping: the job database does not match this blade")
                raise
            if self.stop_mode is not None and self.conn is None and now - stop_at > OFFLINE_STOP_WAIT:
                self.say(f"stopping without reaching the database for {OFFLINE_STOP_WAIT:g} s: exiting; "
                         "the leases of unreported commands run out and they are queued again")
                self._stop_runs("stopping without a database")
                raise DatabaseUnavailable("could not report to the job database before stopping")

            # sleep until something happens: a notification, a command's end, a timer
            if self.conn is None:
                # offline: heartbeats, claims and progress wait for the connection (their deadlines
                # passed and stay passed: waking for them would spin); the runs' own timers do not
                self.retry_at = float("inf")
                deadlines = [self._next_reconnect]
                if self.stop_mode is not None:
                    deadlines.append(stop_at + OFFLINE_STOP_WAIT)
            else:
                # (with engine wake-ups the poll waits for a heartbeat that says there is work)
                deadlines = [next_hb, next_poll if self.stop_mode is None and self._may_poll(engine) else next_hb]
                if self.retry_at <= time.monotonic() or self.stop_mode is not None:
                    self.retry_at = float("inf")  # not claiming now (stopping): no early wake
                elif self.retry_at < next_poll:
                    deadlines.append(self.retry_at)
                if any(r.sent_progress != r.progress for r in self.runs.values()):
                    deadlines.append(now + PROGRESS_INTERVAL)
                if self._beat_sent is not None:
                    deadlines.append(self._beat_sent + BEAT_ANSWER_WAIT)
            deadlines += [d for d in (r.next_deadline() for r in self.runs.values()) if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic())
            if self.wake.wait(timeout):
                self.wake.clear()
                # a command ended: claim again right away (its slot is free; its successor may be ready)
                if any(r.done.is_set() for r in self.runs.values()):
                    self.notified = True
                    self._gather_ends(opts.report_gather)


def _clean(m: dict[str, float | None]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in m.items() if v is not None}


def run_blade(settings: SiteSettings, options: BladeOptions, *, say=lambda t: None, detail=lambda t: None) -> int:
    return Blade(settings, options, say=say, detail=detail).run()
