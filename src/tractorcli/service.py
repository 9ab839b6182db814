"""Service-key expressions: parse, evaluate against a blade, explain, combine.

A command's `-service` expression says which blades may run it (reference
section 6.5).  Blades advertise keys (blade.config "Provides", plus their
host name, IP addresses and profile name) and metrics; an expression is a
condition over both::

    PixarRender,BigIron
    PixarRender && !Desktops
    "rack-15?" || '192.168.0.*'
    PixarRender && ((1024 * @.mem) > 2048)
    (@.sa > 2) && (PixarRender || PixarNRM)

Grammar (EBNF; whitespace may separate any two tokens)::

    expression = [ or ] ;                       (* empty: every blade matches *)
    or         = and { "||" and } ;
    and        = comparison { ( "&&" | "," ) comparison } ;
    comparison = sum [ ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) sum ] ;
    sum        = product { ( "+" | "-" ) product } ;
    product    = unary { ( "*" | "/" ) unary } ;
    unary      = { "!" | "-" } primary ;
    primary    = key | pattern | number | metric | "(" or ")" ;
    key        = word that is not a number ;
    word       = wordchar { wordchar | "-" } ;    (* wordchar: letter, digit, "_", ".", ":" *)
    pattern    = '"' { any character but '"' } '"'
               | "'" { any character but "'" } "'" ;
    number     = digit { digit } [ "." { digit } ] | "." digit { digit } ;
    metric     = "@." ( "disk" | "mem" | "nCPUs" | "cpu" | "sa" ) ;

Every expression is typed: keys, patterns, comparisons and the results of
`!`, `&&`, `,` and `||` are *conditions*; numbers, metrics and arithmetic
are *numbers*.  `!`, `&&`, `,`, `||` take conditions, comparisons and
`+ - * /` take numbers, and the whole expression must be a condition.
Violations are errors with the column of the offending operand.

Choices where the reference and Tractor's documentation are silent
----------------------------------------------------------------------
* `,` is exactly `&&` (same precedence): `a || b, c` is `a || (b && c)`.
* `!` (and unary `-`) bind tightest, as in C: `!a, b` is `(!a) && b`, and
  `!@.disk > 5` is an error (write `!(@.disk > 5)`).
* Comparisons do not chain (`1 < @.cpu < 2` is an error); `=` alone is not an
  operator (the error suggests `==`).  A metric or a sum is not a condition
  by itself (`@.sa && linux` is an error: write `@.sa > 0`), and keys are not
  numbers (`linux + osx > 1` is an error), although the Tractor docs say keys
  "are replaced with 1 or 0": being strict catches typos at spool time.
* Keys match case-insensitively: they are lower-cased (`str.lower`) on both
  sides.  A key may contain letters, digits, `_`, `.`, `:` and, after its
  first character, `-` (host names, IPv4/IPv6 addresses).  A word that reads
  as a number is a number; a word of only digits, `.` and `:` that contains a
  `-` is cut at the `-`, so `10-5` is a subtraction while `rack-15` and
  `render-01` are keys.  Anything else (spaces, other punctuation) can be
  matched exactly with a quoted string.
* Patterns are quoted with `"` or `'`; inside them `*` matches any run of
  characters and `?` exactly one, everything else (including `[`) is literal;
  there are no escapes.  A quoted string without wildcards is an exact key
  (`"linux"` is `linux`).  A pattern is true when any key of the blade
  (provided or implicit) matches it as a whole.  Unquoted wildcards are an
  error that shows the quoted form; an empty pattern `""` is an error.
* Implicit keys of a blade: its host name, the host name's first label (the
  short name, unless the name is an IP address), each of its IP addresses and
  its profile name.
* Metrics: `@.disk` free disk space in GB, `@.mem` free memory in GB,
  `@.nCPUs` number of CPU cores, `@.cpu` CPU usage normalised by nCPUs, `@.sa`
  slots available.  Names are case-insensitive; other names are errors.  A
  metric the blade does not report is unknown (NaN): every comparison with it
  is false except `!=`.  Arithmetic is floating point; dividing a non-zero
  number by zero gives an infinity of the numerator's sign, 0/0 is unknown.
  Numbers are decimal without exponents; there is a unary minus, no unary
  plus.
* The empty (or all-blank) expression matches every blade.  Tractor's
  default `PixarRender` is a default of the job *generators* (`tractor-spool
  -c`, `--rib`: see jobs/generate.py), not of the expression language; a
  command written without `-service` runs anywhere (as db/spool.py stores it).
* Parentheses nest at most 32 deep (`MAX_NESTING`).  Runs of `!` or `-`
  collapse (`!!a` is `a`), and long `&&`/`||`/`+`/`*` chains are flat, so no
  input makes the parser or the evaluator recurse deeply.

Combination (`combine`)
-----------------------
The effective requirement of a command is, following reference 6.5 and the
Tractor docs ("this same effect might be applied to every command in a job by
adding that key to the top-level Job"): the command's `-service` AND the job's
`-service` AND the spool-time `--svckey` AND NOT each job `-avoid` item.  A
job `-service` is therefore *added to*, not a fallback for, a command's own
expression; empty parts are left out, and nothing at all gives the empty
expression (every blade).  Each `-avoid` item is a key or an expression (a
host name, an address, a profile name); an item with unquoted `*`/`?` and
otherwise only word characters (`render-1*`) is taken as a pattern.  A
string given as `job_avoid` is split on whitespace, like a Tcl list of plain
words.  Whether `-refersto` skips the command's own expression is the
caller's business (pass an empty `command_service`).

Canonical text (`canonical`)
----------------------------
One text per equivalence class that is cheap to recognise: keys and patterns
lower-cased, quoted only when they must be; `,` written `&&`; one space around
binary operators; nested `&&`/`||` flattened, their operands deduplicated and
sorted (plain keys, then patterns, then comparisons, then groups, then
negations; alphabetically within each); `!!x` is `x`; a comparison with a
constant on the left is mirrored (`5 < @.disk` is `@.disk > 5`); numbers
written without redundant zeros (`007.50` is `7.5`, `.75` is `0.75`);
left-nested arithmetic flattened; only the parentheses precedence needs.
Arithmetic is never reordered (floating point is not associative), so
`canonical(x)` always evaluates like `x` on every blade, and
`canonical(canonical(x)) == canonical(x)`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NoReturn

from tractorcli.errors import BadInput

__all__ = [
    "METRICS", "MAX_NESTING", "ServiceExprError", "BladeFacts", "Expr", "Explanation",
    "Node", "Key", "Pattern", "Num", "Metric", "Neg", "Arith", "Cmp", "Not", "And", "Or",
    "parse", "canonical", "matches", "explain", "combine", "keys_needed", "keys_excluded",
]

#: Blade metrics by their lower-case name -> the spelling used in canonical text.
METRICS: dict[str, str] = {"disk": "disk", "mem": "mem", "ncpus": "nCPUs", "cpu": "cpu", "sa": "sa"}
MAX_NESTING = 32

NAN = math.nan


# --- errors --------------------------------------------------------------------------


def _printable(text: str) -> str:
    """`text` with unprintable characters escaped (\\n, \\t, \\x07)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _show(expr: str) -> str:
    """The expression in double quotes on one line (quotes, backslashes and
    unprintable characters escaped)."""
    out = []
    for c in expr:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return '"' + "".join(out) + '"'


