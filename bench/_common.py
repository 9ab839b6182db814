"""Helpers shared by the benchmarks: scratch sites, timing, the programs to run.

Not a benchmark itself (the runner only loads `bench_<name>.py` modules).

As root the PostgreSQL server runs as the `postgres` account, so every scratch
directory lives under /tmp with mode 0755 (pytest's tmp dirs are 0700).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PORT_RANGE = range(9921, 9940)  # the ports benchmarks may use; nothing else


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to (a step failed)."""


def log(msg: str) -> None:
    """Progress to stderr (the table goes to stdout)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def figure(name: str, value, unit: str, target: str | None = None, **extra) -> dict:
    """One measured figure; `target` is a comparison such as "< 150" or "== false"."""
    d = {"figure": name, "value": value, "unit": unit, "target": target}
    d.update(extra)
    return d


# --- the programs under test ---------------------------------------------------


def _is_shim(path: str) -> bool:
    """A pyenv (or similar) shim: a shell script that re-dispatches to the real one."""
    if os.sep + "shims" + os.sep in path:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" not in head.split(b"\n", 1)[0] and b"pyenv" in head


def dbctl_paths() -> dict:
    """Where `tractor-dbctl` is: what PATH finds, and the real script we time.

    When PATH finds a shim, the script beside sys.executable (the interpreter
    running the benchmarks, the one tractorcli is installed in) is used
    instead, so the figures measure our program and not the shim.  A pyenv
    shim puts the real bin dir first on PATH for the program it starts, so
    the shim a user's shell would run is looked for on the whole PATH.
    """
    hits = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d or ".", "tractor-dbctl")
        if os.path.isfile(p) and os.access(p, os.X_OK) and p not in hits:
            hits.append(p)
    found = hits[0] if hits else None
    shims = [p for p in hits if _is_shim(p)]
    beside = Path(sys.executable).parent / "tractor-dbctl"
    if found and not _is_shim(found):
        script = found
    elif beside.is_file():
        script = str(beside)
    else:
        raise BenchError("tractor-dbctl is not installed (pip install -e .[test])")
    return {"script": script, "which": found, "which_is_shim": found in shims, "path_hits": hits,
            "shim": shims[0] if shims else None}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("TRACTOR_CONFIGDIR", "TRACTOR_DEBUG")}


# --- timing ----------------------------------------------------------------------


def time_argv(argv: Sequence[str], *, ok_codes: Sequence[int] = (0,), timeout: float = 3600,
              env: dict | None = None) -> float:
    """Wall time in seconds of one run of `argv` (stdout discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=timeout, env=env or clean_env())
    secs = time.perf_counter() - t0
    if proc.returncode not in ok_codes:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()[-800:]}")
    return secs


# Runs a program and reports its exit code, wall time, peak RSS and CPU time (wait4) on a pipe.
# A process forked from a big one (this benchmark process, after the in-process benchmarks before
# it, grows past 100 MB) keeps that process's peak RSS in its own at exec: wait4 would report it
# for every program run.  This small launcher (python -S: about 9 MB) forks the program instead.
_LAUNCHER = """\
import os, sys, time
fd = int(sys.argv[1])
os.set_inheritable(fd, False)  # (the program does not hold the report's pipe open)
t0, forked = time.perf_counter(), time.time()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall, reaped = time.perf_counter() - t0, time.time()
os.write(fd, ("%d %r %d %r %r %r" % (os.waitstatus_to_exitcode(status), wall, ru.ru_maxrss,
                                      ru.ru_utime + ru.ru_stime, forked, reaped)).encode())
"""


@dataclasses.dataclass(frozen=True)
class Measured:
    """A program's run (run_measured): its exit code, wall seconds from its fork to its reaping,
    peak RSS (KB), CPU seconds (user + system), and the wall clock (time.time()) at the fork and
    at the reaping."""

    code: int
    wall: float
    rss_kb: int
    cpu: float
    forked: float
    reaped: float


