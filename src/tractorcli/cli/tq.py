"""tq: list and operate on jobs, tasks, commands, invocations, blades, params, notes.

    tq [GLOBAL OPTIONS] SUBCOMMAND [OPTIONS] [SEARCH CLAUSE ...]

The words after the subcommand that are not options are joined with spaces
into a search clause (query/); leading numbers are the short forms
(``tq jobs 12 13``, ``tq tasks 12 4 5``).  Global options (--yes, --force,
--archives, --raw ...) may come before the subcommand, as in Tractor, or
after it.

Choices where Tractor's reference is silent:
* column widths (``jid=10``) are upper bounds: a column is as wide as its
  widest value or header, text longer than its width is cut, numbers never;
* ``--delimiter`` and ``--nf`` print unpadded columns;
* ``--json`` with nothing matched prints ``[]`` (and the "no ... found"
  message on stderr);
* operations have no row cap; an operation without a clause prints its help
  and exits 2; a refused target (another user's job without --force, or
  with a --force that the site's crews.toml does not allow: crews.py) makes
  the exit status 8 once everything else is done;
* prompts go to stderr and read a line from stdin: an empty line is yes,
  end of input is no.

This module imports click only at import time: `tq --help` stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import click

from .common import (
    CONTEXT_SETTINGS,
    get_context,
    make_main,
    site_options,
    version_option,
)

PROG = "tq"
DEFAULT_LIMIT = 1000  # listings show at most this many rows without --limit, unless tractor.toml's
# SiteMaxListReplyCount says otherwise (config.SiteSettings.max_list_rows)

EXAMPLES = """\
\b
Examples:
  tq jobs mine                          my jobs
  tq jobs 12 13                         jobs 12 and 13
  tq tasks "jid=12 and error"           the error tasks of job 12
  tq tasks 12 4 5                       tasks 4 and 5 of job 12
  tq jobs -c +numtasks -s -pri active   active jobs, highest priority first
  tq --json jobs "user=ann"             as JSON (also --ndjson, --csv)
  tq retry --yes "jid=12 and error"     retry job 12's error tasks without asking
  tq --force --yes retry active         retry every active task, anyone's
  tq pause 12                           stop dispatching job 12
  tq chpri -p 200 12                    set job 12's priority
  tq log 12 4                           the output of task 4 of job 12
  tq nimby --allow ann name=b17         blade b17 takes only ann's jobs
  tq help queries                       the search clause language

