"""`tq trace`: what a blade would be offered now, and why it would or would not take it.

`trace_blades(conn, bladeids, limit=N)` replays, for each blade, the claim
(`tractor_claim_v3`, functions/blades.sql) over the first N commands of the ready
queue in the order the claim walks them: tier priority, job priority, job
id, then within a job by service expression id and cid.  For each command it
says ``ready`` (the blade would take it at its next poll) or ``skipped`` and
why, checking what the claim checks:

* the job: deleted, finished, paused, delayed (-after), at -maxactive,
  waiting for -afterjids;
* the blade's NIMBY (``1``: only jobs spooled from its host; a user name:
  only that user's jobs);
* the service expression (stored once per distinct text, evaluated once per
  blade here as the blade does), explained with `service.explain`: the keys
  it lacks, the keys it has that a ``!`` excludes, the comparisons that fail;
* a local Cmd (only on its spooling host), a -resumepin command (only on
  its blade);
* limits (limits.toml): a command whose tags name a full limit is
  ``skipped`` with the claim's sentence and who holds the limit (counted as
  the farm runs now: the commands the trace would take do not count);
* free slots: the commands it would take use them up in order, as the claim
  does; later ones that match are ``skipped: no free slot``.

Before the commands come the blade's own lines: not up (it claims nothing
until it heartbeats again), its NIMBY, its slots (``all 4 slots in use``,
``3 of 4 slots free``) and which commands are shown (``first 20 of 35
ready commands in dispatch order``); after them how many it would take.

Choices where the reference is silent: the host a NIMBY ``1`` blade or a
local Cmd compares with the job's spooling host is the blade's name (or
address), as `tq explain` does (the claim passes the blade's short host
name, which is the name unless --name); the blade's own capacity thresholds
(max_load, min_ram, min_disk of its profile) are not in the database and
not traced.  Read-only: two queries for all the blades.  No click.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from . import limits as limits_db
from . import queries
from .explain import UP_SECS, _jsonable, blade_facts, nimby_admits

if TYPE_CHECKING:  # pragma: no cover
    import uuid

    import psycopg

__all__ = ["DEFAULT_LIMIT", "TraceLine", "BladeTrace", "trace_blades"]

DEFAULT_LIMIT = 20  # ready commands traced per blade unless told (0: all)


@dataclasses.dataclass(frozen=True)
class TraceLine:
    """One decision.  `kind`: blade lines ``down``, ``nimby``, ``slots``, ``queue``,
    ``summary``; command lines ``ready`` (it would take it) or ``skipped`` with
    `reason` one of ``deleted finished paused delayed maxactive afterjids nimby
    service local pinned limit slots``."""

    kind: str
    text: str  # without the blade name
    jid: int | None = None
    tid: int | None = None
    cid: int | None = None
    reason: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.jid is not None:
            d.update(jid=self.jid, tid=self.tid, cid=self.cid)
        if self.reason is not None:
            d["reason"] = self.reason
        if self.detail:
            d["detail"] = _jsonable(self.detail)
        return d


@dataclasses.dataclass(frozen=True)
class BladeTrace:
    name: str
    ipaddr: str
    lines: tuple[TraceLine, ...]

    @property
    def taken(self) -> list[TraceLine]:
        return [x for x in self.lines if x.kind == "ready"]

    def text_lines(self, *, unique: bool = False) -> list[str]:
        """``NAME: text`` per line; `unique` prefixes each with ``[NAME]`` as well (tq trace -u)."""
        pre = f"[{self.name}] " if unique else ""
        return [f"{pre}{self.name}: {x.text}" for x in self.lines]

    def as_dict(self) -> dict[str, Any]:
        return {"blade": self.name, "ipaddr": self.ipaddr, "lines": [x.as_dict() for x in self.lines]}


def _when(t: dt.datetime | None) -> str:
    return "never" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"


def _nimby_text(nimby: str) -> str:
    return "only jobs spooled from its own host" if nimby == "1" else f"only {nimby}'s jobs"


def _quoted(keys) -> str:
    return ", ".join(f"'{k}'" for k in keys)


class _Service:
    """Each distinct service expression parsed and evaluated once per blade."""

    def __init__(self) -> None:
        self.parsed: dict[str, Any] = {}

    def explain(self, expr: str, facts):
        from ..service import ServiceExprError, explain, parse

        if expr not in self.parsed:
            try:
                self.parsed[expr] = parse(expr)
            except ServiceExprError as exc:
                self.parsed[expr] = exc
        p = self.parsed[expr]
        if isinstance(p, Exception):
            return None, str(p)
        return explain(p, facts), None


def _service_refusal(e) -> str:
    parts = []
    if e.missing:
        parts.append(("needs key " if len(e.missing) == 1 else "needs keys ") + _quoted(e.missing))
    if e.unwanted:
        parts.append(("provides excluded key " if len(e.unwanted) == 1 else "provides excluded keys ")
                     + _quoted(e.unwanted))
    parts += list(e.failed)
    if not parts:
        parts = list(e.reasons) or ["does not match"]
    return "; ".join(parts)


def _job_refusal(r: dict, now: dt.datetime) -> tuple[str, str, dict] | None:
    """Why the claim passes over the command's whole job (reason, text, detail), or None."""
    if r["deletetime"] is not None:
        return "deleted", "job deleted", {}
    if r["phase"] == "finished":
        return "finished", "job finished", {}
    if r["pausetime"] is not None:
        return "paused", f"job paused (since {_when(r['pausetime'])})", {"pausetime": r["pausetime"]}
    if r["delayed"]:
        return "delayed", f"job delayed until {_when(r['aftertime'])}", {"aftertime": r["aftertime"]}
    if r["maxactive"] and r["numactive"] >= r["maxactive"]:
        return ("maxactive", f"job at -maxactive {r['maxactive']} ({r['numactive']} active)",
                {"maxactive": r["maxactive"], "numactive": r["numactive"]})
    if r["waitjids"]:
        return ("afterjids", "job waits for job(s) " + ", ".join(str(j) for j in r["waitjids"]) + " to finish",
                {"afterjids": list(r["waitjids"])})
    return None


