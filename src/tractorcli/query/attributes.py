"""The entities tq searches and their attributes: a fixed table.

Every identifier that reaches SQL comes from here: an attribute is its
public (Tractor) name, the SQL expression that computes it on the entity's
table alias, and its type.  Nothing a user types ever becomes an identifier;
a name either is a key of these tables or is not an attribute at all.

Entities, their tables and aliases in SQL::

    Job         jobs         job     (JobLock: the lock columns of jobs)
    Task        tasks        task
    Command     commands     cmd
    Invocation  invocations  invo
    Blade       blades       blade   (BladeUse: what a blade is running)
    Param       params       param   (with the computed ones of show_params)
    Note        notes        note

Attribute types: ``int float text bool timestamp text[] int[] json uuid
duration size`` (`duration`: seconds; `size`: GB).

Related entities.  A search of one entity may use attributes of entities it
belongs to, each row meeting at most one row of each (so joins never
multiply rows):

* tasks -> their Job; their Invocation (the latest current invocation of
  the task's commands: what runs or last ran it) and its Blade;
* commands -> their Task (none for job-level -cleanup/-postscript commands),
  their Job, their current Invocation and its Blade;
* invocations -> their Command, Task, Job and Blade.

An unqualified name is the queried entity's attribute if it has one, else
the first related entity's in the order above (``tq tasks owner=ann`` is
Job.owner; ``tq invocations state=error`` is Command.state).  A qualified
name (``Job.title``, ``Blade.name``, ``JobLock.owner``) says which.

Choices (where our schema differs from Tractor's)
-------------------------------------------------
* Task ``cids`` and ``ptids`` are computed by subqueries: a task's commands
  in order, and its parents (tree parent or 0 for a top-level task, then the
  tasks that reach it through an Instance).
* Command ``expand`` is a bool here (is it an expand command); the column
  also holds where the expansion script comes from.
* Blade ``taskcount`` and ``owners`` (Tractor's BladeUse) are computed from
  the blade's running invocations; ``slotsinuse`` is a column.
* Beyond Tractor, for things our schema has and tq users want: Job
  ``phase``, ``avoid``; Task ``resumecount``; Command ``state``,
  ``statetime``, ``samehost``, ``autoretries``; Invocation ``blade`` (the
  blade's name, Tractor 2.0's attribute), ``recover``; Blade ``provides``,
  ``zone``.  Internal bookkeeping is left out: ``svcid(s)``, ``tierpri``,
  ``pending``, ``lasttid``, ``position``, ``parent_tid`` (see ``ptids``),
  ``leasetime``, the stored job ``script``, blade ``metrics``, command
  ``metrics``.
* Param rows include the computed ones (``jidcounter``, ``schema-version``
  ...) of the ``show_params`` query.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

__all__ = [
    "Attribute", "Entity", "ENTITIES", "ENTITY_NAMES", "QUALIFIERS", "TYPES", "UnknownAttribute",
    "entity", "table_sql", "resolve", "attribute_names", "join_sql", "nullable_from", "suggest",
]

TYPES = ("int", "float", "text", "bool", "timestamp", "text[]", "int[]", "json", "uuid", "duration", "size")
NUMERIC = frozenset({"int", "float", "duration", "size"})
ARRAY = frozenset({"text[]", "int[]"})


@dataclass(frozen=True, slots=True)
class Attribute:
    entity: str  # entity key: job, task, command, invocation, blade, param, note
    name: str  # the public (Tractor) name
    sql: str  # SQL expression on the entity's table alias
    type: str  # one of TYPES
    cast: str  # SQL type of a parameter compared with it (arrays: the element's)
    nullable: bool = False
    doc: str = ""

    @property
    def qualified(self) -> str:
        return f"{ENTITY_NAMES[self.entity]}.{self.name}"

    @property
    def is_array(self) -> bool:
        return self.type in ARRAY

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC


class UnknownAttribute(LookupError):
    """A qualified name whose entity exists but has no such attribute, or an
    entity that cannot be reached from the one searched."""


@dataclass(frozen=True)
class Entity:
    key: str
    name: str  # Job, Task ... (the qualifier)
    plural: str  # jobs, tasks ... (tq's subcommand)
    from_sql: str  # table AS alias ("" for params: see table_sql())
    alias: str
    attrs: dict[str, Attribute]
    aliases: dict[str, str]  # attribute alias -> attribute name
    related: tuple[str, ...] = ()  # other entities, in resolution order
    keys: tuple[str, ...] = ()  # identifying attributes (stable sort tiebreakers)
    live_sql: str = ""  # the default restriction (no archived jobs; registered blades)
    live_needs: tuple[str, ...] = ()  # entities live_sql needs joined
    views: dict[str, dict[str, str]] = field(default_factory=dict)  # JobLock / BladeUse name maps


_CAST = {"int": "int4", "float": "float8", "text": "text", "bool": "boolean", "timestamp": "timestamptz",
         "text[]": "text", "int[]": "int4", "json": "text", "uuid": "uuid", "duration": "float8", "size": "float8"}


def _table(entity: str, alias: str, spec: str, computed: dict[str, str] | None = None) -> dict[str, Attribute]:
    """Attributes from lines of ``name type [null] [cast=T] [col=C] [doc...]``."""
    out: dict[str, Attribute] = {}
    for line in spec.strip().splitlines():
        line = line.strip()
        if not line:
            continue
        words, doc = line.split("#", 1) if "#" in line else (line, "")
        parts = words.split()
        name, typ, opts = parts[0], parts[1], parts[2:]
        assert typ in TYPES, (name, typ)
        nullable = "null" in opts
        cast = next((o[5:] for o in opts if o.startswith("cast=")), _CAST[typ])
        col = next((o[4:] for o in opts if o.startswith("col=")), name)
        sql = (computed or {}).get(name) or f"{alias}.{col}"
        out[name] = Attribute(entity, name, sql, typ, cast, nullable, doc.strip())
    return out


_JOB = _table("job", "job", """
    jid            int cast=int8            # job id
    owner          text                     # the user who spooled the job
    spoolhost      text                     # host it was spooled from
    spoolfile      text                     # the job file spooled
    spoolcwd       text                     # spooler's working directory
    spooladdr      text                     # spooler's address
    title          text
    assignments    json                     # Assign variables
    tier           text
    priority       float
    crews          text[]
    projects       text[]
    tags           text[]
    service        text                     # job-wide service key expression
    avoid          text[]                   # -avoid keys (beyond Tractor)
    envkey         text[]
    editpolicy     text
    minslots       int null
    maxslots       int null
    etalevel       int
    afterjids      int[] cast=int8          # jobs that must finish first
    spooltime      timestamp
    pausetime      timestamp null           # set while paused
    aftertime      timestamp null           # not to start before
    starttime      timestamp null
    stoptime       timestamp null
    deletetime     timestamp null           # archived (deleted) at
    elapsedsecs    duration
    esttotalsecs   duration
    numtasks       int
    numblocked     int
    numready       int
    numactive      int
    numerror       int
    numdone        int
    maxtid         int
    maxcid         int
    comment        text
    metadata       text
    maxactive      int                      # 0: no limit
    serialsubtasks bool
    dirmap         json
    pil            int
    lastnoteid     int null cast=int8
    phase          text                     # live, postscript, finished (beyond Tractor)
    lockowner      text null                # JobLock.owner
    locktime       timestamp null           # JobLock.locktime
    locknote       text null                # JobLock.note
