"""The syntax tree of a search clause (what parser.py builds and sql.py compiles).

Operands: `Attr` (an attribute, resolved), `Value` (a literal as written:
a quoted string, a number or an unquoted word) and `Values` (a ``[...]``
list of literals).  Conditions: `Compare`, `In`, `Like`, `Has`, `Truth`
(a stand-alone attribute), `Not`, `And`, `Or`.

Every leaf carries the 1-based column it came from in the user's clause and
`via`: None, or the search alias(es) it was expanded from (their nodes carry
the alias word's column), so that later errors point at what the user typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .attributes import Attribute

__all__ = ["Attr", "Value", "Values", "Operand", "Compare", "In", "Like", "Has", "Truth", "Not", "And", "Or",
           "Node", "render"]


@dataclass(frozen=True, slots=True)
class Attr:
    attr: Attribute
    text: str  # as written (an alias, a qualified name ...)
    col: int


@dataclass(frozen=True, slots=True)
class Value:
    text: str  # decoded
    kind: str  # string, number, word
    col: int


@dataclass(frozen=True, slots=True)
class Values:
    items: tuple[Value, ...]
    col: int


Operand = Union[Attr, Value, Values]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # = != < <= > >=  (== is =)
    left: Operand
    right: Operand
    col: int
    via: str | None = None


@dataclass(frozen=True, slots=True)
class In:
    left: Operand
    right: Operand
    col: int
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Like:
    left: Operand
    right: Operand
    col: int
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Has:
    left: Operand
    right: Operand
    col: int
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Truth:
    operand: Attr
    col: int
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Union[Compare, In, Like, Has, Truth, Not, And, Or]


def _operand(o: Operand) -> str:
    from .errors import show

    if isinstance(o, Attr):
        return o.attr.qualified
    if isinstance(o, Values):
        return "[" + " ".join(_operand(v) for v in o.items) + "]"
    return o.text if o.kind == "number" else show(o.text)


def render(n: Node | None) -> str:
    """A canonical text of the tree: qualified attributes, quoted values, full parentheses.

    Reading it back in a search of the same entity gives the same tree
    (apart from columns).  For tests, debugging and ``--debug`` output.
    """
    if n is None:
        return ""
    if isinstance(n, Compare):
        return f"{_operand(n.left)} {n.op} {_operand(n.right)}"
    if isinstance(n, (In, Like, Has)):
        word = type(n).__name__.lower()
        return f"{_operand(n.left)} {word} {_operand(n.right)}"
    if isinstance(n, Truth):
        return _operand(n.operand)
    if isinstance(n, Not):
        return f"not ({render(n.item)})"
    if isinstance(n, And):
        return " and ".join(f"({render(i)})" for i in n.items)
    if isinstance(n, Or):
        return " or ".join(f"({render(i)})" for i in n.items)
    raise TypeError(f"not a clause node: {n!r}")  # pragma: no cover
