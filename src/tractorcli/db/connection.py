"""Connections to the job database, and the one place psycopg errors are translated.

Clients on the server's host connect through the server's Unix socket
(`run/` beside the data directory), where the operating system says who
they are (peer authentication); with `host` set in db.toml they go over TCP
to that server instead, with the password.

The site's pooler (`[pooler]` in db.toml: PgBouncer in transaction mode, run
by tractor-dbctl beside the server) carries the short transactions of many
clients on a few server connections.  `conninfo` is the one place that says
who goes through it: a connection over TCP (`host` set) whose purpose is
in POOLED.  A connection through it gets no prepared statements
(`prepare_threshold=None`: PgBouncer 1.18 cannot keep them across the
server connections it hands out) and must keep no state from one
transaction to the next; so LISTEN, and the site owner's work (migrations,
backups, roles, the engine's housekeeping), go straight to the server.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

from ..config import SiteSettings, login_role
from ..errors import (
    BadInput,
    DatabaseUnavailable,
    PermissionDenied,
    SchemaError,
    StateError,
    StorageError,
    TractorError,
)

if TYPE_CHECKING:  # pragma: no cover
    import psycopg


# What a connection is for (connect's `purpose`):
BLADE = "blade"  # a blade's work: register, claim, heartbeat, report (one short transaction each)
CLIENT = "client"  # tq, tractor-spool, the Python API: short sessions of short transactions
LISTEN = "listen"  # LISTEN for notifications: a session of its own, held
ADMIN = "admin"  # the site owner's: tractor-dbctl (migrations, backups, roles), tractor-engine
# the purposes that go through the site's pooler when there is one
POOLED = frozenset({BLADE, CLIENT})


def pooled(settings: SiteSettings, purpose: str = ADMIN) -> bool:
    """Whether a connection for `purpose` goes through the site's pooler: the pooler is on
    (db.toml [pooler] enabled), the purpose is one of POOLED, and the connection goes over TCP
    (`host` set to a server's name or address).  On the server's host the socket (peer
    authentication) is the way in: the pooler checks passwords only, and could not log in to the
    server as whoever the socket vouched for."""
    db = settings.db
    return db.pooler.enabled and purpose in POOLED and bool(db.host) and not db.host.startswith("/")


def conninfo(settings: SiteSettings, dbname: str | None = None, *, purpose: str = ADMIN) -> dict[str, Any]:
    """The arguments of psycopg's connect for a connection for `purpose` (see POOLED)."""
    db = settings.db
    via_pooler = pooled(settings, purpose)
    params: dict[str, Any] = {
        "port": db.pooler_port if via_pooler else db.port,
        "user": login_role(settings),
        "dbname": dbname or db.dbname,
        "application_name": "tractorcli",
        "connect_timeout": 10,
    }
    if db.host:
        params["host"] = db.host
        if db.password:
            params["password"] = db.password
    elif db.use_existing:
        # our socket if our server runs, else the server already on localhost
        # (libpq tries the hosts in order)
        params["host"] = f"{settings.db_socket_dir},127.0.0.1"
        if db.password:
            params["password"] = db.password
    else:
        params["host"] = str(settings.db_socket_dir)
    if db.sslmode:
        params["sslmode"] = db.sslmode
    if db.sslrootcert:
        params["sslrootcert"] = str(db.sslrootcert)
    if via_pooler:
        # PgBouncer (1.18) in transaction mode hands each transaction whichever server
        # connection is free: a statement prepared on one is unknown to the next
        params["prepare_threshold"] = None
    return params


def describe(settings: SiteSettings) -> str:
    db = settings.db
    if getattr(settings, "via_pooler", False):
        return f'database "{db.dbname}" through the pooler on {db.host}:{db.pooler_port}'
    where = f"{db.host}:{db.port}" if db.host else f"the local server (socket in {settings.db_socket_dir}, port {db.port})"
    return f'database "{db.dbname}" on {where}'


def connect(settings: SiteSettings, *, dbname: str | None = None, autocommit: bool = False,
            purpose: str = ADMIN) -> "psycopg.Connection":
    """A connection to the job database for `purpose` (BLADE, CLIENT, LISTEN, ADMIN: whether it goes
    through the site's pooler is conninfo's to say)."""
    import psycopg
    from psycopg.rows import dict_row

    from .rerun import SiteConnection

    _quiet_psycopg()
    if pooled(settings, purpose):
        # errors name the pooler's address, where this connection goes
        settings = _ViaPooler.of(settings)
    try:
        conn = SiteConnection.connect(**conninfo(settings, dbname, purpose=purpose), autocommit=autocommit,
                                      row_factory=dict_row)
    except psycopg.Error as exc:
        raise translate(exc, settings, dbname) from None
    conn.site_settings = settings  # for translate() in code that is handed only the connection
    return conn


class _ViaPooler(SiteSettings):
    """Settings of a connection that goes through the pooler: the same, and says so in errors."""

    via_pooler = True

    @classmethod
    def of(cls, settings: SiteSettings) -> SiteSettings:
        import dataclasses

        if isinstance(settings, cls):
            return settings
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})