""")

_TASK = _table("task", "task", """
    jid            int cast=int8
    tid            int                      # task id (1, 2 ... in the job)
    title          text
    id             text null                # -id (for Instance and -refersto)
    service        text null
    minslots       int null
    maxslots       int null
    cids           int[]                    # its commands, in order
    serialsubtasks bool
    ptids          int[]                    # parents: tree parent (0: top level), then Instance referrers
    attached       bool                     # false: an expand task detached by a restart
    expandedby     int null                 # made by the expand command of this task (beyond Tractor)
    expandcid      int null                 # ... that command (beyond Tractor)
    state          text                     # blocked ready active error done
    statetime      timestamp
    readytime      timestamp null
    activetime     timestamp null
    currcid        int null                 # the command running now
    haslog         bool
    preview        text[]
    chaser         text[]
    progress       float                    # percent
    metadata       text
    resumeblock    bool
    retrycount     int
    resumecount    int                      # passes of a resume loop (beyond Tractor)
""", computed={
    "cids": "ARRAY(SELECT tc.cid FROM commands AS tc WHERE tc.jid = task.jid AND tc.tid = task.tid"
            " ORDER BY tc.position)",
    "ptids": "(ARRAY[coalesce(task.parent_tid, 0)] || ARRAY(SELECT te.parent_tid FROM task_edges AS te"
             " WHERE te.jid = task.jid AND te.child_tid = task.tid ORDER BY te.parent_tid))",
})

_COMMAND = _table("command", "cmd", """
    jid            int cast=int8
    tid            int                      # 0: a job-level (-cleanup, -postscript) command
    cid            int                      # command id (1, 2 ... in the job)
    argv           text[]
    local          bool                     # Cmd (runs on the spooling host) rather than RemoteCmd
    expand         bool                     # an expand command
    runtype        text                     # regular cleanup post_always post_error post_done
    msg            text null
    service        text                     # service key expression
    tags           text[]
    id             text null
    refersto       text null
    minslots       int null
    maxslots       int null
    envkey         text[]
    retryrcodes    int[]
    metadata       text
    resumewhile    text[]
    resumepin      bool
    minrunsecs     duration null
    maxrunsecs     duration null
    state          text                     # blocked ready active error done skipped (beyond Tractor)
    statetime      timestamp                # (beyond Tractor)
    samehost       bool                     # (beyond Tractor)
    autoretries    int                      # automatic retries spent (beyond Tractor)
