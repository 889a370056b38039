"""Array frames over raw file descriptors: the wire between a scorer and a model server.

A frame is

    b"ARF1" | header length (uint32, big-endian) | header | body

where the header is UTF-8 JSON, `{"op": str, "shape": [int, ...], "dtype": str}`, and the
body is the array's bytes in C order, little-endian, exactly prod(shape) * itemsize long.
The scorer sends `tokens` frames (int64, B x T) and a server answers each with one `logits`
frame (float32, B x T x V). Closing the pipe ends the conversation: EOF where a frame would
start is a clean end, EOF inside a frame is an error.

The reader trusts nothing it is sent. A header is at most MAX_HEADER bytes and is checked
(known op, known dtype, small non-negative dimensions) before any body byte is read, and the
caller states the largest body it will accept, so a peer cannot make the reader allocate
more than the caller expects. Bodies are read straight into a preallocated array.

numpy only: the harness side must work without torch.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

MAGIC = b"ARF1"
PREFIX = struct.Struct(">4sI")  # magic, header length
MAX_HEADER = 64 * 1024
MAX_DIMS = 8
OPS = ("tokens", "logits")
DTYPES: dict[str, np.dtype[Any]] = {"int64": np.dtype("<i8"), "float32": np.dtype("<f4")}
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged F_SETPIPE_SZ
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in the fcntl module only from Python 3.10


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame, or hung up mid-frame."""


@dataclass(frozen=True)
class Header:
    op: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * DTYPES[self.dtype].itemsize


def grow_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Best effort: a 1 MiB pipe buffer instead of 64 KiB means fewer context switches per
    logits frame. Does nothing on other systems, on non-pipes, or when refused."""
    if sys.platform != "linux":
        return
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)  # a pipe may take only part of a large write
        view = view[written:]


def _read_into(fd: int, view: memoryview) -> int:
    """Fill view from fd; returns how many bytes arrived before EOF (len(view) if all)."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return got
        got += n
    return got


def write_frame(fd: int, op: str, array: np.ndarray) -> None:
    """Send one frame; the array is converted to the wire's little-endian C layout."""
    dtype = array.dtype.name  # "int64" for either byte order
    if op not in OPS or dtype not in DTYPES:
        raise ValueError(f"cannot send op {op!r} with dtype {array.dtype}")
    body = np.ascontiguousarray(array, dtype=DTYPES[dtype])
    header = json.dumps({"op": op, "shape": list(body.shape), "dtype": dtype}).encode()
    _write_all(fd, PREFIX.pack(MAGIC, len(header)) + header)
    if body.nbytes:
        _write_all(fd, body.data.cast("B"))


def read_header(fd: int) -> Header | None:
    """The next frame's header, validated; None on a clean EOF before the frame."""
    prefix = bytearray(PREFIX.size)
    got = _read_into(fd, memoryview(prefix))
    if got == 0:
        return None
    if got < PREFIX.size:
        raise ProtocolError("the pipe closed inside a frame prefix")
    magic, length = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"not a frame: starts with {bytes(prefix)!r}")
    if length > MAX_HEADER:
        raise ProtocolError(f"header of {length} bytes (at most {MAX_HEADER})")
    raw = bytearray(length)
    if _read_into(fd, memoryview(raw)) < length:
        raise ProtocolError("the pipe closed inside a frame header")
    try:
        fields = json.loads(raw.decode("utf-8"))
        op, shape, dtype = fields["op"], fields["shape"], fields["dtype"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        raise ProtocolError(f"unreadable frame header: {e}") from None
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}")
    if dtype not in DTYPES:
        raise ProtocolError(f"unsupported dtype {dtype!r} (expected one of {sorted(DTYPES)})")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(
            type(d) is int and 0 <= d < 2**31 for d in shape)):
        raise ProtocolError(f"bad shape {shape!r}")
    return Header(op, tuple(shape), dtype)


def read_body(fd: int, header: Header, max_bytes: int) -> np.ndarray:
    """The array the header announced, if it is at most max_bytes; read in place."""
    if header.nbytes > max_bytes:
        raise ProtocolError(f"a {header.op} frame of {header.nbytes} bytes (shape "
                            f"{header.shape}) is more than the {max_bytes} expected")
    array = np.empty(header.shape, dtype=DTYPES[header.dtype])
    if array.nbytes and _read_into(fd, array.data.cast("B")) < array.nbytes:
        raise ProtocolError(f"the pipe closed inside a {header.op} frame's body")
    return array


def read_frame(fd: int, max_bytes: int) -> tuple[str, np.ndarray] | None:
    """(op, array) of the next frame, or None on a clean EOF."""
    header = read_header(fd)
    return None if header is None else (header.op, read_body(fd, header, max_bytes))
