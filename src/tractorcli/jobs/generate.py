"""Jobs built from a command line: tractor-spool -c / -C / --rib / --ribs.

Following Tractor's spooler (reference section 1.3):

* `-c app args...` makes one Task running one RemoteCmd (`-C`: a local
  Cmd); an argv0 starting with `=` names a blade built-in
  (`=printenv` -> `TractorBuiltIn printenv`).
* `--range`, `--itervalues` or `--iterfile` make one task per value; the
  word `RANGE` / `ITER` in the command, `--cmdsvckey`, `--limit-tags` and
  `--task-title` is replaced by it, and so are Python format fields
  `{RANGE}` / `{RANGE:0>5}` (`--range-formatting` picks which style).
* Service keys: `--svckey` becomes the job's service (the only key); without
  it each command gets `--cmdsvckey`, else `PixarRender`.
* `--ribs`: one task per RIB file (`prman -Progress file`); `--rib`: one task
  rendering all of them in one prman; `--nrm` runs `netrender %H -f
  -Progress` as a local Cmd instead.

Where Tractor does not say: task titles default to the command line of the
task (`echo 3`), shortened to 80 characters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import BadInput
from .model import Command, Job, Task

DEFAULT_SERVICE = "PixarRender"


@dataclass
class CommandSpec:
    argv: list[str]
    local: bool = False
    title: str | None = None
    svckey: str | None = None
    cmdsvckey: str | None = None
    envkey: list[str] | None = None
    range_spec: str | None = None
    itervalues: str | None = None
    iterfile: str | None = None
    task_title: str | None = None
    range_formatting: str = "both"
    runtime_bounds: str | None = None
    limit_tags: str | None = None


def parse_range(spec: str, option: str = "--range") -> list[int]:
    """`1-10`, `1-4,7,9,16-20`, `-14--10`, `10-1` (counts down)."""
    values: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if not m:
            raise BadInput(f"{option} {spec!r}: expected numbers and ranges such as 1-10 or 1-4,7,9,16-20")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = 1 if b >= a else -1
        values.extend(range(a, b + step, step))
        if len(values) > 10_000_000:
            raise BadInput(f"{option} {spec!r}: more than 10,000,000 values")
    return values


def parse_runtime_bounds(spec: str) -> tuple[float | None, float | None]:
    """`MAX`, `MIN,MAX` or `MIN-MAX` seconds; a MAX of 0 means unbounded."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:[,-]\s*(\d+(?:\.\d+)?)\s*)?", spec)
    if not m:
        raise BadInput(f"--runtime-bounds {spec!r}: expected MAX, MIN,MAX or MIN-MAX seconds")
    if m.group(2) is None:
        lo, hi = None, float(m.group(1))
    else:
        lo, hi = float(m.group(1)), float(m.group(2))
    if hi == 0:
        hi = None
    if lo is not None and hi is not None and lo > hi:
        raise BadInput(f"--runtime-bounds {spec!r}: the minimum is above the maximum")
    return lo, hi


def _substituter(token: str, mode: str):
    """Replace a value into text: Python format fields ({RANGE:0>5}) and/or the plain word."""
    field = re.compile(r"\{" + token + r"(?::([^{}]*))?\}")
    if mode not in ("both", "sfmt", "text"):
        raise BadInput(f"--range-formatting {mode!r}: expected both, sfmt or text")

    def sub(text: str, value) -> str:
        if mode in ("both", "sfmt"):
            def fmt(m: re.Match) -> str:
                try:
                    return format(value, m.group(1) or "")
                except (ValueError, TypeError) as exc:
                    raise BadInput(f"cannot format {value!r} with {{{token}:{m.group(1)}}}: {exc}") from None

            text = field.sub(fmt, text)
        if mode in ("both", "text"):
            text = text.replace(token, str(value))  # a plain replacement, as Tractor's spooler does
        return text

    return sub


def _values(spec: CommandSpec) -> tuple[str | None, list]:
    given = [o for o, v in (("--range", spec.range_spec), ("--itervalues", spec.itervalues),
                            ("--iterfile", spec.iterfile)) if v is not None]
    if len(given) > 1:
        raise BadInput("only one of --range, --iterfile, and --itervalues can be specified at once")
    if spec.range_spec is not None:
        return "RANGE", parse_range(spec.range_spec)
    if spec.itervalues is not None:
        return "ITER", [v for v in spec.itervalues.split(",")]
    if spec.iterfile is not None:
        try:
            with open(spec.iterfile, encoding="utf-8") as f:
                return "ITER", [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise BadInput(f"--iterfile {spec.iterfile}: {exc.strerror}") from None
    return None, [None]


def command_job(spec: CommandSpec) -> Job:
    if not spec.argv or not spec.argv[0]:
        raise BadInput("no command given after -c (tractor-spool -c app arg ...)")
    argv = list(spec.argv)
    app = os.path.basename(argv[0])
    if argv[0].startswith("="):
        app = argv[0][1:]
        argv = ["TractorBuiltIn", app, *argv[1:]]
    token, values = _values(spec)
    sub = _substituter(token, spec.range_formatting) if token else None
    lo, hi = parse_runtime_bounds(spec.runtime_bounds) if spec.runtime_bounds else (None, None)
    tasks = []
    for v in values:
        def s(text: str) -> str:
            return sub(text, v) if sub else text

        cmd_argv = tuple(s(a) for a in argv)
        service = s(spec.cmdsvckey) if spec.cmdsvckey else ("" if spec.svckey else DEFAULT_SERVICE)
        tags = tuple(t for t in re.split(r"[\s,]+", s(spec.limit_tags)) if t) if spec.limit_tags else ()
        cmd = Command(cmd_argv, local=spec.local, service=service, tags=tags,
                      envkey=tuple(spec.envkey or ()), minrunsecs=lo, maxrunsecs=hi)
        if spec.task_title:
            title = s(spec.task_title)
        elif token is None:
            title = app
        else:
            title = _shorten(" ".join(cmd_argv))
        tasks.append(Task(title, cmds=(cmd,)))
    return Job(title=spec.title or app, service=spec.svckey or "", subtasks=tuple(tasks),
               envkey=tuple(spec.envkey or ()))


def rib_job(files: list[str], *, single: bool, nrm: bool = False, title: str | None = None,
            svckey: str | None = None) -> Job:
    if not files:
        raise BadInput("no RIB files given")
    service = "" if svckey else ("PixarNRM" if nrm else DEFAULT_SERVICE)

    def command(paths: list[str]) -> Command:
        if nrm:
            return Command(("netrender", "%H", "-f", "-Progress", *paths), local=True, service=service,
                           tags=("prman",))
        return Command(("prman", "-Progress", *paths), service=service, tags=("prman",))

    if single:
        tasks = (Task(_shorten(" ".join(os.path.basename(f) for f in files)), cmds=(command(files),)),)
    else:
        tasks = tuple(Task(f, cmds=(command([f]),)) for f in files)
    default_title = os.path.basename(files[0]) + (" ..." if len(files) > 1 else "")
    return Job(title=title or default_title, service=svckey or "", subtasks=tasks)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
