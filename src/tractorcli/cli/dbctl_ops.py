"""The operations of tractor-dbctl: each parses nothing, calls the core, renders.

Kept apart from `dbctl.py` so that `--help` and completion import none of it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..cluster import Cluster
from ..db.probe import Probe
from ..errors import ExitStatus, StateError, UsageError
from .. import jobdb
from .common import Context


def run(ctx: Context, op: str, opts: dict) -> int:
    settings = ctx.settings
    ctx.detail(f"config directory: {settings.config_dir} "
               f"({', '.join(p.name for p in settings.files) or 'no files: built-in defaults'})")
    ctx.detail(f"data directory: {settings.db_data_dir}, port {settings.db.port}, "
               f"server account: {settings.db_os_user or 'this user'}")
    if op not in ("status", "log_filename", "get_log", "tail_log", "logs_usage", "show_params", "check_upgrade", "exec_sql"):
        jobdb.check_owner(settings)
    if op in _SERVER_CONTROL:
        jobdb.require_local(settings, "--" + op.replace("_", "-"))
    handler = globals()[f"op_{op}"]
    if op in _LOCKED:
        with jobdb.site_lock(settings):
            rv = handler(ctx, opts)
    else:
        rv = handler(ctx, opts)
    return int(rv or ExitStatus.OK)


_LOCKED = {"start", "stop", "start_for_engine", "stop_for_engine", "init", "build", "destroy", "upgrade",
           "backup", "restore", "set_job_counter", "update_params", "vacuum", "purge_jobs", "purge_archive",
           "clear_history", "purge_logs"}


# operations on the server's process and files: meaningless for a remote `host`
_SERVER_CONTROL = {"start", "stop", "init", "destroy", "backup", "restore", "vacuum", "purge_logs",
                   "log_filename", "get_log", "tail_log", "logs_usage"}


def _cluster(ctx: Context) -> Cluster:
    c = Cluster(ctx.settings)
    if ctx.verbose:
        ctx.detail(f"PostgreSQL binaries: {c.bindir}")
    return c


def _require_server(ctx: Context) -> None:
    """Our own server must run (a clearer message than a refused connection)."""
    db = ctx.settings.db
    if not (db.host or db.use_existing):
        _cluster(ctx).require_running()


def _db(ctx: Context, *, check_schema: bool = True):
    """The job database connection, after checking the server and the schema."""
    from ..db import migrate

    _require_server(ctx)
    conn = ctx.connection()
    if check_schema:
        migrate.check_compatible(conn)
    return conn


def _say(ctx: Context, report: jobdb.Report) -> None:
    for line in report.lines:
        ctx.info(line)


# --- server lifecycle -------------------------------------------------------------


def op_status(ctx: Context, opts: dict) -> int:
    if ctx.settings.db.host:
        return _remote_status(ctx, opts)
    c = _cluster(ctx)
    st = c.status()
    db = ctx.settings.db
    facts = {
        "running": st.running,
        "pid": st.pid,
        "data_dir": str(st.data_dir),
        "initialized": st.initialized,
        "port": st.port,
        "socket": str(c.socket_path),
        "socket_answer": st.probe.value,
        "localhost_answer": st.tcp_probe.value if st.tcp_probe else None,
        "database": db.dbname,
        "database_exists": st.probe is Probe.READY if st.running else None,
        "stale_pid": st.stale_pid,
    }
    pooler = _pooler_facts(ctx)
    if pooler is not None:
        facts["pooler"] = pooler
    if opts["as_json"]:
        ctx.out(json.dumps(facts, indent=2))
    else:
        if st.running:
            ctx.out(f"server: running (pid {st.pid})")
        elif st.stale_pid:
            ctx.out(f"server: not running (stale postmaster.pid names pid {st.stale_pid}; --start will clear it)")
        else:
            ctx.out("server: not running")
        ctx.out(f"data directory: {st.data_dir}" + ("" if st.initialized else " (no database cluster)"))
        if st.running:
            local = {Probe.READY: "reachable", Probe.NO_DATABASE: "reachable",
                     Probe.NEEDS_PASSWORD: "reachable, password required"}.get(
                st.tcp_probe, st.tcp_probe.value if st.tcp_probe else "not checked")
            ctx.out(f"port: {st.port} on localhost ({local})")
            ctx.out(f"socket: {c.socket_path} ({'reachable' if st.reachable else st.probe.value})")
            exists = {Probe.READY: "present", Probe.NO_DATABASE: "missing (create it with --build)"}.get(st.probe, "unknown")
            ctx.out(f'database "{db.dbname}": {exists}')
        else:
            ctx.out(f"port: {st.port}")
        if pooler is not None:
            ctx.out(_pooler_line(pooler))
    return ExitStatus.OK if st.running else ExitStatus.NOT_RUNNING


def _pooler_facts(ctx: Context) -> dict | None:
    """The pooler's state, when db.toml asks for one or one runs (None: neither)."""
    from ..pooler import Pooler

    p = Pooler(ctx.settings)
    st = p.status()
    if not st.enabled and not st.running:
        return None
    cfg = ctx.settings.db.pooler
    return {"enabled": st.enabled, "running": st.running, "pid": st.pid, "port": st.port,
            "answer": st.answer.value if st.answer else None, "stale_pid": st.stale_pid,
            "max_db_connections": cfg.max_db_connections, "pool_size": cfg.pool_size, "dir": str(p.dir)}


