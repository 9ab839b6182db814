"""tractor-spool: submit jobs (Alfred or JSON scripts, or built from a command line).

Options have Tractor's names.  As in Tractor, option parsing stops at the
first positional argument, so `-c` must be the last option: everything
after it is the command to run.
"""

from __future__ import annotations

import click

from .common import CONTEXT_SETTINGS, get_context, make_main, site_options, version_option

PROG = "tractor-spool"

EXAMPLES = """\
\b
Examples:
  tractor-spool frames.alf                       spool a job script
  tractor-spool -J job.json                      spool a Tractor JSON job
  tractor-spool --priority 200 --paused a.alf b.alf
  tractor-spool --range 1-100 -c prman -Progress frame.RANGE.rib
  tractor-spool --title "sleepers" --itervalues 5,10,20 -c sleep ITER
  tractor-spool -C ls -l /tmp                    a local Cmd on this host's blade
  tractor-spool --ribs a.rib b.rib               one prman task per RIB
  tractor-spool --review frames.alf              print the parsed job as Alfred, don't spool
  tractor-spool --wait frames.alf                spool, then follow the job to its end
  tractor-spool --jdelete 1234                   take job 1234 out of the queue

\b
On success prints "OK job script accepted, jid: N" (or, with --status-json,
{"rc": 0, "msg": ..., "jid": N}). Exit status: 0 success; 2 bad command line;
3 bad configuration; 6 database unreachable; 7 job file not found; 9 schema
mismatch; 11 invalid job script (file:line:column: message); 12 the job
followed with --wait ended with errors.
"""


@click.command(PROG, context_settings={**CONTEXT_SETTINGS, "allow_interspersed_args": False}, epilog=EXAMPLES,
               short_help="Submit jobs to the queue.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[JOBFILE...|COMMAND ARGS...]")
@click.option("--engine", metavar="HOST[:PORT]", envvar="TRACTOR_ENGINE",
              help="The job database server to use (else the site's own; also TRACTOR_ENGINE). "
                   "tractor-engine and ports 80, 443, 5600, 8080 mean the site's own host and port.")
@click.option("--user", metavar="LOGIN", help="Job owner (default: your login).")
@click.option("--hname", metavar="HOST", help="Spooling host name recorded with the job (default: this host).")
@click.option("--haddr", metavar="ADDR", help="Address of the spooling host (recorded with the job).")
@click.option("--jobcwd", metavar="DIR", help="Directory commands start in (default: the current directory).")
@click.option("-J", "--in-json", "in_json", is_flag=True, help="The job files are Tractor JSON.")
@click.option("-A", "--in-alfred", "in_alfred", is_flag=True, help="The job files are Alfred scripts (the default).")
@click.option("--strict", is_flag=True, help="Refuse unknown options and non-standard forms instead of warning.")
@click.option("--priority", type=float, metavar="FLOAT", help="Job priority (overrides the script's).")
@click.option("--projects", metavar="LIST", help="Project affiliations, e.g. 'TheFilm lighting'.")
@click.option("--tier", metavar="NAME", help="Dispatching tier (admin, rush, default, batch).")
@click.option("--paused", is_flag=True, help="Spool the job paused.")
@click.option("--svckey", "--service", "svckey", metavar="KEY",
              help="Job-wide service key expression ANDed with every command's; with -c/--rib the only key.")
@click.option("--cmdsvckey", "--cmdservice", "cmdsvckey", metavar="KEY",
              help="With -c/-C: service key of each generated command (RANGE/ITER substituted).")
@click.option("--remotecleankey", metavar="KEY",
              help="Run legacy -whendone/-whenerror commands as RemoteCmds needing service KEY.")
@click.option("--envkey", metavar="KEY", help="With -c/-C/--rib: environment key of the generated job.")
@click.option("--title", metavar="TEXT", help="Title of a generated job.")
@click.option("--aftertime", metavar="TIME", help="Do not start before TIME: 'MM DD HH:MM', 'HH:MM' or 'YYYY-MM-DD HH:MM'.")
@click.option("--afterjid", metavar="JID[,JID]", help="Start only after these jobs are done.")
@click.option("--maxactive", type=click.IntRange(min=0), metavar="N", help="At most N active commands (0: no cap).")
@click.option("-c", "--command", "command_mode", is_flag=True,
              help="Spool a job running the command that follows (must be the last option).")
