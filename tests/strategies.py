"""Hypothesis strategies for the job model, for every test that needs jobs.

`jobs()` draws a resolvable Job (resolve() accepts it): nested subtasks up
to depth 4, Instances that name existing tasks without closing a cycle,
unique -ids, -refersto naming an existing id, every optional field
exercised, and strings full of what breaks quoting (braces, backslashes,
`$`, `[`, quotes, `;`, newlines, a leading `#`, empty strings).

`jobs(alfred=True)` keeps to what an Alfred script can say, so that
parse(as_tcl(job)) == job can hold: `-after` has minute precision in the
current year and local time, an `-expand` file name is not "0", "1" or
padded with blanks, argv is never empty, runtypes match where a command
sits, and no launch expression or -msg mentions an `-init` variable as
`$name` (the parser substitutes those), and no string holds a NUL (no job
can hold one: the parser refuses it).
"""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from tractorcli.jobs.model import Command, DirMap, Instance, Job, Task

NASTY = [
    "", " ", "{", "}", "{}", "}{", "{{}", "\\", "\\\\", "a\\", "\\{", "\\}", "{\\}", "\\\n", "a\\\nb",
    "$x", "${x}", "[exit]", "[", "]", '"', '"quoted"', ";", "a;b", "\n", "\r\n", "\t", "#", "#comment",
    "# x", "-service", "-title", "\x00", "\x1a", "\u00a0", "\u2028", "é", "日本", "\U0001f600",
    "C:\\app path\\app", "%D(/a/b)", "a b c", " lead", "trail ", "\\u0041", "\\n", "0", "1",
]

_ALPHABET = st.sampled_from(list("ab {}[]$\\\";#\n\t\r-_./%~") + ["\x00", "\x1a", "\u00a0", "é", "\U0001f600"])

# Nasty and ordinary text; surrogates excluded (they cannot be written as UTF-8).
text = st.one_of(
    st.sampled_from(NASTY),
    st.text(_ALPHABET, max_size=12),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.from_regex(r"[A-Za-z0-9_.]{1,10}", fullmatch=True),
)
names = st.lists(text, max_size=4).map(tuple)
ints = st.integers(-5, 2**40)
small = st.integers(0, 64)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
opt_int = st.none() | small
opt_float = st.none() | floats
opt_text = st.none() | text

_POST = ("post_always", "post_done", "post_error")


def _naive_times():
    return st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1))


def _aware_times():
    offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
    return st.builds(lambda t, tz: t.replace(tzinfo=tz), _naive_times(), offsets)


def _alfred_times():
    # what `-after {MM DD HH:MM}` reads back: within the coming half year (or
    # the past one), local time, whole minutes
    from tractorcli.jobs.alfred import local_time

    return st.builds(local_time, st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59))


def _expand(alfred: bool):
    files = text.filter(lambda s: s.strip() == s and s not in ("", "0", "1")) if alfred else text
    return st.none() | st.just("") | files


@st.composite
def commands(draw, runtype: str = "regular", alfred: bool = False) -> Command:
    """One command; `runtype` is where it will sit ("post" draws a postscript -when)."""
    if runtype == "post":
        runtype = draw(st.sampled_from(_POST))
    if not alfred and draw(st.integers(0, 19)) == 0:
        runtype = draw(st.sampled_from(("regular", "cleanup") + _POST))  # out of place: JSON must keep it
    argv = draw(st.lists(text, min_size=1 if alfred else 0, max_size=4).map(tuple))
    c = Command(argv, local=draw(st.booleans()), runtype=runtype)
    if draw(st.booleans()):  # half the commands are plain, half have everything
        return c
    c.service = draw(text)
    c.tags = draw(names)
    c.envkey = draw(st.one_of(names, st.just(("setenv A=1 B=2",)), st.just(("setenv", "A=1"))))
    c.atleast = draw(opt_int)
    c.atmost = draw(opt_int)
    c.samehost = draw(st.booleans())
    c.expand = draw(_expand(alfred))
    c.msg = draw(opt_text)
    c.retryrc = draw(st.lists(st.integers(-3, 300), max_size=3).map(tuple))
    c.minrunsecs = draw(opt_float)
    c.maxrunsecs = draw(opt_float)
    c.resumewhile = draw(st.one_of(st.just(()), names, st.just(("exitcode", "5"))))
    c.resumepin = draw(st.booleans())
    c.metadata = draw(text)
    c.metrics = draw(text)
    return c


