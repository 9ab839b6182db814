"""Site configuration: where the config directory is, and its TOML files.

A site is described by an optional config directory holding `tractor.toml`
(site-wide settings: data directory, engine owner, retry counts) and
`db.toml` (the job database server).  Every file and every key is optional:
the built-in defaults make a working local site with no file at all.

Keys may be written in snake_case or with Tractor's own names
(`TractorDataDirectory`, `DBStartup`, ...), so settings can be carried over
from a Tractor site's `tractor.config` / `db.config`.

Errors name the file, the line and the key: `db.toml:4: port: ...`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older interpreters only
    import tomli as tomllib

ENV_CONFIGDIR = "TRACTOR_CONFIGDIR"
TRACTOR_FILE = "tractor.toml"
DB_FILE = "db.toml"
DEFAULT_PORT = 9876
# Tractor's engine answers HTTP on these ports; an engine address naming one
# of them names the engine, not the job database (see `at_engine`)
ENGINE_NAME = "tractor-engine"
ENGINE_PORTS = (80, 443, 5600, 8080)
WAKEUP_MODES = ("listen", "engine")  # BladeWakeups (wakeups.py)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def default_owner() -> str:
    """A spool's owner when none is named: the login name (as Tractor's spooler takes it)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name: fall back as Tractor does
        return os.environ.get("USER", "root")


def default_host() -> str:
    """This host's short name: a spool's spoolhost, a blade's name."""
    import socket

    return socket.gethostname().split(".")[0]


def user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def default_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tractor"


def default_data_dir() -> Path:
    # As root the PostgreSQL server runs as an unprivileged account, which
    # cannot reach into /root; Tractor's own default location suits a
    # system-wide site.  Everyone else gets a private per-user site.
    if is_root():
        return Path("/var/spool/tractor")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tractor"


@dataclass
class PoolerSettings:
    """The site's connection pooler (`[pooler]` in db.toml): PgBouncer in transaction mode,
    started and stopped with the site's server by tractor-dbctl on the server's host, and the
    way in for blades and people who connect over TCP with a password (db/connection.py says
    which programs).  The names are PgBouncer's where PgBouncer has one."""

    enabled: bool = False
    port: int | None = None  # None: the database's port + 1
    listen_addresses: list[str] | None = None  # None: the database's (db.toml listen_addresses)
    pool_size: int = 20  # server connections of one role (PgBouncer's default_pool_size)
    max_db_connections: int = 100  # server connections of all roles together: the cap
    max_client_conn: int = 5000  # client connections the pooler accepts
    # seconds an idle server connection is kept (at max_db_connections a waiting role's pool also
    # takes the most idle connection of another role's pool: PgBouncer closes it and opens one)
    server_idle_timeout: float = 10.0
    program: Path | None = None  # the pgbouncer binary; None: on PATH, else /usr/sbin/pgbouncer


@dataclass
class DbSettings:
    """Settings of the job database server (`db.toml`)."""

    port: int = DEFAULT_PORT
    data_dir: Path | None = None  # None: <site data dir>/psql
    os_user: str | None = None  # account the server runs as when we are root
    bindir: Path | None = None
    startup: bool = True  # DBStartup: --start-for-engine starts the server
    init: bool = True  # DBInit: --start-for-engine creates a missing data dir
    shutdown: bool = True  # DBShutdown: --stop-for-engine stops the server
    auto_upgrade: bool = True  # DBAutoUpgrade: --start-for-engine applies migrations
    use_existing: bool = False  # DBUseExisting: use a server that is already running
    archiving: bool = True  # DBArchiving: deleted jobs are kept (archived), not removed
    listen_addresses: list[str] = field(default_factory=lambda: ["localhost"])
    password: str | None = None  # required when listening beyond localhost
    dbname: str = "tractor"
    user: str = "root"  # the site's own database role (the site owner's), as in Tractor
    login: str | None = None  # the role this machine's programs connect as (see login_role)
    host: str | None = None  # a remote server to use instead of the local one
    start_timeout: int = 60  # seconds pg_ctl waits for start/stop
    # the server's TLS certificate and key (PEM): with both, TCP connections must use TLS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # how people and blades on other hosts authenticate: scram-sha-256 (passwords), ldap, gss
    auth: str = "scram-sha-256"
    auth_options: str = ""  # written after the method in pg_hba.conf (ldapserver=..., include_realm=0, ...)
    # the client's side: libpq's sslmode (verify-full checks the certificate and the host name)
    sslmode: str | None = None
    sslrootcert: Path | None = None  # the CA that signed the server's certificate
    pooler: PoolerSettings = field(default_factory=PoolerSettings)

    @property
    def pooler_port(self) -> int:
        return self.pooler.port if self.pooler.port is not None else self.port + 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def listens_beyond_localhost(self) -> bool:
        local = {"localhost", "127.0.0.1", "::1", ""}
        return any(a not in local for a in self.listen_addresses)


