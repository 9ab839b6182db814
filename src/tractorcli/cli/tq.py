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
  with a --force that the site's crews.toml does not allow: the database
  decides, db/sql/functions/permissions.sql) makes the exit status 8 once
  everything else is done;
* prompts go to stderr and read a line from stdin: an empty line is yes,
  end of input is no.

This module imports click only at import time: `tq --help` stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .common import CONTEXT_SETTINGS, get_context, make_main
from .tq_core import (
    _actor,
    command,
    EXAMPLES,
    global_options,
    _op_command,
    _operate,
    _opts,
    PROG,
    _select,
    _split,
    TqGroup,
    _user,
)


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


@_op_command("jattr", "Set a job attribute (title, comment, metadata, tier, maxactive, priority, tags, projects, "
             "envkey, crews, afterjids).",
             "  tq jattr -k comment -v 'for review' 12\n  tq jattr -k tags --add hero 12\n"
             "  tq jattr -k tier -v rush 12", short_a=False,
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

# the subcommands of the other modules (they import tq_core, not this module)
from . import tq_admin  # noqa: E402,F401
from . import tq_commands  # noqa: E402,F401

main = make_main(command, PROG)

if __name__ == "__main__":  # pragma: no cover
    main()
