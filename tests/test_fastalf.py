"""The fast path (fastalf.py) must give exactly what the generic interpreter gives.

Every script is parsed twice, with and without the fast path; the jobs, their
warnings, the position of every task and command, and any error must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from strategies import jobs
from tractorcli.jobs import alfred
from tractorcli.jobs.emit import as_tcl
from tractorcli.jobs.model import JobError, iter_tasks

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alf"
FILES = sorted(CORPUS.glob("*.alf")) if CORPUS.is_dir() else []


def _places(job):
    out = []
    for t in iter_tasks(job.subtasks):
        out.append(("task", t.title, str(t.where)))
        for c in t.cmds + t.cleanup:
            out.append(("cmd", c.argv, c.runtype, str(c.where)))
        for n in t.subtasks:
            out.append(("node", type(n).__name__, str(n.where)))
    for n in job.subtasks:
        out.append(("top", type(n).__name__, str(n.where)))
    return out


def _parse(text, fast, **kw):
    saved = alfred.FAST_PATH
    alfred.FAST_PATH = fast
    try:
        job = alfred.parse(text, "t.alf", **kw)
        return ("ok", job, list(job.warnings), _places(job))
    except JobError as exc:
        return ("error", type(exc).__name__, str(exc), None)
    finally:
        alfred.FAST_PATH = saved


def same_both_ways(text, **kw):
    fast = _parse(text, True, **kw)
    slow = _parse(text, False, **kw)
    assert fast == slow
    return fast


def test_the_fast_path_is_taken():
    # a plain generated body: every task and command comes from the fast path
    text = "Job -title {j} -subtasks {\n" + "".join(
        f"  Task {{Frame {i}}} -cmds {{\n    RemoteCmd {{prman f.{i}.rib}} -service {{PixarRender}}\n  }}\n"
        for i in range(1, 6)) + "}\n"
    kind, job, warnings, places = same_both_ways(text)
    assert kind == "ok" and len(job.subtasks) == 5 and not warnings
    assert places[0] == ("task", "Frame 1", "t.alf:2:3")
    assert places[1] == ("cmd", ("prman", "f.1.rib"), "regular", "t.alf:3:5")
    taken = []
    original = alfred.FastBody.one_cmd_tasks

    def spy(self, bucket, pos, end):
        before = len(bucket)
        stop = original(self, bucket, pos, end)
        taken.append(len(bucket) - before)
        return stop

    alfred.FastBody.one_cmd_tasks = spy
    try:
        alfred.parse(text, "t.alf")
    finally:
        alfred.FastBody.one_cmd_tasks = original
    assert taken == [5]  # one run of all five


SHAPES = [
    # the common shape, with options on both sides and on the command
    "Task {A} -service {x} -cmds {RemoteCmd {a b} -service {s} -tags {t1 t2} -retryrc {1 2}} -id {a1}",
    # several commands, cleanup, Instances, nested subtasks
    "Task {A} -cmds {\n RemoteCmd {a}\n Cmd {b} -service {k}; RemoteCmd {{c d} e}\n} -cleanup {Cmd {rm x}}",
    "Task {B} -subtasks {\n Instance {A}\n Task {C}\n Task {D} -subtasks {Instance -title {A}}\n}",
    "Task -title {E} -cmds {RemoteCmd {e}}",
    "Task -service {x} -cmds {RemoteCmd {e}}",
    "Task {F}",
    "Task {G} -subtasks {} -cmds {}",
    "Task {H} -cmds {RemoteCmd {sh -c \"echo hi\"} -msg {some text}}",
    "Task {I} -cmds {RemoteCmd e -service x}",
    "Task {J} -cmds {RemoteCmd -service {x} {argv}}",  # options first
    "Task {K} -cmds {RemoteCmd {a} {b}}",  # argv in two words: a warning
    "Task {L} -bogus {1} -cmds {RemoteCmd {a}}",  # unknown option: a warning
    "Task {M} -title {N} -cmds {RemoteCmd {a}}",  # title twice: a warning
    "Task {O} -cmds {RemoteCmd {a} -when done}",  # -when outside a postscript: an error
    "Task {P} -cmds {RemoteCmd {a} -atleast {x}}",  # bad number: an error
    "Task {Q} -cmds {RemoteCmd {}}",  # empty argv: an error
    "Task {R} -cmds {RemoteCmd {a} -service}",  # option without a value
    "Task {S} -cmds {RemoteCmd {a}} -cmds {RemoteCmd {b}}",
    "Task {T} -cmds {\n # a comment\n RemoteCmd {a}\n}",
    "# a comment\nTask {U} -cmds {RemoteCmd {a}}",
    "Task {V} -cmds {RemoteCmd {a}} ;Task {W} -cmds {RemoteCmd {b}}",
    "Task {X} -cmds {RemoteCmd {a$b [c]}} -metadata {a $b}",
    "Task X$y -cmds {RemoteCmd {a}}",
    "Task {Y} -cmds {RemoteCmd {a} -envkey {setenv A=1 B=2} -samehost 1 -expand 1 -minrunsecs 2.5}",
    "Task {Z} -cmds {RemoteCmd {a}}x",  # extra characters after a close brace
    "Task {Z2} -cmds {RemoteCmd a{b}c}",
    "Task {Z3} -cmds {RemoteCmd {a\\\nb}}",
    "Task {Z4} -chaser {it view} -preview {x y} -serialsubtasks 1 -resumeblock 1 -cmds {RemoteCmd {a}}",
    "Iterate i -from 1 -to 3 -template {Task {f$i} -cmds {RemoteCmd {r $i}}}",
    "Task {A2} -cmds {RemoteCmd {a}}\nTask {A2b} -cmds {RemoteCmd {b}}\nInstance {A}",
    "Task {E1} -subtasks {Task {E2} -cmds {RemoteCmd {e} -refersto {nobody}}}",
    "Task {dup} -id {d} -cmds {RemoteCmd {a}}\nTask {dup2} -id {d} -cmds {RemoteCmd {a}}",
    "Task {c1} -subtasks {Instance {c2}}\nTask {c2} -subtasks {Instance {c1}}",
    "Task {Assign} -cmds {RemoteCmd {$x}}",
    "Task {q} -cmds {RemoteCmd {{a b} c} -tags {{x y}}}",
    "Task {r} -cmds {Task {nested}}",  # wrong operator in -cmds: an error
    "Task {s} -cmds {RemoteCmd {a}} -subtasks {RemoteCmd {b}}",
    # launch expressions whose words before the last repeat (remembered once), split at runs of
    # spaces, tabs, newlines and other white space, with the last word empty, or one word only
    "Task {h1} -cmds {RemoteCmd {prman -p f.1.rib}}\nTask {h2} -cmds {RemoteCmd {prman -p f.2.rib}}\n"
    "Task {h3} -cmds {RemoteCmd {prman  -p f.3.rib}}\nTask {h4} -cmds {RemoteCmd {prman -p\tf.4.rib}}\n"
    "Task {h5} -cmds {RemoteCmd {prman -p\nf.5.rib}}\nTask {h6} -cmds {RemoteCmd {prman -p f.6.rib }}\n"
    "Task {h7} -cmds {RemoteCmd {prman -p\u00a0f.7.rib}}\nTask {h8} -cmds {RemoteCmd {prman}}\n"
    "Task {h9} -cmds {RemoteCmd { prman}}\nTask {h10} -cmds {RemoteCmd { }} ",
    # options remembered by their text, then met again with a value that does not convert
    "Task {o1} -atleast 2 -cmds {RemoteCmd {a} -atmost 3 -tags {t}}\nTask {o2} -atleast 2 -cmds {RemoteCmd {b} -atmost 3 -tags {t}}\n"
    "Task {o3} -atleast x -cmds {RemoteCmd {c} -atmost 3 -tags {t}}",
]


@pytest.mark.parametrize("body", SHAPES)
@pytest.mark.parametrize("strict", [False, True])
def test_shapes_agree(body, strict):
    text = "##AlfredToDo 3.0\nJob -title {j} -init {Assign x {v}} -subtasks {\n" + body + "\n} -cleanup {Cmd {c}}\n"
    same_both_ways(text, strict=strict)


def test_postscripts_and_job_level_commands_agree():
    text = ("Job -title {j} -subtasks {Task {a} -cmds {RemoteCmd {a}}} -postscript {\n"
            " Cmd {mail} -when done\n RemoteCmd {x} -service {s}\n} -cleanup {RemoteCmd {rm}}\n")
    kind, job, _, _ = same_both_ways(text)
    assert [c.runtype for c in job.postscript] == ["post_done", "post_always"]


def test_deep_nesting_agrees():
    depth = 60
    body = "RemoteCmd {leaf}"
    text = "Task {leaf} -cmds {" + body + "}"
    for i in range(depth):
        text = f"Task {{t{i}}} -subtasks {{\n{text}\n}} -cmds {{RemoteCmd {{c{i}}}}}"
    same_both_ways("Job -subtasks {" + text + "}")


@pytest.mark.skipif(not FILES, reason="the corpus folder is not present")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_agrees(path):
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    same_both_ways(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(alfred=True))
def test_emitted_jobs_agree(job):
    kind, parsed, _, _ = same_both_ways(as_tcl(job))
    assert kind == "ok" and parsed == job


_PIECES = ["Task", "{A}", "-cmds", "{", "}", "RemoteCmd", "Cmd", "{a b}", "-service", "{x}", "\n", ";", " ",
           "Instance", "-title", "$v", "[list a]", "\\", "\"q\"", "#", "-id", "{1}", "-subtasks", "-when", "done",
           "-cleanup", "-atleast", "2", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_random_bodies_agree(pieces):
    same_both_ways("set v 1\nJob -title {j} -subtasks {" + " ".join(pieces) + "}\n")
