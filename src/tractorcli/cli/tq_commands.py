"""tq's command operations: chkeys and cattr (reference section 2.3, "Command operations").

Targets are commands: a clause over commands, or the short form ``JID CID
[CID ...]``.  The owner check, the prompt and the output are those of every
tq operation (tq._operate).  An edit applies to the command's next launch;
a command waiting in the ready queue is matched against its new service
expression at once (db/ops.py).

Choices where Tractor's reference is silent:
* chkeys stores the expression as given (trimmed); blades match the
  canonical effective one, command AND job -service AND NOT job -avoid, as
  at spool time;
* cattr -v on argv is split like a Tcl list (the way RemoteCmd {argv} is
  written in a job script): ``-v 'prman -Progress {my file.rib}'``; -a/-r
  take comma-separated words (argv: -a appends, -r removes every
  occurrence; other lists: -a adds what is not there yet);
* cattr also sets metadata, minslots, maxslots and resumepin; an empty -v
  clears minrunsecs, maxrunsecs, minslots and maxslots (no bound).

Imports click only: the database work is in db/ops.py, imported when run.
"""

from __future__ import annotations

import click

from ..db.command_attrs import COMMAND_ATTRS
from .tq_core import _actor, _op_command, _operate

_SORT = ("jid", "cid")


@_op_command("chkeys", "Change the service key expression of commands (JID CID [CID...], or a clause): "
             "which blades may run them from their next launch on.",
             "  tq chkeys -k 'PixarRender && !slow' 12 3\n"
             "  tq chkeys --keystr linux,bigmem \"jid=12 and service like prman\"\n"
             "  tq --yes chkeys -k '' 12 3 4              any blade",
             extra=(click.option("-k", "--keystr", required=True, metavar="EXPR",
                                 help="The new service key expression, e.g. 'linux && !slow' ('' any blade)."),), entity="command")
def _chkeys(words, keystr) -> int:
    from ..db import ops

    service = ops.check_service(keystr, "-k/--keystr")
    return _operate("command", words, question="Change the service keys of this command?", word="keys changed",
                    sortby=_SORT,
                    act=lambda conn, rows: ops.set_command_service(conn, rows[0]["jid"], rows[0]["cid"], service,
                                                                   _actor()))


@_op_command("cattr", f"Set a command attribute ({', '.join(COMMAND_ATTRS)}) for the commands' next launch.",
             "  tq cattr -k argv -v 'prman -Progress {my file.rib}' 12 3\n"
             "  tq cattr -k tags -a hero,fx 12 3\n"
             "  tq cattr -k retryrcodes -v 2,3 \"jid=12 and state=error\"\n"
             "  tq cattr -k maxrunsecs -v 3600 12 3\n"
             "  tq cattr -k service -v linux 12 3           (as tq chkeys)",
             short_a=False,
             extra=(click.option("-k", "--key", required=True, metavar="ATTR",
                                 help="The attribute: " + ", ".join(COMMAND_ATTRS) + "."),
                    click.option("-v", "--value", metavar="VALUE",
                                 help="Its new value (argv: a Tcl list; tags, envkey, retryrcodes: comma-separated; "
                                      "'' clears run time and slot bounds)."),
                    click.option("-a", "--add", multiple=True, metavar="LIST",
                                 help="Add to a list attribute (argv, tags, envkey, retryrcodes)."),
                    click.option("-r", "--remove", multiple=True, metavar="LIST",
                                 help="Remove from a list attribute.")), entity="command")
def _cattr(words, key, value, add, remove) -> int:
    from ..db import ops

    name, kind = ops.command_attr(key)
    if (value is None) == (not add and not remove):
        raise click.UsageError("give -v/--value, or -a/--add and/or -r/--remove")
    if (add or remove) and kind not in ops.LIST_KINDS:
        raise click.UsageError(f"-a/-r need a list attribute (argv, tags, envkey, retryrcodes), and {name} is not one")
    new = ops.command_value(name, value) if value is not None else None
    plus = [x for a in add for x in ops.command_items(name, a)]
    minus = [x for r in remove for x in ops.command_items(name, r)]
    return _operate("command", words, question=f"Change {name} of this command?", word=f"{name} changed",
                    sortby=_SORT,
                    act=lambda conn, rows: ops.set_command_attr(conn, rows[0]["jid"], rows[0]["cid"], name, new,
                                                                add=plus, remove=minus, actor=_actor()))