class ServiceExprError(BadInput):
    """A malformed service key expression; `column` is 1-based."""

    def __init__(self, expr: str, column: int, reason: str, *, hint: str | None = None):
        super().__init__(f"service key expression {_show(expr)}: column {column}: {reason}", hint=hint)
        self.expr = expr
        self.column = column
        self.reason = reason


# --- the blade -----------------------------------------------------------------------

_IPV4 = re.compile(r"[0-9]+(?:\.[0-9]+){3}\Z")


def _to_float(v) -> float:
    if v is None:
        return NAN
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf
    except (TypeError, ValueError):
        return NAN


@dataclass(frozen=True)
class BladeFacts:
    """What a blade offers to expressions.

    `provides` are its blade.config keys; `hostname`, `addresses` and
    `profile` are also keys (see the module docstring); `metrics` maps metric
    names (`disk`, `mem`, `nCPUs`, `cpu`, `sa`, any case) to numbers, None or
    absent meaning unknown.  Everything is lower-cased on construction;
    `keys` is the set every key and pattern is matched against.
    """

    provides: frozenset[str] = frozenset()
    hostname: str = ""
    addresses: tuple[str, ...] = ()
    profile: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict, hash=False)
    keys: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        provides = (self.provides,) if isinstance(self.provides, str) else self.provides
        provides = frozenset(k.lower() for k in provides if k)
        addresses = (self.addresses,) if isinstance(self.addresses, str) else tuple(self.addresses)
        host = self.hostname.strip().lower()
        keys = set(provides)
        if host:
            keys.add(host)
            if not _IPV4.match(host) and ":" not in host:
                keys.add(host.split(".", 1)[0] or host)
        keys.update(a.strip().lower() for a in addresses if a.strip())
        if self.profile.strip():
            keys.add(self.profile.strip().lower())
        keys.discard("")
        object.__setattr__(self, "provides", provides)
        object.__setattr__(self, "addresses", addresses)
        object.__setattr__(self, "metrics", {str(k).lower(): _to_float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "keys", frozenset(keys))


# --- the AST -------------------------------------------------------------------------


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return NAN
        return math.copysign(math.inf, a)


_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _div}
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class Node:
    """Base of the AST.  Conditions (`is_bool`) have `evaluate(blade) ->
    bool`; numbers have `value_of(blade) -> float`.  `str(node)` is its text."""

    __slots__ = ()
    is_bool = True

    def __str__(self) -> str:
        return _render(self)


