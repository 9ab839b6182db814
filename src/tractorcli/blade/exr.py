"""OpenEXR headers, read for `-resumewhile {testcheckpoint exr FILE}`: is FILE a checkpoint image?

Only the header is read (the attributes before the first scanline offset
table), never pixels: a checkpoint of a 4K render is found in microseconds.

An OpenEXR file starts with the magic number 20000630 (76 2f 31 01), a
version field (format version 2 in its low byte; bit 0x1000: several parts,
each with its own header), then the header: attributes, each a name and a
type name (NUL-terminated), a 32-bit little-endian size and that many bytes
of value, ended by an empty name.

The rule (Tractor's documentation says only that the blade "reads the EXR
header for a checkpoint marker"): FILE is a checkpoint when a header has an
attribute whose name, after any prefix ending in `:`, `/` or `.`, is
`checkpoint` (any case; RenderMan-style `renderman:checkpoint`,
`prman.checkpoint` count), and whose value says yes: a non-zero `int`,
`float` or `double`, or a `string` other than "", "0", "false", "no", "off".
A file that is missing, unreadable or not OpenEXR is not a checkpoint (the
command's exit code decides, as for any command); the blade's log says which.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["ExrError", "MAGIC", "read_header", "is_checkpoint", "checkpoint_state", "write_header"]

MAGIC = b"\x76\x2f\x31\x01"
_MULTIPART = 0x1000
_LONG_NAMES = 0x400
_MAX_HEADER = 16 << 20  # a header larger than this is not one we should be reading
_NO = {"", "0", "false", "no", "off"}


class ExrError(ValueError):
    """Not an OpenEXR file, or a damaged header."""


def _cstring(f: BinaryIO, limit: int) -> bytes:
    out = bytearray()
    while True:
        b = f.read(1)
        if not b:
            raise ExrError("the header ends in the middle of a name")
        if b == b"\0":
            return bytes(out)
        out += b
        if len(out) > limit:
            raise ExrError(f"a name longer than {limit} bytes")


def _value(kind: str, data: bytes) -> Any:
    try:
        if kind == "int":
            return struct.unpack("<i", data)[0]
        if kind == "float":
            return struct.unpack("<f", data)[0]
        if kind == "double":
            return struct.unpack("<d", data)[0]
        if kind == "string":
            return data.decode("utf-8", "replace")
        if kind == "stringvector":
            out, i = [], 0
            while i + 4 <= len(data):
                (n,) = struct.unpack_from("<i", data, i)
                out.append(data[i + 4:i + 4 + n].decode("utf-8", "replace"))
                i += 4 + n
            return out
    except struct.error as exc:
        raise ExrError(f"a {kind} attribute of {len(data)} bytes") from exc
    return data  # other types (box2i, chlist, ...): their bytes


def read_header(path: str | Path) -> list[dict[str, tuple[str, Any]]]:
    """Each part's header as {name: (type, value)}.  Raises OSError or ExrError."""
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise ExrError("not an OpenEXR file (no magic number)")
        raw = f.read(4)
        if len(raw) < 4:
            raise ExrError("no version field")
        (version,) = struct.unpack("<I", raw)
        limit = 255 if version & _LONG_NAMES else 31
        parts: list[dict[str, tuple[str, Any]]] = []
        total = 0
        while True:
            header: dict[str, tuple[str, Any]] = {}
            while True:
                name = _cstring(f, limit)
                if not name:
                    break
                kind = _cstring(f, limit).decode("ascii", "replace")
                raw = f.read(4)
                if len(raw) < 4:
                    raise ExrError(f"attribute {name!r}: no size")
                (size,) = struct.unpack("<i", raw)
                total += size
                if size < 0 or total > _MAX_HEADER:
                    raise ExrError(f"attribute {name!r}: a size of {size} bytes")
                data = f.read(size)
                if len(data) < size:
                    raise ExrError(f"attribute {name!r}: the file ends inside its value")
                header[name.decode("utf-8", "replace")] = (kind, _value(kind, data))
            if not header:  # an empty header ends a multi-part file's list
                break
            parts.append(header)
            if not version & _MULTIPART:
                break
        if not parts:
            raise ExrError("no header")
        return parts


def _says_yes(value: Any) -> bool:
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _NO
    return False


def is_checkpoint(path: str | Path) -> bool:
    """The rule above; OSError / ExrError when FILE cannot be read as OpenEXR."""
    for header in read_header(path):
        for name, (_, value) in header.items():
            last = name.replace(":", "/").replace(".", "/").rsplit("/", 1)[-1]
            if last.lower() == "checkpoint" and _says_yes(value):
                return True
    return False


def checkpoint_state(path: str | Path) -> tuple[bool, str]:
    """(is a checkpoint, a line for the task's log)."""
    try:
        yes = is_checkpoint(path)
    except FileNotFoundError:
        return False, f"{path} does not exist: not a checkpoint"
    except (OSError, ExrError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return False, f"{path}: {why}: not a checkpoint"
    if yes:
        return True, f"{path} is a checkpoint image: the command runs again in the next pass"
    return False, f"{path} is a final image"


def write_header(path: str | Path, attributes: dict[str, Any], *, width: int = 1, height: int = 1) -> None:
    """A single-part scanline OpenEXR header (and an empty offset table) with the required
    attributes and `attributes` (int, float, str values): enough for read_header, for tests and
    stand-in renderers."""
    def attr(name: str, kind: str, data: bytes) -> bytes:
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(data)) + data

    box = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    chlist = b"R\0" + struct.pack("<iBBBBii", 1, 0, 0, 0, 0, 1, 1) + b"\0"  # one half channel
    out = bytearray(MAGIC + struct.pack("<I", 2))
    out += attr("channels", "chlist", chlist)
    out += attr("compression", "compression", b"\0")
    out += attr("dataWindow", "box2i", box)
    out += attr("displayWindow", "box2i", box)
    out += attr("lineOrder", "lineOrder", b"\0")
    out += attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
    out += attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
    out += attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
    for name, value in attributes.items():
        if isinstance(value, bool) or isinstance(value, int):
            out += attr(name, "int", struct.pack("<i", int(value)))
        elif isinstance(value, float):
            out += attr(name, "float", struct.pack("<f", value))
        else:
            out += attr(name, "string", str(value).encode())
    out += b"\0"
    out += struct.pack("<Q", 0) * height  # the offset table (no pixel data follows)
    Path(path).write_bytes(bytes(out))
