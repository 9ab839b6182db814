"""Search clause -> syntax tree, for one entity (reference section 2.4).

Grammar (EBNF; tokens from lexer.py)::

    clause   = [ or ] ;                         (* empty: every row *)
    or       = and { "or" and } ;
    and      = unary { "and" unary } ;
    unary    = { "not" } primary ;
    primary  = "(" or ")"
             | alias                            (* a stand-alone search alias *)
             | operand [ cmp operand
                       | [ "not" ] ( "in" | "like" | "has" ) operand ] ;
    operand  = word | string | number | list ;
    list     = "[" { value [ "," ] } "]" ;
    cmp      = "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" ;

Meaning:

* An unquoted word is an attribute when it names one of the searched
  entity (or an attribute alias, or a related entity's attribute: see
  attributes.py), else a literal; quote a word to make it a literal
  (``title like "owner"``).  List items are always literals.
* A stand-alone word that is a search alias expands to its clause (see
  aliases.py); a stand-alone attribute is a truth test (``numactive``,
  ``not pausetime``); a stand-alone literal is an error.
* ``not`` binds tighter than ``and``, which binds tighter than ``or``;
  ``x not in L`` is ``not (x in L)`` (also ``not like``, ``not has``).
* Every comparison needs an attribute on one side (checked by sql.py, with
  the types).  There is no implicit ``and``: ``active mine`` is an error
  that says to join the two with ``and`` or ``or``.
* Parentheses nest at most `MAX_DEPTH` deep; search aliases may refer to
  each other up to the same depth, and an alias that (indirectly) refers to
  itself is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from . import aliases as _aliases
from . import attributes
from .attributes import ENTITIES, UnknownAttribute
from .errors import ClauseError, show
from .lexer import Token, lex
from .nodes import (
    And,
    Attr,
    Compare,
    Has,
    In,
    Like,
    Node,
    Not,
    Operand,
    Or,
    Truth,
    Value,
    Values,
)

__all__ = ["parse", "MAX_DEPTH"]

MAX_DEPTH = 64
_OPERAND_START = ("word", "string", "number", "[")
_REL = ("in", "like", "has")


def parse(entity: str, clause: str, *, user: str | None = None,
          aliases: Mapping[str, str] | None = None) -> Node | None:
    """The tree of `clause` in a search of `entity` (None for an empty clause).

    `user` is who ``mine`` means (default: `aliases.default_user()`);
    `aliases` are extra search aliases (site-defined) over the built-in ones.
    """
    if entity not in ENTITIES:
        entity = attributes.entity(entity).key
    p = _Parser(entity, clause, clause, lex(clause), user if user is not None else _aliases.default_user(),
                aliases, (), None, 0)
    return p.parse()


def _example_attr(e) -> str:
    if "title" in e.attrs:
        return "title"
    return next(n for n, a in e.attrs.items() if a.type == "text")


class _Parser:
    def __init__(self, entity: str, root: str, src: str, toks: list[Token], user: str,
                 extra: Mapping[str, str] | None, stack: tuple[str, ...], origin: tuple[int, str] | None,
                 depth: int):
        self.entity = entity
        self.root = root  # the user's clause: every error is placed in it
        self.src = src  # what this parser reads (the user's clause, or an alias's)
        self.toks = toks
        self.i = 0
        self.user = user
        self.extra = extra
        self.stack = stack  # aliases being expanded (loop protection)
        self.origin = origin  # (column in the user's clause, "search alias ...") inside an alias
        self.depth = depth

    # --- helpers ---

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def col(self, tok: Token) -> int:
        return self.origin[0] if self.origin else tok.col

    @property
    def via(self) -> str | None:
        return self.origin[1] if self.origin else None

    def fail(self, tok: Token, reason: str, hint: str | None = None) -> NoReturn:
        if self.origin:
            raise ClauseError(self.root, self.origin[0], f"in {self.origin[1]}: {reason}", hint=hint)
        raise ClauseError(self.root, tok.col, reason, hint=hint)

    def prev_text(self) -> str:
        return self.toks[self.i - 1].text if self.i > 0 else ""

    def expected(self, what: str) -> NoReturn:
        tok = self.peek()
        if tok.kind == "end":
            after = self.prev_text()
            self.fail(tok, f"expected {what} after {show(after)}" if after else f"expected {what}")
        self.fail(tok, f"expected {what}, found {tok.describe()}")

    # --- grammar ---

    def parse(self) -> Node | None:
        if self.peek().kind == "end":
            return None
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == ")":
                self.fail(tok, "unexpected ')': no '(' is open")
            self.fail(tok, f"unexpected {tok.describe()}: join conditions with 'and' or 'or'")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().kind == "or":
            self.next()
            items.append(self.and_())
        if len(items) == 1:
            return items[0]
        flat: list[Node] = []
        for n in items:
            flat.extend(n.items if isinstance(n, Or) else (n,))
        return Or(tuple(flat))

    def and_(self) -> Node:
        items = [self.unary()]
        while self.peek().kind == "and":
            self.next()
            items.append(self.unary())
        if len(items) == 1:
            return items[0]
        flat: list[Node] = []
        for n in items:
            flat.extend(n.items if isinstance(n, And) else (n,))
        return And(tuple(flat))

    def unary(self) -> Node:
        nots = 0
        while self.peek().kind == "not":
            self.next()
            nots += 1
        node = self.primary()
        if nots % 2:
            return node.item if isinstance(node, Not) else Not(node)
        return node

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "(":
            if self.depth >= MAX_DEPTH:
                self.fail(tok, f"parentheses nest more than {MAX_DEPTH} deep")
            self.next()
            self.depth += 1
            node = self.or_()
            self.depth -= 1
            close = self.peek()
            if close.kind != ")":
                if close.kind == "end":
                    self.fail(tok, "the '(' here is never closed")
                self.fail(close, f"expected 'and', 'or' or ')', found {close.describe()}")
            self.next()
            return node
        if tok.kind == "word" and not self.operator_follows():
            clause = _aliases.lookup(self.entity, tok.value, self.extra)
            if clause is not None:
                self.next()
                return self.expand(tok, clause)
        if tok.kind not in _OPERAND_START:
            self.expected("an attribute, a value or '('")
        left = self.operand()
        op = self.peek()
        if op.kind == "op":
            self.next()
            right = self.operand(after=op)
            return Compare("=" if op.value == "==" else op.value, left, right, self.col(op), self.via)
        negate = False
        if op.kind == "not" and self.peek(1).kind in _REL:
            self.next()
            negate = True
            op = self.peek()
        if op.kind in _REL:
            self.next()
            right = self.operand(after=op)
            cls = {"in": In, "like": Like, "has": Has}[op.kind]
            node = cls(left, right, self.col(op), self.via)
            return Not(node) if negate else node
        if op.kind == "not":
            self.fail(op, "after a value, 'not' can only come before in, like or has")
        if isinstance(left, Attr):
            return Truth(left, left.col, self.via)
        self.standalone_value(tok, left)

    def operator_follows(self) -> bool:
        k = self.peek(1).kind
        return k == "op" or k in _REL or (k == "not" and self.peek(2).kind in _REL)

    def standalone_value(self, tok: Token, left: Operand) -> NoReturn:
        e = ENTITIES[self.entity]
        if isinstance(left, Value) and left.kind == "word":
            names = list(attributes.attribute_names(self.entity)) + list(_aliases.aliases_for(self.entity, self.extra))
            from .attributes import _suggest

            self.fail(tok, f"{show(tok.value)} is not an attribute or search alias of {e.plural}"
                           f"{_suggest(names, tok.value)}",
                      hint=f"tq help attributes and tq aliases list them; to compare a value, write "
                           f"e.g. {_example_attr(e)}={tok.value}")
        self.fail(tok, f"a value alone is not a condition: compare {tok.describe()} with an attribute")

    def operand(self, after: Token | None = None) -> Operand:
        tok = self.peek()
        if tok.kind == "[":
            return self.list_()
        if tok.kind == "word":
            self.next()
            try:
                a = attributes.resolve(self.entity, tok.value)
            except UnknownAttribute as exc:
                self.fail(tok, str(exc))
            if a is not None:
                return Attr(a, tok.value, self.col(tok))
            return Value(tok.value, "word", self.col(tok))
        if tok.kind in ("string", "number"):
            self.next()
            return Value(tok.value, tok.kind, self.col(tok))
        if after is not None:
            self.expected("an attribute or a value")
        self.expected("an attribute, a value or '('")  # pragma: no cover - primary checks first

    def list_(self) -> Values:
        open_ = self.next()
        items: list[Value] = []
        while True:
            tok = self.peek()
            if tok.kind == "]":
                self.next()
                return Values(tuple(items), self.col(open_))
            if tok.kind == ",":
                self.next()
                continue
            if tok.kind == "end":
                self.fail(open_, "the '[' here is never closed")
            if tok.kind in ("string", "number", "word", "and", "or", "not", "in", "like", "has"):
                self.next()
                kind = tok.kind if tok.kind in ("string", "number") else "word"
                items.append(Value(tok.value, kind, self.col(tok)))
                continue
            self.fail(tok, f"a list holds values only, found {tok.describe()}",
                      hint="quote a value that has brackets, parentheses, quotes or operators in it")

    def expand(self, tok: Token, clause: str) -> Node:
        name = tok.value
        if name in self.stack:
            chain = " -> ".join((*self.stack, name))
            self.fail(tok, f"search alias {name} refers to itself ({chain})")
        if self.depth >= MAX_DEPTH:
            self.fail(tok, f"search aliases nest more than {MAX_DEPTH} deep")
        label = f"search alias {name} ({clause})"
        via = f"{self.via} -> {label}" if self.via else label
        sub_origin = (self.col(tok), via)
        try:
            toks = lex(clause)
        except ClauseError as exc:
            raise ClauseError(self.root, sub_origin[0], f"in {via}: {exc.reason}", hint=exc.hint) from None
        toks = [Token("string", self.user, t.col, t.text) if t.kind == "word" and t.value == _aliases.USER_MARK
                else t for t in toks]
        sub = _Parser(self.entity, self.root, clause, toks, self.user, self.extra, (*self.stack, name),
                      sub_origin, self.depth + 1)
        node = sub.parse()
        if node is None:
            self.fail(tok, f"{label} is empty")
        return node