@dataclass(frozen=True, slots=True)
class Key(Node):
    name: str  # lower case

    def evaluate(self, blade: BladeFacts) -> bool:
        return self.name in blade.keys


@dataclass(frozen=True, slots=True)
class Pattern(Node):
    text: str  # lower case, with at least one wildcard
    regex: re.Pattern = field(compare=False, hash=False, repr=False)

    def evaluate(self, blade: BladeFacts) -> bool:
        return any(map(self.regex.fullmatch, blade.keys))


@dataclass(frozen=True, slots=True)
class Num(Node):
    text: str  # normalised decimal text
    value: float = field(compare=False, hash=False)
    is_bool = False

    def value_of(self, blade: BladeFacts) -> float:
        return self.value


@dataclass(frozen=True, slots=True)
class Metric(Node):
    name: str  # lower case key of METRICS
    is_bool = False

    def value_of(self, blade: BladeFacts) -> float:
        return blade.metrics.get(self.name, NAN)


@dataclass(frozen=True, slots=True)
class Neg(Node):
    operand: Node
    is_bool = False

    def value_of(self, blade: BladeFacts) -> float:
        return -self.operand.value_of(blade)


@dataclass(frozen=True, slots=True)
class Arith(Node):
    """first op1 x1 op2 x2 ..., left to right; ops all of one precedence
    level (`+ -` or `* /`)."""

    first: Node
    rest: tuple[tuple[str, Node], ...]
    is_bool = False

    def value_of(self, blade: BladeFacts) -> float:
        v = self.first.value_of(blade)
        for op, x in self.rest:
            v = _ARITH[op](v, x.value_of(blade))
        return v


@dataclass(frozen=True, slots=True)
class Cmp(Node):
    op: str
    lhs: Node
    rhs: Node

    def evaluate(self, blade: BladeFacts) -> bool:
        return _CMP[self.op](self.lhs.value_of(blade), self.rhs.value_of(blade))


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node

    def evaluate(self, blade: BladeFacts) -> bool:
        return not self.operand.evaluate(blade)


@dataclass(frozen=True, slots=True)
class And(Node):
    items: tuple[Node, ...]

    def evaluate(self, blade: BladeFacts) -> bool:
        return all(x.evaluate(blade) for x in self.items)


@dataclass(frozen=True, slots=True)
class Or(Node):
    items: tuple[Node, ...]

    def evaluate(self, blade: BladeFacts) -> bool:
        return any(x.evaluate(blade) for x in self.items)


def _level(n: Node) -> int:
    """Precedence of an Arith node: 1 for + -, 2 for * /."""
    return 1 if n.rest[0][0] in "+-" else 2


def _not(n: Node) -> Node:
    return n.operand if isinstance(n, Not) else Not(n)


def _neg(n: Node) -> Node:
    if isinstance(n, Neg):
        return n.operand
    if isinstance(n, Num):
        return _number(n.text[1:] if n.text.startswith("-") else "-" + n.text)
    return Neg(n)


def _number(text: str) -> Num:
    """A Num with normalised text: no sign on zero, no leading zeros, no
    trailing fraction zeros."""
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    whole, _, frac = text.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    text = whole + ("." + frac if frac else "")
    if text == "0":
        sign = ""
    text = sign + text
    return Num(text, float(text))


def _glob(text: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


def _pattern(text: str) -> Node:
    text = re.sub(r"\*{2,}", "*", text.lower())
    if "*" not in text and "?" not in text:
        return Key(text)
    return Pattern(text, _glob(text))


# --- lexer ---------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[\w.:][\w.:-]*")
_GLOBWORD = re.compile(r"[\w.:*?-]+")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_METRIC = re.compile(r"@\.([A-Za-z_][A-Za-z0-9_]*)")
_OPS2 = frozenset(("&&", "||", "<=", ">=", "==", "!="))
_OPS1 = frozenset(",!()+-*/<>")
_METRIC_LIST = "@.disk, @.mem, @.nCPUs, @.cpu or @.sa"


class _Tok:
    __slots__ = ("kind", "value", "pos", "text")

    def __init__(self, kind: str, value: str, pos: int, text: str):
        self.kind = kind  # key pat num metric op end
        self.value = value
        self.pos = pos
        self.text = text  # as written

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.value in ops

    def describe(self) -> str:
        if self.kind == "end":
            return "the end"
        if self.kind == "key":
            return f"the key '{self.text}'"
        if self.kind == "pat":
            return f"the pattern {self.text}"
        if self.kind == "num":
            return f"the number {self.text}"
        if self.kind == "metric":
            return f"the metric {self.text}"
        return f"'{self.text}'"


def _is_numberish_word(w: str) -> bool:
    """True when a word has no letter or underscore (only digits, '.', ':' and '-')."""
    return not any(c.isalpha() or c == "_" for c in w)


def _char(c: str) -> str:
    return f"'{c}'" if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}"


