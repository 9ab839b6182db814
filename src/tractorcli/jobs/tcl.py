"""Tcl, as much as job scripts need: the word parser and a small safe interpreter.

Parsing follows Tcl's own rules (the "dodekalogue"): commands end at a
newline or `;`; words are separated by blanks (`\\r` counts as one, so CRLF
files read as Tcl reads them); `{...}` groups literally with nesting, and
only backslash-newline is replaced (by a space); `"..."` groups with
substitution; backslash escapes; `$var`, `${var}` and `[command]`
substitution; `#` starts a comment only where a command could start.

Every word keeps where it came from, so errors say `file:line:column`.
Line and column are computed only when asked for (from offsets), because a
generated job can have millions of words.

The interpreter runs only a whitelist of harmless commands (`set`, `expr`,
`list`, `format`, `string`, `foreach`, ...) plus the job operators that
`alfred.py` registers.  Anything else (`exec`, `open`, `source`, `proc`,
...) is refused with its name and place: nothing in a job script ever runs
on the spooling host.  A step budget stops runaway loops.

Hostile scripts end in a one-line error with a place, in bounded time and
memory: nesting is limited to `MAX_DEPTH` levels and every value the
interpreter builds to `MAX_VALUE` characters.
"""

from __future__ import annotations

import bisect
import math
import re
import sys
from typing import Callable, Iterator

from .model import JobError, Location

# word kinds
BRACE, QUOTE, BARE = 1, 2, 3

MAX_STEPS = 50_000_000  # commands evaluated per script; a runaway-loop guard
# Levels of nesting of any kind: a script in braces evaluated inside another
# (-subtasks, -cmds, if, foreach ...), a [command substitution], a level of
# expression parentheses or operators.  Real scripts nest a handful of levels
# (the corpus: 7); Tcl's own default limit is also 1000.  The interpreter
# recurses once per level, so it makes room on Python's stack for this many
# (see Interp.eval_source) and a deeper script is refused with its place
# instead of ending in a RecursionError.
MAX_DEPTH = 1000
# Python frames one level of nesting may take (expression parentheses take
# the most: ternary, one per precedence level, power, unary, primary).
_FRAMES_PER_LEVEL = 20
# Characters in any one value the interpreter builds (substitution, append,
# lappend, list, join, format, string repeat ...).  Values of real jobs are
# kilobytes; 64 Mi characters is far above that, yet small enough that a
# script doubling a variable in a loop (or `format %999999999d`) is refused
# long before it exhausts memory.  Braced words are slices of the script
# itself (a generated job's -subtasks body can be larger) and are not built,
# so they are not counted.
MAX_VALUE = 64 * 1024 * 1024


class TclError(JobError):
    """A job script that is not valid Tcl, or uses what we do not allow."""


def too_deep(where) -> TclError:
    return TclError(f"nested too deeply: more than {MAX_DEPTH} levels of braces, "
                    "[command substitutions] or expression parentheses", where)


def too_big(where) -> TclError:
    return TclError(f"value too large: a job script may build values of at most {MAX_VALUE:,} characters",
                    where)


class Source:
    """A script text and how its offsets map to file locations.

    A sub-source (the value of a quoted word evaluated as a script, an
    Iterate template after substitution) maps its line 1 to the line and
    column where it came from in its parent.
    """

    __slots__ = ("text", "file", "_lines", "base_line", "base_col", "closers")

    def __init__(self, text: str, file: str = "<script>", base_line: int = 1, base_col: int = 1):
        self.text = text
        self.file = file
        self._lines: list[int] | None = None
        self.base_line = base_line
        self.base_col = base_col
        self.closers: dict[int, int] = {}  # offset of a { -> offset of its }

    def location(self, offset: int) -> Location:
        if self._lines is None:
            self._lines = [m.end() for m in re.finditer("\n", self.text)]
        n = bisect.bisect_right(self._lines, offset)
        start = self._lines[n - 1] if n else 0
        col = offset - start + 1
        if n == 0:
            col += self.base_col - 1
        return Location(self.file, self.base_line + n, col)


class SourcePos:
    """A place in a Source, turned into line and column only when shown.

    Jobs with a million tasks keep a position for each; computing the line
    of every one up front would cost more than the rest of parsing.
    """

    __slots__ = ("src", "offset")

    def __init__(self, src: Source, offset: int):
        self.src = src
        self.offset = offset

    def location(self) -> Location:
        return self.src.location(self.offset)

    @property
    def file(self) -> str:
        return self.src.file

    @property
    def line(self) -> int:
        return self.location().line

    @property
    def col(self) -> int:
        return self.location().col

    def __str__(self) -> str:
        return str(self.location())

    def __repr__(self) -> str:
        return f"SourcePos({self})"


class Word:
    """One word of a command: its value after substitution and its place.

    For a braced word, `start`/`end` delimit the text between the braces in
    `src`, so a script-valued option (-subtasks {...}) is evaluated straight
    from the original text with exact positions.
    """

    __slots__ = ("kind", "value", "src", "pos", "start", "end")

    def __init__(self, kind: int, value: str, src: Source, pos: int, start: int, end: int):
        self.kind = kind
        self.value = value
        self.src = src
        self.pos = pos  # offset of the word's first character
        self.start = start
        self.end = end

    @property
    def where(self) -> SourcePos:
        return SourcePos(self.src, self.pos)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Word({self.value!r} @{self.where})"


class _LongBraceWord(Word):
    """A long braced word, its value copied out of the script only when asked for.

    A script body (-subtasks {...}) is evaluated from its place in the
    script and its value is rarely needed; not copying it keeps a script
    nested N levels deep from holding N copies of its text at once.
    """

    __slots__ = ("_value",)

    @property
    def value(self) -> str:
        v = self._value
        if v is None:
            v = self._value = braced_value(self.src.text[self.start:self.end])
        return v

    @value.setter
    def value(self, v) -> None:
        self._value = v


