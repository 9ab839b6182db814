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
from array import array
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence, Union

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


class FlatTasks(Sequence[FlatTask]):
    """Resolved.tasks: the tasks in tid order, as FlatTask views made when asked for.

    The numbering itself is kept in arrays (`task`, `parent`, `position`,
    indexed by tid - 1): a million-task job then takes some 16 MB for it
    instead of some 170 MB of FlatTask objects and their numbers.  The
    spooler reads the arrays.
    """

    __slots__ = ("task", "parent", "position")

    def __init__(self, task: list[Task], parent: array, position: array):
        self.task = task
        self.parent = parent
        self.position = position

    def __len__(self) -> int:
        return len(self.task)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self.task)))]
        task = self.task[i]  # (IndexError as a list's)
        if i < 0:
            i += len(self.task)
        return FlatTask(i + 1, task, self.parent[i], self.position[i])

    def __iter__(self) -> Iterator[FlatTask]:
        return map(FlatTask, range(1, len(self.task) + 1), self.task, self.parent, self.position)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"FlatTasks({list(self)!r})"


class FlatCommands(Sequence[tuple[int, int, Command]]):
    """Resolved.commands: (cid, tid or 0, Command) in cid order, made when asked for from the
    arrays `command` and `tid` (indexed by cid - 1); see FlatTasks."""

    __slots__ = ("command", "tid")

    def __init__(self, command: list[Command], tid: array):
        self.command = command
        self.tid = tid

    def __len__(self) -> int:
        return len(self.command)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self.command)))]
        c = self.command[i]
        if i < 0:
            i += len(self.command)
        return (i + 1, self.tid[i], c)

    def __iter__(self) -> Iterator[tuple[int, int, Command]]:
        return zip(range(1, len(self.command) + 1), self.tid, self.command)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"FlatCommands({list(self)!r})"


@dataclass(slots=True)
class Resolved:
    """A job numbered as the engine numbers it, with its Instance edges.

    tids count tasks depth-first from 1 (parents before their subtasks);
    cids count commands from 1 in the order met: each task's -cmds then its
    -cleanup, then the job's -cleanup and -postscript commands.  The tree
    itself is FlatTask.parent.
    """

    job: Job
    tasks: FlatTasks
    # Instance edges (referring tid, target tid, "instance"), in the order written
    edges: list[tuple[int, int, str]]
    # (cid, tid or 0, Command)
    commands: FlatCommands


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
    task_objs: list[Task] = []
    parents, positions = array("i"), array("i")
    cmd_objs: list[Command] = []
    cmd_tids = array("i")
    edges: list[tuple[int, int, str]] = []
    instances: list[tuple[int, Instance]] = []  # (referring tid, node)
    by_id: dict[str, tuple[int, Place | None]] = {}
    cmd_ids: dict[str, tuple[int, Place | None]] = {}
    refers = False
    add_task, add_parent, add_position = task_objs.append, parents.append, positions.append
    add_command, add_command_tid = cmd_objs.append, cmd_tids.append
    if len(job.title) > MAX_TITLE:
        raise _long_title("the job's", job.title, job.where)

    # iterative depth-first walk (deep trees must not hit the recursion limit): a stack of
    # (parent tid, its nodes still to take), none of them copied
    stack: list[tuple[int, Iterator[tuple[int, Node]]]] = [(0, enumerate(job.subtasks))]
    while stack:
        parent, nodes = stack[-1]
        for position, node in nodes:
            if node.__class__ is Instance:
                instances.append((parent, node))
                continue
            add_task(node)
            add_parent(parent)
            add_position(position)
            tid = len(task_objs)
            if len(node.title) > MAX_TITLE:
                raise _long_title("a task's", node.title, node.where)
            if node.id:
                if node.id in by_id:
                    raise JobError(f"duplicate task -id {node.id!r}", node.where, also=by_id[node.id][1])
                by_id[node.id] = (tid, node.where)
            for c in node.cmds + node.cleanup if node.cleanup else node.cmds:
                add_command(c)
                add_command_tid(tid)
                if c.id:
                    if c.id in cmd_ids:
                        raise JobError(f"duplicate command -id {c.id!r}", c.where, also=cmd_ids[c.id][1])
                    cmd_ids[c.id] = (len(cmd_objs), c.where)
                if c.refersto:
                    refers = True
            if node.subtasks:
                stack.append((tid, enumerate(node.subtasks)))
                break  # its subtasks next, then the rest of these
        else:
            stack.pop()
    for c in job.cleanup + job.postscript:
        add_command(c)
        add_command_tid(0)
        if c.refersto:
            refers = True
    tasks = FlatTasks(task_objs, parents, positions)
    commands = FlatCommands(cmd_objs, cmd_tids)

    if instances:
        by_title: dict[str, int] = {}
        for tid, t in enumerate(task_objs, 1):
            by_title.setdefault(t.title, tid)  # the first task with the title
        for referrer, inst in instances:
            # the task with that -id, else the first titled so: pipeline code
            # points Instances at ids because titles repeat
            target = by_id[inst.title][0] if inst.title in by_id else by_title.get(inst.title)
            if target is None:
                raise JobError(f"Instance {inst.title!r} refers to no task with that title or -id", inst.where)
            edges.append((referrer, target, "instance"))

    if refers:
        for c in cmd_objs:
            if c.refersto and c.refersto not in by_id and c.refersto not in cmd_ids:
                raise JobError(f"-refersto {c.refersto!r} names no task or command -id", c.where)

    if edges:  # without Instances, the tree and serial order cannot loop
        _check_acyclic(job, tasks, edges)
    return Resolved(job, tasks, edges, commands)


