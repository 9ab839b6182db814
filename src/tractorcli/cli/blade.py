"""tractor-blade: the worker on each render host (claims, launches and reports commands)."""

from __future__ import annotations

import click

from .common import (
    CONTEXT_SETTINGS,
    get_context,
    make_main,
    site_options,
    version_option,
)

PROG = "tractor-blade"

EXAMPLES = """\
\b
Examples:
  tractor-blade                               serve this host with the profile blade.toml picks for it
  tractor-blade --slots 4 --name render-07    four commands at a time, registered as render-07
  tractor-blade --profile gpu                 use the profile named gpu, whatever the host
  tractor-blade --exit-when-idle              run what is ready, exit when nothing is left
  tractor-blade --on-stop handback            on SIGTERM kill running commands and requeue them
  tractor-blade --explain 'PixarRender && @.mem > 8'    would this blade run such commands?

\b
The blade registers with the job database, claims ready commands whose
service keys it matches (up to its slots), runs them with Tractor's
substitutions (%j %t %c %h %n %r %R %D(...)) and TR_ENV_* variables,
appends their output to the task logs (<data dir>/cmd-logs/USER/JJID/TTID.log
by default), reports progress (TR_PROGRESS) and exit codes, and heartbeats.
Exit codes reported for commands: the process's own; minus the signal
number when killed by one; 20000+errno when it cannot start (20002: not
found); 21001 killed after -maxrunsecs; 21002 done sooner than -minrunsecs;
TR_EXIT_STATUS n overrides. SIGTERM or Ctrl-C: let running commands finish
(--on-stop wait) or hand them back (--on-stop handback); a second signal
always hands back.

\b
Exit status: 0 stopped cleanly (or --explain: the blade matches); 1 --explain:
the blade does not match; 3 bad configuration (no profile matches this
host, bad blade.toml); 6 database unreachable; 9 schema mismatch; 11 bad
--explain expression (with its column).
"""


@click.command(PROG, context_settings=CONTEXT_SETTINGS, epilog=EXAMPLES, short_help="Run commands on this host.")
@click.option("--engine", metavar="HOST[:PORT]", envvar="TRACTOR_ENGINE",
              help="The job database server to use (else the site's own; also TRACTOR_ENGINE). "
                   "tractor-engine and ports 80, 443, 5600, 8080 mean the site's own host and port.")
@click.option("--name", metavar="NAME", help="Blade name (default: the host name); also a service key.")
@click.option("--slots", type=click.IntRange(0, 100_000), metavar="N",
              help="Commands run at once (default: the profile's; 0: one per CPU).")
@click.option("--profile", "profile_name", metavar="NAME", help="Use this blade.toml profile instead of the first that matches.")
@click.option("--heartbeat", type=click.FloatRange(0.05, 600), default=10.0, show_default=True, metavar="SECS",
              help="Seconds between heartbeats (lease renewals, metrics, kill checks; at most a third of "
                   "BladeLeaseSecs). Kills and reloads are heard at once besides.")
@click.option("--idle-heartbeat", type=click.FloatRange(0.05, 600), default=15.0, show_default=True,
              metavar="SECS",
              help="Seconds between heartbeats while nothing runs here (at most half of BladeLeaseSecs: an idle "
                   "blade holds no lease); with BladeWakeups = \"engine\" each one also asks whether work is "
                   "queued for this blade, and it polls when so.")
@click.option("--report-gather", type=click.FloatRange(0, 10), default=0.002, show_default=True, metavar="SECS",
              help="After a command ends, wait up to SECS for this blade's other running commands to end as "
                   "well, so that one report (and one claim) carries them all: fewer round trips for very short "
                   "commands. 0 reports each end at once.")
@click.option("--on-stop", type=click.Choice(["wait", "handback"]), default="wait", show_default=True,
              help="On SIGTERM/SIGINT: let running commands finish, or kill them and requeue them.")
@click.option("--exit-when-idle", "--once", "exit_when_idle", is_flag=True,
              help="Exit when no command is ready for this blade and none is running.")
@click.option("--max-commands", type=click.IntRange(min=1), metavar="N",
              help="Launch at most N commands, then exit when they have finished.")
@click.option("--log-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write command logs to DIR/USER/JJID/TTID.log instead of the profile's location.")
@click.option("--explain", metavar="EXPR",
              help="Say whether and why this blade matches service expression EXPR, and exit (no database needed).")
@site_options
@version_option(PROG)
def command(engine: str | None, name: str | None, slots: int | None, profile_name: str | None, heartbeat: float,
            idle_heartbeat: float, report_gather: float, on_stop: str, exit_when_idle: bool,
            max_commands: int | None, log_dir: str | None, explain: str | None) -> int:
    """Run the blade: claim ready commands this host may run, launch them, report their ends.

    Runs until stopped (SIGTERM, Ctrl-C) or, with --exit-when-idle or
    --max-commands, until its work is done.
    """
    import time
    from pathlib import Path

    from ..blade.worker import BladeOptions
    from .spool_ops import _settings

    ctx = get_context()
    options = BladeOptions(name=name, slots=slots, profile=profile_name, heartbeat=heartbeat,
                           idle_heartbeat=idle_heartbeat, report_gather=report_gather,
                           poll=min(1.5, max(heartbeat, 0.2)), on_stop=on_stop, exit_when_idle=exit_when_idle,
                           max_commands=max_commands, log_dir=Path(log_dir) if log_dir else None)
    settings = _settings(ctx, engine)
    if explain is not None:
        from ..blade.worker import explain as explain_blade

        result, ident, facts = explain_blade(settings, options, explain)
        ctx.detail(f"blade {ident.name}: profile {ident.profile.name}; keys: {', '.join(sorted(facts.keys))}")
        ctx.detail("metrics: " + ", ".join(f"@.{k} = {v:.3g}" for k, v in sorted(facts.metrics.items())))
        for line in result.lines:
            ctx.out(line)
        return 0 if result.matches else 1

    from ..blade.worker import run_blade

    def say(text: str) -> None:
        ctx.info(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {PROG}: {text}")

    def detail(text: str) -> None:
        ctx.detail(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {PROG}: {text}")

    return run_blade(settings, options, say=say, detail=detail)


main = make_main(command, PROG)

if __name__ == "__main__":  # pragma: no cover
    main()