_LAZY_BRACES = 4096  # braced words longer than this are _LongBraceWords


# --- lexical helpers -------------------------------------------------------------

_BLANKS = re.compile(r"(?:[ \t\r\f\v]|\\\r?\n)*")
_SEPARATORS = re.compile(r"(?:[ \t\r\f\v\n;]|\\\r?\n)*")
_BRACE_TOKENS = re.compile(r"\\.|[{}]", re.S)
_BARE_PLAIN = re.compile(r"[^ \t\r\f\v\n;\\$\[\]]+")
_QUOTE_PLAIN = re.compile(r'[^"\\$\[]*"')
_WORD_END = frozenset(" \t\r\f\v\n;")
# The common word, with the blanks before it: braces with no nesting, newline
# or backslash inside, or a bare word with nothing to substitute.  Most words
# of generated jobs are like this; everything else takes the general path.
# Runs of common words, with the blanks before them: braces with no nesting,
# newline or backslash inside, or bare words with nothing to substitute.
# Most words of generated jobs are like this; the rest take the general path.
_FAST_RUN = re.compile(
    r"(?:[ \t\r\f\v]*(?:\{[^{}\\\n]*\}|[^ \t\r\f\v\n;{}\\$\[\]\"]+)(?=[ \t\r\f\v\n;]|\Z))+")
_FAST_TOKEN = re.compile(r"\{[^{}\\\n]*\}|[^ \t\r\f\v\n;{}\\$\[\]\"]+")
_NESTED_BRACES = re.compile(
    r"\{(?:[^{}]++|\{(?:[^{}]++|\{(?:[^{}]++|\{(?:[^{}]++|\{[^{}]*+\})*+\})*+\})*+\})*+\}")
_CONTINUATION = re.compile(r"\\\r?\n[ \t\r\f\v]*")
# In braces, backslashes pair up left to right: `\\` stays as it is, and only
# an unpaired backslash before a newline is a continuation (one space).
_BRACED_BACKSLASH = re.compile(r"\\(\\|\r?\n[ \t\r\f\v]*)?", re.S)


def braced_value(raw: str) -> str:
    """The value of a braced word: continuations become one space, nothing else changes."""
    if "\\" not in raw:
        return raw
    return _BRACED_BACKSLASH.sub(lambda m: " " if m.group(1) and m.group(1)[0] != "\\" else m.group(0), raw)
_VARNAME = re.compile(r"(?:[A-Za-z0-9_]|::)+")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX = "0123456789abcdefABCDEF"


def backslash(text: str, i: int) -> tuple[str, int]:
    """Tcl backslash substitution of the sequence starting at text[i] == '\\'."""
    j = i + 1
    if j >= len(text):
        return "\\", j
    c = text[j]
    if c in _ESCAPES:
        return _ESCAPES[c], j + 1
    if c == "\n" or (c == "\r" and text[j + 1: j + 2] == "\n"):
        m = _CONTINUATION.match(text, i)
        return " ", m.end()
    if c in "xuU":
        limit = {"x": 2, "u": 4, "U": 8}[c]
        k = j + 1
        while k < len(text) and k - j - 1 < limit and text[k] in _HEX:
            k += 1
        if k == j + 1:
            return c, j + 1
        code = int(text[j + 1:k], 16)
        try:
            return chr(code), k
        except (ValueError, OverflowError):
            return "\ufffd", k
    if c in "01234567":
        k = j
        while k < len(text) and k - j < 3 and text[k] in "01234567":
            k += 1
        return chr(int(text[j:k], 8) & 0xFF), k
    return c, j + 1


