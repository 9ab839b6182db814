"""The one engine client that the Python APIs share (Tractor's `ModuleEngineClient`).

Tractor's `tractor.api.author` and `tractor.api.query` talk to the engine
through one module-level client: a user or an engine address set through
either module is what the other uses.  Here the engine is the site's job
database, so the client holds what is needed to reach it and who is asking:

* `hostname`/`port`: an engine address, read by `config.at_engine`
  (`tractor-engine` and Tractor's engine ports 80, 443, 5600, 8080 mean
  the site's own database server as this machine's configuration says;
  any other host or port is the database server's).  Default:
  `$TRACTOR_ENGINE` (`host[:port]`), else the site's configuration.
* `user`: who `mine` means, the owner of spooled jobs, and whose jobs may
  be operated on.  Default: `$TRACTOR_USER`, else the login name.
* `password`: given to the database server when it asks for one.
  Default: `$TRACTOR_PASSWORD`.
* `configdir` or `settings` (tractorcli's own): which site; default
  `$TRACTOR_CONFIGDIR`, else the default site.  `force`: operations may
  touch other users' jobs where the site's crews allow it (`tq --force`).
* `debug`, `newSession`, `sessionFilename`: accepted for Tractor's code;
  there is no engine session to keep, so they change nothing.  Setting
  `tsid = None` (how code drops a Tractor session) closes the connection;
  the next call opens a new one.

The client opens one database connection on first use (autocommit) and
keeps it until `close()` or a change of site, engine address or password.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..errors import TractorError, UsageError

__all__ = ["EngineClient", "EngineClientError", "InvalidParamError", "ModuleEngineClient", "TransactionError"]


class InvalidParamError(UsageError):
    """setEngineClientParam was given a parameter the client does not have, or a bad value."""


class EngineClientError(TractorError):
    """A request through the client failed (Tractor's name)."""


class TransactionError(EngineClientError):
    """The job database refused or failed a request made through the client (Tractor's name)."""


# parameters that choose the database (a change drops the connection)
_WHERE = ("hostname", "port", "password", "configdir", "settings")
_PARAMS = ("hostname", "port", "user", "password", "debug", "newSession", "sessionFilename",
           "configdir", "settings", "force")


class EngineClient:
    """Where the job database is and who is asking; one connection, opened on first use."""

    def __init__(self) -> None:
        self.hostname: str | None = None
        self.port: int | None = None
        self.user: str | None = None
        self.password: str | None = None
        self.debug = False
        self.newSession = False
        self.sessionFilename: str | None = None
        self.configdir: str | None = None
        self.settings: Any = None  # a config.SiteSettings given directly
        self.force = False
        self._conn: Any = None
        self._site: Any = None  # the resolved SiteSettings

    # -- parameters --

    def setParam(self, **kw: Any) -> None:
        """Set the parameters given (see the module notes); an unknown one raises InvalidParamError."""
        unknown = sorted(k for k in kw if k not in _PARAMS)
        if unknown:
            raise InvalidParamError(f"setEngineClientParam: unknown parameter {', '.join(unknown)} "
                                    f"(known: {', '.join(_PARAMS)})")
        values = {k: v for k, v in kw.items() if v is not None}
        if "port" in values:
            values["port"] = _port(values["port"])
        for k in ("hostname", "user", "password", "configdir", "sessionFilename"):
            if k in values:
                if isinstance(values[k], os.PathLike):
                    values[k] = os.fspath(values[k])
                if not isinstance(values[k], str):
                    raise InvalidParamError(f"setEngineClientParam: {k} must be a string, not "
                                            f"{type(values[k]).__name__}")
        for k in ("debug", "newSession", "force"):
            if k in values:
                values[k] = bool(values[k])
        if any(k in values for k in _WHERE):
            self.close()
            self._site = None
            if "configdir" in values:
                self.settings = None
            elif "settings" in values:
                self.configdir = None
        for k, v in values.items():
            setattr(self, k, v)

    def reset(self) -> None:
        """Back to the defaults (and no connection)."""
        self.close()
        self.__init__()  # type: ignore[misc]

    @property
    def tsid(self) -> str | None:
        """A session id while connected (the database server's process id), else None.

        Assigning None drops the session, as with Tractor's client."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return f"pg-{conn.info.backend_pid}"

    @tsid.setter
    def tsid(self, value: Any) -> None:
        if value is None:
            self.close()

    # -- who and where --

    def owner(self) -> str:
        """The user: the `user` parameter, else $TRACTOR_USER, else the login name."""
        from ..query import default_user

        return self.named_user() or default_user()

    def named_user(self) -> str | None:
        """The user if one was named (the `user` parameter, $TRACTOR_USER); None: whoever is logged
        in (a spool's owner is then the logged-in person, as the database decides)."""
        return self.user or os.environ.get("TRACTOR_USER") or None

    def address(self) -> tuple[str | None, int | None]:
        """The engine address: the parameters, else $TRACTOR_ENGINE, else none (the site's own)."""
        host, port = self.hostname, self.port
        if host is None and port is None:
            host = os.environ.get("TRACTOR_ENGINE") or None
        if host is not None:
            from ..config import split_engine

            h, p = split_engine(host, "engine address")
            host, port = h, port if port is not None else p
        return host, port

    def site(self) -> Any:
        """The site's settings at the engine address (with the password, if one is set)."""
        if self._site is None:
            from ..config import load_settings

            self._site = self.settings_for(self.settings or load_settings(self.configdir))
        return self._site

    def settings_for(self, base: Any, host: str | None = None, port: int | None = None) -> Any:
        """`base` (a site's settings) at the engine address `host`/`port` (none given: the client's,
        else TRACTOR_ENGINE), with the client's password."""
        from ..config import at_engine

        if host is None and port is None:
            host, port = self.address()
        site = at_engine(base, host, port)
        password = self.password or os.environ.get("TRACTOR_PASSWORD") or None
        if password is not None:
            site = dataclasses.replace(site, db=dataclasses.replace(site.db, password=password))
        return site

    # -- the connection --

    def connection(self) -> Any:
        """The open connection to the job database (opened now if need be)."""
        if self._conn is None or self._conn.closed:
            from ..db.connection import CLIENT, connect

            self._conn = connect(self.site(), autocommit=True, purpose=CLIENT)
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def spool(self, jobtext: str, owner: str | None = None, spoolfile: str | None = None,
              spoolhost: str | None = None, cwd: str | None = None, format: str = "alfred") -> str:
        """Spool a job script (Alfred text; Tractor JSON with format='json') and answer as Tractor's
        engine does: the JSON text {"rc": 0, "msg": "job script accepted, jid: N", "jid": N}.  A
        script that does not parse, or a database that refuses, raises TransactionError (the
        project's own error is its `__cause__`)."""
        import json

        from .. import submit
        from ..db.spool import SpoolOptions
        from ..jobs import alfred, jsonjob, model

        if format not in ("alfred", "json"):
            raise InvalidParamError(f"spool: format must be 'alfred' or 'json', not {format!r}")
        try:
            if format == "json":
                job = jsonjob.from_json(jobtext, spoolfile or "<json>")
            else:
                job = alfred.parse(jobtext, spoolfile or "<script>")
            options = SpoolOptions(
                owner=owner or self.named_user(), spoolhost=spoolhost or submit.default_host(),
                spoolfile=spoolfile or "", spoolcwd=(cwd or os.getcwd()).replace("\\", "/"),
                script=jobtext, scriptformat=format)
            jid = submit.spool(self.site(), model.resolve(job), options)
        except TractorError as exc:
            raise TransactionError(str(exc), hint=exc.hint, status=exc.status) from exc
        return json.dumps({"rc": 0, "msg": f"job script accepted, jid: {jid}", "jid": jid})

    def needsPassword(self) -> bool:
        """Whether the database server asks for a password that has not been given."""
        if self.password or os.environ.get("TRACTOR_PASSWORD"):
            return False
        from ..errors import PermissionDenied

        try:
            self.connection()
        except PermissionDenied:
            return True
        except Exception:  # noqa: BLE001 - unreachable is not "needs a password"
            return False
        return False


def _port(v: Any) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise InvalidParamError(f"port must be a TCP port (1-65535), not {v!r}")
    return v


# The one client of this process: tractorcli.api.query, tractorcli.jobs.author
# and the `tractor` package all use it.
ModuleEngineClient = EngineClient()