def _long_title(whose: str, title: str, where: Place | None) -> JobError:
    return JobError(f"{whose} title has {len(title):,} characters; a title may have at most {MAX_TITLE:,}", where)


def _check_acyclic(job: Job, flat: FlatTasks, edges: list[tuple[int, int, str]]) -> None:
    """No task may wait, however indirectly, on itself: that job would never finish.

    A task waits on its subtasks, on its Instance targets and, under
    -serialsubtasks, everything in a sibling's subtree waits on the sibling
    before it.  An Instance closes a loop by pointing at an ancestor, or at
    a task whose serial turn comes after its own.
    """
    tasks, parents = flat.task, flat.parent
    n = len(tasks)
    waits: list[list[int] | None] = [None] * (n + 1)  # tid -> the tids it waits on

    def add(a: int, b: int) -> None:
        lst = waits[a]
        if lst is None:
            waits[a] = [b]
        else:
            lst.append(b)

    for tid, parent in enumerate(parents, 1):
        if parent:
            add(parent, tid)
    for a, b, _ in edges:
        if a:
            add(a, b)
    # serial order: the subtree of a sibling is the contiguous tid range
    # tid .. tid + size - 1 (tids count depth-first)
    size = [1] * (n + 1)
    for tid in range(n, 0, -1):
        if parents[tid - 1]:
            size[parents[tid - 1]] += size[tid]
    previous: dict[int, int] = {}
    for tid, parent in enumerate(parents, 1):
        serial = tasks[parent - 1].serialsubtasks if parent else job.serialsubtasks
        if not serial:
            continue
        before = previous.get(parent)
        if before is not None:
            for u in range(tid, tid + size[tid]):
                add(u, before)
        previous[parent] = tid

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
                    a, b = tasks[k - 1], tasks[tid - 1]
                    raise JobError(
                        f"dependency cycle: task {b.title!r} waits (through Instances or serial order) on "
                        f"{a.title!r}, which waits on it", b.where, also=a.where)
                if colour[k] == WHITE:
                    colour[k] = GREY
                    stack.append((k, 0))
            else:
                colour[tid] = BLACK
                stack.pop()