def _lends_to(blade: dict, r: dict) -> bool:
    """Whether `blade` (a trace_lenders row) may lend slots to ready command `r`, as
    tractor_borrow_slots decides: it matched the command's service at its last claim and its
    NIMBY lets the job in."""
    return r["svcid"] in (blade["svcids"] or ()) and nimby_admits(blade["nimby"], r["owner"], r["jobhost"],
                                                                  (blade["name"],))


def _trace_one(b: dict, rows: list[dict], total: int, limit: int, now: dt.datetime,
               limited: dict[tuple[int, int], str] | None = None, others: list[dict] = ()) -> BladeTrace:
    facts = blade_facts(b)
    svc = _Service()
    lines: list[TraceLine] = []
    nimby = b["nimby"] or ""
    hosts = {b["name"], b["ipaddr"]} - {""}
    if not b["up"]:
        lines.append(TraceLine("down", f"not up (status {b['status'] or 'unknown'}, last heartbeat "
                               f"{_when(b['heartbeattime'])}): it claims nothing until it heartbeats again",
                               detail={"status": b["status"], "heartbeattime": b["heartbeattime"]}))
    if nimby:
        lines.append(TraceLine("nimby", f"nimby: {_nimby_text(nimby)}", detail={"nimby": nimby}))
    slots, inuse = int(b["numslots"] or 0), int(b["slotsinuse"] or 0)
    free = max(slots - inuse, 0)
    if free <= 0:
        lines.append(TraceLine("slots", f"all {slots} slots in use" if slots != 1 else "its 1 slot is in use",
                               detail={"numslots": slots, "slotsinuse": inuse}))
    else:
        lines.append(TraceLine("slots", f"{free} of {slots} slots free", detail={"numslots": slots,
                                                                              "slotsinuse": inuse}))
    if not rows:
        lines.append(TraceLine("queue", "no ready commands", detail={"total": total}))
    else:
        shown = f"first {len(rows)} of {total}" if total > len(rows) else f"all {total}"
        lines.append(TraceLine("queue", f"{shown} ready command(s), in dispatch order"
                               + (f" (--limit {limit})" if limit and total > len(rows) else ""),
                               detail={"shown": len(rows), "total": total, "limit": limit}))
    active: dict[int, int] = {}  # jid -> numactive as the simulated claim raises it
    taken = 0
    for r in rows:
        where = {"jid": r["jid"], "tid": r["tid"], "cid": r["cid"]}
        head = f"jid {r['jid']} tid {r['tid']} cid {r['cid']}"
        expr = r["expr"] or ""

        def skip(reason: str, why: str, detail: dict | None = None, head=head, expr=expr, where=where) -> None:
            lines.append(TraceLine("skipped", f"{head} skipped: {why}", reason=reason,
                                   detail={"service": expr, **(detail or {})}, **where))

        job = _job_refusal(r, now)
        if job is not None:
            skip(*job)
            continue
        if not nimby_admits(nimby, r["owner"], r["jobhost"], hosts):
            skip("nimby", f"nimby: {_nimby_text(nimby)} (job of {r['owner']}, spooled from {r['jobhost'] or '?'})",
                 {"nimby": nimby, "owner": r["owner"], "spoolhost": r["jobhost"]})
            continue
        e, bad = svc.explain(expr, facts)
        if e is None:
            skip("service", f"service expression does not parse: {bad} (service: {expr})")
            continue
        if not e.matches:
            skip("service", f"{_service_refusal(e)} (service: {expr})",
                 {"missing": list(e.missing), "unwanted": list(e.unwanted), "failed": list(e.failed)})
            continue
        matched = f"matches ({expr})" if expr.strip() else "matches (no service requirement)"
        if r["local"] and r["spoolhost"] not in hosts:
            skip("local", f"a local Cmd: runs only on its spooling host {r['spoolhost']!r}",
                 {"spoolhost": r["spoolhost"]})
            continue
        if r["pinblade"] is not None and r["pinblade"] != b["bladeid"]:
            skip("pinned", f"-resumepin: waits for blade {r['pinname'] or r['pinblade']}",
                 {"pinblade": r["pinname"] or str(r["pinblade"])})
            continue
        held = (limited or {}).get((r["jid"], r["cid"]))
        if held is not None:
            skip("limit", f"{matched}, but {held}", {"limit": held.split()[1]})
            continue
        need = int(r["minslots"])
        # -atleast N without -samehost: this blade holds what it has free, other blades that match
        # the command lend the rest (functions/bindings.sql)
        lend = 0
        if need > free > 0 and not r["samehost"]:
            lendable = sum(o["free"] for o in others if o["bladeid"] != b["bladeid"] and _lends_to(o, r))
            lend = need - free if lendable >= need - free else 0
        if need > free and not lend:
            if free == 0:
                why = f"{matched}, but no free slot ({slots - free} of {slots} in use" + (
                    " with the commands above)" if taken else ")")
            else:
                why = f"{matched}, but needs {need} slots and {free} are free"
            skip("slots", why, {"minslots": need, "free": free})
            continue
        if r["tid"] > 0 and r["maxactive"]:
            n = active.get(r["jid"], r["numactive"])
            if n >= r["maxactive"]:
                skip("maxactive", f"{matched}, but its job reaches -maxactive {r['maxactive']} with the "
                     "commands above", {"maxactive": r["maxactive"]})
                continue
            active[r["jid"]] = n + 1
        free -= need - lend
        taken += 1
        lines.append(TraceLine("ready", f"{head} ready: {matched}"
                               + (f"; {need - lend} slot(s) here, {lend} to be lent by other blades that match it"
                                  if lend else ""),
                               detail={"service": expr, "numslots": need - lend, "lent": lend}, **where))
    if rows:
        lines.append(TraceLine("summary", f"would take {taken} of them" + ("" if b["up"] else " once it is up"),
                               detail={"taken": taken}))
    return BladeTrace(b["name"], b["ipaddr"], tuple(lines))


