"""The site's connection pooler: PgBouncer in transaction mode beside the site's server.

A farm of a thousand blades would hold a thousand server connections, each a
backend process of the server.  With `[pooler] enabled = true` in db.toml,
`tractor-dbctl --start` (and `--start-for-engine`, so `tractor-engine`) also
starts PgBouncer (Debian's package `pgbouncer`) and `--stop` stops it: blades
and people who connect over TCP go through it, and it carries their short
transactions on at most `max_db_connections` server connections
(`db/connection.py` says which connections go through it).

Like the server, it runs as the server's account (`postgres` when we are
root) and keeps its files beside the database cluster (`pgbouncer/`, mode
0700): `pgbouncer.ini`, `hba.conf`, `userlist.txt`, its pid file and log,
all rewritten at every start from the site configuration.  It reaches the
server on 127.0.0.1 only, and listens where the server does
(`listen_addresses`, or `[pooler] listen_addresses`), never on a Unix socket.

Authentication stays the server's: the pooler admits people's and blades'
roles only, each with its own password (scram-sha-256; `hba.conf` mirrors the
site's pg_hba.conf lines for TCP, TLS included), which it checks against the
secret the server keeps (auth_query: `tractor_pooler_auth_v1`, a SECURITY
DEFINER function of the site's role that answers for members of
`tractor_people` and `tractor_blades` only), and logs in to the server as
that same role by SCRAM pass-through.  The query runs as the role
`tractor_pooler`, which may do nothing else; its password is made anew at
every start and known to the server and to `userlist.txt` alone.

This module drives the pgbouncer process; the SQL half is `db/admin.py`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from pathlib import Path

from .cluster import Cluster, pidfile_pid, process_argv
from .config import SiteSettings
from .db.probe import Probe, probe
from .errors import NotFound, StateError, TractorError, from_os_error

ROLE = "tractor_pooler"  # the role PgBouncer looks passwords up as (migration 0024)
AUTH_QUERY = "SELECT usename, passwd FROM public.tractor_pooler_auth_v1($1)"
INI = "pgbouncer.ini"
HBA = "hba.conf"
USERLIST = "userlist.txt"
PIDFILE = "pgbouncer.pid"
LOGFILE = "pgbouncer.log"
START_WAIT = 15.0  # seconds for the pooler to answer after it was started
STOP_WAIT = 5.0  # seconds of safe shutdown (running transactions end) before the immediate one


def find_program(settings: SiteSettings) -> Path:
    """The pgbouncer binary: `[pooler] program`, else on PATH, else Debian's /usr/sbin/pgbouncer."""
    looked: list[str] = []
    wanted = settings.db.pooler.program
    if wanted is not None:
        if os.access(wanted, os.X_OK) and wanted.is_file():
            return wanted
        looked.append(f"program in db.toml [pooler] ({wanted})")
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    looked.append("pgbouncer on PATH (not found)")
    debian = Path("/usr/sbin/pgbouncer")
    if os.access(debian, os.X_OK):
        return debian
    looked.append(f"{debian} (not found)")
    raise NotFound("PgBouncer not found for the pooler ([pooler] enabled in db.toml); looked at: " + "; ".join(looked),
                   hint="install it (apt-get install pgbouncer), set program in db.toml [pooler], "
                        "or set enabled = false there")


@dataclasses.dataclass
class PoolerStatus:
    enabled: bool  # [pooler] enabled in db.toml
    pid: int | None  # the running pgbouncer's, if any
    stale_pid: int | None  # named by a pid file whose process is gone
    port: int
    answer: Probe | None  # what it answered on localhost:port (None: not asked)

    @property
    def running(self) -> bool:
        return self.pid is not None


def _ini_value(text: str) -> str:
    """A value as pgbouncer.ini reads it: one line (the site's paths and names never hold one)."""
    if "\n" in text or "\r" in text:
        raise StateError(f"cannot write {text!r} into {INI}: it holds a line break")
    return text


