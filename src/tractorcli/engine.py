"""tractor-engine: the site daemon.

The state machine lives in the database (migration 0003), so the engine is
small: it brings the job database up (`jobdb.start_for_engine`, upgrading
the schema unless told not to), writes the site settings the SQL reads
(retry attempts, the blade lease) into `params`, runs housekeeping every
few seconds (`tractor_housekeep_v1`: requeue the work of blades whose lease
ran out, start and end jobs' postscript phases; re-read tractor.toml and
write those settings again when `tq reloadconfig --tractor` asked for it,
db/reload.py), wakes the blades of a site with BladeWakeups = "engine"
when work is queued (one LISTEN connection for the farm, a datagram per
blade: wakeups.py), optionally runs a local blade with N slots as a child
process, and on exit stops that blade and the database (unless DBShutdown
is off).

Restarting the engine loses nothing: blades keep their processes running
and their reports wait until the database answers again; housekeeping is
idempotent and picks up where it was.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from typing import Callable

from .config import SiteSettings
from .errors import DatabaseUnavailable, StateError, TractorError
from .interrupts import set_from_signal


@dataclasses.dataclass
class EngineOptions:
    blades: int = 0  # slots of the local blade (0: no local blade)
    auto_upgrade: bool = True
    interval: float = 2.0  # seconds between housekeeping passes
    blade_args: tuple[str, ...] = ()  # extra options for the local blade
    stop_database: bool = True  # as DBShutdown says; False keeps it running
    spool: tuple[str, ...] = ()  # job files to spool once up; the engine stops when they have ended


class Engine:
    def __init__(self, settings: SiteSettings, options: EngineOptions, say: Callable[[str], None]):
        self.settings = settings
        self.options = options
        self.say = say
        self.stopping = threading.Event()
        self.blade: subprocess.Popen | None = None
        self.passes = 0
        self.reload_seen: str | None = None  # the tq reloadconfig --tractor generation acted on
        self.waker = None  # wakeups.Waker: wakes the blades of BladeWakeups = "engine"
        self.beats = None  # wakeups.Beats: takes their idle heartbeats
        self._beats_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        from . import jobdb

        rep = jobdb.start_for_engine(self.settings, auto_upgrade=self.options.auto_upgrade)
        for line in rep.lines:
            self.say(line)
        self._write_params()
        self._reload_baseline()
        if self.options.blades:
            self._start_blade()

    def _write_params(self) -> None:
        from .db import dispatch
        from .db.connection import connect, translated

        s = self.settings
        with connect(s, autocommit=True) as conn, translated(s), conn.transaction():
            dispatch.set_params(conn, {
                "CmdAutoRetryAttempts": s.cmd_auto_retry_attempts,
                "CmdRetryrcRetryAttempts": s.cmd_retryrc_retry_attempts,
                "BladeLeaseSecs": s.blade_lease_secs,
                "SchedulingMode": s.scheduling_mode,
            })
            dispatch.store_tiers(conn, s.tiers)

    def _start_blade(self) -> None:
        argv = [sys.executable, "-m", "tractorcli", "tractor-blade", *site_args(self.settings),
                "--slots", str(self.options.blades), *self.options.blade_args]
        self.blade = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.say(f"started a local blade with {self.options.blades} slot(s) (pid {self.blade.pid})")

    def run(self) -> None:
        """Housekeeping until stop() (or a signal) asks to end."""
        from .db import dispatch
        from .db.connection import connect, translated

        if self.settings.blade_wakeups == "engine":  # else each blade LISTENs itself: nothing to relay
            from .wakeups import Beats, Waker

            self.waker = Waker(self.settings, self.say)
            threading.Thread(target=self.waker.run, args=(self.stopping,), daemon=True, name="waker").start()
            # idle blades heartbeat to it, on the waker's port
            self.beats = Beats(self.settings, self.waker.sock, self.say)
            self._beats_thread = threading.Thread(target=self.beats.run, args=(self.stopping,), daemon=True,
                                                  name="beats")
            self._beats_thread.start()
        conn = None
        warned = False
        try:
            while not self.stopping.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = connect(self.settings, autocommit=True)
                        if warned:
                            self.say("the job database answers again")
                            warned = False
                    with translated(self.settings):
                        requeued, finished = dispatch.housekeep(conn)
                    self.passes += 1
                    self._check_reload(conn)
                    if requeued:
                        self.say(f"{requeued} command(s) of lost blades queued again")
                    if finished:
                        self.say(f"{finished} job(s) finished")
                except (DatabaseUnavailable, OSError) as exc:
                    if not warned:
                        self.say(f"the job database does not answer ({exc}); retrying")
                        warned = True
                    if conn is not None:
                        conn.close()
                    conn = None
                except TractorError as exc:
                    self.say(f"housekeeping: {exc.message}")
                    if conn is not None:
                        conn.close()
                    conn = None
                if self.blade is not None and self.blade.poll() is not None and not self.stopping.is_set():
                    self.say(f"the local blade exited with status {self.blade.returncode}; starting it again")
                    self._start_blade()
                self.stopping.wait(self.options.interval)
        finally:
            if conn is not None:
                conn.close()

    def _reload_baseline(self) -> None:
        """The reload generation when the files were read: only later requests count."""
        from .db import reload
        from .db.connection import connect, translated

        with connect(self.settings, autocommit=True) as conn, translated(self.settings):
            self.reload_seen = reload.generation(conn, "tractor")

    def _check_reload(self, conn) -> None:
        """tq reloadconfig --tractor: a new request generation in params (db/reload.py) -> reload()."""
        from .db import reload
        from .db.connection import translated

        with translated(self.settings):
            gen = reload.generation(conn, "tractor")
        if self.reload_seen is None:
            self.reload_seen = gen  # the start read the files: only later requests count
        elif gen != self.reload_seen:
            self.reload_seen = gen
            self.reload()

    def reload(self) -> None:
        """Re-read tractor.toml and write the settings the SQL reads into params again.

        The database settings (db.toml) are those of the running server: they
        take effect at the next start.  A file that does not load leaves the
        current settings in force."""
        from .config import load_settings

        s = self.settings
        if not s.config_dir.is_dir():
            self.say(f"reload requested: no config directory {s.config_dir}; nothing to re-read")
            return
        try:
            new = load_settings(s.config_dir)
        except TractorError as exc:
            self.say(f"reload requested, but the configuration does not load: {exc.message}; keeping the "
                     "current settings")
            return
        self.settings = dataclasses.replace(
            s, engine_owner=new.engine_owner, cmd_auto_retry_attempts=new.cmd_auto_retry_attempts,
            cmd_retryrc_retry_attempts=new.cmd_retryrc_retry_attempts, blade_lease_secs=new.blade_lease_secs,
            scheduling_mode=new.scheduling_mode, tiers=new.tiers)
        self._write_params()
        t = self.settings
        tiers = ", ".join(f"{k} {v}" for k, v in sorted(t.tiers.items(), key=lambda kv: -kv[1]))
        self.say(f"reloaded {s.config_dir / 'tractor.toml'}: CmdAutoRetryAttempts {t.cmd_auto_retry_attempts}, "
                 f"CmdRetryrcRetryAttempts {t.cmd_retryrc_retry_attempts}, BladeLeaseSecs {t.blade_lease_secs}, "
                 f"SchedulingMode {t.scheduling_mode}, tiers {tiers}")

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop the local blade (it lets running commands finish), then the database."""
        from . import jobdb

        if self._beats_thread is not None:  # it withdraws its address while the database is up
            self._beats_thread.join(3.0)
        if self.blade is not None and self.blade.poll() is None:
            self.say("stopping the local blade")
            self.blade.send_signal(signal.SIGTERM)
            try:
                self.blade.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.blade.send_signal(signal.SIGTERM)  # a second TERM: kill and hand back
                try:
                    self.blade.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.blade.kill()
                    self.blade.wait()
        if self.options.stop_database:
            rep = jobdb.stop_for_engine(self.settings)
            for line in rep.lines:
                self.say(line)
        else:
            self.say("leaving the database server running")


