"""The command-line programs: one module per program, over one core.

`common.py` holds the runner, the context and the shared options; the
program modules import only click at import time, so `--help` and shell
completion stay fast.
"""

# program name -> "module:attribute" of its click command and entry point
PROGRAMS = {
    "tractor-dbctl": "tractorcli.cli.dbctl",
    "tractor-spool": "tractorcli.cli.spool",
    "tractor-engine": "tractorcli.cli.engine",
    "tractor-blade": "tractorcli.cli.blade",
    "tq": "tractorcli.cli.tq",
}
