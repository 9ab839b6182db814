"""The Alfred emitter: exact quoting (checked against the real tclsh), canonical shape, round trips."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from strategies import NASTY, jobs, text
from tractorcli.jobs.emit import as_tcl, command_tcl, quote, quote_list, task_tcl
from tractorcli.jobs.model import Command, DirMap, Instance, Job, Task, iter_tasks

TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh is not installed")

# Every value is printed hex-encoded (with an x so empty strings show), so
# no quoting of ours is involved in reading the answers back.
_PRELUDE = r"""
proc hx {s} { return x[binary encode hex [encoding convertto utf-8 $s]] }
"""


def _unhex(h: str) -> str:
    assert h.startswith("x"), h
    return bytes.fromhex(h[1:]).decode("utf-8")


def run_tcl(tmp_path: Path, script: str) -> list[str]:
    """Run `script` in tclsh and return its output lines."""
    # `source` would read the file translating CR and stopping at Ctrl-Z:
    # the emitter must never write them raw.
    assert "\r" not in script and "\x1a" not in script
    body = tmp_path / "script.tcl"
    body.write_text(_PRELUDE + script, encoding="utf-8", newline="")
    driver = tmp_path / "driver.tcl"
    # Not `source`: Tcl 8.6 garbles a 4-byte UTF-8 character that straddles
    # its 4 KiB channel buffer; decoding the whole file at once does not.
    driver.write_text(f"set f [open {{{body}}} rb]\nset t [encoding convertfrom utf-8 [read $f]]\n"
                      "close $f\neval $t\n", encoding="utf-8")
    r = subprocess.run([TCLSH, str(driver)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    return r.stdout.decode("ascii").splitlines()


# --- word quoting ---------------------------------------------------------------------------


def _words_script(values: list[str]) -> str:
    return "".join(f"set x {quote(v)}\nputs [hx $x]\n" for v in values)


def _lists_script(lists: list[list[str]]) -> str:
    out = []
    for items in lists:
        # inside a braced block too, as the words of a job sit inside -subtasks {...}
        out.append("if 1 {\n  set l %s\n  set o [llength $l]\n  foreach e $l { lappend o [hx $e] }\n"
                   "  puts $o\n}\n" % quote_list(items))
    return "".join(out)


@needs_tclsh
def test_nasty_words_read_back_exactly_in_tclsh(tmp_path):
    values = NASTY + [a + b for a in NASTY for b in ("", "\\", "{", "}", "\n", "x", "\r", "\x1a")]
    assert [_unhex(h) for h in run_tcl(tmp_path, _words_script(values))] == values


@needs_tclsh
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=40)
       | st.lists(text, min_size=1, max_size=40))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_word_reads_back_exactly_in_tclsh(tmp_path, values):
    assert [_unhex(h) for h in run_tcl(tmp_path, _words_script(values))] == values


@needs_tclsh
@given(st.lists(st.lists(text, max_size=5), min_size=1, max_size=20))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lists_read_back_exactly_in_tclsh(tmp_path, lists):
    got = [line.split(" ") for line in run_tcl(tmp_path, _lists_script(lists))]
    assert [[_unhex(h) for h in g[1:]] for g in got] == lists
    assert [int(g[0]) for g in got] == [len(x) for x in lists]


def test_quoting_shapes():
    assert quote("") == "{}"
    assert quote("plain text") == "{plain text}"
    assert quote("$x [y] \"z\";\n#") == "{$x [y] \"z\";\n#}"  # braces protect everything
    assert quote("{balanced {nest}}") == "{{balanced {nest}}}"
    assert quote("a}") == "a\\}"
    assert quote("a\\") == "a\\\\"  # a trailing backslash would escape the closing brace
    assert quote("a\\\nb") == "a\\\\\\nb"  # backslash-newline is rewritten even inside braces
    assert quote("a\rb") == "a\\rb"  # `source` turns CR into LF
    assert quote("x { y") == "x\\ \\{\\ y"
    assert quote_list(["a", "b c", ""]) == "{{a} {b c} {}}"


@given(text)
def test_quoted_words_nest_inside_braces(s):
    # every word must keep an enclosing {...} block balanced, or the block would end early
    q = quote(s)
    depth = 0
    i = 0
    while i < len(q):
        c = q[i]
        if c == "\\":
            assert i + 1 < len(q) and q[i + 1] != "\n"
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0
        i += 1
    assert depth == 0


# --- canonical shape -------------------------------------------------------------------------


def test_canonical_example():
    job = Job(title="T", priority=100.0, service="PixarRender", subtasks=(
        Task("A task", cmds=(Command(("/usr/bin/prman", "file.rib"), service="pixarRender"),)),))
    assert as_tcl(job) == (
        "##AlfredToDo 3.0\n"
        "Job -title {T} -service {PixarRender} -priority {100.0} -subtasks {\n"
        "  Task {A task} -cmds {\n"
        "    RemoteCmd {{/usr/bin/prman} {file.rib}} -service {pixarRender}\n"
        "  }\n"
        "}\n")


def test_full_layout():
    after = dt.datetime(2024, 6, 23, 13, 45)
    job = Job(
        title="Frames", after=after, afterjids=(4, 5), atleast=1, atmost=4, maxactive=3, tags=("prman",),
        projects=("film",), tier="rush", service="linux", avoid=("slow box",), envkey=("rman-25",),
        priority=2.5, crews=("lighting",), etalevel=2, comment="c", metadata="m", editpolicy="p",
        dirmaps=(DirMap("/mnt/a", "Z:\\a", "UNC"), DirMap("/b", "/c d", "NFS")),
        assignments=(("scene", "/s/a b.rib"),), serialsubtasks=True, paused=True, spoolcwd="/work",
        subtasks=(
            Task("Render", id="r1", service="", atleast=2, atmost=8, serialsubtasks=True, resumeblock=True,
                 chaser=("it", "f.exr"), preview=("sho",), metadata="t",
                 subtasks=(Task("Gen"), Instance("Other")),
                 cmds=(Command(("prman", "-Progress", "f.rib"), service="PixarRender", tags=("a", "b"),
                               envkey=("k1", "k2"), atleast=1, atmost=2, samehost=True, id="c1",
                               expand="", msg="hi", retryrc=(1, 2), minrunsecs=1.0, maxrunsecs=60.5,
                               resumewhile=("exitcode", "5"), resumepin=True, metadata="md", metrics="mt"),),
                 cleanup=(Command(("rm", "-f", "tmp"), local=True, runtype="cleanup", refersto="r1",
                                  expand="tasks.alf"),)),
            Task("Other")),
        cleanup=(Command(("/bin/rm", "x"), local=True, runtype="cleanup"),),
        postscript=(Command(("mail", "done"), runtype="post_done"), Command(("mail", "err"), runtype="post_error"),
                    Command(("log",), runtype="post_always")),
    )
    assert as_tcl(job) == r"""##AlfredToDo 3.0
