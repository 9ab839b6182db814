"""Tractor's `tractor.api.author`: build jobs in Python and spool them.

    import tractor.api.author as author

    job = author.Job(title="a one-task render job", priority=100, service="PixarRender")
    job.newTask(title="frame 1", argv="prman /path/to/scene.1.rib")
    jid = job.spool()

Everything here is `tractorcli.jobs.author` (the classes are the same
objects), sharing one engine client with `tractor.api.query`
(`base.ModuleEngineClient`).  See `tractor.api.author.base`.
"""

from .base import (
    Assign,
    AttributeValueError,
    AuthorError,
    Command,
    DirMap,
    EngineClient,
    Instance,
    InvalidParamError,
    Iterate,
    Job,
    ModuleEngineClient,
    ParentExistsError,
    RequiredValueError,
    SpoolError,
    Task,
    UnknownAttributeError,
    closeEngineClient,
    setEngineClientParam,
)

__all__ = [
    "Assign", "AttributeValueError", "AuthorError", "Command", "DirMap", "EngineClient", "Instance",
    "InvalidParamError", "Iterate", "Job", "ModuleEngineClient", "ParentExistsError", "RequiredValueError",
    "SpoolError", "Task", "UnknownAttributeError", "closeEngineClient", "setEngineClientParam",
]
