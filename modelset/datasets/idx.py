"""IDX files (LeCun's MNIST format, used by MNIST, Fashion-MNIST and KMNIST), gzipped or not.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then
each dimension as a 32-bit integer) followed by the values. Only type 0x08 (unsigned bytes) is
used by these datasets. Whether the bytes sit in a gzip container, and what that container's
header says (file name, time stamp), does not change what is read.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ModelsetError

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


# The most an IDX file may decompress to (MNIST's largest holds 47 MB): a gzip bomb stops here.
MAX_BYTES = 256 << 20


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The file's content, decompressed when it is a gzip stream (by its magic, not its name),
    refused past ``limit`` bytes once decompressed."""
    data = Path(path).read_bytes()
    if data[:2] != GZIP_MAGIC:
        if path.name.endswith(".gz"):
            raise ModelsetError(f"{path}: not a gzip file (no gzip magic number); re-download or re-copy it")
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(limit + 1)
        if len(out) > limit:
            raise ModelsetError(
                f"{path}: decompresses to more than {limit} bytes, more than these datasets hold "
                f"(a gzip bomb or another file); re-download or re-copy it"
            )
        return out
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ModelsetError(
            f"{path}: corrupt gzip stream ({' '.join(str(e).split()) or type(e).__name__}); re-download or re-copy it"
        ) from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file with ``ndim`` dimensions; one line naming the file otherwise."""
    data = read_bytes(path)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise ModelsetError(
            f"{path}: not an IDX file (wrong magic number {data[:4].hex() or 'empty'}); "
            "expected the MNIST-format files *-idx3-ubyte / *-idx1-ubyte"
        )
    if data[2] != UBYTE or data[3] != ndim:
        raise ModelsetError(
            f"{path}: IDX type 0x{data[2]:02x} with {data[3]} dimensions; expected unsigned "
            f"bytes (0x08) with {ndim} ({'images' if ndim == 3 else 'labels'})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ModelsetError(f"{path}: IDX header cut short ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise ModelsetError(
            f"{path}: the header says {' x '.join(map(str, dims))} = {math.prod(dims)} values but "
            f"the file holds {len(data) - header} (truncated or padded); re-download it"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)