""", computed={"expand": "(cmd.expand IS NOT NULL)"})

_INVOCATION = _table("invocation", "invo", """
    jid            int cast=int8
    tid            int
    cid            int
    iid            int                      # invocation id (1, 2 ... per command)
    current        bool                     # not superseded (a requeued launch is not current)
    numslots       int
    limits         text[]
    starttime      timestamp
    stoptime       timestamp null
    pid            int null
    rss            size                     # GB
    vsz            size                     # GB
    cpu            float
    elapsedapp     duration                 # user time
    elapsedsys     duration                 # system time
    elapsedreal    duration                 # wall-clock time
    rcode          int null                 # exit status
    retrycount     int
    resumecount    int
    resumable      bool
    bladeid        uuid null
    blade          text col=bladename       # the blade's name (Tractor 2.0's attribute)
    recover        bool                     # launched as a resume (%r = 1) (beyond Tractor)
""")

_BLADE = _table("blade", "blade", """
    name           text
    ipaddr         text
    port           int
    osname         text
    osversion      text
    boottime       timestamp null
    numcpu         int
    loadavg        float
    availmemory    size                     # GB free
    availdisk      size                     # GB free
    version        text
    profile        text
    nimby          text                     # '' open, '1' closed, else the one allowed user
    starttime      timestamp null
    numslots       int
    udi            float
    status         text
    heartbeattime  timestamp null
    instanceid     int
    bladeid        uuid
    cleartime      timestamp null           # delisted at
    gpulabel       text
    taskcount      int                      # commands running (BladeUse)
    slotsinuse     int                      # (BladeUse)
    owners         text[]                   # owners of the jobs it runs (BladeUse)
    provides       text[]                   # its service keys (beyond Tractor)
    zone           text                     # dirmap zone (beyond Tractor)
""", computed={
    "taskcount": "(SELECT count(*) FROM invocations AS bi WHERE bi.bladeid = blade.bladeid"
                 " AND bi.current AND bi.stoptime IS NULL)::int4",
    "owners": "ARRAY(SELECT DISTINCT bj.owner FROM invocations AS bi JOIN jobs AS bj ON bj.jid = bi.jid"
              " WHERE bi.bladeid = blade.bladeid AND bi.current AND bi.stoptime IS NULL ORDER BY bj.owner)",
})

_PARAM = _table("param", "param", """
    name           text
    value          text
""")

_NOTE = _table("note", "note", """
    noteid         int cast=int8
    notetype       text
    noteuser       text
    notetime       timestamp
    notetext       text
    itemtype       text                     # job task blade
    itemid         text[]                   # [jid], [jid, tid] or [blade name]
