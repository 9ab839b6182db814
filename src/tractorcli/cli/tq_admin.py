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


@command.command("audit", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq audit\n  tq audit --json\n  tq audit --repair   (Administrators, Wranglers)\n\n"
                        "\b\nChecks: job counters against task states; active commands against running\n"
                        "invocations; ready and active tasks against their subtasks, Instance targets and\n"
                        "serial predecessor; the ready queue against the commands in state ready; blades'\n"
                        "slots in use against what they run; orphan rows. Exit 13 when one is broken\n"
                        "(and not repaired). tractor-dbctl --check is the same for the site's owner.")
@click.option("--repair", is_flag=True,
              help="Fix what can be derived from other rows (job counters, ready-queue rows, blades' slots in use).")
@global_options
def _audit(repair: bool) -> int:
    """Check the job database's invariants and print each violation with its ids."""
    from ..db.audit import audit, describe, left
    from ..errors import ExitStatus

    ctx = get_context()
    rows = audit(ctx.connection(), repair=repair)
    if _opts().get("form") in ("json", "ndjson"):
        _emit_json(rows)
    else:
        for row in rows:
            ctx.out(describe(row))
        if not rows:
            ctx.out("the job database keeps every invariant")
    return int(ExitStatus.INVARIANT) if left(rows) else 0


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
                        "and limits.toml are loaded into the job database at once (the site owner's files;\n"
                        "the database decides who may --force, and the next claim of every blade obeys\n"
                        "the limits).")
@click.option("--blade", is_flag=True, help="Blades re-read their profile (blade.toml) and register it again.")
@click.option("--crews", is_flag=True, help="Load the site's crews.toml into the job database (site owner only).")
@click.option("--limits", is_flag=True, help="Load the site's limits.toml into the job database (site owner only).")
@click.option("--tractor", is_flag=True,
              help="The engine re-reads tractor.toml (retry attempts, blade lease, scheduling mode, tiers).")
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
    if "limits" in parts:
        from ..db import limits as limits_db

        loaded["limits"] = limits_db.load(ctx.connection(), ctx.settings.config_dir)
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


def _limit_text(row: dict) -> list[str]:
    """One limit as lines: `NAME  INUSE of SITEMAX ...` then its other maxima and who holds it."""
    def cap(n: int) -> str:
        return "no maximum" if n < 0 else str(n)

    def held(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"

    head = f"{row['name']}: {row['inuse']} of {cap(row['sitemax'])} in use"
    if row["sitecounting"] == "perHost":
        head += f" (hosts; {row['commands']} command(s))"
    if row["description"]:
        head += f"  ({row['description']})"
    lines = [head]
    if row["ownermax"] >= 0 or row["ownerexceptions"]:
        extra = "".join(f", {k} {v}" for k, v in sorted(row["ownerexceptions"].items()))
        lines.append(f"  OwnerMax {cap(row['ownermax'])}{extra}")
    if row["blademax"] >= 0 or row["bladeexceptions"]:
        extra = "".join(f", {k} {v}" for k, v in sorted(row["bladeexceptions"].items()))
        lines.append(f"  BladeMax {cap(row['blademax'])}{extra}")
    for kind in ("project", "crew"):
        shares = row[f"{kind}shares"]
        if shares:
            lines.append(f"  {kind} shares: " + ", ".join(f"{k} {v}" for k, v in sorted(shares.items())))
    if row["commands"]:
        lines.append(f"  held by owners: {held(row['owners'])}; blades: {held(row['blades'])}; "
                     f"projects: {held(row['projects'])}")
    return lines


@command.command("limits", context_settings=CONTEXT_SETTINGS,
                 epilog="\b\nExamples:\n  tq limits\n  tq limits nuke prman\n  tq limits --json\n\n"
                        "\b\nThe limits are the site's limits.toml as loaded into the job database (at the\n"
                        "engine's start and by tq reloadconfig --limits). A command whose tags (its -tags,\n"
                        "its job's -tags, its program's name) name a full limit stays ready; tq explain and\n"
                        "tq trace say which limit holds it.")
@click.argument("names", nargs=-1, metavar="[LIMIT]...")
@global_options
def _limits(names: tuple[str, ...]) -> int:
    """List the site's limits with what each has in use now (on the site, by owner, blade and project)
    and their maxima."""
    from ..db import limits as limits_db

    ctx = get_context()
    rows = limits_db.usage(ctx.connection(), list(names) or None)
    form = _opts().get("form")
    missing = sorted(set(names) - {r["name"] for r in rows})
    if missing:
        click.echo(f"no limit named {', '.join(missing)}", err=True)
    if form in ("json", "ndjson"):
        _emit_json(rows)
    elif form == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "inuse", "sitemax", "sitecounting", "commands", "ownermax", "blademax"])
        for r in rows:
            w.writerow([r[k] for k in ("name", "inuse", "sitemax", "sitecounting", "commands", "ownermax",
                                       "blademax")])
        ctx.out(buf.getvalue().rstrip("\n"))
    elif not rows and not names:
        ctx.out("no limits (the site has no limits.toml, or it names none)")
    else:
        for r in rows:
            for line in _limit_text(r):
                ctx.out(line)
    from ..errors import ExitStatus

    return int(ExitStatus.NOT_FOUND) if missing else 0
