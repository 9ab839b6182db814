"""The options of the job script operators (Job, Task, RemoteCmd/Cmd): which field each sets and
the kind of value it takes.  Read by the parser (jobs/alfred.py) and its fast path
(jobs/fastalf.py), which must agree on them.
"""

from __future__ import annotations

# kind names: str, int, float, bool, list, intlist, argv, nodes, cmds, assigns,
# dirmaps, after, expand, when, id, samehost
JOB_OPTS = {
    "-title": ("title", "str"), "-after": ("after", "after"), "-afterjids": ("afterjids", "intlist"),
    "-subtasks": ("subtasks", "nodes"), "-cleanup": ("cleanup", "cmds"), "-postscript": ("postscript", "cmds"),
    "-atleast": ("atleast", "int"), "-atmost": ("atmost", "int"), "-maxactive": ("maxactive", "int"),
    "-tags": ("tags", "list"), "-projects": ("projects", "list"), "-tier": ("tier", "str"),
    "-service": ("service", "str"), "-avoid": ("avoid", "list"), "-envkey": ("envkey", "envkey"),
    "-priority": ("priority", "float"), "-pbias": ("priority", "float"), "-crews": ("crews", "list"),
    "-etalevel": ("etalevel", "int"), "-comment": ("comment", "str"), "-metadata": ("metadata", "str"),
    "-editpolicy": ("editpolicy", "str"), "-dirmaps": ("dirmaps", "dirmaps"), "-init": ("assignments", "assigns"),
    "-serialsubtasks": ("serialsubtasks", "bool"), "-paused": ("paused", "bool"), "-spoolcwd": ("spoolcwd", "str"),
    "-whendone": ("post_done", "legacy_post"), "-whenerror": ("post_error", "legacy_post"),
}
JOB_ALIASES = {"-project": "-projects", "-pause": "-paused"}

TASK_OPTS = {
    "-title": ("title", "str"), "-subtasks": ("subtasks", "nodes"), "-cmds": ("cmds", "cmds"),
    "-cleanup": ("cleanup", "cmds"), "-chaser": ("chaser", "argv"), "-preview": ("preview", "argv"),
    "-service": ("service", "str"), "-id": ("id", "id"), "-serialsubtasks": ("serialsubtasks", "bool"),
    "-resumeblock": ("resumeblock", "bool"), "-atleast": ("atleast", "int"), "-atmost": ("atmost", "int"),
    "-metadata": ("metadata", "str"),
}

CMD_OPTS = {
    "-service": ("service", "str"), "-tags": ("tags", "list"), "-atleast": ("atleast", "int"),
    "-atmost": ("atmost", "int"), "-samehost": ("samehost", "samehost"), "-envkey": ("envkey", "envkey"),
    "-id": ("id", "id"), "-refersto": ("refersto", "id"), "-expand": ("expand", "expand"),
    "-msg": ("msg", "str"), "-retryrc": ("retryrc", "intlist"), "-minrunsecs": ("minrunsecs", "float"),
    "-maxrunsecs": ("maxrunsecs", "float"), "-resumewhile": ("resumewhile", "list"),
    "-resumepin": ("resumepin", "bool"), "-when": ("runtype", "when"), "-metrics": ("metrics", "str"),
    "-metadata": ("metadata", "str"),
}

WHEN = {"done": "post_done", "error": "post_error", "always": "post_always"}
