"""The text of a job file: UTF-8 of at most MAX_SCRIPT_BYTES, or a one-line error.

A file over 128 MiB is refused before it is read: parsing runs at about
10 MB/s and holds about 8 bytes of memory per byte of script, so the limit
bounds both (about 13 s and 1.1 GB; a 128 MiB script is some 1,100,000
one-command tasks, the largest job issue 14 asks to spool).  What a
script builds is bounded apart (tcl.MAX_VALUE, 64 Mi characters a value).

A script that is not UTF-8 is refused rather than guessed at: read as Latin-1
(what every byte would map to) a title or path in another encoding would
reach the database and the blades' command lines silently changed.  The
error names the place (file:line:column, the column counted in characters
of the valid text before it) and the byte, and says how to convert.
"""

from __future__ import annotations

from pathlib import Path

from .model import JobError, Location
MAX_SCRIPT_BYTES = 128 * 2**20


def read_script(path: str) -> str:
    """The job file's text (OSError when it cannot be read)."""
    with open(path, "rb") as f:
        size = Path(path).stat().st_size
        if size > MAX_SCRIPT_BYTES:
            raise JobError(f"the script has {size:,} bytes; a job script may have at most {MAX_SCRIPT_BYTES:,}",
                           Location(path, 1, 1))
        return decode_script(f.read(MAX_SCRIPT_BYTES + 1), path)


def decode_script(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise JobError(f"the script is not UTF-8 text (byte 0x{data[exc.start]:02x})", Location(path, line, col),
                       hint=f"convert it, e.g. iconv -f latin1 -t utf-8 {path}") from None


__all__ = ["MAX_SCRIPT_BYTES", "decode_script", "read_script"]
