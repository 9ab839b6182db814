"""The Tcl word parser and safe interpreter behind job scripts (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tractorcli.jobs import tcl
from tractorcli.jobs.alfred import parse
from tractorcli.jobs.model import JobError
from tractorcli.jobs.tcl import Interp, TclError, list_string, quote_element, split_list


def run(script: str) -> tuple[Interp, list[list[str]]]:
    """Evaluate `script`, recording every call of the test command `rec`."""
    it = Interp("t.tcl")
    calls: list[list[str]] = []

    def rec(interp, words):
        calls.append([w.value for w in words[1:]])
        return ""

    it.commands["rec"] = rec
    it.eval_text(script)
    return it, calls


def words(script: str) -> list[str]:
    return run(script)[1][0]


# --- grouping and substitution -------------------------------------------------------


def test_braces_group_literally_and_nest():
    assert words("rec {a $b [c] \\n} {x {y z} w}") == ["a $b [c] \\n", "x {y z} w"]


def test_backslash_newline_inside_braces_becomes_one_space():
    assert words("rec {a \\\n      b}") == ["a  b"]  # the blank before the backslash stays (tclsh agrees)
    assert words("rec {a\\\n\t\tb}") == ["a b"]


def test_quotes_substitute():
    assert words('set x 5; rec "v=$x ${x}y [expr {$x * 2}] \\t|"') == ["v=5 5y 10 \t|"]


def test_bare_words_substitute():
    assert words("set n 3; rec $n [expr $n+1] a\\ b") == ["3", "4", "a b"]


@pytest.mark.parametrize("escape, value", [
    ("\\n", "\n"), ("\\t", "\t"), ("\\\\", "\\"), ("\\{", "{"), ("\\}", "}"), ("\\$", "$"), ("\\[", "["),
    ("\\;", ";"), ("\\x41", "A"), ("\\101", "A"), ("\\u00e9", "é"), ("\\q", "q"), ('\\"', '"'),
])
def test_backslash_escapes(escape, value):
    assert words(f"rec a{escape}b") == [f"a{value}b"]
    assert words(f'rec "a{escape}b"') == [f"a{value}b"]


def test_commands_end_at_newline_and_semicolon_but_not_inside_groups():
    _, calls = run('rec a; rec b\nrec {c;\nd} "e;\nf"')
    assert calls == [["a"], ["b"], ["c;\nd", "e;\nf"]]


def test_backslash_newline_continues_a_command():
    _, calls = run("rec a \\\n   b \\\r\n c\nrec d")
    assert calls == [["a", "b", "c"], ["d"]]


def test_crlf_line_endings():
    _, calls = run("rec a {b}\r\nrec c\r\n")
    assert calls == [["a", "b"], ["c"]]


def test_comments_only_at_command_position():
    _, calls = run("# a comment {\n  ## AlfredToDo 3.0\nrec x#y {#z} ;# trailing comment\n# continued \\\n still comment\nrec w")
    assert calls == [["x#y", "#z"], ["w"]]


def test_variables_in_array_and_brace_forms():
    assert words("set a(1) one; set {my var} two; rec $a(1) ${my var} $") == ["one", "two", "$"]


# --- errors carry positions ------------------------------------------------------------------


@pytest.mark.parametrize("script, message, line, col", [
    ("rec {a b", "missing close-brace", 1, 5),
    ("rec\nrec {a}b", "extra characters after close-brace", 2, 8),
    ('rec "a"b', "extra characters after close-quote", 1, 8),
    ('rec "abc', "missing close-quote", 1, 5),
    ("rec [expr 1", "missing close-bracket", 1, 5),
    ("rec $nope", 'can\'t read "nope": no such variable', 1, 5),
    ("\n\n  frobnicate 1", 'unknown command "frobnicate"', 3, 3),
    ("rec [expr 1 +]", "syntax error in expression", 1, 11),
    ("rec [expr 1/0]", "divide by zero", 1, 11),
])
def test_errors_name_line_and_column(script, message, line, col):
    with pytest.raises(TclError) as e:
        run(script)
    assert message in str(e.value)
    assert (e.value.where.line, e.value.where.col) == (line, col), str(e.value)
    assert str(e.value).startswith(f"t.tcl:{line}:{col}: ")


@pytest.mark.parametrize("cmd", ["exec", "open", "proc", "source", "file", "socket", "eval", "uplevel", "puts"])
def test_dangerous_commands_are_refused_by_name(cmd):
    with pytest.raises(TclError) as e:
        run(f"set x 1\n{cmd} rm -rf /")
    assert f'"{cmd}" is not allowed in a job script' in str(e.value)
    assert str(e.value).startswith("t.tcl:2:1:")


def test_refused_inside_command_substitution_too(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(TclError, match='"exec" is not allowed'):
        run(f'rec "[exec touch {marker}]"')
    assert not marker.exists()


def test_runaway_loops_are_stopped(monkeypatch):
    monkeypatch.setattr(tcl, "MAX_STEPS", 1000)
    with pytest.raises(TclError, match="more than 1000 commands"):
        run("foreach i [string repeat {x } 5000] { set y $i }")


# --- the whitelisted built-ins ------------------------------------------------------------------


@pytest.mark.parametrize("script, result", [
    ("expr {1 + 2 * 3}", "7"), ("expr {(1 + 2) * 3}", "9"), ("expr 7/2", "3"), ("expr 7.0/2", "3.5"),
    ("expr {-7 % 3}", "2"), ("expr {2 ** 10}", "1024"), ("expr {1 < 2 && 2 < 3}", "1"),
    ("expr {max(3, 9, 4)}", "9"), ("expr {int(3.7)}", "3"), ("expr {round(2.5)}", "3"),
    ("expr {1 ? 10 : 20}", "10"), ("expr {\"a\" eq \"a\"}", "1"), ("expr 0x10+1", "17"),
    ("list a {b c} d", "a {b c} d"), ("format %04d 7", "0007"), ("format {%s-%03d %.2f} f 5 1.5", "f-005 1.50"),
    ("join {a b c} ,", "a,b,c"), ("string toupper abc", "ABC"), ("string length héllo", "5"),
    ("string range abcdef 1 end-1", "bcde"), ("string map {a 1 b 2} abcab", "12c12"),
    ("string trim {  x  }", "x"), ("lindex {a {b c} d} 1", "b c"), ("llength {a {b c} d}", "3"),
    ("concat {a b} {c}", "a b c"), ("set x 1; incr x 4", "5"),
])
def test_builtins(script, result):
    it = Interp("t.tcl")
    assert it.eval_text(script) == result


def test_foreach_and_if():
    _, calls = run("foreach {a b} {1 2 3 4} { if {$a > 1} { rec $a $b } else { rec small } }")
    assert calls == [["small"], ["3", "4"]]


# --- lists -----------------------------------------------------------------------------------------


def test_split_list_rules():
    assert split_list('a {b c} "d e" f\\ g {}') == ["a", "b c", "d e", "f g", ""]
    assert split_list("%{h}.settings  x") == ["%{h}.settings", "x"]
    with pytest.raises(TclError, match="unmatched open brace"):
        split_list("{a b")


@given(st.lists(st.text(max_size=12), max_size=6))
@settings(max_examples=400)
def test_list_quoting_round_trips(items):
    assert split_list(list_string(items)) == items


@given(st.text(max_size=30))
@settings(max_examples=400)
def test_quoted_element_is_read_back_exactly_as_a_word(s):
    assert words("rec " + quote_element(s)) == [s]


# --- the seed's launch expressions and escapes ---------------------------------------------------

SEED_JOB = r'''
Job -title {a render test} -subtasks {
  Task -title {render a.rib} -cmds {
    RemoteCmd {prman -Progress /net/my_ribs/a.rib} -service {PixarRender}
  }
  Task {shells} -cmds {
    Cmd {/bin/sh -e "cd /tmp/frames; ls -1 | xargs -I+ cp + /DDR"}
    Cmd {/bin/csh -fet} -msg {/usr/sbin/Mail -s 'job done' jean < ~/errlog}
    RemoteCmd {{C:\\app path\\app} {arg1} {arg two}}
    RemoteCmd {renderer -use %{h}.settings} -service {renderserver}
    Cmd {netrender %H /net/my_ribs/a.rib} -service {PixarNRM} -atleast 2
  }
  Task {SharedServer example} -id {bob} -service {pixarRender} -cmds {
      Cmd {rsh %h mkdir /tmp/somedir} -refersto {bob}
  } -cleanup {
      # Clean-up commands go here.
      RemoteCmd {/bin/rm -rf /tmp/somedir} -refersto bob
  }
}
'''


def test_seed_launch_expressions():
    job = parse(SEED_JOB, "seed.alf")
    render, shells, shared = job.subtasks
    assert render.title == "render a.rib"
    assert render.cmds[0].argv == ("prman", "-Progress", "/net/my_ribs/a.rib")
    assert render.cmds[0].service == "PixarRender" and not render.cmds[0].local
    sh, csh, win, settings_, nrm = shells.cmds
    assert sh.local and sh.argv == ("/bin/sh", "-e", "cd /tmp/frames; ls -1 | xargs -I+ cp + /DDR")
    assert csh.msg == "/usr/sbin/Mail -s 'job done' jean < ~/errlog"
    assert win.argv == ("C:\\\\app path\\\\app", "arg1", "arg two")  # braces keep backslashes, as in Tcl
    assert settings_.argv == ("renderer", "-use", "%{h}.settings")
    assert nrm.atleast == 2 and nrm.argv[1] == "%H"
    assert shared.id == "bob" and shared.cmds[0].refersto == "bob" and shared.cleanup[0].refersto == "bob"
    assert shared.cleanup[0].runtype == "cleanup"


# --- property: anything either parses or fails with our error and a position ---------------------


def _check_total(text: str) -> None:
    try:
        parse(text, "fuzz.alf")
    except JobError as exc:
        assert exc.where is not None or "no Job in this script" in str(exc), str(exc)
        assert str(exc)


@given(st.text(alphabet=st.sampled_from(list('Job Task RemoteCmd -title -cmds -subtasks {}"[]$\\;#\n ab1')), max_size=80))
@settings(max_examples=600, deadline=None)
def test_random_scripts_parse_or_fail_with_a_position(text):
    _check_total(text)


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_mutated_scripts_parse_or_fail_with_a_position(data):
    text = SEED_JOB
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "dup"]))
        if op == "delete":
            j = data.draw(st.integers(i, min(len(text), i + 5)))
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(list('{}[]"$\\;\n#x'))) + text[i:]
        else:
            text = text[:i] + text[i:i + 10] + text[i:]
    _check_total(text)


def test_an_escaped_backslash_before_a_newline_in_braces_stays():
    # tclsh: set x {a\\<newline>b} keeps both backslashes and the newline
    assert words("rec {a\\\\\nb}") == ["a\\\\\nb"]
    assert words("rec {a\\\\\\\n   b}") == ["a\\\\ b"]  # three: a pair, then a continuation
    assert split_list("{a\\\\\nb} c") == ["a\\\\\nb", "c"]
