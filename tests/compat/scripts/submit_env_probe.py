#!/usr/bin/env python
"""Submit a small job whose commands record what the farm tells them (tr_env_dump.py).

    submit_env_probe.py OUTDIR
"""

from __future__ import print_function

import os
import sys

import tractor.api.author as author

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    outdir = os.path.abspath(sys.argv[1])
    dump = [sys.executable, os.path.join(HERE, "tr_env_dump.py"), outdir]
    job = author.Job(title="sh030 env probe", projects=["ProjectX", "sh030"],
                     envkey=["setenv SHOT=sh030"], spoolcwd=outdir)
    first = job.newTask(title="probe", argv=dump)
    first.newCommand(argv=dump)           # a second command of the same task
    job.newTask(title="probe", argv=dump)  # and a task of the same title
    jid = job.spool(spoolfile=os.path.abspath(__file__))
    print("Submitted job %d." % jid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