def unescape(text: str) -> str:
    """Replace every backslash sequence (no other substitution)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while True:
        k = text.find("\\", i)
        if k < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:k])
        s, i = backslash(text, k)
        out.append(s)


def split_list(text: str, where: Callable[[], Location] | None = None) -> list[str]:
    """Split a Tcl list into its elements (Tcl's list syntax, no substitution but backslashes)."""
    if "{" not in text and '"' not in text and "\\" not in text:
        return text.split()
    out: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\n\r\f\v":
            i += 1
        if i >= n:
            return out
        c = text[i]
        if c == "{":
            depth, k = 1, i + 1
            while k < n and depth:
                ch = text[k]
                if ch == "\\":
                    k += 2
                    continue
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                k += 1
            if depth:
                raise _list_error("unmatched open brace in list", where)
            if k < n and text[k] not in " \t\n\r\f\v":
                raise _list_error("list element in braces followed by something other than space", where)
            out.append(braced_value(text[i + 1:k - 1]))
            i = k
        elif c == '"':
            k = i + 1
            buf: list[str] = []
            while k < n and text[k] != '"':
                if text[k] == "\\":
                    s, k = backslash(text, k)
                    buf.append(s)
                else:
                    buf.append(text[k])
                    k += 1
            if k >= n:
                raise _list_error("unmatched open quote in list", where)
            k += 1
            if k < n and text[k] not in " \t\n\r\f\v":
                raise _list_error("list element in quotes followed by something other than space", where)
            out.append("".join(buf))
            i = k
        else:
            k = i
            buf = []
            while k < n and text[k] not in " \t\n\r\f\v":
                if text[k] == "\\":
                    s, k = backslash(text, k)
                    buf.append(s)
                else:
                    buf.append(text[k])
                    k += 1
            out.append("".join(buf))
            i = k


def _list_error(msg: str, where) -> TclError:
    return TclError(msg, where() if where else None)


_NEEDS_QUOTING = re.compile(r'[\s{}\[\]$"\\;]|^#|^$')


# No backslash, brace, CR or Ctrl-Z: braces are safe without looking further.
# Nearly every string of a real job takes this path.
braceable = re.compile(r"[^\\{}\r\x1a]*\Z").match
_QUOTE_TOKENS = re.compile(r"\\(.?)|[{}]", re.S)
# Characters a bare word must escape.  \s covers Unicode blanks too: a
# parser that splits on them (Python's str.split does) must not see them bare.
_SPECIAL = re.compile(r'[\\{}\[\]$";\s\x1a]')
_QUOTE_ESCAPES = {"\\": "\\\\", "{": "\\{", "}": "\\}", "[": "\\[", "]": "\\]", "$": "\\$", '"': '\\"',
            ";": "\\;", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}


def _brace_safe(s: str) -> bool:
    if "\r" in s or "\x1a" in s or "\\\n" in s:
        # CR and Ctrl-Z: Tcl's `source` turns CR-LF into LF and stops reading
        # at Ctrl-Z, so neither may stand bare in a script.  Backslash-newline: real
        # Tcl keeps an escaped backslash before a newline as it is, but a
        # reader that takes any backslash-newline in braces for a
        # continuation would not; escaping suits both.
        return False
    depth = 0
    for m in _QUOTE_TOKENS.finditer(s):
        t = m.group()
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if depth < 0:
                return False
        elif not m.group(1):  # a backslash at the end would escape the closing brace
            return False
    return depth == 0


def _escape_char(m: re.Match) -> str:
    c = m.group()
    e = _QUOTE_ESCAPES.get(c)
    return e if e is not None else "\\u%04x" % ord(c)


def _escape(s: str) -> str:
    return _SPECIAL.sub(_escape_char, s)


def quote(s: str) -> str:
    """A Tcl word that reads back as exactly `s`: `{s}` when safe, else backslash escapes."""
    if braceable(s) or _brace_safe(s):
        return "{" + s + "}"
    return _escape(s)


def quote_element(s: str) -> str:
    """A list element that reads back as exactly `s`: bare when nothing needs quoting."""
    if not _NEEDS_QUOTING.search(s):
        return s
    q = quote(s)
    return "\\" + q if q.startswith("#") else q  # a leading # could start a comment


def list_string(items) -> str:
    return " ".join(quote_element(str(x)) for x in items)


# --- the interpreter -------------------------------------------------------------

Handler = Callable[["Interp", list[Word]], str]


class Interp:
    """Evaluates a job script with a whitelisted command set."""

    def __init__(self, file: str = "<script>"):
        self.file = file
        self.vars: dict[str, str] = {}
        self.commands: dict[str, Handler] = dict(_BUILTINS)
        self.steps = 0
        self.depth = 0

    # -- evaluation ------------------------------------------------------------

    def eval_source(self, src: Source, start: int = 0, end: int | None = None) -> str:
        """Evaluate the commands in src.text[start:end]; the last result."""
        end = len(src.text) if end is None else end
        if self.depth == 0:
            return self._outermost(src, start, end)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise too_deep(src.location(start))
            result = ""
            for words in self.commands_in(src, start, end):
                result = self.invoke(words)
            return result
        finally:
            self.depth -= 1

    def _outermost(self, src: Source, start: int, end: int) -> str:
        """Evaluate with room on Python's stack for MAX_DEPTH levels of nesting."""
        frames, f = 0, sys._getframe()
        while f is not None:
            frames += 1
            f = f.f_back
        old = sys.getrecursionlimit()
        need = frames + MAX_DEPTH * _FRAMES_PER_LEVEL + 200
        if need > old:
            sys.setrecursionlimit(need)
        self.depth = 1
        try:
            result = ""
            for words in self.commands_in(src, start, end):
                result = self.invoke(words)
            return result
        finally:
            self.depth = 0
            if need > old:
                sys.setrecursionlimit(old)

    def enter(self, where) -> None:
        """One level of nesting deeper (`where`: a place, or a callable giving it)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.depth -= 1
            raise too_deep(where() if callable(where) else where)

    def eval_text(self, text: str, file: str | None = None) -> str:
        return self.eval_source(Source(text, file or self.file))

    def eval_word(self, word: Word) -> str:
        """Evaluate a word's value as a script (script-valued options)."""
        if word.kind == BRACE:
            return self.eval_source(word.src, word.start, word.end)
        loc = word.where
        return self.eval_source(Source(word.value, loc.file, loc.line, loc.col + 1))

    def invoke(self, words: list[Word]) -> str:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TclError(f"the script runs more than {MAX_STEPS} commands; is there an endless loop?",
                           words[0].where)
        name = words[0].value
        handler = self.commands.get(name)
        if handler is None:
            raise TclError(_unknown_command_text(name), words[0].where)
        return handler(self, words)

    # -- parsing -----------------------------------------------------------------

    def commands_in(self, src: Source, pos: int, end: int) -> Iterator[list[Word]]:
        """Parse and yield commands one at a time (each is evaluated before the next is read)."""
        while True:
            words, pos = self.next_command(src, pos, end)
            if words is None:
                return
            yield words

    def next_command(self, src: Source, pos: int, end: int) -> tuple[list[Word] | None, int]:
        """The words of the next command at or after pos, and the offset after it (None at the end)."""
        text = src.text
        while True:
            pos = _SEPARATORS.match(text, pos, end).end()
            if pos >= end:
                return None, pos
            if text[pos] == "#":
                pos = _skip_comment(text, pos, end)
                continue
            # a run of simple words is split in one go (most of a generated job)
            words = []
            while True:
                m = _FAST_RUN.match(text, pos, end)
                if m is not None:
                    for t in _FAST_TOKEN.finditer(text, pos, m.end()):
                        w = t.group()
                        a = t.start()
                        if w[0] == "{":
                            words.append(Word(BRACE, w[1:-1], src, a, a + 1, a + len(w) - 1))
                        else:
                            words.append(Word(BARE, w, src, a, a, a + len(w)))
                    pos = m.end()
                if pos >= end:
                    break
                c = text[pos]
                if c == "\n" or c == ";":
                    pos += 1
                    break
                if c in " \t\r\f\v" or c == "\\" and text[pos + 1: pos + 2] in ("\n", "\r"):
                    pos = _BLANKS.match(text, pos, end).end()
                    if pos >= end:
                        break
                    c = text[pos]
                    if c == "\n" or c == ";":
                        pos += 1
                        break
                word, pos = self._word(src, pos, end)
                words.append(word)
            if words:
                return words, pos

    def _word(self, src: Source, pos: int, end: int, in_bracket: bool = False) -> tuple[Word, int]:
        text = src.text
        c = text[pos]
        if c == "{":
            close = self._matching_brace(src, pos, end)
            after = close + 1
            if after < end and text[after] not in _WORD_END and not (in_bracket and text[after] == "]"):
                if not (text[after] == "\\" and text[after + 1: after + 2] in ("\n", "\r")):
                    raise TclError("extra characters after close-brace", src.location(after))
            if close - pos > _LAZY_BRACES:
                return _LongBraceWord(BRACE, None, src, pos, pos + 1, close), after
            raw = text[pos + 1:close]
            value = braced_value(raw)
            return Word(BRACE, value, src, pos, pos + 1, close), after
        if c == '"':
            m = _QUOTE_PLAIN.match(text, pos + 1, end)
            if m:
                close = m.end() - 1
                value = text[pos + 1:close]
            else:
                value, close = self._substitute(src, pos + 1, end, stop='"')
                if close >= end or text[close] != '"':
                    raise TclError("missing close-quote", src.location(pos))
            after = close + 1
            if after < end and text[after] not in _WORD_END and not (in_bracket and text[after] == "]"):
                if not (text[after] == "\\" and text[after + 1: after + 2] in ("\n", "\r")):
                    raise TclError("extra characters after close-quote", src.location(after))
            return Word(QUOTE, value, src, pos, pos + 1, close), after
        m = _BARE_PLAIN.match(text, pos, end)
        if m and (m.end() >= end or text[m.end()] in _WORD_END or (in_bracket and text[m.end()] == "]")):
            return Word(BARE, m.group(), src, pos, pos, m.end()), m.end()
        value, stop = self._substitute(src, pos, end, stop=None, in_bracket=in_bracket)
        return Word(BARE, value, src, pos, pos, stop), stop

    def _matching_brace(self, src: Source, pos: int, end: int) -> int:
        closers = src.closers
        close = closers.get(pos)
        if close is not None:
            return close
        text = src.text
        # Fastest path: braces nested up to five deep (a generated job's
        # outer -subtasks body), matched by the regex engine with possessive
        # runs; valid when no backslash (which may escape a brace) is inside.
        m = _NESTED_BRACES.match(text, pos, end)
        if m is not None and text.find("\\", pos, m.end()) < 0:
            closers[pos] = m.end() - 1
            return m.end() - 1
        # Fast path: walk the closing braces and count the openers before
        # each with str.count (C speed); the first } where the counts balance
        # is the match, unless a backslash (which may escape a brace) lies
        # before it.  A generated job's outer -subtasks body is megabytes
        # long; this keeps its scan to a fraction of a second.
        opens, closes, prev, k = 1, 0, pos + 1, pos
        while True:
            k = text.find("}", k + 1, end)
            if k < 0:
                break
            opens += text.count("{", prev, k)
            closes += 1
            prev = k + 1
            if opens - closes >= MAX_DEPTH:
                break  # nested (maybe) too deep: the exact scan below decides, and says where
            if opens == closes:
                if text.find("\\", pos, k) < 0:
                    closers[pos] = k
                    return k
                break
        # backslashes escape braces: scan token by token, pairing every brace
        stack: list[int] = []
        for m in _BRACE_TOKENS.finditer(text, pos, end):
            t = m.group()
            if t == "{":
                stack.append(m.start())
                if len(stack) > MAX_DEPTH:
                    # refused here, before each level copies the text inside it
                    raise too_deep(src.location(m.start()))
            elif t == "}":
                opened = stack.pop()
                closers[opened] = m.start()
                if not stack:
                    return m.start()
        raise TclError("missing close-brace", src.location(pos),
                       hint="every { needs a matching } (a \\{ does not count)")

    def _substitute(self, src: Source, pos: int, end: int, *, stop: str | None,
                    in_bracket: bool = False) -> tuple[str, int]:
        """Substitute from pos until `stop` (a quote) or, for bare words, a word end."""
        text = src.text
        out: list[str] = []
        size = 0
        i = pos
        while i < end:
            c = text[i]
            if stop is not None and c == stop:
                break
            if stop is None and (c in _WORD_END or (in_bracket and c == "]")):
                break
            if c == "\\":
                s, i = backslash(text, i)
                if i > end:
                    i = end
                out.append(s)
            elif c == "$" or c == "[":
                at = i
                s, i = self._variable(src, i, end) if c == "$" else self._bracket(src, i, end)
                size += len(s)
                if size > MAX_VALUE:
                    raise too_big(src.location(at))
                out.append(s)
            else:
                j = i + 1
                while j < end and text[j] not in '\\$[]"; \t\r\f\v\n':
                    j += 1
                if j == i + 1 and c in '"]; \t\r\f\v\n':
                    out.append(c)
                    i += 1
                    continue
                out.append(text[i:j])
                size += j - i
                i = j
        if size > MAX_VALUE:
            raise too_big(src.location(pos))
        return "".join(out), i

    def _variable(self, src: Source, i: int, end: int) -> tuple[str, int]:
        text = src.text
        j = i + 1
        if j < end and text[j] == "{":
            k = text.find("}", j, end)
            if k < 0:
                raise TclError("missing close-brace for variable name", src.location(i))
            name, after = text[j + 1:k], k + 1
        else:
            m = _VARNAME.match(text, j, end)
            if not m:
                return "$", j
            name, after = m.group(), m.end()
            if after < end and text[after] == "(":
                k = text.find(")", after, end)
                if k >= 0:
                    index, _ = self._substitute(Source(text[after + 1:k], src.file), 0, k - after - 1, stop=None)
                    name, after = f"{name}({index})", k + 1
        try:
            return self.vars[name], after
        except KeyError:
            raise TclError(f'can\'t read "{name}": no such variable', src.location(i),
                           hint="set it first (set or Assign), or put the word in braces to keep the $ literally") from None

    def _bracket(self, src: Source, i: int, end: int) -> tuple[str, int]:
        """[command ...]: parse up to the matching ], run it, return its result."""
        self.enter(lambda: src.location(i))
        try:
            return self._bracket_body(src, i, end)
        finally:
            self.depth -= 1

    def _bracket_body(self, src: Source, i: int, end: int) -> tuple[str, int]:
        text = src.text
        pos = i + 1
        result = ""
        while True:
            pos = _SEPARATORS.match(text, pos, end).end()
            if pos >= end:
                raise TclError("missing close-bracket", src.location(i))
            if text[pos] == "]":
                return result, pos + 1
            words: list[Word] = []
            while True:
                pos = _BLANKS.match(text, pos, end).end()
                if pos >= end:
                    raise TclError("missing close-bracket", src.location(i))
                c = text[pos]
                if c == "]":
                    break
                if c in "\n;":
                    pos += 1
                    break
                word, pos = self._word(src, pos, end, in_bracket=True)
                words.append(word)
            if words:
                result = self.invoke(words)


def _skip_comment(text: str, pos: int, end: int) -> int:
    """A comment runs to the end of the line; backslash-newline continues it."""
    while True:
        k = text.find("\n", pos, end)
        if k < 0:
            return end
        j = k - 1
        backslashes = 0
        while j >= pos and text[j] == "\\":
            backslashes += 1
            j -= 1
        if text[k - 1: k] == "\r":
            j = k - 2
            backslashes = 0
            while j >= pos and text[j] == "\\":
                backslashes += 1
                j -= 1
        if backslashes % 2 == 0:
            return k + 1
        pos = k + 1


_REFUSED = {"exec", "open", "source", "proc", "eval", "uplevel", "upvar", "socket", "file", "cd", "exit",
            "load", "package", "interp", "namespace", "rename", "glob", "pwd", "after", "vwait", "update",
            "fconfigure", "close", "gets", "read", "puts", "trace", "auto_load", "history", "subst", "apply",
            "coroutine", "yield", "chan", "zlib", "encoding", "info", "global", "variable", "time", "clock",
            "while", "for"}


def _unknown_command_text(name: str) -> str:
    if name in _REFUSED:
        return (f'the Tcl command "{name}" is not allowed in a job script '
                "(job scripts are parsed, never run, on the spooling host)")
    return f'unknown command "{name}"'


# --- whitelisted built-ins -----------------------------------------------------------


def _args(words: list[Word], lo: int, hi: int | None, usage: str) -> list[str]:
    n = len(words) - 1
    if n < lo or (hi is not None and n > hi):
        raise TclError(f'wrong # args: should be "{words[0].value} {usage}"'.rstrip() + "", words[0].where)
    return [w.value for w in words[1:]]


def _set(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 2, "varName ?newValue?")
    if len(a) == 2:
        it.vars[a[0]] = a[1]
        return a[1]
    if a[0] not in it.vars:
        raise TclError(f'can\'t read "{a[0]}": no such variable', words[1].where)
    return it.vars[a[0]]


def _unset(it: Interp, words: list[Word]) -> str:
    for w in words[1:]:
        it.vars.pop(w.value, None)
    return ""


def _incr(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 2, "varName ?increment?")
    by = _int(a[1], words[2]) if len(a) == 2 else 1
    value = _int(it.vars.get(a[0], "0"), words[1]) + by
    it.vars[a[0]] = str(value)
    return str(value)


def _append(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, None, "varName ?value ...?")
    old = it.vars.get(a[0], "")
    if len(old) + sum(map(len, a[1:])) > MAX_VALUE:
        raise too_big(words[0].where)
    it.vars[a[0]] = old + "".join(a[1:])
    return it.vars[a[0]]


def _lappend(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, None, "varName ?value ...?")
    old = it.vars.get(a[0], "")
    extra = _list_value(a[1:], words[0])
    if len(old) + 1 + len(extra) > MAX_VALUE:
        raise too_big(words[0].where)
    it.vars[a[0]] = f"{old} {extra}".strip() if old else extra
    return it.vars[a[0]]


def _list_value(items, w: Word) -> str:
    """list_string(items), refused (at w) once it would pass MAX_VALUE characters."""
    out: list[str] = []
    size = 0
    for x in items:
        q = quote_element(x)
        size += len(q) + 1
        if size > MAX_VALUE + 1:
            raise too_big(w.where)
        out.append(q)
    return " ".join(out)


def _list(it: Interp, words: list[Word]) -> str:
    return _list_value((w.value for w in words[1:]), words[0])


def _concat(it: Interp, words: list[Word]) -> str:
    parts = [v for v in (w.value.strip() for w in words[1:]) if v]
    if sum(map(len, parts)) + len(parts) > MAX_VALUE + 1:
        raise too_big(words[0].where)
    return " ".join(parts)


def _llength(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 1, "list")
    return str(len(split_list(a[0], lambda: words[1].where)))


def _index(text: str, n: int, w: Word) -> int:
    t = text.strip()
    m = re.fullmatch(r"end(?:([+-])(\d+))?|(-?\d+)(?:([+-])(\d+))?", t)
    if not m:
        raise TclError(f'bad index "{text}": must be integer?[+-]integer? or end?[+-]integer?', w.where)
    if m.group(3) is not None:
        v = int(m.group(3))
        if m.group(4):
            v = v + int(m.group(5)) if m.group(4) == "+" else v - int(m.group(5))
        return v
    v = n - 1
    if m.group(1):
        v = v + int(m.group(2)) if m.group(1) == "+" else v - int(m.group(2))
    return v


def _lindex(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 2, "list ?index?")
    items = split_list(a[0], lambda: words[1].where)
    if len(a) == 1:
        return a[0]
    i = _index(a[1], len(items), words[2])
    return items[i] if 0 <= i < len(items) else ""


def _lrange(it: Interp, words: list[Word]) -> str:
    a = _args(words, 3, 3, "list first last")
    items = split_list(a[0], lambda: words[1].where)
    lo, hi = _index(a[1], len(items), words[2]), _index(a[2], len(items), words[3])
    return _list_value(items[max(lo, 0): hi + 1], words[0])


def _join(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 2, "list ?joinString?")
    sep = a[1] if len(a) == 2 else " "
    items = split_list(a[0], lambda: words[1].where)
    if sum(map(len, items)) + len(sep) * max(len(items) - 1, 0) > MAX_VALUE:
        raise too_big(words[0].where)
    return sep.join(items)


def _split(it: Interp, words: list[Word]) -> str:
    a = _args(words, 1, 2, "string ?splitChars?")
    chars = a[1] if len(a) == 2 else " \t\n\r"
    if chars == "":
        return _list_value(a[0], words[0])
    return _list_value(re.split("[" + re.escape(chars) + "]", a[0]), words[0])


def _int(text: str, w: Word) -> int:
    try:
        return int(text.strip(), 0) if not re.fullmatch(r"\s*[+-]?0\d+\s*", text) else int(text.strip(), 8)
    except ValueError:
        raise TclError(f'expected integer but got "{text}"', w.where) from None


def _foreach(it: Interp, words: list[Word]) -> str:
    if len(words) < 4 or len(words) % 2:
        raise TclError('wrong # args: should be "foreach varList list ?varList list ...? command"', words[0].where)
    pairs = [(split_list(words[i].value, lambda i=i: words[i].where), split_list(words[i + 1].value))
             for i in range(1, len(words) - 1, 2)]
    body = words[-1]
    rounds = max((len(vals) + len(names) - 1) // len(names) if names else 0 for names, vals in pairs)
    for r in range(rounds):
        for names, vals in pairs:
            for k, name in enumerate(names):
                idx = r * len(names) + k
                it.vars[name] = vals[idx] if idx < len(vals) else ""
        it.eval_word(body)
    return ""


def _if(it: Interp, words: list[Word]) -> str:
    i = 1
    while i < len(words):
        cond = words[i]
        i += 1
        if i < len(words) and words[i].value == "then":
            i += 1
        if i >= len(words):
            raise TclError("wrong # args: no script following expression", cond.where)
        body = words[i]
        i += 1
        if _truthy(expr(it, cond), cond):
            return it.eval_word(body)
        if i >= len(words):
            return ""
        if words[i].value == "elseif":
            i += 1
            continue
        if words[i].value == "else":
            i += 1
        if i != len(words) - 1:
            raise TclError('wrong # args: extra words after "else" clause in "if" command', words[i].where)
        return it.eval_word(words[i])
    return ""


def _truthy(v: str, w: Word) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    try:
        return float(s) != 0
    except ValueError:
        raise TclError(f'expected boolean value but got "{v}"', w.where) from None


def _string(it: Interp, words: list[Word]) -> str:
    if len(words) < 2:
        raise TclError('wrong # args: should be "string subcommand ?arg ...?"', words[0].where)
    sub = words[1].value
    a = [w.value for w in words[2:]]

    def need(lo: int, hi: int | None = None) -> None:
        if len(a) < lo or (hi is not None and len(a) > hi):
            raise TclError(f'wrong # args to "string {sub}"', words[0].where)

    if sub == "length":
        need(1, 1)
        return str(len(a[0]))
    if sub in ("tolower", "toupper", "totitle"):
        need(1, 1)
        s = {"tolower": a[0].lower, "toupper": a[0].upper, "totitle": lambda: a[0][:1].upper() + a[0][1:].lower()}[sub]()
        if len(s) > MAX_VALUE:  # a few characters grow (ß -> SS): at most 3 times the input
            raise too_big(words[0].where)
        return s
    if sub in ("trim", "trimleft", "trimright"):
        need(1, 2)
        chars = a[1] if len(a) == 2 else None
        return {"trim": a[0].strip, "trimleft": a[0].lstrip, "trimright": a[0].rstrip}[sub](chars)
    if sub == "range":
        need(3, 3)
        lo, hi = _index(a[1], len(a[0]), words[3]), _index(a[2], len(a[0]), words[4])
        return a[0][max(lo, 0): hi + 1]
    if sub == "index":
        need(2, 2)
        i = _index(a[1], len(a[0]), words[3])
        return a[0][i] if 0 <= i < len(a[0]) else ""
    if sub == "repeat":
        need(2, 2)
        n = _int(a[1], words[3])
        if n * len(a[0]) > MAX_VALUE:
            raise too_big(words[0].where)
        return a[0] * max(n, 0)
    if sub in ("equal", "compare"):
        nocase = "-nocase" in a
        rest = [x for x in a if x != "-nocase"]
        if len(rest) != 2:
            raise TclError(f'wrong # args to "string {sub}"', words[0].where)
        x, y = (rest[0].lower(), rest[1].lower()) if nocase else rest
        if sub == "equal":
            return "1" if x == y else "0"
        return "0" if x == y else ("-1" if x < y else "1")
    if sub in ("first", "last"):
        need(2, 2)
        return str(a[1].find(a[0]) if sub == "first" else a[1].rfind(a[0]))
    if sub == "match":
        import fnmatch

        nocase = "-nocase" in a
        rest = [x for x in a if x != "-nocase"]
        if len(rest) != 2:
            raise TclError('wrong # args to "string match"', words[0].where)
        pat, s = rest
        if nocase:
            pat, s = pat.lower(), s.lower()
        return "1" if fnmatch.fnmatchcase(s, pat) else "0"
    if sub == "map":
        need(2, 2)
        pairs = split_list(a[0], lambda: words[2].where)
        if len(pairs) % 2:
            raise TclError("char map list unbalanced", words[2].where)
        s = a[1]
        mapping = dict(zip(pairs[::2], pairs[1::2]))
        if not mapping:
            return s
        pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True) if k))
        size = len(s)

        def replace(m: re.Match) -> str:
            nonlocal size
            new = mapping[m.group()]
            size += len(new) - (m.end() - m.start())
            if size > MAX_VALUE:
                raise too_big(words[0].where)
            return new

        return pattern.sub(replace, s)
    raise TclError(f'unknown or unsupported subcommand "string {sub}" in a job script', words[1].where)


