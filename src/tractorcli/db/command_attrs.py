"""What tq cattr may set on a command, and of which kind (db/ops.py does the setting).

A module of its own so that `tq --help` and completion read it without
importing the database code.
"""

COMMAND_ATTRS = {"argv": "argv", "tags": "list", "envkey": "list", "retryrcodes": "ints", "service": "service",
                 "msg": "text", "metadata": "text", "minrunsecs": "secs", "maxrunsecs": "secs",
                 "minslots": "slots", "maxslots": "slots", "resumepin": "bool"}
COMMAND_ATTR_ALIASES = {"retryrc": "retryrcodes", "retrycodes": "retryrcodes"}
LIST_KINDS = ("argv", "list", "ints")
