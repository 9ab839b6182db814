"""Slurm on one node, as a peer: its own munged, slurmctld and slurmd under a scratch directory.

Debian's `slurm-wlm` (installed by `ensure_installed` when missing).  The node is this machine
by the name `localhost` at 127.0.0.1; the daemons talk over loopback only (NoInAddrAny binds
them to that address) on two ports of the benchmarks' range, authenticate with a munge key
made for the run, and keep all state, logs and spool files in the scratch directory, which
is removed afterwards.  No accounting, no cgroups (proctrack/linuxproc, task/none).

The workload is one job array of N tasks, each a batch script that execs /bin/true, on a
node that offers `cpus` CPUs (declared, not counted: SlurmdParameters=config_overrides), so
that as many tasks run at once as tractorcli's blades have slots.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import BenchError, log, pick_port, proc_stat

PACKAGE = "slurm-wlm"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if _which(p) is None]


def ensure_installed() -> str | None:
    """Install Debian's slurm-wlm (and munge) when it is missing.  None when the programs are
    there, else why they are not (the benchmark then reports its Slurm figures as skipped)."""
    if not missing_programs():
        return None
    if os.geteuid() != 0:
        return f"{PACKAGE} is not installed and installing it needs root"
    if _which("apt-get") is None:
        return f"{PACKAGE} is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]):
        log(" ".join(argv))
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)} failed: {exc}"
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return f"{' '.join(argv)} exited {proc.returncode}: {tail[0][:200]}"
    missing = missing_programs()
    return f"{PACKAGE} installed but {', '.join(missing)} not found" if missing else None


def version() -> str | None:
    """`slurmctld -V` (no configuration needed; sbatch would look for one, in DNS too) and the
    Debian package's version."""
    out = []
    for argv in ([_which("slurmctld") or "slurmctld", "-V"], ["dpkg-query", "-W", "-f", "${Version}", PACKAGE]):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            out.append(proc.stdout.strip())
    return " ".join(out) or None


SLURM_CONF = """\
# Written by bench/peers/slurm_peer.py for one benchmark run; removed afterwards.
ClusterName=bench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=error
SlurmdDebug=error
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType={scheduler}
SchedulerParameters={sched_params}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MaxArraySize={max_array}
MaxJobCount={max_jobs}
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

SCHED_PARAMS = "sched_min_interval=0,batch_sched_delay=0,default_queue_depth=1000"

SCRIPT = "#!/bin/sh\nexec /bin/true\n"


class SlurmNode:
    """munged + slurmctld + slurmd for one node, as a context manager: on exit (also on error)
    every daemon it started is stopped, by pid, and the scratch directory removed."""

    def __init__(self, cpus: int, max_array: int, scheduler: str = "sched/builtin",
                 sched_params: str = SCHED_PARAMS):
        self.root = Path(tempfile.mkdtemp(prefix="tractor-bench-slurm-", dir="/tmp"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.cpus = cpus
        self.max_array = max_array
        self.scheduler = scheduler
        self.sched_params = sched_params
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        for k in list(self.env):
            if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_")) and k != "SLURM_CONF":
                del self.env[k]

    # -- start

    def start(self) -> None:
        for sub in ("munge", "state", "spool", "log", "work"):
            (self.root / sub).mkdir(mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        m = self.root / "munge"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={m}/munge.socket",
                               f"--key-file={key}", f"--log-file={m}/munged.log", f"--pid-file={m}/munged.pid",
                               f"--seed-file={m}/munged.seed"])
        self._wait_for(lambda: (m / "munge.socket").exists(), 10, "munged did not make its socket")
        self.conf.write_text(SLURM_CONF.format(root=self.root, ctld_port=pick_port(9924),
                                               slurmd_port=pick_port(9925), cpus=self.cpus,
                                               max_array=self.max_array + 1, scheduler=self.scheduler,
                                               sched_params=self.sched_params,
                                               max_jobs=max(10000, 4 * self.max_array)))
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
        self._wait_for(self._node_idle, 60, "the node did not come up idle")

    def _spawn(self, name: str, argv: list) -> None:
        log_file = open(self.root / "log" / f"{name}.out", "wb")
        try:
            self.procs[name] = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log_file,
                                                stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                                start_new_session=True)
        finally:
            log_file.close()

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise BenchError(f"{name} exited {p.returncode}: {self._log_tail(name)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{what} within {timeout:.0f} s: {self._log_tail('slurmd')}")
            time.sleep(0.2)

    def _log_tail(self, name: str) -> str:
        text = ""
        for f in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            try:
                text += f.read_text(errors="replace")
            except OSError:
                pass
        return " | ".join(text.strip().splitlines()[-4:])

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return out.strip() == "idle"

    def run(self, prog: str, *args: str, check: bool = True) -> str:
        proc = subprocess.run([_which(prog) or prog, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=self.env, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise BenchError(f"{prog} {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
        return proc.stdout

    # -- the workload

    def true_array(self, n: int, timeout: float = 1800) -> dict:
        """Submit one array of `n` tasks of /bin/true, wait until none is left pending or
        running, check that every task completed with exit 0.  Wall time from submission to
        that (`seconds`), and from the first task's start to the last one's end by Slurm's own
        records (`seconds_start_end`, whole seconds)."""
        script = self.root / "work" / "true.sh"
        script.write_text(SCRIPT)
        t0 = time.perf_counter()
        jobid = self.run("sbatch", "--parsable", f"--array=1-{n}", "--ntasks=1", "--cpus-per-task=1",
                         f"--chdir={self.root / 'work'}", "--output=/dev/null", "--error=/dev/null",
                         "--job-name=true", str(script)).strip().split(";")[0]
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", jobid, "-o", "%i", check=False).strip():
            if time.monotonic() > deadline:
                raise BenchError(f"slurm array {jobid} not done after {timeout} s")
            time.sleep(0.1)
        took = time.perf_counter() - t0
        states: dict[str, int] = {}
        starts, ends = [], []
        for line in self.run("scontrol", "-o", "show", "job", jobid).splitlines():
            f = dict(re.findall(r"(\w+)=(\S*)", line))
            key = f"{f.get('JobState')} {f.get('ExitCode')}"
            states[key] = states.get(key, 0) + 1
            for name, into in (("StartTime", starts), ("EndTime", ends)):
                try:
                    into.append(datetime.fromisoformat(f[name]))
                except (KeyError, ValueError):
                    pass
        if states != {"COMPLETED 0:0": n}:
            raise BenchError(f"slurm array {jobid}: {states} (wanted {n} COMPLETED 0:0)")
        return {"jobid": jobid, "seconds": took,
                "seconds_start_end": (max(ends) - min(starts)).total_seconds() if starts and ends else None}

    # -- stop

    def close(self) -> None:
        try:
            if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
                self.run("scancel", "--full", "--partition=bench", check=False)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        # slurmd first (it ends its steps), then the controller, then munge
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        self._kill_leftover_steps()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover_steps(self) -> None:
        """Processes of this node's jobs that outlived slurmd (slurmstepd and what it ran): those
        in the sessions our daemons led (each was started in a new session), or a slurmstepd
        working in our scratch directory; killed by pid."""
        sessions = {str(p.pid) for p in self.procs.values()}
        root = str(self.root)
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            st = proc_stat(int(name))
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                ours = (st is not None and st[3] in sessions) or (
                    "slurmstepd" in cmd and os.path.realpath(f"/proc/{name}/cwd").startswith(root))
                if ours:
                    os.kill(int(name), signal.SIGKILL)
            except OSError:
                continue

    def __enter__(self) -> SlurmNode:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()