# --- format -------------------------------------------------------------------------

_FORMAT_SPEC = re.compile(r"%([-+ 0#]*)(\*|\d+)?(?:\.(\*|\d+))?([dioxXeEfgGsc%u])")


def _format(it: Interp, words: list[Word]) -> str:
    if len(words) < 2:
        raise TclError('wrong # args: should be "format formatString ?arg ...?"', words[0].where)
    fmt = words[1].value
    args = words[2:]
    k = 0

    def next_arg() -> Word:
        nonlocal k
        if k >= len(args):
            raise TclError("not enough arguments for all format specifiers", words[1].where)
        k += 1
        return args[k - 1]

    out = []
    size = 0
    pos = 0
    for m in _FORMAT_SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()])
        size += m.start() - pos
        pos = m.end()
        flags, width, prec, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(_int(next_arg().value, words[1]))
        if prec == "*":
            prec = str(_int(next_arg().value, words[1]))
        for n in (width, prec):
            if n is not None and (len(n) > 12 or abs(int(n)) > MAX_VALUE):
                raise too_big(words[1].where)
        if prec is not None and int(prec) < 0:
            raise TclError(f'bad precision "{prec}" in format string', words[1].where)
        spec = "%" + flags + (width or "") + ("." + prec if prec is not None else "")
        w = next_arg()
        text = _format_one(spec, conv, w)
        size += len(text)
        if size > MAX_VALUE:
            raise too_big(words[0].where)
        out.append(text)
    out.append(fmt[pos:])
    return "".join(out)


