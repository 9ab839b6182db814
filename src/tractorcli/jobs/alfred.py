"""Alfred / Tractor job scripts (`.alf`): the operators, on top of `tcl.py`.

`parse(text, filename)` evaluates the script in the safe interpreter with
the job operators defined (`Job`, `Task`, `RemoteCmd`, `Cmd`, `Instance`,
`Iterate`, `Assign`) and returns the `Job` model, resolved and checked.

Choices where Tractor's behaviour is not documented (see also the README):

* Unknown options are reported as warnings and ignored, so that years of
  pipeline-written scripts keep spooling; `strict=True` (`tractor-spool
  --strict`) refuses them.  Two misspellings seen in real scripts are
  understood with a warning: `-project` (for `-projects`) and `-pause` (for
  `-paused`).  Legacy `-pbias` is Tractor's old name for `-priority`.
* A launch expression is one Tcl list.  Some generators write it as several
  words (`RemoteCmd {app} {"-f"} {file}`); their lists are joined, with a
  warning (an error under strict).
* `-id` and `-refersto` values are taken as one-element Tcl lists, so
  `-refersto {"id0001"}` refers to `id0001`, as the quotes intend.
* `Assign var {value}` defines a job variable: later quoted words see it as
  a Tcl variable, and `$var` / `${var}` left literally inside braces in
  launch expressions and `-msg` are replaced at spool time (Alfred replaced
  them at launch; the values cannot change in between).
* `Iterate var -from A -to B [-by N|binary] -template {...}` expands at
  parse time: for each value, `$var` in the template text is replaced and
  the template evaluated; `-subtasks` of an Iterate follow the generated
  tasks.
* `-whendone {cmd}` / `-whenerror {cmd}` become postscript Cmds run through
  `/bin/sh -c` on the spooling host (or RemoteCmds with the service given
  by `remotecleankey`), as Tractor translates them.
"""

from __future__ import annotations

import datetime as dt
import re

from .model import Command, DirMap, Instance, Job, JobError, Location, Task, resolve
from .alf_options import CMD_OPTS as _CMD_OPTS
from .alf_options import JOB_ALIASES as _JOB_ALIASES
from .alf_options import JOB_OPTS as _JOB_OPTS
from .alf_options import TASK_OPTS as _TASK_OPTS
from .alf_options import WHEN as _WHEN
from .fastalf import FastBody
from . import tcl as _tcl
from .tcl import BARE, BRACE, Interp, Source, TclError, Word, split_list, too_big

__all__ = ["parse", "parse_tasks", "AlfredOptions"]

# Plain -subtasks and -cmds bodies take fastalf's path (tests turn it off to
# compare both paths on the same scripts).
FAST_PATH = True

# Iterations of one Iterate, computed from -from, -to and -by before any is made.
MAX_ITERATIONS = 10_000_000

# Characters a job cannot hold: PostgreSQL text has no NUL, and a lone
# surrogate (from a \ud800 escape) is no character UTF-8 can encode.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class AlfredOptions:
    """Parse-time settings that come from tractor-spool."""

    def __init__(self, *, strict: bool = False, remotecleankey: str | None = None):
        self.strict = strict
        self.remotecleankey = remotecleankey


def parse(text: str, filename: str = "<script>", *, strict: bool = False,
          remotecleankey: str | None = None, check: bool = True) -> Job:
    """Parse an Alfred job script into a checked Job."""
    _check_text(text, filename)
    p = _Parser(filename, AlfredOptions(strict=strict, remotecleankey=remotecleankey))
    job = p.run(text)
    if check:
        resolve(job)  # raises JobError naming both places on a bad reference or cycle
    return job


def parse_tasks(text: str, filename: str = "<expand>", *, strict: bool = False) -> tuple:
    """Parse task definitions as an expand command prints them (reference §6.4).

    The text is read as the body of a Job's -subtasks: `Task`, `Instance`
    and `Iterate` at the top level (`Job` and commands there are errors).
    Returns the nodes in order; a JobError names file:line:col.
    """
    _check_text(text, filename)
    p = _Parser(filename, AlfredOptions(strict=strict))
    bucket: list = []
    p.context = [("nodes", bucket)]
    p.interp.eval_source(Source(text, filename))
    return tuple(bucket)