def _quiet_psycopg() -> None:
    """psycopg logs the errors it ignores while another one is raised (a pipeline aborted by the
    error we report, say); with no logging set up Python prints those to stderr.  The error that
    matters reaches the user through the exception, translated: the log records are not for them."""
    import logging

    log = logging.getLogger("psycopg")
    if not log.handlers:
        log.addHandler(logging.NullHandler())


def settings_of(conn: Any) -> SiteSettings | None:
    """The site settings a connection was made from (None: not made by connect())."""
    return getattr(conn, "site_settings", None)


def _room_hint(settings: SiteSettings | None) -> str:
    """What to do about a full disk under the server: free space where its data lives."""
    if settings is not None and not settings.db.host and not settings.db.use_existing:
        return f"free space on the disk holding {settings.db_data_dir}, then try again"
    return "free space on the database server's disk, then try again"


def translate(exc: Exception, settings: SiteSettings | None = None, dbname: str | None = None) -> TractorError:
    """Map a psycopg error onto our hierarchy with a one-line message."""
    import psycopg
    from psycopg import errors as pe

    raw = str(exc).strip()
    text = raw.splitlines()[0] if raw else exc.__class__.__name__
    where = describe(settings) if settings is not None else "the job database"
    name = dbname or (settings.db.dbname if settings else "tractor")
    from .rerun import CONFLICTS

    if isinstance(exc, CONFLICTS):  # (OperationalErrors too: before those)
        return StateError(f"{where} aborted the work to break a lock conflict with other work ({text}); "
                          "nothing of it was done: run it again")
    if isinstance(exc, pe.DiskFull):  # (an OperationalError too: before those)
        return StorageError(f"{where}: the disk is full ({text})", hint=_room_hint(settings))
    if isinstance(exc, psycopg.OperationalError):
        low = raw.lower()
        if "does not exist" in low and "database" in low:
            return StateError(
                f'the job database "{name}" does not exist on {where.split(" on ", 1)[-1]}',
                hint="create it with tractor-dbctl --build (or --start-for-engine)",
            )
        # (PgBouncer's words for a wrong password, and for a login it has no secret for: the
        # site's role, a superuser, an unknown name)
        if "password authentication failed" in low or "sasl authentication failed" in low \
                or ("no such user" in low and getattr(settings, "via_pooler", False)):
            who = settings and login_role(settings)
            hint = "check login and password in db.toml"
            if getattr(settings, "via_pooler", False):
                hint += " (the pooler admits people's and blades' logins only, not the site's role)"
            return PermissionDenied(f"{where}: password authentication failed for {who or 'the login'}", hint=hint)
        if "password" in low:
            return PermissionDenied(f"{where} requires a password: set password in db.toml")
        if "no such file or directory" in low or "connection refused" in low:
            if getattr(settings, "via_pooler", False):
                return DatabaseUnavailable(f"cannot reach {where}: the pooler is not running",
                                           hint="start it with tractor-dbctl --start on the server's host "
                                                "([pooler] enabled in its db.toml)")
            return DatabaseUnavailable(
                f"cannot reach {where}: the server is not running",
                hint="start it with tractor-dbctl --start",
            )
        if "the database system is starting up" in low or "shutting down" in low:
            return DatabaseUnavailable(f"cannot use {where} right now: {text}")
    if isinstance(exc, pe.UndefinedTable):
        return SchemaError(
            f"{where} has no job schema ({text})",
            hint="create it with tractor-dbctl --upgrade or --start-for-engine",
        )
    if isinstance(exc, pe.UndefinedFunction):
        # a program older or newer than the database's schema (an old blade left running over an
        # upgrade that retired what it calls): say so, not "SQL error"
        from .. import __version__

        return SchemaError(f"{where} has no function this tractorcli ({__version__}) calls: {text}",
                           hint="the program and the job database are of different versions: upgrade the "
                                "database (tractor-dbctl --upgrade) or install the tractorcli that matches it")
    if isinstance(exc, pe.InsufficientPrivilege):
        return PermissionDenied(f"{where}: {text}")
    if isinstance(exc, pe.InvalidParameterValue):  # raised by the operations' functions: their words
        return BadInput(exc.diag.message_primary or text)
    if isinstance(exc, pe.InvalidRegularExpression):
        # a tq `like` pattern the server's regex engine refuses
        return BadInput(f"invalid regular expression: {text}")
    if isinstance(exc, (pe.SyntaxError, pe.UndefinedColumn, pe.InvalidTextRepresentation,
                        pe.DataException, psycopg.DataError)):
        return BadInput(f"SQL error: {text}")
    if isinstance(exc, pe.ObjectInUse):
        return StateError(f"{where}: {text}")
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(f"lost or refused connection to {where}: {text}")
    return TractorError(f"database error: {text}")


@contextlib.contextmanager
def translated(settings: SiteSettings | None = None) -> Iterator[None]:
    """Translate psycopg errors raised inside the block."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, settings) from None