def _format_one(spec: str, conv: str, w: Word) -> str:
    """One %-conversion of format; a value it cannot take is an error at the value's place."""
    value = _number(w.value, w) if conv != "s" else w.value
    if conv in "diouxXc" and isinstance(value, float):
        if not math.isfinite(value):
            raise TclError(f'expected integer but got "{w.value}"', w.where)
        value = int(value)
    if conv == "c":
        if not 0 <= value <= 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise TclError(f"character code {value} is not a Unicode character (0 to 0x10FFFF, "
                           "no surrogates)", w.where)
        return chr(value)
    try:
        if conv in "diouxX":
            return (spec + ("d" if conv in "diu" else conv)) % value
        if conv in "eEfgG":
            return (spec + conv) % float(value)
        return (spec + "s") % value
    except (ValueError, OverflowError) as exc:  # a number too large to convert or show
        raise TclError(f'cannot format "{w.value}" with %{conv}: {exc}', w.where) from None


def _number(text: str, w: Word) -> float | int:
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise TclError(f'expected a number but got "{text}"', w.where) from None


# --- expr ------------------------------------------------------------------------------

_EXPR_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>(?:0[xX][0-9a-fA-F]+)|(?:\d+\.?\d*(?:[eE][+-]?\d+)?)|(?:\.\d+(?:[eE][+-]?\d+)?))
     |(?P<op>\*\*|==|!=|<=|>=|&&|\|\||<<|>>|eq\b|ne\b|in\b|ni\b|[-+*/%<>!~&|^?:(),])
     |(?P<func>[A-Za-z_][A-Za-z0-9_]*)\s*(?=\()
     |(?P<word>[A-Za-z_][A-Za-z0-9_.]*)
     |"(?P<str>(?:[^"\\]|\\.)*)"
     |\{(?P<brace>[^{}]*)\}
    )""", re.X | re.S)

_FUNCS: dict[str, Callable] = {
    "abs": abs, "int": lambda x: int(x), "double": float, "round": lambda x: int(math.copysign(math.floor(abs(x) + 0.5), x)),  # halves away from zero, as Tcl
    "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt, "pow": pow, "min": min, "max": max,
    "wide": lambda x: int(x), "entier": lambda x: int(x), "fmod": math.fmod, "exp": math.exp,
    "log": math.log, "log10": math.log10, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "hypot": math.hypot, "bool": lambda x: int(bool(x)),
}


def expr(it: Interp, word_or_words) -> str:
    """Tcl's expr: substitute, then evaluate arithmetic and comparisons safely."""
    words = word_or_words if isinstance(word_or_words, list) else [word_or_words]
    w0 = words[0]
    text = " ".join(w.value for w in words)
    if "$" in text or "[" in text or "\\" in text:
        loc = w0.where.location()
        src = Source(text, loc.file, loc.line, loc.col + (w0.kind != BARE))
        text, _ = it._substitute(src, 0, len(text), stop="\0")
    try:
        return _format_number(_ExprParser(text, w0, it).parse())
    except ValueError:  # an integer with more digits than Python converts
        raise TclError("number too large in expression (more than 4300 digits)", w0.where) from None


