"""The one exception hierarchy and the one table of exit statuses.

Every failure the user can cause or meet is a `TractorError` carrying a
one-line message and the `ExitStatus` the program ends with.  The CLI runner
(`cli/common.py`) is the only place that turns these into text and exit
codes; the core raises them and never prints.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Exit codes of every tractorcli program.

    0-2 follow the usual convention (and Tractor's: its tools exit 2 on a bad
    command line); the rest let scripts tell failures apart.
    """

    OK = 0
    ERROR = 1  # unexpected failure (a bug, or something not classified below)
    USAGE = 2  # bad command line: unknown option, missing or bad value
    CONFIG = 3  # the site configuration is malformed or inconsistent
    NOT_RUNNING = 4  # the database server is not running (e.g. --status)
    STATE = 5  # refused: the server or data directory is in the wrong state
    UNAVAILABLE = 6  # the database cannot be reached or refused the session
    NOT_FOUND = 7  # a file, program or record that was named does not exist
    PERMISSION = 8  # the operating system or the database said no
    SCHEMA = 9  # the database schema does not match this version of tractorcli
    STORAGE = 10  # disk full, read-only file system, I/O error
    BAD_INPUT = 11  # a file or value given to the program is invalid
    JOB_FAILED = 12  # a followed job (tractor-spool --wait) ended with errors
    INVARIANT = 13  # the audit (tractor-dbctl --check, tq audit) found the job database breaking a promise
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class TractorError(Exception):
    """Base of all errors the programs report as a one-line message."""

    status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None, status: ExitStatus | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class UsageError(TractorError):
    status = ExitStatus.USAGE


class ConfigError(TractorError):
    """A configuration file is malformed, or a value in it is invalid.

    The message always names the file (and the line and key when known).
    """

    status = ExitStatus.CONFIG


class ServerNotRunning(TractorError):
    status = ExitStatus.NOT_RUNNING


class StateError(TractorError):
    """An operation was refused because of the state things are in."""

    status = ExitStatus.STATE


class DatabaseUnavailable(TractorError):
    status = ExitStatus.UNAVAILABLE


class NotFound(TractorError):
    status = ExitStatus.NOT_FOUND


class PermissionDenied(TractorError):
    status = ExitStatus.PERMISSION


class SchemaError(TractorError):
    status = ExitStatus.SCHEMA


class StorageError(TractorError):
    status = ExitStatus.STORAGE


class BadInput(TractorError):
    status = ExitStatus.BAD_INPUT


def from_os_error(exc: OSError, doing: str) -> TractorError:
    """Classify an OSError met while `doing` something into our hierarchy."""
    import errno

    where = f": {exc.filename}" if exc.filename else ""
    reason = exc.strerror or str(exc)
    text = f"{doing} failed{where}: {reason}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
        return StorageError(text)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(text)
    if exc.errno == errno.ENOENT:
        return NotFound(text)
    return TractorError(text)
