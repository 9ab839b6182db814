"""interrupts.py: a signal handler that sets an event the interrupted thread is waiting on."""

from __future__ import annotations

import os
import signal
import threading
import time

from tractorcli.interrupts import set_from_signal


def test_an_event_is_set_even_from_inside_its_own_lock():
    # what a signal handler meets when it interrupts Event.wait at the wrong moment: the event's
    # lock held by the very thread that sets it (Event.set there never returns)
    event = threading.Event()
    done = threading.Event()

    def interrupted():
        with event._cond:  # as inside Event.wait, taking the lock back
            set_from_signal(event)
            time.sleep(0.05)
        done.set()

    t = threading.Thread(target=interrupted, daemon=True)
    t.start()
    assert done.wait(5), "set_from_signal waited for a lock its own thread holds"
    assert event.wait(5)


def test_a_signal_wakes_a_loop_waiting_on_the_event():
    event = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda s, f: set_from_signal(event))
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        start = time.monotonic()
        while not event.wait(0.001):  # many short waits: the signal often lands inside one
            assert time.monotonic() - start < 10
    finally:
        signal.signal(signal.SIGUSR1, previous)
