"""Launching one claimed command on a blade, and watching it to its end.

`prepare` turns what the database says about a claimed command
(`dispatch.launch_info`) into a `LaunchSpec`: the argv after launch-time
substitutions (`subst.expand_argv`: `%j %t %c %r %R %n %h %H %q %D(...)`,
`~`), the environment (`subst.launch_env`: the blade's own environment,
`TR_ENV_JID`/`TID`/`CID`/`JOB_PROJECT`/`TRACTOR_ROOT`, the profile's `env`
and `envkeys` handlers, the command's `-envkey` or else the job's), the
`-msg` text, the directory to start in and the task's log file.
`Run(spec).start()` then launches it:

* argv is executed directly (no shell), in a new session, so the command
  and everything it starts form one process group that the blade signals
  as a whole.  The command's process group also gets SIGKILL when the
  blade dies (the blade's warden, `warden.py`): a blade that is killed
  leaves no command behind to run a second time beside the copy the queue
  hands to another blade.  (Processes the command puts into sessions of
  their own are out of reach.)  A command run as another account is exec'd
  through util-linux `setpriv`, which changes the ids.
* stdin is the `-msg` text (with a final newline), then end of file; with
  no `-msg`, /dev/null.
* the directory is the job's spool directory mapped for the blade's dirmap
  zone, when it exists on the blade; else the site's data directory; else
  the temporary directory.
* stdout and stderr, merged, are appended to the task's log file
  (`Profile.log_path(owner, jid, tid)`): every invocation of every command
  of a task adds a header line (time, /J/T/C.invocation, blade, host, argv)
  and a footer with the exit code, so a retried task or a reused job id
  adds to the file.  Lines that are directives (`TR_PROGRESS`,
  `TR_EXIT_STATUS`, ...: see `output.py`) are acted on and, like Tractor,
  left out of the log.
* `argv[0] == "TractorBuiltIn"` runs a built-in inside the blade (see
  `BUILTINS`).
* `-expand 1`: stdout (directive lines left out) is kept as task
  definitions, and also logged; stderr goes to the log only.  With
  `-expand {file}` the file is read when the command exits.  Files named
  by `TR_EXPAND_CHUNK "file"` lines are read when announced.  On exit 0
  they are parsed together (`Run.expansion`: task nodes) and the worker
  grafts them with the finish (`db/expand.py`).

Exit codes reported for an invocation (`Run.rcode`):

| what happened | code |
|---|---|
| the process exited | its exit status |
| the process was killed by a signal | minus the signal number (-9, -15, ...) |
| it printed `TR_EXIT_STATUS n` / `ALF_EXIT_STATUS n` | n (the last one), whatever the process exits with |
| it could not be started (program not found, not executable, bad directory, bad `-envkey setenv`) | 20000 + errno: 20002 not found, 20013 permission denied, 20008 not an executable, 20022 invalid (also an unknown or malformed TractorBuiltIn) |
| it ran longer than `-maxrunsecs`: its process group was killed (TERM, KILL 3 s later) | 21001 (`RC_MAXRUNSECS`) |
| it succeeded sooner than `-minrunsecs` | 21002 (`RC_MINRUNSECS`); a failure keeps its own code |
| it succeeded, but its `-expand` output (or a `TR_EXPAND_CHUNK` file) does not parse or cannot be read, or cannot be grafted | 21003 (`RC_EXPAND`): nothing is grafted, the log says file:line:col |

The 2100x codes sit above every errno so they cannot be confused with a
launch failure or an exit status (0-255); they are not signals, so the
automatic retries of `CmdAutoRetryAttempts` and `-retryrc` apply to them.
A note in the log says which rule gave the code.

After printing `TR_EXIT_STATUS`, a process that has not exited 2 s later is
killed (its group), unless the profile turns `exit_status_terminate` off.
When the main process exits, output still arriving from processes it left
behind is read for 2 s more; then the rest of its process group is killed.

This module never touches the database: the worker reports what a `Run`
found (`rcode`, `progress`, times).
"""

from __future__ import annotations

import dataclasses
import functools
import errno as _errno
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import TractorError
from .reader import DRAIN_GRACE, output_reader, pidfd
from .warden import warden
from ..subst import LaunchContext, dirmap, expand_argv, expand_text, launch_env
from .output import OutputScanner

__all__ = [
    "BUILTIN",
    "BUILTINS",
    "KILL_GRACE",
    "RC_LAUNCH_BASE",
    "RC_MAXRUNSECS",
    "RC_MINRUNSECS",
    "RC_EXPAND",
    "BladeSide",
    "LaunchSpec",
    "Run",
    "launch_failure_code",
    "prepare",
]

