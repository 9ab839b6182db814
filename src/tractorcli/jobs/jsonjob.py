"""Tractor's JSON job format (reference §5), both ways.

`to_json(job)` / `dumps(job)` write a job; `from_json(text_or_dict)` reads
one, whether we wrote it or Tractor's own tools did::

    {"TractorJob": "2.0",
     "data": {job keys ..., "commands": [job cleanup and postscript commands]},
     "children": [{"data": {task keys ..., "commands": [...], "ants": [titles]},
                   "children": [...]},
                  {"instance": "title"}]}

Writing is lossless: `from_json(to_json(job)) == job` for every model value.
Keys whose value is the model's default are left out (a million-task job
stays small); a missing key means the default.  A `null` value also means
the default, for any key.

Keys, where §5 names them and where it is silent (the model field is in
parentheses when its name differs):

* job `data`: `title`, `aftertime` (`after`, epoch seconds; read when
  `after` is absent, 0 meaning none), `after` (ISO 8601 text, written next
  to `aftertime` because epoch seconds lose whether the time was naive or
  its zone), `afterjids`, `minslots` / `maxslots` (`atleast` / `atmost`),
  `maxactive`, `tags`, `projects`, `tier`, `service`, `avoid`, `envkey`,
  `priority`, `crews`, `etalevel`, `comment`, `metadata`, `editpolicy`,
  `dirmaps` (`[[src, dst, zone], ...]`), `assignments` (`[[var, value], ...]`,
  in order; an object `{var: value}` is also read), `serialsubtasks`,
  `paused`, `spoolcwd`, `commands`.
  Tractor's spool bookkeeping (`owner`, `spoolhost`, `spoolfile`,
  `spooldate`, `spooltime`, `jid`) is accepted and not kept.
* task `data`: `title`, `id`, `service`, `minslots` / `maxslots`,
  `serialsubtasks`, `resumeblock`, `chaser`, `preview` (lists), `metadata`,
  `commands` (the task's `-cmds` and `-cleanup`, told apart by `type`),
  `ants`.
* command: `type`, `argv`, `service`, `tags`, `envkey`, `minslots` /
  `maxslots`, `samehost`, `id`, `refersto`, `expandfile` (the file of
  `-expand {file}`; the X of `type` alone means task definitions on
  stdout), `msg`, `retryrc`, `minrunsecs`, `maxrunsecs`, `resumewhile`,
  `resumepin`, `metadata`, `metrics`, and `runtype`, written only for a
  command whose runtype is not the one its place implies (a "regular"
  command in a job's cleanup list, say), so that such models survive too.

`type` is Tractor's code: `R` (RemoteCmd) or `L` (local Cmd); then `C`
(a task's -cmds), `D` (cleanup) or `P` (job postscript) followed by `D`
(when done), `E` (when error) or nothing (always); then `X` if the command
expands.  Missing means `RC`.  A task holds `C` and `D` commands, the job
`D` and `P` ones.

Values: bools are written `true`/`false` (`0`/`1` are read too).  `tags`
are written as Tractor's space-separated string when that splits back into
the same tags, else as a list; either form is read, as are
space-separated strings for the other name lists (`projects`, `crews`,
`avoid`, `argv`, ...).  An `envkey` string is one key.

Instances: an Instance node is written in its place among the task's
`children` as `{"instance": "title"}`, which keeps its position, and its
title is also listed in the task's `ants`, Tractor's form.  When reading,
`children` entries win: a task's `ants` are read only when its children
hold no instance entries, and then become Instances after its subtasks.
An integer in `ants` is read as a tid (tasks numbered depth-first from 1)
and names that task's title.

Paused: Tractor writes a paused job as priority -(p+1).  A negative
`priority` is read that way, unless the job data has a `paused` key: we
always write `paused`, so a genuinely negative priority survives.

`TractorJob` must be present; versions up to 2.0 are read, newer ones are
refused.  A leading `#!...` line (a checkpoint header) is skipped.  Keys we
do not know are ignored with a warning in `job.warnings` (one per key and
kind of object, with a count).

Errors are `JobError`s with a place: JSON syntax errors at their line and
column; a wrong value at the line and column of that value, with its JSON
path in the message (`children[3].data.commands[0].argv: expected a list
of strings`); a bad reference found by `resolve()` at the object that
holds it.  When the input is a dict rather than text, the place is line 1,
column 1 and the path says where.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import gc
import json
import re
from typing import Any, Iterator

from .model import RUNTYPES, Command, DirMap, Instance, Job, JobError, Location, Task, iter_tasks, resolve

__all__ = ["to_json", "dumps", "from_json", "FORMAT_VERSION", "JOB_KEYS", "TASK_KEYS", "COMMAND_KEYS"]

FORMAT_VERSION = "2.0"

# model field -> JSON key (documentation, and the test that every model field is carried)
JOB_KEYS = {
    "title": "title", "subtasks": "children", "cleanup": "commands", "postscript": "commands",
    "after": "after", "afterjids": "afterjids", "atleast": "minslots", "atmost": "maxslots",
    "maxactive": "maxactive", "tags": "tags", "projects": "projects", "tier": "tier", "service": "service",
    "avoid": "avoid", "envkey": "envkey", "priority": "priority", "crews": "crews", "etalevel": "etalevel",
    "comment": "comment", "metadata": "metadata", "editpolicy": "editpolicy", "dirmaps": "dirmaps",
    "assignments": "assignments", "serialsubtasks": "serialsubtasks", "paused": "paused",
    "spoolcwd": "spoolcwd",
}
TASK_KEYS = {
    "title": "title", "subtasks": "children", "cmds": "commands", "cleanup": "commands", "id": "id",
    "service": "service", "atleast": "minslots", "atmost": "maxslots", "serialsubtasks": "serialsubtasks",
    "resumeblock": "resumeblock", "chaser": "chaser", "preview": "preview", "metadata": "metadata",
}
COMMAND_KEYS = {
    "argv": "argv", "local": "type", "runtype": "type", "service": "service", "tags": "tags",
    "envkey": "envkey", "atleast": "minslots", "atmost": "maxslots", "samehost": "samehost", "id": "id",
    "refersto": "refersto", "expand": "expandfile", "msg": "msg", "retryrc": "retryrc",
    "minrunsecs": "minrunsecs", "maxrunsecs": "maxrunsecs", "resumewhile": "resumewhile",
    "resumepin": "resumepin", "metadata": "metadata", "metrics": "metrics",
}

_SLOT_ALIASES = frozenset({"atleast", "atmost"})  # the Alfred names, also read
_JOB_DATA = frozenset(k for k in JOB_KEYS.values() if k != "children") | {"aftertime"} | _SLOT_ALIASES
_JOB_IGNORED = frozenset({"owner", "spoolhost", "spoolfile", "spooldate", "spooltime", "jid"})
_TASK_DATA = frozenset(k for k in TASK_KEYS.values() if k != "children") | {"ants"} | _SLOT_ALIASES
_CMD_DATA = frozenset(COMMAND_KEYS.values()) | {"runtype"} | _SLOT_ALIASES
_NODE = frozenset({"data", "children", "instance"})
_TOP = frozenset({"TractorJob", "data", "children"})

# --- writing -------------------------------------------------------------------------

# the runtype a command's place implies: task -cmds, any cleanup, job postscript
_NATURAL = {"C": "regular", "D": "cleanup"}
_POST_CODE = {"post_always": "", "post_done": "D", "post_error": "E"}


def _names(items: tuple[str, ...]) -> str | list[str]:
    # Tractor's space-separated form, when it splits back into the same names
    joined = " ".join(items)
    return joined if joined.split() == list(items) else list(items)


def _command(c: Command, place: str) -> dict:
    if place == "P":
        sub = _POST_CODE.get(c.runtype)
        code = ("L" if c.local else "R") + "P" + (sub or "")
        odd = sub is None
    else:
        code = ("L" if c.local else "R") + place
        odd = c.runtype != _NATURAL[place]
    if c.expand is not None:
        code += "X"
    d: dict[str, Any] = {"type": code, "argv": list(c.argv)}
    if c.service:
        d["service"] = c.service
    if c.tags:
        d["tags"] = _names(c.tags)
    if c.envkey:
        d["envkey"] = list(c.envkey)
    if c.atleast is not None:
        d["minslots"] = c.atleast
    if c.atmost is not None:
        d["maxslots"] = c.atmost
    if c.samehost:
        d["samehost"] = True
    if c.id is not None:
        d["id"] = c.id
    if c.refersto is not None:
        d["refersto"] = c.refersto
    if c.expand:
        d["expandfile"] = c.expand
    if c.msg is not None:
        d["msg"] = c.msg
    if c.retryrc:
        d["retryrc"] = list(c.retryrc)
    if c.minrunsecs is not None:
        d["minrunsecs"] = c.minrunsecs
    if c.maxrunsecs is not None:
        d["maxrunsecs"] = c.maxrunsecs
    if c.resumewhile:
        d["resumewhile"] = list(c.resumewhile)
    if c.resumepin:
        d["resumepin"] = True
    if c.metadata:
        d["metadata"] = c.metadata
    if c.metrics:
        d["metrics"] = c.metrics
    if odd:
        d["runtype"] = c.runtype
    return d


def _task(t: Task) -> dict:
    d: dict[str, Any] = {"title": t.title}
    if t.id is not None:
        d["id"] = t.id
    if t.service is not None:
        d["service"] = t.service
    if t.atleast is not None:
        d["minslots"] = t.atleast
    if t.atmost is not None:
        d["maxslots"] = t.atmost
    if t.serialsubtasks:
        d["serialsubtasks"] = True
    if t.resumeblock:
        d["resumeblock"] = True
    if t.chaser:
        d["chaser"] = list(t.chaser)
    if t.preview:
        d["preview"] = list(t.preview)
    if t.metadata:
        d["metadata"] = t.metadata
    if t.cmds or t.cleanup:
        d["commands"] = [_command(c, "C") for c in t.cmds] + [_command(c, "D") for c in t.cleanup]
    return d


def _job_data(j: Job) -> dict:
    d: dict[str, Any] = {"title": j.title}
    if j.after is not None:
        try:
            ts = j.after.timestamp()  # a naive time is taken as local time, as Tractor does
            d["aftertime"] = int(ts) if ts == int(ts) else ts
        except (OverflowError, OSError, ValueError):
            pass  # outside what epoch seconds hold: `after` alone says it
        d["after"] = j.after.isoformat()
    if j.afterjids:
        d["afterjids"] = list(j.afterjids)
    if j.atleast is not None:
        d["minslots"] = j.atleast
    if j.atmost is not None:
        d["maxslots"] = j.atmost
    if j.maxactive:
        d["maxactive"] = j.maxactive
    if j.tags:
        d["tags"] = _names(j.tags)
    if j.projects:
        d["projects"] = list(j.projects)
    if j.tier:
        d["tier"] = j.tier
    if j.service:
        d["service"] = j.service
    if j.avoid:
        d["avoid"] = list(j.avoid)
    if j.envkey:
        d["envkey"] = list(j.envkey)
    if j.priority is not None:
        d["priority"] = j.priority
    if j.crews:
        d["crews"] = list(j.crews)
    if j.etalevel is not None:
        d["etalevel"] = j.etalevel
    if j.comment:
        d["comment"] = j.comment
    if j.metadata:
        d["metadata"] = j.metadata
    if j.editpolicy:
        d["editpolicy"] = j.editpolicy
    if j.dirmaps:
        d["dirmaps"] = [[m.src, m.dst, m.zone] for m in j.dirmaps]
    if j.assignments:
        d["assignments"] = [[k, v] for k, v in j.assignments]
    if j.serialsubtasks:
        d["serialsubtasks"] = True
    d["paused"] = bool(j.paused)  # always: it tells a negative priority from Tractor's paused form
    if j.spoolcwd:
        d["spoolcwd"] = j.spoolcwd
    if j.cleanup or j.postscript:
        d["commands"] = [_command(c, "D") for c in j.cleanup] + [_command(c, "P") for c in j.postscript]
    return d


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a big acyclic structure.

    Every few hundred new containers would start a collection that walks
    all the objects made so far: at a million tasks that is most of the
    time spent.  Nothing built here is cyclic; reference counting frees it.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def to_json(job: Job) -> dict:
    """The job as Tractor's JSON structure (dicts and lists, ready for json.dump)."""
    with _no_gc():
        return _to_json(job)


