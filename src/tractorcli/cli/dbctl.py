"""tractor-dbctl: run the site's own PostgreSQL job database.

Options have Tractor's names.  Each run performs exactly one operation; a
few options modify one (`--no-auto-upgrade`, `--reset-job-counter`,
`--verify`, `--yes`, `--log-day`, `--json`).
"""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS, get_context, make_main, site_options, version_option

PROG = "tractor-dbctl"

EXAMPLES = """\
\b
Examples:
  tractor-dbctl --start-for-engine          bring up the site's database (init, start, build, upgrade)
  tractor-dbctl --status                    is the server running, reachable, is the database there?
  tractor-dbctl --backup /backups/jobs.tgz  back up (online if the server runs, else the data directory)
  tractor-dbctl --stop && tractor-dbctl --destroy --yes
  tractor-dbctl --restore /backups/jobs.tgz --verify
  tractor-dbctl --show-params               job counter, schema version, ...
  tractor-dbctl --check                     is the job database keeping its invariants?
  tractor-dbctl --set-job-counter 5000      next job gets jid 5001
  tractor-dbctl --clear-history 3mo         forget finished and deleted jobs older than 3 months
  tractor-dbctl --configdir /site/config --upgrade
  tractor-dbctl --add-user ann              ann (a local account) may use tq and tractor-spool here
  tractor-dbctl --add-user ann --password-file -   ... and from other hosts, with the password on stdin

The pooler: with [pooler] enabled = true in db.toml, --start and
--start-for-engine also start PgBouncer (transaction mode) beside the server,
as the server's account, with its files in pgbouncer/ beside the database
cluster, and --stop stops it. Blades, tq, tractor-spool and pipeline code that
reach the site over TCP (host in their db.toml, with [pooler] enabled there
too) connect through it with their own login and password; it holds at most
max_db_connections server connections (default 100), and at most pool_size
(default 20) for one login: every login has a pool of its own, so a farm does
best with one blade login shared by its blades. At the cap, a login that waits
takes the most idle connection of another login's pool (closed, and opened
anew as itself: a new server process each time), and connections idle for
server_idle_timeout seconds (default 10) are closed. The site's
role, LISTEN sessions (a blade's wake-ups, --follow), tractor-engine and
tractor-dbctl go to the server directly (the server's max_connections is
then max_db_connections + 100, room for them; with BladeWakeups = "engine" in
tractor.toml blades hold no LISTEN session, and a farm's blades hold no more
than max_db_connections). Keys: enabled, port (default: the
database's port + 1), listen_addresses (default: the server's),
pool_size, max_db_connections, max_client_conn (5000),
server_idle_timeout, program (default: pgbouncer on PATH, else
/usr/sbin/pgbouncer).

\b
Exit status: 0 success; 1 unexpected error; 2 bad command line; 3 bad
configuration; 4 server not running; 5 refused in the current state; 6 database
unreachable; 7 not found; 8 permission denied; 9 schema mismatch; 10 disk full
or read-only; 11 bad input; 13 --check found a violation; 130 interrupted.
"""

# (flag name, python name, takes value, help). Order = precedence, as in Tractor.
OPERATIONS: list[tuple[str, str, str | None, str]] = [
    ("--status", "status", None, "Report whether the server runs on the data directory, answers on its port, and has the job database; and the pooler's state when db.toml has one."),
    ("--start", "start", None, "Start the database server, and the pooler when db.toml enables it ([pooler])."),
    ("--stop", "stop", None, "Stop the pooler if it runs, then the database server (fast shutdown, then immediate if needed)."),
    ("--start-for-engine", "start_for_engine", None, "Do what the engine needs: init if missing (DBInit), start (DBStartup), create the database, upgrade the schema (DBAutoUpgrade)."),
    ("--stop-for-engine", "stop_for_engine", None, "Stop the server if DBShutdown is on."),
    ("--init", "init", None, "Create a new, empty database cluster in the data directory (server stopped)."),
    ("--build", "build", None, "Create the job database and its schema (server running, database absent)."),
    ("--destroy", "destroy", None, "Delete the database cluster (server stopped); asks for confirmation unless --yes."),
    ("--upgrade", "upgrade", None, "Apply pending schema migrations, each in its own transaction, then the changed function files."),
    ("--check-upgrade", "check_upgrade", None, "List the schema migrations and function files an upgrade would apply."),
    ("--backup", "backup", "FILE", "Write a compressed backup to FILE: online (pg_basebackup) while the server runs, else a tarball of the data directory."),
    ("--restore", "restore", "FILE", "Restore a backup into an empty data directory (server stopped)."),
    ("--set-job-counter", "set_job_counter", "N", "Continue job ids after N (the next job gets N+1); N must exceed the current counter."),
    ("--show-params", "show_params", None, "Print the database parameters as 'name = value'."),
    ("--check", "check", None, "Check the job database's invariants (job counters, active commands, task order, the ready queue, blades' slots, orphan rows): each violation on a line with its ids; exit 13 if there is one. With --repair, fix what can be derived (counters, queue rows, slots) and say so."),
    ("--update-params", "update_params", None, "Store configuration values (DBArchiving) in the database."),
    ("--exec-sql", "exec_sql", "SQL", "Run SQL and print the rows, columns separated by '|'."),
    ("--vacuum", "vacuum", None, "Compact the database (VACUUM FULL); starts and stops the server if it is not running."),
    ("--purge-jobs", "purge_jobs", None, "Remove all jobs, live and archived."),
    ("--purge-archive-to-year-month", "purge_archive", "YY-MM", "Remove archived (deleted) jobs deleted up to the end of that month (YY-MM or YYYY-MM)."),
    ("--clear-history", "clear_history", "RETENTION", "Remove finished and deleted jobs older than RETENTION (30m, 6h, 3d, 2w, 3mo, 1yr; a bare number is seconds)."),
    ("--add-user", "add_user", "NAME", "Let the person NAME in: on the server's socket as that local account; with --password-file also over the network. Again: changes the password."),
    ("--add-blade-login", "add_blade_login", "NAME", "A login for blades (render hosts) named NAME, with --password-file for the network."),
    ("--remove-user", "remove_user", "NAME", "Take away the person's or blade's login NAME (their jobs stay)."),
    ("--list-users", "list_users", None, "List the people's and blades' logins."),
    ("--log-filename", "log_filename", None, "Print the name of the current server log file."),
    ("--get-log", "get_log", None, "Print the server log (today's, or --log-day's)."),
    ("--tail-log", "tail_log", None, "Print the end of the server log and follow it (Ctrl-C stops)."),
    ("--logs-usage", "logs_usage", None, "Print the disk space used by the server logs."),
    ("--purge-logs", "purge_logs", None, "Delete the server logs (server stopped)."),
]