def _expr_cmd(it: Interp, words: list[Word]) -> str:
    if len(words) < 2:
        raise TclError('wrong # args: should be "expr arg ?arg ...?"', words[0].where)
    return expr(it, words[1:])


def _format_number(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e16:
            return f"{v:.1f}"
        return repr(v)
    return str(v)


class _ExprParser:
    def __init__(self, text: str, word: Word, it: Interp):
        self.word = word
        self.it = it
        self.toks: list[tuple[str, object]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _EXPR_TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise TclError(f'syntax error in expression "{text}"', word.where)
            pos = m.end()
            if m.group("num") is not None:
                s = m.group("num")
                self.toks.append(("num", int(s, 0) if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", s) else float(s)))
            elif m.group("op") is not None:
                self.toks.append(("op", m.group("op")))
            elif m.group("func") is not None:
                self.toks.append(("func", m.group("func")))
            elif m.group("word") is not None:
                w = m.group("word")
                if w in ("true", "yes", "on"):
                    self.toks.append(("num", 1))
                elif w in ("false", "no", "off"):
                    self.toks.append(("num", 0))
                else:
                    self.toks.append(("str", w))
            elif m.group("str") is not None:
                self.toks.append(("str", unescape(m.group("str"))))
            else:
                self.toks.append(("str", m.group("brace")))
        self.i = 0
        self.text = text

    def error(self, msg: str = "") -> TclError:
        return TclError(f'syntax error in expression "{self.text}"{": " + msg if msg else ""}', self.word.where)

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise self.error(f"expected {value!r}" if value else "unexpected end")
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            raise self.error("empty expression")
        v = self.ternary()
        if self.i != len(self.toks):
            raise self.error(f"unexpected {self.toks[self.i][1]!r}")
        return v

    def ternary(self):
        # every nested level (parentheses, function arguments, ?: branches) passes here
        self.it.enter(self.word.where)
        try:
            cond = self.binary(0)
            if self.peek() == ("op", "?"):
                self.take()
                a = self.ternary()
                self.take(":")
                b = self.ternary()
                return a if self._bool(cond) else b
            return cond
        finally:
            self.it.depth -= 1

    _PREC = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!=", "eq", "ne", "in", "ni"),
             ("<", "<=", ">", ">="), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int):
        if level >= len(self._PREC):
            return self.power()
        left = self.binary(level + 1)
        ops = self._PREC[level]
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            op = self.take()[1]
            if op == "&&":
                right = self.binary(level + 1)
                left = int(self._bool(left) and self._bool(right))
            elif op == "||":
                right = self.binary(level + 1)
                left = int(self._bool(left) or self._bool(right))
            else:
                left = self._apply(op, left, self.binary(level + 1))
        return left

    def power(self):
        base = self.unary()
        if self.peek() == ("op", "**"):
            self.take()
            self.it.enter(self.word.where)
            try:
                exp = self.power()
            finally:
                self.it.depth -= 1
            return self._apply("**", base, exp)
        return base

    def unary(self):
        tok = self.peek()
        if tok[0] == "op" and tok[1] in ("-", "+", "!", "~"):
            self.take()
            self.it.enter(self.word.where)
            try:
                v = self.unary()
            finally:
                self.it.depth -= 1
            if tok[1] == "!":
                return int(not self._bool(v))
            v = self._num(v)
            return -v if tok[1] == "-" else (~int(v) if tok[1] == "~" else v)
        return self.primary()

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            return value
        if kind == "str":
            return value
        if kind == "func":
            fn = _FUNCS.get(str(value))
            if fn is None:
                raise TclError(f'unknown math function "{value}"', self.word.where)
            self.take("(")
            args = []
            if self.peek() != ("op", ")"):
                args.append(self._num(self.ternary()))
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self._num(self.ternary()))
            self.take(")")
            try:
                return fn(*args)
            except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
                raise TclError(f"math error in {value}(): {exc}", self.word.where) from None
        if kind == "op" and value == "(":
            v = self.ternary()
            self.take(")")
            return v
        raise self.error(f"unexpected {value!r}")

    def _num(self, v):
        if isinstance(v, (int, float)):
            return v
        try:
            return int(v, 0)
        except (ValueError, TypeError):
            try:
                return float(v)
            except (ValueError, TypeError):
                raise TclError(f'can\'t use non-numeric string "{v}" as operand', self.word.where) from None

    def _bool(self, v) -> bool:
        if isinstance(v, str):
            return _truthy(v, self.word)
        return v != 0

    def _apply(self, op: str, a, b):
        if op in ("eq", "ne"):
            r = str(a if not isinstance(a, float) else _format_number(a)) == str(b if not isinstance(b, float) else _format_number(b))
            return int(r if op == "eq" else not r)
        if op in ("in", "ni"):
            r = str(a) in split_list(str(b))
            return int(r if op == "in" else not r)
        if op in ("==", "!=", "<", "<=", ">", ">=") and (isinstance(a, str) or isinstance(b, str)):
            try:
                a, b = self._num(a), self._num(b)
            except TclError:
                a, b = str(a), str(b)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            r = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
            return int(r)
        a, b = self._num(a), self._num(b)
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                if isinstance(a, int) and isinstance(b, int):
                    return a // b
                return a / b
            if op == "%":
                if not (isinstance(a, int) and isinstance(b, int)):
                    raise TclError("can't use floating-point value as operand of \"%\"", self.word.where)
                return a % b  # the sign of the divisor, as in Tcl (and Python)
            if op == "**":
                if isinstance(b, int) and abs(b) > 10000:
                    raise TclError("exponent too large", self.word.where)
                if isinstance(a, int) and isinstance(b, int) and a.bit_length() * b > 100_000:
                    raise TclError("integer result too large", self.word.where)
                return a ** b
            if op in ("<<", ">>", "&", "|", "^"):
                a, b = int(a), int(b)
                if op == "<<" and b > 4096:
                    raise TclError("shift too large", self.word.where)
                return {"<<": a << b, ">>": a >> b, "&": a & b, "|": a | b, "^": a ^ b}[op]
        except ZeroDivisionError:
            raise TclError("divide by zero", self.word.where) from None
        raise self.error(f"unknown operator {op}")


_BUILTINS: dict[str, Handler] = {
    "set": _set, "unset": _unset, "incr": _incr, "append": _append, "lappend": _lappend,
    "list": _list, "concat": _concat, "llength": _llength, "lindex": _lindex, "lrange": _lrange,
    "join": _join, "split": _split, "format": _format, "string": _string, "expr": _expr_cmd,
    "foreach": _foreach, "if": _if,
}
