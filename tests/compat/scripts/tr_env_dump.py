#!/usr/bin/env python
"""Farm-side helper, as pipeline tasks are written: find out which job, task and command this is
from the TR_ENV_* variables the blade sets, and write them to OUTDIR/J<jid>-T<tid>-C<cid>.json."""

from __future__ import print_function

import json
import os
import sys


def main():
    outdir = sys.argv[1]
    jid = int(os.environ["TR_ENV_JID"])
    tid = int(os.environ["TR_ENV_TID"])
    cid = int(os.environ["TR_ENV_CID"])
    seen = {k: v for k, v in os.environ.items() if k.startswith("TR_ENV_")}
    seen["SHOT"] = os.environ.get("SHOT")
    seen["cwd"] = os.getcwd()
    path = os.path.join(outdir, "J%d-T%d-C%d.json" % (jid, tid, cid))
    with open(path, "w") as f:
        json.dump(seen, f, sort_keys=True)
    print("wrote %s" % path)
    print("TR_PROGRESS 100%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
