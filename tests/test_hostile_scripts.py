"""Hostile job scripts end in a one-line error naming file:line:column, in bounded time and memory."""

from __future__ import annotations

import os

import pytest

from tractorcli.jobs import alfred, tcl
from tractorcli.jobs.alfred import parse
from tractorcli.jobs.model import JobError
from tractorcli.jobs.tcl import Interp, TclError


def refused(text: str, message: str, line: int, col: int, file: str = "h.alf") -> JobError:
    with pytest.raises(JobError) as e:
        parse(text, file)
    text_ = str(e.value)
    assert message in text_, text_
    assert text_.startswith(f"{file}:{line}:{col}: "), text_
    assert "\n" not in text_
    return e.value


def tcl_refused(script: str, message: str, line: int, col: int) -> None:
    with pytest.raises(TclError) as e:
        Interp("t.tcl").eval_text(script)
    assert message in str(e.value), str(e.value)
    assert str(e.value).startswith(f"t.tcl:{line}:{col}: "), str(e.value)


# --- 1. format refuses what it cannot convert ------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ("%d inf", 'expected integer but got "inf"'),
    ("%d nan", 'expected integer but got "nan"'),
    ("%x 1e400", 'expected integer but got "1e400"'),
    ("%c 99999999", "character code 99999999 is not a Unicode character"),
    ("%c -1", "character code -1 is not a Unicode character"),
    ("%c 55296", "character code 55296 is not a Unicode character"),
    ("%.*d -3 1", 'bad precision "-3"'),
])
def test_format_refuses_values_it_cannot_convert(args, message):
    text = f'Job -title "x" -comment "[format {args}]" -subtasks {{}}'
    fmt, value = args.split(" ", 1)
    # the place of the value, or of the format string for a bad precision
    col = text.index(" " + value.split()[-1] + "]") + 2 if "*" not in fmt else text.index(fmt) + 1
    refused(text, message, 1, col)


def test_format_of_a_number_too_long_to_show():
    tcl_refused(f"format %d {'9' * 5000}", "expected integer", 1, 11)
    assert Interp().eval_text("format {%c%c} 65 0x263a") == "A\u263a"


# --- 2. nesting is limited to MAX_DEPTH levels, refused with the place ------------------------


def test_deep_task_nesting_is_refused_at_the_brace_too_deep():
    n = 100_000
    text = "Job -title t -subtasks {" + "Task t -subtasks {" * n + "}" * n + "}\n"
    e = refused(text, f"nested too deeply: more than {tcl.MAX_DEPTH} levels", 1, 24 + 18 * 1000)
    assert e.where is not None


def test_deep_task_nesting_on_separate_lines_and_through_the_generic_path(monkeypatch):
    n = 20_000
    text = "Job -title t -subtasks {\n" + "Task t -subtasks {\n" * n + "}\n" * n + "}\n"
    for fast in (True, False):
        monkeypatch.setattr(alfred, "FAST_PATH", fast)
        refused(text, "nested too deeply", 1001, 18)


def test_deep_command_substitution_is_refused():
    n = 100_000
    text = 'Job -title "' + "[list " * n + "x" + "]" * n + '" -subtasks {}\n'
    refused(text, "nested too deeply", 1, 13 + 6 * (tcl.MAX_DEPTH - 1))


@pytest.mark.parametrize("body", ["(" * 100_000 + "1" + ")" * 100_000, "-" * 100_000 + "1",
                                  "2**" * 100_000 + "1", "1?" * 100_000 + "1" + ":1" * 100_000],
                         ids=["parentheses", "unary", "power", "ternary"])
def test_deep_expressions_are_refused(body):
    tcl_refused(f"expr {{{body}}}", "nested too deeply", 1, 6)


def test_nesting_just_under_the_limit_still_parses(monkeypatch):
    # 990 nested tasks (the script and the Job's body take levels too), both paths
    n = 990
    text = "Job -title t -subtasks {" + "Task t -subtasks {" * n + "Task leaf -cmds {RemoteCmd {x}}" \
        + "}" * n + "}\n"
    jobs = []
    for fast in (True, False):
        monkeypatch.setattr(alfred, "FAST_PATH", fast)
        jobs.append(parse(text, "h.alf"))
    node = jobs[0].subtasks[0]
    depth = 1
    while node.subtasks:
        node, depth = node.subtasks[0], depth + 1
    assert depth == n + 1 and node.cmds[0].argv == ("x",)
    expr = "(" * 900 + "1" + ")" * 900
    assert Interp().eval_text(f"expr {{{expr}}}") == "1"


