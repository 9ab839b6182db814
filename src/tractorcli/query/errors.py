"""The one error of the search-clause language.

Every problem with a clause - a syntax error, an unknown attribute, a type
mismatch, a time literal that is no time - is a `ClauseError` that names the
1-based column where it was found.  It is a `BadInput` (exit status 11); the
CLI prints its one-line message after the program name::

    tq: clause "owner=joe and": column 14: expected an attribute, a value or '(' after "and"

`caret()` gives the two-line form (the clause, and a caret under the
column) for programs that want to show it.
"""

from __future__ import annotations

from tractorcli.errors import BadInput

__all__ = ["ClauseError", "show", "LiteralError"]


def show(text: str) -> str:
    """`text` in double quotes on one line: quotes, backslashes and
    unprintable characters escaped, so a message stays one line."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(c.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return '"' + "".join(out) + '"'


class ClauseError(BadInput):
    """A search clause that cannot be used; `column` is 1-based (len + 1: the end)."""

    def __init__(self, clause: str, column: int, reason: str, *, hint: str | None = None):
        super().__init__(f"clause {show(clause)}: column {column}: {reason}", hint=hint)
        self.clause = clause
        self.column = column
        self.reason = reason

    def caret(self) -> str:
        """The clause on one line and a caret under the offending column."""
        line = self.clause.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        return f"{line}\n{' ' * (self.column - 1)}^"


class LiteralError(ValueError):
    """A value that is not what its attribute needs (raised by timeparse and
    attribute conversions; the compiler adds the clause and the column)."""