def _connstr_value(text: str) -> str:
    """A value in a [databases] connection string: quoted when it holds blanks or quotes."""
    if all(c.isalnum() or c in "._-/" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _listen_addr(addresses: list[str]) -> str:
    """listen_addresses as PgBouncer's listen_addr ("localhost" as 127.0.0.1: a name that resolves to
    an address this host lacks, ::1 without IPv6, would keep it from starting)."""
    out = ["127.0.0.1" if a == "localhost" else a for a in addresses if a]
    return ",".join(dict.fromkeys(out)) or "127.0.0.1"


class Pooler:
    """The PgBouncer of one site (see the module docstring)."""

    def __init__(self, settings: SiteSettings, cluster: Cluster | None = None):
        self.settings = settings
        self.config = settings.db.pooler
        self.cluster = cluster or Cluster(settings)
        self.dir = settings.pooler_dir
        self.port = settings.db.pooler_port

    @property
    def pidfile(self) -> Path:
        return self.dir / PIDFILE

    @property
    def logfile(self) -> Path:
        return self.dir / LOGFILE

    # -- state -----------------------------------------------------------------------

    def _pidfile_pid(self) -> int | None:
        return pidfile_pid(self.pidfile)

    def _is_ours(self, pid: int) -> bool:
        """Is `pid` a live pgbouncer running on this site's configuration?"""
        argv = process_argv(pid)
        if argv is None:
            return False
        if not argv:
            return True  # no /proc: trust kill(0)
        return any(a.endswith(b"pgbouncer") for a in argv[:1]) and str(self.dir / INI).encode() in argv

    def status(self, *, ask: bool = True) -> PoolerStatus:
        pid = self._pidfile_pid()
        live = pid if pid is not None and self._is_ours(pid) else None
        stale = pid if pid is not None and live is None else None
        answer = None
        if ask and live:
            answer = probe(host="127.0.0.1", port=self.port, user=ROLE, dbname=self.settings.db.dbname)
        return PoolerStatus(self.config.enabled, live, stale, self.port, answer)

    # -- files ----------------------------------------------------------------------------

    def _make_dir(self) -> None:
        acct = self.cluster.account
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if acct.uid != os.geteuid():
                os.chown(self.dir, acct.uid, acct.gid)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise from_os_error(exc, f"creating the pooler's directory {self.dir}") from None

    def _hba(self) -> str:
        """The site's pg_hba.conf lines for TCP, for the pooler's door: passwords everywhere
        (localhost too), TLS only when the site has a certificate; no Unix socket."""
        db = self.settings.db
        host = "hostssl" if db.tls else "host"
        name = db.dbname
        lines = [
            "# Written by tractor-dbctl at each start from db.toml; edits are lost.",
            "# As the server's pg_hba.conf over TCP: a password (scram-sha-256) for every role,",
            "# localhost included; only the job database; people's and blades' roles only",
            "# (the site's role and superusers get no secret from auth_query: they are refused).",
        ]
        if db.tls:
            lines += ["hostnossl  all  all  0.0.0.0/0  reject", "hostnossl  all  all  ::/0  reject"]
        lines += [f"{host}  {name}  all  127.0.0.1/32  scram-sha-256", f"{host}  {name}  all  ::1/128  scram-sha-256"]
        if self._listens_beyond_localhost():
            lines += [f"{host}  {name}  all  0.0.0.0/0  scram-sha-256", f"{host}  {name}  all  ::/0  scram-sha-256"]
        return "\n".join(lines) + "\n"

    def _listen_addresses(self) -> list[str]:
        return self.config.listen_addresses if self.config.listen_addresses is not None \
            else self.settings.db.listen_addresses

    def _listens_beyond_localhost(self) -> bool:
        return any(a not in ("localhost", "127.0.0.1", "::1", "") for a in self._listen_addresses())

    def _ini(self) -> str:
        db = self.settings.db
        c = self.config
        d = self.dir
        target = " ".join([
            "host=127.0.0.1", f"port={db.port}", f"dbname={_connstr_value(db.dbname)}",
            f"auth_user={ROLE}",
        ])
        lines = [
            "; Written by tractor-dbctl at each start from db.toml ([pooler]); edits are lost.",
            "[databases]",
            f"{_ini_value(db.dbname)} = {target}",
            "",
            "[pgbouncer]",
            f"listen_addr = {_ini_value(_listen_addr(self._listen_addresses()))}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "pool_mode = transaction",
            f"default_pool_size = {c.pool_size}",
            f"max_db_connections = {c.max_db_connections}",
            f"max_client_conn = {c.max_client_conn}",
            f"server_idle_timeout = {c.server_idle_timeout:g}",
            # a refused login (the server full, restarting) is tried again soon, not in 15 s
            "server_login_retry = 1",
            "auth_type = hba",
            f"auth_hba_file = {_ini_value(str(d / HBA))}",
            f"auth_file = {_ini_value(str(d / USERLIST))}",
            f"auth_user = {ROLE}",
            f"auth_query = {AUTH_QUERY}",
            # drivers other than libpq send it; the pooler keeps nothing of it
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {_ini_value(str(d / LOGFILE))}",
            f"pidfile = {_ini_value(str(d / PIDFILE))}",
            "log_connections = 0",
            "log_disconnections = 0",
        ]
        if db.tls:
            lines += [
                "client_tls_sslmode = require",
                f"client_tls_cert_file = {_ini_value(str(d / 'server.crt'))}",
                f"client_tls_key_file = {_ini_value(str(d / 'server.key'))}",
                # the server refuses plain TCP once it has a certificate, localhost too
                "server_tls_sslmode = require",
            ]
        return "\n".join(lines) + "\n"

    def _write_files(self, password: str) -> None:
        self._make_dir()
        c = self.cluster
        c._write_owned(self.dir / HBA, self._hba())
        quoted = password.replace('"', '""')
        c._write_owned(self.dir / USERLIST, f'"{ROLE}" "{quoted}"\n')
        if self.settings.db.tls:
            for src, name in ((self.settings.db.tls_cert, "server.crt"), (self.settings.db.tls_key, "server.key")):
                try:
                    text = Path(src).read_text(encoding="ascii")
                except (OSError, UnicodeDecodeError) as exc:
                    raise StateError(f"db.toml: {src}: {getattr(exc, 'strerror', None) or exc}") from None
                c._write_owned(self.dir / name, text)
        c._write_owned(self.dir / INI, self._ini())

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, password: str) -> list[str]:
        """Write the configuration (with `password`, the one just set on ROLE) and start pgbouncer;
        a pgbouncer of this site that still runs is stopped first (the password changed).  Notes on
        anything repaired."""
        notes: list[str] = []
        program = find_program(self.settings)
        st = self.status(ask=False)
        if st.running:
            self.stop()
            notes.append(f"stopped the pooler left running (pid {st.pid}) to start it anew")
        elif st.stale_pid is not None:
            self.pidfile.unlink(missing_ok=True)
            notes.append(f"removed the pooler's stale pid file (pid {st.stale_pid} is gone)")
        self._check_port_free()
        self._write_files(password)
        self._room_for_clients()
        since = time.time() - 1
        proc = self.cluster._run([str(program), "-d", "-q", str(self.dir / INI)], check=False, timeout=60)
        if proc.returncode != 0:
            raise self._failed(proc.stderr, since)
        deadline = time.monotonic() + START_WAIT
        gone_since = None
        while True:
            st = self.status()
            if st.running and st.answer not in (None, Probe.NO_RESPONSE):
                return notes
            now = time.monotonic()
            if st.running:
                gone_since = None
            elif gone_since is None:
                gone_since = now
            if now > deadline or (gone_since is not None and now - gone_since > 1.0):
                raise self._failed("", since)
            time.sleep(0.05)

    def _check_port_free(self) -> None:
        import errno
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise self._port_taken() from None

    def _port_taken(self) -> StateError:
        return StateError(f"the pooler cannot start: port {self.port} is already in use by another program",
                          hint="stop that program or set another port in db.toml [pooler]")

    def _room_for_clients(self) -> None:
        """Raise this process's soft limit of open files (pgbouncer inherits it) to what
        max_client_conn needs: a socket per client and per server connection, and a few more."""
        import resource

        want = self.config.max_client_conn + self.config.max_db_connections + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            top = want if hard == resource.RLIM_INFINITY else min(want, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, top), hard))
            except (ValueError, OSError):
                pass  # pgbouncer says in its log how many clients it can take

    def _failed(self, stderr: str, since: float) -> TractorError:
        """One line on why pgbouncer did not start: its own words, from stderr or its log."""
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        try:
            if self.logfile.stat().st_mtime >= since:
                lines += [ln for ln in self.logfile.read_text(errors="replace").splitlines()
                          if " FATAL " in ln or " ERROR " in ln or " WARNING " in ln]
        except OSError:
            pass
        if any("address already in use" in ln.lower() for ln in lines):
            return self._port_taken()
        lines = [ln for ln in lines if " WARNING " not in ln] or lines
        detail = lines[-1].strip() if lines else "no reason given"
        return TractorError(f"the pooler (pgbouncer) did not start: {detail}",
                            hint=f"its log is {self.logfile}")

    def stop(self) -> bool:
        """Stop the pooler: safe shutdown (SIGINT: transactions under way end), then immediate
        (SIGTERM), then SIGKILL.  False if it was not running."""
        st = self.status(ask=False)
        if not st.running:
            if st.stale_pid is not None:
                self.pidfile.unlink(missing_ok=True)
            return False
        pid = st.pid
        for sig, wait in ((signal.SIGINT, STOP_WAIT), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._is_ours(pid):
                time.sleep(0.02)
            if not self._is_ours(pid):
                break
        else:
            raise TractorError(f"the pooler (pgbouncer, pid {pid}) did not stop")
        self.pidfile.unlink(missing_ok=True)
        return True
