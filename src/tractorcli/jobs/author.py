"""Writing jobs in Python, in the manner of Tractor's `tractor.api.author`.

    from tractorcli.jobs import author

    job = author.Job(title="comp shot 10", priority=100, service="PixarRender")
    bg = job.newTask(title="background", argv=["prman", "bg.rib"])
    comp = job.newTask(title="comp", argv="nuke -x comp.nk")
    comp.addChild(bg)        # bg already has a parent: an Instance {background} is added
    print(job.asTcl())       # the Alfred script
    jid = job.spool()        # into the site's job database; returns the jid

The classes are mutable builders (`Job`, `Task`, `Command`, `Instance`,
`Iterate`, `Assign`, `DirMap`) with Tractor's attribute names, settable as
keyword arguments or by assignment.  `to_model()` turns a builder into the
immutable job model of `model.py`, the one every other part of tractorcli
reads; `asTcl()` writes that model with `emit.py`, so parsing it gives the
same job: ``alfred.parse(job.asTcl()) == job.to_model()``.

Values are checked when set and again when the job is converted (lists can
be changed in place).  A bad value raises `AttributeValueError` (also a
`TypeError`, as Tractor's API raises), an unknown attribute name
`UnknownAttributeError` (also an `AttributeError`), a missing title or argv
`RequiredValueError`, re-adding an Instance or Iterate that already has a
parent `ParentExistsError`; all are `model.JobError`s, hence `BadInput`
(exit status 11), and each message names the attribute (`Task.atleast:
expected ...`).  `spool()` raises `SpoolError` with the reason; the
project's own error (`ConfigError`, `DatabaseUnavailable`, `SchemaError`,
...) is its `__cause__`, and its exit status is kept.

Choices where Tractor's API is unclear or differs:

* Positional arguments follow Tractor: `Task(argv)`, `Command(local)`,
  `Instance(title)`, `Iterate(varname, frm, to, by, template)`,
  `Assign(varname, value)`, `DirMap(src, dst, zone)`; everything else is
  a keyword.  `Task(argv=...)` (and `newTask(argv=...)`) adds one RemoteCmd
  and moves the task's `service` to that command, as Tractor does.
* A string argv (`Command(argv="nuke -x comp.nk")`) is split at white
  space, as Tractor's API splits it (nothing quotes: backslashes and braces
  are kept, so `C:\\app\\x.exe` stays whole); a word with spaces needs a
  list.  Anything in an argv list is written with `str()`.  The same
  holds for `chaser`, `preview` and `resumewhile`.  `tags`, `projects`,
  `crews` and `avoid` given as one string are split at whitespace;
  `envkey` given as one string is one key (`"setenv A=1 B=2"`).
* Adding a task under itself or its own subtask is refused.
* `Iterate` is expanded when the job is converted (`to_model`, `asTcl`,
  `asJSON`, `spool`), as the parser expands it while reading: the script
  holds the generated tasks, not an `Iterate` operator.  For each value,
  `$var` and `${var}` are replaced in every string of the template (titles,
  ids, argv words, services, tags, ...), which is what the parser's textual
  substitution amounts to for a template written by `asTcl`; `-by binary`
  gives the parser's "binary" order.  The Iterate's own `subtasks` follow
  the generated tasks.
* `Assign` (the job's `init`): as the parser does, `$var` / `${var}` of an
  assigned variable in launch expressions and `-msg` is replaced in the
  model (`to_model`, `spool`), while `asTcl` keeps `$var` and writes the
  `-init {Assign ...}` block, so reading the script back gives the same job.
* `after` is a `datetime` (a naive one is local time).  Alfred's `-after`
  holds month, day, hour and minute only, so the model keeps the time to
  the minute, in local time; the year is kept in the model, but the script
  cannot say it (a parser reads it as this year).
* `expand` is `True`/`1` (task definitions on stdout), `False`/`0`/`None`
  (no), or a file name.  `when` (`done`, `error`, `always`) belongs to job
  postscript commands only, as in the parser.
* Strings may hold anything but NUL (which the database cannot store);
  integers must fit the database's columns (32 bits; job ids 63).
* `spool()` always waits for the job to be committed (one transaction), so
  `block` is accepted and has no effect; `hostname`/`port` (or
  `hostname="HOST:PORT"`, or `TRACTOR_ENGINE`, as tractor-spool
  `--engine`) are an engine address, read by `config.at_engine`
  (`tractor-engine` and ports 80, 443, 5600, 8080 mean the site's own
  database).  `setEngineClientParam(...)` sets the one engine client that
  this module and `tractorcli.api.query` share (`tractorcli.api.client`):
  the engine address, the user (the default job owner, also `TRACTOR_USER`),
  the password.  A spool that fails raises `SpoolError` with the reason
  (the project's own error is its `__cause__`).
* Loose values as Tractor takes them: argv words of any type are written
  with `str()`; `Task({...}, title=...)` takes attributes as a dict;
  `retryrc=range(...)`.  Adding a Task that already has a parent adds an
  `Instance` naming its `-id` (made up as `_autoN` when it has none), as
  Instances name a task's `-id` before a title.  `MEMBERS` lists each
  class's attributes (subclasses extend it to carry members of their own,
  kept out of the script); `attributeByName[name]` gives `.value` and
  `.addElement()`.  `asTcl()` starts with the `Job` command; a job without
  tasks raises `RequiredValueError` there and in `spool()`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from . import model as m
from .model import JobError

__all__ = [
    "Assign",
    "AttributeValueError",
    "AuthorError",
    "Command",
    "DirMap",
    "Instance",
    "InvalidParamError",
    "Iterate",
    "Job",
    "ParentExistsError",
    "RequiredValueError",
    "SpoolError",
    "Task",
    "UnknownAttributeError",
    "closeEngineClient",
    "setEngineClientParam",
]


# --- errors ------------------------------------------------------------------------


class AuthorError(JobError):
    """A job built in Python is not valid."""


class AttributeValueError(AuthorError, TypeError):
    """An attribute was given a value of the wrong type or out of range."""


class UnknownAttributeError(AuthorError, AttributeError):
    """A keyword or attribute name the class does not have."""


class RequiredValueError(AuthorError):
    """A required attribute (a title, an argv) is missing."""


class ParentExistsError(AuthorError):
    """An Instance or Iterate that already has a parent was added again."""


# --- value checks: (where, value) -> the model's value --------------------------------

INT32 = 2**31 - 1
INT63 = 2**63 - 1

Conv = Callable[[str, Any], Any]


def _show(v: Any) -> str:
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} ({type(v).__name__})"


def _bad(where: str, expected: str, v: Any) -> AttributeValueError:
    return AttributeValueError(f"{where}: expected {expected}, got {_show(v)}")


def _text(where: str, v: Any) -> str:
    if type(v) is not str:
        if not isinstance(v, str):
            raise _bad(where, "a string", v)
        v = str(v)
    if "\x00" in v:
        raise AttributeValueError(f"{where}: NUL characters are not allowed")
    return v


def _str(where: str, v: Any) -> str:
    """A string option; None counts as unset ("")."""
    return "" if v is None else _text(where, v)


def _optstr(where: str, v: Any) -> str | None:
    return None if v is None else _text(where, v)


def _id(where: str, v: Any) -> str | None:
    """-id / -refersto: a name; "" is no name (the parser reads `-id {}` so)."""
    if v is None:
        return None
    return _text(where, v) or None


def _int_range(lo: int, hi: int, what: str) -> Conv:
    def conv(where: str, v: Any) -> int | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(where, what, v)
        if not lo <= v <= hi:
            raise _bad(where, what, v)
        return int(v)
    return conv


_count = _int_range(0, INT32, "a non-negative integer")


def _maxactive(where: str, v: Any) -> int:
    return _count(where, v) or 0


def _float(lo: float | None, what: str) -> Conv:
    def conv(where: str, v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _bad(where, what, v)
        f = float(v)
        if not math.isfinite(f) or (lo is not None and f < lo):
            raise _bad(where, what, v)
        return f
    return conv


_number = _float(None, "a finite number")
_seconds = _float(0.0, "a non-negative number of seconds")


def _bool(where: str, v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise _bad(where, "a bool (or 0/1)", v)


def _seq(where: str, v: Any, what: str) -> list:
    if isinstance(v, (str, bytes, dict)) or not isinstance(v, Iterable):
        raise _bad(where, what, v)
    return list(v)


def _names(where: str, v: Any) -> tuple[str, ...]:
    """tags, projects, crews, avoid: a list of names, or one string of them."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(_text(where, v).split())
    return tuple([_text(f"{where}[{i}]", x) for i, x in enumerate(_seq(where, v, "a list of strings"))])


