"""tq trace, queuestats, reloadconfig: the admin subcommands (registered on tq's group).

* ``tq trace CLAUSE|NAME...``: the dispatch decisions of blades over the
  first N ready commands (db/trace.py); a bare blade name or address is
  ``name in [...] or ipaddr in [...]``.
* ``tq queuestats``: the farm's queue figures (db/queuestats.py), plain
  ``name value`` lines or --json / --ndjson / --csv.
* ``tq reloadconfig [--blade] [--crews] [--limits] [--tractor]``: a request
  the running engine and blades act on (db/reload.py).

Imported at the end of tq.py; only click at import time.
"""

from __future__ import annotations


import click

from .common import CONTEXT_SETTINGS, get_context
from .tq_core import _op_command, _opts, _select, command, global_options



def _emit_json(value) -> None:
    import json

    ctx = get_context()
    if _opts().get("form") == "ndjson":
        for item in value if isinstance(value, list) else [value]:
            ctx.out(json.dumps(item))
    else:
        ctx.out(json.dumps(value, indent=2))


@_op_command("trace", "Print the dispatch-decision trace of blades: what each would be offered now, in dispatch "
             "order, and why it would take it or not (service keys, NIMBY, slots, paused, delayed or "
             "-maxactive jobs ...).",
             "  tq trace rack01\n  tq trace --limit 5 \"name like ^rack\"\n  tq trace -u up\n"
             "  tq --json trace rack01\n\n"
             "\b\nLines: NAME: jid J tid T cid C ready: matches (EXPR) when the blade would take the command\n"
             "at its next poll, ... skipped: WHY when not; before them the blade's NIMBY, free slots and\n"
             "which commands are shown, after them how many it would take.",
             extra=(click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
                                 help="Trace the first N ready commands (default 20; 0: all)."),
                    click.option("-u", "--unique", is_flag=True, help="Prefix each line with [BLADE].")), entity="blade")
def _trace(words, limit, unique) -> int:
    from ..db.trace import DEFAULT_LIMIT, trace_blades
    from ..errors import ExitStatus
    from ..query import clause_from_words

    ctx = get_context()
    clause = clause_from_words("blade", words)  # bare blade names/addresses, or a clause
    if not clause.strip():
        click.echo(click.get_current_context().get_help())
        return int(ExitStatus.USAGE)
    rows = _select("blade", clause, [], ("name", "ipaddr"), extra=("bladeid", "name"))
    form = _opts().get("form")
    if not rows:
        click.echo("no blades found", err=True)
        if form == "json":
            ctx.out("[]")
        return 0
    traces = trace_blades(ctx.connection(), [r["bladeid"] for r in rows],
                          limit=DEFAULT_LIMIT if limit is None else limit)
    if form in ("json", "ndjson"):
        _emit_json([t.as_dict() for t in traces])
        return 0
    for t in traces:
        for line in t.text_lines(unique=unique):
            ctx.out(line)
    return 0


@command.command("queuestats", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq queuestats\n  tq queuestats --json\n"
                        "  tq queuestats | grep '^ready\\.'\n\n"
                        "\b\nNames: jobs.{total,live,postscript,paused,delayed,finished,deleted},\n"
                        "tasks.{blocked,ready,active,error,done}, ready.{commands,held,oldest_wait_secs},\n"
                        "ready.service[EXPR], active.{commands,slots}, blades.{registered,up,nimby},\n"
                        "slots.{total,in_use,free}. The value is the last word of each line.")
@global_options
def _queuestats() -> int:
    """Print the queue statistics of the farm: jobs by phase, tasks by state, the ready queue (length,
    per service expression, oldest wait), running commands, blades and slots."""
    from ..db.queuestats import flat, queue_stats

    ctx = get_context()
    stats = queue_stats(ctx.connection())
    form = _opts().get("form")
    if form in ("json", "ndjson"):
        _emit_json(stats)
    elif form == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "value"])
        w.writerows(flat(stats))
        ctx.out(buf.getvalue().rstrip("\n"))
    else:
        for name, value in flat(stats):
            ctx.out(f"{name} {value}")
    return 0


_RELOAD_WHO = {
    "tractor": "tractor-engine re-reads tractor.toml at its next housekeeping pass",
    "blade": "every running tractor-blade re-reads blade.toml at its next heartbeat",
}


@command.command("reloadconfig", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq reloadconfig                 everything\n"
                        "  tq reloadconfig --blade         blades re-read blade.toml (keys, slots, NIMBY)\n"
                        "  tq reloadconfig --tractor       the engine re-reads tractor.toml\n\n"
                        "\b\nThe request is recorded in the job database (params reload-tractor and\n"
                        "reload-blade count the requests); the engine and the blades notice it within a\n"
                        "housekeeping pass or a heartbeat. A blade keeps running what it runs. crews.toml\n"
                        "is loaded into the job database at once (the site owner's; the database decides\n"
                        "who may --force), and there are no limits yet.")
@click.option("--blade", is_flag=True, help="Blades re-read their profile (blade.toml) and register it again.")
@click.option("--crews", is_flag=True, help="Load the site's crews.toml into the job database (site owner only).")
@click.option("--limits", is_flag=True, help="Limits (none in this version).")
@click.option("--tractor", is_flag=True, help="The engine re-reads tractor.toml (retry attempts, blade lease).")
@global_options
def _reloadconfig(blade: bool, crews: bool, limits: bool, tractor: bool) -> int:
    """Ask the running engine and blades to re-read their configuration (none of the options: all)."""
    from ..db import reload

    ctx = get_context()
    chosen = {"tractor": tractor, "blade": blade, "crews": crews, "limits": limits}
    parts = [p for p in reload.PARTS if chosen[p]] or list(reload.PARTS)
    gens = reload.request(ctx.connection(), parts)
    loaded = {}
    if "crews" in parts:
        from ..db import crews as crews_db

        loaded["crews"] = crews_db.load(ctx.connection(), ctx.settings.config_dir)
    if _opts().get("form") in ("json", "ndjson"):
        _emit_json({"requested": gens, "loaded": loaded,
                    "notes": {p: reload.NOTES[p] for p in parts if p in reload.NOTES}})
        return 0
    if gens:
        ctx.out("reload requested: " + ", ".join(gens))
    for p in parts:
        if p in gens:
            ctx.out(f"{p}: {_RELOAD_WHO[p]} (request {gens[p]})")
        elif p in loaded:
            ctx.out(f"{p}: loaded: {loaded[p]}")
        else:
            ctx.out(f"{p}: {reload.NOTES[p]}")
    return 0