def _to_json(job: Job) -> dict:
    top: dict[str, Any] = {"TractorJob": FORMAT_VERSION, "data": _job_data(job), "children": []}
    # an explicit stack: task trees may be deeper than Python's recursion limit
    stack = [(job.subtasks, top["children"], None)]
    while stack:
        nodes, out, data = stack.pop()
        ants = None
        for n in nodes:
            if isinstance(n, Task):
                entry: dict[str, Any] = {"data": _task(n)}
                out.append(entry)
                if n.subtasks:
                    entry["children"] = []
                    stack.append((n.subtasks, entry["children"], entry["data"]))
            else:
                out.append({"instance": n.title})
                if data is not None:
                    if ants is None:
                        ants = data["ants"] = []
                    ants.append(n.title)
    return top


def dumps(job: Job, indent: int | None = None) -> str:
    """The job as JSON text."""
    try:
        doc = to_json(job)
        with _no_gc():
            return json.dumps(doc, ensure_ascii=False, indent=indent)
    except RecursionError:
        raise JobError("the job nests its tasks too deeply to be written as JSON",
                       hint="write it as an Alfred script instead") from None


# --- reading -------------------------------------------------------------------------


class _Bad(Exception):
    """A wrong value at a JSON path (turned into a located JobError at the top)."""

    def __init__(self, path: tuple, message: str):
        self.path = path
        self.message = message


