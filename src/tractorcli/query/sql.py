"""Syntax tree -> parameterized SQL, with the types checked.

`compile_clause(entity, clause)` gives a `CompiledQuery`: a WHERE expression
with ``%(pN)s`` placeholders, the parameters, the related entities it needs
joined and the FROM clause that joins them.  `build_select` makes the whole
``SELECT ... FROM ... WHERE ... ORDER BY ... LIMIT ...`` for a listing.

Why no input can change the SQL's shape: identifiers and SQL fragments come
only from the fixed attribute table (attributes.py) and from this module;
every value a user writes - strings, numbers, list items, regular
expressions, times - travels as a parameter, cast to the attribute's type
(``%(p1)s::text``).  The statement text is a function of the tree's shape and
of the attributes named, nothing else.

Semantics (beyond the comparison operators, which are SQL's):

* Comparisons are SQL's: one with an attribute that is NULL (an unset
  time, the exit status of a running invocation, a blade of a task that never
  ran) is not true, so ``rcode != 0`` leaves out invocations still running.
  ``not X`` is ``NOT coalesce(X, false)``: the negation of such a comparison
  is true (``not rcode = 0`` includes them), so a row always meets exactly
  one of a condition and its negation.
* ``x in [a, b]`` is ``x = ANY(...)``; ``v in listattr`` is membership;
  ``v in jsonattr`` tests a top-level key (or string element); ``x in a``
  with a single value is ``x = a``; an empty list matches nothing.
* ``listattr has [a, b]`` is ``listattr @> [a, b]`` (``has`` of one value is
  ``in``; of an empty list, everything); a JSON attribute ``has`` keys.
* ``like`` is a PostgreSQL regular expression (``~``, case-sensitive);
  non-text attributes (lists, JSON, numbers, times) are cast to text first;
  ``x like [r1, r2]`` matches either.  The database checks the regular
  expression when the query runs; `database_error` turns its complaint
  about an invalid one into a one-line `BadInput`.
* Values are read by the attribute's type: integers, numbers, durations
  (``2h``), sizes (``512M``, scaled to GB), times (``-2h``, ``3/15|4pm``),
  booleans (``true false yes no on off 1 0 t f y n``, any case), UUIDs, JSON
  (for ``=``/``!=`` on JSON attributes).  Anything else is a `ClauseError`
  at the value's column.  Lists, booleans and JSON cannot be ordered.
* A stand-alone attribute is true when it is set: numbers non-zero, text
  non-empty, booleans true, times and UUIDs not NULL, lists and JSON not
  empty.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from tractorcli.errors import BadInput

from . import attributes
from .attributes import ENTITIES, Attribute, UnknownAttribute
from .errors import ClauseError, LiteralError, show
from .nodes import (
    And,
    Attr,
    Compare,
    Has,
    In,
    Like,
    Node,
    Not,
    Or,
    Truth,
    Value,
    Values,
)
from .parser import parse
from .timeparse import parse_duration, parse_size, parse_time

__all__ = ["database_error", "CompiledQuery", "SelectQuery", "Column", "ColumnError", "compile_clause", "compile_tree",
           "build_select", "resolve_column"]

_SQL_OP = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_MIRROR = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_BOOL = {"true": True, "t": True, "yes": True, "y": True, "on": True, "1": True,
         "false": False, "f": False, "no": False, "n": False, "off": False, "0": False}
_RANGE = {"int4": 1 << 31, "int8": 1 << 63}
_KIND = {"int": "an integer", "float": "a number", "duration": "a duration (seconds, or 90s, 10m, 2h ...)",
         "size": "a size (GB, or 512M, 2G ...)", "timestamp": "a time", "bool": "true or false",
         "uuid": "a UUID", "text": "text", "json": "JSON", "text[]": "a list of text",
         "int[]": "a list of integers"}
_GROUP = {"int": "number", "float": "number", "duration": "number", "size": "number", "text": "text",
          "timestamp": "time", "bool": "bool", "uuid": "uuid", "json": "json", "text[]": "text[]",
          "int[]": "int[]"}
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?\Z")


@dataclass(frozen=True)
class CompiledQuery:
    """A clause compiled for one entity.

    `where_sql` is a boolean SQL expression (``TRUE`` for an empty clause)
    over the entity's alias and the aliases of `joins`; `from_sql` is
    ``<table> AS <alias>`` followed by those joins.  Execute
    ``SELECT ... FROM {from_sql} WHERE {where_sql}`` with `params`.
    """

    entity: str
    where_sql: str
    params: dict[str, Any]
    joins: tuple[str, ...]
    from_sql: str
    tree: Node | None = field(default=None, compare=False, repr=False)

    def count_sql(self) -> str:
        """``SELECT count(*) FROM ... WHERE ...`` (with `params`)."""
        from psycopg import sql as pg

        # from_sql and where_sql hold only fragments of the fixed attribute
        # table and %(pN)s placeholders: no value ever enters the text
        return pg.SQL("SELECT count(*) AS n FROM {} WHERE {}").format(
            pg.SQL(self.from_sql), pg.SQL(self.where_sql)).as_string()


@dataclass(frozen=True)
class Column:
    name: str  # as asked: an attribute, an attribute alias or a qualified name
    attribute: Attribute
    label: str  # its key in the result rows


@dataclass(frozen=True)
class SelectQuery:
    sql: str
    params: dict[str, Any]
    columns: tuple[Column, ...]
    compiled: CompiledQuery


class ColumnError(BadInput):
    """An unknown column or sort key (not a clause error: it has no column in a clause)."""


def compile_clause(entity: str, clause: str, *, user: str | None = None, now: dt.datetime | None = None,
                   aliases: Mapping[str, str] | None = None) -> CompiledQuery:
    """Compile `clause` for a search of `entity` (``job``, ``jobs``, ``Job`` ...).

    `user` is who ``mine`` means (default $USER), `now` the moment relative
    and partial times are read against (default: now, local time),
    `aliases` extra search aliases.  ClauseError on any problem.
    """
    e = attributes.entity(entity)
    tree = parse(e.key, clause, user=user, aliases=aliases)
    return compile_tree(e.key, tree, clause, now=now)


def compile_tree(entity: str, tree: Node | None, clause: str = "", *, now: dt.datetime | None = None,
                 extra_needed: Sequence[str] = ()) -> CompiledQuery:
    """Compile a parsed tree (`clause` is its text, for error messages)."""
    e = attributes.entity(entity)
    c = _Compiler(e.key, clause, now or dt.datetime.now().astimezone())
    where = "TRUE" if tree is None else c.node(tree)[0]
    needed = c.needed | set(extra_needed)
    joins = attributes.join_sql(e.key, needed)
    from_sql = " ".join([attributes.table_sql(e), *(sql for _, sql in joins)])
    return CompiledQuery(e.key, where, c.params, tuple(k for k, _ in joins), from_sql, tree)


class _Compiler:
    def __init__(self, entity: str, clause: str, now: dt.datetime):
        self.entity = entity
        self.plural = ENTITIES[entity].plural
        self.clause = clause
        self.now = now
        self.params: dict[str, Any] = {}
        self.needed: set[str] = set()

    # --- helpers ---

    def fail(self, col: int, via: str | None, reason: str, hint: str | None = None) -> NoReturn:
        raise ClauseError(self.clause, col, f"in {via}: {reason}" if via else reason, hint=hint)

    def param(self, value: Any, cast: str) -> str:
        name = f"p{len(self.params) + 1}"
        self.params[name] = value
        return f"%({name})s::{cast}"

    def ref(self, a: Attr) -> str:
        if a.attr.entity != self.entity:
            self.needed.add(a.attr.entity)
        return a.attr.sql

    def nullable(self, a: Attr) -> bool:
        return attributes.nullable_from(self.entity, a.attr)

    def text_of(self, a: Attr) -> str:
        sql = self.ref(a)
        return sql if a.attr.type == "text" else f"({sql})::text"

    def value(self, attr: Attribute, v: Value, via: str | None, *, element: bool = False) -> Any:
        """`v` read as a value of `attr` (of its elements when `element` or a list attribute)."""
        t = attr.type
        if t.endswith("[]"):
            t = t[:-2]
        name = attr.name
        text = v.text.strip() if v.kind != "string" else v.text
        try:
            if t in ("text", "json"):
                return v.text
            if t == "int":
                if not _INT.match(text):
                    raise LiteralError(f"{name} is {_KIND['int']}: {show(v.text)} is not one")
                n = int(text)
                lim = _RANGE.get(attr.cast, 1 << 63)
                if not -lim <= n < lim:
                    raise LiteralError(f"{show(v.text)} is out of range for {name}")
                return n
            if t == "float":
                if not _FLOAT.match(text):
                    raise LiteralError(f"{name} is {_KIND['float']}: {show(v.text)} is not one")
                return float(text)
            if t == "duration":
                return parse_duration(text)
            if t == "size":
                return parse_size(text, "GB")
            if t == "timestamp":
                return parse_time(text, self.now)
            if t == "bool":
                b = _BOOL.get(text.lower())
                if b is None:
                    raise LiteralError(f"{name} is true or false: {show(v.text)} is neither")
                return b
            if t == "uuid":
                try:
                    return uuid.UUID(text)
                except ValueError:
                    raise LiteralError(f"{name} is {_KIND['uuid']}: {show(v.text)} is not one") from None
        except LiteralError as exc:
            self.fail(v.col, via, str(exc))
        raise AssertionError(t)  # pragma: no cover

    # --- nodes: each returns (SQL, may be NULL) ---

    def node(self, n: Node) -> tuple[str, bool]:
        if isinstance(n, And) or isinstance(n, Or):
            parts = [self.node(i) for i in n.items]
            joiner = " AND " if isinstance(n, And) else " OR "
            return "(" + joiner.join(f"({s})" for s, _ in parts) + ")", any(m for _, m in parts)
        if isinstance(n, Not):
            s, maybe_null = self.node(n.item)
            return (f"NOT coalesce({s}, false)" if maybe_null else f"NOT ({s})"), False
        if isinstance(n, Truth):
            return self.truth(n.operand), False
        if isinstance(n, Compare):
            return self.compare(n)
        if isinstance(n, In):
            return self.in_(n)
        if isinstance(n, Has):
            return self.has(n)
        if isinstance(n, Like):
            return self.like(n)
        raise TypeError(f"not a clause node: {n!r}")  # pragma: no cover

    def truth(self, a: Attr) -> str:
        x = self.ref(a)
        t = a.attr.type
        null = self.nullable(a)
        if a.attr.is_numeric:
            return f"coalesce({x}, 0) <> 0" if null else f"{x} <> 0"
        if t == "text":
            return f"coalesce({x}, '') <> ''" if null else f"{x} <> ''"
        if t == "bool":
            return f"coalesce({x}, false)" if null else x
        if t in ("timestamp", "uuid"):
            return f"{x} IS NOT NULL"
        if a.attr.is_array:
            return f"coalesce(cardinality({x}), 0) > 0"
        if t == "json":
            return f"coalesce({x} NOT IN ('{{}}'::jsonb, '[]'::jsonb, 'null'::jsonb, '\"\"'::jsonb), false)"
        raise AssertionError(t)  # pragma: no cover

    def need_attr(self, n, what: str) -> NoReturn:
        words = [o.text for o in (n.left, n.right) if isinstance(o, Value) and o.kind == "word"]
        extra = ""
        if words:
            extra = "; " + ", ".join(f"{show(w)}{attributes.suggest(self.entity, w)}" for w in words)
            extra += " is not an attribute of " + self.plural if len(words) == 1 else \
                " are not attributes of " + self.plural
        self.fail(n.col, n.via, f"{what} needs an attribute on one side{extra}")

    def compare(self, n: Compare) -> tuple[str, bool]:
        left, right, op = n.left, n.right, n.op
        if not isinstance(left, Attr) and not isinstance(right, Attr):
            self.need_attr(n, f"'{op}'")
        if not isinstance(left, Attr):
            left, right, op = right, left, _MIRROR[op]
        a = left.attr
        lhs = self.ref(left)
        null = self.nullable(left)
        if isinstance(right, Attr):
            return self.compare_attrs(n, op, left, right)
        if a.type in ("bool", "json") or a.is_array:
            if op not in ("=", "!="):
                self.fail(n.col, n.via, f"{left.text} cannot be ordered: compare it with = or !=")
        if isinstance(right, Values):
            if not a.is_array:
                self.fail(right.col, n.via, f"a list goes with in, has or like: write {left.text} in [...]")
            vals = [self.value(a, v, n.via) for v in right.items]
            rhs = self.param(vals, a.cast + "[]")
        elif a.is_array:
            self.fail(n.col, n.via, f"{left.text} is a list: test membership with {right.text} in {left.text}, "
                                    f"or use has [...] or like")
        elif a.type == "json":
            if not _valid_json(right.text):
                self.fail(right.col, n.via, f"{left.text} is JSON: {show(right.text)} is not JSON "
                                            f"(use like to match its text)")
            rhs = self.param(right.text, "jsonb")
        else:
            rhs = self.param(self.value(a, right, n.via), a.cast)
        return f"{lhs} {_SQL_OP[op]} {rhs}", null

    def compare_attrs(self, n: Compare, op: str, left: Attr, right: Attr) -> tuple[str, bool]:
        lg, rg = _GROUP[left.attr.type], _GROUP[right.attr.type]
        if lg != rg:
            self.fail(n.col, n.via, f"cannot compare {left.text} ({_KIND[left.attr.type]}) "
                                    f"with {right.text} ({_KIND[right.attr.type]})")
        if lg in ("bool", "json", "text[]", "int[]") and op not in ("=", "!="):
            self.fail(n.col, n.via, f"{left.text} cannot be ordered: compare it with = or !=")
        lhs, rhs = self.ref(left), self.ref(right)
        return f"{lhs} {_SQL_OP[op]} {rhs}", self.nullable(left) or self.nullable(right)

    def in_(self, n: In) -> tuple[str, bool]:
        left, right = n.left, n.right
        if isinstance(right, Values):
            if not isinstance(left, Attr):
                self.need_attr(n, "'in'")
            a = left.attr
            if a.is_array or a.type == "json":
                self.fail(n.col, n.via, f"{left.text} is a list: write {left.text} has [...] (all of them) "
                                        f"or {left.text} like [...]")
            if not right.items:
                return "FALSE", False
            vals = [self.value(a, v, n.via) for v in right.items]
            return f"{self.ref(left)} = ANY({self.param(vals, a.cast + '[]')})", self.nullable(left)
        if isinstance(right, Attr) and (right.attr.is_array or right.attr.type == "json"):
            r = right.attr
            rhs = self.ref(right)
            null = self.nullable(right)
            if isinstance(left, Values):
                self.fail(left.col, n.via, f"a list cannot be in a list: write {right.text} has [...]")
            if isinstance(left, Attr):
                elem = "text" if r.type in ("text[]", "json") else "number"
                if _GROUP[left.attr.type] != elem:
                    self.fail(n.col, n.via, f"{left.text} ({_KIND[left.attr.type]}) cannot be an element of "
                                            f"{right.text} ({_KIND[r.type]})")
                lhs = self.ref(left)
                null = null or self.nullable(left)
            else:
                lhs = self.param(self.value(r, left, n.via), r.cast)
            if r.type == "json":
                return f"{rhs} ? {lhs}", null
            return f"{lhs} = ANY({rhs})", null
        # x in a (a single value or a scalar attribute) is x = a
        return self.compare(Compare("=", left, right, n.col, n.via))

    def has(self, n: Has) -> tuple[str, bool]:
        left, right = n.left, n.right
        if not isinstance(left, Attr) or not (left.attr.is_array or left.attr.type == "json"):
            what = left.text if isinstance(left, (Attr, Value)) else "a list"
            self.fail(n.col, n.via, f"has needs a list attribute on its left (e.g. tags has [a b]); "
                                    f"{what} is not one")
        if isinstance(right, Attr):
            return self.in_(In(right, left, n.col, n.via))
        items = right.items if isinstance(right, Values) else (right,)
        if not items:
            return "TRUE", False
        a = left.attr
        vals = [self.value(a, v, n.via) for v in items]
        lhs = self.ref(left)
        if a.type == "json":
            return f"{lhs} ?& {self.param(vals, 'text[]')}", self.nullable(left)
        return f"{lhs} @> {self.param(vals, a.cast + '[]')}", self.nullable(left)

    def like(self, n: Like) -> tuple[str, bool]:
        left, right = n.left, n.right
        if isinstance(left, Attr):
            lhs = self.text_of(left)
            null = self.nullable(left)
            if isinstance(right, Values):
                if not right.items:
                    return "FALSE", False
                return f"{lhs} ~ ANY({self.param([v.text for v in right.items], 'text[]')})", null
            if isinstance(right, Value):
                return f"{lhs} ~ {self.param(right.text, 'text')}", null
            return f"{lhs} ~ {self.text_of(right)}", null or self.nullable(right)
        if isinstance(right, Attr):
            if isinstance(left, Values):
                self.fail(left.col, n.via, "a list cannot be on the left of like")
            return f"{self.param(left.text, 'text')} ~ {self.text_of(right)}", self.nullable(right)
        self.need_attr(n, "'like'")


def _valid_json(text: str) -> bool:
    """JSON that PostgreSQL's jsonb takes too (no NaN or Infinity, no NUL, no lone surrogates)."""

    def refuse(_: str):
        raise ValueError

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v or any("\ud800" <= c <= "\udfff" for c in v):
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def database_error(exc: Exception, clause: str) -> BadInput | None:
    """A one-line `BadInput` for an error the database raised about a value of `clause`
    (an invalid regular expression), or None for any other error (translate those with
    db.connection.translate)."""
    import psycopg.errors as pe

    if isinstance(exc, pe.InvalidRegularExpression):
        text = (str(exc).strip().splitlines() or ["invalid regular expression"])[0]
        return BadInput(f"clause {show(clause)}: {text}",
                        hint="like takes a PostgreSQL regular expression; quote brackets, e.g. name like '^r[36]'")
    return None