""")

_ID_ALIASES = {"jobid": "jid", "taskid": "tid"}


def _param_from() -> str:
    from ..db import queries

    return f"({queries.get('show_params')}) AS param"


_LIVE_JOB = "job.deletetime IS NULL"

ENTITIES: dict[str, Entity] = {
    "job": Entity(
        "job", "Job", "jobs", "jobs AS job", "job", _JOB,
        {"user": "owner", "username": "owner", "cwd": "spoolcwd", "deleted": "deletetime", "jobid": "jid",
         "ntasks": "numtasks", "pri": "priority", "spooled": "spooltime", "elapsed": "elapsedsecs",
         "est": "esttotalsecs", "file": "spoolfile", "locked": "locktime"},
        (), ("jid",), _LIVE_JOB, (),
        {"JobLock": {"owner": "lockowner", "time": "locktime", "locked": "locktime", "note": "locknote",
                     "lockowner": "lockowner", "locktime": "locktime", "locknote": "locknote"}},
    ),
    "task": Entity(
        "task", "Task", "tasks", "tasks AS task", "task", _TASK, dict(_ID_ALIASES),
        ("job", "invocation", "blade"), ("jid", "tid"), _LIVE_JOB, ("job",),
    ),
    "command": Entity(
        "command", "Command", "commands", "commands AS cmd", "cmd", _COMMAND,
        dict(_ID_ALIASES, cmdid="cid", retryrc="retryrcodes", retrycodes="retryrcodes"),
        ("task", "job", "invocation", "blade"), ("jid", "cid"), _LIVE_JOB, ("job",),
    ),
    "invocation": Entity(
        "invocation", "Invocation", "invocations", "invocations AS invo", "invo", _INVOCATION,
        dict(_ID_ALIASES, cmdid="cid", utime="elapsedapp", stime="elapsedsys", wtime="elapsedreal", mem="vsz"),
        ("command", "task", "job", "blade"), ("jid", "cid", "iid"), _LIVE_JOB, ("job",),
    ),
    "blade": Entity(
        "blade", "Blade", "blades", "blades AS blade", "blade", _BLADE,
        {"disk": "availdisk", "mem": "availmemory", "availmem": "availmemory", "cores": "numcpu",
         "load": "loadavg", "os": "osname", "instid": "instanceid", "bid": "bladeid"},
        (), ("name", "ipaddr", "port"),
        "(blade.heartbeattime > blade.cleartime OR (blade.heartbeattime IS NOT NULL AND blade.cleartime IS NULL))",
        (),
        {"BladeUse": {"taskcount": "taskcount", "slotsinuse": "slotsinuse", "owners": "owners"}},
    ),
    "param": Entity("param", "Param", "params", "", "param", _PARAM, {}, (), ("name",)),
    "note": Entity("note", "Note", "notes", "notes AS note", "note", _NOTE, {}, (), ("noteid",)),
}

ENTITY_NAMES = {k: e.name for k, e in ENTITIES.items()}

#: Qualifier (as written before the dot) -> (entity key, view name or None).
QUALIFIERS: dict[str, tuple[str, str | None]] = {
    "Job": ("job", None), "Task": ("task", None), "Command": ("command", None), "Cmd": ("command", None),
    "Invocation": ("invocation", None), "Invo": ("invocation", None), "Blade": ("blade", None),
    "Param": ("param", None), "Note": ("note", None), "JobLock": ("job", "JobLock"),
    "BladeUse": ("blade", "BladeUse"),
}

_SUBCOMMANDS = {"jobs": "job", "tasks": "task", "commands": "command", "cmds": "command",
                "invocations": "invocation", "invos": "invocation", "blades": "blade", "params": "param",
                "notes": "note"}


def entity(name: str) -> Entity:
    """The entity called `name`: a key (``job``), a qualifier (``Job``) or tq's plural (``jobs``, ``cmds``)."""
    key = _SUBCOMMANDS.get(name) or (QUALIFIERS[name][0] if name in QUALIFIERS else name)
    try:
        return ENTITIES[key]
    except KeyError:
        raise ValueError(f"unknown entity {name!r} (known: {', '.join(sorted(_SUBCOMMANDS))})") from None


def table_sql(e: Entity) -> str:
    """The entity's table with its alias, for a FROM clause."""
    return e.from_sql or _param_from()


# --- joins --------------------------------------------------------------------------

#: (queried entity, related entity) -> (JOIN clause, entities it needs joined first).
_JOINS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("task", "job"): ("JOIN jobs AS job ON job.jid = task.jid", ()),
    ("task", "invocation"): (
        "LEFT JOIN LATERAL (SELECT ti.* FROM commands AS tc JOIN invocations AS ti"
        " ON ti.jid = tc.jid AND ti.cid = tc.cid"
        " WHERE tc.jid = task.jid AND tc.tid = task.tid AND ti.current"
        " ORDER BY ti.starttime DESC, ti.cid DESC, ti.iid DESC LIMIT 1) AS invo ON true", ()),
    ("task", "blade"): ("LEFT JOIN blades AS blade ON blade.bladeid = invo.bladeid", ("invocation",)),
    ("command", "task"): ("LEFT JOIN tasks AS task ON task.jid = cmd.jid AND task.tid = cmd.tid", ()),
    ("command", "job"): ("JOIN jobs AS job ON job.jid = cmd.jid", ()),
    ("command", "invocation"): (
        "LEFT JOIN LATERAL (SELECT ci.* FROM invocations AS ci"
        " WHERE ci.jid = cmd.jid AND ci.cid = cmd.cid AND ci.current"
        " ORDER BY ci.iid DESC LIMIT 1) AS invo ON true", ()),
    ("command", "blade"): ("LEFT JOIN blades AS blade ON blade.bladeid = invo.bladeid", ("invocation",)),
    ("invocation", "command"): ("JOIN commands AS cmd ON cmd.jid = invo.jid AND cmd.cid = invo.cid", ()),
    ("invocation", "task"): ("LEFT JOIN tasks AS task ON task.jid = invo.jid AND task.tid = invo.tid", ()),
    ("invocation", "job"): ("JOIN jobs AS job ON job.jid = invo.jid", ()),
    ("invocation", "blade"): ("LEFT JOIN blades AS blade ON blade.bladeid = invo.bladeid", ()),
}