# --- option tables: jobs/alf_options.py (the fast path reads them too) ----------

class _Parser:
    def __init__(self, filename: str, opts: AlfredOptions):
        self.file = filename
        self.opts = opts
        self.interp = Interp(filename)
        self.job: Job | None = None
        self.warnings: list[str] = []
        self.assignments: list[tuple[str, str]] = []
        # what operators may appear where, and where their results go
        self.context: list[tuple[str, list]] = [("top", [])]
        for name, fn in (("Job", self.op_job), ("Task", self.op_task), ("RemoteCmd", self.op_remotecmd),
                         ("Cmd", self.op_cmd), ("Instance", self.op_instance), ("Iterate", self.op_iterate),
                         ("Assign", self.op_assign)):
            self.interp.commands[name] = fn

    # -- driver ------------------------------------------------------------------

    def run(self, text: str) -> Job:
        src = Source(text, self.file)
        self.interp.eval_source(src)
        if self.job is None:
            raise JobError("no Job in this script", Location(self.file, 1, 1),
                           hint="a job script is one Job -title {...} -subtasks {...} command")
        self.job.warnings = self.warnings
        if self.assignments:
            _apply_assignments(self.job, dict(self.assignments))
        return self.job

    def warn(self, message: str, word: Word) -> None:
        text = f"{word.where}: {message}"
        if self.opts.strict:
            raise JobError(message + " (refused by --strict)", word.where)
        self.warnings.append(text)

    # -- generic option handling -----------------------------------------------------

    def options(self, op: str, words: list[Word], start: int, table: dict, aliases: dict | None = None
                ) -> list[tuple[str, str, Word, Word]]:
        """(field, kind, option word, value word) for each option, in order."""
        out = []
        i = start
        while i < len(words):
            w = words[i]
            name = w.value
            if not name.startswith("-") or name == "-":
                raise JobError(f"{op}: expected an option (such as -title), found {_show(name)}", w.where,
                               hint=_argv_hint(op) if op in ("RemoteCmd", "Cmd") else None)
            if aliases and name in aliases:
                self.warn(f"{op}: {name} is not a Tractor option; taken as {aliases[name]}", w)
                name = aliases[name]
            if i + 1 >= len(words):
                raise JobError(
                    f"{op}: option {name} needs a value on the same line",
                    w.where, hint="a newline ends a Tcl command; end the line with \\ to continue it")
            value = words[i + 1]
            spec = table.get(name)
            if spec is None:
                self.warn(f"{op}: unknown option {name} (ignored)", w)
            else:
                out.append((spec[0], spec[1], w, value))
            i += 2
        return out

    def convert(self, op: str, kind: str, opt: Word, v: Word):
        value = self._convert(op, kind, opt, v)
        if v.kind != BRACE or "\\" in v.value:  # only substitution or escapes make such characters
            _check_value(value, v, f"{op}: {opt.value}")
        return value

    def _convert(self, op: str, kind: str, opt: Word, v: Word):
        s = v.value
        try:
            if kind == "str":
                return s
            if kind == "int":
                return int(s.strip())
            if kind == "float":
                return float(s.strip())
            if kind == "bool":
                return _bool(s)
            if kind == "list":
                return tuple(split_list(s, lambda: v.where))
            if kind == "envkey":
                items = split_list(s, lambda: v.where)
                # `-envkey {setenv A=1 B=2}` is one key, not three
                return (s.strip(),) if items and items[0] == "setenv" and "{" not in s else tuple(items)
            if kind == "intlist":
                return tuple(int(x) for x in split_list(s, lambda: v.where))
            if kind == "argv":
                return tuple(split_list(s, lambda: v.where))
            if kind == "id":
                items = split_list(s, lambda: v.where)
                return items[0] if len(items) == 1 else (s or None)
            if kind == "samehost":
                return _bool(s) if s.strip() in ("0", "1", "true", "false", "yes", "no") else int(s) > 0
            if kind == "expand":
                t = s.strip()
                return None if t in ("0", "") else ("" if t == "1" else t)
            if kind == "when":
                if s.strip() not in _WHEN:
                    raise ValueError("expected done, error or always")
                return _WHEN[s.strip()]
            if kind == "after":
                return _after(s)
            if kind == "dirmaps":
                maps = []
                for item in split_list(s, lambda: v.where):
                    parts = split_list(item, lambda: v.where)
                    if len(parts) != 3:
                        raise ValueError(f"each dirmap is {{src dst zone}}, got {item!r}")
                    maps.append(DirMap(*parts))
                return tuple(maps)
        except TclError:
            raise
        except (ValueError, OverflowError) as exc:
            expected = {"int": "an integer", "float": "a number", "bool": "0 or 1", "intlist": "a list of integers",
                        "samehost": "0, 1 or a count"}.get(kind, "")
            detail = f"expected {expected}, got {_show(s)}" if expected else str(exc)
            raise JobError(f"{op}: {opt.value}: {detail}", v.where) from None
        raise AssertionError(kind)

    def collect(self, kind: str, word: Word, fast: bool = True) -> list:
        """Evaluate a script-valued option, collecting the nodes or commands it makes."""
        bucket: list = []
        self.context.append((kind, bucket))
        try:
            if fast and FAST_PATH and word.kind == BRACE and (kind == "nodes" or kind == "cmds"):
                FastBody(self, word.src).run(kind, word, bucket)
            else:
                self.interp.eval_word(word)
        finally:
            self.context.pop()
        return bucket

    def here(self, op: str, words: list[Word], *allowed: str) -> list:
        kind, bucket = self.context[-1]
        if kind not in allowed:
            where = {"top": "at the top level of the script", "nodes": "in -subtasks", "cmds": "in a command list",
                     "assigns": "in -init", "template": "in an Iterate -template"}[kind]
            wanted = {"Job": "at the top level", "Task": "in -subtasks", "Instance": "in -subtasks",
                      "Iterate": "in -subtasks", "RemoteCmd": "in -cmds, -cleanup or -postscript",
                      "Cmd": "in -cmds, -cleanup or -postscript", "Assign": "in -init"}[op]
            raise JobError(f"{op} is not allowed {where} (it belongs {wanted})", words[0].where)
        return bucket

    # -- operators -----------------------------------------------------------------------

    def op_job(self, interp: Interp, words: list[Word]) -> str:
        self.here("Job", words, "top")
        if self.job is not None:
            raise JobError("a script holds one Job; this is a second one", words[0].where, also=self.job.where)
        opts = self.options("Job", words, 1, _JOB_OPTS, _JOB_ALIASES)
        # -init assigns variables the other options may use: evaluate it first
        opts.sort(key=lambda o: o[1] != "assigns")
        job = Job(where=words[0].where)
        legacy: list[Command] = []
        for fld, kind, ow, vw in opts:
            if kind == "assigns":
                self.collect("assigns", vw)
                job.assignments = tuple(self.assignments)
            elif kind == "nodes":
                job.subtasks = tuple(self.collect("nodes", vw))
            elif kind == "cmds":
                runtype = "cleanup" if fld == "cleanup" else "post_always"
                cmds = self._commands(vw, runtype)
                setattr(job, fld, tuple(cmds))
            elif kind == "legacy_post":
                if vw.value.strip():
                    legacy.append(self._legacy_post(fld, vw))
            else:
                setattr(job, fld, self.convert("Job", kind, ow, vw))
        if legacy:
            job.postscript = job.postscript + tuple(legacy)
        self.job = job
        return ""

    def _commands(self, word: Word, runtype: str) -> list[Command]:
        cmds = self.collect("cmds", word)
        out = []
        for c in cmds:
            if runtype == "regular":
                if c.runtype != "regular":
                    raise JobError("-when belongs only to Job -postscript commands", c.where)
            elif runtype == "cleanup":
                if c.runtype != "regular":
                    raise JobError("-when belongs only to Job -postscript commands", c.where)
                c.runtype = "cleanup"
            else:  # postscript: keep the command's own -when (default always)
                if c.runtype == "regular":
                    c.runtype = "post_always"
            out.append(c)
        return out

    def _legacy_post(self, fld: str, vw: Word) -> Command:
        key = self.opts.remotecleankey
        if key:
            return Command(argv=("/bin/sh", "-c", vw.value), local=False, runtype=fld, service=key, where=vw.where)
        return Command(argv=("/bin/sh", "-c", vw.value), local=True, runtype=fld, where=vw.where)

    def op_task(self, interp: Interp, words: list[Word]) -> str:
        bucket = self.here("Task", words, "nodes")
        start = 1
        title = None
        if len(words) > 1 and not (words[1].value.startswith("-") and words[1].kind != BRACE and len(words) > 2
                                   and words[1].value in _TASK_OPTS):
            title = words[1].value
            start = 2
        if title is not None:
            _check_value(title, words[1], "Task: the title")
        task = Task(title="", where=words[0].where)
        for fld, kind, ow, vw in self.options("Task", words, start, _TASK_OPTS):
            if kind == "nodes":
                task.subtasks = tuple(self.collect("nodes", vw))
            elif kind == "cmds":
                cmds = self._commands(vw, "regular" if fld == "cmds" else "cleanup")
                setattr(task, fld, tuple(cmds))
            else:
                setattr(task, fld, self.convert("Task", kind, ow, vw))
        if title is not None:
            if task.title:
                self.warn(f"Task has both a title {_show(title)} and -title; -title wins", words[1])
            else:
                task.title = title
        bucket.append(task)
        return ""

    def op_instance(self, interp: Interp, words: list[Word]) -> str:
        bucket = self.here("Instance", words, "nodes")
        if len(words) == 3 and words[1].value == "-title":
            title = words[2].value
        elif len(words) == 2:
            title = words[1].value
        else:
            raise JobError("Instance takes one title: Instance {title}", words[0].where)
        _check_value(title, words[-1], "Instance: the title")
        bucket.append(Instance(title, where=words[0].where))
        return ""

    def op_remotecmd(self, interp: Interp, words: list[Word]) -> str:
        return self._cmd(words, local=False)

    def op_cmd(self, interp: Interp, words: list[Word]) -> str:
        return self._cmd(words, local=True)

    def _cmd(self, words: list[Word], local: bool) -> str:
        op = words[0].value
        bucket = self.here(op, words, "cmds")
        if len(words) < 2:
            raise JobError(f"{op} needs a launch expression: {op} {{app arg ...}}", words[0].where)
        # the launch expression: one list, or (non-standard) several words before the options
        # options are written bare (-service); braced or quoted words are argv
        k = 1
        while k < len(words) and not (words[k].kind == BARE and words[k].value.startswith("-")):
            k += 1
        if k == 1:
            # `Cmd -service {x} {argv}`: options first, argv last (RenderMan for Blender writes this)
            argv_words = [words[-1]]
            opt_words = words[1:-1]
        else:
            argv_words = words[1:k]
            opt_words = words[k:]
        argv: list[str] = []
        for w in argv_words:
            argv.extend(split_list(w.value, lambda w=w: w.where))
        if len(argv_words) > 1:
            self.warn(f"{op}: the launch expression is written as {len(argv_words)} words; "
                      "they are joined into one list", argv_words[1])
        if not argv:
            raise JobError(f"{op}: empty launch expression", argv_words[0].where)
        if any(_UNSTORABLE.search(a) for a in argv):
            for w in argv_words:
                _check_value(tuple(split_list(w.value)), w, f"{op}: the launch expression")
        cmd = Command(argv=tuple(argv), local=local, where=words[0].where)
        for fld, kind, ow, vw in self.options(op, [words[0], *opt_words], 1, _CMD_OPTS):
            setattr(cmd, fld, self.convert(op, kind, ow, vw))
        bucket.append(cmd)
        return ""

    def op_assign(self, interp: Interp, words: list[Word]) -> str:
        self.here("Assign", words, "assigns")
        if len(words) != 3:
            raise JobError("Assign takes a name and a value: Assign var {value}", words[0].where)
        name, value = words[1].value, words[2].value
        _check_value(name, words[1], "Assign: the name")
        _check_value(value, words[2], "Assign: the value")
        self.assignments.append((name, value))
        interp.vars[name] = value
        return ""

    def op_iterate(self, interp: Interp, words: list[Word]) -> str:
        bucket = self.here("Iterate", words, "nodes")
        if len(words) < 2 or words[1].value.startswith("-"):
            raise JobError("Iterate needs a variable name: Iterate var -from A -to B -template {...}", words[0].where)
        var = words[1].value
        spec: dict[str, Word] = {}
        i = 2
        while i < len(words):
            name = words[i].value
            if name not in ("-from", "-to", "-by", "-template", "-subtasks"):
                self.warn(f"Iterate: unknown option {name} (ignored)", words[i])
            if i + 1 >= len(words):
                raise JobError(f"Iterate: option {name} needs a value on the same line", words[i].where)
            spec[name] = words[i + 1]
            i += 2
        for need in ("-from", "-to", "-template"):
            if need not in spec:
                raise JobError(f"Iterate: {need} is required", words[0].where)
        lo = self._int_opt("Iterate", "-from", spec["-from"])
        hi = self._int_opt("Iterate", "-to", spec["-to"])
        by_word = spec.get("-by")
        binary = by_word is not None and by_word.value.strip() == "binary"
        step = 1 if by_word is None or binary else self._int_opt("Iterate", "-by", by_word)
        if step <= 0:
            raise JobError("Iterate: -by must be a positive integer (or binary)", by_word.where)
        # counted before any value is made: -to 100000000 is refused at once
        count = abs(hi - lo) + 1 if binary else abs(hi - lo) // step + 1
        if count > MAX_ITERATIONS:
            raise JobError(f"Iterate: {count:,} iterations; at most {MAX_ITERATIONS:,} are allowed",
                           words[0].where)
        values = _iterate_values(lo, hi, step, binary)
        template = spec["-template"]
        loc = template.where
        pattern = re.compile(r"\$(?:\{%s\}|%s(?![A-Za-z0-9_]))" % (re.escape(var), re.escape(var)))
        body = template.value
        for v in values:
            text = pattern.sub(str(v), body)
            interp.vars[var] = str(v)
            self.context.append(("nodes", bucket))
            try:
                interp.eval_source(Source(text, loc.file, loc.line, loc.col + 1))
            finally:
                self.context.pop()
        if "-subtasks" in spec:
            bucket.extend(self.collect("nodes", spec["-subtasks"]))
        return ""

    def _int_opt(self, op: str, name: str, w: Word) -> int:
        try:
            return int(w.value.strip())
        except ValueError:
            raise JobError(f"{op}: {name}: expected an integer, got {_show(w.value)}", w.where) from None