def _show_path(path: tuple) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.isidentifier():
            out += ("." if out else "") + p
        else:
            out += "[" + json.dumps(str(p), ensure_ascii=False) + "]"
    return out or "the document"


def _str(v, path, key) -> str:
    if type(v) is str:
        return v
    raise _Bad(path + (key,), "expected a string")


def _int(v, path, key) -> int:
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    raise _Bad(path + (key,), "expected an integer")


def _float(v, path, key) -> float:
    if type(v) is float:
        return v
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:
            raise _Bad(path + (key,), "number out of range") from None
    raise _Bad(path + (key,), "expected a number")


def _bool(v, path, key) -> bool:
    if v is True or v is False:
        return v
    if type(v) is int and v in (0, 1):
        return bool(v)
    raise _Bad(path + (key,), "expected true or false (or 0 or 1)")


def _strs(v, path, key) -> tuple[str, ...]:
    if type(v) is list:
        for i, x in enumerate(v):
            if type(x) is not str:
                raise _Bad(path + (key, i), "expected a string")
        return tuple(v)
    if type(v) is str:
        return tuple(v.split())
    raise _Bad(path + (key,), "expected a list of strings")


def _ints(v, path, key) -> tuple[int, ...]:
    if type(v) is str:
        try:
            return tuple(int(x) for x in v.split())
        except ValueError:
            raise _Bad(path + (key,), "expected a list of integers") from None
    if type(v) is not list:
        raise _Bad(path + (key,), "expected a list of integers")
    return tuple(_int(x, path + (key,), i) for i, x in enumerate(v))