Job -title {Frames} -after {06 23 13:45} -afterjids {4 5} -atleast 1 -atmost 4 -maxactive 3 -tags {{prman}} -projects {{film}} -tier {rush} -service {linux} -avoid {{slow box}} -envkey {{rman-25}} -priority {2.5} -crews {{lighting}} -etalevel 2 -comment {c} -metadata {m} -editpolicy {p} -dirmaps {{{/mnt/a} {Z:\a} UNC} {{/b} {/c d} NFS}} -serialsubtasks 1 -paused 1 -spoolcwd {/work} -init {
  Assign {scene} {/s/a b.rib}
} -subtasks {
  Task {Render} -id {r1} -service {} -atleast 2 -atmost 8 -serialsubtasks 1 -resumeblock 1 -chaser {{it} {f.exr}} -preview {{sho}} -metadata {t} -subtasks {
    Task {Gen}
    Instance {Other}
  } -cmds {
    RemoteCmd {{prman} {-Progress} {f.rib}} -service {PixarRender} -tags {{a} {b}} -envkey {{k1} {k2}} -atleast 1 -atmost 2 -samehost 1 -id {c1} -expand 1 -msg {hi} -retryrc {1 2} -minrunsecs {1.0} -maxrunsecs {60.5} -resumewhile {{exitcode} {5}} -resumepin 1 -metadata {md} -metrics {mt}
  } -cleanup {
    Cmd {{rm} {-f} {tmp}} -refersto {r1} -expand {tasks.alf}
  }
  Task {Other}
} -cleanup {
  Cmd {{/bin/rm} {x}}
} -postscript {
  RemoteCmd {{mail} {done}} -when done
  RemoteCmd {{mail} {err}} -when error
  RemoteCmd {{log}}
}
"""


def test_task_and_command_pieces():
    t = Task("T", subtasks=(Instance("x"),), cmds=(Command(("a b",)),))
    assert task_tcl(t, 4) == ("    Task {T} -subtasks {\n      Instance {x}\n    } -cmds {\n"
                              "      RemoteCmd {{a b}}\n    }\n")
    assert task_tcl(Instance("x y")) == "Instance {x y}\n"
    assert command_tcl(Command(("a",), local=True, id="a b"), 2) == "  Cmd {{a}} -id {{a b}}\n"
    assert command_tcl(Command(("a",), id="")) == "RemoteCmd {{a}} -id {{}}\n"


def test_aware_after_is_written_in_local_time():
    t = dt.datetime(2024, 3, 5, 7, 8, tzinfo=dt.timezone.utc)
    local = t.astimezone()
    assert f"-after {{{local:%m %d %H:%M}}}" in as_tcl(Job(after=t))


def test_deep_and_wide_jobs_emit_without_recursion():
    node: Task = Task("leaf", cmds=(Command(("x",)),))
    for i in range(5000):
        node = Task(f"level {i}", subtasks=(node,))
    text_ = as_tcl(Job(title="deep", subtasks=(node,)))
    assert text_.count("Task {") == 5001
    assert text_.splitlines()[-2] == "  }"  # the outermost task closes at its own indent
    wide = Job(title="wide", subtasks=tuple(Task(f"t{i}", cmds=(Command(("r", str(i))),)) for i in range(20000)))
    assert as_tcl(wide).count("\n") == 20000 * 3 + 3


# --- whole scripts through the real Tcl -------------------------------------------------------

_STUBS = r"""
set blocks {-subtasks -cmds -cleanup -postscript -init}
set lists {-tags -projects -avoid -envkey -crews -afterjids -retryrc -resumewhile -chaser -preview -id -refersto}
proc out {args} { puts [join $args " "] }
proc opts {arglist} {
    global blocks lists
    if {[llength $arglist] % 2} { error "odd option list: $arglist" }
    foreach {k v} $arglist {
        if {$k in $blocks} {
            out BEGIN $k
            uplevel #0 $v
            out END
        } elseif {$k in $lists} {
            set l [list LIST $k]
            foreach e $v { lappend l [hx $e] }
            out {*}$l
        } elseif {$k eq "-dirmaps"} {
            foreach m $v {
                set l [list MAP]
                foreach e $m { lappend l [hx $e] }
                out {*}$l
            }
        } else {
            out OPT $k [hx $v]
        }
    }
}
proc Job {args} { out JOB; opts $args; out END }
proc Task {title args} { out TASK [hx $title]; opts $args; out END }
proc Instance {title} { out INSTANCE [hx $title] }
proc RemoteCmd {argv args} { cmd R $argv $args }
proc Cmd {argv args} { cmd L $argv $args }
proc cmd {kind argv arglist} {
    set l [list CMD $kind]
    foreach e $argv { lappend l [hx $e] }
    out {*}$l
    opts $arglist
    out END
}
proc Assign {name value} { out ASSIGN [hx $name] [hx $value] }
"""

_BOOLS = {"-serialsubtasks", "-paused", "-resumeblock", "-samehost", "-resumepin"}
_INTS = {"-atleast", "-atmost", "-maxactive", "-etalevel"}
_FLOATS = {"-priority", "-minrunsecs", "-maxrunsecs"}
_INT_LISTS = {"-afterjids", "-retryrc"}


class _Trace:
    """Rebuild a Job from what the stub procs saw: an Alfred reader independent of ours."""

    def __init__(self, lines: list[str]):
        self.lines = [line.split(" ") for line in lines]
        self.i = 0

    def next(self) -> list[str]:
        line = self.lines[self.i]
        self.i += 1
        return line

    def options(self, obj, place: str | None = None) -> None:
        while True:
            line = self.next()
            kind = line[0]
            if kind == "END":
                return
            if kind == "OPT":
                self.option(obj, line[1], _unhex(line[2]))
            elif kind == "LIST":
                self.option_list(obj, line[1], [_unhex(h) for h in line[2:]])
            elif kind == "MAP":
                obj.dirmaps += (DirMap(*[_unhex(h) for h in line[1:]]),)
            elif kind == "BEGIN":
                self.block(obj, line[1])
            else:
                raise AssertionError(line)

    def option(self, obj, name: str, value: str) -> None:
        field = name[1:]
        if name in _BOOLS:
            assert value == "1"
            setattr(obj, field, True)
        elif name in _INTS:
            setattr(obj, field, int(value))
        elif name in _FLOATS:
            setattr(obj, field, float(value))
        elif name == "-expand":
            obj.expand = "" if value == "1" else value
        elif name == "-when":
            obj.runtype = {"done": "post_done", "error": "post_error"}[value]
        elif name == "-after":
            month, day, hm = value.split(" ")
            h, m = hm.split(":")
            from tractorcli.jobs.alfred import local_time

            obj.after = local_time(int(month), int(day), int(h), int(m))
        else:
            setattr(obj, field, value)

    def option_list(self, obj, name: str, items: list[str]) -> None:
        if name in ("-id", "-refersto"):
            assert len(items) == 1
            setattr(obj, name[1:], items[0])
        elif name in _INT_LISTS:
            setattr(obj, name[1:], tuple(int(x) for x in items))
        else:
            setattr(obj, name[1:], tuple(items))

    def block(self, obj, name: str) -> None:
        items = []
        while True:
            line = self.next()
            kind = line[0]
            if kind == "END":
                break
            if kind == "TASK":
                t = Task(_unhex(line[1]))
                self.options(t)
                items.append(t)
            elif kind == "INSTANCE":
                items.append(Instance(_unhex(line[1])))
            elif kind == "CMD":
                runtype = {"-cleanup": "cleanup", "-postscript": "post_always"}.get(name, "regular")
                c = Command(tuple(_unhex(h) for h in line[2:]), local=line[1] == "L", runtype=runtype)
                self.options(c)
                items.append(c)
            elif kind == "ASSIGN":
                items.append((_unhex(line[1]), _unhex(line[2])))
            else:
                raise AssertionError(line)
        field = {"-init": "assignments", "-cmds": "cmds"}.get(name, name[1:])
        setattr(obj, field, tuple(items))

    def job(self) -> Job:
        assert self.next() == ["JOB"]
        job = Job()
        self.options(job)
        assert self.i == len(self.lines)
        return job


@needs_tclsh
@given(jobs(alfred=True))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
def test_emitted_job_is_a_tcl_script_that_says_exactly_the_job(tmp_path, job):
    script = as_tcl(job)
    assert script.startswith("##AlfredToDo 3.0\n")
    got = _Trace(run_tcl(tmp_path, _STUBS + script)).job()
    assert got == job


@needs_tclsh
def test_nasty_job_through_tclsh(tmp_path):
    cmds = tuple(Command((s, s + "x", "{" + s), msg=s, service=s, tags=(s, ""), id=f"c{i}", metadata=s)
                 for i, s in enumerate(NASTY))
    job = Job(title="\\", comment="}", metadata="\\\n", subtasks=tuple(
        Task(s, id=f"t{i}", chaser=(s,), cmds=cmds[i:i + 1]) for i, s in enumerate(NASTY)),
        dirmaps=tuple(DirMap(s, s, s) for s in NASTY), assignments=tuple((s, s) for s in NASTY))
    assert _Trace(run_tcl(tmp_path, _STUBS + as_tcl(job))).job() == job


# --- through our own parser ------------------------------------------------------------------------


@given(jobs(alfred=True))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
def test_parse_of_emitted_job_is_the_job(job):
    alfred = pytest.importorskip("tractorcli.jobs.alfred")
    assert alfred.parse(as_tcl(job)) == job


def test_parse_of_nasty_job():
    alfred = pytest.importorskip("tractorcli.jobs.alfred")
    nasty = [s for s in NASTY if "\x00" not in s]  # no job can hold a NUL: the parser refuses it
    cmds = tuple(Command((s, s + "x", "{" + s), msg=s, service=s, tags=(s, ""), id=f"c{i}", metadata=s,
                         envkey=(s,))
                 for i, s in enumerate(nasty))
    job = Job(title="\\", comment="}", metadata="\\\n", subtasks=tuple(
        Task(s, id=s, chaser=(s,), cmds=cmds[i:i + 1]) for i, s in enumerate(nasty)),
        dirmaps=tuple(DirMap(s, s, s) for s in nasty))
    got = alfred.parse(as_tcl(job))
    for a, b in zip(iter_tasks(got.subtasks), iter_tasks(job.subtasks), strict=True):
        assert a == b
    assert got == job
    with pytest.raises(alfred.JobError, match="NUL character"):
        alfred.parse(as_tcl(Job(title="a\x00b")))
