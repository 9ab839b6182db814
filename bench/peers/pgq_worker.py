"""The pgqueuer side of the peers benchmark; runs in pgqueuer's own virtual environment.

    python pgq_worker.py enqueue N                     # N jobs for the entrypoint "true", one insert
    python pgq_worker.py work BATCH_SIZE MAX_CONCURRENT  # a worker, until the queue is drained

Every job is one command: the entrypoint forks and execs /bin/true and waits for it, as a
tractorcli blade does for a command `/bin/true`; a non-zero exit fails the job.  The database
is the one libpq's environment names (PGHOST, PGPORT, PGUSER, PGDATABASE), which asyncpg reads.

Not imported by the benchmark process (it has no pgqueuer); written for pgqueuer 1.6 from its
documentation (a PgQueuer over an asyncpg connection, an async entrypoint per job).  A worker
runs as `pgq run` would run the factory, on uvloop, in drain mode (it exits once the queue is
empty and its jobs are done); `pgq run` itself is not used because its `--log-level` option
fails at start in 1.6.0 with the typer the constraints give ('str' object has no attribute
'name').
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import uvloop
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "true"
COMMAND = "/bin/true"


async def create_pgqueuer() -> PgQueuer:
    """The factory `pgq run` calls: one connection, one entrypoint."""
    connection = await asyncpg.connect()
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(ENTRYPOINT)
    async def run_command(job: Job) -> None:
        proc = await asyncio.create_subprocess_exec(COMMAND, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"{COMMAND} exited {code}")

    return pgq


async def enqueue(n: int) -> None:
    connection = await asyncpg.connect()
    try:
        queries = Queries(AsyncpgDriver(connection))
        ids = await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        if len(ids) != n:
            raise SystemExit(f"enqueued {len(ids)} of {n} jobs")
    finally:
        await connection.close()


async def work(batch_size: int, max_concurrent_tasks: int) -> None:
    pgq = await create_pgqueuer()
    await pgq.run(batch_size=batch_size, max_concurrent_tasks=max_concurrent_tasks,
                  mode=QueueExecutionMode.drain)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "enqueue":
        asyncio.run(enqueue(int(sys.argv[2])))
    elif len(sys.argv) == 4 and sys.argv[1] == "work":
        uvloop.run(work(int(sys.argv[2]), int(sys.argv[3])))
    else:
        raise SystemExit(__doc__)
