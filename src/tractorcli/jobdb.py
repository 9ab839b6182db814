"""The site's job database as one thing: its server and its schema together.

`cluster.py` runs the PostgreSQL server; `db/` speaks SQL to it.  The
operations here compose the two the way tractor-dbctl and tractor-engine
need them (start-for-engine: init if allowed, start if allowed, wait, build,
upgrade), and serialise them with a per-site lock so two administrators (or
an engine and an administrator) cannot start, restore or destroy at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

from .cluster import Cluster
from .config import SiteSettings, current_user, is_root, login_role
from .db.probe import Probe, probe
from .errors import DatabaseUnavailable, PermissionDenied, StateError, TractorError, from_os_error


@dataclasses.dataclass
class Report:
    """What an operation did, as lines for the user (stderr) and facts for tests/JSON."""

    lines: list[str] = dataclasses.field(default_factory=list)
    facts: dict = dataclasses.field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(line)


def check_owner(settings: SiteSettings) -> None:
    """Tractor runs dbctl only as the engine owner; root may act for it."""
    owner = settings.engine_owner
    if owner and not is_root() and current_user() != owner:
        raise PermissionDenied(
            f"this site's engine owner is {owner!r}; run tractor-dbctl as that user (or as root), not as {current_user()!r}"
        )


@contextlib.contextmanager
def site_lock(settings: SiteSettings, *, wait: float = 30.0) -> Iterator[None]:
    """Hold the site's administration lock for the duration of the block."""
    lock_dir = settings.data_dir
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        if is_root():
            # the server account must be able to pass through to psql/
            os.chmod(lock_dir, os.stat(lock_dir).st_mode | 0o711)
        fd = os.open(lock_dir / ".tractor-dbctl.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise from_os_error(exc, f"locking the site in {lock_dir}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StateError(
                        f"another tractor-dbctl is working on this site (lock {lock_dir / '.tractor-dbctl.lock'})"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def wait_reachable(cluster: Cluster, timeout: float = 60.0) -> Probe:
    answer = cluster.wait_ready(timeout)
    if answer in (Probe.NO_RESPONSE, Probe.STARTING, Probe.REJECTED):
        raise DatabaseUnavailable(
            f"the database server does not answer on {cluster.socket_path} ({answer.value})"
        )
    return answer


def start_for_engine(settings: SiteSettings, *, auto_upgrade: bool = True) -> Report:
    """Everything the engine needs before it can run: see Tractor's --start-for-engine."""
    from .db import admin, migrate
    from .db.connection import connect, translated

    rep = Report()
    db = settings.db
    own = False  # the site's own server (the pooler goes with it)
    if db.host:
        # not our server: only make sure it answers, then database and schema
        answer = probe(host=db.host, port=db.port, user=login_role(settings), dbname=db.dbname)
        if answer is Probe.NO_RESPONSE:
            raise DatabaseUnavailable(f"no PostgreSQL server answers on {db.host}:{db.port} (host in db.toml)")
        rep.say(f"using the database server on {db.host}:{db.port}")
    elif not _bring_up_local(settings, rep):
        rep.say(f"using the PostgreSQL server already listening on localhost:{db.port} (DBUseExisting)")
    else:
        own = True
    if admin.ensure_database(settings):
        rep.say(f'created the job database "{db.dbname}"')
    if db.password:  # the site's role over TCP (localhost too)
        admin.set_role_password(settings)
    with connect(settings, autocommit=True) as conn, translated(settings):
        p = migrate.plan(conn)
        if not p.up_to_date:
            if auto_upgrade and db.auto_upgrade or p.current == 0:
                applied = migrate.upgrade(conn)
                if not applied:
                    rep.say(f"schema version {p.current}: functions updated "
                            f"({', '.join(f.name for f in p.functions)})")
                elif p.current:
                    rep.say(f"schema upgraded from version {p.current} to {applied[-1].version}")
                else:
                    rep.say(f"schema version {applied[-1].version} created")
            else:
                raise StateError(
                    f"the job database needs a schema upgrade from version {p.current} to {p.target} "
                    "and automatic upgrades are off",
                    hint="run tractor-dbctl --upgrade",
                )
        rep.facts["schema_version"] = migrate.plan(conn).current
        from .db import crews

        line = crews.load(conn, settings.config_dir)  # who may force is decided in the database
        if (settings.config_dir / "crews.toml").exists():
            rep.say(f"crews loaded from {line}")
        from .db import limits

        line = limits.load(conn, settings.config_dir)  # the claim counts against them
        if (settings.config_dir / "limits.toml").exists():
            rep.say(f"limits loaded from {line}")
    if own:
        start_pooler(settings, rep, restart=False)
    return rep


def start_pooler(settings: SiteSettings, rep: Report, *, restart: bool) -> None:
    """Start the site's pooler beside its running server when db.toml asks for it ([pooler]
    enabled).  One already running is kept (`restart`: stopped and started anew, with the
    configuration of now)."""
    if not settings.db.pooler.enabled or settings.db.host:
        return
    from .db import admin
    from .pooler import Pooler

    pooler = Pooler(settings)
    st = pooler.status(ask=False)
    if st.running and not restart:
        rep.say(f"using the running pooler (pid {st.pid}) on port {pooler.port}")
        return
    for note in pooler.start(admin.pooler_login(settings)):
        rep.say(note)
    cfg = settings.db.pooler
    rep.say(f"started the pooler (PgBouncer, pid {pooler.status(ask=False).pid}) on port {pooler.port}: "
            f"at most {cfg.max_db_connections} server connections, {cfg.pool_size} for each login")


def stop_pooler(settings: SiteSettings, rep: Report) -> None:
    """Stop the site's pooler if it runs (whether or not db.toml still asks for one)."""
    if settings.db.host:
        return
    from .pooler import Pooler

    if Pooler(settings).stop():
        rep.say("stopped the pooler")


def _existing_server_answers(settings: SiteSettings) -> bool:
    """Does some PostgreSQL server (not necessarily ours) answer on localhost:port?"""
    answer = probe(host="127.0.0.1", port=settings.db.port, user=settings.db.user, dbname=settings.db.dbname)
    return answer in (Probe.READY, Probe.NO_DATABASE, Probe.NEEDS_PASSWORD)


def _bring_up_local(settings: SiteSettings, rep: Report) -> bool:
    """Init and start the site's own server as the switches allow.

    Returns False when, under DBUseExisting, a server that is not ours is
    already listening on the port and will be used instead.
    """
    cluster = Cluster(settings)
    db = settings.db
    st = cluster.status(tcp=False)
    if not st.running and db.use_existing and _existing_server_answers(settings):
        return False
    if not cluster.initialized:
        if not db.init:
            raise StateError(
                f"no database cluster in {cluster.data_dir} and DBInit is off",
                hint="run tractor-dbctl --init, or set init = true in db.toml",
            )
        cluster.init()
        rep.say(f"initialized a new database cluster in {cluster.data_dir}")
    if st.running:
        rep.say(f"using the running database server (pid {st.pid})")
    else:
        if not db.startup:
            raise StateError(
                "the database server is not running and DBStartup is off",
                hint="start it yourself, or set startup = true in db.toml",
            )
        for note in cluster.start():
            rep.say(note)
        rep.say(f"started the database server on port {cluster.port}")
    wait_reachable(cluster)
    return True


def require_local(settings: SiteSettings, doing: str) -> None:
    """Server control is for the site's own server, not one named by `host`."""
    if settings.db.host:
        raise StateError(
            f"cannot {doing}: the job database is on {settings.db.host}:{settings.db.port} (host in db.toml); "
            "tractor-dbctl controls only the site's own local server"
        )


def stop_for_engine(settings: SiteSettings) -> Report:
    rep = Report()
    if settings.db.host:
        rep.say(f"the job database is on {settings.db.host}: nothing to stop here")
        return rep
    cluster = Cluster(settings)
    if not settings.db.shutdown:
        rep.say("DBShutdown is off: leaving the database server running")
        return rep
    stop_pooler(settings, rep)
    if not cluster.status(tcp=False).running:
        rep.say("the database server is not running")
        return rep
    cluster.stop()
    rep.say("stopped the database server")
    return rep


def restore_check(settings: SiteSettings) -> dict:
    """Checks run against a staged backup by `--restore --verify`."""
    from .db import admin, migrate
    from .db.connection import connect, translated

    if not admin.database_exists(settings):
        raise StateError(f'the backup holds no job database named "{settings.db.dbname}"')
    with connect(settings, autocommit=True) as conn, translated(settings):
        p = migrate.plan(conn)  # refuses a newer schema, checksum mismatches
        counts = admin.row_counts(conn)
        return {"schema_version": p.current, "jidcounter": admin.job_counter(conn), "rows": counts}


@contextlib.contextmanager
def running_server(settings: SiteSettings) -> Iterator[bool]:
    """Make sure the server runs for the block; stop it afterwards if we started it."""
    cluster = Cluster(settings)
    started = False
    if not cluster.status(tcp=False).running:
        cluster.start()
        started = True
    try:
        wait_reachable(cluster)
        yield started
    finally:
        if started:
            try:
                cluster.stop()
            except TractorError:
                pass


def log_usage(cluster: Cluster) -> int:
    total = 0
    for p in [cluster.logfile, *Path(cluster.log_dir).glob("*")]:
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total
