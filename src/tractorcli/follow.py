"""Follow a job to its end: what `tractor-spool --wait` shows.

The job row's counters say everything (numdone of numtasks, active, error,
its phase); they are read every half second, or sooner when a blade's
report wakes us (NOTIFY tractor_ready).  On a terminal a rich progress bar
is drawn on stderr; otherwise a line is written each time the counts change,
so logs of scripted runs stay readable.

The job has ended when its phase is 'finished': all tasks done (and its
done-postscripts run), or stalled on errors (and its error-postscripts
run).  Ended with errors gives ExitStatus.JOB_FAILED.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from .config import SiteSettings
from .errors import ExitStatus, NotFound



def summary(row: dict) -> str:
    text = (f"J{row['jid']}: {row['numdone']}/{row['numtasks']} done, {row['numactive']} active, "
            f"{row['numready']} ready, {row['numblocked']} blocked, {row['numerror']} error")
    if row["phase"] != "live":
        text += f" ({row['phase']})"
    return text


def follow(settings: SiteSettings, jid: int, *, say: Callable[[str], None], interval: float = 0.5,
           timeout: float | None = None, live: bool | None = None) -> ExitStatus:
    """Wait for job `jid` to finish; OK when every task is done, JOB_FAILED otherwise."""
    from .db import queries
    from .db.connection import LISTEN, connect, translated

    if live is None:
        live = sys.stderr.isatty()
    deadline = None if timeout is None else time.monotonic() + timeout
    with connect(settings, autocommit=True, purpose=LISTEN) as conn, translated(settings):
        conn.execute("LISTEN tractor_ready")
        progress = None
        last = None
        try:
            if live:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                    console=Console(stderr=True), transient=False)
                progress.start()
                bar = progress.add_task(f"J{jid}", total=None, detail="")
            while True:
                row = conn.execute(queries.get("follow_job"), {"jid": jid}).fetchone()
                if row is None:
                    raise NotFound(f"no job {jid}")
                if progress is not None:
                    progress.update(bar, total=max(row["numtasks"], 1), completed=row["numdone"],
                                    detail=f"{row['numactive']} active, {row['numerror']} error"
                                           + (f" ({row['phase']})" if row["phase"] != "live" else ""))
                else:
                    text = summary(row)
                    if text != last:
                        say(text)
                        last = text
                if row["phase"] == "finished" or row["deleted"]:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    say(f"J{jid}: still running after {timeout:g} s; stopped following it")
                    return ExitStatus.INTERRUPTED
                # wake early on any dispatch news, at the latest after `interval`
                for _ in conn.notifies(timeout=interval, stop_after=1):
                    pass
        finally:
            if progress is not None:
                progress.stop()
    if progress is not None:
        say(summary(row))
    if row["deleted"]:
        say(f"J{jid} was deleted")
        return ExitStatus.JOB_FAILED
    if row["numerror"] or row["numdone"] != row["numtasks"]:
        say(f"J{jid} ended with {row['numerror']} task(s) in error")
        return ExitStatus.JOB_FAILED
    say(f"J{jid} done")
    return ExitStatus.OK


__all__ = ["follow", "summary"]
