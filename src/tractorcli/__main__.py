"""`python -m tractorcli PROGRAM [ARGS...]` runs any tractorcli program.

PROGRAM is the program's name with or without the `tractor-` prefix
(`python -m tractorcli dbctl --status`).
"""

from __future__ import annotations

import importlib
import sys

from .cli import PROGRAMS


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = ", ".join(sorted(PROGRAMS))
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m tractorcli PROGRAM [ARGS...]\nprograms: {names}", file=sys.stderr if not args else sys.stdout)
        return 0 if args else 2
    name = args[0] if args[0] in PROGRAMS else f"tractor-{args[0]}"
    if name not in PROGRAMS:
        print(f"tractorcli: unknown program {args[0]!r} (programs: {names})", file=sys.stderr)
        return 2
    module = importlib.import_module(PROGRAMS[name])
    return module.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