def test_the_fast_path_refuses_the_same_depth_as_the_generic_path(monkeypatch):
    for n in range(995, 1001):
        text = "Job -title t -subtasks {" + "Task t -subtasks {" * n + "Task leaf -cmds {RemoteCmd {x}}" \
            + "}" * n + "}\n"
        outcomes = []
        for fast in (True, False):
            monkeypatch.setattr(alfred, "FAST_PATH", fast)
            try:
                parse(text, "h.alf")
                outcomes.append("ok")
            except JobError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], n


# --- 3. no value grows past MAX_VALUE characters ----------------------------------------------


def test_doubling_a_variable_is_refused_at_the_limit():
    script = "set a x\n" + "set a $a$a\n" * 60
    tcl_refused(script, f"value too large: a job script may build values of at most {tcl.MAX_VALUE:,}",
                28, 9)  # 2**27 characters: the 27th doubling


def test_huge_format_width_and_precision_are_refused_before_building():
    tcl_refused("format %999999999d 1", "value too large", 1, 8)
    tcl_refused("format %.999999999f 1", "value too large", 1, 8)
    tcl_refused("format %*d 999999999 1", "value too large", 1, 8)
    tcl_refused("format %9999999999999999999999d 1", "value too large", 1, 8)


@pytest.mark.parametrize("script, line, col", [
    ("set a [string repeat x 600]\nset b $a$a", 2, 9),
    ('set a [string repeat x 600]\nset b "$a-$a"', 2, 11),
    ("set a [string repeat x 600]\nset b [string repeat $a 2]", 2, 8),
    ("set a [string repeat x 600]\nappend a $a", 2, 1),
    ("set a [string repeat x 600]\nlappend a $a", 2, 1),
    ("set a [string repeat x 600]\nlist $a $a", 2, 1),
    ("set a [string repeat x 600]\nconcat $a $a", 2, 1),
    ("set a [string repeat x 600]\njoin {1 2 3} $a", 2, 1),
    ("set a [string repeat x 600]\nsplit $a {}", 2, 1),
    ("set a [string repeat x 600]\nstring map [list x xx] $a", 2, 1),
    ("format %2000s x", 1, 8),
    ("format %s%s [string repeat x 600] [string repeat x 600]", 1, 1),
    ("set a [string repeat \\{ 600]\nlrange [list $a $a] 0 end", 2, 9),
])
def test_every_way_a_value_grows_is_limited(monkeypatch, script, line, col):
    monkeypatch.setattr(tcl, "MAX_VALUE", 1000)
    tcl_refused(script, "value too large", line, col)


def test_values_under_the_limit_are_built(monkeypatch):
    monkeypatch.setattr(tcl, "MAX_VALUE", 1000)
    it = Interp()
    assert len(it.eval_text("set a [string repeat x 400]; set b $a$a")) == 800
    assert len(it.eval_text("append a $a")) == 800
    assert len(it.eval_text("format %900s x")) == 900


def test_assign_variables_in_launch_expressions_are_limited_too(monkeypatch):
    monkeypatch.setattr(tcl, "MAX_VALUE", 1000)
    text = "Job -title t -init {Assign v {" + "x" * 600 + "}} -subtasks {\n Task t -cmds {RemoteCmd {echo {$v$v}}}\n}\n"
    refused(text, "value too large", 2, 16)


# --- 4. Iterate counts before it builds --------------------------------------------------------


@pytest.mark.parametrize("opts, count", [
    ("-from 1 -to 100000000", "100,000,000"), ("-from 100000000 -to 1", "100,000,000"),
    ("-from 0 -to 99999999999 -by 2", "50,000,000,000"), ("-from 1 -to 20000001 -by binary", "20,000,001"),
])
def test_huge_iterations_are_refused_before_any_is_made(opts, count):
    text = f"Job -title t -subtasks {{\n  Iterate i {opts} -template {{Task $i}}\n}}\n"
    refused(text, f"Iterate: {count} iterations; at most 10,000,000 are allowed", 2, 3)