@st.composite
def jobs(draw, alfred: bool = False, max_depth: int = 4) -> Job:
    tasks: list[Task] = []  # every task, depth-first, parents first
    post: dict[int, int] = {}  # id(task) -> post-order index
    placeholders: list[tuple[Task | None, Instance, int]] = []  # (referrer, node, drawn choice)
    cmd_list: list[Command] = []
    counter = [0]

    def cmds(runtype: str, max_size: int) -> tuple[Command, ...]:
        out = tuple(draw(st.lists(commands(runtype, alfred), max_size=max_size)))
        cmd_list.extend(out)
        return out

    def task(depth: int) -> Task:
        t = Task(draw(text))
        tasks.append(t)
        kids = []
        for _ in range(draw(st.integers(0, 3)) if depth < max_depth else 0):
            if draw(st.integers(0, 3)) == 0:
                inst = Instance("")
                placeholders.append((t, inst, draw(st.integers(0, 1000))))
                kids.append(inst)
            else:
                kids.append(task(depth + 1))
        t.subtasks = tuple(kids)
        t.cmds = cmds("regular", 3)
        if draw(st.integers(0, 3)) == 0:
            t.cleanup = cmds("cleanup", 2)
        if draw(st.booleans()):
            t.service = draw(text)
            t.atleast = draw(opt_int)
            t.atmost = draw(opt_int)
            t.serialsubtasks = draw(st.booleans())
            t.resumeblock = draw(st.booleans())
            t.chaser = draw(names)
            t.preview = draw(names)
            t.metadata = draw(text)
        post[id(t)] = counter[0]
        counter[0] += 1
        return t

    top = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 5)) == 0:
            inst = Instance("")
            placeholders.append((None, inst, draw(st.integers(0, 1000))))
            top.append(inst)
        else:
            top.append(task(1))

    # unique ids, and -refersto naming one of them
    task_ids: set[str] = set()
    for t in tasks:
        if draw(st.integers(0, 3)) == 0:
            i = draw(text)
            if i not in task_ids:
                task_ids.add(i)
                t.id = i
    cmd_ids: set[str] = set()
    for c in cmd_list:
        if draw(st.integers(0, 4)) == 0:
            i = draw(text)
            if i not in cmd_ids:
                cmd_ids.add(i)
                c.id = i
    pool = sorted(task_ids | cmd_ids)
    if pool:
        for c in cmd_list:
            if draw(st.integers(0, 5)) == 0:
                c.refersto = draw(st.sampled_from(pool))

    # Instances: name a task (by -id, or by title when no -id matches: the
    # first task so titled) whose edge cannot close a cycle: the target
    # finishes before the referrer in post-order, as every tree edge does.
    first_by_title: dict[str, Task] = {}
    for t in tasks:
        first_by_title.setdefault(t.title, t)
    by_id = {t.id: t for t in tasks if t.id}  # resolve() indexes only non-empty ids
    target = {**first_by_title, **by_id}  # what each name resolves to
    refs = sorted(target)
    dropped: set[int] = set()
    for referrer, inst, choice in placeholders:
        limit = post[id(referrer)] if referrer is not None else len(tasks)
        names_ok = [n for n in refs if post[id(target[n])] < limit]
        if names_ok:
            inst.title = names_ok[choice % len(names_ok)]
        else:
            dropped.add(id(inst))
    if dropped:
        for t in tasks:
            t.subtasks = tuple(n for n in t.subtasks if id(n) not in dropped)
        top = [n for n in top if id(n) not in dropped]

    job = Job(title=draw(text), subtasks=tuple(top))
    job.cleanup = tuple(draw(st.lists(commands("cleanup", alfred), max_size=2)))
    job.postscript = tuple(draw(st.lists(commands("post", alfred), max_size=2)))
    if draw(st.booleans()):
        return _alfred_safe(job) if alfred else job
    times = _alfred_times() if alfred else st.one_of(_naive_times(), _aware_times())
    job.after = draw(st.none() | times)
    job.afterjids = draw(st.lists(st.integers(0, 10**9), max_size=3).map(tuple))
    job.atleast = draw(opt_int)
    job.atmost = draw(opt_int)
    job.maxactive = draw(small)
    job.tags = draw(names)
    job.projects = draw(names)
    job.tier = draw(text)
    job.service = draw(text)
    job.avoid = draw(names)
    job.envkey = draw(names)
    job.priority = draw(opt_float)
    job.crews = draw(names)
    job.etalevel = draw(opt_int)
    job.comment = draw(text)
    job.metadata = draw(text)
    job.editpolicy = draw(text)
    job.dirmaps = tuple(draw(st.lists(st.builds(DirMap, text, text, text), max_size=3)))
    job.assignments = tuple(draw(st.lists(st.tuples(text, text), max_size=3)))
    job.serialsubtasks = draw(st.booleans())
    job.paused = draw(st.booleans())
    job.spoolcwd = draw(text)
    return _alfred_safe(job) if alfred else job


def _no_nul(obj) -> None:
    """Replace NUL characters in every string of a model object (no job can hold one)."""
    import dataclasses

    def clean(v):
        if isinstance(v, str):
            return v.replace("\x00", "\x01")  # not removed: ids and titles stay distinct
        if isinstance(v, tuple):
            return tuple(clean(x) for x in v)
        if isinstance(v, DirMap):
            return DirMap(clean(v.src), clean(v.dst), clean(v.zone))
        return v

    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, (str, DirMap)) or isinstance(v, tuple) and not any(
                isinstance(x, (Task, Instance, Command)) for x in v):
            setattr(obj, f.name, clean(v))


def _alfred_safe(job: Job) -> Job:
    """Replace NULs (the parser refuses them); drop -init variables that a launch
    expression or -msg mentions as $name."""
    from tractorcli.jobs.model import iter_tasks

    _no_nul(job)
    for c in job.cleanup + job.postscript:
        _no_nul(c)
    stack = list(job.subtasks)
    while stack:
        n = stack.pop()
        _no_nul(n)
        if isinstance(n, Task):
            stack.extend(n.subtasks)
            for c in n.cmds + n.cleanup:
                _no_nul(c)
    if not job.assignments:
        return job

    texts = []
    for t in iter_tasks(job.subtasks):
        for c in t.cmds + t.cleanup:
            texts.extend(c.argv)
            texts.append(c.msg or "")
    for c in job.cleanup + job.postscript:
        texts.extend(c.argv)
        texts.append(c.msg or "")
    blob = "\x00".join(texts)
    job.assignments = tuple((k, v) for k, v in job.assignments if "$" + k not in blob and "${" + k not in blob)
    return job
