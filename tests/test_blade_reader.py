"""The blade's one output thread (blade/reader.py), with real processes: output to the log,
exit codes, many runs at once, and the rules for what a command leaves running."""

from __future__ import annotations

import os
import time

import pytest

from tractorcli.blade import reader
from tractorcli.blade.launch import LaunchSpec, Run


def _run(tmp_path, argv, tid=1, take=None, **kw):
    spec = LaunchSpec(jid=1, tid=tid, cid=tid, iid=1, argv=list(argv), env=dict(os.environ), cwd=str(tmp_path),
                      log_path=tmp_path / f"T{tid}.log", blade="b", host="h", **kw)
    run = Run(spec)
    if take is not None:
        run._take = take
    run.start()
    return run


def _threads_named(prefix):
    import threading

    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


pytestmark = pytest.mark.skipif(reader.pidfd(os.getpid()) is None, reason="no pidfd on this kernel")


def test_many_runs_share_one_thread_and_each_gets_its_output_and_code(tmp_path):
    runs = [_run(tmp_path, ["sh", "-c", f"echo out{k}; echo err{k} >&2; exit {k % 3}"], tid=k) for k in range(1, 41)]
    for r in runs:
        assert r.join(20)
    for k, r in enumerate(runs, start=1):
        assert r.rcode == k % 3
        text = (tmp_path / f"T{k}.log").read_text()
        assert f"out{k}\n" in text and f"err{k}\n" in text
        assert f"exit code: {k % 3}" in text
        assert r.pid is not None
    assert not _threads_named("output /J"), "a run started a thread of its own"
    assert len(_threads_named("output")) == 1


def test_output_longer_than_a_pipe_is_read_whole(tmp_path):
    r = _run(tmp_path, ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo TR_PROGRESS 50%"])
    assert r.join(20) and r.rcode == 0
    assert (tmp_path / "T1.log").read_text().count("x") >= 1000000
    assert r.progress == 50


def test_what_a_command_leaves_running_is_killed_after_the_drain_grace(tmp_path):
    pidfile = tmp_path / "bg.pid"
    t0 = time.monotonic()
    r = _run(tmp_path, ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; exit 0"])
    assert r.join(reader.DRAIN_GRACE + 10)
    took = time.monotonic() - t0
    assert r.rcode == 0
    assert reader.DRAIN_GRACE - 0.5 <= took < reader.DRAIN_GRACE + 5
    log = (tmp_path / "T1.log").read_text()
    assert "started" in log and "killing what it left running" in log
    bg = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(bg, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background process outlived the drain grace")


def test_a_pipe_held_outside_the_group_does_not_hold_the_run_for_ever(tmp_path):
    """A process that left the command's group (setsid) keeps the output pipe open: the run still
    ends, DRAIN_KILLED after the group was killed."""
    pidfile = tmp_path / "daemon.pid"
    r = _run(tmp_path, ["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & sleep 0.2; exit 3"])
    try:
        assert r.join(reader.DRAIN_GRACE + reader.DRAIN_KILLED + 10)
        assert r.rcode == 3
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except (ProcessLookupError, ValueError):
                pass


def test_a_signal_ends_the_run_with_minus_the_signal(tmp_path):
    r = _run(tmp_path, ["sleep", "60"])
    deadline = time.monotonic() + 5
    while r.pid is None and time.monotonic() < deadline:
        time.sleep(0.01)
    r.terminate("test")
    assert r.join(10)
    assert r.rcode == -15


def test_a_run_whose_watching_breaks_ends_killed_and_the_others_go_on(tmp_path):
    def broken(data):
        raise RuntimeError("scanner broke")

    bad = _run(tmp_path, ["sh", "-c", "echo hello; exec sleep 60"], tid=1, take=broken)
    good = _run(tmp_path, ["sh", "-c", "sleep 0.5; echo fine"], tid=2)
    assert bad.join(10), "the broken run did not end"
    assert bad.rcode == -9
    assert "blade error while watching the command: RuntimeError('scanner broke')" in (tmp_path / "T1.log").read_text()
    assert good.join(10) and good.rcode == 0
    assert "fine" in (tmp_path / "T2.log").read_text()
