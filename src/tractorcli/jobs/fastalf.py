"""A fast path for the plain bulk of job scripts: Task, Instance, RemoteCmd and Cmd.

Generated jobs are mostly thousands of commands like::

    Task {Frame 12} -cmds {
        RemoteCmd {prman -Progress frame.0012.rib} -service {PixarRender}
    }

with nothing for Tcl to substitute.  The generic interpreter (`tcl.Interp`)
handles them correctly but pays for its generality on every word.  Here
one regular expression recognizes such a command whole, its words simple
(a bare word with nothing to substitute, or braces with no braces inside)
or blocks of simple commands, and the operator is built straight from the
text.

The fast path only answers for what it fully understands.  A command it
does not recognize (a comment, a backslash, a `$` or `[` outside braces,
deeper nesting, another operator, an unknown option, a value that does
not convert) is handed, before any side effect, to the generic
interpreter, which evaluates it in its place in the script and gives the
exact error or warning.  Tests parse scripts both ways and compare the
jobs, their warnings and their positions.
"""

from __future__ import annotations

import dataclasses
import re
from sys import intern
from typing import Any, Protocol

from .alf_options import CMD_OPTS, TASK_OPTS
from .model import Command, Instance, JobError, Task
from .tcl import BARE, BRACE, MAX_DEPTH, Source, SourcePos, TclError, Word, split_list



class BodyParser(Protocol):
    """What a FastBody asks of the parser evaluating the rest of the script (alfred's)."""

    interp: Any

    def convert(self, op: str, kind: str, opt: Word, value: Word) -> Any: ...


_BL = r"[ \t\r\f\v]"
# a simple word: braces with no braces or backslash inside, or a bare word
# with nothing to substitute (no $ [ \, not starting with a quote or brace)
_W = r'(?:\{[^{}\\]*\}|[^\s{};"$\[\\][^\s{};$\[\\]*)'
# a simple command (a # in command position starts a comment: not simple)
_CMD = rf"(?!#){_W}(?:{_BL}+{_W})*"
# a block of simple commands
_BODY = rf"\{{[\s;]*(?:{_CMD}{_BL}*(?:[\n;][\s;]*|(?=\}})))*\}}"
# a command whose words are simple words or blocks of simple commands,
# ending at a newline, a semicolon or the end of the body
_TOP = re.compile(rf"(?!#){_W}(?:{_BL}+(?:{_W}|{_BODY}))*(?={_BL}*(?:[\n;]|\Z))")
_TOP_WORD = re.compile(rf"{_W}|{_BODY}")
_INNER_CMD = re.compile(_CMD)
_INNER_WORD = re.compile(_W)
_SEPARATORS = re.compile(r"[\s;]*")
# The commonest command of all, matched whole: a Task with options whose
# -cmds holds one RemoteCmd or Cmd with a one-word argv and options, with
# the separators before it, so that a scanner (re's `scanner(...).match`,
# each match anchored where the last one ended) walks a run of such tasks in
# one C loop.  Groups: the word Task (its place), title, options before
# -cmds, operator, argv, its options, options after.
_OPTS = rf"((?:{_BL}+-[A-Za-z]+{_BL}+{_W})*)"
_SEP_TASK_ONE_CMD = re.compile(
    rf"[\s;]*(Task){_BL}+({_W}){_OPTS}{_BL}+-cmds{_BL}+\{{\s*(RemoteCmd|Cmd){_BL}+({_W}){_OPTS}\s*\}}{_OPTS}"
    rf"(?={_BL}*(?:[\n;]|\Z))")
_OPT_PAIRS = re.compile(rf"(-[A-Za-z]+){_BL}+({_W})")


# distinct option texts remembered per body: a job whose every task has its
# own -id gains nothing from remembering them
_KW_CACHE = 256


