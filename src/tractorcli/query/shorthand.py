"""Positional short forms: leading integers on tq's command line (reference section 2.3).

=============================  ===========================================
``tq jobs 12 13``              ``jid in [12 13]``
``tq tasks 12 4 5``            ``jid=12 and tid in [4 5]``
``tq commands 12 7``           ``jid=12 and cid in [7]``
``tq invocations 12 7``        ``jid=12 and cid in [7]`` (invocations of command 7)
``tq notes 3 4``               ``noteid in [3 4]``
=============================  ===========================================

Words after the leading integers are a clause ANDed to them
(``tq tasks 12 error`` is ``jid=12 and (error)``).

Blades: when every word is a bare host name or address that is not an
attribute, alias or keyword, they name blades: ``tq nimby rack01 rack02`` is
``name in ["rack01" "rack02"] or ipaddr in ["rack01" "rack02"]`` (any other
words are a clause: ``tq blades up``).  Params have no short form.  Tractor
1's ``user@host JID TID`` form is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .attributes import entity as _entity

__all__ = ["positional_clause", "blade_names_clause", "clause_from_words"]

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


_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")
_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "has", "AND", "OR", "NOT", "IN", "LIKE", "HAS"})


def blade_names_clause(words: Sequence[str]) -> str | None:
    """The clause for words that are all bare blade names or addresses (none an attribute,
    alias or keyword of a blade search), else None."""
    from .aliases import SEARCH_ALIASES
    from .attributes import attribute_names

    if not words:
        return None
    reserved = _KEYWORDS | set(attribute_names("blade"))
    for aliases in SEARCH_ALIASES.values():  # every entity's: "up" as well as "mine"
        reserved |= set(aliases)
    if not all(_HOST.match(w) and w not in reserved and not w.isdigit() for w in words):
        return None
    items = " ".join(f'"{w}"' for w in words)
    return f"name in [{items}] or ipaddr in [{items}]"


def clause_from_words(entity: str, words: Sequence[str]) -> str:
    """The search clause of tq's non-option words: short forms expanded, words joined by spaces."""
    if _entity(entity).key == "blade":
        names = blade_names_clause(words)
        if names is not None:
            return names
    ids, rest = positional_clause(entity, words)
    text = " ".join(rest)
    if ids is None:
        return text
    return f"{ids} and ({text})" if text.strip() else ids
