#!/usr/bin/env python
"""Submit a shot's lighting job to the farm, the way studio submitters do.

    submit_shot.py [--shot sh010] [--layers bg,fg,fx] [--frames 1-3] [--dry-run]

Every layer has a "render" task (titles repeat across layers, ids do not);
each layer's comp task waits on that layer's render through an Instance.
The owner is $TRACTOR_USER (as RenderMan for Maya reads it), else the login;
the engine is $TRACTOR_ENGINE (host:port), else tractor-engine:80.
"""

from __future__ import print_function

import argparse
import getpass
import json
import os
import socket
import sys

import tractor.api.author as author


def build_job(shot, layers, first, last):
    job = author.Job(
        title="%s lighting v003" % shot,
        priority=float("87.5"),
        projects=["ProjectX"],
        envkey=["setenv SHOT=%s" % shot, "rez-pkgs=nuke-13.2"],
        metadata=json.dumps({"shot": shot, "version": 3, "layers": layers}, sort_keys=True),
        serialsubtasks=False,
        spoolcwd="/shows/projx/%s/lighting" % shot,
        comment="submitted by submit_shot.py",
    )

    setup = author.Task(title="setup", id="%s_setup" % shot)
    setup.newCommand(argv="mkdir -p renders comps", service="PixarRender")
    job.addChild(setup)

    final = job.newTask(title="comp %s" % shot, id="%s_final" % shot, argv="nuke -x comp.nk")

    renders = {}
    for layer in layers:
        grp = author.Task(title="layer %s" % layer, id="layer_%s" % layer)
        final.addChild(grp)
        # the same title under every layer; an id only where the pipeline names it
        render = author.Task(title="render")
        if layer != layers[-1]:
            render.id = "render_%s" % layer
        render.addCommand(author.Command(
            argv=["prman", "-t", 4, "-p", True, "-Progress", "%s/%s.rib" % (layer, shot)],
            retryrc=range(0, 11),
            service="PixarRender",
            tags=["prman"],
        ))
        if layer == layers[0]:
            frames = author.Iterate()
            frames.varname = "frame"
            frames.frm = first
            frames.to = last
            frames.by = 1
            frames.addToTemplate(author.Task(
                title="%s frame $frame" % layer,
                argv=["prman", "-Progress", "%s/%s.$frame.rib" % (layer, shot)]))
            render.addChild(frames)
        grp.addChild(render)
        renders[layer] = render

    for layer in layers:
        comp = author.Task(title="comp %s" % layer, id="comp_%s" % layer)
        comp.addCommand(author.Command(argv=["nuke", "-x", "comp_%s.nk" % layer, 1.5]))
        render = renders[layer]
        if render.id:
            # titles repeat across layers: the Instance names the render's id
            comp.addChild(author.Instance(title=render.id))
        # and the task object itself, already parented: the API makes an Instance
        comp.addChild(render)
        final.addChild(comp)

    job.newCleanup(argv=["rm", "-rf", "/tmp/%s_scratch" % shot])
    job.newPostscript(argv="notify --done %s" % shot, when="done")
    job.newPostscript(argv=["notify", "--error", shot, 3], when="error")
    return job


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shot", default="sh010")
    ap.add_argument("--layers", default="bg,fg,fx")
    ap.add_argument("--frames", default="1-3")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    first, last = (int(x) for x in args.frames.split("-"))
    job = build_job(args.shot, args.layers.split(","), first, last)
    if args.dry_run:
        print(job.asTcl())
        return 0
    owner = os.environ.get("TRACTOR_USER") or getpass.getuser()
    # the engine as RenderMan for Maya finds it: TRACTOR_ENGINE split by hand
    engine, _, port = os.environ.get("TRACTOR_ENGINE", "tractor-engine:80").partition(":")
    try:
        jid = job.spool(block=True, owner=owner, spoolfile=os.path.abspath(__file__),
                        spoolhost=socket.gethostname(), hostname=engine, port=int(port or 80))
    except author.SpoolError as err:
        print("Spool error: %s" % err, file=sys.stderr)
        return 2
    if jid:
        print("Submitted job %d." % jid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