RC_LAUNCH_BASE = 20000  # + errno: the command could not be started
RC_MAXRUNSECS = 21001  # killed after running longer than -maxrunsecs
RC_MINRUNSECS = 21002  # succeeded sooner than -minrunsecs
RC_EXPAND = 21003  # an expand command's output could not be read or grafted (also db/expand.py)
EXPAND_MAX_BYTES = 64 << 20  # expand output kept in memory at most
KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL to a process group
EXIT_STATUS_GRACE = 2.0  # seconds a process may live on after TR_EXIT_STATUS
PROGRESS_WAKE = 0.25  # at most this often a progress line wakes the worker
BUILTIN = "TractorBuiltIn"
BUILTINS = ("Echo", "Sleep", "PrintEnv", "System", "File")
FILE_OPS = ("delete", "mkdir", "copy", "move", "list")


def launch_failure_code(err: int | None) -> int:
    """The code of a command that could not start with `err` (errno)."""
    return RC_LAUNCH_BASE + (err or _errno.EINVAL)


@dataclasses.dataclass(frozen=True)
class BladeSide:
    """What the blade contributes to a launch."""

    name: str  # the blade's name (the host name unless --name)
    hostname: str  # the host's name: %h
    zone: str  # dirmap zone of its profile
    env_handlers: Sequence[Any] = ()  # Profile.env_handlers()
    log_path: Callable[[str, int, int], Path] | None = None  # Profile.log_path
    data_dir: Path | None = None
    base_env: Mapping[str, str] | None = None  # default: os.environ
    exit_status_terminate: bool = True
    run_as: str = "blade"  # "owner", "blade" or an account name (see run_account)


@dataclasses.dataclass(frozen=True)
class Account:
    """The operating-system account a command runs as, when not the blade's own."""

    name: str
    uid: int
    gid: int
    home: str


# Accounts looked up, by name: (when, pwd entry).  A farm's accounts come from the
# directory (LDAP through NSS), where a lookup can cost milliseconds, and every command
# of a job asks for the same owner; an account is looked up again after _ACCOUNT_TTL.
# A name not found is not remembered: an account made a moment ago is found at once.
_ACCOUNTS: dict[str, tuple[float, Any]] = {}
_ACCOUNT_TTL = 30.0


def _account(name: str) -> Any:
    """The pwd entry of account `name` (None: no such account)."""
    import pwd

    now = time.monotonic()
    hit = _ACCOUNTS.get(name)
    if hit is not None and now - hit[0] < _ACCOUNT_TTL:
        return hit[1]
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _ACCOUNTS.pop(name, None)
        return None
    if len(_ACCOUNTS) > 1024:  # a blade serves a farm's people, not unboundedly many
        _ACCOUNTS.clear()
    _ACCOUNTS[name] = (now, pw)
    return pw


def run_account(run_as: str, owner: str) -> tuple[Account | None, str | None]:
    """Whose account a command runs as: (the account to switch to, or None for the blade's own;
    why it cannot run, or None).

    `run_as` "owner": the job's owner's account, "blade": the blade's own, else that account.
    Only a blade running as root can switch; one that runs as someone else runs as itself the
    commands of that account and refuses the others (it never runs them as the wrong person).
    A missing account is an error for the task's log, never a fallback to the blade's account."""
    if run_as == "blade":
        return None, None
    want = owner if run_as == "owner" else run_as
    if not want:
        return None, "the job has no owner to run the command as (blade profile run_as = owner)"
    pw = _account(want)
    if pw is None:
        return None, f"no account {want!r} on this host to run the command as (blade profile run_as = {run_as})"
    me = os.geteuid()
    if pw.pw_uid == me:
        return None, None
    if me != 0:
        return None, (f"this blade runs as uid {me} and cannot run commands as {want} (only a blade running as "
                      f"root can switch; run_as = \"blade\" runs every command as the blade's account)")
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir), None


@dataclasses.dataclass
class LaunchSpec:
    """Everything needed to start one invocation (see `prepare`)."""

    jid: int
    tid: int
    cid: int
    iid: int
    argv: list[str]
    env: dict[str, str]
    cwd: str
    msg: str | None = None
    log_path: Path | None = None
    minrunsecs: float = 0.0
    maxrunsecs: float = 0.0
    blade: str = ""
    host: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)  # written to the log before the run
    error: str | None = None  # set: the command cannot start (error text for the log)
    error_code: int = 0  # ... and the code reported
    exit_status_terminate: bool = True
    expand: str | None = None  # -expand: None no; "" task definitions on stdout; else that file
    testcheckpoint: str | None = None  # -resumewhile {testcheckpoint exr FILE}: FILE (absolute)
    account: Account | None = None  # run as this account (the blade runs as root), else as the blade

    @property
    def ref(self) -> str:
        return f"/J{self.jid}/T{self.tid}/C{self.cid}.{self.iid}"


def _num(v: Any) -> float:
    try:
        f = float(v) if v is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return f if f > 0 else 0.0


def _workdir(info: Mapping[str, Any], side: BladeSide) -> str:
    cwd = info.get("spoolcwd") or ""
    if cwd:
        mapped = dirmap(cwd, info.get("dirmap") or (), side.zone)
        if os.path.isdir(mapped):
            return mapped
    if side.data_dir is not None and os.path.isdir(side.data_dir):
        return str(side.data_dir)
    return tempfile.gettempdir()