def join_sql(queried: str, needed: set[str] | frozenset[str]) -> list[tuple[str, str]]:
    """[(entity, JOIN clause)] that reach every entity in `needed` from `queried`,
    dependencies first, in a fixed order (the related-entity order)."""
    want: set[str] = set()

    def add(k: str) -> None:
        if k == queried or k in want:
            return
        for d in _JOINS[(queried, k)][1]:
            add(d)
        want.add(k)

    for k in needed:
        add(k)
    order = ENTITIES[queried].related
    out = []
    done: set[str] = set()

    def emit(k: str) -> None:
        if k in done:
            return
        sql, deps = _JOINS[(queried, k)]
        for d in deps:
            emit(d)
        done.add(k)
        out.append((k, sql))

    for k in order:
        if k in want:
            emit(k)
    return out


def nullable_from(queried: str, attr: Attribute) -> bool:
    """Whether `attr` can be NULL in a search of `queried` (its own NULLs, or an outer join)."""
    if attr.nullable:
        return True
    if attr.entity == queried:
        return False
    if attr.entity in ("invocation", "blade"):
        return True
    return (queried, attr.entity) == ("command", "task") or (queried, attr.entity) == ("invocation", "task")


# --- names --------------------------------------------------------------------------

_QUALIFIED = re.compile(r"([A-Za-z]+)\.(.*)\Z", re.S)


def _own(e: Entity, name: str) -> Attribute | None:
    a = e.attrs.get(name)
    if a is None and name in e.aliases:
        a = e.attrs[e.aliases[name]]
    return a


def _suggest(names, word: str) -> str:
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def resolve(queried: str, word: str) -> Attribute | None:
    """The attribute `word` names in a search of entity `queried`, or None if it names none.

    A word qualified with a known entity (``Job.owner``) must name one of its
    attributes and that entity must be reachable from `queried`, else
    `UnknownAttribute`.  An unqualified word is looked up in `queried`,
    then in its related entities in order.
    """
    e = ENTITIES[queried]
    m = _QUALIFIED.match(word)
    if m and m.group(1) in QUALIFIERS:
        key, view = QUALIFIERS[m.group(1)]
        target = ENTITIES[key]
        name = m.group(2)
        if view:
            names = target.views[view]
            a = target.attrs[names[name]] if name in names else None
        else:
            names = {**target.attrs, **target.aliases}
            a = _own(target, name)
        if a is None:
            raise UnknownAttribute(f"{m.group(1)} has no attribute {_show(name)}{_suggest(names, name)}")
        if key != queried and key not in e.related:
            reach = ", ".join(ENTITY_NAMES[k] for k in e.related) or "no other entity"
            raise UnknownAttribute(f"a search of {e.plural} cannot use {target.name} attributes "
                                   f"(it reaches {reach})")
        return a
    a = _own(e, word)
    if a is not None:
        return a
    for k in e.related:
        a = _own(ENTITIES[k], word)
        if a is not None:
            return a
    return None


def suggest(queried: str, word: str) -> str:
    """A " (did you mean X?)" suffix for an unknown name, or ""."""
    return _suggest(attribute_names(queried), word)


def _show(text: str) -> str:
    from .errors import show

    return show(text)


def attribute_names(queried: str, *, related: bool = True) -> list[str]:
    """Every name usable unqualified in a search of `queried` (attributes and attribute aliases)."""
    e = ENTITIES[queried]
    names = set(e.attrs) | set(e.aliases)
    if related:
        for k in e.related:
            names |= set(ENTITIES[k].attrs) | set(ENTITIES[k].aliases)
    return sorted(names)
