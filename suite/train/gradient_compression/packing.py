"""Bytes on the wire: 2-bit packing of ternary values, and float/int tensors viewed as bytes.

Ternary layout (the TernGrad authors' encoder, github wenwei202/terngrad @ec4f75e9,
terngrad/inception/bingrad_common.py `ternary_encoder`): t in {-1, 0, 1} becomes the code t + 1 in
{0, 1, 2}; the codes, padded with zeros to a multiple of 4, are cut into 4 contiguous quarters
q0..q3 and byte i = q0[i] + 4 q1[i] + 16 q2[i] + 64 q3[i]: 4 values per byte, 2 bits each.
"""

from __future__ import annotations

import torch

CODES_PER_BYTE = 4


def packed_size(n: int) -> int:
    """Bytes holding n ternary values."""
    return -(-n // CODES_PER_BYTE)


def pack_ternary(t: torch.Tensor) -> torch.Tensor:
    """Ternary values (any integer or float dtype, values -1, 0, 1; flat) -> uint8, 4 per byte."""
    n = t.numel()
    codes = torch.zeros(packed_size(n) * CODES_PER_BYTE, dtype=torch.uint8, device=t.device)
    codes[:n] = (t.reshape(-1) + 1).to(torch.uint8)
    q = codes.view(CODES_PER_BYTE, -1)
    return q[0] | (q[1] << 2) | (q[2] << 4) | (q[3] << 6)


def unpack_ternary(packed: torch.Tensor, n: int) -> torch.Tensor:
    """uint8 from `pack_ternary` -> the first n ternary values as int8 in {-1, 0, 1}."""
    shifts = torch.arange(0, 8, 2, dtype=torch.uint8, device=packed.device).view(-1, 1)
    codes = (packed.view(1, -1) >> shifts) & 3  # (4, bytes): the four quarters
    return codes.reshape(-1)[:n].to(torch.int8) - 1


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor's bytes as a flat uint8 view (no copy)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def pad_to_words(b: torch.Tensor, word: int = 4) -> torch.Tensor:
    """uint8 padded with zeros to a multiple of `word` bytes, so that each rank's slice of a
    gathered buffer starts on a float32 / int32 boundary (views, no copies, when decoding)."""
    extra = -b.numel() % word
    return b if not extra else torch.cat([b, b.new_zeros(extra)])
