"""Tractor's `tractor.api.author`: build jobs in Python and spool them.

    import tractor.api.author as author

    job = author.Job(title="a one-task render job", priority=100, service="PixarRender")
    job.newTask(title="frame 1", argv="prman /path/to/scene.1.rib")
    jid = job.spool()

Everything here is `tractorcli.jobs.author` (the classes are the same
objects), sharing one engine client with `tractor.api.query`
(`base.ModuleEngineClient`).  See `tractor.api.author.base`.
"""

from .base import *  # noqa: F401,F403 - the names of tractor.api.author.base
from .base import __all__  # noqa: F401