\b
Listings print a table on a terminal, else Tractor's plain form (header line,
'=' dividers, columns separated by a space). Operations show each target and
ask for confirmation (an empty answer is yes) unless --yes; other users' jobs
need --force.
Exit status: 0 success (also when nothing matched); 2 bad command line; 6
database unreachable; 7 no such job, task or log; 8 not the job owner (use
--force; crews.toml says who may); 11 bad search clause, column or value.
"""

# subcommand -> (entity, default columns, default sort, noun)
LISTINGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str]] = {
    "jobs": ("job", ("jid=10", "user", "title", "pri=4.0", "numblocked", "numready", "numactive", "numerror",
                     "numdone", "spooled"), ("user", "spooltime"), "jobs"),
    "tasks": ("task", ("jid=10", "tid=4", "user", "title", "state", "statetime", "Blade.name"), ("jid", "tid"),
              "tasks"),
    "commands": ("command", ("jid=10", "tid=4", "cid=4", "argv=40"), ("jid", "cid"), "commands"),
    "invocations": ("invocation", ("jid=10", "tid=4", "cid=4", "iid=4", "Blade.name", "starttime", "stoptime",
                                   "rcode", "argv=40"), ("jid", "tid", "cid", "iid"), "invocations"),
    "blades": ("blade", ("name", "port", "profile", "load", "availdisk", "availmem", "starttime", "nimby"),
               ("name", "ipaddr"), "blades"),
    "params": ("param", ("name", "value"), ("name",), "params"),
    "notes": ("note", ("notetime", "noteuser", "notetype", "itemtype", "itemid", "notetext"), ("notetime",),
              "notes"),
}
LISTING_ALIASES = {"cmds": "commands", "invos": "invocations"}


# --- options defined once ------------------------------------------------------------


def _store(name: str) -> Callable:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        obj = get_context() or ctx.ensure_object(dict)
        opts = obj.__dict__.setdefault("tq", {})
        if value is not None and value is not False and value != ():
            opts[name] = value
        return value

    return callback


def _flag(*decls: str, name: str, help: str) -> Callable:
    return click.option(*decls, name, is_flag=True, expose_value=False, callback=_store(name), help=help)


def _value(*decls: str, name: str, help: str, metavar: str, type: Any = None) -> Callable:
    return click.option(*decls, name, metavar=metavar, type=type, expose_value=False, callback=_store(name),
                        help=help)


def global_options(f: Callable | None = None, *, short_a: bool = True) -> Callable:
    """Options valid before the subcommand and after it."""

    def deco(f: Callable) -> Callable:
        opts = [
            _flag("-y", "--yes", name="yes", help="Answer yes to every confirmation."),
            _flag(*(("-a", "--archives") if short_a else ("--archives",)), name="archives",
                  help="Include deleted (archived) jobs, and blades that are not registered."),
            _flag("--force", name="force",
                  help="Allow operations on other users' jobs (as the site's crews.toml allows, if it has one)."),
            _flag("--nocolor", name="nocolor", help="No colors."),
            _flag("--zeros", name="zeros", help="Print 0 instead of blank in job task counts."),
            _flag("--raw", name="raw", help="Stored values: seconds, ISO times."),
            _value("--tf", "--timefmt", name="timefmt", metavar="FMT",
                   help="strftime format of times (default %m/%d|%H:%M; also TRACTOR_TIMEFMT)."),
            _flag("--fulltime", name="fulltime", help="Times in full (--timefmt %c)."),
            click.option("--json", "form", flag_value="json", expose_value=False, callback=_store("form"),
                         help="Listings as a JSON list of objects."),
            click.option("--ndjson", "form", flag_value="ndjson", expose_value=False, callback=_store("form"),
                         help="Listings as one JSON object per line."),
            click.option("--csv", "form", flag_value="csv", expose_value=False, callback=_store("form"),
                         help="Listings as CSV with a header row."),
        ]
        for o in reversed(opts):
            f = o(f)
        return f

    return deco(f) if f is not None else deco


def listing_options(f: Callable) -> Callable:
    opts = [
        click.option("-c", "--cols", "cols", multiple=True, metavar="COLS",
                     help="Columns: a,b,c replaces the list; +a adds, -a removes; a=W width, a=W.P precision."),
        click.option("-s", "--sortby", "sortby", multiple=True, metavar="COLS",
                     help="Sort by these columns (-col: descending)."),
        click.option("-d", "--distinct", "distinct", metavar="COLS",
                     help="Only the distinct combinations of these columns."),
        click.option("--limit", type=click.IntRange(min=0), metavar="N",
                     help=f"At most N rows (default: the site's SiteMaxListReplyCount, {DEFAULT_LIMIT} unless set; 0: all)."),
        click.option("--delimiter", metavar="TEXT", help="Separate columns with TEXT (no padding)."),
        click.option("--nf", "--noformat", "noformat", is_flag=True, help="No padding, no table."),
        click.option("--nh", "--noheader", "noheader", is_flag=True, help="No header line."),
        click.option("--ns", "--nosort", "nosort", is_flag=True, help="No sorting (faster)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _opts() -> dict[str, Any]:
    return get_context().__dict__.setdefault("tq", {})


# --- the group ---------------------------------------------------------------------------


class TqGroup(click.Group):
    """Subcommands in the order they were added; `cmds`/`invos` and the like as aliases."""

    aliases: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(name, name))


@click.group(PROG, cls=TqGroup, context_settings=CONTEXT_SETTINGS, epilog=EXAMPLES,
             short_help="List and operate on jobs, tasks, commands, blades.")
@global_options
@site_options
@version_option(PROG)
def command() -> None:
    """List and operate on jobs, tasks, commands, invocations, blades, params and notes
    of the job database, with Tractor's search clauses (tq help queries).
    """


def _style():
    import os

    from . import render

    o = _opts()
    tf = "%c" if o.get("fulltime") else o.get("timefmt") or os.environ.get("TRACTOR_TIMEFMT")
    return render.Style(raw=bool(o.get("raw")), timefmt=tf, zeros=bool(o.get("zeros")),
                        color=not o.get("nocolor") and not os.environ.get("NO_COLOR"))


def _user() -> str:
    from ..query import default_user

    return default_user()


def _execute(sql: str, params: dict, clause: str) -> list[dict]:
    import psycopg

    from ..query import database_error

    conn = get_context().connection()
    try:
        return conn.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        bad = database_error(exc, clause)
        if bad is not None:
            raise bad from None
        raise


def _select(entity: str, clause: str, cols, sortby, *, extra: tuple[str, ...] = (), limit: int | None = None,
            distinct: bool = False, archives: bool | None = None) -> list[dict]:
    """Rows of `entity` matching `clause` with `cols` (ColSpecs, types filled in) and `extra` keys."""
    from ..query import build_select, resolve_column

    for c in cols:
        a = resolve_column(entity, c.name)
        c.type, c.canonical = a.type, a.name
    names = [c.name for c in cols] + [e for e in extra if e not in {c.name for c in cols}]
    q = build_select(entity, clause, columns=names, sortby=list(sortby), limit=limit, distinct=distinct,
                     archives=bool(_opts().get("archives")) if archives is None else archives, user=_user())
    return _execute(q.sql, q.params, clause)


def _split(values) -> list[str]:
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _bad_spec(exc: Exception):
    from ..errors import BadInput

    return BadInput(str(exc))


def _listing(sub: str, words: tuple[str, ...], cols_opt, sortby, distinct, limit, delimiter, noformat,
             noheader, nosort, form) -> int:
    from ..query import clause_from_words
    from . import render

    entity, defaults, default_sort, noun = LISTINGS[sub]
    ctx = get_context()
    clause = clause_from_words(entity, words)
    try:
        if distinct:
            cols = render.columns(",".join(_split([distinct])), ())
        else:
            cols = render.columns(",".join(cols_opt) if cols_opt else None, defaults)
    except render.SpecError as exc:
        raise _bad_spec(exc) from None
    if nosort:
        sort: list[str] = []
    elif sortby:
        sort = _split(sortby)
    elif distinct:
        sort = [c.name for c in cols]
    else:
        sort = list(default_sort)
    cap = ctx.settings.max_list_rows if limit is None else limit
    rows = _select(entity, clause, cols, sort, limit=cap + 1 if cap else None, distinct=bool(distinct))
    if cap and len(rows) > cap:
        rows = rows[:cap]
        if limit is None:
            click.echo(f"{PROG}: showing the first {cap} {noun}; --limit 0 shows all", err=True)
    if not rows:
        click.echo(f"no {noun} found", err=True)
        if form == "json":
            ctx.out("[]")
        return 0
    style = _style()
    if form is None:
        form = "table" if sys.stdout.isatty() and not noformat and delimiter is None else "plain"
    render.emit(ctx.out, rows, cols, style, form=form, header=not noheader, delimiter=delimiter,
                noformat=noformat, console=ctx.console if form == "table" else None)
    return 0


def _make_listing(sub: str, help: str, example: str) -> click.Command:
    @click.command(sub, context_settings=CONTEXT_SETTINGS, help=help,
                   epilog=f"\b\nExamples:\n{example}\n\n\b\nDefault columns: {','.join(LISTINGS[sub][1])}; "
                          f"default sort: {','.join(LISTINGS[sub][2])}.")
    @click.argument("words", nargs=-1, metavar="[CLAUSE...]")
    @listing_options
    @global_options
    def cmd(words, cols, sortby, distinct, limit, delimiter, noformat, noheader, nosort) -> int:
        return _listing(sub, words, cols, sortby, distinct, limit, delimiter, noformat, noheader, nosort,
                        _opts().get("form"))

    cmd.clause_entity = LISTINGS[sub][0]  # docgen: what its words complete to
    return cmd


for _sub, _help, _ex in (
    ("jobs", "List jobs (mine, active, error, done, paused ... or any clause).",
     "  tq jobs mine\n  tq jobs 12 13\n  tq jobs -s -pri \"user=ann and error\""),
    ("tasks", "List tasks (JID [TID...] or a clause).",
     "  tq tasks 12\n  tq tasks \"jid=12 and error\"\n  tq tasks -c +retrycount active"),
    ("commands", "List commands (JID [CID...] or a clause); also `cmds`.",
     "  tq commands 12\n  tq cmds -c jid,cid,service \"service like prman\""),
    ("invocations", "List invocations, the launches of commands; also `invos`.",
     "  tq invocations 12\n  tq invos \"rcode != 0\""),
    ("blades", "List registered blades (all with -a).", "  tq blades\n  tq blades up\n  tq blades \"nimby != ''\""),
    ("params", "List the site parameters of the job database.", "  tq params\n  tq params name=jidcounter"),
    ("notes", "List notes on jobs, tasks and blades.", "  tq notes\n  tq notes itemtype=job"),
):
    command.add_command(_make_listing(_sub, _help, _ex))
TqGroup.aliases.update(LISTING_ALIASES)



# --- operations ------------------------------------------------------------------------
#
# An operation selects its targets with a clause over its entity, checks the
# owner (unless --force), asks (unless --yes), acts, and prints each target's
# row with a result word.

_ENTITY_OF = {"job": "jobs", "task": "tasks", "blade": "blades", "command": "commands"}
# hidden keys each target row carries: (id keys, owner key or None)
_KEYS = {"job": (("jid",), "owner"), "task": (("jid", "tid"), "Job.owner"), "blade": (("bladeid", "name"), None),
         "command": (("jid", "cid"), "Job.owner")}


def _ask(question: str) -> bool:
    click.echo(f"{question} yes/no [y]: ", err=True, nl=False)
    line = sys.stdin.readline()
    if not line:
        click.echo("", err=True)
        return False
    return line.strip().lower() in ("", "y", "yes")


def _actor():
    """For whom tq operates: its user (the site's role acts for it; a person's role is always
    itself) and --force; the database decides with these (db/ops.py)."""
    from ..db.ops import Actor

    return Actor(user=_user(), force=bool(_opts().get("force")))


def _operate(entity: str, words: tuple[str, ...], *, question: str, word: str, sortby: tuple[str, ...],
             act: Callable[[Any, list[dict]], None], per_job: bool = False, all_at_once: bool = False,
             force: bool = False, yes: bool = False, archives: bool | None = None, show: bool = True) -> int:
    """Select the targets of an operation and run `act(conn, rows)` on them: once with
    every row when `all_at_once`, once per job with its rows when `per_job`, else once
    per row (a one-row list)."""
    from ..errors import ExitStatus
    from ..query import clause_from_words
    from . import render

    ctx = get_context()
    clctx = click.get_current_context()
    clause = clause_from_words(entity, words)
    if not clause.strip():
        click.echo(clctx.get_help())
        return int(ExitStatus.USAGE)
    o = _opts()
    reading = force  # log, jobdump: reading needs no ownership (and no crews.toml rule)
    force = force or bool(o.get("force"))
    yes = yes or bool(o.get("yes"))
    sub = _ENTITY_OF[entity]
    cols = render.columns(None, LISTINGS[sub][1])
    ids, owner_key = _KEYS[entity]
    rows = _select(entity, clause, cols, sortby, extra=ids + ((owner_key,) if owner_key else ()),
                   archives=archives)
    if not rows:
        click.echo(f"no {sub} found", err=True)
        return 0
    style = _style()
    refused = False
    chosen: list[dict] = []
    conn = ctx.connection()
    refusals: dict[int, str] = {}
    if owner_key and not reading:  # the database's verdicts, printed per row before asking
        from ..db.ops import Actor, refusals as db_refusals

        refusals = db_refusals(conn, {row["jid"] for row in rows}, Actor(user=_user(), force=force))
    for row in rows:
        why = refusals.get(row["jid"]) if owner_key else None
        if why:
            ctx.out(render.row_line(row, cols, style))
            click.echo(f"{PROG}: {why}", err=True)
            refused = True
            continue
        if not yes:
            ctx.out(render.row_line(row, cols, style))
            if not _ask(question):
                continue
        chosen.append(row)
    if all_at_once:
        batches = [chosen] if chosen else []
    elif per_job:
        groups: dict[Any, list[dict]] = {}
        for row in chosen:
            groups.setdefault(row["jid"], []).append(row)
        batches = list(groups.values())
    else:
        batches = [[row] for row in chosen]
    import psycopg.errors as pe

    for batch in batches:
        try:
            act(conn, batch)
        except pe.InsufficientPrivilege as exc:  # the database said no (a blade operation, a changed crew)
            ctx.out("\n".join(render.row_line(row, cols, style) for row in batch))
            click.echo(f"{PROG}: {exc.diag.message_primary or exc}", err=True)
            refused = True
            continue
        if show:  # one write per batch: thousands of rows with --yes
            ctx.out("\n".join(f"{render.row_line(row, cols, style)} {word}" for row in batch))
    return int(ExitStatus.PERMISSION) if refused else 0


def _op_command(name: str, help: str, example: str, *, short_a: bool = True,
                extra: tuple[Callable, ...] = (), entity: str | None = None) -> Callable:
    """A subcommand taking a clause over `entity` (job, task, command, blade), with the global
    options and `extra` ones."""

    def deco(f: Callable) -> click.Command:
        f = global_options(short_a=short_a)(f)
        for o in reversed(extra):
            f = o(f)
        f = click.argument("words", nargs=-1, metavar="[CLAUSE...]")(f)
        cmd = click.command(name, context_settings=CONTEXT_SETTINGS, help=help,
                            epilog=f"\b\nExamples:\n{example}")(f)
        cmd.clause_entity = entity  # docgen: what its words complete to
        command.add_command(cmd)
        return cmd

    return deco


# task operations: (name, help, example, question, result word, dispatch function, kwargs)
_TASK_OPS = (
    ("retry", "Retry tasks: an active one is killed; it and every task depending on it start over.",
     "  tq retry 12 4\n  tq retry --yes \"jid=12 and error\"", "Retry this task?", "retried", "retry", {}),
    ("resume", "Resume tasks: like retry, but a recover run (%r = 1), on the same blade with -resumepin.",
     "  tq resume 12 4", "Resume this task?", "resumed", "retry", {"recover": True}),
    ("skip", "Skip tasks: mark them done so the tasks waiting for them go on.",
     "  tq skip 12 4\n  tq skip --yes \"jid=12 and error\"", "Skip this task?", "skipped", "skip", {}),
    ("kill", "Kill the running command of tasks; they are left in error.",
     "  tq kill 12 4\n  tq kill \"jid=12 and active\"", "Kill this task?", "killed", "kill", {}),
)


def _make_task_op(name, help, example, question, word, fn, kw):
    @_op_command(name, help, example, entity="task")
    def cmd(words) -> int:
        def act(conn, rows):  # every task of every job in one call (tq retry error: thousands)
            _ops().tasks(conn, fn, [(r["jid"], r["tid"]) for r in rows], _actor(), **kw)

        return _operate("task", words, question=question, word=word, sortby=("-Job.priority", "Job.spooltime"),
                        act=act, all_at_once=True)


for _t in _TASK_OPS:
    _make_task_op(*_t)


def _job_op(name: str, help: str, example: str, question: str, word: str, fn: Callable[..., Any], *,
            sortby: tuple[str, ...] = ("priority", "-spooltime"), archives: bool | None = None) -> None:
    """A job operation calling `fn(conn, jid)`."""

    @_op_command(name, help, example, entity="job")
    def cmd(words) -> int:
        return _operate("job", words, question=question, word=word, sortby=sortby, archives=archives,
                        act=lambda conn, rows: fn(conn, rows[0]["jid"]))


def _ops():
    from ..db import ops

    return ops


_job_op("pause", "Pause jobs: no new commands start (running ones go on).", "  tq pause 12\n  tq pause mine",
        "Pause this job?", "paused", lambda c, j: _ops().pause(c, j, _actor()))
_job_op("unpause", "Unpause jobs.", "  tq unpause 12", "Unpause this job?", "unpause",
        lambda c, j: _ops().unpause(c, j, _actor()))
_job_op("interrupt", "Interrupt jobs: kill their active tasks (left in error) and pause them.",
        "  tq interrupt 12", "Interrupt this job?", "interrupted", lambda c, j: _ops().interrupt(c, j, _actor()))
_job_op("restart", "Restart jobs from the beginning: active tasks are killed, tasks made by expand commands "
        "detached, every other task starts over.",
        "  tq restart 12", "Restart this job?", "restarted", lambda c, j: _ops().restart(c, j, _actor()))
_job_op("retryallerrs", "Retry all error tasks of jobs.", "  tq retryallerrs 12\n  tq retryallerrs mine error",
        "Retry all errors of this job?", "retried all errors", lambda c, j: _ops().retry_errors(c, j, _actor()),
        sortby=("-priority", "spooltime"))
_job_op("skipallerrs", "Skip all error tasks of jobs.", "  tq skipallerrs 12", "Skip all errors of this job?",
        "skipped all errors", lambda c, j: _ops().skip_errors(c, j, _actor()), sortby=("-priority", "spooltime"))
_job_op("delete", "Delete jobs: kill their active tasks and take them out of the queue (archived).",
        "  tq delete 12\n  tq delete --yes \"mine and done\"", "Delete this job?", "deleted",
        lambda c, j: _ops().delete(c, j, _actor()))
_job_op("undelete", "Undelete (restore) archived jobs; restart or retry them to run again.",
        "  tq undelete 12", "Undelete this job?", "undeleted", lambda c, j: _ops().undelete(c, j, _actor()), archives=True)
_job_op("undelay", "Clear the delay of jobs: they may start at once.", "  tq undelay 12",
        "Undelay this job?", "un-delayed", lambda c, j: _ops().set_aftertime(c, j, None, _actor()))
_job_op("unlock", "Unlock jobs.", "  tq unlock 12", "Unlock this job?", "unlocked",
        lambda c, j: _ops().unlock(c, j, _actor()))


@_op_command("chpri", "Change the priority of jobs.", "  tq chpri -p 200 12\n  tq chpri --priority 50 mine",
             extra=(click.option("-p", "--priority", type=float, required=True, metavar="FLOAT",
                                 help="The new priority."),), entity="job")
def _chpri(words, priority) -> int:
    return _operate("job", words, question="Change the priority of this job?", word="priority changed",
                    sortby=("-priority", "spooltime"), act=lambda c, rows: _ops().set_priority(c, rows[0]["jid"],
                                                                                               priority, _actor()))


def _parse_when(text: str):
    import datetime as dt

    from ..errors import BadInput
    from ..query import parse_time
    from ..query.errors import ClauseError

    try:
        return parse_time(text, dt.datetime.now().astimezone())
    except (ClauseError, ValueError) as exc:
        raise BadInput(f"bad time {text!r}: {exc}",
                       hint="forms: 10am, 5pm, 3/25, 3/25|12pm, 3/25|10:30am, +2h") from None


@_op_command("delay", "Delay jobs: they do not start before TIME.",
             "  tq delay -t 10pm 12\n  tq delay --time '3/25|10:30am' mine",
             extra=(click.option("-t", "--time", "when", required=True, metavar="TIME",
                                 help="Not before TIME: 10am, 5pm, 3/25, 3/25|12pm, 3/25|10:30am."),), entity="job")
def _delay(words, when) -> int:
    t = _parse_when(when)
    return _operate("job", words, question="Delay this job?", word="delayed", sortby=("priority", "-spooltime"),
                    act=lambda c, rows: _ops().set_aftertime(c, rows[0]["jid"], t, _actor()))


@_op_command("lock", "Lock jobs against other users' edits.", "  tq lock -n 'checking frames' 12",
             extra=(click.option("-n", "--note", default="", metavar="TEXT", help="Why it is locked."),), entity="job")
def _lock(words, note) -> int:
    return _operate("job", words, question="Lock this job?", word="locked", sortby=("priority", "-spooltime"),
                    act=lambda c, rows: _ops().lock(c, rows[0]["jid"], note, _actor()))


def _list_arg(values) -> list[str]:
    return _split(values)


@_op_command("chcrews", "Set, add or remove the crews of jobs.",
             "  tq chcrews -k lighting,fx 12\n  tq chcrews --add fx 12", short_a=False,
             extra=(click.option("-k", "--crews", "set_", multiple=True, metavar="LIST", help="Set the crews."),
                    click.option("-a", "--add", multiple=True, metavar="LIST", help="Add crews."),
                    click.option("-r", "--remove", multiple=True, metavar="LIST", help="Remove crews.")), entity="job")
def _chcrews(words, set_, add, remove) -> int:
    if not (set_ or add or remove):
        raise click.UsageError("one of -k/--crews, -a/--add, -r/--remove is needed")

    def act(conn, rows):
        jid = rows[0]["jid"]
        crews = _list_arg(set_) if set_ else list(_ops().lists(conn, jid)["crews"])
        crews += [x for x in _list_arg(add) if x not in crews]
        crews = [x for x in crews if x not in _list_arg(remove)]
        _ops().set_crews(conn, jid, crews, _actor())

    return _operate("job", words, question="Change the crews of this job?", word="crews changed",
                    sortby=("-priority", "spooltime"), act=act)


@_op_command("jattr", "Set a job attribute (title, comment, metadata, maxactive, priority, tags, projects, "
             "envkey, crews, afterjids).",
             "  tq jattr -k comment -v 'for review' 12\n  tq jattr -k tags --add hero 12", short_a=False,
             extra=(click.option("-k", "--key", required=True, metavar="ATTR", help="The attribute."),
                    click.option("-v", "--value", metavar="VALUE", help="Its new value (lists: comma-separated)."),
                    click.option("-a", "--add", metavar="LIST", help="Add to a list attribute."),
                    click.option("-r", "--remove", metavar="LIST", help="Remove from a list attribute.")), entity="job")
def _jattr(words, key, value, add, remove) -> int:
    from ..db.ops import JOB_ATTRS
    from ..errors import BadInput

    kind = JOB_ATTRS.get(key)
    if kind is None:
        raise BadInput(f"jattr cannot set {key!r}", hint=f"settable: {', '.join(JOB_ATTRS)}")
    if (value is None) == (add is None and remove is None):
        raise click.UsageError("give -v/--value, or -a/--add and/or -r/--remove")
    if (add or remove) and kind not in ("list", "ints"):
        raise click.UsageError(f"-a/-r need a list attribute, and {key} is not one")

    def convert(items):
        try:
            return [int(x) for x in items] if kind == "ints" else list(items)
        except ValueError:
            raise BadInput(f"{key} takes job ids, not {','.join(items)!r}") from None

    def scalar():
        try:
            return {"int": int, "float": float}.get(kind, str)(value)
        except ValueError:
            raise BadInput(f"{key} takes a number, not {value!r}") from None

    new = scalar() if value is not None and kind not in ("list", "ints") else None

    def act(conn, rows):
        jid = rows[0]["jid"]
        if kind in ("list", "ints"):
            if value is not None:
                items = convert(_split([value]))
            else:
                items = list(_ops().lists(conn, jid)[key])
                items += [x for x in convert(_split([add or ""])) if x not in items]
                gone = convert(_split([remove or ""]))
                items = [x for x in items if x not in gone]
            _ops().set_attr(conn, jid, key, items, _actor())
        else:
            _ops().set_attr(conn, jid, key, new, _actor())

    return _operate("job", words, question=f"Change {key} of this job?", word=f"{key} changed",
                    sortby=("-priority", "spooltime"), act=act)


@_op_command("jobdump", "Print the job scripts of jobs as they were spooled.", "  tq jobdump 12", entity="job")
def _jobdump(words) -> int:
    ctx = get_context()

    def act(conn, rows):
        text = _ops().script(conn, rows[0]["jid"])
        ctx.out((text or "").rstrip("\n"))

    return _operate("job", words, question="", word="", sortby=("jid",), act=act, force=True, yes=True,
                    show=False)


# blade operations
def _blade_op(name: str, help: str, example: str, question: str, word: str, fn: Callable, extra=()) -> None:
    @_op_command(name, help, example, extra=extra, entity="blade")
    def cmd(words, **kw) -> int:
        return _operate("blade", words, question=question, word=word, sortby=("name", "ipaddr"),
                        act=lambda c, rows: fn(c, rows[0]["bladeid"], **kw))


_blade_op("nimby", "Close blades to other jobs: only jobs spooled from the blade's host, or with --allow "
          "only that user's.", "  tq nimby b17\n  tq nimby --allow ann name=b17\n  tq nimby \"name like ^rack\"", "Nimby this blade?", "nimbied",
          lambda c, b, allow=None: _ops().set_nimby(c, b, allow or "1", _actor()),
          extra=(click.option("--allow", metavar="USER", help="Take only USER's jobs."),))
_blade_op("unnimby", "Open blades to every job again.", "  tq unnimby b17 b18", "Unnimby this blade?", "unnimbied",
          lambda c, b: _ops().set_nimby(c, b, "", _actor()))
_blade_op("eject", "Retry the tasks blades are running now (they run again elsewhere or later).",
          "  tq eject b17", "Eject the tasks of this blade?", "ejected", lambda c, b: _ops().eject(c, b, _actor()))
_blade_op("delist", "Remove blades from the list of registered blades (until they register again).",
          "  tq delist b17\n  tq delist \"not up\"", "Delist this blade?", "delist", lambda c, b: _ops().delist(c, b, _actor()))



# --- explain ----------------------------------------------------------------------------


@command.command("explain", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq explain 12 4\n  tq why \"jid=12 and tid=4\"\n"
                        "  tq explain --json \"jid=12 and not active\"")
@click.argument("words", nargs=-1, metavar="[CLAUSE...]")
@global_options
def _explain(words) -> int:
    """Say why tasks are not running (also `why`): the subtasks, Instance targets or serial predecessor
    they wait for; a paused, delayed, deleted job or one at -maxactive; an error; no registered blade
    matching the service expression (and the keys missing), or every matching blade busy or NIMBY."""
    from ..db.explain import explain_task
    from ..errors import ExitStatus
    from ..query import clause_from_words

    ctx = get_context()
    clause = clause_from_words("task", words)
    if not clause.strip():
        click.echo(click.get_current_context().get_help())
        return int(ExitStatus.USAGE)
    rows = _select("task", clause, [], ("jid", "tid"), extra=("jid", "tid"))
    if not rows:
        click.echo("no tasks found", err=True)
        if _opts().get("form") == "json":
            ctx.out("[]")
        return 0
    conn = ctx.connection()
    found = [w for w in (explain_task(conn, r["jid"], r["tid"]) for r in rows) if w is not None]
    form = _opts().get("form")
    if form in ("json", "ndjson"):
        import json

        if form == "json":
            ctx.out(json.dumps([w.as_dict() for w in found], indent=2))
        else:
            for w in found:
                ctx.out(json.dumps(w.as_dict()))
        return 0
    for w in found:
        for line in w.lines():
            ctx.out(line)
    return 0


_explain.clause_entity = "task"
TqGroup.aliases["why"] = "explain"


# --- logs, ping, help ------------------------------------------------------------------


@_op_command("log", "Print the output logs of tasks (JID TID, or a clause); -f follows an active task's log.",
             "  tq log 12 4\n  tq log -f 12 4\n  tq log -u \"jid=12 and error\"",
             extra=(click.option("-l", "--lasttry", is_flag=True, help="Only the output of the last run."),
                    click.option("-u", "--unique", is_flag=True, help="Prefix each line with [user jid tid]."),
                    click.option("-n", "--nh", "--noheader", "noheader", is_flag=True,
                                 help="No header line before each task's log."),
                    click.option("-f", "--follow", is_flag=True,
                                 help="Keep printing what an active task writes until it ends.")), entity="task")
def _log(words, lasttry, unique, noheader, follow) -> int:
    from ..blade.profile import default_profile
    from ..errors import ExitStatus

    ctx = get_context()
    profile = default_profile(ctx.settings.data_dir)
    found: list[dict] = []

    def collect(conn, rows):
        found.extend(rows)

    status = _operate("task", words, question="", word="", sortby=("jid", "tid"), act=collect, per_job=True,
                      force=True, yes=True, show=False)
    if status or not found:
        return status
    missing = 0
    for row in found:
        jid, tid, owner = row["jid"], row["tid"], row["Job.owner"]
        path = profile.log_path(owner, jid, tid)
        if not path.is_file():
            click.echo(f"{PROG}: no log for task {jid} {tid} ({path})", err=True)
            missing += 1
            continue
        if len(found) > 1 and not noheader:
            ctx.out(f"==== {owner} {jid} {tid} {row.get('title', '')} ====")
        text = path.read_text(encoding="utf-8", errors="replace")
        if lasttry:
            start = text.rfind("====[")
            text = text[start:] if start >= 0 else text
        for line in text.splitlines():
            ctx.out(f"[{owner} {jid} {tid}] {line}" if unique else line)
        if follow and len(found) == 1:
            _follow(ctx, path, len(text.encode("utf-8", errors="replace")), jid, tid,
                    (f"[{owner} {jid} {tid}] " if unique else ""))
    return int(ExitStatus.NOT_FOUND) if missing == len(found) else 0


def _follow(ctx, path, offset: int, jid: int, tid: int, prefix: str) -> None:
    """Print what is appended to `path` while the task is active (and once more after)."""
    import time

    from ..db import queries

    conn = ctx.connection()
    with open(path, "rb") as f:
        f.seek(offset)
        buf = b""
        while True:
            row = conn.execute(queries.get("tq_task_state"), {"jid": jid, "tid": tid}).fetchone()
            active = row is not None and row["state"] == "active"
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    ctx.out(prefix + ln.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            elif not active:
                if buf:
                    ctx.out(prefix + buf.decode("utf-8", errors="replace"))
                return
            else:
                time.sleep(0.25)


@command.command("ping", context_settings=CONTEXT_SETTINGS, epilog="\b\nExamples:\n  tq ping")
def _ping() -> int:
    """Check that the job database is reachable."""
    from ..db import queries
    from ..db.connection import describe

    ctx = get_context()
    row = ctx.connection().execute(queries.get("tq_ping")).fetchone()
    ctx.out(f"Job database {describe(ctx.settings)} is reachable as user {row['dbuser']} "
            f"(database {row['dbname']}); you are {_user()}.")
    return 0


_TOPICS = {
    "queries": """\
