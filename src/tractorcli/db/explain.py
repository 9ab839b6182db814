"""Why a task is not running: `tq explain` / `tq why`, from the job database.

`explain_task(conn, jid, tid)` returns a `TaskWhy` whose `reasons` are
`Reason(kind, text, detail)`: `kind` is a stable word for scripts (below),
`text` one sentence for people, `detail` the facts behind it (JSON-ready).

Kinds, in the order they are given:

* the task itself: ``active`` (it is running: on which blade), ``done``,
  ``error`` (last exit code and blade), ``detached`` (an expand task that a
  restart detached);
* the job: ``deleted``, ``finished``, ``paused``, ``delayed`` (until when),
  ``afterjids`` (the jobs it still waits for), ``maxactive`` (at its limit);
* a blocked task: ``subtasks``, ``instances`` (Instance targets),
  ``serial`` (a serial predecessor of the task or of an ancestor: names and
  states);
* a ready task: ``noblades`` (no registered blade), ``nomatch`` (no
  registered, up blade matches its command's service expression: per blade,
  the missing keys and failed comparisons), ``busy`` (every matching blade
  has all its slots in use), ``nimby`` (every matching blade with free slots
  refuses the job), ``local`` (a local Cmd waits for its spooling host),
  ``pinned`` (a -resumepin command waits for its blade), ``waiting`` (none of
  the above: a blade should claim it at its next poll).

Read-only, a few small queries per task; no click.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from . import queries

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["UP_SECS", "Reason", "TaskWhy", "blade_facts", "explain_task", "nimby_admits"]

UP_SECS = 360  # a blade is up when not marked down and its last heartbeat is newer than this (`up`: -6m)



@dataclasses.dataclass(frozen=True)
class Reason:
    kind: str
    text: str
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "detail": _jsonable(self.detail)}


@dataclasses.dataclass(frozen=True)
class TaskWhy:
    jid: int
    tid: int
    title: str
    state: str
    reasons: tuple[Reason, ...]

    @property
    def running(self) -> bool:
        return self.state == "active"

    def as_dict(self) -> dict[str, Any]:
        return {"jid": self.jid, "tid": self.tid, "title": self.title, "state": self.state,
                "reasons": [r.as_dict() for r in self.reasons]}

    def lines(self) -> list[str]:
        head = f"{self.jid} {self.tid} {self.title!r}: {self.state}"
        return [head] + [f"  {r.text}" for r in self.reasons]


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _tasks_text(rows) -> str:
    return ", ".join(f"{r['tid']} {r['title']!r} ({r['state']})" for r in rows)


def nimby_admits(nimby: str | None, owner: str, spoolhost: str | None, hosts) -> bool:
    """Whether a blade whose NIMBY is `nimby` ('' any job, '1' jobs spooled from one of its
    `hosts`, else that user's) takes a job of `owner` spooled from `spoolhost`: the claim's rule."""
    return not nimby or (nimby == "1" and spoolhost in hosts) or owner == nimby


def blade_facts(row: dict):
    """The service-key facts of a blades-table row: its provides, name, address, profile and metrics."""
    from ..service import BladeFacts

    m = dict(row.get("metrics") or {})
    m.setdefault("disk", row.get("availdisk"))
    m.setdefault("mem", row.get("availmemory"))
    m.setdefault("nCPUs", row.get("numcpu") or None)
    m.setdefault("cpu", row.get("loadavg"))
    m["sa"] = max(int(row.get("numslots") or 0) - int(row.get("slotsinuse") or 0), 0)
    return BladeFacts(provides=frozenset(row.get("provides") or ()), hostname=row.get("name") or "",
                      addresses=tuple(a for a in (row.get("ipaddr"),) if a), profile=row.get("profile") or "",
                      metrics=m)


def _job_reasons(conn, t: dict, now: dt.datetime) -> list[Reason]:
    out: list[Reason] = []
    if t["deletetime"] is not None:
        out.append(Reason("deleted", f"the job was deleted at {t['deletetime']:%Y-%m-%d %H:%M:%S}",
                          {"deletetime": t["deletetime"]}))
    if t["pausetime"] is not None:
        out.append(Reason("paused", f"the job is paused (since {t['pausetime']:%Y-%m-%d %H:%M:%S})",
                          {"pausetime": t["pausetime"]}))
    if t["aftertime"] is not None and t["aftertime"] > now:
        out.append(Reason("delayed", f"the job is delayed until {t['aftertime']:%Y-%m-%d %H:%M:%S}",
                          {"aftertime": t["aftertime"]}))
    if t["afterjids"]:
        waiting = conn.execute(queries.get("explain_afterjids"), {"jids": list(t["afterjids"])}).fetchall()
        if waiting:
            out.append(Reason("afterjids", "the job waits for job(s) "
                              + ", ".join(f"{r['jid']} {r['title']!r}" for r in waiting) + " to finish",
                              {"afterjids": [r["jid"] for r in waiting]}))
    if t["maxactive"] and t["numactive"] >= t["maxactive"]:
        out.append(Reason("maxactive", f"the job runs {t['numactive']} tasks, its -maxactive {t['maxactive']}",
                          {"maxactive": t["maxactive"], "numactive": t["numactive"]}))
    return out


def _serial(conn, t: dict) -> list[Reason]:
    """Serial predecessors not done, of the task and of each of its ancestors."""
    out: list[Reason] = []
    jid = t["jid"]
    node = {"tid": t["tid"], "title": t["title"], "parent_tid": t["parent_tid"], "position": t["position"]}
    while node is not None:
        parent = None
        if node["parent_tid"] is not None:
            rows = conn.execute(queries.get("explain_tree"), {"jid": jid, "tids": [node["parent_tid"]]}).fetchall()
            parent = rows[0] if rows else None
        serial = parent["serialsubtasks"] if parent is not None else t["jobserial"]
        if serial and node["position"] > 0:
            prev = conn.execute(queries.get("explain_prev"), {"jid": jid, "parent": node["parent_tid"],
                                        "position": node["position"]}).fetchone()
            if prev is not None and prev["state"] != "done":
                whose = "it" if node["tid"] == t["tid"] else f"its ancestor {node['tid']} {node['title']!r}"
                out.append(Reason("serial", f"{whose} runs after {_tasks_text([prev])} (serial subtasks)",
                                  {"tid": node["tid"], "predecessor": dict(prev)}))
        node = parent
    return out


def _blocked(conn, t: dict) -> list[Reason]:
    out: list[Reason] = []
    p = {"jid": t["jid"], "tid": t["tid"]}
    subs = conn.execute(queries.get("explain_subtasks"), p).fetchall()
    if subs:
        out.append(Reason("subtasks", f"waits for {len(subs)} subtask(s): {_tasks_text(subs)}",
                          {"tasks": [dict(r) for r in subs]}))
    inst = conn.execute(queries.get("explain_instances"), p).fetchall()
    if inst:
        out.append(Reason("instances", f"waits for Instance target(s): {_tasks_text(inst)}",
                          {"tasks": [dict(r) for r in inst]}))
    out += _serial(conn, t)
    return out


def _ready(conn, t: dict) -> list[Reason]:
    from ..service import ServiceExprError, explain, parse

    q = conn.execute(queries.get("explain_ready"), {"jid": t["jid"], "tid": t["tid"]}).fetchone()
    if q is None:
        return [Reason("waiting", "ready, but none of its commands is queued yet", {})]
    expr_text = q["expr"] or ""
    try:
        expr = parse(expr_text)
    except ServiceExprError as exc:
        return [Reason("nomatch", f"its service expression {expr_text!r} does not parse: {exc}",
                       {"service": expr_text})]
    blades = conn.execute(queries.get("explain_blades"), {"up": UP_SECS}).fetchall()
    what = f"service {expr_text!r}" if expr_text else "no service requirement"
    if not blades:
        return [Reason("noblades", f"ready ({what}), but no blade is registered", {"service": expr_text})]
    up = [b for b in blades if b["up"]]
    down = [b["name"] for b in blades if not b["up"]]
    matching, refusals = [], []
    for b in up:
        e = explain(expr, blade_facts(b))
        if e.matches:
            matching.append(b)
        else:
            refusals.append({"blade": b["name"], "ipaddr": b["ipaddr"], "missing": list(e.missing),
                             "unwanted": list(e.unwanted), "failed": list(e.failed)})
    if not matching:
        parts = []
        for r in refusals:
            bits = []
            if r["missing"]:
                bits.append("missing " + ", ".join(r["missing"]))
            if r["unwanted"]:
                bits.append("excluded " + ", ".join(r["unwanted"]))
            bits += r["failed"]
            parts.append(f"{r['blade']} ({'; '.join(bits) or 'does not match'})")
        text = f"ready, but no registered, up blade matches {what}"
        if parts:
            text += ": " + "; ".join(parts)
        if down:
            text += f" (not up: {', '.join(down)})"
        return [Reason("nomatch", text, {"service": expr_text, "blades": refusals, "down": down})]
    if q["local"]:
        return [Reason("local", f"ready: a local Cmd, it runs only on its spooling host {q['spoolhost']!r}",
                       {"spoolhost": q["spoolhost"]})]
    if q["pinblade"] is not None:
        pin = [b["name"] for b in blades if b["bladeid"] == q["pinblade"]]
        return [Reason("pinned", f"ready: -resumepin, it waits for blade {pin[0] if pin else q['pinblade']}",
                       {"pinblade": q["pinblade"]})]
    names = [b["name"] for b in matching]
    need = q["minslots"]
    # -atleast N without -samehost gathers its slots across the matching blades: the claiming
    # blade needs one free slot, the others lend the rest (functions/bindings.sql)
    spread = need > 1 and not q["samehost"]
    total = sum(_free_slots(b) for b in matching)
    if spread:
        free = [b for b in matching if _free_slots(b) >= 1] if total >= need else []
    else:
        free = [b for b in matching if _free_slots(b) >= need]
    if not free:
        use = ", ".join(f"{b['name']} ({b['slotsinuse']}/{b['numslots']} slots)" for b in matching)
        text = (f"ready; it needs {need} slots gathered across the blades matching {what}, and {total} "
                f"are free: {use}" if spread else f"ready; every blade matching {what} is busy: {use}")
        return [Reason("busy", text, {"service": expr_text, "blades": names, "minslots": need,
                                      "samehost": bool(q["samehost"]), "free": total})]

    open_ = [b for b in free if nimby_admits(b["nimby"], t["owner"], t["spoolhost"], (b["name"], b["ipaddr"]))]
    if not open_:
        return [Reason("nimby", "ready; every free blade matching " + what + " is NIMBY: "
                       + ", ".join(f"{b['name']} ({'local jobs only' if b['nimby'] == '1' else 'only ' + b['nimby']})"
                                   for b in free),
                       {"service": expr_text, "blades": [b["name"] for b in free]})]
    from . import limits as limits_db

    if limits_db.names(conn):
        refused = limits_db.refusals(conn, [(t["jid"], q["cid"], b["bladeid"]) for b in open_])
        room = [b for b, why in zip(open_, refused) if why is None]
        if not room:
            why = refused[0]
            return [Reason("limit", f"ready; {why}; {limits_db.holders(conn, why)}",
                           {"service": expr_text, "limit": why.split()[1],
                            "blades": {b["name"]: w for b, w in zip(open_, refused)}})]
        open_ = room
    lent = (f" (with slots the other matching blades lend: {total} free, {need} needed)"
            if spread and not any(_free_slots(b) >= need for b in open_) else "")
    return [Reason("waiting", f"ready; blade(s) {', '.join(b['name'] for b in open_)} match {what} and have "
                   f"free slots{lent}: it should start at their next poll",
                   {"service": expr_text, "blades": [b["name"] for b in open_]})]


def _free_slots(blade: dict) -> int:
    return max(int(blade["numslots"] or 0) - int(blade["slotsinuse"] or 0), 0)


def explain_task(conn: psycopg.Connection, jid: int, tid: int, *, now: dt.datetime | None = None) -> TaskWhy | None:
    """Why task (jid, tid) is not running; None if there is no such task."""
    t = conn.execute(queries.get("explain_task"), {"jid": jid, "tid": tid}).fetchone()
    if t is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    state = t["state"]
    reasons: list[Reason] = []
    if not t["attached"]:
        reasons.append(Reason("detached", "a task made by an expand command, detached by a job restart", {}))
        # never dispatched again: what it would otherwise wait for does not matter
        return TaskWhy(jid, tid, t["title"], state, tuple(reasons))
    if state == "active":
        inv = conn.execute(queries.get("explain_last_invocation"), {"jid": jid, "tid": tid}).fetchone()
        blade = inv["bladename"] if inv else ""
        reasons.append(Reason("active", f"running on {blade or 'a blade'}" + (
            f" since {inv['starttime']:%Y-%m-%d %H:%M:%S}" if inv else ""), {"blade": blade}))
        return TaskWhy(jid, tid, t["title"], state, tuple(reasons))
    if state == "done":
        reasons.append(Reason("done", "done", {}))
        return TaskWhy(jid, tid, t["title"], state, tuple(reasons))
    if state == "error":
        inv = conn.execute(queries.get("explain_last_invocation"), {"jid": jid, "tid": tid}).fetchone()
        if inv is not None:
            reasons.append(Reason("error", f"in error: command {inv['cid']} exited with {inv['rcode']} on "
                                  f"{inv['bladename'] or 'a blade'}; retry or skip it",
                                  {"cid": inv["cid"], "rcode": inv["rcode"], "blade": inv["bladename"]}))
        else:
            reasons.append(Reason("error", "in error (it was killed or never launched); retry or skip it", {}))
    job = _job_reasons(conn, t, now)
    if t["phase"] == "finished" and state != "error":
        job.append(Reason("finished", "the job is finished", {}))
    if state == "blocked":
        reasons += _blocked(conn, t)
    reasons += job
    if state == "ready":
        blade_reasons = _ready(conn, t)
        if job:  # the job holds it back; "a blade should take it" would mislead
            blade_reasons = [r for r in blade_reasons if r.kind != "waiting"]
        reasons += blade_reasons
    if not reasons:
        reasons.append(Reason("waiting", f"{state}; nothing found that holds it back", {}))
    return TaskWhy(jid, tid, t["title"], state, tuple(reasons))