def run_engine(settings: SiteSettings, options: EngineOptions, say: Callable[[str], None]) -> int:
    """The whole life of the engine process; returns when SIGTERM or SIGINT arrives."""
    engine_lock(settings)
    engine = Engine(settings, options, say)

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        set_from_signal(engine.stopping)  # (not engine.stop(): interrupts.py)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    result = {"status": 0}
    try:
        engine.start()
        say(f"tractor-engine running (pid {os.getpid()}); housekeeping every {options.interval:g} s")
        if options.spool:
            threading.Thread(target=_spool_and_wait, args=(engine, options.spool, result), daemon=True).start()
        engine.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        engine.shutdown()
    return result["status"]


def _spool_and_wait(engine: Engine, files: tuple[str, ...], result: dict) -> None:
    """--spool: the real tractor-spool --wait on the files, then stop the engine with its status."""
    argv = [sys.executable, "-m", "tractorcli", "tractor-spool", *site_args(engine.settings), "--wait", *files]
    try:
        result["status"] = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
    finally:
        engine.stop()


def site_args(settings: SiteSettings) -> list[str]:
    """--configdir for a child program: the engine's own, unless it is the default
    one and absent (a site with no configuration at all), which the child finds alike."""
    return ["--configdir", str(settings.config_dir)] if settings.config_dir.is_dir() else []


def engine_lock(settings: SiteSettings) -> int:
    """One engine per site: an flock on a file in the data directory, held for life.

    Returns the open descriptor (the lock goes with the process, however it ends).
    """
    import fcntl

    path = settings.data_dir / "tractor-engine.lock"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        from .errors import from_os_error

        raise from_os_error(exc, f"locking {path}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError(f"another tractor-engine runs this site (lock {path})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


__all__ = ["Engine", "EngineOptions", "run_engine", "engine_lock"]