@dataclass
class SiteSettings:
    """Everything a program needs to know about the site it works on."""

    config_dir: Path
    data_dir: Path  # TractorDataDirectory
    engine_owner: str | None = None
    cmd_auto_retry_attempts: int = 0
    cmd_retryrc_retry_attempts: int = 1
    # seconds without a heartbeat before a blade's commands go back to the queue
    blade_lease_secs: int = 30
    # tq listings show at most this many rows without --limit (0: no cap)
    max_list_rows: int = 1000
    # what pipeline code calls the engine: this name (and these ports) mean
    # the site's own job database (see `at_engine`)
    engine_name: str = ENGINE_NAME
    engine_ports: tuple[int, ...] = ENGINE_PORTS
    # whose account a blade running as root runs commands as, where its profile does not say:
    # "owner" (the job's owner; never root for someone else's job), "blade", or an account name
    blade_run_as: str = "owner"
    # how idle blades hear that work is queued: "listen" (a connection each) or "engine" (a
    # datagram from tractor-engine; wakeups.py)
    blade_wakeups: str = "listen"
    # the order of jobs of equal tier and priority (P+FIFO, P+RR, P+ATCL, P+ATCL+RR)
    scheduling_mode: str = "P+FIFO"
    # dispatch tiers: name -> priority (a job's tier orders the queue before its priority)
    tiers: dict[str, int] = field(default_factory=lambda: dict(STOCK_TIERS))
    db: DbSettings = field(default_factory=DbSettings)
    files: list[Path] = field(default_factory=list)  # config files actually read

    @property
    def db_data_dir(self) -> Path:
        return self.db.data_dir if self.db.data_dir is not None else self.data_dir / "psql"

    @property
    def db_socket_dir(self) -> Path:
        """Where the server's Unix socket is: `run/` beside the database cluster, a directory
        every local account may enter (the data directory itself is 0700), so each connects
        as itself (peer authentication)."""
        return self.db_data_dir.parent / "run"

    @property
    def pooler_dir(self) -> Path:
        """The pooler's files (its configuration, pid file and log): `pgbouncer/` beside the
        database cluster, the server account's, mode 0700."""
        return self.db_data_dir.parent / "pgbouncer"

    @property
    def db_os_user(self) -> str | None:
        """The account the server runs as, or None for the current user."""
        if self.db.os_user:
            return self.db.os_user
        if is_root():
            return "postgres"
        return None


# --- key tables -------------------------------------------------------------
# Each entry: canonical name -> (aliases, converter).  Converters take
# (value, where) and raise ValueError with a short reason.


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return v.lower() in ("true", "yes", "on", "1")
    raise ValueError(f"expected true or false, got {v!r}")


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}, got {v!r}")
        return v

    return conv


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [s for s in re.split(r"[,\s]+", v) if s]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return list(v)