def _lex(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    i, n = 0, len(src)
    while True:
        m = _SPACE.match(src, i)
        if m:
            i = m.end()
        if i >= n:
            append(_Tok("end", "", n, ""))
            return toks
        c = src[i]
        two = src[i:i + 2]
        if two in _OPS2:
            append(_Tok("op", two, i, two))
            i += 2
            continue
        if c in _OPS1:
            append(_Tok("op", c, i, c))
            i += 1
            continue
        if c == '"' or c == "'":
            j = src.find(c, i + 1)
            if j < 0:
                raise ServiceExprError(src, i + 1, f"the pattern opened by {c} here is not closed")
            if j == i + 1:
                raise ServiceExprError(src, i + 1, "empty pattern")
            append(_Tok("pat", src[i + 1:j], i, src[i:j + 1]))
            i = j + 1
            continue
        if c == "@":
            m = _METRIC.match(src, i)
            if not m:
                raise ServiceExprError(src, i + 1, f"expected a blade metric: {_METRIC_LIST}")
            name = m.group(1).lower()
            if name not in METRICS:
                raise ServiceExprError(src, i + 1, f"unknown blade metric '{m.group()}' (known: {_METRIC_LIST})")
            append(_Tok("metric", name, i, m.group()))
            i = m.end()
            continue
        m = _WORD.match(src, i)
        if m:
            w = m.group()
            if _NUMBER.match(w):
                kind = "num"
            else:
                if "-" in w and _is_numberish_word(w):
                    w = w[:w.index("-")]
                kind = "num" if _NUMBER.match(w) else "key"
            end = i + len(w)
            if kind == "key" and end < n and src[end] in "*?":
                g = _GLOBWORD.match(src, i).group()
                raise ServiceExprError(src, i + 1, f"wildcards need a quoted pattern: write \"{g}\"")
            append(_Tok(kind, w, i, w))
            i = end
            continue
        if c == "&":
            raise ServiceExprError(src, i + 1, "'&' is not an operator; did you mean '&&'?")
        if c == "|":
            raise ServiceExprError(src, i + 1, "'|' is not an operator; did you mean '||'?")
        if c == "=":
            raise ServiceExprError(src, i + 1, "'=' is not an operator; did you mean '=='?")
        if c == "?":
            g = _GLOBWORD.match(src, i).group()
            raise ServiceExprError(src, i + 1, f"wildcards need a quoted pattern: write \"{g}\"")
        raise ServiceExprError(src, i + 1, f"unexpected character {_char(c)}")


# --- parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str):
        self.src = src
        self.toks = _lex(src)
        self.i = 0
        self.depth = 0

    def fail(self, pos: int, reason: str, hint: str | None = None) -> NoReturn:
        # one line whatever the input: a token quoted in the reason may hold a newline
        raise ServiceExprError(self.src, pos + 1, _printable(reason), hint=hint and _printable(hint))

    def need_bool(self, node: Node, pos: int, what: str) -> None:
        if not node.is_bool:
            text = _render(node)
            self.fail(pos, f"{what} needs a condition, found the number {text}; "
                           f"compare it, e.g. {text} > 0")

    def need_num(self, node: Node, pos: int, op: str) -> None:
        if node.is_bool:
            if isinstance(node, Key):
                found = f"the key {_render(node)}"
            elif isinstance(node, Pattern):
                found = f"the pattern {_render(node)}"
            else:
                found = f"the condition {_render(node)}"
            self.fail(pos, f"'{op}' needs numbers, found {found}")

    def parse(self) -> Node | None:
        if self.toks[0].kind == "end":
            return None
        node, pos = self.or_(False)
        t = self.toks[self.i]
        if t.kind != "end":
            if t.is_op(")"):
                self.fail(t.pos, "')' without a matching '('")
            self.fail(t.pos, f"expected an operator or the end, found {t.describe()}",
                      hint="keys are combined with '&&', ',' or '||'")
        self.need_bool(node, pos, "a service key expression")
        return node

    def or_(self, numeric: bool) -> tuple[Node, int]:
        node, pos = self.and_(numeric)
        if not self.toks[self.i].is_op("||"):
            return node, pos
        self.need_bool(node, pos, "'||'")
        items = [node]
        while self.toks[self.i].is_op("||"):
            self.i += 1
            x, p = self.and_(False)
            self.need_bool(x, p, "'||'")
            items.append(x)
        return Or(tuple(items)), pos

    def and_(self, numeric: bool) -> tuple[Node, int]:
        node, pos = self.comparison(numeric)
        t = self.toks[self.i]
        if not t.is_op("&&", ","):
            return node, pos
        self.need_bool(node, pos, f"'{t.value}'")
        items = [node]
        while True:
            t = self.toks[self.i]
            if not t.is_op("&&", ","):
                break
            self.i += 1
            x, p = self.comparison(False)
            self.need_bool(x, p, f"'{t.value}'")
            items.append(x)
        return And(tuple(items)), pos

    def comparison(self, numeric: bool) -> tuple[Node, int]:
        lhs, pos = self.arith(numeric, 1)
        t = self.toks[self.i]
        if t.kind != "op" or t.value not in _CMP:
            return lhs, pos
        self.need_num(lhs, pos, t.value)
        self.i += 1
        rhs, rpos = self.arith(True, 1)
        self.need_num(rhs, rpos, t.value)
        t2 = self.toks[self.i]
        if t2.kind == "op" and t2.value in _CMP:
            self.fail(t2.pos, "comparisons do not chain; combine them with '&&'")
        return Cmp(t.value, lhs, rhs), pos

    def arith(self, numeric: bool, level: int) -> tuple[Node, int]:
        ops = "+-" if level == 1 else "*/"
        sub = (lambda num: self.arith(num, 2)) if level == 1 else self.unary
        node, pos = sub(numeric)
        t = self.toks[self.i]
        if t.kind != "op" or t.value not in ops:
            return node, pos
        self.need_num(node, pos, t.value)
        rest = []
        while True:
            t = self.toks[self.i]
            if t.kind != "op" or t.value not in ops:
                break
            self.i += 1
            x, p = sub(True)
            self.need_num(x, p, t.value)
            rest.append((t.value, x))
        return Arith(node, tuple(rest)), pos

    def unary(self, numeric: bool) -> tuple[Node, int]:
        ops: list[_Tok] = []
        while True:
            t = self.toks[self.i]
            if not t.is_op("!", "-"):
                break
            ops.append(t)
            self.i += 1
        if ops:
            numeric = ops[-1].value == "-"
        node, pos = self.primary(numeric)
        for t in reversed(ops):
            if t.value == "!":
                self.need_bool(node, pos, "'!'")
                node = _not(node)
            else:
                self.need_num(node, pos, "-")
                node = _neg(node)
            pos = t.pos
        return node, pos

    def primary(self, numeric: bool) -> tuple[Node, int]:
        t = self.toks[self.i]
        self.i += 1
        kind = t.kind
        if kind == "key":
            return Key(t.value.lower()), t.pos
        if kind == "pat":
            return _pattern(t.value), t.pos
        if kind == "num":
            return _number(t.value), t.pos
        if kind == "metric":
            return Metric(t.value), t.pos
        if t.is_op("("):
            if self.depth >= MAX_NESTING:
                self.fail(t.pos, f"parentheses nested more than {MAX_NESTING} deep")
            if self.toks[self.i].is_op(")"):
                self.fail(self.toks[self.i].pos, "empty parentheses")
            self.depth += 1
            node, _ = self.or_(numeric)
            self.depth -= 1
            close = self.toks[self.i]
            if not close.is_op(")"):
                if close.kind == "end":
                    self.fail(close.pos, f"expected ')' to close the '(' at column {t.pos + 1}")
                self.fail(close.pos, f"expected an operator or ')', found {close.describe()}",
                          hint="keys are combined with '&&', ',' or '||'")
            self.i += 1
            return node, t.pos
        self.i -= 1
        want = "a number, a blade metric or '('" if numeric else "a key, a pattern or '('"
        if kind == "end":
            self.fail(t.pos, f"expected {want}")
        hint = "wildcards belong in a quoted pattern, e.g. \"rack-*\"" if t.is_op("*") else None
        self.fail(t.pos, f"expected {want}, found {t.describe()}", hint=hint)


# --- compiled evaluation -------------------------------------------------------------

_Fn = Callable[[frozenset, Mapping], bool | float]


def _compile(n: Node) -> _Fn:
    """A closure fn(keys, metrics) computing the node."""
    if isinstance(n, Key):
        k = n.name
        return lambda K, M: k in K
    if isinstance(n, Pattern):
        fm = n.regex.fullmatch
        return lambda K, M: any(map(fm, K))
    if isinstance(n, Num):
        v = n.value
        return lambda K, M: v
    if isinstance(n, Metric):
        name = n.name
        return lambda K, M: M.get(name, NAN)
    if isinstance(n, Neg):
        f = _compile(n.operand)
        return lambda K, M: -f(K, M)
    if isinstance(n, Arith):
        first = _compile(n.first)
        if len(n.rest) == 1:
            (op, x), = n.rest
            g, h = _ARITH[op], _compile(x)
            return lambda K, M: g(first(K, M), h(K, M))
        rest = tuple((_ARITH[op], _compile(x)) for op, x in n.rest)

        def arith(K, M):
            v = first(K, M)
            for g, h in rest:
                v = g(v, h(K, M))
            return v
        return arith
    if isinstance(n, Cmp):
        g, a, b = _CMP[n.op], _compile(n.lhs), _compile(n.rhs)
        return lambda K, M: g(a(K, M), b(K, M))
    if isinstance(n, Not):
        f = _compile(n.operand)
        return lambda K, M: not f(K, M)
    if isinstance(n, (And, Or)):
        keys = [x.name for x in n.items if isinstance(x, Key)]
        others = tuple(_compile(x) for x in n.items if not isinstance(x, Key))
        req = frozenset(keys)
        if isinstance(n, And):
            if not others:
                return lambda K, M: req <= K
            if not keys and len(others) == 2:
                a, b = others
                return lambda K, M: bool(a(K, M) and b(K, M))
            return lambda K, M: req <= K and all(f(K, M) for f in others)
        if not others:
            return lambda K, M: not req.isdisjoint(K)
        return lambda K, M: not req.isdisjoint(K) or any(f(K, M) for f in others)
    raise TypeError(f"not a service expression node: {n!r}")  # pragma: no cover


def _true(K, M) -> bool:
    return True


@dataclass(frozen=True, eq=False)
class Expr:
    """A parsed expression: `node` is None for the empty expression."""

    source: str
    node: Node | None
    fn: _Fn = field(repr=False)

    def evaluate(self, blade: BladeFacts) -> bool:
        return self.fn(blade.keys, blade.metrics)

    @property
    def canonical(self) -> str:
        return "" if self.node is None else _render(_norm(self.node))


@lru_cache(maxsize=4096)
def parse(expr: str) -> Expr:
    """Parse (and compile) a service key expression; raises ServiceExprError.

    Results are cached: a blade polling with the same few expressions parses
    each once.
    """
    if not isinstance(expr, str):
        raise TypeError("a service key expression is a str")
    node = _Parser(expr).parse()
    return Expr(expr, node, _true if node is None else _compile(node))


def matches(expr: str | Expr, blade: BladeFacts) -> bool:
    """Whether `blade` may run commands needing `expr`."""
    e = parse(expr) if isinstance(expr, str) else expr
    return e.fn(blade.keys, blade.metrics)


# --- canonical text ------------------------------------------------------------------


def _bare_ok(name: str) -> bool:
    """Whether a key name reads back as that key when written unquoted."""
    return (_WORD.fullmatch(name) is not None and not _NUMBER.match(name)
            and not ("-" in name and _is_numberish_word(name)))


def _quote(text: str) -> str:
    q = "'" if '"' in text else '"'
    return q + text + q


def _render(n: Node) -> str:
    if isinstance(n, Key):
        return n.name if _bare_ok(n.name) else _quote(n.name)
    if isinstance(n, Pattern):
        return _quote(n.text)
    if isinstance(n, Num):
        return n.text
    if isinstance(n, Metric):
        return "@." + METRICS[n.name]
    if isinstance(n, Neg):
        x = n.operand
        return "-" + (_render(x) if isinstance(x, (Num, Metric)) else f"({_render(x)})")
    if isinstance(n, Arith):
        lv = _level(n)
        x = n.first
        first = _render(x)
        if isinstance(x, Arith) and _level(x) < lv:
            first = f"({first})"
        parts = [first]
        for op, x in n.rest:
            t = _render(x)
            if isinstance(x, Arith) and _level(x) <= lv:
                t = f"({t})"
            parts.append(f"{op} {t}")
        return " ".join(parts)
    if isinstance(n, Cmp):
        return f"{_render(n.lhs)} {n.op} {_render(n.rhs)}"
    if isinstance(n, Not):
        x = n.operand
        return "!" + (_render(x) if isinstance(x, (Key, Pattern)) else f"({_render(x)})")
    if isinstance(n, And):
        return " && ".join(f"({_render(x)})" if isinstance(x, Or) else _render(x) for x in n.items)
    if isinstance(n, Or):
        return " || ".join(_render(x) for x in n.items)
    raise TypeError(f"not a service expression node: {n!r}")  # pragma: no cover


def _rank(n: Node) -> int:
    if isinstance(n, Key):
        return 0
    if isinstance(n, Pattern):
        return 1
    if isinstance(n, Cmp):
        return 2
    if isinstance(n, Not):
        return 4
    return 3


def _norm(n: Node) -> Node:
    if isinstance(n, (Key, Pattern, Num, Metric)):
        return n
    if isinstance(n, Neg):
        return _neg(_norm(n.operand))
    if isinstance(n, Arith):
        first = _norm(n.first)
        rest = tuple((op, _norm(x)) for op, x in n.rest)
        if isinstance(first, Arith) and _level(first) == _level(n):
            return Arith(first.first, first.rest + rest)
        return Arith(first, rest)
    if isinstance(n, Cmp):
        lhs, rhs = _norm(n.lhs), _norm(n.rhs)
        if isinstance(lhs, Num) and not isinstance(rhs, Num):
            return Cmp(_MIRROR[n.op], rhs, lhs)
        return Cmp(n.op, lhs, rhs)
    if isinstance(n, Not):
        return _not(_norm(n.operand))
    if isinstance(n, (And, Or)):
        cls = type(n)
        flat: list[Node] = []
        for x in n.items:
            x = _norm(x)
            if type(x) is cls:
                flat.extend(x.items)
            else:
                flat.append(x)
        seen: dict[str, tuple[int, str, Node]] = {}
        for x in flat:
            t = _render(x)
            if t not in seen:
                seen[t] = (_rank(x), t, x)
        items = tuple(x for _, _, x in sorted(seen.values(), key=lambda e: (e[0], e[1])))
        return items[0] if len(items) == 1 else cls(items)
    raise TypeError(f"not a service expression node: {n!r}")  # pragma: no cover


def canonical(expr: str) -> str:
    """The normalised text of `expr` (see the module docstring); "" for the
    empty expression.  Raises ServiceExprError."""
    return parse(expr).canonical


# --- keys an expression needs ----------------------------------------------------------


def _must(n: Node, positive: bool) -> tuple[dict[str, None], dict[str, None]]:
    """(keys every matching blade provides, keys no matching blade provides),
    for `n` when `positive`, for `!n` otherwise."""
    if isinstance(n, Key):
        return ({n.name: None}, {}) if positive else ({}, {n.name: None})
    if isinstance(n, Not):
        return _must(n.operand, not positive)
    if isinstance(n, (And, Or)):
        parts = [_must(x, positive) for x in n.items]
        if isinstance(n, And) == positive:  # a conjunction: every part holds
            req: dict[str, None] = {}
            exc: dict[str, None] = {}
            for r, e in parts:
                req.update(r)
                exc.update(e)
            return req, exc
        req, exc = dict(parts[0][0]), dict(parts[0][1])  # a disjunction: what all parts share
        for r, e in parts[1:]:
            req = {k: None for k in req if k in r}
            exc = {k: None for k in exc if k in e}
        return req, exc
    return {}, {}


def keys_needed(expr: str | Expr) -> tuple[str, ...]:
    """The plain keys (lower case, in order of appearance) that every
    matching blade must provide: `pixarrender && (linux || osx) && !darth`
    needs ('pixarrender',).  Patterns and metrics are not keys."""
    e = parse(expr) if isinstance(expr, str) else expr
    return () if e.node is None else tuple(_must(e.node, True)[0])


def keys_excluded(expr: str | Expr) -> tuple[str, ...]:
    """The plain keys that no matching blade may provide (`!darth` -> ('darth',))."""
    e = parse(expr) if isinstance(expr, str) else expr
    return () if e.node is None else tuple(_must(e.node, True)[1])


# --- combination ---------------------------------------------------------------------

_AVOID_GLOB = re.compile(r"[\w.:*?-]*[*?][\w.:*?-]*\Z")


def _avoid_node(item: str) -> Node | None:
    item = item.strip()
    if not item:
        return None
    if _AVOID_GLOB.match(item):
        return _pattern(item)
    return parse(item).node


def combine(command_service: str = "", job_service: str = "",
            job_avoid: Iterable[str] | str = (), spool_key: str = "") -> str:
    """The canonical effective expression of a command: its own -service AND
    the job's -service AND the spool-time --svckey AND NOT each job -avoid
    item (see the module docstring).  "" when there is no requirement at all.
    Raises ServiceExprError for a malformed part."""
    parts: list[Node] = []
    for text in (command_service, job_service, spool_key):
        if text:
            node = parse(text).node
            if node is not None:
                parts.append(node)
    if isinstance(job_avoid, str):
        job_avoid = job_avoid.split()
    for item in job_avoid:
        node = _avoid_node(item)
        if node is not None:
            parts.append(_not(node))
    if not parts:
        return ""
    return _render(_norm(parts[0] if len(parts) == 1 else And(tuple(parts))))


# --- explanation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why a blade matches an expression or not.

    `reasons` are the facts that decided the outcome (for a match: what was
    satisfied; otherwise: what failed), one sentence each; `missing` are
    required keys the blade lacks, `unwanted` are keys it provides that a `!`
    excludes, `failed` are the comparisons that went the wrong way, with the
    values seen.
    """

    expression: str  # the expression as evaluated (normalised spelling, user's order)
    matches: bool
    reasons: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unwanted: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def lines(self) -> list[str]:
        if not self.expression:
            return ["matches: the empty expression matches every blade"]
        head = f"{'matches' if self.matches else 'does not match'}: {self.expression}"
        return [head] + [f"  {r}" for r in self.reasons]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "unknown"
    if math.isinf(v):
        return "infinity" if v > 0 else "-infinity"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _metrics_in(n: Node, out: dict[str, None]) -> None:
    if isinstance(n, Metric):
        out[n.name] = None
    elif isinstance(n, Neg):
        _metrics_in(n.operand, out)
    elif isinstance(n, Arith):
        _metrics_in(n.first, out)
        for _, x in n.rest:
            _metrics_in(x, out)


class _Why:
    def __init__(self, blade: BladeFacts):
        self.blade = blade
        self.reasons: list[str] = []
        self.missing: dict[str, None] = {}
        self.unwanted: dict[str, None] = {}
        self.failed: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.reasons:
            self.reasons.append(text)

    def visit(self, n: Node, v: bool, neg: str | None) -> None:
        """Record why `n` evaluated to `v`; `neg` is the text of the `!`
        that makes `n` count against the blade when true, else None."""
        blade = self.blade
        if isinstance(n, (Key, Pattern)):
            what = _render(n)
            if isinstance(n, Key):
                fact = f"provides {what}" if v else f"does not provide {what}"
            else:
                hits = sorted(k for k in blade.keys if n.regex.fullmatch(k))
                more = ", ..." if len(hits) > 5 else ""
                fact = (f"{what} matches {', '.join(hits[:5])}{more}" if v
                        else f"nothing it provides matches {what}")
            if neg is None and not v:
                if isinstance(n, Key):
                    self.missing[n.name] = None
                    fact = f"missing key {what}"
            elif neg is not None and v:
                if isinstance(n, Key):
                    self.unwanted[n.name] = None
                fact += f", excluded by {neg}"
            self.add(fact)
        elif isinstance(n, Cmp):
            details = []
            for side in (n.lhs, n.rhs):
                if not isinstance(side, (Num, Metric)):
                    details.append(f"{_render(side)} = {_fmt(side.value_of(blade))}")
            ms: dict[str, None] = {}
            _metrics_in(n.lhs, ms)
            _metrics_in(n.rhs, ms)
            for m in ms:
                val = blade.metrics.get(m, NAN)
                details.append(f"@.{METRICS[m]} = {_fmt(val)}" if not math.isnan(val)
                               else f"@.{METRICS[m]} is not reported")
            text = f"{_render(n)} is {'true' if v else 'false'}"
            if details:
                text += f" ({'; '.join(details)})"
            if v == (neg is not None):
                self.failed.append(text)
            self.add(text)
        elif isinstance(n, Not):
            self.visit(n.operand, not v, _render(n) if neg is None else None)
        elif isinstance(n, (And, Or)):
            values = [x.evaluate(blade) for x in n.items]
            if isinstance(n, And) == v:  # And true, Or false: every part counts
                chosen = list(zip(n.items, values))
            else:  # And false, Or true: the parts that decided
                chosen = [(x, xv) for x, xv in zip(n.items, values) if xv == v]
            for x, xv in chosen:
                self.visit(x, xv, neg)


def explain(expr: str | Expr, blade: BladeFacts) -> Explanation:
    """Whether and why `blade` matches `expr` (backs `tractor-blade --explain`)."""
    e = parse(expr) if isinstance(expr, str) else expr
    if e.node is None:
        return Explanation("", True)
    ok = e.evaluate(blade)
    why = _Why(blade)
    why.visit(e.node, ok, None)
    return Explanation(_render(e.node), ok, tuple(why.reasons), tuple(why.missing),
                       tuple(why.unwanted), tuple(why.failed))
