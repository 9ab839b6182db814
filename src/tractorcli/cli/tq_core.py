"""What every tq subcommand module shares: the command group and its global options, reading
rows with a search clause, and operating on them (the database decides who may: db/ops.py).

tq.py (listings and operations), tq_admin.py and tq_commands.py add their subcommands to
`command`; tq.py imports them all.  This module imports click only: `tq --help` stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import click

from .common import (
    CONTEXT_SETTINGS,
    get_context,
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