def _pooler_line(f: dict) -> str:
    if f["running"]:
        answer = {Probe.NEEDS_PASSWORD.value: "answers"}.get(f["answer"], f["answer"] or "not asked")
        line = (f"pooler: running (pid {f['pid']}) on port {f['port']} ({answer}), at most "
                f"{f['max_db_connections']} server connections")
        return line + ("" if f["enabled"] else "; no longer enabled in db.toml: --stop stops it")
    if f["stale_pid"]:
        return f"pooler: not running (stale pid file names pid {f['stale_pid']}) on port {f['port']}"
    return f"pooler: not running (enabled in db.toml, port {f['port']})"


def _remote_status(ctx: Context, opts: dict) -> int:
    from ..config import login_role
    from ..db.probe import probe_login

    db = ctx.settings.db
    answer = probe_login(host=db.host, port=db.port, user=login_role(ctx.settings), dbname=db.dbname,
                         password=db.password)
    facts = {"running": answer is not Probe.NO_RESPONSE, "host": db.host, "port": db.port,
             "answer": answer.value, "database": db.dbname,
             "database_exists": {Probe.READY: True, Probe.NO_DATABASE: False}.get(answer)}
    if db.pooler.enabled:  # this host's blades and clients go through the site's pooler
        pooled = probe_login(host=db.host, port=db.pooler_port, user=login_role(ctx.settings), dbname=db.dbname,
                             password=db.password)
        facts["pooler"] = {"port": db.pooler_port, "answer": pooled.value}
    if opts["as_json"]:
        ctx.out(json.dumps(facts, indent=2))
    else:
        ctx.out(f"server: {db.host}:{db.port} (host in db.toml) answers: {answer.value}")
        if "pooler" in facts:
            ctx.out(f"pooler: {db.host}:{db.pooler_port} ([pooler] in db.toml) answers: {facts['pooler']['answer']}")
    return ExitStatus.OK if facts["running"] else ExitStatus.NOT_RUNNING


