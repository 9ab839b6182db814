"""The job description: Job, Task, Command, Instance, DirMap.

One model serves every language: the Alfred/Tcl parser (`alfred.py`), the
JSON form (`jsonjob.py`), the emitter (`emit.py`), the authoring API
(`author.py`) and the spooler (`db/spool.py`) all read or write these
objects.  Attribute names follow Tractor's operator options.

The classes are slotted dataclasses with tuples rather than lists, because
a million-task job must fit comfortably in memory: an empty tuple is
shared, an empty list is not.  Source positions (`where`) are kept for
error messages and excluded from equality, so parse(emit(job)) == job.

`Iterate` and `Assign` are expanded while parsing (the model holds their
result); `Instance` stays a node and is resolved by `resolve()`, which also
numbers tasks and commands the way the engine does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Union

from ..errors import BadInput

RUNTYPES = ("regular", "cleanup", "post_always", "post_error", "post_done")
# characters in a job's or task's title: titles are on every listing and screen, so a runaway
# generator's 10 MB title is refused rather than stored
MAX_TITLE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: file, line and column (both from 1)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Place(Protocol):
    """Where something was written: a Location, or the parser's SourcePos,
    which works out its line and column only when shown (a million-task job
    keeps one per task and command)."""

    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...

    @property
    def col(self) -> int: ...


class JobError(BadInput):
    """An invalid job, with the place it was found (file:line:column: message)."""

    def __init__(self, message: str, where: Place | None = None, *, also: Place | None = None,
                 hint: str | None = None):
        self.where = where
        self.also = also
        self.bare = message
        text = f"{where}: {message}" if where else message
        if also is not None:
            text += f" (see {also})"
        super().__init__(text, hint=hint)


def _loc() -> Place | None:
    return field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class DirMap:
    src: str
    dst: str
    zone: str


@dataclass(slots=True)
class Command:
    """A RemoteCmd (runs on a farm blade) or a local Cmd (on the spooling host)."""

    argv: tuple[str, ...]
    local: bool = False
    runtype: str = "regular"  # one of RUNTYPES; postscript Cmds carry their -when
    service: str = ""
    tags: tuple[str, ...] = ()
    envkey: tuple[str, ...] = ()
    atleast: int | None = None
    atmost: int | None = None
    samehost: bool = False
    id: str | None = None
    refersto: str | None = None
    expand: str | None = None  # None: no; "": task definitions on stdout; else that file
    msg: str | None = None
    retryrc: tuple[int, ...] = ()
    minrunsecs: float | None = None
    maxrunsecs: float | None = None
    resumewhile: tuple[str, ...] = ()
    resumepin: bool = False
    metadata: str = ""
    metrics: str = ""
    where: Place | None = _loc()


@dataclass(slots=True)
class Instance:
    """A dependency on another task, named by its title (or -id)."""

    title: str
    where: Place | None = _loc()


@dataclass(slots=True)
class Task:
    title: str
    subtasks: tuple["Node", ...] = ()
    cmds: tuple[Command, ...] = ()
    cleanup: tuple[Command, ...] = ()
    id: str | None = None
    service: str | None = None
    atleast: int | None = None
    atmost: int | None = None
    serialsubtasks: bool = False
    resumeblock: bool = False
    chaser: tuple[str, ...] = ()
    preview: tuple[str, ...] = ()
    metadata: str = ""
    where: Place | None = _loc()


Node = Union[Task, Instance]


@dataclass(slots=True)
class Job:
    title: str = ""
    subtasks: tuple[Node, ...] = ()
    cleanup: tuple[Command, ...] = ()
    postscript: tuple[Command, ...] = ()
    after: dt.datetime | None = None
    afterjids: tuple[int, ...] = ()
    atleast: int | None = None
    atmost: int | None = None
    maxactive: int = 0
    tags: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    tier: str = ""
    service: str = ""
    avoid: tuple[str, ...] = ()
    envkey: tuple[str, ...] = ()
    priority: float | None = None  # None: the site default
    crews: tuple[str, ...] = ()
    etalevel: int | None = None
    comment: str = ""
    metadata: str = ""
    editpolicy: str = ""
    dirmaps: tuple[DirMap, ...] = ()
    assignments: tuple[tuple[str, str], ...] = ()  # Assign var value, in order
    serialsubtasks: bool = False
    paused: bool = False
    spoolcwd: str = ""
    # Not part of the job's meaning: what the parser chose to tolerate.
    warnings: list[str] = field(default_factory=list, compare=False, repr=False)
    where: Place | None = _loc()

    def copy(self, **changes) -> "Job":
        return dataclasses.replace(self, **changes)


# --- resolution: numbering, edges, and checks ------------------------------------


@dataclass(slots=True)
class FlatTask:
    tid: int
    task: Task
    parent: int  # tree parent tid; 0 = the job
    position: int  # index among its siblings


@dataclass(slots=True)
class Resolved:
    """A job numbered as the engine numbers it, with its Instance edges.

    tids count tasks depth-first from 1 (parents before their subtasks);
    cids count commands from 1 in the order met: each task's -cmds then its
    -cleanup, then the job's -cleanup and -postscript commands.  The tree
    itself is FlatTask.parent.
    """

    job: Job
    tasks: list[FlatTask]
    # Instance edges (referring tid, target tid, "instance"), in the order written
    edges: list[tuple[int, int, str]]
    # (cid, tid or 0, Command)
    commands: list[tuple[int, int, Command]]


def iter_tasks(nodes: tuple[Node, ...]) -> Iterator[Task]:
    """Every Task below `nodes`, depth-first, parents first."""
    stack = list(reversed(nodes))
    while stack:
        n = stack.pop()
        if isinstance(n, Task):
            yield n
            stack.extend(reversed(n.subtasks))


def resolve(job: Job) -> Resolved:
    """Number tasks and commands, resolve Instances, and check the job.

    Errors name both places involved: a reference and the task it misses,
    two tasks with one -id, a cycle and where it closes.
    """
    tasks: list[FlatTask] = []
    edges: list[tuple[int, int, str]] = []
    commands: list[tuple[int, int, Command]] = []
    instances: list[tuple[int, Instance]] = []  # (referring tid, node)
    by_id: dict[str, tuple[int, Place | None]] = {}
    cmd_ids: dict[str, tuple[int, Place | None]] = {}
    refers = False
    cid = 0
    add_task, add_command = tasks.append, commands.append
    if len(job.title) > MAX_TITLE:
        raise _long_title("the job's", job.title, job.where)

    # iterative depth-first walk: deep trees must not hit the recursion limit
    stack: list[tuple[Node, int, int]] = [(n, 0, i) for i, n in reversed(list(enumerate(job.subtasks)))]
    pop = stack.pop
    while stack:
        node, parent, position = pop()
        if node.__class__ is Instance:
            instances.append((parent, node))
            continue
        tid = len(tasks) + 1
        add_task(FlatTask(tid, node, parent, position))
        if len(node.title) > MAX_TITLE:
            raise _long_title("a task's", node.title, node.where)
        if node.id:
            if node.id in by_id:
                raise JobError(f"duplicate task -id {node.id!r}", node.where, also=by_id[node.id][1])
            by_id[node.id] = (tid, node.where)
        cmds = node.cmds + node.cleanup if node.cleanup else node.cmds
        for c in cmds:
            cid += 1
            add_command((cid, tid, c))
            if c.id:
                if c.id in cmd_ids:
                    raise JobError(f"duplicate command -id {c.id!r}", c.where, also=cmd_ids[c.id][1])
                cmd_ids[c.id] = (cid, c.where)
            if c.refersto:
                refers = True
        if node.subtasks:
            stack.extend((n, tid, i) for i, n in reversed(list(enumerate(node.subtasks))))
    for c in job.cleanup + job.postscript:
        cid += 1
        commands.append((cid, 0, c))
        if c.refersto:
            refers = True

    if instances:
        by_title: dict[str, int] = {}
        for ft in tasks:
            by_title.setdefault(ft.task.title, ft.tid)  # the first task with the title
        for referrer, inst in instances:
            # the task with that -id, else the first titled so: pipeline code
            # points Instances at ids because titles repeat
            target = by_id[inst.title][0] if inst.title in by_id else by_title.get(inst.title)
            if target is None:
                raise JobError(f"Instance {inst.title!r} refers to no task with that title or -id", inst.where)
            edges.append((referrer, target, "instance"))

    if refers:
        for _, _, c in commands:
            if c.refersto and c.refersto not in by_id and c.refersto not in cmd_ids:
                raise JobError(f"-refersto {c.refersto!r} names no task or command -id", c.where)

    if edges:  # without Instances, the tree and serial order cannot loop
        _check_acyclic(job, tasks, edges)
    return Resolved(job, tasks, edges, commands)


def _long_title(whose: str, title: str, where: Place | None) -> JobError:
    return JobError(f"{whose} title has {len(title):,} characters; a title may have at most {MAX_TITLE:,}", where)


def _check_acyclic(job: Job, tasks: list[FlatTask], edges: list[tuple[int, int, str]]) -> None:
    """No task may wait, however indirectly, on itself: that job would never finish.

    A task waits on its subtasks, on its Instance targets and, under
    -serialsubtasks, everything in a sibling's subtree waits on the sibling
    before it.  An Instance closes a loop by pointing at an ancestor, or at
    a task whose serial turn comes after its own.
    """
    n = len(tasks)
    waits: list[list[int] | None] = [None] * (n + 1)  # tid -> the tids it waits on

    def add(a: int, b: int) -> None:
        lst = waits[a]
        if lst is None:
            waits[a] = [b]
        else:
            lst.append(b)

    for ft in tasks:
        if ft.parent:
            add(ft.parent, ft.tid)
    for a, b, _ in edges:
        if a:
            add(a, b)
    # serial order: the subtree of a sibling is the contiguous tid range
    # tid .. tid + size - 1 (tids count depth-first)
    size = [1] * (n + 1)
    for ft in reversed(tasks):
        if ft.parent:
            size[ft.parent] += size[ft.tid]
    previous: dict[int, int] = {}
    for ft in tasks:
        serial = tasks[ft.parent - 1].task.serialsubtasks if ft.parent else job.serialsubtasks
        if not serial:
            continue
        before = previous.get(ft.parent)
        if before is not None:
            for u in range(ft.tid, ft.tid + size[ft.tid]):
                add(u, before)
        previous[ft.parent] = ft.tid

    WHITE, GREY, BLACK = 0, 1, 2
    colour = bytearray(n + 1)
    empty: list[int] = []
    for root in range(1, n + 1):
        if colour[root] != WHITE:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        colour[root] = GREY
        while stack:
            tid, i = stack[-1]
            kids = waits[tid] or empty
            if i < len(kids):
                stack[-1] = (tid, i + 1)
                k = kids[i]
                if colour[k] == GREY:
                    a, b = tasks[k - 1].task, tasks[tid - 1].task
                    raise JobError(
                        f"dependency cycle: task {b.title!r} waits (through Instances or serial order) on "
                        f"{a.title!r}, which waits on it", b.where, also=a.where)
                if colour[k] == WHITE:
                    colour[k] = GREY
                    stack.append((k, 0))
            else:
                colour[tid] = BLACK
                stack.pop()