def _port_list(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        raise ValueError(f"expected a list of TCP ports, got {v!r}")
    return tuple(_int_range(1, 65535)(p) for p in v)


SCHEDULING_MODES = ("P+FIFO", "P+RR", "P+ATCL", "P+ATCL+RR")
STOCK_TIERS = {"admin": 111, "rush": 99, "default": 50, "batch": 10}


def _scheduling_mode(v: Any) -> str:
    for mode in SCHEDULING_MODES:
        if isinstance(v, str) and v.upper() == mode:
            return mode
    raise ValueError(f"expected one of {', '.join(SCHEDULING_MODES)}, got {v!r}")


def _tiers(v: Any) -> dict[str, int]:
    """[tiers]: name = priority (an integer); names are matched without regard to case."""
    if not isinstance(v, dict) or not v:
        raise ValueError("expected a table of tier names and their priorities (admin = 111, ...)")
    out: dict[str, int] = {}
    for name, pri in v.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"tier {name!r}: a name is letters, digits, '_', '.' or '-'")
        if isinstance(pri, bool) or not isinstance(pri, int):
            raise ValueError(f"tier {name}: expected an integer priority, got {pri!r}")
        out[name.lower()] = pri
    return out


_TRACTOR_KEYS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "data_dir": (("TractorDataDirectory",), _str),
    "engine_owner": (("EngineOwner",), _str),
    "cmd_auto_retry_attempts": (("CmdAutoRetryAttempts",), _int_range(0, 1000)),
    "cmd_retryrc_retry_attempts": (("CmdRetryrcRetryAttempts",), _int_range(0, 1000)),
    "blade_lease_secs": (("BladeLeaseSecs",), _int_range(1, 3600)),
    "max_list_rows": (("SiteMaxListReplyCount",), _int_range(0, 1_000_000_000)),
    "engine_name": (("EngineName",), _str),
    "engine_ports": (("EnginePorts",), lambda v: _port_list(v)),
    "blade_run_as": (("BladeRunAs",), _str),
    "blade_wakeups": (("BladeWakeups",), lambda v: _choice(v, WAKEUP_MODES)),
    "scheduling_mode": (("SchedulingMode",), lambda v: _scheduling_mode(v)),
    "tiers": (("Tiers",), lambda v: _tiers(v)),
}

AUTH_METHODS = ("scram-sha-256", "ldap", "gss")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _choice(v: Any, allowed: tuple[str, ...]) -> str:
    text = _str(v)
    if text not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, not {text!r}")
    return text


def _hba_options(v: Any) -> str:
    """pg_hba.conf options (name=value ...): one line, no comment."""
    text = _str(v)
    if "\n" in text or "#" in text:
        raise ValueError("one line of name=value options, without '#'")
    return text


_DB_KEYS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "port": (("DBPort",), _int_range(1, 65535)),
    "data_dir": (("DBDataDir",), _str),
    "os_user": (("DBOsUser",), _str),
    "bindir": (("DBBinDir",), _str),
    "startup": (("DBStartup",), _bool),
    "init": (("DBInit",), _bool),
    "shutdown": (("DBShutdown",), _bool),
    "auto_upgrade": (("DBAutoUpgrade",), _bool),
    "use_existing": (("DBUseExisting",), _bool),
    "archiving": (("DBArchiving",), _bool),
    "listen_addresses": (("DBListenAddresses",), _str_list),
    "password": (("DBPassword",), _str),
    "dbname": (("DBName",), _str),
    "user": (("DBUser",), _str),
    "login": (("DBLogin",), _str),
    "host": (("DBHost",), _str),
    "start_timeout": (("DBStartTimeout",), _int_range(1, 3600)),
    "tls_cert": (("DBTlsCert",), _str),
    "tls_key": (("DBTlsKey",), _str),
    "auth": (("DBAuth",), lambda v: _choice(v, AUTH_METHODS)),
    "auth_options": (("DBAuthOptions",), _hba_options),
    "sslmode": (("DBSslMode",), lambda v: _choice(v, SSL_MODES)),
    "sslrootcert": (("DBSslRootCert",), _str),
}

POOLER_TABLE = "pooler"


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 86400:
        raise ValueError(f"expected a number of seconds from 0 to 86400, got {v!r}")
    return float(v)