def test_iterate_counts_agree_with_the_values_made():
    job = parse("Job -title t -subtasks {Iterate i -from 10 -to 1 -by 3 -template {Task $i}}", "h.alf")
    assert [t.title for t in job.subtasks] == ["10", "7", "4", "1"]


# --- 5. characters no job can hold ------------------------------------------------------------------


def test_nul_bytes_in_the_script_are_refused_with_the_place():
    refused("Job -title t -subtasks {\n  Task {a\0b}\n}\n", "the script holds a NUL character (byte 0)", 2, 10)


@pytest.mark.parametrize("text, what, line, col", [
    ('Job -title "a\\x00b" -subtasks {}', "Job: -title holds a NUL character", 1, 12),
    ('Job -title "[format %c 0]" -subtasks {}', "Job: -title holds a NUL character", 1, 12),
    ("Job -title t -subtasks {\n Task t -cmds {RemoteCmd {echo \\0}}\n}", "RemoteCmd: the launch expression", 2, 26),
    ('Job -title t -subtasks {\n Task "\\0"\n}', "Task: the title", 2, 7),
    ('Job -title "a\\ud800" -subtasks {}', "Job: -title holds a lone surrogate (U+D800", 1, 12),
])
def test_nul_and_surrogates_made_by_escapes_are_refused(monkeypatch, text, what, line, col):
    for fast in (True, False):
        monkeypatch.setattr(alfred, "FAST_PATH", fast)
        refused(text, what, line, col)


def test_files_that_are_not_utf8_are_refused_at_the_first_bad_byte(tmp_path):
    path = tmp_path / "old.alf"
    path.write_bytes(b"Job -title {x} -subtasks {\n  Task {caf\xc3\xa9 cr\xe8me} -cmds {}\n}\n")
    with pytest.raises(JobError, match=r"old\.alf:2:16: the script is not UTF-8 text \(byte 0xe8\)") as info:
        alfred.parse_file(str(path))
    assert "iconv" in info.value.hint and "\n" not in info.value.message
    # the spool reads files the same way, and says so the same way, before anything is spooled
    from tractorcli.submit import load

    with pytest.raises(JobError, match=r"old\.alf:2:16: the script is not UTF-8"):
        load(str(path))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_deep_nesting_does_not_copy_the_script_at_every_level(tmp_path):
    import subprocess
    import sys

    n = 990
    path = tmp_path / "deep.alf"
    path.write_text("Job -title t -subtasks {" + "Task t -subtasks {" * n + "Task leaf -metadata {" + "x" * 200_000
                    + "}" + "}" * n + "}\n")
    # the peak resident size (VmHWM; ru_maxrss would carry the forking parent's peak over exec)
    code = ("import re, sys; from tractorcli.jobs.alfred import parse_file; "
            "job = parse_file(sys.argv[1]); assert job.subtasks[0].title == 't'; "
            "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert int(out.stdout) < 100_000, out.stdout  # KB; 990 copies of the text inside would be 200 MB


def test_a_script_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from tractorcli.jobs import script_text

    monkeypatch.setattr(script_text, "MAX_SCRIPT_BYTES", 1000)  # (the real limit is 128 MiB)
    path = tmp_path / "huge.alf"
    path.write_text("Job -title t -subtasks {\n" + "  Task x\n" * 200 + "}\n")
    with pytest.raises(JobError, match=r"huge\.alf:1:1: the script has 1,827 bytes; a job script may have at most 1,000"):
        alfred.parse_file(str(path))
    monkeypatch.setattr(script_text, "MAX_SCRIPT_BYTES", 2000)
    assert len(alfred.parse_file(str(path)).subtasks) == 200


@pytest.mark.parametrize("text, whose, line, col", [
    ("Job -title {%s} -subtasks {}", "the job's", 1, 1),
    ("Job -title t -subtasks {\n  Task {%s}\n}", "a task's", 2, 3),
])
def test_a_10_mb_title_is_refused_with_its_place(text, whose, line, col):
    from tractorcli.jobs.model import resolve

    with pytest.raises(JobError, match=rf"t\.alf:{line}:{col}: {whose} title has 10,000,000 characters; "
                                       r"a title may have at most 65,536"):
        resolve(parse(text % ("x" * 10_000_000), "t.alf"))