def _envkey(where: str, v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (_text(where, v),) if v else ()
    return tuple([_text(f"{where}[{i}]", x) for i, x in enumerate(_seq(where, v, "a list of strings"))])


def _word(where: str, x: Any) -> str:
    """One word of an argv-like list: a string, or anything else written with str() (numbers,
    booleans, paths), as Tractor's API does; None is refused (it is a mistake, not a word)."""
    if isinstance(x, str):
        return _text(where, x)
    if x is None or isinstance(x, (bytes, dict)):
        raise _bad(where, "a string (or a number)", x)
    return _text(where, os.fspath(x) if isinstance(x, os.PathLike) else str(x))


def _words(where: str, v: Any) -> tuple[str, ...]:
    """argv-like lists: a list of words (of any type, written with str()), or one string split at
    white space as Tractor's API splits it."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(_text(where, v).split())
    return tuple([_word(f"{where}[{i}]", x) for i, x in enumerate(_seq(where, v, "a list of strings"))])


def _ints(lo: int, hi: int, what: str) -> Conv:
    one = _int_range(lo, hi, what)

    def conv(where: str, v: Any) -> tuple[int, ...]:
        if v is None:
            return ()
        if isinstance(v, int) and not isinstance(v, bool):
            return (one(where, v),)
        items = _seq(where, v, f"a list of {what}s")
        return tuple([one(f"{where}[{i}]", x) for i, x in enumerate(items)])
    return conv


_jids = _ints(1, INT63, "positive job id")
_codes = _ints(-INT32 - 1, INT32, "32-bit integer")


def _after(where: str, v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if not isinstance(v, dt.datetime):
        raise _bad(where, "a datetime.datetime", v)
    # what `-after {MM DD HH:MM}` can say: local time, to the minute
    try:
        return v.astimezone().replace(second=0, microsecond=0)
    except (ValueError, OverflowError, OSError) as exc:
        raise AttributeValueError(f"{where}: {v!r}: {exc}") from None


def _expand(where: str, v: Any) -> str | None:
    if v is None or v is False:
        return None
    if v is True:
        return ""
    if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
        return "" if v else None
    if isinstance(v, str):
        t = _text(where, v).strip()  # read as the parser reads -expand
        return None if t in ("", "0") else ("" if t == "1" else t)
    raise _bad(where, "True/False or a file name", v)


_WHEN = {"done": "post_done", "error": "post_error", "always": "post_always"}


def _when(where: str, v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or v not in _WHEN:
        raise _bad(where, "'done', 'error' or 'always'", v)
    return v


def _by(where: str, v: Any) -> int | str:
    if isinstance(v, str) and v == "binary":
        return "binary"
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= INT63:
        raise _bad(where, "a positive integer or 'binary'", v)
    return v


# converters whose values are lists: they give tuples, and the builders keep lists
_LIST_CONVS = frozenset([_names, _envkey, _words, _jids, _codes])


# --- the element base ---------------------------------------------------------------


class _Element:
    """Attributes declared in `_ATTRS` (name -> converter), checked when set."""

    _ATTRS: ClassVar[dict[str, Conv]] = {}
    # attributes holding builder objects: name -> the classes allowed
    _OBJECTS: ClassVar[dict[str, tuple[type, ...]]] = {}
    _DEFAULTS: ClassVar[dict[str, Any]] = {}
    MEMBERS: ClassVar[list[str]] = []  # every attribute name (set below each class)

    def __init__(self, **kw: Any) -> None:
        object.__setattr__(self, "_parent", None)
        cls = type(self)
        for name in cls._ATTRS:
            object.__setattr__(self, name, [] if cls._ATTRS[name] in _LIST_CONVS else cls._DEFAULTS.get(name))
        for name in cls._OBJECTS:
            object.__setattr__(self, name, [])
        for k, v in kw.items():
            setattr(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        conv = cls._ATTRS.get(name)
        if conv is not None:
            mv = conv(f"{cls.__name__}.{name}", value)
            object.__setattr__(self, name, list(mv) if conv in _LIST_CONVS else value)
        elif name in cls._OBJECTS:
            self._set_objects(name, value)
        elif name.startswith("_") or name in cls.MEMBERS:
            # private state, or a member a subclass added to MEMBERS (kept, not in the script)
            object.__setattr__(self, name, value)
        else:
            known = ", ".join(sorted([*cls._ATTRS, *cls._OBJECTS]))
            raise UnknownAttributeError(f"{cls.__name__} has no attribute {name!r}",
                                        hint=f"{cls.__name__} attributes: {known}")

    def __getattr__(self, name: str) -> Any:
        # Python calls this only for names not set on the instance; Tractor's
        # code also calls it directly (super().__getattr__("title")).  A member
        # a subclass added to MEMBERS reads None until it is set.
        d = object.__getattribute__(self, "__dict__")
        if name in d:
            return d[name]
        if not name.startswith("_") and name in type(self).MEMBERS:
            return None
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def attributeByName(self) -> dict[str, _Attribute]:
        """{name: the attribute} for every member (Tractor's view of an element's attributes)."""
        return {name: _Attribute(self, name) for name in type(self).MEMBERS}

    def _set_objects(self, name: str, value: Any) -> None:
        where = f"{type(self).__name__}.{name}"
        items = [] if value is None else _seq(where, value, "a list")
        for old in getattr(self, name, ()):
            if isinstance(old, _Node) and old._parent is self:
                old._parent = None
        object.__setattr__(self, name, [])
        for x in items:
            self._add(name, x)

    def _add(self, name: str, x: Any) -> Any:
        """Append `x` to the object list `name` (checked; nodes get this element as parent)."""
        allowed = type(self)._OBJECTS[name]
        where = f"{type(self).__name__}.{name}"
        if not isinstance(x, allowed):
            raise _bad(where, " or ".join(c.__name__ for c in allowed), x)
        if isinstance(x, _Node):
            x = x._adopted_by(self, where)
        getattr(self, name).append(x)
        return x

    def _v(self, name: str) -> Any:
        """The model's value of attribute `name`, checked again (lists may have been changed in place)."""
        return type(self)._ATTRS[name](f"{type(self).__name__}.{name}", getattr(self, name))

    def _objects(self, name: str) -> list:
        where = f"{type(self).__name__}.{name}"
        items = getattr(self, name)
        allowed = type(self)._OBJECTS[name]
        for x in _seq(where, items, "a list"):
            if not isinstance(x, allowed):
                raise _bad(where, " or ".join(c.__name__ for c in allowed), x)
        return items

    def __repr__(self) -> str:
        shown = []
        for name in type(self)._ATTRS:
            v = getattr(self, name)
            if not (v is None or v is False or v == "" or v == []):
                shown.append(f"{name}={v!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


class _Attribute:
    """One attribute of an element, as Tractor's `attributeByName` gives it: `.value` (read and set,
    checked as an assignment is), `addElement(x)` for list attributes, iteration over the list."""

    __slots__ = ("element", "name")

    def __init__(self, element: _Element, name: str) -> None:
        self.element = element
        self.name = name

    @property
    def value(self) -> Any:
        return getattr(self.element, self.name)

    @value.setter
    def value(self, v: Any) -> None:
        setattr(self.element, self.name, v)

    def addElement(self, x: Any) -> Any:
        el = self.element
        if self.name in type(el)._OBJECTS:
            return el._add(self.name, x)
        items = list(getattr(el, self.name) or [])
        setattr(el, self.name, [*items, x])  # checked as a whole
        return x

    def __iter__(self) -> Iterator[Any]:
        v = self.value
        return iter(v if isinstance(v, list) else ([] if v is None else [v]))

    def __repr__(self) -> str:
        return f"<{type(self.element).__name__}.{self.name} = {self.value!r}>"


class _Node(_Element):
    """What may stand in a -subtasks list: Task, Instance, Iterate."""

    def _adopted_by(self, parent: _Element, where: str) -> _Node:
        raise NotImplementedError

    def _check_not_above(self, parent: _Element) -> None:
        p: Any = parent
        while p is not None:
            if p is self:
                raise AuthorError(f"{_label(self)} cannot be added under itself or its own subtask")
            p = p._parent


def _label(x: Any) -> str:
    title = getattr(x, "title", None) or getattr(x, "varname", None)
    return f"{type(x).__name__} {title!r}" if title else type(x).__name__


def _required(where: str, v: Any) -> str:
    s = _str(where, v)
    if not s:
        raise RequiredValueError(f"{where} is required")
    return s


# --- Assign, DirMap ------------------------------------------------------------------


class Assign(_Element):
    """`Assign var {value}`: a job-global variable (the job's `init`)."""

    _ATTRS = {"varname": _str, "value": _str}

    def __init__(self, varname: str | None = None, value: Any = None, **kw: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        super().__init__(varname=varname, value=value, **kw)

    def to_model(self) -> tuple[str, str]:
        return (_required("Assign.varname", self.varname), self._v("value"))


class DirMap(_Element):
    """One `-dirmaps` entry: paths starting with `src` become `dst` on blades of `zone`."""

    _ATTRS = {"src": _str, "dst": _str, "zone": _str}

    def __init__(self, src: str | None = None, dst: str | None = None, zone: str | None = None, **kw: Any) -> None:
        super().__init__(src=src, dst=dst, zone=zone, **kw)

    def to_model(self) -> m.DirMap:
        return m.DirMap(self._v("src"), self._v("dst"), _required("DirMap.zone", self.zone))


# --- Command ----------------------------------------------------------------------------


class Command(_Element):
    """A RemoteCmd (`local=False`, any farm blade) or a local Cmd (the spooling host's blade)."""

    _ATTRS = {
        "argv": _words, "msg": _optstr, "tags": _names, "service": _str, "metrics": _str,
        "id": _id, "refersto": _id, "expand": _expand, "atleast": _count, "atmost": _count,
        "minrunsecs": _seconds, "maxrunsecs": _seconds, "samehost": _bool, "envkey": _envkey,
        "retryrc": _codes, "when": _when, "resumewhile": _words, "resumepin": _bool, "metadata": _str,
        "local": _bool,
    }
    _DEFAULTS = {"local": False, "samehost": False, "resumepin": False}

    def __init__(self, local: bool = False, **kw: Any) -> None:
        super().__init__(local=local, **kw)

    def _model(self, runtype: str, sub: Callable[[str], str] | None = None) -> m.Command:
        """`runtype`: 'regular', 'cleanup' or 'post' (then this command's `when` decides)."""
        v = self._v
        when = v("when")
        if runtype == "post":
            runtype = _WHEN[when or "always"]
        elif when is not None:
            raise AuthorError(f"Command.when: {when!r} belongs only to Job postscript commands "
                              "(newPostscript / addPostscript)")
        argv = v("argv")
        if not argv:
            raise RequiredValueError("Command.argv is required (the program and its arguments)")
        c = m.Command(
            argv=argv, local=v("local"), runtype=runtype, service=v("service"), tags=v("tags"),
            envkey=v("envkey"), atleast=v("atleast"), atmost=v("atmost"), samehost=v("samehost"),
            id=v("id"), refersto=v("refersto"), expand=v("expand"), msg=v("msg"), retryrc=v("retryrc"),
            minrunsecs=v("minrunsecs"), maxrunsecs=v("maxrunsecs"), resumewhile=v("resumewhile"),
            resumepin=v("resumepin"), metadata=v("metadata"), metrics=v("metrics"))
        if sub is not None:
            c.argv = tuple([sub(a) for a in c.argv])
            c.service, c.metadata, c.metrics = sub(c.service), sub(c.metadata), sub(c.metrics)
            c.tags = tuple([sub(t) for t in c.tags])
            c.envkey = tuple([sub(k) for k in c.envkey])
            c.resumewhile = tuple([sub(r) for r in c.resumewhile])
            c.id, c.refersto, c.msg, c.expand = (None if x is None else sub(x)
                                                 for x in (c.id, c.refersto, c.msg, c.expand))
        return c

    def to_model(self) -> m.Command:
        """The model Command (a postscript one when `when` is set)."""
        return self._model("post" if self.when is not None else "regular")

    def asTcl(self) -> str:
        from .emit import command_tcl

        return command_tcl(self.to_model())


# --- Instance, Task, Iterate ------------------------------------------------------------


class Instance(_Node):
    """A dependency on the task with this title (or -id), wherever it is in the job."""

    _ATTRS = {"title": _str}

    def __init__(self, title: str | None = None, **kw: Any) -> None:
        super().__init__(title=title, **kw)

    def _adopted_by(self, parent: _Element, where: str) -> Instance:
        if self._parent is not None:
            raise ParentExistsError(f"{where}: Instance {self.title!r} already has a parent "
                                    f"({_label(self._parent)})", hint="make a new Instance")
        self._parent = parent
        return self

    def _model(self, sub: Callable[[str], str] | None = None) -> m.Instance:
        target = getattr(self, "_target", None)
        if target is not None and (target.id or target.title):
            # made by adding a Task a second time: its -id (unique) when it has
            # one, else its title, as they are now
            title = _text("Instance.title", target.id or target.title)
        else:
            title = _required("Instance.title", self.title)
        return m.Instance(sub(title) if sub else title)

    def to_model(self) -> m.Instance:
        return self._model()

    def asTcl(self) -> str:
        from .emit import task_tcl

        return task_tcl(self.to_model())


class _Tree:
    """Shared by Job and Task: children and cleanup commands."""

    def addChild(self, child: Task | Instance | Iterate) -> Task | Instance | Iterate:
        """Add a subtask; a Task that already has a parent is added as an Instance of it.

        Returns what was added (the child, or that Instance).
        """
        return self._add("subtasks", child)  # type: ignore[attr-defined]

    def newTask(self, argv: Any = None, **kw: Any) -> Task:
        """A new Task (keywords as for Task), added as a subtask."""
        t = Task(argv, **kw)
        self._add("subtasks", t)  # type: ignore[attr-defined]
        return t

    def newCleanup(self, **kw: Any) -> Command:
        """A new Command (keywords as for Command) added to `cleanup`."""
        c = Command(**kw)
        self._add("cleanup", c)  # type: ignore[attr-defined]
        return c

    def addCleanup(self, command: Command) -> Command:
        return self._add("cleanup", command)  # type: ignore[attr-defined]


class Task(_Tree, _Node):
    """`Task {title}`: commands run one after another once its subtasks are done."""

    _ATTRS = {
        "title": _str, "id": _id, "service": _optstr, "atleast": _count, "atmost": _count,
        "chaser": _words, "preview": _words, "serialsubtasks": _bool, "resumeblock": _bool, "metadata": _str,
    }
    _DEFAULTS = {"serialsubtasks": False, "resumeblock": False}

    def __init__(self, argv: Any = None, **kw: Any) -> None:
        if isinstance(argv, Mapping):  # Task({...}, title=...): attributes given as a dict
            kw = {**argv, **kw}
            argv = kw.pop("argv", None)
        if argv is not None:
            # Tractor's shortcut: one RemoteCmd, which takes the task's service
            cmd = Command(argv=argv, service=kw.pop("service", None))
            kw["cmds"] = [*_seq("Task.cmds", kw.get("cmds") or [], "a list"), cmd]
        super().__init__(**kw)

    def _adopted_by(self, parent: _Element, where: str) -> _Node:
        if self._parent is not None:
            # already in the tree: a second parent waits on it through an Instance
            # (Tractor's rule), named by the task's -id, which is made up when
            # it has none: titles may repeat, ids are unique
            if not self.id:
                self.id = f"_auto{next(_auto_ids)}"
            inst = Instance(self.id)
            inst._target = self
            inst._parent = parent
            return inst
        self._check_not_above(parent)
        self._parent = parent
        return self

    def addCommand(self, command: Command) -> Command:
        return self._add("cmds", command)

    def newCommand(self, **kw: Any) -> Command:
        """A new Command (keywords as for Command) added to `cmds`."""
        c = Command(**kw)
        self._add("cmds", c)
        return c

    def _head(self, sub: Callable[[str], str] | None) -> m.Task:
        """This task without its subtasks."""
        v = self._v
        t = m.Task(
            title=_required("Task.title", self.title), id=v("id"), service=v("service"),
            atleast=v("atleast"), atmost=v("atmost"), serialsubtasks=v("serialsubtasks"),
            resumeblock=v("resumeblock"), chaser=v("chaser"), preview=v("preview"), metadata=v("metadata"),
            cmds=tuple([c._model("regular", sub) for c in self._objects("cmds")]),
            cleanup=tuple([c._model("cleanup", sub) for c in self._objects("cleanup")]))
        if sub is not None:
            t.title, t.metadata = sub(t.title), sub(t.metadata)
            t.id, t.service = (None if x is None else sub(x) for x in (t.id, t.service))
            t.chaser = tuple([sub(a) for a in t.chaser])
            t.preview = tuple([sub(a) for a in t.preview])
        return t

    def to_model(self) -> m.Task:
        """The model Task, with everything below it (Iterates expanded)."""
        return _convert([(self, None)])[0]

    def asTcl(self) -> str:
        from .emit import task_tcl

        return task_tcl(self.to_model())

    def spool(self, **kw: Any) -> int:
        """Spool this task as a job of its own, titled as the task (keywords as for Job.spool)."""
        raw = m.Job(title=_required("Task.title", self.title), subtasks=(self.to_model(),))
        return _spool(raw, **kw)


class Iterate(_Node):
    """`Iterate var -from A -to B -by N -template {...}`: the template once per value.

    Expanded when the job is converted (see the module notes): each cycle
    gives the template's nodes with `$var` / `${var}` replaced by the value
    in every string; then come the Iterate's own `subtasks`.
    """

    _ATTRS = {"varname": _str, "frm": _int_range(-INT63, INT63, "an integer"),
              "to": _int_range(-INT63, INT63, "an integer"), "by": _by}

    def __init__(self, varname: str | None = None, frm: int | None = None, to: int | None = None,
                 by: int | str = 1, template: Any = None, subtasks: Any = None, **kw: Any) -> None:
        if "from" in kw:  # Tractor spells it `from` too: Iterate(**{"from": 1})
            frm = kw.pop("from")
        super().__init__(varname=varname, frm=frm, to=to, by=by, template=template, subtasks=subtasks, **kw)

    def _adopted_by(self, parent: _Element, where: str) -> Iterate:
        if self._parent is not None:
            raise ParentExistsError(f"{where}: Iterate {self.varname!r} already has a parent "
                                    f"({_label(self._parent)})")
        self._check_not_above(parent)
        self._parent = parent
        return self

    def addToTemplate(self, node: Task | Instance | Iterate) -> Task | Instance | Iterate:
        return self._add("template", node)

    def addChild(self, node: Task | Instance | Iterate) -> Task | Instance | Iterate:
        """Add to the Iterate's own `subtasks` (they follow the generated tasks)."""
        return self._add("subtasks", node)

    def _values(self) -> list[int]:
        from .alfred import _iterate_values

        _required("Iterate.varname", self.varname)
        lo, hi = self._v("frm"), self._v("to")
        if lo is None or hi is None:
            raise RequiredValueError(f"Iterate {self.varname!r}: frm and to are required")
        by = self._v("by")
        if not self._objects("template"):
            raise RequiredValueError(f"Iterate {self.varname!r}: the template is empty (addToTemplate)")
        binary = by == "binary"
        step = 1 if binary else by
        if abs(hi - lo) // step + 1 > 10_000_000:
            raise AttributeValueError(f"Iterate {self.varname!r}: more than 10,000,000 iterations")
        return _iterate_values(lo, hi, step, binary)

    def _pairs(self, sub: Callable[[str], str] | None) -> Iterator[tuple[Any, Any]]:
        values = self._values()  # checked now, before anything is generated
        template = list(self.template)
        subtasks = list(self._objects("subtasks"))
        pattern = re.compile(r"\$(?:\{%s\}|%s(?![A-Za-z0-9_]))" % (re.escape(self.varname), re.escape(self.varname)))

        def gen() -> Iterator[tuple[Any, Any]]:
            for value in values:
                text = str(value)

                def each(s: str, text: str = text) -> str:
                    if sub is not None:
                        s = sub(s)
                    return pattern.sub(lambda _m: text, s) if "$" in s else s
                for node in template:
                    yield node, each
            for node in subtasks:
                yield node, sub
        return gen()

    def to_model(self) -> tuple[m.Task | m.Instance, ...]:
        """The nodes it expands to."""
        return tuple(_convert([(self, None)]))

    def asTcl(self) -> str:
        from .emit import task_tcl

        return "".join(task_tcl(n) for n in self.to_model())


Iterate._OBJECTS = {"template": (Task, Instance, Iterate), "subtasks": (Task, Instance, Iterate)}
Task._OBJECTS = {"subtasks": (Task, Instance, Iterate), "cmds": (Command,), "cleanup": (Command,)}


def _convert(pairs: list[tuple[Any, Any]]) -> list:
    """Builder nodes -> model nodes, with an explicit stack (deep trees must not hit the recursion limit)."""
    top: list = []
    on_path: set[int] = set()
    # frames: (iterator of (node, substitution), output list, (model task, its builder) or None)
    stack: list = [(iter(pairs), top, None)]
    while stack:
        it, out, owner = stack[-1]
        for node, sub in it:
            if isinstance(node, Instance):
                out.append(node._model(sub))
            elif isinstance(node, Task):
                mt = node._head(sub)
                out.append(mt)
                kids = node._objects("subtasks")
                if kids:
                    if id(node) in on_path:
                        raise AuthorError(f"{_label(node)} contains itself")
                    on_path.add(id(node))
                    stack.append((iter([(k, sub) for k in kids]), [], (mt, node)))
                    break
            elif isinstance(node, Iterate):
                if id(node) in on_path:
                    raise AuthorError(f"{_label(node)} contains itself")
                on_path.add(id(node))
                stack.append((node._pairs(sub), out, (None, node)))
                break
            else:
                raise _bad("subtasks", "Task, Instance or Iterate", node)
        else:
            stack.pop()
            if owner is not None:
                mt, node = owner
                on_path.discard(id(node))
                if mt is not None:
                    mt.subtasks = tuple(out)
    return top


_auto_ids = itertools.count(1)


# --- Job --------------------------------------------------------------------------------


class Job(_Tree, _Element):
    """`Job -title {...}`: the whole job; `spool()` submits it."""

    _ATTRS = {
        "title": _str, "tier": _str, "spoolcwd": _str, "projects": _names, "crews": _names,
        "maxactive": _maxactive, "paused": _bool, "after": _after, "afterjids": _jids,
        "atleast": _count, "atmost": _count, "etalevel": _count, "tags": _names, "priority": _number,
        "service": _str, "avoid": _names, "envkey": _envkey, "comment": _str, "metadata": _str,
        "editpolicy": _str, "serialsubtasks": _bool,
    }
    _DEFAULTS = {"maxactive": 0, "paused": False, "serialsubtasks": False}

    def __str__(self) -> str:
        return f"Job {self.title}"

    def newAssignment(self, varname: str, value: Any) -> Assign:
        """`Assign varname {value}` in the job's `-init` block."""
        return self._add("init", Assign(varname, value))

    def newDirMap(self, src: str, dst: str, zone: str) -> DirMap:
        return self._add("dirmaps", DirMap(src, dst, zone))

    def newPostscript(self, **kw: Any) -> Command:
        """A new Command for `-postscript` (`when`: 'done', 'error' or 'always', the default)."""
        return self._add("postscript", Command(**kw))

    def addPostscript(self, command: Command) -> Command:
        return self._add("postscript", command)

    # -- conversion --

    def _raw(self) -> m.Job:
        """The model as the script says it: Iterates expanded, Assign variables not yet replaced."""
        v = self._v
        return m.Job(
            title=_required("Job.title", self.title),
            subtasks=tuple(_convert([(n, None) for n in self._objects("subtasks")])),
            cleanup=tuple([c._model("cleanup") for c in self._objects("cleanup")]),
            postscript=tuple([c._model("post") for c in self._objects("postscript")]),
            after=v("after"), afterjids=v("afterjids"), atleast=v("atleast"), atmost=v("atmost"),
            maxactive=v("maxactive"), tags=v("tags"), projects=v("projects"), tier=v("tier"),
            service=v("service"), avoid=v("avoid"), envkey=v("envkey"), priority=v("priority"),
            crews=v("crews"), etalevel=v("etalevel"), comment=v("comment"), metadata=v("metadata"),
            editpolicy=v("editpolicy"), dirmaps=tuple([d.to_model() for d in self._objects("dirmaps")]),
            assignments=tuple([a.to_model() for a in self._objects("init")]),
            serialsubtasks=v("serialsubtasks"), paused=v("paused"), spoolcwd=v("spoolcwd"))

    def to_model(self, check: bool = True) -> m.Job:
        """The job model, as `alfred.parse(self.asTcl())` reads it.

        With `check` (the default) the job is also resolved, so a bad
        Instance or -refersto, a duplicate -id or a cycle raises JobError.
        """
        job = _assigned(self._raw())
        if check:
            m.resolve(job)
        return job

    def asTcl(self) -> str:
        """The job as an Alfred script (the canonical layout of `emit.py`), starting with the `Job`
        command as Tractor's does (no `##AlfredToDo` header line)."""
        return _job_tcl(self._raw())

    def asJSON(self, indent: int | None = None) -> str:
        """The job as Tractor JSON (what tractor-spool -J reads)."""
        from .jsonjob import dumps

        return dumps(self.to_model(), indent=indent)

    def spool(self, block: bool = False, owner: str | None = None, spoolfile: str | None = None,
              spoolhost: str | None = None, hostname: str | None = None, port: int | None = None, *,
              configdir: str | os.PathLike | None = None, settings: Any = None,
              spoolcwd: str | None = None) -> int:
        """Submit the job to the job database, as tractor-spool does; returns the new jid.

        `configdir` picks the site (else TRACTOR_CONFIGDIR, else the
        default site); `settings` (a `config.SiteSettings`) gives it
        directly.  `hostname`/`port` (or "HOST:PORT") reach another job
        database server, as `tractor-spool --engine`.  `owner` defaults
        to the login name, `spoolhost` to this host, `spoolcwd` to the
        current directory.  The stored script is `asTcl()`.  `block` is
        accepted for Tractor's scripts: the spool is always complete (one
        committed transaction) when this returns.
        """
        return _spool(self._raw(), owner=owner, spoolfile=spoolfile, spoolhost=spoolhost, hostname=hostname,
                      port=port, configdir=configdir, settings=settings, spoolcwd=spoolcwd)


Job._OBJECTS = {"subtasks": (Task, Instance, Iterate), "cleanup": (Command,), "postscript": (Command,),
                "dirmaps": (DirMap,), "init": (Assign,)}

# Tractor's class member lists (subclasses extend them to carry attributes of their own)
for _cls in (Job, Task, Command, Instance, Iterate, Assign, DirMap):
    _cls.MEMBERS = [*_cls._ATTRS, *_cls._OBJECTS]
del _cls


def _job_tcl(job: m.Job) -> str:
    """The script of a job (Tractor's asTcl and spool refuse a job without tasks)."""
    from .emit import HEADER, as_tcl

    if not job.subtasks:
        raise RequiredValueError(f"Job {job.title!r}: subtasks are required (a job needs a task: newTask, "
                                 "addChild)")
    return as_tcl(job).removeprefix(HEADER)


def _assigned(job: m.Job) -> m.Job:
    """Replace Assign variables in launch expressions and -msg, as the parser does."""
    if job.assignments:
        from .alfred import _apply_assignments

        _apply_assignments(job, dict(job.assignments))
    return job


# --- spooling ---------------------------------------------------------------------------


class SpoolError(AuthorError):
    """The job could not be spooled: the reason is the message; `__cause__` is the project's own
    error (DatabaseUnavailable, ConfigError, SchemaError, ...), whose exit status this one keeps."""

    def __init__(self, cause: Exception):
        super().__init__(f"spool failed: {cause}", hint=getattr(cause, "hint", None))
        status = getattr(cause, "status", None)
        if status is not None:
            self.status = status


from ..api.client import InvalidParamError  # noqa: E402 - the one client's error, re-exported


def setEngineClientParam(hostname: str | None = None, port: int | None = None, user: str | None = None,
                         password: str | None = None, debug: bool | None = None, **kw: Any) -> None:
    """Set parameters of the one engine client that author and query share (tractorcli.api.client):
    the engine address for later spools, the job owner (`user`), the password.  Only those given
    change; an unknown parameter raises `InvalidParamError`."""
    from ..api.client import ModuleEngineClient

    ModuleEngineClient.setParam(hostname=hostname, port=port, user=user, password=password, debug=debug, **kw)


def closeEngineClient() -> None:
    """Close the shared client's connection (spools open and close their own)."""
    from ..api.client import ModuleEngineClient

    ModuleEngineClient.close()


def _port(where: str, v: Any) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise _bad(where, "a TCP port (1-65535)", v)
    return v


def _site(hostname: Any, port: Any, configdir: Any, settings: Any) -> Any:
    """The site's settings at the job database this spool goes to (config.at_engine):

    `settings` given: exactly those, at `hostname`/`port` if given; else the
    site of `configdir` (or the client's), at `hostname`/`port`, else at the
    client's engine address (or TRACTOR_ENGINE), with the client's password."""
    from ..api.client import ModuleEngineClient as client
    from ..config import at_engine, load_settings, split_engine

    host, port_no = None, None
    if hostname is not None:
        host, port_no = split_engine(_text("spool.hostname", hostname), "spool.hostname")
    if port is not None:
        port_no = _port("spool.port", port)
    if settings is not None:
        return at_engine(settings, host, port_no)
    if configdir is None:
        return client.site() if host is None and port_no is None else client.settings_for(
            client.settings or load_settings(client.configdir), host, port_no)
    return client.settings_for(load_settings(configdir), host, port_no)


def _spool(raw: m.Job, *, owner: str | None = None, spoolfile: str | None = None, spoolhost: str | None = None,
           hostname: str | None = None, port: Any = None, configdir: Any = None, settings: Any = None,
           spoolcwd: str | None = None, block: bool = False) -> int:
    from .. import submit
    from ..api.client import ModuleEngineClient as client
    from ..db.spool import SpoolOptions
    from ..errors import TractorError

    script = _job_tcl(raw)
    resolved = m.resolve(_assigned(raw))
    options = SpoolOptions(
        owner=_optstr("spool.owner", owner) or client.named_user(),
        spoolhost=_optstr("spool.spoolhost", spoolhost) or submit.default_host(),
        spoolfile=_optstr("spool.spoolfile", spoolfile) or "",
        spoolcwd=(_optstr("spool.spoolcwd", spoolcwd) or os.getcwd()).replace("\\", "/"),
        script=script, scriptformat="alfred")
    try:
        site = _site(hostname, port, configdir, settings)
        return submit.spool(site, resolved, options)
    except AuthorError:
        raise
    except TractorError as exc:
        raise SpoolError(exc) from exc