_POOLER_KEYS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "enabled": ((), _bool),
    "port": ((), _int_range(1, 65535)),
    "listen_addresses": ((), _str_list),
    "pool_size": (("default_pool_size",), _int_range(1, 10000)),
    "max_db_connections": ((), _int_range(1, 10000)),
    "max_client_conn": ((), _int_range(1, 1_000_000)),
    "server_idle_timeout": ((), _seconds),
    "program": ((), _str),
}


def _key_line(text: str, key: str) -> int | None:
    """The line number where `key` is assigned in a TOML text (best effort)."""
    pat = re.compile(r'^\s*(?:(?:"%s"|\'%s\'|%s)\s*=|\[\s*%s\s*\])' % ((re.escape(key),) * 4))
    for n, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return n
    return None


class TomlLines:
    """Where keys sit in the text: section-aware, best effort (for error messages)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def header(self, section: str) -> int:
        for n, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if m and m.group(1).strip("\"'") == section:
                return n
        return self.key(None, section)

    def key(self, section: str | None, key: str) -> int:
        pat = re.compile(r"^\s*(?:\"%s\"|'%s'|%s)\s*=" % ((re.escape(key),) * 3))
        dotted = re.compile(r"^\s*%s\s*\.\s*(?:\"%s\"|'%s'|%s)\s*=" % ((re.escape(section or ""),)
                                                                           + (re.escape(key),) * 3))
        current: str | None = None
        for n, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if m:
                current = m.group(1).strip("\"'")
                continue
            if (current == section and pat.match(line)) or (current is None and section and dotted.match(line)):
                return n
        for n, line in enumerate(self.lines, 1):  # a key written as a [section.key] table
            m = self._HEADER.match(line)
            if m and re.sub(r"[\s\"']", "", m.group(1)) == f"{section}.{key}":
                return n
        return 1


def load_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and data; a file that cannot be read or parsed is a
    ConfigError naming it (and the line and column of a syntax error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error_text(path, exc)) from None


def _read_toml(path: Path, table: str) -> tuple[dict[str, Any], str]:
    """Read a TOML file: its top-level keys merged with those of `[table]`."""
    text, data = load_toml(path)
    merged = {k: v for k, v in data.items() if k != table}
    section = data.get(table)
    if section is not None:
        if not isinstance(section, dict):
            raise ConfigError(f"{path}:{_key_line(text, table) or 1}: {table}: expected a table")
        for k, v in section.items():
            if k in merged:
                raise ConfigError(f"{path}:{_key_line(text, k) or 1}: {k}: set twice (top level and [{table}])")
            merged[k] = v
    return merged, text


def _toml_error_text(path: Path, exc: Exception) -> str:
    # tomllib says "Invalid value (at line 3, column 8)"; move the place to
    # the front, where users of compilers and linters look for it.
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m:
        return f"{path}:{m.group(1)}:{m.group(2)}: malformed TOML: {msg[: m.start()]}"
    m = re.search(r"\s*\(at end of document\)$", msg)
    if m:
        return f"{path}: malformed TOML at end of file: {msg[: m.start()]}"
    return f"{path}: malformed TOML: {msg}"


def _apply(
    path: Path,
    data: dict[str, Any],
    text: str,
    keys: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]],
    table: str | None = None,
) -> dict[str, Any]:
    """Canonical keys -> converted values of a file's top level (or of its `[table]`); errors
    name the line."""
    by_name: dict[str, str] = {}
    for canon, (aliases, _) in keys.items():
        by_name[canon.lower()] = canon
        for a in aliases:
            by_name[a.lower()] = canon
    lines = TomlLines(text) if table else None
    out: dict[str, Any] = {}
    for key, value in data.items():
        line = lines.key(table, key) if lines else _key_line(text, key) or 1
        name = f"[{table}] {key}" if table else key
        canon = by_name.get(key.lower())
        if canon is None:
            known = ", ".join(sorted(keys))
            unknown = f"{name}: unknown key" if table else f"unknown key {key!r}"
            raise ConfigError(f"{path}:{line}: {unknown} (known keys: {known})")
        if canon in out:
            raise ConfigError(f"{path}:{line}: {name}: set twice (also as {canon!r})")
        try:
            out[canon] = keys[canon][1](value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{line}: {name}: {exc}") from None
    return out


def resolve_config_dir(explicit: str | os.PathLike | None) -> tuple[Path, bool]:
    """The config dir and whether it was named explicitly (flag or env)."""
    if explicit:
        return Path(explicit).expanduser(), True
    env = os.environ.get(ENV_CONFIGDIR)
    if env:
        return Path(env).expanduser(), True
    return default_config_dir(), False


def _path(value: str, base: Path, data_dir: Path | None = None) -> Path:
    if data_dir is not None:
        value = value.replace("${TractorDataDirectory}", str(data_dir))
    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else (base / p)


def load_settings(config_dir: str | os.PathLike | None = None, *, join_host_site: bool = True) -> SiteSettings:
    """Build the site settings from defaults and the config directory's files.  With no
    configuration at all, a client (`join_host_site`) uses the host's system-wide site."""
    cdir, explicit = resolve_config_dir(config_dir)
    if explicit and not cdir.is_dir():
        origin = "--configdir" if config_dir else ENV_CONFIGDIR
        raise ConfigError(f"config directory {cdir} does not exist (from {origin})")
    cdir = cdir.absolute()
    files: list[Path] = []

    tractor: dict[str, Any] = {}
    tpath = cdir / TRACTOR_FILE
    if tpath.is_file():
        data, text = _read_toml(tpath, "tractor")
        tractor = _apply(tpath, data, text, _TRACTOR_KEYS)
        files.append(tpath)

    db: dict[str, Any] = {}
    pooler: dict[str, Any] = {}
    dpath = cdir / DB_FILE
    if dpath.is_file():
        data, text = _read_toml(dpath, "db")
        if POOLER_TABLE in data:
            pooler = _pooler_table(dpath, data.pop(POOLER_TABLE), text)
        db = _apply(dpath, data, text, _DB_KEYS)
        files.append(dpath)

    data_dir = _path(tractor.pop("data_dir"), cdir) if "data_dir" in tractor else default_data_dir()
    dbs = DbSettings()
    for key in ("data_dir", "bindir", "tls_cert", "tls_key", "sslrootcert"):
        if key in db:
            setattr(dbs, key, _path(db.pop(key), cdir, data_dir))
    for key, value in db.items():
        setattr(dbs, key, value)
    if "program" in pooler:
        pooler["program"] = _path(pooler["program"], cdir, data_dir)
    dbs.pooler = PoolerSettings(**pooler)
    settings = SiteSettings(config_dir=cdir, data_dir=data_dir, db=dbs, files=files, **tractor)
    if join_host_site and not explicit and not files:
        _join_the_hosts_site(settings)
    _validate(settings, dpath)
    return settings


