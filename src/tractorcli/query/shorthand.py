"""Positional short forms: leading integers on tq's command line (reference section 2.3).

=============================  ===========================================
``tq jobs 12 13``              ``jid in [12 13]``
``tq tasks 12 4 5``            ``jid=12 and tid in [4 5]``
``tq commands 12 7``           ``jid=12 and cid in [7]``
``tq invocations 12 7``        ``jid=12 and cid in [7]`` (invocations of command 7)
``tq notes 3 4``               ``noteid in [3 4]``
=============================  ===========================================

Words after the leading integers are a clause ANDed to them
(``tq tasks 12 error`` is ``jid=12 and (error)``).  Blades and params have
no short form.  Tractor 1's ``user@host JID TID`` form is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .attributes import entity as _entity

__all__ = ["positional_clause", "clause_from_words"]

_ID = re.compile(r"[0-9]+\Z")
# entity -> (first id attribute, following ids attribute); None: all ids are the first one's
_FORMS = {"job": ("jid", None), "task": ("jid", "tid"), "command": ("jid", "cid"),
          "invocation": ("jid", "cid"), "note": ("noteid", None)}


def positional_clause(entity: str, words: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the clause the leading integer words stand for, or None; the remaining words)."""
    key = _entity(entity).key
    form = _FORMS.get(key)
    n = 0
    while n < len(words) and _ID.match(words[n]):
        n += 1
    if form is None or n == 0:
        return None, list(words)
    ids = [str(int(w)) for w in words[:n]]
    first, rest = form
    if rest is None:
        clause = f"{first} in [{' '.join(ids)}]" if len(ids) > 1 else f"{first}={ids[0]}"
    else:
        clause = f"{first}={ids[0]}"
        if len(ids) == 2:
            clause += f" and {rest}={ids[1]}"
        elif len(ids) > 2:
            clause += f" and {rest} in [{' '.join(ids[1:])}]"
    return clause, list(words[n:])


def clause_from_words(entity: str, words: Sequence[str]) -> str:
    """The search clause of tq's non-option words: short forms expanded, words joined by spaces."""
    ids, rest = positional_clause(entity, words)
    text = " ".join(rest)
    if ids is None:
        return text
    return f"{ids} and ({text})" if text.strip() else ids