def trace_blades(conn: "psycopg.Connection", bladeids: list["uuid.UUID"], *, limit: int = DEFAULT_LIMIT,
                 now: dt.datetime | None = None) -> list[BladeTrace]:
    """The dispatch trace of each blade in `bladeids` (sorted by name) over the first
    `limit` ready commands (0: all)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    blades = conn.execute(queries.get("trace_blades"), {"bladeids": list(bladeids), "up": UP_SECS}).fetchall()
    total = conn.execute(queries.get("ready_count")).fetchone()["n"]
    rows = conn.execute(queries.get("trace_ready"), {"limit": limit or None}).fetchall() if blades else []
    limited: dict = {b["bladeid"]: {} for b in blades}
    names = limits_db.names(conn) if rows else frozenset()
    if names:
        cases = [(r["jid"], r["cid"], b["bladeid"]) for b in blades for r in rows if names & set(r["ltags"])]
        held_by: dict[str, str] = {}  # a limit's holders, asked once per trace
        for (jid, cid, bladeid), why in zip(cases, limits_db.refusals(conn, cases)):
            if why is not None:
                if why not in held_by:
                    held_by[why] = limits_db.holders(conn, why)
                limited[bladeid][(jid, cid)] = f"{why}; {held_by[why]}"
    # the blades that may lend slots to -atleast commands (only asked for when one is ready)
    others = (conn.execute(queries.get("trace_lenders")).fetchall()
              if any(r["minslots"] > 1 and not r["samehost"] for r in rows) else [])
    return [_trace_one(b, rows, total, limit, now, limited[b["bladeid"]], others) for b in blades]