def _envkey(v, path, key) -> tuple[str, ...]:
    if type(v) is str:
        return (v,) if v else ()
    return _strs(v, path, key)


def _runtype(v, path, key) -> str:
    if type(v) is str and v in RUNTYPES:
        return v
    raise _Bad(path + (key,), "expected one of " + ", ".join(RUNTYPES))


# JSON key -> (model field, reader), for the keys that map one to one
_CMD_FIELDS = {
    "service": ("service", _str), "tags": ("tags", _strs), "envkey": ("envkey", _envkey),
    "minslots": ("atleast", _int), "maxslots": ("atmost", _int), "atleast": ("atleast", _int),
    "atmost": ("atmost", _int), "samehost": ("samehost", _bool), "id": ("id", _str),
    "refersto": ("refersto", _str), "expandfile": ("expand", _str), "msg": ("msg", _str),
    "retryrc": ("retryrc", _ints), "minrunsecs": ("minrunsecs", _float), "maxrunsecs": ("maxrunsecs", _float),
    "resumewhile": ("resumewhile", _strs), "resumepin": ("resumepin", _bool), "metadata": ("metadata", _str),
    "metrics": ("metrics", _str), "runtype": ("runtype", _runtype),
}
_TASK_FIELDS = {
    "title": ("title", _str), "id": ("id", _str), "service": ("service", _str), "minslots": ("atleast", _int),
    "maxslots": ("atmost", _int), "atleast": ("atleast", _int), "atmost": ("atmost", _int),
    "serialsubtasks": ("serialsubtasks", _bool), "resumeblock": ("resumeblock", _bool),
    "chaser": ("chaser", _strs), "preview": ("preview", _strs), "metadata": ("metadata", _str),
}

# type code -> (local, place, runtype, expands)
_CODES: dict[str, tuple[bool, str, str, bool]] = {}
for _l in "RL":
    for _place, _rt in (("C", "regular"), ("D", "cleanup"), ("P", "post_always"), ("PD", "post_done"),
                        ("PE", "post_error")):
        for _x in ("", "X"):
            _CODES[_l + _place + _x] = (_l == "L", _place[0], _rt, _x == "X")
