"""One thread reads the output of every command a blade runs, and sees them end.

Each started process is handed to the reader (`watch`): its output pipe
and a pidfd (Linux 5.3: a descriptor that becomes readable when the
process exits) go into one epoll set, and the reader's thread turns what
arrives into the run's log and directives (`Run._take`) and the exit into
its result (`Run._complete`).  A thread per command, the way before, cost
every launch a thread's start (the blade's loop waited for the new thread
to be scheduled: about half a millisecond on a busy machine) and gave the
interpreter's lock one more thread to pass between; a blade running four
trivial commands at a time spent more on that than on the commands.

The rules are the per-command thread's (launch.py): output is read until
the pipe's end; when the main process has exited, what it left running in
its group may write for DRAIN_GRACE seconds more, then the group is killed
and the pipe read to its end (for at most DRAIN_KILLED seconds more: a
process that left the group may hold it open for ever).  Where there is no
pidfd (an older kernel), `Run` keeps a thread of its own.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import threading
import time
from typing import Any

__all__ = ["DRAIN_GRACE", "DRAIN_KILLED", "output_reader", "pidfd"]

DRAIN_GRACE = 2.0  # seconds output is read after the main process exited
DRAIN_KILLED = 1.0  # seconds the pipe is read after its group was killed for outliving the command
_CHUNK = 1 << 16


@dataclasses.dataclass(eq=False)
class _Watch:
    run: Any  # launch.Run
    fd: int  # the output pipe's read end
    pidfd: int
    eof: bool = False
    status: int | None = None  # the wait status, once reaped
    rusage: Any = None
    drain_at: float | None = None  # exited with the pipe still open: when to kill the group
    killed: bool = False


class OutputReader:
    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._new: list[_Watch] = []
        self._draining: set[_Watch] = set()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="output")
        self._thread.start()

    def watch(self, run: Any, fd: int, pidfd: int) -> None:
        """Read `fd` for `run` until its end, and reap its process when `pidfd` says it exited."""
        with self._lock:
            self._new.append(_Watch(run, fd, pidfd))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups: the thread is awake already

    # -- the thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._draining:
                timeout = max(0.0, min(w.drain_at for w in self._draining) - time.monotonic())
            for key, _ in self._sel.select(timeout):
                if key.data is None:
                    self._take_new()
                else:
                    w, what = key.data
                    self._guarded(w, self._read if what == "out" else self._reap)
            if self._draining:
                now = time.monotonic()
                for w in [w for w in self._draining if w.drain_at <= now]:
                    self._guarded(w, self._drain_over)

    def _guarded(self, w: _Watch, step) -> None:
        """One step of one run: its trouble ends that run (as its own thread's did), never the
        thread that reads the others."""
        try:
            step(w)
        except Exception as exc:  # noqa: BLE001
            try:
                self._failed(w, exc)
            except Exception:  # noqa: BLE001 - even its end failed: it ends without its log's footer
                self._forget(w)
                w.run._abandon()

    def _take_new(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            new, self._new = self._new, []
        for w in new:
            self._guarded(w, self._register)

    def _register(self, w: _Watch) -> None:
        self._sel.register(w.fd, selectors.EVENT_READ, (w, "out"))
        self._sel.register(w.pidfd, selectors.EVENT_READ, (w, "exit"))

    def _read(self, w: _Watch) -> None:
        try:
            data = os.read(w.fd, _CHUNK)
        except OSError:
            data = b""
        if data:
            w.run._take(data)
            return
        w.eof = True
        self._unregister(w.fd)
        if w.status is not None:
            self._complete(w)

    def _reap(self, w: _Watch) -> None:
        pid, status, rusage = os.wait4(w.run.pid, os.WNOHANG)
        if not pid:
            return  # not ended after all
        self._close_pidfd(w)
        w.status, w.rusage = status, rusage
        w.run._exited()
        if w.eof:
            self._complete(w)
        else:
            # what it left running may still be writing
            w.drain_at = time.monotonic() + DRAIN_GRACE
            self._draining.add(w)

    def _drain_over(self, w: _Watch) -> None:
        if not w.killed:
            w.run.log_line("the command exited; killing what it left running in its process group")
            w.run._signal_group(signal.SIGKILL)
            w.killed = True
            w.drain_at = time.monotonic() + DRAIN_KILLED
        else:
            self._complete(w)  # the pipe is held outside the group: the run ends without its end

    def _complete(self, w: _Watch) -> None:
        self._forget(w)
        w.run._complete(w.status, w.rusage)

    def _close_pidfd(self, w: _Watch) -> None:
        if w.pidfd >= 0:
            self._unregister(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = -1

    def _unregister(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError):
            pass  # never registered (its registration failed), or out already

    def _failed(self, w: _Watch, exc: Exception) -> None:
        """A run whose watching broke: its group is killed and it ends."""
        if w.run.done.is_set():
            self._forget(w)
            return
        w.run.log_line(f"blade error while watching the command: {exc!r}")
        if w.status is None:
            w.run._signal_group(signal.SIGKILL)
            try:
                _, w.status, w.rusage = os.wait4(w.run.pid, 0)
            except ChildProcessError:
                w.status = None
        self._forget(w)
        w.run._complete(w.status, w.rusage)

    def _forget(self, w: _Watch) -> None:
        """`w` out of the epoll set and the drain timers, its pidfd closed."""
        self._draining.discard(w)
        if not w.eof:
            self._unregister(w.fd)
            w.eof = True
        self._close_pidfd(w)


def pidfd(pid: int) -> int | None:
    """A pidfd for the process `pid` (a child not reaped yet), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


_READER: OutputReader | None = None
_READER_LOCK = threading.Lock()


def output_reader() -> OutputReader:
    """This process's reader, started at the first call."""
    global _READER
    with _READER_LOCK:
        if _READER is None:
            _READER = OutputReader()
        return _READER