def run_measured(argv: Sequence[str], **popen) -> Measured:
    """Run `argv` to its end (Popen keywords for its stdin, stdout, stderr, env, cwd), measured as
    the program's own (_LAUNCHER)."""
    rfd, wfd = os.pipe()
    with os.fdopen(rfd, "rb") as reader:
        try:
            proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(wfd), *argv], pass_fds=(wfd,),
                                    **popen)
        finally:
            os.close(wfd)  # (the launcher holds its own: the read below ends when it exits)
        report = reader.read().decode()
    proc.wait()
    if not report:
        raise BenchError(f"{argv[0]}: the launcher reported nothing (exit {proc.returncode})")
    code, wall, rss, cpu, forked, reaped = report.split()
    return Measured(int(code), float(wall), int(rss), float(cpu), float(forked), float(reaped))


def settle(site: "Site") -> None:
    """The tables as autovacuum keeps a running farm's (no measurement meets the one before's
    dead rows or its autovacuum), the WAL checkpointed."""
    with site.connect(autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) jobs, tasks, commands, ready, invocations, blades")
        conn.execute("CHECKPOINT")


def summary(samples: list[float], scale: float = 1.0) -> dict:
    """median as the value; min, max and the samples for the JSON."""
    s = [x * scale for x in samples]
    return {"value": round(statistics.median(s), 4), "min": round(min(s), 4), "max": round(max(s), 4),
            "runs": len(s), "samples": [round(x, 4) for x in s]}


# --- disk usage --------------------------------------------------------------------


def du_bytes(path: Path) -> int:
    """Disk usage of a tree in bytes, like `du -s -B1` (allocated blocks)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
    try:
        total += os.lstat(path).st_blocks * 512
    except FileNotFoundError:
        pass
    return total


MB = 1e6


# --- ports ----------------------------------------------------------------------------

_taken: set[int] = set()


CLOCK_TICK = os.sysconf("SC_CLK_TCK")  # /proc's CPU times are in these


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...] (fields 3 on; utime and stime
    are [11] and [12], cutime and cstime [13] and [14]), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) process `pid` has used so far: its own, and its children's
    that it has waited for."""
    st = proc_stat(pid)
    if st is None:
        raise BenchError(f"process {pid} is gone")
    return (int(st[11]) + int(st[12])) / CLOCK_TICK, (int(st[13]) + int(st[14])) / CLOCK_TICK


def live_children_cpu(pid: int) -> float:
    """CPU seconds used so far by the children of `pid` that are still running (a server's
    backends; a blade's warden: its time reaches the blade's children's only when the blade
    reaps it, at its exit)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[1] == str(pid):  # (ppid, field 4)
                total += (int(st[11]) + int(st[12])) / CLOCK_TICK
    return total


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    return cpu_times(pid)[0]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile of `values` (nearest rank); NaN for none."""
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def postmaster_pid(data_dir: Path) -> int:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError) as exc:
        raise BenchError(f"no postmaster.pid in {data_dir}: {exc}") from None


def server_cpu(data_dir: Path) -> float:
    """CPU seconds (user + system) the server has used: the postmaster's own and those of its
    children that have ended (cutime, cstime), plus the live children's (the backends,
    autovacuum, the WAL writer, ...).  The difference of two readings is what the server used
    in between, also when children come and go."""
    pm = postmaster_pid(data_dir)
    st = proc_stat(pm)
    if st is None:
        raise BenchError(f"the postmaster (pid {pm}) is not running")
    # fields 14-17 (utime, stime, cutime, cstime) are st[11:15]
    return sum(int(x) for x in st[11:15]) / CLOCK_TICK + live_children_cpu(pm)


def _port_free(port: int) -> bool:
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.bind((addr, port))
        except OSError as exc:
            if fam == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 here
                continue
            return False
    return True


def pick_port(preferred: int) -> int:
    """`preferred` if free, else the next free port of PORT_RANGE (wrapping)."""
    ports = list(PORT_RANGE)
    start = ports.index(preferred) if preferred in ports else 0
    for port in ports[start:] + ports[:start]:
        if port not in _taken and _port_free(port):
            _taken.add(port)
            return port
    raise BenchError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


# --- scratch sites ----------------------------------------------------------------------