del _l, _place, _rt, _x


class _Reader:
    def __init__(self, filename: str, positions: "_Positions | None" = None):
        self.file = filename
        self.pos = positions
        self.unknown: dict[tuple[str, str], list] = {}  # (kind, key) -> [first path, count]
        self.tid_ants: list[tuple[Instance, int, tuple]] = []

    def where(self, obj) -> Location | None:
        return self.pos.location(obj) if self.pos is not None else None

    def note_unknown(self, kind: str, d: dict, known: frozenset, path: tuple) -> None:
        for k in d:
            if k not in known:
                seen = self.unknown.get((kind, k))
                if seen is None:
                    self.unknown[(kind, k)] = [path + (k,), 1]
                else:
                    seen[1] += 1

    # -- commands ---------------------------------------------------------------------

    def command(self, d, base: tuple, index: int) -> tuple[str, Command]:
        path = base + ("commands", index)
        if type(d) is not dict:
            raise _Bad(path, "expected an object (a command)")
        if not _CMD_DATA.issuperset(d):
            self.note_unknown("command", d, _CMD_DATA, path)
        g = d.get
        code = g("type")
        if code is None:
            code = "RC"
        spec = _CODES.get(code) if type(code) is str else None
        if spec is None:
            raise _Bad(path + ("type",), f"unrecognized command type {json.dumps(code)} "
                       "(expected R or L, then C, D, P, PD or PE, then X to expand)")
        local, place, runtype, expands = spec
        argv = g("argv")
        if argv is None:
            raise _Bad(path, "a command needs an argv")
        c = Command(_strs(argv, path, "argv"), local, runtype)
        if expands:
            c.expand = ""
        if self.pos:
            c.where = self.where(d)
        # only the keys present: most commands carry a few of the twenty
        for k, v in d.items():
            f = _CMD_FIELDS.get(k)
            if f is not None and v is not None:
                setattr(c, f[0], f[1](v, path, k))
        return place, c

    def commands(self, v, path: tuple, job: bool) -> tuple[list[Command], list[Command]]:
        """A `commands` list split by place: a task's (-cmds, -cleanup), the job's (-cleanup, -postscript)."""
        first: list[Command] = []
        second: list[Command] = []
        if type(v) is not list:
            raise _Bad(path + ("commands",), "expected a list of commands")
        one, two = ("D", "P") if job else ("C", "D")
        for i, d in enumerate(v):
            place, c = self.command(d, path, i)
            if place == one:
                first.append(c)
            elif place == two:
                second.append(c)
            elif job:
                raise _Bad(path + ("commands", i, "type"),
                           "a job's own commands are cleanup (type ?D) or postscript (type ?P...)")
            else:
                raise _Bad(path + ("commands", i, "type"),
                           "postscript commands (type ?P...) belong to the job's commands, not a task's")
        return first, second

    # -- tasks ------------------------------------------------------------------------

    def task_fields(self, d, path: tuple) -> Task:
        if type(d) is not dict:
            raise _Bad(path, "expected an object (the task's attributes)")
        if not _TASK_DATA.issuperset(d):
            self.note_unknown("task data", d, _TASK_DATA, path)
        t = Task("")
        for k, v in d.items():
            f = _TASK_FIELDS.get(k)
            if f is not None and v is not None:
                setattr(t, f[0], f[1](v, path, k))
        v = d.get("commands")
        if v:
            cmds, cleanup = self.commands(v, path, False)
            t.cmds = tuple(cmds)
            if cleanup:
                t.cleanup = tuple(cleanup)
        elif v is not None and v != []:
            raise _Bad(path + ("commands",), "expected a list of commands")
        return t

    def ants(self, v, path: tuple, where) -> list[Instance]:
        if type(v) is not list:
            raise _Bad(path + ("ants",), "expected a list of task titles")
        out = []
        for i, a in enumerate(v):
            if type(a) is str:
                out.append(Instance(a, where=where))
            elif type(a) is int:
                inst = Instance("", where=where)
                self.tid_ants.append((inst, a, path + ("ants", i)))
                out.append(inst)
            else:
                raise _Bad(path + ("ants", i), "expected a task title (or a tid)")
        return out

    def nodes(self, children, path: tuple) -> tuple:
        """The subtasks under a `children` list, built bottom-up without recursion."""
        if children is None:
            return ()
        if type(children) is not list:
            raise _Bad(path + ("children",), "expected a list of tasks")
        # a frame: [children, next index, path, nodes built so far, its task, the task's data,
        #           whether the children held instance entries]
        stack = [[children, 0, path, [], None, None, False]]
        while True:
            f = stack[-1]
            kids, i, fpath, built = f[0], f[1], f[2], f[3]
            n = len(kids)
            while i < n:
                node = kids[i]
                i += 1
                if type(node) is not dict:
                    raise _Bad(fpath + ("children", i - 1), "expected an object (a task or {\"instance\": title})")
                if not _NODE.issuperset(node):
                    self.note_unknown("task", node, _NODE, fpath + ("children", i - 1))
                if "instance" in node:
                    built.append(self.instance(node, fpath + ("children", i - 1)))
                    f[6] = True
                    continue
                npath = fpath + ("children", i - 1)
                data = node.get("data")
                task = self.task_fields({} if data is None else data, npath + ("data",))
                if self.pos:
                    task.where = self.where(node)
                sub = node.get("children")
                if sub:
                    if type(sub) is not list:
                        raise _Bad(npath + ("children",), "expected a list of tasks")
                    f[1] = i
                    stack.append([sub, 0, npath, [], task, data, False])
                    break
                if sub is not None and sub != []:
                    raise _Bad(npath + ("children",), "expected a list of tasks")
                # a leaf, nearly every task of a big job: done without a frame
                if type(data) is dict and data.get("ants") is not None:
                    task.subtasks = tuple(self.ants(data["ants"], npath + ("data",), task.where))
                built.append(task)
            else:
                stack.pop()
                task = f[4]
                if task is None:
                    return tuple(built)
                data = f[5]
                if not f[6] and type(data) is dict and data.get("ants") is not None:
                    built.extend(self.ants(data["ants"], fpath + ("data",), task.where))
                task.subtasks = tuple(built)
                stack[-1][3].append(task)

    def instance(self, node: dict, path: tuple) -> Instance:
        title = node["instance"]
        if type(title) is not str:
            raise _Bad(path + ("instance",), "expected a task title")
        if "data" in node or "children" in node:
            raise _Bad(path, "an instance entry holds only \"instance\"")
        return Instance(title, where=self.where(node) if self.pos else None)

    # -- the job ------------------------------------------------------------------------

    def job(self, doc) -> Job:
        if type(doc) is not dict:
            raise _Bad((), "expected a JSON object with \"TractorJob\", \"data\" and \"children\"")
        _check_version(doc)
        if not _TOP.issuperset(doc):
            self.note_unknown("top level", doc, _TOP, ())
        d = doc.get("data")
        path: tuple = ("data",)
        if d is None:
            d = {}
        elif type(d) is not dict:
            raise _Bad(path, "expected an object (the job's attributes)")
        known = _JOB_DATA | _JOB_IGNORED
        if not known.issuperset(d):
            self.note_unknown("job data", d, known, path)
        g = d.get
        job = Job(where=self.where(doc) if self.pos else Location(self.file, 1, 1))
        if (v := g("title")) is not None:
            job.title = _str(v, path, "title")
        if (v := g("after")) is not None:
            try:
                job.after = dt.datetime.fromisoformat(_str(v, path, "after"))
            except ValueError:
                raise _Bad(path + ("after",), "expected an ISO 8601 date and time") from None
        elif (v := g("aftertime")) is not None:
            t = _float(v, path, "aftertime")
            if t:
                try:
                    job.after = dt.datetime.fromtimestamp(t, dt.timezone.utc).astimezone()
                except (OverflowError, OSError, ValueError):
                    raise _Bad(path + ("aftertime",), "time out of range") from None
        if (v := g("afterjids")) is not None:
            job.afterjids = _ints(v, path, "afterjids")
        if (v := g("minslots", g("atleast"))) is not None:
            job.atleast = _int(v, path, "minslots")
        if (v := g("maxslots", g("atmost"))) is not None:
            job.atmost = _int(v, path, "maxslots")
        if (v := g("maxactive")) is not None:
            job.maxactive = _int(v, path, "maxactive")
        for key in ("tags", "projects", "avoid", "crews"):
            if (v := g(key)) is not None:
                setattr(job, key, _strs(v, path, key))
        for key in ("tier", "service", "comment", "metadata", "editpolicy", "spoolcwd"):
            if (v := g(key)) is not None:
                setattr(job, key, _str(v, path, key))
        if (v := g("envkey")) is not None:
            job.envkey = _envkey(v, path, "envkey")
        if (v := g("priority")) is not None:
            job.priority = _float(v, path, "priority")
        if (v := g("paused")) is not None:
            job.paused = _bool(v, path, "paused")
        elif job.priority is not None and job.priority < 0:
            job.paused, job.priority = True, abs(job.priority + 1)
        if (v := g("etalevel")) is not None:
            job.etalevel = _int(v, path, "etalevel")
        if (v := g("dirmaps")) is not None:
            job.dirmaps = _dirmaps(v, path)
        if (v := g("assignments")) is not None:
            job.assignments = _assignments(v, path)
        if (v := g("serialsubtasks")) is not None:
            job.serialsubtasks = _bool(v, path, "serialsubtasks")
        if (v := g("commands")) is not None:
            cleanup, post = self.commands(v, path, True)
            job.cleanup = tuple(cleanup)
            job.postscript = tuple(post)
        job.subtasks = self.nodes(doc.get("children"), ())
        if self.tid_ants:
            tasks = list(iter_tasks(job.subtasks))
            for inst, tid, apath in self.tid_ants:
                if not 1 <= tid <= len(tasks):
                    raise _Bad(apath, f"no task has tid {tid} (the job has {len(tasks)} tasks)")
                inst.title = tasks[tid - 1].title
        for (kind, key), (first, count) in self.unknown.items():
            more = f" (and {count - 1} more {kind} objects)" if count > 1 else ""
            job.warnings.append(f"{self.file}: {_show_path(first)}: unknown {kind} key {key!r} ignored{more}")
        return job


