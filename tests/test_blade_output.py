"""Output directives a blade acts on (reference §4.7)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tractorcli.blade.output import (
    EXIT_STATUS,
    EXPAND_CHUNK,
    PROGRESS,
    Directive,
    OutputScanner,
    strip_directives,
)


@pytest.mark.parametrize(
    "line, value, log",
    [
        ("TR_PROGRESS 45%", 45.0, False),
        ("TR_PROGRESS 45%\n", 45.0, False),
        ("TR_PROGRESS 45%\r\n", 45.0, False),
        ("TR_PROGRESS  7", 7.0, False),
        ("TR_PROGRESS 45.5% rendering", 45.5, False),
        ("ALF_PROGRESS 12%", 12.0, False),
        ("ALF_PROGRESS 12", 12.0, False),
        ("TR_PROGRESS 250%", 100.0, False),
        ("R90000  100%", 100.0, False),
        ("R90000 37%\r\n", 37.0, False),
        ("[03] R90000  42%", 42.0, False),
        ("[host]: R90000 5%", 5.0, False),
        ("00:00:24.52 2.36GB PROG  | 17%", 17.0, True),
        ("42% done", 42.0, False),
        ("Frame 37 (7 of 9)", 100.0 * 7 / 9, True),
        ("Frame 1 (0 of 9)", 1.0, True),
    ],
)
def test_progress_forms(line, value, log):
    s = OutputScanner()
    d = s.feed(line)
    assert d == Directive(PROGRESS, pytest.approx(value), log=log)
    assert s.progress == pytest.approx(value)
    d2 = OutputScanner().feed(line.encode())
    assert d2 is not None and d2.value == pytest.approx(value)


@pytest.mark.parametrize(
    "line, code",
    [("TR_EXIT_STATUS 3", 3), ("ALF_EXIT_STATUS 0", 0), ("TR_EXIT_STATUS -9\n", -9), ("TR_EXIT_STATUS 255 bye", 255)],
)
def test_exit_status(line, code):
    s = OutputScanner()
    assert s.feed(line) == Directive(EXIT_STATUS, code)
    assert s.exit_override == code


def test_last_exit_status_wins_and_progress_is_kept():
    s = OutputScanner()
    for line in ["TR_PROGRESS 10%", "TR_EXIT_STATUS 4", "TR_PROGRESS 90%", "TR_EXIT_STATUS 0"]:
        s.feed(line)
    assert s.progress == 90.0
    assert s.exit_override == 0


def test_expand_chunk():
    s = OutputScanner()
    assert s.feed('TR_EXPAND_CHUNK "/tmp/x 1.alf"') == Directive(EXPAND_CHUNK, "/tmp/x 1.alf")
    assert s.feed('TR_EXPAND_CHUNK "/tmp/y.alf" /J5/T3\n') == Directive(EXPAND_CHUNK, "/tmp/y.alf", "/J5/T3")
    assert s.expand_chunks == [("/tmp/x 1.alf", None), ("/tmp/y.alf", "/J5/T3")]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "hello world",
        " TR_PROGRESS 45%",  # only at the start of a line
        "progress: TR_PROGRESS 45%",
        "TR_PROGRESS",
        "TR_PROGRESS %",
        "TR_PROGRESSIVE 4",
        "TR_EXIT_STATUS",
        "TR_EXIT_STATUS x",
        "TR_EXPAND_CHUNK /no/quotes",
        "ALF_EXIT",
        "R9000 45%",
        "Render 45%",
        "Frame 1 (1 of 0)",
        "Frame one",
        "12 frames % done",
        "2024-01-01 something",
        "[warning] R90001 x",
        "Time: 12s",
    ],
)
def test_ordinary_lines(line):
    s = OutputScanner()
    assert s.feed(line) is None
    assert s.feed(line.encode()) is None
    assert s.progress is None and s.exit_override is None and s.expand_chunks == []


def test_undecodable_bytes_do_not_break_the_scanner():
    s = OutputScanner()
    assert s.feed(b"TR_PROGRESS 5% \xff\xfe") == Directive(PROGRESS, 5.0)
    assert s.feed(b"T\xff\xfe") is None


def test_feed_chunk_frames_lines_across_reads():
    s = OutputScanner()
    out = s.feed_chunk(b"hello\nTR_PROG")
    assert out == [(b"hello\n", None)]
    out = s.feed_chunk(b"RESS 40%\nTR_EXIT_STATUS 2\npartial")
    assert out == [(b"TR_PROGRESS 40%\n", Directive(PROGRESS, 40.0)), (b"TR_EXIT_STATUS 2\n", Directive(EXIT_STATUS, 2))]
    assert s.finish() == [(b"partial", None)]
    assert s.finish() == []
    assert s.progress == 40.0 and s.exit_override == 2


def test_feed_chunk_last_line_without_newline_is_scanned_at_finish():
    s = OutputScanner()
    assert s.feed_chunk(b"TR_EXIT_STATUS 7") == []
    assert s.finish() == [(b"TR_EXIT_STATUS 7", Directive(EXIT_STATUS, 7))]


def test_overlong_lines_are_cut():
    s = OutputScanner(max_line=8)
    out = s.feed_chunk(b"x" * 20 + b"\nok\n")
    assert [line for line, _ in out] == [b"x" * 8, b"x" * 8, b"xxxx\n", b"ok\n"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_feed_chunk_keeps_every_byte(data, cut):
    s = OutputScanner(max_line=64)
    out = []
    for i in range(0, len(data), cut):
        out += s.feed_chunk(data[i:i + cut])
    out += s.finish()
    assert b"".join(line for line, _ in out) == data


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60))
def test_feed_never_raises(line):
    d = OutputScanner().feed(line)
    assert d is None or d.kind in (PROGRESS, EXIT_STATUS, EXPAND_CHUNK)
    if d is not None and d.kind == PROGRESS:
        assert 0.0 <= d.value <= 100.0


def test_strip_directives():
    text = "Task {a} -cmds {\nTR_PROGRESS 50%\n  RemoteCmd {x}\nALF_EXIT_STATUS 0\n}\n  TR_PROGRESS 1%\n"
    assert strip_directives(text) == "Task {a} -cmds {\n  RemoteCmd {x}\n}\n  TR_PROGRESS 1%\n"
    assert strip_directives("Task {b}\n") == "Task {b}\n"


def test_ordinary_lines_are_cheap():
    s = OutputScanner()
    feed = s.feed
    lines = [b"  rendering bucket 12/400 ...\n", b"warning: texture not found\n", b"\n", b"xyz " * 40] * 25_000
    t = time.perf_counter()
    for line in lines:
        feed(line)
    per_line = (time.perf_counter() - t) / len(lines)
    assert per_line < 5e-6, f"{per_line * 1e9:.0f} ns per ordinary line"
