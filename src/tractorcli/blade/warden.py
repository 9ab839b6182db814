"""The warden: a blade's commands die with the blade.

A blade that is killed (SIGKILL, a crash, the OOM killer) cannot stop what
it runs, and after its lease the queue hands those commands to another
blade: a copy left running would run beside the new one.  So each blade
starts one small process for its whole life, the warden (this file, run as
a script by `python -S`: standard library only, about 10 ms once).  The
blade tells it, on a pipe, the process group of each command it starts
(`+PID`) and of each it has seen end (`-PID`); when the pipe ends, which
is when the blade exits or dies (the kernel closes its end; no command
inherits it, they are started with close_fds), the warden kills every
group still listed with SIGKILL and exits.

The warden reads the pipe every PERIOD seconds, not at each message: a
trivial command's start and end woke it twice (two context switches for
it and the blade, about 0.05 ms of CPU a command at 800 commands/s, the
warden's own time alone).  It waits on the pipe's end only (poll for
POLLHUP, which no message raises), so a blade's death is acted on at once;
the pipe is made large (1 MiB) to hold far more than a PERIOD of messages.

Before this, each command was exec'd through `setpriv --pdeathsig KILL`: a
second exec per command, about 1 ms of CPU each, a fifth of a trivial
command's whole cost.  The warden reaches the whole process group (what
the command started too), where the parent-death signal reached only the
command's own process.  What it cannot cover: the microseconds between a
command's start and the blade's `+PID`, and processes that leave the group
(setsid, daemons).  The warden ignores the signals a terminal or a service
manager sends the blade's group to stop it (INT, TERM, HUP): the blade
decides what happens to its commands then; a blade that exits closes the
pipe, and what it left listed is killed.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import threading

__all__ = ["Warden", "warden"]

PERIOD = 0.2  # seconds between the warden's reads of the pipe
_PIPE_SIZE = 1 << 20  # the pipe's capacity asked for (Linux allows 1 MiB to anyone by default)


class Warden:
    """The blade's end of the pipe."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, close_fds=True)
        self._fd = self.proc.stdin.fileno()
        setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)  # (Linux's)
        if setpipe is not None:
            try:  # messages wait up to a PERIOD for the warden's read
                fcntl.fcntl(self._fd, setpipe, _PIPE_SIZE)
            except OSError:  # a lower fs.pipe-max-size: the default 64 KiB still holds thousands
                pass
        self._lock = threading.Lock()
        self._listed: set[int] = set()

    def _send(self, text: bytes) -> None:
        try:
            os.write(self._fd, text)  # a few bytes: one atomic write, from any thread
        except OSError:  # the warden is gone: started again at the next launch (see `warden`)
            pass

    def track(self, pgid: int) -> None:
        with self._lock:
            self._listed.add(pgid)
        self._send(b"+%d\n" % pgid)

    def untrack(self, pgid: int) -> None:
        with self._lock:
            self._listed.discard(pgid)
        self._send(b"-%d\n" % pgid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the warden: what is still listed is killed."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


_WARDEN: Warden | None = None
_WARDEN_LOCK = threading.Lock()


def warden() -> Warden:
    """This process's warden, started at the first call (and again if it died, with what it
    should know: the groups listed before)."""
    global _WARDEN
    with _WARDEN_LOCK:
        if _WARDEN is None or not _WARDEN.alive():
            old = _WARDEN
            _WARDEN = Warden()
            if old is not None:
                for pgid in sorted(old._listed):
                    _WARDEN.track(pgid)
        return _WARDEN


# --- the warden process ------------------------------------------------------------


def _serve(fd: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.set_blocking(fd, False)
    hangup = select.poll()
    hangup.register(fd, 0)  # no events asked for: only the pipe's end (POLLHUP) wakes the poll
    listed: set[int] = set()
    rest = b""
    ended = False
    while not ended:
        hangup.poll(PERIOD * 1000)
        chunks = []
        while True:  # what the pipe holds now, up to its end
            try:
                data = os.read(fd, _PIPE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                ended = True
                break
            chunks.append(data)
        lines = (rest + b"".join(chunks)).split(b"\n")
        rest = lines.pop()
        for line in lines:
            try:
                pgid = int(line[1:])
            except ValueError:
                continue
            if line[:1] == b"+":
                listed.add(pgid)
            elif line[:1] == b"-":
                listed.discard(pgid)
    for pgid in listed:
        if pgid > 1:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:  # ended meanwhile
                pass


if __name__ == "__main__":
    _serve(sys.stdin.fileno())