# --- helpers ------------------------------------------------------------------------------


def _unstorable(c: str) -> str:
    return "a NUL character (byte 0)" if c == "\0" else f"a lone surrogate (U+{ord(c):04X}, not a character)"


def _check_text(text: str, filename: str) -> None:
    """Refuse a script holding a character no job can hold, naming its place."""
    if text.isascii() and "\0" not in text:
        return  # (both C scans, some 20 times faster than the search below on a long script)
    m = _UNSTORABLE.search(text)
    if m is not None:
        raise JobError(f"the script holds {_unstorable(m.group())}, which a job cannot hold",
                       Source(text, filename).location(m.start()))


def _check_value(value, w: Word, what: str) -> None:
    """Refuse a value (made by substitution or escapes) holding a character no job can hold."""
    for s in (value,) if isinstance(value, str) else value if isinstance(value, tuple) else ():
        if isinstance(s, DirMap):
            _check_value((s.src, s.dst, s.zone), w, what)
            continue
        m = _UNSTORABLE.search(s) if isinstance(s, str) else None
        if m is not None:
            raise JobError(f"{what} holds {_unstorable(m.group())}, which a job cannot hold", w.where)


def _bool(s: str) -> bool:
    t = s.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(s)


def _show(s: str, limit: int = 40) -> str:
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _argv_hint(op: str) -> str:
    return f"the launch expression is one Tcl list: {op} {{app -flag value}}"