# The system-wide site (root's, in Tractor's own place) keeps its server's socket here.
SHARED_RUN_DIR = Path("/var/spool/tractor/run")


def _join_the_hosts_site(settings: SiteSettings) -> None:
    """An account with no configuration of its own, on a host whose system-wide site runs, uses
    that site through its socket as itself (peer authentication: the OS account is the person).
    An account that has a site of its own (a cluster in its data directory) keeps it."""
    if is_root() or settings.db_data_dir.exists():
        return
    try:
        sockets = sorted(p.name for p in SHARED_RUN_DIR.iterdir() if p.name.startswith(".s.PGSQL."))
    except OSError:
        return
    ports = [int(n.rsplit(".", 1)[1]) for n in sockets if n.rsplit(".", 1)[1].isdigit()]
    if ports:
        settings.db.host = str(SHARED_RUN_DIR)
        settings.db.port = DEFAULT_PORT if DEFAULT_PORT in ports else ports[0]


def _pooler_table(path: Path, table: Any, text: str) -> dict[str, Any]:
    """`[pooler]` of db.toml, its keys checked; errors name the line in that table."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}:{TomlLines(text).header(POOLER_TABLE)}: {POOLER_TABLE}: expected a table ([pooler])")
    return _apply(path, table, text, _POOLER_KEYS, table=POOLER_TABLE)


def _validate(s: SiteSettings, dpath: Path) -> None:
    if (s.db.tls_cert is None) != (s.db.tls_key is None):
        raise ConfigError(f"{dpath}: tls_cert and tls_key go together (the server's certificate and its key)")
    if s.db.listens_beyond_localhost and not s.db.password:
        raise ConfigError(
            f"{dpath}: listen_addresses {s.db.listen_addresses} reach beyond localhost, "
            "which requires password authentication: set 'password' as well"
        )
    pool = s.db.pooler
    if pool.enabled:
        if s.db.pooler_port == s.db.port:
            raise ConfigError(f"{dpath}: [pooler] port {s.db.pooler_port} is the database's own port: "
                              "give the pooler a port of its own")
        if s.db.auth != "scram-sha-256":
            raise ConfigError(f"{dpath}: [pooler] enabled with auth = {s.db.auth!r}: the pooler (PgBouncer) "
                              "checks passwords (scram-sha-256) only; use auth = \"scram-sha-256\" or no pooler")
        if not s.db.host and not {"localhost", "127.0.0.1", "*", "0.0.0.0"} & set(s.db.listen_addresses):
            raise ConfigError(f"{dpath}: [pooler] enabled, but listen_addresses {s.db.listen_addresses} leave "
                              "out localhost, where the pooler reaches the server: add \"localhost\"")


# --- who connects ----------------------------------------------------------------


def site_owner_accounts(settings: SiteSettings) -> list[str]:
    """The operating-system accounts that are the site owner: root, the account the server runs
    as, EngineOwner.  On the server's socket they connect as the site's role (`db.user`)."""
    owners = ["root", settings.db_os_user or current_user()]  # (not root: the server runs as oneself)
    if settings.engine_owner:
        owners.append(settings.engine_owner)
    return list(dict.fromkeys(owners))


def login_role(settings: SiteSettings) -> str:
    """The database role this program connects as: `login` in db.toml; else, for the site
    owner's accounts (and the account named as the site's role), the site's role; else the
    login name: on the server's host the socket's peer authentication checks it."""
    if settings.db.login:
        return settings.db.login
    me = current_user()
    if settings.db.host:  # another host's server: one is oneself there (with one's password)
        return me
    if me == settings.db.user or me in site_owner_accounts(settings):
        return settings.db.user
    return me


# --- engine addresses ----------------------------------------------------------


def split_engine(address: str, where: str = "engine") -> tuple[str, int | None]:
    """`HOST`, `HOST:PORT` or `[V6ADDR]:PORT` -> (host, port or None)."""
    from .errors import UsageError

    text = address.strip()
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise UsageError(f"{where} {address!r}: expected HOST, HOST:PORT or [ADDR]:PORT")
        host, port = text[1:end], text[end + 2:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise UsageError(f"{where} {address!r}: no host name")
    if not port:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{where} {address!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def at_engine(settings: SiteSettings, host: str | None, port: int | None = None) -> SiteSettings:
    """The settings for the job database an engine address names.

    Tractor's clients name the engine (`tractor-engine:80`); here the job
    database is the engine, and pipeline code must work with no edit:

    * the host is the database server's host, except the site's engine
      name (`engine_name`, default `tractor-engine`), which means the
      site's own job database as this machine's configuration says
      (db.toml `host`; unset: the local server);
    * the port is the database server's port, except no port or one of
      Tractor's engine ports (`engine_ports`: 80, 443, 5600, 8080), which
      mean the port of the site's configuration (db.toml `port`).
    """
    import dataclasses

    db = settings.db
    if host is not None and host != settings.engine_name:
        db = dataclasses.replace(db, host=host)
    if port is not None and port not in settings.engine_ports:
        db = dataclasses.replace(db, port=port)
    return settings if db is settings.db else dataclasses.replace(settings, db=db)
