"""Tractor's `tractor.api.author.base`: the element classes and the one engine client.

The classes are tractorcli's own (`tractorcli.jobs.author`), so
`isinstance(x, author.Instance)` holds for what they make.
`ModuleEngineClient` is the client `tractor.api.query` uses too: a user or
engine set through either module is what the other uses; code that sets
`ModuleEngineClient.tsid = None` drops its connection.
"""

from tractorcli.api.client import EngineClient, InvalidParamError, ModuleEngineClient
from tractorcli.jobs.author import (
    Assign,
    AttributeValueError,
    AuthorError,
    Command,
    DirMap,
    Instance,
    Iterate,
    Job,
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
