"""Tractor's `tractor.base.EngineClient`, for code that uses the client directly.

    import tractor.base.EngineClient as EngineClient

    client = EngineClient.EngineClient()
    client.setParam(hostname="tractor-engine", port=80, user="ann")
    reply = json.loads(client.spool(job.asTcl()))   # {"rc": 0, "msg": "job script accepted, jid: 12", "jid": 12}
    client.close()

`TheEngineClient` (also `tractor.api.author.base.ModuleEngineClient`) is
the one client `tractor.api.author` and `tractor.api.query` share; the class
makes others.  It is tractorcli's own client (`tractorcli.api.client`):
engine addresses name the site's job database.
"""

from tractorcli.api.client import EngineClient, EngineClientError, InvalidParamError, TransactionError
from tractorcli.api.client import ModuleEngineClient as TheEngineClient

__all__ = ["EngineClient", "EngineClientError", "InvalidParamError", "TheEngineClient", "TransactionError"]