def _idrefs(info: Mapping[str, Any]) -> dict[str, list[str]]:
    """%ID(host): the blades of the job's commands with an -id (their latest run), the job's shared
    servers checked out (a Task's -id), and the one this command refers to (checked out by its own
    claim, perhaps: its hosts)."""
    out = {str(k): [str(h) for h in v] for k, v in (info.get("cmdrefs") or {}).items()}
    out.update({str(k): [str(h) for h in v] for k, v in (info.get("idrefs") or {}).items()})
    if info.get("refersto") and info.get("hosts"):
        out[str(info["refersto"])] = [str(h) for h in info["hosts"]]
    return out


def prepare(info: Mapping[str, Any], claim: Any, side: BladeSide) -> LaunchSpec:
    """The launch of `claim` (a dispatch.Claim) from its `launch_info` row."""
    jid, tid, cid = int(claim.jid), int(claim.tid), int(claim.cid)
    ctx = LaunchContext(
        jid=jid, tid=tid, cid=cid, hostname=side.hostname,
        # a multi-host command's bound blades, once per slot (bindings; none: this blade's slots)
        hosts=tuple(info.get("hosts") or ()),
        slots=max(int(info.get("boundslots") or claim.numslots or 1), 1),
        recover=int(info.get("recover") or 0), resume_count=int(info.get("resumecount") or 0),
        quality=1.0 if info.get("quality") is None else float(info["quality"]),
        idrefs=_idrefs(info),
        dirmaps=[tuple(m) if isinstance(m, (list, tuple)) else m for m in (info.get("dirmap") or ())],
        zone=side.zone, owner=info.get("owner") or "", spoolhost=info.get("spoolhost") or "",
        projects=tuple(info.get("projects") or ("default",)),
    )
    owner = info.get("owner") or "nobody"
    log_path = side.log_path(owner, jid, tid) if side.log_path else None
    unknown: list[str] = []
    argv = expand_argv(list(info.get("argv") or ()), ctx, unknown=unknown)
    msg = info.get("msg")
    if msg:
        msg = expand_text(msg, ctx, unknown=unknown)
    spec = LaunchSpec(jid=jid, tid=tid, cid=cid, iid=int(claim.iid), argv=argv, env={}, cwd=_workdir(info, side),
                      msg=msg or None, log_path=log_path, minrunsecs=_num(info.get("minrunsecs")),
                      maxrunsecs=_num(info.get("maxrunsecs")), blade=side.name, host=side.hostname,
                      exit_status_terminate=side.exit_status_terminate)
    if unknown:
        spec.notes.append("left as written (unknown % sequences): " + " ".join(dict.fromkeys(unknown)))
    if info.get("expand") is not None:
        spec.expand = expand_text(info["expand"], ctx, unknown=unknown) if info["expand"] else ""
    rw = [str(w) for w in (info.get("resumewhile") or ())]
    if rw and rw[0].lower() == "testcheckpoint":
        if len(rw) == 3 and rw[1].lower() == "exr":
            spec.testcheckpoint = os.path.join(spec.cwd, expand_text(rw[2], ctx, unknown=unknown))
        else:
            spec.notes.append(f"-resumewhile {{{' '.join(rw)}}}: only testcheckpoint exr FILE is known; "
                              "never a checkpoint")
    envkeys = list(info.get("cmd_envkey") or ()) or list(info.get("job_envkey") or ())
    unmatched: list[str] = []
    try:
        spec.env = launch_env(os.environ if side.base_env is None else side.base_env, ctx, envkeys,
                              list(side.env_handlers), unmatched=unmatched)
    except TractorError as exc:
        spec.error, spec.error_code = f"bad -envkey: {exc.message}", launch_failure_code(_errno.EINVAL)
        return spec
    if unmatched:
        spec.notes.append("no environment handler for envkey " + ", ".join(unmatched))
    if not argv or not argv[0]:
        spec.error, spec.error_code = "empty command line", launch_failure_code(_errno.EINVAL)
        return spec
    spec.account, why = run_account(side.run_as, info.get("owner") or "")
    if why is not None:
        spec.error, spec.error_code = why, launch_failure_code(_errno.EPERM)
    elif spec.account is not None:
        a = spec.account
        spec.env.update(USER=a.name, LOGNAME=a.name, HOME=a.home)
    return spec


# --- the child's start ------------------------------------------------------------