def _dirmaps(v, path) -> tuple[DirMap, ...]:
    if type(v) is not list:
        raise _Bad(path + ("dirmaps",), "expected a list of [src, dst, zone]")
    out = []
    for i, m in enumerate(v):
        p = path + ("dirmaps", i)
        if type(m) is dict:
            m = [m.get("src"), m.get("dst"), m.get("zone")]
        if type(m) is not list or len(m) != 3 or not all(type(x) is str for x in m):
            raise _Bad(p, "expected [src, dst, zone] (three strings)")
        out.append(DirMap(*m))
    return tuple(out)


def _assignments(v, path) -> tuple[tuple[str, str], ...]:
    p = path + ("assignments",)
    if type(v) is dict:
        v = [[k, x] for k, x in v.items()]
    if type(v) is not list:
        raise _Bad(p, "expected a list of [name, value]")
    for i, a in enumerate(v):
        if type(a) is not list or len(a) != 2 or type(a[0]) is not str or type(a[1]) is not str:
            raise _Bad(p + (i,), "expected [name, value] (two strings)")
    return tuple((a[0], a[1]) for a in v)


_VERSION = re.compile(r"\s*(\d{1,9}(?:\.\d{1,9})*)\s*\Z")


def _check_version(doc: dict) -> None:
    if "TractorJob" not in doc:
        raise _Bad((), "not a Tractor JSON job: no \"TractorJob\" version key")
    v = doc["TractorJob"]
    text = str(v) if type(v) in (int, float) else v
    m = _VERSION.match(text) if type(text) is str else None
    if m is None:
        raise _Bad(("TractorJob",), f"unrecognized JSON job format (TractorJob {json.dumps(v)})")
    parts = [int(x) for x in m.group(1).split(".")]
    parts += [0] * (2 - len(parts))
    if parts > [2, 0] + [0] * (len(parts) - 2):
        raise _Bad(("TractorJob",), f"unrecognized JSON job format: version {m.group(1)} "
                   f"(this reads {FORMAT_VERSION} and older)")


