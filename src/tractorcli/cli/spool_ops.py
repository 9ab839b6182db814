"""What tractor-spool does with its options (kept apart so --help stays cheap)."""

from __future__ import annotations

import gc
import json
import os

import click

from .. import submit
from ..errors import ExitStatus, TractorError, UsageError
from .common import Context


def _settings(ctx: Context, engine: str | None):
    """The site's settings, at the job database `--engine HOST[:PORT]` names (config.at_engine)."""
    from ..config import at_engine, split_engine

    if not engine:
        return ctx.settings
    return at_engine(ctx.settings, *split_engine(engine, "--engine"))


def run(ctx: Context, opts: dict) -> int:
    # A job is millions of small objects with no reference cycles; the cyclic
    # collector would walk them again and again as they pile up (a third of
    # the parse time of a 100,000-task job) for nothing.  The run is short.
    gc.disable()
    try:
        return _run(ctx, opts)
    except TractorError as exc:
        if not opts["status_json"]:
            raise
        ctx.out(json.dumps({"rc": int(exc.status), "msg": exc.message}))
        return exc.status


def _run(ctx: Context, opts: dict) -> int:
    args = list(opts["args"])
    owner = opts["user"]  # None: the logged-in user (the database decides who may name another)
    if opts["jdelete"] is not None:
        submit.retire(_settings(ctx, opts["engine"]), opts["jdelete"], owner)
        _ok(ctx, opts, f"J{opts['jdelete']} delete OK", None)
        return ExitStatus.OK

    settings = None
    spooled: list[int] = []
    # one file at a time: each is spooled before the next is read, so a bad
    # file stops the run after the good ones before it, as in Tractor
    for loaded in _jobs(ctx, opts, args):
        job = loaded.job
        for w in job.warnings:
            if not ctx.quiet:
                click.echo(f"tractor-spool: warning: {w}", err=True)
        if opts["review"] or opts["no_spool"]:
            from ..jobs.emit import as_tcl

            ctx.out(as_tcl(job).rstrip("\n"))
            continue
        if opts["print_json"]:
            from ..jobs.jsonjob import dumps

            ctx.out(dumps(job))
            continue
        from ..jobs.model import resolve

        resolved = loaded.resolved or resolve(job)
        if opts["parse_debug"]:
            ctx.info(f"{loaded.path}: parsed: {len(resolved.tasks)} tasks, {len(resolved.commands)} commands, "
                     f"{len(job.warnings)} warnings")
            continue
        if settings is None:
            settings = _settings(ctx, opts["engine"])
        jid = submit.spool(settings, resolved, _spool_options(opts, loaded, owner))
        _ok(ctx, opts, f"job script accepted, jid: {jid}", jid)
        spooled.append(jid)
        del loaded, job, resolved  # a big job need not stay in memory while we wait
    status = ExitStatus.OK
    if opts["wait"] and spooled:
        from ..follow import follow

        gc.enable()  # following may take hours; the job objects are gone

        for jid in spooled:
            if follow(settings, jid, say=lambda text: click.echo(text, err=True)) != ExitStatus.OK:
                status = ExitStatus.JOB_FAILED
    return status


def _ok(ctx: Context, opts: dict, msg: str, jid: int | None) -> None:
    if opts["status_json"]:
        out = {"rc": 0, "msg": msg}
        if jid is not None:
            out["jid"] = jid
        ctx.out(json.dumps(out))
    elif not ctx.quiet:
        ctx.out(f"OK {msg}")


def _jobs(ctx: Context, opts: dict, args: list[str]):
    from ..jobs import generate

    if opts["command_mode"] or opts["local_command"]:
        if not args:
            raise UsageError("no command given after -c")
        spec = generate.CommandSpec(
            argv=args, local=opts["local_command"], title=opts["title"], svckey=opts["svckey"],
            cmdsvckey=opts["cmdsvckey"], envkey=[opts["envkey"]] if opts["envkey"] else None,
            range_spec=opts["range_spec"], itervalues=opts["itervalues"], iterfile=opts["iterfile"],
            task_title=opts["task_title"], range_formatting=opts["range_formatting"],
            runtime_bounds=opts["runtime_bounds"], limit_tags=opts["limit_tags"])
        job = generate.command_job(spec)
        yield submit.Loaded(job, "", "generated", "<command line>")
        return
    for name in ("range_spec", "itervalues", "iterfile", "task_title", "runtime_bounds", "limit_tags", "cmdsvckey"):
        if opts[name] is not None:
            raise UsageError(f"--{name.replace('_spec', '').replace('_', '-')} goes with -c or -C")
    if not args:
        raise UsageError("no job script file(s) specified")
    rib_mode = opts["ribs"] or opts["rib"] or all(a.lower().endswith(".rib") for a in args)
    if rib_mode:
        job = generate.rib_job(args, single=opts["rib"], nrm=opts["nrm"], title=opts["title"], svckey=opts["svckey"])
        if opts["envkey"]:
            job.envkey = (opts["envkey"],)
        yield submit.Loaded(job, "", "generated", "<rib files>")
        return
    if opts["in_json"] and opts["in_alfred"]:
        raise UsageError("give -J or -A, not both")
    fmt = "json" if opts["in_json"] else ("alfred" if opts["in_alfred"] else None)
    for path in args:
        loaded = submit.load(path, fmt=fmt, strict=opts["strict"], remotecleankey=opts["remotecleankey"])
        if opts["envkey"]:
            loaded.job.envkey = (opts["envkey"],)
        yield loaded


def _spool_options(opts: dict, loaded: "submit.Loaded", owner: str):
    from ..db.spool import SpoolOptions

    generated = loaded.format == "generated"
    return SpoolOptions(
        owner=owner,
        spoolhost=opts["hname"] or submit.default_host(),
        spoolfile="" if generated else os.path.abspath(loaded.path),
        spoolcwd=(opts["jobcwd"] or os.getcwd()).replace("\\", "/"),
        spooladdr=opts["haddr"] or "",
        script=loaded.text or None,
        scriptformat=loaded.format,
        # for job files --svckey is an extra job-wide key; generated jobs already carry it
        extra_service="" if generated else (opts["svckey"] or ""),
        paused=True if opts["paused"] else None,
        priority=opts["priority"],
        tier=opts["tier"],
        projects=opts["projects"].split() if opts["projects"] else None,
        aftertime=submit.parse_aftertime(opts["aftertime"]) if opts["aftertime"] else None,
        afterjids=submit.parse_jids(opts["afterjid"]) if opts["afterjid"] else None,
        maxactive=opts["maxactive"],
    )
