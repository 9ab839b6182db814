"""tractor-engine: run the site (database, housekeeping, optionally a local blade)."""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS, get_context, make_main, site_options, version_option

PROG = "tractor-engine"

EXAMPLES = """\
\b
Examples:
  tractor-engine                      bring the site up and keep it running (Ctrl-C stops it)
  tractor-engine --blades 4           ... with a local blade of 4 slots: a one-machine farm
  tractor-engine --no-auto-upgrade    refuse to start on an older schema instead of upgrading it
  tractor-engine --keep-db            leave the database server running on exit
  tractor-engine --blades 2 --spool examples/frames.alf
                                      run one job start to end on this machine, then stop

\b
The engine brings the job database up (as tractor-dbctl --start-for-engine),
requeues the commands of blades that stopped heartbeating, runs the
postscripts of jobs that ended, and on exit stops its local blade (which lets
running commands finish) and the database, unless DBShutdown is off.
Exit status: 0 after a clean stop (with --spool: tractor-spool's status, 12
if the job ended with errors); 3 bad configuration; 5 another engine runs
this site; 6 the database cannot be reached; 9 schema newer than this version.
"""


@click.command(PROG, context_settings=CONTEXT_SETTINGS, epilog=EXAMPLES, short_help="Run the site daemon.")
@click.option("--blades", type=click.IntRange(0, 1024), default=0, show_default=True, metavar="N",
              help="Run a local blade with N slots (0: none).")
@click.option("--no-auto-upgrade", is_flag=True, help="Do not upgrade an older database schema.")
@click.option("--keep-db", is_flag=True, help="Leave the database server running on exit (as DBShutdown off).")
@click.option("--interval", type=click.FloatRange(0.1, 600), default=2.0, show_default=True, metavar="SECS",
              help="Seconds between housekeeping passes.")
@click.option("--spool", "spool_files", multiple=True, metavar="JOBFILE", type=click.Path(dir_okay=False),
              help="Once up, spool JOBFILE (repeatable) and follow it; stop when it has ended, "
                   "with tractor-spool's exit status.")
@click.option("--blade-option", "blade_args", multiple=True, metavar="OPT",
              help="Pass OPT to the local blade (repeatable), e.g. --blade-option=--heartbeat=1.")
@site_options
@version_option(PROG)
def command(blades: int, no_auto_upgrade: bool, keep_db: bool, interval: float, spool_files: tuple[str, ...],
            blade_args: tuple[str, ...], **_site) -> int:
    """Run the site daemon: the job database, housekeeping and, with --blades, a local blade."""
    from ..engine import EngineOptions, run_engine

    ctx = get_context()
    settings = ctx.settings
    options = EngineOptions(blades=blades, auto_upgrade=not no_auto_upgrade, interval=interval,
                            blade_args=tuple(blade_args), spool=tuple(spool_files),
                            stop_database=settings.db.shutdown and not keep_db)
    return run_engine(settings, options, say=lambda text: ctx.info(f"{PROG}: {text}"))


main = make_main(command, PROG)
