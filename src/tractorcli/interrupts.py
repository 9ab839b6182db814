"""Signal handlers that wake a waiting loop.

A Python signal handler runs in the main thread between two of its bytecodes, and that may be
inside the main thread's own `Event.wait`, at the moment it holds the event's lock (taking it
back after a timeout, or letting it go): `Event.set` there waits for a lock its own thread holds,
for ever.  The engine and the blade wait on such events in their main loops, so a SIGTERM
arriving at that moment left them running, deaf to any further signal.  `set_from_signal` sets
the event from a new thread instead, which takes the lock as soon as the main thread lets go of
it.  (`_thread.start_new_thread`, not `threading.Thread`: starting one of those takes locks of
the threading module that the interrupted thread may hold, too.)
"""

from __future__ import annotations

import _thread
import threading

__all__ = ["set_from_signal"]


def set_from_signal(event: threading.Event) -> None:
    """`event.set()`, safe to call from a signal handler."""
    _thread.start_new_thread(event.set, ())
