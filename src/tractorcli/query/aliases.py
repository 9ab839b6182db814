"""Search aliases: a bare word that stands for a clause (reference section 2.4).

A stand-alone word that is a search alias of the searched entity expands to
its clause (which may use other aliases; a loop is an error).  ``$USER`` in
a definition is the user the clause is compiled for (`tq --user`, else
``$USER``): it is put in as a value, never re-read as clause text, so any
user name is safe.

Built-in aliases (``tq aliases`` lists them):

* every entity whose searches reach a job: ``mine`` -> ``owner=$USER``
  (notes: ``noteuser=$USER``);
* jobs, by their task counters: ``blocked`` ``ready`` ``active`` ``error``
  -> ``num<word> > 0``, ``done`` -> ``numdone=numtasks``; and, beyond
  Tractor's table (its docs use them): ``paused`` -> ``pausetime``,
  ``delayed`` -> ``aftertime > now`` (a start time still ahead),
  ``locked`` -> ``locktime``, ``deleted`` -> ``deletetime`` (stand-alone
  timestamps: set or not; ``deleted`` and ``locked`` are attribute aliases
  too, so ``deleted > -1d`` works);
* tasks: ``blocked ready active error done`` -> ``state=<word>``;
* commands: the same on the command's own state, except ``done`` ->
  ``state in [done skipped]`` (a skipped command counts as done, as a
  skipped task is done), and ``skipped`` -> ``state=skipped``;
* invocations: ``state=<word>`` too, where ``state`` is the state of the
  invocation's command;
* blades: ``up`` -> ``heartbeattime > -6m``; ``registered`` ->
  ``heartbeattime > cleartime or (heartbeattime and not cleartime)``.

A site may add its own (`extra`): they take precedence over the built-in ones.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping

__all__ = ["SEARCH_ALIASES", "aliases_for", "lookup", "default_user", "USER_MARK"]

USER_MARK = "$USER"

_STATES = ("blocked", "ready", "active", "error", "done")
_MINE = {"mine": "owner=$USER"}

SEARCH_ALIASES: dict[str, dict[str, str]] = {
    "job": {
        **_MINE,
        **{w: f"num{w} > 0" for w in _STATES[:4]},
        "done": "numdone=numtasks",
        "paused": "pausetime",
        "delayed": "aftertime > now",
        "locked": "locktime",
        "deleted": "deletetime",
    },
    "task": {**_MINE, **{w: f"state={w}" for w in _STATES}},
    "command": {**_MINE, **{w: f"state={w}" for w in _STATES[:4]}, "done": "state in [done skipped]",
                "skipped": "state=skipped"},
    "invocation": {**_MINE, **{w: f"state={w}" for w in _STATES}},
    "blade": {
        "up": "heartbeattime > -6m",
        "registered": "heartbeattime > cleartime or (heartbeattime and not cleartime)",
    },
    "param": {},
    "note": {"mine": "noteuser=$USER"},
}


def aliases_for(entity: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """{alias: clause} usable in a search of `entity` (built-in, then `extra` over them)."""
    out = dict(SEARCH_ALIASES.get(entity, {}))
    if extra:
        out.update(extra)
    return out


def lookup(entity: str, word: str, extra: Mapping[str, str] | None = None) -> str | None:
    """The clause the search alias `word` stands for in a search of `entity`, or None."""
    if extra and word in extra:
        return extra[word]
    return SEARCH_ALIASES.get(entity, {}).get(word)


def default_user() -> str:
    """Who ``mine`` means by default: ``$USER``, else the login name, else ``root`` (as tq)."""
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry, no environment
        return "root"