# --- positions ----------------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
# a string (skipped whole) or the `{` that opens an object
_STRING_OR_OBJECT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(\{)', re.S)


class _Positions:
    """Where each object of a document starts, for errors found after decoding.

    Built only when an error needs places: objects appear in the text in
    the order a depth-first walk of the decoded value meets them.
    """

    def __init__(self, text: str, file: str, by_id: dict[int, int]):
        self.text = text
        self.file = file
        self.by_id = by_id
        self.lines = [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> Location:
        n = bisect.bisect_right(self.lines, offset)
        return Location(self.file, n + 1, offset - (self.lines[n - 1] if n else 0) + 1)

    def location(self, obj) -> Location | None:
        off = self.by_id.get(id(obj))
        return None if off is None else self.at(off)

    @classmethod
    def build(cls, text: str, doc, file: str) -> "_Positions | None":
        offsets = [m.start() for m in _STRING_OR_OBJECT.finditer(text) if m.lastindex]
        order = []
        stack = [doc]
        while stack:
            v = stack.pop()
            if type(v) is dict:
                order.append(v)
                stack.extend(reversed(list(v.values())))
            elif type(v) is list:
                stack.extend(reversed(v))
        if len(order) != len(offsets):  # duplicate keys dropped an object: places would be wrong
            return None
        return cls(text, file, {id(o): off for o, off in zip(order, offsets, strict=True)})


def _value_offset(text: str, path: tuple) -> int:
    """The offset of the value at `path` (or of the deepest part of it that exists)."""
    dec = json.JSONDecoder()
    ws = _WS.match
    i = ws(text, 0).end()
    try:
        for step in path:
            if isinstance(step, str):
                if text[i:i + 1] != "{":
                    break
                j = ws(text, i + 1).end()
                found = None
                while text[j:j + 1] == '"':
                    key, j = json.decoder.scanstring(text, j + 1)
                    j = ws(text, ws(text, j).end() + 1).end()  # past the colon
                    if key == step:
                        found = j  # the last one wins, as in decoding
                    j = ws(text, dec.raw_decode(text, j)[1]).end()
                    if text[j:j + 1] == ",":
                        j = ws(text, j + 1).end()
                if found is None:
                    break
                i = found
            else:
                if text[i:i + 1] != "[":
                    break
                j = ws(text, i + 1).end()
                k = 0
                while text[j:j + 1] not in ("]", "") and k < step:
                    j = ws(text, dec.raw_decode(text, j)[1]).end()
                    if text[j:j + 1] == ",":
                        j = ws(text, j + 1).end()
                    k += 1
                if k != step or text[j:j + 1] in ("]", ""):
                    break
                i = j
    except (ValueError, IndexError):
        pass
    return i


# --- the entry point -----------------------------------------------------------------------


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        start = exc.start + bom
        line = data.count(b"\n", 0, start) + 1
        col = len(data[data.rfind(b"\n", 0, start) + 1:start].decode("utf-8", "replace")) + 1
        raise JobError("the file is not UTF-8 text", Location(filename, line, col)) from None


def _loads(text: str, filename: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(f"invalid JSON: {exc.msg}", Location(filename, exc.lineno, exc.colno)) from None
    except RecursionError:
        raise JobError("invalid JSON: nested too deeply", Location(filename, 1, 1)) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise JobError(f"invalid JSON: {exc}", Location(filename, 1, 1)) from None


def from_json(data: str | bytes | dict, filename: str = "<json>", *, check: bool = True) -> Job:
    """Read a JSON job (text, bytes or the decoded dict).

    With `check` (the default) the job is also resolved, so a bad Instance
    or -refersto, a duplicate -id or a cycle is reported here, with places.
    """
    with _no_gc():
        return _from_json(data, filename, check)


def _from_json(data, filename: str, check: bool) -> Job:
    text: str | None = None
    if isinstance(data, (bytes, bytearray, memoryview)):
        text = _decode(bytes(data), filename)
    elif isinstance(data, str):
        text = data[1:] if data.startswith("\ufeff") else data
    elif isinstance(data, dict):
        doc = data
    else:
        raise TypeError(f"from_json takes JSON text, bytes or a dict, not {type(data).__name__}")
    if text is not None:
        if text.startswith("#!"):
            nl = text.find("\n")
            text = "" if nl < 0 else text[nl:]  # keep the newline: line numbers stay right
        doc = _loads(text, filename)
    try:
        job = _Reader(filename).job(doc)
    except _Bad as bad:
        if text is None:
            where = Location(filename, 1, 1)
        else:
            where = _Positions(text, filename, {}).at(_value_offset(text, bad.path))
        raise JobError(f"{_show_path(bad.path)}: {bad.message}", where) from None
    if not check:
        return job
    try:
        resolve(job)
        return job
    except JobError as exc:
        if text is None:
            raise
        first = exc
    # the check failed: read again noting where every object is, so the error can say
    positions = _Positions.build(text, doc, filename)
    if positions is None:
        raise first
    resolve(_Reader(filename, positions).job(doc))
    raise first  # pragma: no cover - the second reading fails the same way
