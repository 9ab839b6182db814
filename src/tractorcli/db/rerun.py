"""Transactions PostgreSQL aborts to break a deadlock are run again.

Work takes rows in one order where it can (functions/blades.sql, "Lock
order": jobs, then their invocations, a blade's own row last), but some work
meets in both orders still: a blade's claim takes jobs in priority order
after its reports took others by jid, and a claim holding a ready row waits
for that row's job while `tq retry` holds the job and deletes the row.
PostgreSQL finds such a cycle after `deadlock_timeout` and aborts one side
(SQLSTATE 40P01; 40001 for a serialization failure) with nothing of it
done, so running that side again is always safe and is what the manual asks
of clients.  Nothing is run again inside a transaction the caller opened:
only the caller can run all of it again.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, TypeVar

import psycopg
from psycopg import errors as pe
from psycopg import pq

ATTEMPTS = 6          # the first run and five more
FIRST_PAUSE = 0.02    # seconds, doubled each time, with jitter so two victims do not meet again

T = TypeVar("T")
CONFLICTS = (pe.DeadlockDetected, pe.SerializationFailure)  # (class 40: nothing was done)


def rerun(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """fn(*args, **kw), run again while PostgreSQL aborts it to break a lock conflict.
    fn must be one whole transaction (or several, each safe to repeat)."""
    pause = FIRST_PAUSE
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn(*args, **kw)
        except CONFLICTS:
            if attempt == ATTEMPTS:
                raise
            time.sleep(random.uniform(pause / 2, pause))
            pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class SiteConnection(psycopg.Connection):
    """A connection whose single statements, each its own transaction (autocommit, outside
    any transaction block and pipeline), run again when aborted to break a deadlock."""

    site_settings: Any = None  # the SiteSettings it was made from (set by connection.connect)

    def execute(self, query, params=None, *, prepare=None, binary=False):  # type: ignore[override]
        if (self.autocommit and self.info.transaction_status == pq.TransactionStatus.IDLE
                and self.info.pipeline_status == pq.PipelineStatus.OFF):
            return rerun(super().execute, query, params, prepare=prepare, binary=binary)
        return super().execute(query, params, prepare=prepare, binary=binary)


__all__ = ["ATTEMPTS", "CONFLICTS", "SiteConnection", "rerun"]
