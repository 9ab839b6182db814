"""Tokens of a search clause (reference section 2.4).

Kinds (`Token.kind`):

=========  ==============================================================
``op``     a comparison: ``= == != < <= > >=`` (``value`` is the operator)
``in``     ``in``, ``like``, ``has`` (lower case; kind is the word itself)
``like``
``has``
``and``    ``and``, ``or``, ``not`` in any case (``AND``, ``Or`` ...)
``or``
``not``
``(``      grouping
``)``
``[``      lists: ``[a, b c]`` (items separated by commas and/or blanks)
``]``
``,``
``string`` ``'...'`` or ``"..."``; a backslash escapes the quote and the
           backslash, and is kept before any other character
           (``"RHEL\\d+"`` is the regex ``RHEL\\d+``)
``number`` an integer or decimal with an optional leading ``-``
``word``   any other run of characters but ``! ( ) [ ] , < > = ' "``,
           backticks and blanks: attribute names, aliases, unquoted
           values, time values (``3/15|4pm``, ``-2h``), sizes (``512M``)
``end``    the end of the clause
=========  ==============================================================

Keywords are whole words: ``index``, ``notes`` or ``hasher`` are words, and
a keyword ends where a word would end (at a blank, a bracket, a parenthesis,
a quote or an operator), so ``not(active)`` is ``not ( active )``.

Backticks are refused: Tractor substitutes the output of a `` `command` ``
into the clause; here nothing from a clause runs on the client.  Inside a
quoted string a backtick is an ordinary character.  NUL characters and
unpaired surrogates (undecodable bytes from the command line) are refused
too: the database could not take them as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ClauseError

__all__ = ["Token", "lex", "NUMBER", "KEYWORDS"]

NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_DELIMS = frozenset("!()[],<>='\"`")
KEYWORDS = {"in": "in", "like": "like", "has": "has"}
_BOOL = {"and", "or", "not"}
BACKTICK = "backtick command substitution is not supported: nothing from a clause runs on this machine"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: str  # decoded: the string's content, the operator, the word
    col: int  # 1-based column of the first character
    text: str  # as written

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the clause"
        from .errors import show

        return show(self.text)


def _check_char(src: str, i: int, c: str) -> None:
    if c == "\x00":
        raise ClauseError(src, i + 1, "a NUL character cannot be part of a clause")
    if "\ud800" <= c <= "\udfff":
        raise ClauseError(src, i + 1, "not valid text here (an undecodable byte?)")


def lex(src: str) -> list[Token]:
    """The tokens of `src`, ending with one ``end`` token; ClauseError on bad input."""
    toks: list[Token] = []
    append = toks.append
    i, n = 0, len(src)
    while True:
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            append(Token("end", "", n + 1, ""))
            return toks
        c = src[i]
        _check_char(src, i, c)
        if c in "()[],":
            append(Token(c, c, i + 1, c))
            i += 1
        elif c in "=<>":
            op = src[i:i + 2] if src[i + 1:i + 2] == "=" else c
            append(Token("op", op, i + 1, op))
            i += len(op)
        elif c == "!":
            if src[i + 1:i + 2] != "=":
                raise ClauseError(src, i + 1, "'!' alone is not an operator: write 'not' to negate, or '!='")
            append(Token("op", "!=", i + 1, "!="))
            i += 2
        elif c == "`":
            raise ClauseError(src, i + 1, BACKTICK)
        elif c in "'\"":
            out = []
            j = i + 1
            while True:
                if j >= n:
                    raise ClauseError(src, i + 1, f"the string opened by {c} here is not closed")
                d = src[j]
                _check_char(src, j, d)
                if d == c:
                    break
                if d == "\\" and j + 1 < n:
                    e = src[j + 1]
                    _check_char(src, j + 1, e)
                    if e == c or e == "\\":
                        out.append(e)
                    else:
                        out.append(d + e)
                    j += 2
                    continue
                out.append(d)
                j += 1
            append(Token("string", "".join(out), i + 1, src[i:j + 1]))
            i = j + 1
        else:
            j = i
            while j < n:
                d = src[j]
                if d.isspace() or d in _DELIMS:
                    if d == "`":
                        raise ClauseError(src, j + 1, BACKTICK)
                    break
                _check_char(src, j, d)
                j += 1
            w = src[i:j]
            if NUMBER.match(w):
                kind = "number"
            elif w in KEYWORDS:
                kind = w
            elif w.lower() in _BOOL:
                kind = w.lower()
            else:
                kind = "word"
            append(Token(kind, w, i + 1, w))
            i = j