def _after(s: str) -> dt.datetime:
    """`{month day hour:minute}` or `{hour:minute}` (today), local time."""
    parts = s.split()
    now = dt.datetime.now()
    if len(parts) == 1:
        month, day = now.month, now.day
        hm = parts[0]
    elif len(parts) == 3:
        month, day, hm = int(parts[0]), int(parts[1]), parts[2]
    else:
        raise ValueError(f"expected {{month day hour:minute}} or {{hour:minute}}, got {s!r}")
    h, m = hm.split(":")
    return local_time(month, day, int(h), int(m), now)


def local_time(month: int, day: int, hour: int, minute: int, now: dt.datetime | None = None) -> dt.datetime:
    """That local wall-clock time, with the UTC offset in force on that date.

    The syntax has no year: it is this year's date, or next year's when this
    year's is more than half a year gone (`-after {01 05 10:00}` written in
    December means January).
    """
    now = now or dt.datetime.now()
    when = dt.datetime(now.year, month, day, hour, minute)
    if when < now - dt.timedelta(days=183):
        when = when.replace(year=now.year + 1)
    return when.astimezone()  # a naive time is local: astimezone applies that date's offset (DST)


def _iterate_values(lo: int, hi: int, step: int, binary: bool) -> list[int]:
    if not binary:
        return list(range(lo, hi + 1, step)) if hi >= lo else list(range(lo, hi - 1, -step))
    # "binary" order: the ends first, then midpoints of ever smaller intervals,
    # so a partial run already samples the whole range
    a, b = min(lo, hi), max(lo, hi)
    out, seen = [], set()
    for v in (lo, hi):
        if v not in seen:
            seen.add(v)
            out.append(v)
    intervals = [(a, b)]
    while intervals:
        nxt = []
        for x, y in intervals:
            if y - x < 2:
                continue
            mid = (x + y) // 2
            if mid not in seen:
                seen.add(mid)
                out.append(mid)
            nxt += [(x, mid), (mid, y)]
        intervals = nxt
    return out


_DOLLAR = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z0-9_]+))")


def _apply_assignments(job: Job, values: dict[str, str]) -> None:
    """Replace $var of Assign variables left literally in launch expressions."""

    def sub(s: str, c: Command) -> str:
        if "$" not in s:
            return s
        size = len(s)

        def value(m: re.Match) -> str:
            nonlocal size
            v = values.get(m.group(1) or m.group(2), m.group(0))
            size += len(v) - (m.end() - m.start())
            if size > _tcl.MAX_VALUE:
                raise too_big(c.where)
            return v

        return _DOLLAR.sub(value, s)

    def fix(cmds):
        for c in cmds:
            c.argv = tuple(sub(a, c) for a in c.argv)
            if c.msg:
                c.msg = sub(c.msg, c)

    from .model import iter_tasks

    for t in iter_tasks(job.subtasks):
        fix(t.cmds)
        fix(t.cleanup)
    fix(job.cleanup)
    fix(job.postscript)


def parse_file(path: str, **kw) -> Job:
    """Read and parse a job file (UTF-8 text, at most script_text.MAX_SCRIPT_BYTES)."""
    from .script_text import read_script

    return parse(read_script(path), path, **kw)