# --- listings -----------------------------------------------------------------------


def resolve_column(entity: str, name: str) -> Attribute:
    """The attribute a column or sort name means in a listing of `entity` (ColumnError if none)."""
    e = attributes.entity(entity)
    try:
        a = attributes.resolve(e.key, name)
    except UnknownAttribute as exc:
        raise ColumnError(f"column {show(name)}: {exc}") from None
    if a is None or not _LABEL.match(name):
        raise ColumnError(f"unknown column {show(name)} for {e.plural}{attributes.suggest(e.key, name)}",
                          hint=f"tq help attributes lists the {e.name} attributes")
    return a


def build_select(entity: str, clause: str = "", *, columns: Sequence[str], sortby: Sequence[str] = (),
                 limit: int | None = None, distinct: bool = False, archives: bool = False,
                 user: str | None = None, now: dt.datetime | None = None,
                 aliases: Mapping[str, str] | None = None) -> SelectQuery:
    """The listing of `entity` rows matching `clause`.

    `columns` are attribute names (aliases and qualified names allowed);
    each becomes a result key spelled as given (repeats dropped).  `sortby`
    names are ascending, or descending with a leading ``-`` (``+`` is
    accepted); the entity's identifying attributes follow as tiebreakers so
    the order is total (not with `distinct`, where the sort must use shown
    columns).  `limit` None or 0: no limit.  Without `archives`, rows of
    deleted (archived) jobs are left out, and blades that are not
    registered (as tq does without ``-a``).
    """
    e = attributes.entity(entity)
    tree = parse(e.key, clause, user=user, aliases=aliases)
    cols: list[Column] = []
    seen: set[str] = set()
    for name in columns:
        name = name.strip()
        if name in seen:
            continue
        seen.add(name)
        cols.append(Column(name, resolve_column(e.key, name), name))
    if not cols:
        raise ColumnError(f"no columns to show for {e.plural}")
    order: list[tuple[Attribute, bool]] = []
    for key in sortby:
        key = key.strip()
        desc = key.startswith("-")
        name = key[1:] if key[:1] in "+-" else key
        order.append((resolve_column(e.key, name), desc))
    if distinct:
        shown = {c.attribute for c in cols}
        for a, _ in order:
            if a not in shown:
                raise ColumnError(f"with distinct rows, sort by shown columns: {a.qualified} is not shown")
    else:
        sorted_attrs = {a for a, _ in order}
        for k in e.keys:
            a = e.attrs[k]
            if a not in sorted_attrs:
                order.append((a, False))
    needed = {c.attribute.entity for c in cols} | {a.entity for a, _ in order}
    if not archives and e.live_sql:
        needed |= set(e.live_needs)
    needed.discard(e.key)
    compiled = compile_tree(e.key, tree, clause, now=now, extra_needed=sorted(needed))
    from psycopg import sql as pg

    where = pg.SQL(compiled.where_sql)
    if not archives and e.live_sql:
        where = pg.SQL("({}) AND ({})").format(pg.SQL(e.live_sql), where)

    # the statement is composed of the fixed attribute table's fragments, placeholders and the
    # column labels as quoted identifiers; every value the user gave is in `params`
    stmt = pg.SQL("SELECT {}{} FROM {} WHERE {}").format(
        pg.SQL("DISTINCT " if distinct else ""),
        pg.SQL(", ").join(pg.SQL("{} AS {}").format(pg.SQL(c.attribute.sql), pg.Identifier(c.label)) for c in cols),
        pg.SQL(compiled.from_sql), where)
    if order:
        stmt += pg.SQL(" ORDER BY ") + pg.SQL(", ").join(
            pg.SQL(a.sql + (" DESC" if desc else "")) for a, desc in order)
    params = dict(compiled.params)
    if limit:
        stmt += pg.SQL(" LIMIT %(limit)s")
        params["limit"] = int(limit)
    return SelectQuery(stmt.as_string(), params, tuple(cols), compiled)