def _middle(cls: type, first: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """(name, default) of the fields of `cls` after `first` and before `where` (its last)."""
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if names[:len(first)] != first or names[-1] != "where":
        raise AssertionError(f"{cls.__name__}'s fields changed: {names}")  # (at import: the tests see it)
    return tuple((f.name, f.default) for f in fields[len(first):-1])


# a one-command Task is built positionally: Task(title, (), (cmd,), *middle, where)
_TASK_MIDDLE = _middle(Task, ("title", "subtasks", "cmds"))
_CMD_MIDDLE = _middle(Command, ("argv", "local"))


class _Bail(Exception):
    """The fast path does not take this command; the generic interpreter will."""


def _value(w: str) -> str:
    # braced words hold no backslashes here, so their value is their inside
    return w[1:-1] if w[:1] == "{" else w


class FastBody:
    """Evaluates one -subtasks or -cmds body, command by command."""

    def __init__(self, parser: BodyParser, src: Source):
        self.p = parser
        self.src = src
        self.text = src.text
        self.task_opts = TASK_OPTS
        self.cmd_opts = CMD_OPTS
        # option texts of one-command Tasks -> the fields they set, and
        # launch expressions' words before the last (one_cmd_tasks)
        self.task_kw: dict[str, tuple] = {}
        self.cmd_kw: dict[str, tuple] = {}
        self.argv_heads: dict[str, tuple[str, ...]] = {}

    def run(self, kind: str, word: Word, bucket: list) -> None:
        """Fill `bucket` (the parser's current context) with the body's nodes or commands."""
        interp = self.p.interp
        interp.enter(word.where)
        try:
            text, src = self.text, self.src
            nodes = kind == "nodes"
            build = self.node if nodes else self.command
            # a Task's -cmds block is one level deeper: at the limit the generic path says so
            one_cmd_tasks = nodes and interp.depth < MAX_DEPTH
            pos, end = word.start, word.end
            while True:
                if one_cmd_tasks:
                    pos = self.one_cmd_tasks(bucket, pos, end)
                pos = _SEPARATORS.match(text, pos, end).end()
                if pos >= end:
                    return
                m = _TOP.match(text, pos, end)
                if m is not None:
                    try:
                        bucket.append(build(m))
                        pos = m.end()
                        continue
                    except _Bail:
                        pass
                words, pos = interp.next_command(src, pos, end)
                if words is None:
                    return
                interp.invoke(words)
        finally:
            interp.depth -= 1

    def one_cmd_tasks(self, bucket: list, pos: int, end: int) -> int:
        """Take the run of commonest Tasks (one RemoteCmd or Cmd, see _SEP_TASK_ONE_CMD) that starts at
        `pos`; return where the run stops: the end of the last one taken, or the start of a Task
        the fast path leaves to the general one."""
        src = self.src
        append = bucket.append
        task_opts = self.task_opts
        task_kw, cmd_kw, heads = self.task_kw, self.cmd_kw, self.argv_heads
        for m in iter(_SEP_TASK_ONE_CMD.scanner(self.text, pos, end).match, None):
            title, before, op, argv_word, cmd_opts, after = m.group(2, 3, 4, 5, 6, 7)
            a = m.start(1)
            if title[0] == "-" and title in task_opts:
                return a  # `Task -service {x} -cmds ...`: no title; the general path
            argv_text = argv_word[1:-1] if argv_word[0] == "{" else argv_word
            if argv_word[0] == "-" or '"' in argv_text:
                return a
            # The program and its flags repeat in every task of a job: all but the last word
            # (a frame's file, say) are taken interned from the words before it last time.
            # Printable text has no whitespace but spaces, so split() splits at spaces.
            head, _, last = argv_text.rpartition(" ")
            argv = heads.get(head) if last and argv_text.isprintable() else None
            if argv is not None:
                argv += (last,)
            else:
                argv = self.argv(argv_text, head if last and argv_text.isprintable() else None)
                if not argv:
                    return a
            try:
                cmid = cmd_kw.get(cmd_opts)
                if cmid is None:
                    cmid = self.command_fields(op, cmd_opts, a)
                opts = before + after if after else before
                tmid = task_kw.get(opts)
                if tmid is None:
                    tmid = self.task_fields(opts, a)
            except _Bail:
                return a
            # positional arguments: twice as fast as keywords with these many fields
            cmd = Command(argv, op == "Cmd", *cmid, SourcePos(src, m.start(4)))
            append(Task(title[1:-1] if title[0] == "{" else title, (), (cmd,), *tmid, SourcePos(src, a)))
            pos = m.end()
        return pos

    def argv(self, text: str, head: str | None) -> tuple[str, ...]:
        """A one-word launch expression's words, interned; remembers `head` (the text before the
        last word, when given) -> its words, up to _KW_CACHE of them."""
        argv = tuple(map(intern, text.split()))
        if head is not None and len(self.argv_heads) < _KW_CACHE:
            self.argv_heads[head] = argv[:-1]
        return argv

    def command_fields(self, op: str, text: str, a: int) -> tuple:
        """The values of a RemoteCmd's or Cmd's fields between `local` and `where`, given its
        options (their text, as _OPTS matched it).  Remembered by text (the same few recur in
        every task), up to _KW_CACHE of them."""
        kw: dict = {}
        opts = self.cmd_opts
        for name, v in _OPT_PAIRS.findall(text):
            spec = opts.get(name)
            if spec is None:
                raise _Bail  # an unknown option (a warning)
            field, kind = spec
            if kind == "str":
                kw[field] = intern(_value(v))
            elif kind == "when":
                raise _Bail  # only postscript commands take -when: the generic path checks
            else:
                kw[field] = self.convert(op, kind, name, v, a)
        mid = tuple([kw.get(f, d) for f, d in _CMD_MIDDLE])
        if len(self.cmd_kw) < _KW_CACHE:
            self.cmd_kw[text] = mid
        return mid

    def task_fields(self, text: str, a: int) -> tuple:
        """The values of a one-command Task's fields between `cmds` and `where`, given its other
        options (see command_fields)."""
        kw: dict = {}
        opts = self.task_opts
        for name, v in _OPT_PAIRS.findall(text):
            spec = opts.get(name)
            if spec is None:
                raise _Bail
            field, kind = spec
            if kind == "str":
                if field == "title":
                    raise _Bail  # a title and -title: a warning
                kw[field] = _value(v)
            elif kind == "cmds" or kind == "nodes":
                raise _Bail  # a second -cmds, or -subtasks: the general path
            else:
                kw[field] = self.convert("Task", kind, name, v, a)
        mid = tuple([kw.get(f, d) for f, d in _TASK_MIDDLE])
        if len(self.task_kw) < _KW_CACHE:
            self.task_kw[text] = mid
        return mid

    # -- words ---------------------------------------------------------------------

    def word(self, w: str, off: int) -> Word:
        """A generic Word (to convert an option value with the parser's own rules)."""
        if w[:1] == "{":
            return Word(BRACE, w[1:-1], self.src, off, off + 1, off + len(w) - 1)
        return Word(BARE, w, self.src, off, off, off + len(w))

    def convert(self, op: str, kind: str, opt: str, v: str, off: int):
        try:
            return self.p.convert(op, kind, self.word(opt, off), self.word(v, off))
        except JobError:  # a bad value: the generic path words the error
            raise _Bail from None

    # -- operators -----------------------------------------------------------------

    def node(self, m: re.Match) -> Task | Instance:
        name = self.text[m.start():m.start() + 9]
        if name.startswith("Task") and name[4:5] in (" ", "\t"):
            return self.task(m)
        if name.startswith("Instance") and name[8:9] in (" ", "\t"):
            words = _TOP_WORD.findall(self.text, m.start(), m.end())
            if len(words) == 2:
                title = _value(words[1])
            elif len(words) == 3 and words[1] == "-title":
                title = _value(words[2])
            else:
                raise _Bail
            return Instance(title, where=SourcePos(self.src, m.start()))
        raise _Bail

    def task(self, m: re.Match) -> Task:
        a = m.start()
        found = list(_TOP_WORD.finditer(self.text, a, m.end()))
        words = [t.group() for t in found]
        n = len(words)
        start = 1
        title = None
        if n > 1:
            w1 = words[1]
            # as op_task: a bare -option followed by more words is an option, not a title
            if not (w1[:1] == "-" and n > 2 and w1 in self.task_opts):
                title = _value(w1)
                start = 2
        if (n - start) % 2:
            raise _Bail  # an option without a value: the generic path words the error
        task = Task(title="", where=SourcePos(self.src, a))
        opts = self.task_opts
        for i in range(start, n, 2):
            spec = opts.get(words[i])
            if spec is None:
                raise _Bail  # not an option, or an unknown one (a warning)
            field, kind = spec
            v = words[i + 1]
            if kind == "str":
                setattr(task, field, _value(v))
            elif kind == "cmds" or kind == "nodes":
                if v[:1] != "{" or self.p.interp.depth >= MAX_DEPTH:
                    raise _Bail  # (a block one level too deep: the generic path says so)
                off = found[i + 1].start()
                if kind == "cmds":
                    cmds = self.commands_of(off + 1, off + len(v) - 1)
                    if field == "cleanup":
                        for c in cmds:
                            c.runtype = "cleanup"
                    setattr(task, field, tuple(cmds))
                else:
                    setattr(task, field, tuple(self.nodes_of(off + 1, off + len(v) - 1)))
            else:
                setattr(task, field, self.convert("Task", kind, words[i], v, a))
        if title is not None:
            if task.title:
                raise _Bail  # both a title and -title: a warning
            task.title = title
        return task

    def nodes_of(self, start: int, end: int) -> list:
        # a block of simple commands inside a Task: Instances (Tasks there have no -cmds braces)
        return [self.node(m) for m in _INNER_CMD.finditer(self.text, start, end)]

    def commands_of(self, start: int, end: int) -> list[Command]:
        return [self.command(m, _INNER_WORD) for m in _INNER_CMD.finditer(self.text, start, end)]

    def command(self, m: re.Match, word_re: re.Pattern = _TOP_WORD) -> Command:
        text = self.text
        a = m.start()
        words = word_re.findall(text, a, m.end())
        op = words[0]
        if op == "RemoteCmd":
            local = False
        elif op == "Cmd":
            local = True
        else:
            raise _Bail
        n = len(words)
        if n < 2 or n % 2:
            raise _Bail  # no argv; argv in several words (a warning); an option without a value
        argv_text = _value(words[1])
        if words[1][:1] == "-" or n > 2 and words[2][:1] != "-":
            raise _Bail  # options first, or argv in several words
        if '"' in argv_text or "{" in argv_text:
            try:
                argv = tuple(split_list(argv_text))
            except TclError:
                raise _Bail from None
        else:
            argv = tuple(argv_text.split())
        if not argv:
            raise _Bail
        cmd = Command(argv=argv, local=local, where=SourcePos(self.src, a))
        self.command_options(cmd, op, zip(words[2::2], words[3::2]), a)
        return cmd

    def command_options(self, cmd: Command, op: str, pairs, a: int) -> None:
        """Set a RemoteCmd's or Cmd's options from (name, word) pairs."""
        opts = self.cmd_opts
        for name, v in pairs:
            spec = opts.get(name)
            if spec is None:
                raise _Bail  # not an option, or an unknown one (a warning)
            field, kind = spec
            if kind == "str":
                setattr(cmd, field, intern(_value(v)))  # -service and the like repeat in every task
            elif kind == "when":
                raise _Bail  # only postscript commands take -when: the generic path checks
            else:
                setattr(cmd, field, self.convert(op, kind, name, v, a))
