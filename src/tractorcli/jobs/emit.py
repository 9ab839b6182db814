"""The job model written as an Alfred job script, in Tractor's canonical shape.

`as_tcl(job)` gives the text the author API's `asTcl()` would write
(reference §4.8), starting with a `##AlfredToDo 3.0` line::

    Job -title {T} -service {PixarRender} -priority {100.0} -subtasks {
      Task {A task} -cmds {
        RemoteCmd {{/usr/bin/prman} {file.rib}} -service {pixarRender}
      }
    }

`task_tcl(task, indent)` and `command_tcl(cmd, indent)` write one node, for
the authoring API.

Layout choices:

* Options follow the model's field order (so `-service` before
  `-priority`, unlike §4.8's example), except that the multi-line blocks
  come last, so every scalar option of an operator stays on its
  first line: Job `-init`, `-subtasks`, `-cleanup`, `-postscript`; Task
  `-subtasks`, `-cmds`, `-cleanup`.  `-init` leads the blocks because the
  assignments it makes are meant to be seen by what follows.
* Options with their default value are left out, except Job `-title`.
  Empty blocks are left out.
* Strings are `{value}`; ints plain; floats `{repr}` (so `{100.0}` as in
  Tractor, but exact where Tractor's `%0.1f` would round); bools `1`;
  string lists `{{a} {b}}`; int lists `{1 2}`; `-id`/`-refersto` are
  one-element lists (`{name}`, or `{{a b}}` for a name with a space), which
  is how the parser reads them; `-after {MM DD HH:MM}` in local time (the
  syntax has no year, seconds or zone: those are not written); `-expand 1`
  for task definitions on stdout, `-expand {file}` otherwise; `-when
  done|error` from the runtype of post_done/post_error Cmds.

The quoting rule (`quote`): every string must read back exactly, whatever
it holds.  A string is written in braces when Tcl's brace rules leave it
untouched: its braces balance (a backslash-escaped brace does not count),
it does not end in an unpaired backslash (that would escape the closing
brace), no backslash stands before a newline (Tcl turns backslash-newline
into a space even inside braces), and it holds no carriage return or
Ctrl-Z (Tcl's `source` translates line endings and stops at Ctrl-Z, which
braces cannot protect).  Otherwise it is written unbraced with backslash
escapes, as Tcl quotes list elements: `\\{ \\} \\[ \\] \\$ \\" \\; \\\\`, a
space as `\\ `, control whitespace as `\\n \\t \\r \\v \\f`, other
whitespace and Ctrl-Z as `\\uXXXX`.  Either form has balanced braces, so it
can sit inside an enclosing `{...}` block, and reads the same as a command
word and as a list element.  The script itself therefore never holds a raw
CR or Ctrl-Z.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Iterable

from .model import Command, Instance, Job, Task
from .tcl import braceable, quote

__all__ = ["as_tcl", "task_tcl", "command_tcl", "quote", "quote_list", "quote_element"]

HEADER = "##AlfredToDo 3.0\n"

# Safe as a bare list element: no Tcl syntax (and no `#`, which may start a comment).
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@%+=~-]+\Z")


# A list element is quoted like a word: both read `{...}` literally and
# both apply backslash substitution to a bare element.
quote_element = quote


def _bare(s: str) -> str:
    """A list element, bare when nothing in it needs quoting (dirmap zones, ids)."""
    return s if _PLAIN.match(s) else quote(s)


def quote_list(items: Iterable[str]) -> str:
    """A string list in Tractor's form: `{{a} {b}}`."""
    items = tuple(items)
    if items and braceable("".join(items)):  # one look at the whole list instead of one per element
        return "{{" + "} {".join(items) + "}}"
    return "{" + " ".join([quote(x) for x in items]) + "}"


def _int_list(items: Iterable[int]) -> str:
    return "{" + " ".join([str(int(x)) for x in items]) + "}"


def _float(v: float) -> str:
    return "{" + repr(v) + "}"


def _one(s: str) -> str:
    # -id/-refersto are read as a one-element list
    return "{" + _bare(s) + "}"