class Site:
    """A scratch site: config dir + data dir under /tmp, its own port.

    Use as a context manager: on exit (also on error or Ctrl-C) the server is
    stopped and the whole scratch directory removed.
    """

    def __init__(self, name: str, port: int):
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix=f"tractor-bench-{name}-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.config_dir = self.root / "config"
        self.config_dir.mkdir()
        self.data_dir = self.root / "data"
        (self.config_dir / "tractor.toml").write_text(f'data_dir = "{self.data_dir}"\n')
        (self.config_dir / "db.toml").write_text(f"port = {port}\nstart_timeout = 300\n")
        self.script = dbctl_paths()["script"]
        # where blades started for this site write their command logs (tractor-blade --log-dir,
        # given by bench_dispatch.blade_argv); None: the profile's place, under the data dir
        self.blade_log_dir: Path | None = None
        self._tmpfs_logs: Path | None = None

    # -- where blades write their command logs

    def logs_on_tmpfs(self) -> str:
        """Blades started from now on write their command logs under a directory of /dev/shm,
        removed with the site; where there is no writable /dev/shm they stay under the data dir.
        Says which: 'tmpfs' or 'disk'.

        Why (bench/README.md, the per-command budget): on this machine creating each task's log
        file cost the blade 0.6-1.0 ms of kernel time whenever files had been deleted in the
        minutes before - by the previous benchmark's cleanup, or the tests: ext4 without a
        journal steps over recently freed inodes one by one.  That is the disk's cost, not
        tractorcli's, and it moved the figures by a fifth from one run to the next."""
        if self._tmpfs_logs is None:
            if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
                return "disk"
            self._tmpfs_logs = Path(tempfile.mkdtemp(prefix=f"tractor-bench-logs-{self.root.name}-", dir="/dev/shm"))
            os.chmod(self._tmpfs_logs, 0o755)
        self.blade_log_dir = self._tmpfs_logs
        return "tmpfs"

    def logs_on_disk(self) -> str:
        """Blades started from now on write their command logs under the data dir (the default)."""
        self.blade_log_dir = None
        return "disk"

    # -- paths and settings

    @property
    def settings(self):
        from tractorcli.config import load_settings

        return load_settings(self.config_dir)

    @property
    def db_data_dir(self) -> Path:
        return self.settings.db_data_dir

    def argv(self, *args: str) -> list[str]:
        return [self.script, "--configdir", str(self.config_dir), *args]

    def module_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tractorcli", "dbctl", "--configdir", str(self.config_dir), *args]

    # -- running tractor-dbctl

    def dbctl(self, *args: str, ok_codes: Sequence[int] = (0,), timeout: float = 3600) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*args), check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=clean_env())
        if proc.returncode not in ok_codes:
            raise BenchError(f"tractor-dbctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return proc

    def timed(self, *args: str, ok_codes: Sequence[int] = (0,), timeout: float = 3600) -> float:
        return time_argv(self.argv(*args), ok_codes=ok_codes, timeout=timeout)

    def running(self) -> bool:
        from tractorcli.cluster import Cluster

        return Cluster(self.settings).status(tcp=False).running

    def connect(self, dbname: str | None = None, **kw):
        """A psycopg connection to the job database (or another database `dbname` of the
        site's server), as the project's own code would make."""
        import psycopg

        from tractorcli.db.connection import conninfo

        return psycopg.connect(**conninfo(self.settings, dbname), **kw)

    def count(self, table: str) -> int:
        assert table.isidentifier()
        with self.connect(autocommit=True) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    # -- cleanup

    def close(self) -> None:
        try:
            if self.root.exists() and self.running():
                try:
                    self.dbctl("--stop", timeout=300)
                except Exception:  # noqa: BLE001 - fall through to the hard way
                    pass
                if self.running():
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self._tmpfs_logs is not None:
                shutil.rmtree(self._tmpfs_logs, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster this site started (its pid file, checked via /proc)."""
        data = self.db_data_dir
        try:
            pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
            if os.path.realpath(f"/proc/{pid}/cwd") != os.path.realpath(data):
                return
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return
        time.sleep(0.5)

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