def op_start(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    for note in c.start():
        ctx.info(note)
    jobdb.wait_reachable(c)
    ctx.info(f"database server started (pid {c.status(tcp=False).pid}) on port {c.port}, data directory {c.data_dir}")
    rep = jobdb.Report()
    jobdb.start_pooler(ctx.settings, rep, restart=True)
    _say(ctx, rep)


def op_stop(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    rep = jobdb.Report()
    jobdb.stop_pooler(ctx.settings, rep)  # first: its clients' transactions end on the server
    _say(ctx, rep)
    c.stop()
    ctx.info("database server stopped")


def op_start_for_engine(ctx: Context, opts: dict) -> None:
    _say(ctx, jobdb.start_for_engine(ctx.settings, auto_upgrade=not opts["no_auto_upgrade"]))
    ctx.info("the job database is ready for the engine")


def op_stop_for_engine(ctx: Context, opts: dict) -> None:
    _say(ctx, jobdb.stop_for_engine(ctx.settings))


def op_init(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    c.require_stopped("initialize a data directory")
    c.init()
    ctx.info(f"initialized a new database cluster in {c.data_dir}")


def op_build(ctx: Context, opts: dict) -> None:
    from ..db import admin

    _require_server(ctx)
    applied = admin.build(ctx.settings)
    ctx.info(f'created the job database "{ctx.settings.db.dbname}" with schema version {applied[-1].version}')


def op_destroy(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    c.require_stopped("destroy the job database")
    if not c.initialized and c.is_empty():
        ctx.info(f"nothing to destroy in {c.data_dir}")
        return
    if not opts["yes"]:
        if not sys.stdin.isatty():
            raise UsageError("--destroy deletes every job in the site; confirm with --yes when not at a terminal")
        if not click.confirm(f"Delete the job database in {c.data_dir}, with every job in it?", default=False, err=True):
            raise StateError("not destroyed")
    c.destroy()
    ctx.info(f"destroyed the job database in {c.data_dir}")


# --- schema --------------------------------------------------------------------------


def op_upgrade(ctx: Context, opts: dict) -> None:
    from ..db import migrate

    conn = _db(ctx, check_schema=False)
    before = migrate.plan(conn)
    applied = migrate.upgrade(conn)
    for m in applied:
        ctx.info(f"applied migration {m.version:04d}_{m.name}")
    for f in before.functions:
        ctx.info(f"applied function file {f.name}")
    if before.up_to_date:
        ctx.info(f"the schema is up to date (version {before.current})")


def op_check_upgrade(ctx: Context, opts: dict) -> int:
    from ..db import migrate

    p = migrate.plan(_db(ctx, check_schema=False))
    if opts["as_json"]:
        ctx.out(json.dumps({"current": p.current, "target": p.target,
                            "pending": [f"{m.version:04d}_{m.name}" for m in p.pending],
                            "functions": [f"functions/{f.name}" for f in p.functions]}, indent=2))
    else:
        for m in p.pending:
            ctx.out(f"{m.version:04d}_{m.name}")
        for f in p.functions:
            ctx.out(f"functions/{f.name}")
        if p.up_to_date:
            ctx.info(f"schema version {p.current} is up to date")
        else:
            ctx.info(f"schema version {p.current}; {len(p.pending)} migration(s) and "
                     f"{len(p.functions)} function file(s) pending")
    return ExitStatus.OK


# --- backup and restore ------------------------------------------------------------


def op_backup(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    t0 = time.monotonic()
    info = c.backup(Path(opts["backup"]))
    secs = time.monotonic() - t0
    ctx.info(f"{info['kind']} backup written to {opts['backup']} ({info['bytes'] / 1e6:.1f} MB in {secs:.1f} s)")


def op_restore(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    info = c.restore(Path(opts["restore"]), verify=opts["verify"], verify_hook=jobdb.restore_check)
    ctx.info(f"restored {info.get('kind', 'a')} backup from {opts['restore']} into {c.data_dir}")
    v = info.get("verified")
    if v:
        rows = v["rows"]
        ctx.info(f"verified: schema version {v['schema_version']}, job counter {v['jidcounter']}, "
                 f"{rows['jobs']} jobs, {rows['tasks']} tasks")


# --- parameters and maintenance --------------------------------------------------------


def op_set_job_counter(ctx: Context, opts: dict) -> None:
    from ..db import admin

    n = admin.set_job_counter(_db(ctx), opts["set_job_counter"])
    ctx.info(f"The job counter will continue from {n}: the next job gets jid {n + 1}.")


def op_show_params(ctx: Context, opts: dict) -> None:
    from ..db import admin

    params = admin.show_params(_db(ctx))
    if opts["as_json"]:
        ctx.out(json.dumps(dict(params), indent=2))
    else:
        for name, value in params:
            ctx.out(f"{name} = {value}")


def op_check(ctx: Context, opts: dict) -> int:
    from ..db.audit import audit, describe, left

    rows = audit(_db(ctx), repair=opts["repair"])
    if opts["as_json"]:
        ctx.out(json.dumps(rows, indent=2))
    else:
        for row in rows:
            ctx.out(describe(row))
    remaining = left(rows)
    if not rows:
        ctx.info("the job database keeps every invariant")
    elif remaining:
        ctx.info(f"{len(rows)} violation(s), {len(rows) - remaining} repaired")
    else:
        ctx.info(f"{len(rows)} violation(s), all repaired")
    return int(ExitStatus.INVARIANT) if remaining else 0


def op_update_params(ctx: Context, opts: dict) -> None:
    from ..db import admin

    value = "1" if ctx.settings.db.archiving else "0"
    admin.set_param(_db(ctx), "archiving", value)
    ctx.info(f"archiving = {value}")


def op_exec_sql(ctx: Context, opts: dict) -> None:
    from ..db import admin

    cols, rows, status = admin.exec_sql(_db(ctx, check_schema=False), opts["exec_sql"])
    if opts["as_json"]:
        ctx.out(json.dumps([dict(zip(cols, r)) for r in rows], indent=2, default=str))
        return
    for r in rows:
        ctx.out("|".join("" if v is None else str(v) for v in r))
    if not cols:
        ctx.info(status)


def op_vacuum(ctx: Context, opts: dict) -> None:
    from ..db import admin
    from ..db.connection import connect, translated

    with jobdb.running_server(ctx.settings) as started:
        with connect(ctx.settings, autocommit=True) as conn, translated(ctx.settings):
            admin.vacuum(conn)
    ctx.info("vacuumed the job database" + (" (the server was started for it and stopped again)" if started else ""))


def op_purge_jobs(ctx: Context, opts: dict) -> None:
    from ..db import admin

    admin.purge_jobs(_db(ctx), reset_counter=opts["reset_job_counter"])
    ctx.info("removed all jobs" + ("; job ids start again at 1" if opts["reset_job_counter"] else ""))


def op_purge_archive(ctx: Context, opts: dict) -> None:
    from ..db import admin

    before = admin.parse_year_month(opts["purge_archive"])
    n = admin.purge_archive_to(_db(ctx), before)
    ctx.info(f"removed {n} archived job(s) deleted before {before:%Y-%m-%d}")


def op_clear_history(ctx: Context, opts: dict) -> None:
    from ..db import admin

    secs = admin.parse_duration(opts["clear_history"])
    n = admin.clear_history(_db(ctx), secs)
    ctx.info(f"removed {n} finished or deleted job(s) older than {opts['clear_history']}")


# --- logs ----------------------------------------------------------------------------


def op_log_filename(ctx: Context, opts: dict) -> None:
    ctx.out(str(_cluster(ctx).log_file(opts["log_day"])))


def op_get_log(ctx: Context, opts: dict) -> None:
    path = _cluster(ctx).log_file(opts["log_day"])
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


def op_tail_log(ctx: Context, opts: dict) -> None:
    c = _cluster(ctx)
    path = c.log_file(opts["log_day"])
    with open(path, "rb") as f:
        lines = f.readlines()[-20:]
        sys.stdout.buffer.write(b"".join(lines))
        sys.stdout.flush()
        while True:  # follow, like tail -f, until Ctrl-C
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.25)


def op_logs_usage(ctx: Context, opts: dict) -> None:
    n = jobdb.log_usage(_cluster(ctx))
    ctx.out(f"{n / 1e6:.1f} MB")


def op_purge_logs(ctx: Context, opts: dict) -> None:
    n = _cluster(ctx).purge_logs()
    ctx.info(f"deleted {n} server log file(s)")


# --- identities ---------------------------------------------------------------------


def _password(opts: dict) -> str | None:
    """The first line of --password-file ('-': standard input), or None (the socket only)."""
    from ..errors import from_os_error

    source = opts["password_file"]
    if source is None:
        return None
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise from_os_error(exc, "reading --password-file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--password-file {source}: not UTF-8 text") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise UsageError(f"--password-file {source}: the first line (the password) is empty")
    return password


def _add_login(ctx: Context, opts: dict, name: str, kind: str) -> None:
    from ..db import roles

    password = _password(opts)
    created = roles.add_login(_db(ctx), name, kind, password, ctx.settings.db.user)
    what = "user" if kind == "person" else "blade login"
    how = "over the network with its password, and " if password else ""
    ctx.info(f"{'added' if created else 'updated'} {what} {name}: may log in {how}on the server's socket"
             + (" as that local account" if kind == "person" else ""))


def op_add_user(ctx: Context, opts: dict) -> None:
    _add_login(ctx, opts, opts["add_user"], "person")


def op_add_blade_login(ctx: Context, opts: dict) -> None:
    _add_login(ctx, opts, opts["add_blade_login"], "blade")


def op_remove_user(ctx: Context, opts: dict) -> None:
    from ..db import roles

    roles.remove_login(_db(ctx), opts["remove_user"])
    ctx.info(f"removed the login {opts['remove_user']} (its jobs stay)")


def op_list_users(ctx: Context, opts: dict) -> None:
    from ..db import roles

    logins = roles.list_logins(_db(ctx))
    if opts["as_json"]:
        ctx.out(json.dumps([{"name": u.name, "kind": u.kind, "password": u.password} for u in logins], indent=2))
        return
    width = max([len(u.name) for u in logins] + [4])
    ctx.out(f"{'name'.ljust(width)} kind   password")
    for u in logins:
        ctx.out(f"{u.name.ljust(width)} {u.kind.ljust(6)} {'yes' if u.password else 'no'}")
