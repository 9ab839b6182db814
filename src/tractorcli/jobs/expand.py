"""Reading what an `-expand` command printed: task definitions (reference §4.4, §6.4).

`parse_output(text, filename)` reads one piece of expand output (the
command's stdout, its -expand file, or one TR_EXPAND_CHUNK file) as the
body of a Job's -subtasks: Alfred `Task`, `Instance` and `Iterate`
operators, or, when the text starts with `{` or `[`, Tractor JSON task
objects (`{"data": {...}, "children": [...]}`, one or a list of them, or a
whole JSON job whose children are taken).  Progress and exit-status lines
are dropped first (§4.7).  Errors are JobErrors that name file:line:col.

`check(nodes)` resolves the pieces together (Instance references among
them, duplicate -ids, cycles) so that a bad output is found on the blade
before anything is reported.
"""

from __future__ import annotations

from .model import Job, JobError, Location, resolve


def parse_output(text: str, filename: str) -> tuple:
    """The task nodes of one piece of expand output, in order."""
    from ..blade.output import strip_directives

    text = strip_directives(text)
    head = text.lstrip()
    if head.startswith(("{", "[")):
        return _json_nodes(text, filename)
    from .alfred import parse_tasks

    return parse_tasks(text, filename)


def _json_nodes(text: str, filename: str) -> tuple:
    from .jsonjob import _loads, from_json

    doc = _loads(text, filename)
    if isinstance(doc, dict) and ("TractorJob" in doc or "children" in doc and "data" not in doc):
        children = doc.get("children") or []
    elif isinstance(doc, dict):
        children = [doc]
    elif isinstance(doc, list):
        children = doc
    else:
        raise JobError("expand output in JSON is a task object or a list of them", Location(filename, 1, 1))
    job = from_json({"TractorJob": "2.0", "data": {}, "children": children}, filename, check=False)
    return job.subtasks


def check(nodes: tuple) -> None:
    """Raise JobError if the nodes, taken together, would not spool."""
    resolve(Job(subtasks=tuple(nodes)))


__all__ = ["check", "parse_output"]