# How a command runs as another account (a blade running as root, BladeRunAs): exec'd through
# `setpriv`, which changes the ids and then execs the command.  subprocess's own user= and
# group= would fork the whole blade instead of the fast vfork (about 2 ms a launch); so
# would a Python preexec function.
@functools.cache
def _setpriv() -> str | None:
    """util-linux `setpriv`, if it works here (Linux); looked for once, at the first launch as
    another account."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        ok = subprocess.run([path, "--", "/bin/true"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


def _launch_error(argv0: str, env: Mapping[str, str] | None, cwd: str | None) -> int | None:
    """The errno exec would fail with for argv0 (not found, not executable), or None.

    Checked up front when the command is started through setpriv, whose own
    failure would otherwise look like the command's exit status.
    """
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) or not cwd else os.path.join(cwd, argv0)
        if not os.path.exists(path):
            return _errno.ENOENT
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return _errno.EACCES
        return None
    search = (env or os.environ).get("PATH", os.defpath)
    denied = False
    for d in search.split(os.pathsep):
        candidate = os.path.join(d or ".", argv0)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return None
            denied = True
    return _errno.EACCES if denied else _errno.ENOENT


def _stamp() -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S")


def _fmt_argv(argv: Sequence[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


class Run:
    """One invocation running on this blade: a process group or a built-in.

    The worker (main thread) calls `start`, `tick` (timers), `terminate`
    and reads `done`, `rcode`, `progress`, `elapsed`; the blade's output
    thread (reader.py; a thread of the run's own without pidfds, or for a
    built-in) owns the output, the log file and the exit.  `wake` is set
    whenever the run ends, so the worker can report at once.
    """

    def __init__(self, spec: LaunchSpec, *, numslots: int = 1, wake: threading.Event | None = None,
                 claim: Any = None):
        self.spec = spec
        self.claim = claim
        self.numslots = numslots
        self.wake = wake or threading.Event()
        self.scanner = OutputScanner()
        self.done = threading.Event()
        self.rcode: int | None = None
        self.checkpoint = False  # -resumewhile {testcheckpoint exr FILE} found FILE a checkpoint
        self.note: str | None = None  # why the code is what it is, when a rule set it
        self.pid: int | None = None
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.utime = 0.0
        self.stime = 0.0
        self.kill_reason: str | None = None
        self._kill_time: float | None = None
        self._killed_hard = False
        self._exited_at: float | None = None  # main process gone (monotonic)
        self._override_at: float | None = None  # TR_EXIT_STATUS seen (monotonic)
        self._progress_woke = 0.0
        self._cancel = threading.Event()  # built-ins: stop now
        self._cancel_sig = 0
        self._log_lock = threading.Lock()
        self._log = None
        self._status: int | None = None  # raw wait status / builtin result
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self.log_error: str | None = None
        self.log_error_said: str | None = None  # the blade said it already
        self.sent_progress: float | None = None  # worker bookkeeping
        self.sent_progress_at = 0.0
        # -expand: the task nodes read from the output when the command exits 0 (see _expand)
        self.expansion: tuple | None = None
        self._stdout: list[bytes] | None = [] if spec.expand == "" else None  # kept for -expand 1
        self._stdout_size = 0
        self._chunks: list[tuple[str, str | None, str | None]] = []  # TR_EXPAND_CHUNK: (file, text, error)

    # -- log ---------------------------------------------------------------------

    def _open_log(self) -> None:
        p = self.spec.log_path
        if p is None:
            return
        try:
            try:
                self._log = open(p, "ab", buffering=0)
            except FileNotFoundError:  # the job's log directory, made by the first of its commands here
                p.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(p, "ab", buffering=0)
        except OSError as exc:
            self._log = None
            self.log_error = f"cannot write the log {p}: {exc.strerror or exc}"
        else:
            self.log_error = None

    def write_log(self, data: bytes) -> None:
        with self._log_lock:
            if self._log is not None:
                try:
                    self._log.write(data)
                except OSError as exc:
                    # a full or failing disk: the command runs on and its end is reported; the log
                    # stops here, and the blade says why once (the next command's log tries again)
                    self.log_error = f"cannot write the log {self.spec.log_path}: {exc.strerror or exc}"
                    try:
                        self._log.close()
                    except OSError:
                        pass
                    self._log = None

    def log_line(self, text: str) -> None:
        """A line of the blade's own (not the command's) in the log."""
        self.write_log(f"[{_stamp()} {text}]\n".encode("utf-8", "replace"))

    def append_log(self, text: str) -> None:
        """A line of the blade's in the log after the run ended (its log is closed by then)."""
        if self._log is not None:
            self.log_line(text)
            return
        self._open_log()
        self.log_line(text)
        self._close_log()

    def _close_log(self) -> None:
        with self._log_lock:
            if self._log is not None:
                try:
                    self._log.close()
                except OSError:
                    pass
                self._log = None

    # -- start ---------------------------------------------------------------------

    @property
    def progress(self) -> float | None:
        return self.scanner.progress

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def start(self) -> None:
        """Launch; never raises (a launch failure becomes the run's result)."""
        spec = self.spec
        self.log_error = None
        self._open_log()
        sep = "\n" if self._log is not None and self._log.tell() > 0 else ""  # a blank line between runs
        self.write_log(f"{sep}====[{_stamp()} {spec.ref} on {spec.blade} ({spec.host}): {_fmt_argv(spec.argv)}]====\n"
                       .encode("utf-8", "replace"))
        for n in spec.notes:
            self.log_line(n)
        if spec.error is not None:
            self._fail(spec.error, spec.error_code)
            return
        argv = list(spec.argv)
        if argv[0] == BUILTIN:
            kind = argv[1].lower() if len(argv) > 1 else ""
            if kind == "system":
                if len(argv) < 3:
                    self._fail("TractorBuiltIn System: no command given", launch_failure_code(_errno.EINVAL))
                    return
                argv = ["/bin/sh", "-c", " ".join(argv[2:])]
            else:
                problem = _check_builtin(argv)
                if problem is None and kind == "file" and spec.account is not None:
                    # File works in the blade's own process, as the blade's account
                    problem = (f"{BUILTIN} File runs as the blade's account, not as {spec.account.name}: use "
                               "rm, mkdir, cp, mv or ls in a command, or run_as = \"blade\" in the blade profile",
                               launch_failure_code(_errno.EPERM))
                if problem is not None:
                    self._fail(problem[0], problem[1])
                    return
                self._thread = threading.Thread(target=self._builtin_main, args=(argv,), daemon=True,
                                                name=f"builtin {spec.ref}")
                self._thread.start()
                return
        what_failed = {_errno.ENOENT: "program not found", _errno.EACCES: "permission denied",
                       _errno.ENOEXEC: "not an executable"}
        exe = argv
        who: dict[str, Any] = {}
        a = spec.account
        if a is not None:
            setpriv = _setpriv()
            if setpriv:
                err = _launch_error(argv[0], spec.env, spec.cwd)
                if err is not None:
                    self._fail(f"cannot launch {argv[0]}: {what_failed[err]} (errno {err})", launch_failure_code(err))
                    return
                exe = [setpriv, "--reuid", str(a.uid), "--regid", str(a.gid), "--init-groups", "--", *argv]
            else:
                who = {"user": a.uid, "group": a.gid, "extra_groups": os.getgrouplist(a.name, a.gid)}
        try:
            keeper = warden()  # before the start: without a warden nothing is started
        except OSError as exc:
            self._fail(f"cannot start the blade's warden ({exc.strerror or exc}): a command that could outlive "
                       "its blade is not started", launch_failure_code(exc.errno or _errno.EINVAL))
            return
        try:
            # -expand 1: stdout is task definitions; stderr goes straight to the log
            err = subprocess.STDOUT if self._stdout is None else (
                self._log if self._log is not None else subprocess.DEVNULL)
            proc = subprocess.Popen(
                exe, stdin=subprocess.PIPE if spec.msg is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, cwd=spec.cwd, env=spec.env,
                start_new_session=True, close_fds=True, **who)
        except OSError as exc:
            what = what_failed.get(exc.errno, exc.strerror or str(exc))
            self._fail(f"cannot launch {argv[0]}: {what} (errno {exc.errno})", launch_failure_code(exc.errno))
            return
        except (ValueError, subprocess.SubprocessError) as exc:  # e.g. NUL in argv or env
            self._fail(f"cannot launch {argv[0]}: {exc}", launch_failure_code(_errno.EINVAL))
            return
        self.pid = proc.pid
        keeper.track(proc.pid)  # its process group (a new session: the group's id is its pid)
        self._proc = proc
        if spec.msg is not None:
            text = spec.msg if spec.msg.endswith("\n") else spec.msg + "\n"
            threading.Thread(target=_feed_stdin, args=(proc.stdin, text.encode("utf-8", "replace")), daemon=True,
                             name=f"stdin {spec.ref}").start()
        fd = pidfd(proc.pid)
        if fd is not None:
            output_reader().watch(self, proc.stdout.fileno(), fd)  # the blade's one output thread (reader.py)
        else:  # no pidfd (a kernel before 5.3): a thread of its own
            self._thread = threading.Thread(target=self._process_main, daemon=True, name=f"output {spec.ref}")
            self._thread.start()

    def _fail(self, text: str, code: int) -> None:
        self.log_line(text)
        self._finish(code)

    # -- the reader thread -----------------------------------------------------------

    def _take(self, data: bytes) -> None:
        out = []
        for line, d in self.scanner.feed_chunk(data):
            self._directive(line, d, out)
        if out:
            self.write_log(b"".join(out))

    def _directive(self, line: bytes, d: Any, out: list[bytes]) -> None:
        if d is None or d.log:
            out.append(line)
        if d is None:
            if self._stdout is not None:
                self._stdout_size += len(line)
                if self._stdout_size <= EXPAND_MAX_BYTES:
                    self._stdout.append(line)
            return
        if d.kind == "expand_chunk":
            self._read_chunk(str(d.value))
        if d.kind == "exit_status" and self._override_at is None:
            self._override_at = time.monotonic()
            self.wake.set()
        elif d.kind == "progress":
            now = time.monotonic()
            if now - self._progress_woke >= PROGRESS_WAKE:  # let the worker report it, not for every line
                self._progress_woke = now
                self.wake.set()

    def _process_main(self) -> None:
        """The run's own reader, where there is no pidfd for `OutputReader` (reader.py)."""
        import select

        proc = self._proc
        fd = proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        eof = False
        status = None
        rusage = None
        try:
            while True:
                if not eof:
                    events = poller.poll(200)
                    if events:
                        try:
                            data = os.read(fd, 1 << 16)
                        except OSError:
                            data = b""
                        if data:
                            self._take(data)
                        else:
                            eof = True
                            poller.unregister(fd)
                if status is None:
                    if eof:
                        _, status, rusage = os.wait4(proc.pid, 0)  # output closed: just wait for the exit
                    else:
                        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
                        if pid:
                            status, rusage = st, ru
                    if status is not None:
                        self._exited()
                if status is not None:
                    if eof:
                        break
                    if time.monotonic() - self._exited_at > DRAIN_GRACE:
                        self.log_line("the command exited; killing what it left running in its process group")
                        self._signal_group(signal.SIGKILL)
                        while poller.poll(100):  # what is already buffered
                            try:
                                data = os.read(fd, 1 << 16)
                            except OSError:
                                break
                            if not data:
                                break
                            self._take(data)
                        break
        except Exception as exc:  # noqa: BLE001 - a reader that dies must still end the run
            self.log_line(f"blade error while watching the command: {exc!r}")
            if status is None:
                self._signal_group(signal.SIGKILL)
                try:
                    _, status, rusage = os.wait4(proc.pid, 0)
                except ChildProcessError:
                    status = None
        self._complete(status, rusage)

    def _abandon(self) -> None:
        """The run ends without its result (its reader failed even to end it): SIGKILL's code."""
        if not self.done.is_set():
            self.rcode = -int(signal.SIGKILL)
            self.done.set()
            self.wake.set()

    def _exited(self) -> None:
        """The main process was reaped."""
        self._exited_at = time.monotonic()
        self.elapsed = self._exited_at - self.started

    def _complete(self, status: int | None, rusage: Any) -> None:
        """The process was reaped (`status` its wait status; None: lost) and its output read: the run ends."""
        proc = self._proc
        for line, d in self.scanner.finish():
            out: list[bytes] = []
            self._directive(line if line.endswith(b"\n") else line + b"\n", d, out)
            self.write_log(b"".join(out))
        try:
            proc.stdout.close()
        except OSError:
            pass
        warden().untrack(proc.pid)  # ended: the blade's death no longer concerns it
        if rusage is not None:
            self.utime, self.stime = rusage.ru_utime, rusage.ru_stime
        if status is None:
            code = -int(signal.SIGKILL)
        elif os.WIFSIGNALED(status):
            code = -os.WTERMSIG(status)
        else:
            code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped here: subprocess must not wait for it again
        self._finish(code)

    # -- built-ins -------------------------------------------------------------------

    def _builtin_main(self, argv: list[str]) -> None:
        try:
            code = _run_builtin(argv, self)
        except Exception as exc:  # noqa: BLE001 - a built-in failing is the command failing
            self.log_line(f"TractorBuiltIn {argv[1] if len(argv) > 1 else ''}: {exc}")
            code = 1
        if self._cancel.is_set():
            code = -self._cancel_sig
        self._exited_at = time.monotonic()
        self.elapsed = self._exited_at - self.started
        self._finish(code)

    def out(self, text: str) -> None:
        """Output of a built-in: to the log, through the directive scanner."""
        self._take(text.encode("utf-8", "replace"))

    # -- expand ------------------------------------------------------------------------
    #
    # The output of an expand command is read as task definitions when the
    # command ends with code 0: its stdout (-expand 1) or its file (-expand
    # {file}, read then), followed by the TR_EXPAND_CHUNK files in the order
    # announced (each read when its line is seen: the command may replace or
    # remove it afterwards).  They are grafted together, with the command's
    # finish, in one transaction (db/expand.py); chunks are not grafted
    # while the command runs.  Output that does not parse (or a file that
    # cannot be read) makes the command fail with RC_EXPAND, the log
    # saying file:line:col.  A command without -expand may announce chunks
    # too.

    def _path(self, name: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.spec.cwd, name)

    def _read_file(self, name: str) -> str:
        a = self.spec.account
        if a is not None:  # read as the command's account, not as the blade (root)
            data = _read_as(a, self._path(name), EXPAND_MAX_BYTES + 1)
        else:
            with open(self._path(name), "rb") as f:
                data = f.read(EXPAND_MAX_BYTES + 1)
        if len(data) > EXPAND_MAX_BYTES:
            raise OSError(_errno.EFBIG, f"more than {EXPAND_MAX_BYTES >> 20} MB")
        return data.decode("utf-8", "replace")

    def _read_chunk(self, name: str) -> None:
        try:
            self._chunks.append((name, self._read_file(name), None))
        except OSError as exc:
            self._chunks.append((name, None, f"cannot read the TR_EXPAND_CHUNK file {name}: "
                                             f"{exc.strerror or exc}"))

    def _expand(self) -> str | None:
        """Read the expand output into self.expansion; the problem, if any."""
        from ..jobs.expand import check, parse_output
        from ..jobs.model import JobError

        spec = self.spec
        pieces: list[tuple[str, str | None, str | None]] = []
        if self._stdout is not None:
            if self._stdout_size > EXPAND_MAX_BYTES:
                return f"expand output on stdout is more than {EXPAND_MAX_BYTES >> 20} MB"
            pieces.append(("stdout", b"".join(self._stdout).decode("utf-8", "replace"), None))
        elif spec.expand:
            try:
                pieces.append((spec.expand, self._read_file(spec.expand), None))
            except OSError as exc:
                return f"cannot read the -expand file {spec.expand}: {exc.strerror or exc}"
        pieces += self._chunks
        nodes: list = []
        try:
            for name, text, problem in pieces:
                if problem is not None:
                    return problem
                nodes += parse_output(text, name)
            check(tuple(nodes))
        except JobError as exc:
            return f"expand output: {exc}"
        self.expansion = tuple(nodes)
        if nodes:
            self.log_line(f"expand: {len(nodes)} task definition(s) read from "
                          + ", ".join(name for name, _, _ in pieces))
        return None

    # -- the end -----------------------------------------------------------------------

    def _finish(self, code: int) -> None:
        if not self.elapsed:
            self.elapsed = time.monotonic() - self.started
        spec = self.spec
        override = self.scanner.exit_override
        succeeded = (code if override is None else override) == 0
        if self.kill_reason is None and (spec.expand is not None or self._chunks) and succeeded \
                and not (spec.minrunsecs and self.elapsed < spec.minrunsecs):
            problem = self._expand()
            if problem is not None:
                code, override = RC_EXPAND, None
                self.note = problem
        if self.kill_reason == "maxrunsecs":
            code, self.note = RC_MAXRUNSECS, f"ran longer than -maxrunsecs {spec.maxrunsecs:g}: killed"
        elif override is not None:
            if override != code:
                self.note = f"exit status {override} from TR_EXIT_STATUS (the process gave {code})"
            code = override
        elif code == 0 and spec.minrunsecs and self.elapsed < spec.minrunsecs:
            code, self.note = RC_MINRUNSECS, (f"finished in {self.elapsed:.3g} s, sooner than "
                                              f"-minrunsecs {spec.minrunsecs:g}")
        if self.note:
            self.log_line(self.note)
        if self.kill_reason and self.kill_reason != "maxrunsecs":
            self.log_line(f"killed by the blade: {self.kill_reason}")
        if code == 0 and spec.testcheckpoint and self.kill_reason is None:
            from .exr import checkpoint_state

            self.checkpoint, why = checkpoint_state(spec.testcheckpoint)
            self.log_line(f"testcheckpoint: {why}")
        self.write_log(f"====[{_stamp()} {spec.ref} process complete, exit code: {code}"
                       f" ({self.elapsed:.2f} s)]====\n".encode())
        self._close_log()
        self.rcode = code
        self.done.set()
        self.wake.set()

    # -- control from the worker -----------------------------------------------------

    def _signal_group(self, sig: int) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def signal(self, sig: int) -> None:
        if self.pid is not None:
            self._signal_group(sig)
        elif not self.done.is_set():
            self._cancel_sig = int(sig)
            self._cancel.set()

    def terminate(self, reason: str) -> None:
        """Stop the command: SIGTERM to its group now, SIGKILL after KILL_GRACE (see `tick`)."""
        if self.done.is_set() or self._kill_time is not None:
            return
        self.kill_reason = reason
        self._kill_time = time.monotonic()
        self.signal(signal.SIGTERM)

    def tick(self, now: float | None = None) -> None:
        """Timers: -maxrunsecs, TR_EXIT_STATUS without exit, SIGKILL escalation."""
        if self.done.is_set():
            return
        now = time.monotonic() if now is None else now
        spec = self.spec
        if self._kill_time is None:
            if spec.maxrunsecs and now - self.started > spec.maxrunsecs and self._exited_at is None:
                self.terminate("maxrunsecs")
            elif (self._override_at is not None and spec.exit_status_terminate and self._exited_at is None
                  and now - self._override_at > EXIT_STATUS_GRACE):
                self.terminate(f"still running {EXIT_STATUS_GRACE:g} s after TR_EXIT_STATUS")
        elif not self._killed_hard and now - self._kill_time > KILL_GRACE:
            self._killed_hard = True
            self.signal(signal.SIGKILL)

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (monotonic), or None."""
        if self.done.is_set():
            return None
        times = []
        if self._kill_time is not None:
            if not self._killed_hard:
                times.append(self._kill_time + KILL_GRACE)
        else:
            if self.spec.maxrunsecs:
                times.append(self.started + self.spec.maxrunsecs)
            if self._override_at is not None and self.spec.exit_status_terminate:
                times.append(self._override_at + EXIT_STATUS_GRACE)
        return min(times) if times else None

    def join(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def _feed_stdin(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        try:
            pipe.close()
        except (BrokenPipeError, OSError, ValueError):
            pass


# --- TractorBuiltIn ------------------------------------------------------------------

def _read_as(a: Account, path: str, limit: int) -> bytes:
    """At most `limit` bytes of a file, read by a child running as account `a` (OSError as open)."""
    setpriv = _setpriv()
    ids = ["--reuid", str(a.uid), "--regid", str(a.gid), "--init-groups"]
    argv = [setpriv, *ids, "--", "cat", "--", path] if setpriv else ["cat", "--", path]
    extra = {} if setpriv else {"user": a.uid, "group": a.gid, "extra_groups": os.getgrouplist(a.name, a.gid)}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            close_fds=True, **extra)
    data = proc.stdout.read(limit)
    if len(data) >= limit:
        proc.kill()
    err = proc.stderr.read().decode("utf-8", "replace").strip()
    proc.stdout.close()
    proc.stderr.close()
    if proc.wait() != 0 and len(data) < limit:
        raise OSError(_errno.EACCES, err.rsplit(": ", 1)[-1] or "cannot read", path)
    return data


def _check_builtin(argv: list[str]) -> tuple[str, int] | None:
    """(error, code) when a TractorBuiltIn line cannot run at all."""
    einval = launch_failure_code(_errno.EINVAL)
    if len(argv) < 2:
        return f"{BUILTIN}: which built-in? ({', '.join(BUILTINS)})", einval
    op = argv[1].lower()
    if op not in [b.lower() for b in BUILTINS]:
        return f"unknown {BUILTIN} command {argv[1]!r} (known: {', '.join(BUILTINS)})", einval
    if op == "sleep":
        if len(argv) < 3:
            return f"{BUILTIN} Sleep: how many seconds?", einval
        try:
            secs = float(argv[2])
        except ValueError:
            secs = -1.0
        if not secs >= 0 or secs == float("inf"):
            return f"{BUILTIN} Sleep: {argv[2]!r} is not a number of seconds", einval
    if op == "file":
        if len(argv) < 3 or argv[2].lower() not in FILE_OPS:
            return f"{BUILTIN} File: expected one of {', '.join(FILE_OPS)}", einval
        fop = argv[2].lower()
        if len(argv) < 4:
            return f"{BUILTIN} File {fop}: no files given", einval
        if fop in ("copy", "move") and len(argv) < 5:
            return f"{BUILTIN} File {fop}: needs SOURCE... DESTINATION", einval
    return None


def _expand_globs(words: list[str], cwd: str) -> list[str]:
    """Words with `*`, `?` or `[` replaced by their matches (relative to `cwd`), others kept."""
    out: list[str] = []
    for w in words:
        if any(c in w for c in "*?["):
            out += sorted(glob.glob(w, root_dir=None if os.path.isabs(w) else cwd))
        else:
            out.append(w)
    return out


def _run_builtin(argv: list[str], run: Run) -> int:
    op = argv[1].lower()
    args = argv[2:]
    if op == "echo":
        run.out(" ".join(args) + "\n")
        return 0
    if op == "sleep":
        run._cancel.wait(float(args[0]))
        return 0
    if op == "printenv":
        env = run.spec.env
        if args:
            missing = 0
            for name in args:
                if name in env:
                    run.out(env[name] + "\n")
                else:
                    missing += 1
            return 1 if missing else 0
        run.out("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        return 0
    # File
    fop, words = args[0].lower(), args[1:]
    cwd = run.spec.cwd

    def at(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(cwd, p)

    files = _expand_globs(words[:-1] if fop in ("copy", "move") else words, cwd)
    if not files:
        run.log_line(f"{BUILTIN} File {fop}: no files matched: {' '.join(args[1:])}")
        return launch_failure_code(_errno.ENOENT)
    failed = 0
    if fop == "delete":
        for f in files:
            try:
                if os.path.isdir(at(f)) and not os.path.islink(at(f)):
                    shutil.rmtree(at(f))
                else:
                    os.unlink(at(f))
            except FileNotFoundError:
                pass  # as rm -f
            except OSError as exc:
                run.out(f"delete {f}: {exc.strerror or exc}\n")
                failed = 1
    elif fop == "mkdir":
        for f in files:
            try:
                os.makedirs(at(f), exist_ok=True)
            except OSError as exc:
                run.out(f"mkdir {f}: {exc.strerror or exc}\n")
                failed = 1
    elif fop == "list":
        for f in files:
            if os.path.isdir(at(f)):
                run.out("".join(n + "\n" for n in sorted(os.listdir(at(f)))))
            elif os.path.lexists(at(f)):
                run.out(f + "\n")
            else:
                run.out(f"list {f}: No such file or directory\n")
                failed = 2
    else:  # copy, move: SOURCE... DEST
        dest = at(words[-1])
        if len(files) > 1 and not os.path.isdir(dest):
            run.out(f"{fop}: {dest} is not a directory\n")
            return 1
        for f in files:
            target = os.path.join(dest, os.path.basename(f)) if os.path.isdir(dest) else dest
            try:
                if fop == "copy":
                    if os.path.isdir(at(f)):
                        run.out(f"copy {f}: is a directory (not copied)\n")
                        failed = 1
                        continue
                    shutil.copy2(at(f), target)
                else:
                    shutil.move(at(f), target)
            except OSError as exc:
                run.out(f"{fop} {f}: {exc.strerror or exc}\n")
                failed = 1
    return failed