def _after(t: dt.datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone()
    return "{%02d %02d %02d:%02d}" % (t.month, t.day, t.hour, t.minute)


_WHEN = {"post_done": " -when done", "post_error": " -when error"}


def _command_line(c: Command) -> str:
    p = ["Cmd " if c.local else "RemoteCmd ", quote_list(c.argv)]
    a = p.append
    w = _WHEN.get(c.runtype)
    if w:
        a(w)
    if c.service:
        a(" -service " + quote(c.service))
    if c.tags:
        a(" -tags " + quote_list(c.tags))
    if c.envkey:
        a(" -envkey " + quote_list(c.envkey))
    if c.atleast is not None:
        a(" -atleast %d" % c.atleast)
    if c.atmost is not None:
        a(" -atmost %d" % c.atmost)
    if c.samehost:
        a(" -samehost 1")
    if c.id is not None:
        a(" -id " + _one(c.id))
    if c.refersto is not None:
        a(" -refersto " + _one(c.refersto))
    if c.expand is not None:
        a(" -expand " + (quote(c.expand) if c.expand else "1"))
    if c.msg is not None:
        a(" -msg " + quote(c.msg))
    if c.retryrc:
        a(" -retryrc " + _int_list(c.retryrc))
    if c.minrunsecs is not None:
        a(" -minrunsecs " + _float(c.minrunsecs))
    if c.maxrunsecs is not None:
        a(" -maxrunsecs " + _float(c.maxrunsecs))
    if c.resumewhile:
        a(" -resumewhile " + quote_list(c.resumewhile))
    if c.resumepin:
        a(" -resumepin 1")
    if c.metadata:
        a(" -metadata " + quote(c.metadata))
    if c.metrics:
        a(" -metrics " + quote(c.metrics))
    return "".join(p)


def command_tcl(cmd: Command, indent: int = 0) -> str:
    """One `RemoteCmd`/`Cmd` line (with its newline), indented by `indent` spaces."""
    return " " * indent + _command_line(cmd) + "\n"


def _task_head(t: Task) -> str:
    p = ["Task ", quote(t.title)]
    a = p.append
    if t.id is not None:
        a(" -id " + _one(t.id))
    if t.service is not None:
        a(" -service " + quote(t.service))
    if t.atleast is not None:
        a(" -atleast %d" % t.atleast)
    if t.atmost is not None:
        a(" -atmost %d" % t.atmost)
    if t.serialsubtasks:
        a(" -serialsubtasks 1")
    if t.resumeblock:
        a(" -resumeblock 1")
    if t.chaser:
        a(" -chaser " + quote_list(t.chaser))
    if t.preview:
        a(" -preview " + quote_list(t.preview))
    if t.metadata:
        a(" -metadata " + quote(t.metadata))
    return "".join(p)


def _leaf(t: Task, indent: int) -> str:
    """A task without subtasks, whole."""
    pad = " " * indent
    text = pad + _task_head(t)
    if t.cmds or t.cleanup:
        text += _cmd_blocks(t, pad, pad + "  ")
    return text + "\n"


def _cmd_blocks(t: Task, pad: str, inner: str) -> str:
    text = ""
    if t.cmds:
        text = " -cmds {\n" + "".join([inner + _command_line(c) + "\n" for c in t.cmds]) + pad + "}"
    if t.cleanup:
        text += " -cleanup {\n" + "".join([inner + _command_line(c) + "\n" for c in t.cleanup]) + pad + "}"
    return text


def _nodes(out: list[str], nodes: tuple, indent: int) -> None:
    """Write a -subtasks list.

    An explicit stack rather than recursion (a job may nest tasks deeper
    than Python's stack allows); leaves, nearly all of a big job, are
    written in one piece without touching the stack.
    """
    write = out.append
    # each entry: an iterator over a -subtasks list, its indent, and what
    # closes the task that owns it (its command blocks and newline)
    stack: list = [(iter(nodes), indent, "")]
    while stack:
        it, ind, close = stack[-1]
        for n in it:
            if type(n) is Instance:
                write(" " * ind + "Instance " + quote(n.title) + "\n")
            elif not n.subtasks:
                write(_leaf(n, ind))
            else:
                pad = " " * ind
                write(pad + _task_head(n) + " -subtasks {\n")
                tail = pad + "}" + (_cmd_blocks(n, pad, pad + "  ") if n.cmds or n.cleanup else "") + "\n"
                stack.append((iter(n.subtasks), ind + 2, tail))
                break
        else:
            stack.pop()
            write(close)


def task_tcl(task: Task | Instance, indent: int = 0) -> str:
    """A `Task` (with everything below it) or an `Instance`, indented by `indent` spaces."""
    out: list[str] = []
    _nodes(out, (task,), indent)
    return "".join(out)


def _job_head(j: Job) -> str:
    p = ["Job -title ", quote(j.title)]
    a = p.append
    if j.after is not None:
        a(" -after " + _after(j.after))
    if j.afterjids:
        a(" -afterjids " + _int_list(j.afterjids))
    if j.atleast is not None:
        a(" -atleast %d" % j.atleast)
    if j.atmost is not None:
        a(" -atmost %d" % j.atmost)
    if j.maxactive:
        a(" -maxactive %d" % j.maxactive)
    if j.tags:
        a(" -tags " + quote_list(j.tags))
    if j.projects:
        a(" -projects " + quote_list(j.projects))
    if j.tier:
        a(" -tier " + quote(j.tier))
    if j.service:
        a(" -service " + quote(j.service))
    if j.avoid:
        a(" -avoid " + quote_list(j.avoid))
    if j.envkey:
        a(" -envkey " + quote_list(j.envkey))
    if j.priority is not None:
        a(" -priority " + _float(j.priority))
    if j.crews:
        a(" -crews " + quote_list(j.crews))
    if j.etalevel is not None:
        a(" -etalevel %d" % j.etalevel)
    if j.comment:
        a(" -comment " + quote(j.comment))
    if j.metadata:
        a(" -metadata " + quote(j.metadata))
    if j.editpolicy:
        a(" -editpolicy " + quote(j.editpolicy))
    if j.dirmaps:
        a(" -dirmaps {" + " ".join(
            ["{%s %s %s}" % (quote(m.src), quote(m.dst), _bare(m.zone)) for m in j.dirmaps]) + "}")
    if j.serialsubtasks:
        a(" -serialsubtasks 1")
    if j.paused:
        a(" -paused 1")
    if j.spoolcwd:
        a(" -spoolcwd " + quote(j.spoolcwd))
    return "".join(p)


def as_tcl(job: Job) -> str:
    """The whole job as an Alfred script (Tractor's canonical layout)."""
    out = [HEADER, _job_head(job)]
    if job.assignments:
        out.append(" -init {\n" + "".join(
            ["  Assign %s %s\n" % (quote(k), quote(v)) for k, v in job.assignments]) + "}")
    if job.subtasks:
        out.append(" -subtasks {\n")
        _nodes(out, job.subtasks, 2)
        out.append("}")
    for name, cmds in ((" -cleanup {\n", job.cleanup), (" -postscript {\n", job.postscript)):
        if cmds:
            out.append(name + "".join(["  " + _command_line(c) + "\n" for c in cmds]) + "}")
    out.append("\n")
    return "".join(out)
