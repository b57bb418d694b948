"""Reader of the IDX format (MNIST's files), plain or gzip-compressed, with the header checked."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from suite.errors import UserError

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), and the number of dimensions.
_UBYTE = 0x08


def read_idx(path: Path, expect_ndim: int) -> torch.Tensor:
    """The uint8 array stored in an IDX file, as a tensor; clear errors for wrong or cut files."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises these on truncated or corrupt data
        raise UserError(f"{path}: cannot read ({e}); the file is damaged or incomplete: "
                        "delete it and get it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; "
                        f"expected 0000{_UBYTE:02x}{expect_ndim:02x})")
    if raw[2] != _UBYTE or raw[3] != expect_ndim:
        raise UserError(f"{path}: wrong IDX magic number {raw[:4].hex()}: expected "
                        f"0000{_UBYTE:02x}{expect_ndim:02x} (unsigned bytes, {expect_ndim} dimensions)")
    header = 4 + 4 * expect_ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expect_ndim))
    expected = header + math.prod(shape)  # Python integers: a forged header cannot overflow
    if len(raw) != expected:
        raise UserError(f"{path}: truncated or padded: {len(raw)} bytes, the header {shape} needs "
                        f"{expected}; delete it and get it again")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())