@click.option("-C", "local_command", is_flag=True, help="Like -c, but a local Cmd on this host's blade.")
@click.option("--range", "range_spec", metavar="SPEC", help="With -c: one task per number (1-10, 1-4,7,9); RANGE replaced.")
@click.option("--itervalues", metavar="A,B,C", help="With -c: one task per value; ITER replaced.")
@click.option("--iterfile", metavar="FILE", type=click.Path(dir_okay=False),
              help="With -c: one task per non-blank line of FILE; ITER replaced.")
@click.option("--task-title", metavar="PATTERN", help="With --range/--iter*: task titles (RANGE/ITER replaced).")
@click.option("--range-formatting", type=click.Choice(["both", "sfmt", "text"]), default="both", show_default=True,
              help="Replace {RANGE:fmt} fields (sfmt), the plain word (text), or both.")
@click.option("-T", "--runtime-bounds", metavar="[MIN,]MAX", help="With -c: elapsed seconds bounds (MAX 0: none).")
@click.option("--limit-tags", metavar="TAGS", help="With -c: limit tags of each command (RANGE/ITER replaced).")
@click.option("-r", "--ribs", is_flag=True, help="The files are RIBs: one prman task each.")
@click.option("-R", "--rib", is_flag=True, help="The files are RIBs: one prman over all of them.")
@click.option("--nrm", is_flag=True, help="RIB jobs use a local netrender Cmd instead of a prman RemoteCmd.")
@click.option("-o", "--review", "--print-alfscript", "review", is_flag=True,
              help="Print the job as an Alfred script and exit without spooling.")
@click.option("--no-spool", is_flag=True, help="Same as --review.")
@click.option("-O", "--print-jobjson", "--review-debug", "print_json", is_flag=True,
              help="Print the job as Tractor JSON and exit without spooling.")
@click.option("--parse-debug", is_flag=True, help="Only parse and report errors (and warnings); do not spool.")
@click.option("--status-json", is_flag=True, help='Print the result as JSON: {"rc": 0, "msg": ..., "jid": N}.')
@click.option("--status-plain", is_flag=True, help="Print the result as text (the default).")
@click.option("--spool-wait", is_flag=True,
              help="Return when the job is fully in the queue (always so here: spooling is one transaction).")
@click.option("--wait", is_flag=True,
              help="Follow the job to its end with a progress display; exit 12 if it ends with errors.")
@click.option("--jdelete", "--jretire", "jdelete", type=int, metavar="JID", help="Take job JID out of the queue.")
@site_options
@version_option(PROG)
def command(**opts) -> int:
    """Submit jobs to the queue: Alfred (.alf) or Tractor JSON job scripts, or a job
    built from a command line with -c/-C, --range and friends, or RIB files.

    Several job files are spooled one after another; the first failure stops.
    Each job lands in the database in one transaction, all of it or none.
    """
    from . import spool_ops

    return spool_ops.run(get_context(), _options_after_files(opts))


def _options_after_files(opts: dict) -> dict:
    """Options written after the job files (`tractor-spool job.alf --paused`) count as if written
    before them.  (Parsing stops at the first file so that -c takes the rest as the command;
    with files, the rest is parsed again, options anywhere, before anything is spooled.)"""
    args = opts["args"]
    if opts["command_mode"] or opts["local_command"] or not any(a.startswith("-") and a != "-" for a in args):
        return opts
    ctx = click.get_current_context()
    with command.make_context(ctx.info_name, list(args), obj=ctx.obj, allow_interspersed_args=True) as late:
        given = {p.name: late.params[p.name] for p in command.params
                 if late.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE}
    if given.get("command_mode") or given.get("local_command"):
        raise click.UsageError("-c and -C come before the command they spool, not after job files")
    return {**opts, **given, "args": late.params["args"]}


main = make_main(command, PROG, fast_exit=True)

if __name__ == "__main__":  # pragma: no cover
    main()