A search clause selects rows: attribute OP value, joined with and/or/not and
parentheses.  OP: = == != < <= > >= in like has.  like is a regular
expression; in takes a list [a b c]; has tests list attributes.  A bare
attribute is a truth test (tq jobs paused); a bare search alias expands
(mine, active, error, done, ready, blocked, up, registered ...: tq aliases).
Times: 10am 5pm 3/15 3/15|4pm -2h -3d.  Sizes and durations: 2GB 90s 3h.
Qualified names reach related entities: tq tasks "Job.priority > 100".
Leading numbers are short forms: tq jobs 12 13; tq tasks 12 4 5.""",
    "sorting": """\
-s COLS sorts by the columns given (comma-separated); -col sorts descending:
tq jobs -s -pri,spooled.  --ns leaves the rows unsorted.""",
    "columns": """\
-c a,b,c shows those columns; -c +a adds to the defaults, -c -a removes;
a=W limits a column to W characters, a=W.P prints floats with P decimals.
tq attributes lists every column of every entity.""",
    "distinct": """\
-d COLS prints each distinct combination of those columns once, sorted by
them: tq jobs -d user; tq tasks -d jid,state error.""",
    "usage": "tq [GLOBAL OPTIONS] SUBCOMMAND [OPTIONS] [SEARCH CLAUSE ...]",
}


@command.command("help", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq help\n  tq help retry\n  tq help queries")
@click.argument("topic", required=False, metavar="[TOPIC|SUBCOMMAND]")
def _help(topic: str | None) -> int:
    """Help on a topic (subcommands, queries, sorting, columns, distinct, aliases, attributes, examples,
    usage) or a subcommand."""
    ctx = get_context()
    clctx = click.get_current_context()
    group = clctx.parent.command if clctx.parent else command
    if topic in (None, "subcommands"):
        ctx.out(clctx.parent.get_help() if clctx.parent else command.get_help(clctx))
    elif topic in _TOPICS:
        ctx.out(_TOPICS[topic])
    elif topic == "examples":
        ctx.out(EXAMPLES.replace("\b\n", ""))
    elif topic == "aliases":
        _aliases_text()
    elif topic in ("attributes", "fields"):
        _attributes_text(None)
    else:
        sub = group.get_command(clctx, topic)
        if sub is None:
            raise click.UsageError(f"no help topic or subcommand {topic!r} "
                                   f"(topics: subcommands, {', '.join(_TOPICS)}, aliases, attributes, examples)")
        ctx.out(sub.get_help(click.Context(sub, info_name=topic, parent=clctx.parent)))
    return 0


def _aliases_text() -> None:
    from ..query import ENTITIES, SEARCH_ALIASES

    ctx = get_context()
    for key, e in ENTITIES.items():
        search = SEARCH_ALIASES.get(key, {})
        if not search and not e.aliases:
            continue
        ctx.out(f"{e.name}:")
        for word, clause in search.items():
            ctx.out(f"  {word:12} {clause}")
        for word, attr in e.aliases.items():
            ctx.out(f"  {word:12} -> {attr}")


def _attributes_text(entity: str | None) -> None:
    from ..query import ENTITIES

    ctx = get_context()
    for key, e in ENTITIES.items():
        if entity and key != entity:
            continue
        ctx.out(f"{e.name} ({e.plural}):")
        for a in e.attrs.values():
            ctx.out(f"  {a.name:16} {a.type:10} {a.doc}".rstrip())


@command.command("aliases", context_settings=CONTEXT_SETTINGS, epilog="\b\nExamples:\n  tq aliases")
def _aliases() -> int:
    """List the search aliases (mine, active ...) and attribute aliases (user, pri ...)."""
    _aliases_text()
    return 0


@command.command("attributes", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq attributes\n  tq attributes tasks")
@click.argument("entity", required=False, metavar="[ENTITY]")
def _attributes(entity: str | None) -> int:
    """List the attributes (columns) of every entity, or of one (jobs, tasks ...)."""
    from ..query import entity as entity_of

    key = None
    if entity:
        try:
            key = entity_of(entity).key
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    _attributes_text(key)
    return 0


TqGroup.aliases["fields"] = "attributes"


main = make_main(command, PROG)

if __name__ == "__main__":  # pragma: no cover
    main()
from . import tq_admin  # noqa: E402,F401
from . import tq_commands  # noqa: E402,F401