# modifier option -> (its flag, the operations it modifies)
MODIFIERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "no_auto_upgrade": ("--no-auto-upgrade", ("start_for_engine",)),
    "reset_job_counter": ("--reset-job-counter", ("purge_jobs",)),
    "verify": ("--verify", ("restore",)),
    "repair": ("--repair", ("check",)),
    "log_day": ("--log-day", ("get_log", "tail_log", "log_filename")),
    "password_file": ("--password-file", ("add_user", "add_blade_login")),
}


def _operation_options(f):
    for flag, name, metavar, help_ in reversed(OPERATIONS):
        if metavar is None:
            f = click.option(flag, name, is_flag=True, help=help_)(f)
        elif metavar == "N":
            f = click.option(flag, name, type=int, metavar=metavar, help=help_)(f)
        elif metavar == "FILE":
            f = click.option(flag, name, type=click.Path(dir_okay=False), metavar=metavar, help=help_)(f)
        else:
            f = click.option(flag, name, metavar=metavar, help=help_)(f)
    return f


@click.command(PROG, context_settings=CONTEXT_SETTINGS, epilog=EXAMPLES,
               short_help="Run the site's PostgreSQL job database.")
@_operation_options
@click.option("--no-auto-upgrade", is_flag=True, help="With --start-for-engine: do not upgrade the schema.")
@click.option("--reset-job-counter", is_flag=True, help="With --purge-jobs: job ids start again at 1.")
@click.option("--verify", is_flag=True, help="With --restore: start a private server on the backup and check it before restoring.")
@click.option("--repair", is_flag=True, help="With --check: fix what can be derived from other rows (job counters, ready-queue rows, blades' slots in use).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (--destroy).")
@click.option("--log-day", metavar="DAY", help="With --get-log, --tail-log or --log-filename: the log of that weekday (Mon..Sun).")
@click.option("--password-file", metavar="FILE", help="With --add-user or --add-blade-login: the password is the first line of FILE ('-': standard input).")
@click.option("--json", "as_json", is_flag=True, help="Print --status, --show-params, --check, --check-upgrade, --list-users and --exec-sql results as JSON.")
@site_options
@version_option(PROG)
def command(**opts) -> int:
    """Run the site's own PostgreSQL job database: start, stop, status, backup,
    restore, destroy, upgrade, job counter and parameters.

    Each run performs one operation. The site is found through --configdir
    (else $TRACTOR_CONFIGDIR, else ~/.config/tractor); with no configuration
    at all a working local site is used (port 9876, data in the user's data
    directory, or /var/spool/tractor for root). Run as root, the server runs
    as the unprivileged account os_user (default postgres).
    """
    ctx = get_context()
    chosen = [(flag, name) for flag, name, metavar, _ in OPERATIONS
              if (opts[name] is not None if metavar else opts[name])]
    ops = {name for _, name in chosen}
    for name, (flag, goes_with) in MODIFIERS.items():
        if opts[name] and not ops & set(goes_with):
            with_flags = " or ".join("--" + g.replace("_", "-") for g in goes_with)
            raise click.UsageError(f"{flag} goes with {with_flags}")
    if not chosen:
        raise click.UsageError("No operations were specified.")
    if len(chosen) > 1:
        raise click.UsageError(f"give one operation at a time (got {', '.join(f for f, _ in chosen)})")

    from . import dbctl_ops

    return dbctl_ops.run(ctx, chosen[0][1], opts)


main = make_main(command, PROG)

if __name__ == "__main__":  # pragma: no cover
    main()
