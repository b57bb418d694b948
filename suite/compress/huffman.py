"""Huffman coding and the sparse-matrix storage of Deep Compression (stage 3: Han, Mao, Dally, ICLR
2016, Sections 2 and 4), with every size counted from bits actually written.

Sparse index (Section 2, Figure 2): a pruned layer's nonzero entries, in row-major order of the
flattened weight, are stored with the difference of their position from the previous entry's
(the first from position -1), in `index_bits` bits as difference - 1 (the authors' decoder:
positions = cumsum(index + 1) - 1). A difference larger than 2^index_bits cannot be written: a
filler entry is inserted 2^index_bits positions on, with weight code 0 (the value 0), as often as
needed ("padding filler zero to prevent overflow").

Weights (Section 3): each entry stores its b-bit cluster code; the layer stores the codebook
(2^b 32-bit values, as the authors' decoder reads them).

Huffman coding (Section 4): the weight codes and the index differences are each given a Huffman
code built from their own frequencies in the layer, and the stream is written bit by bit. The
sizes reported are the lengths of the bytes written; the code tables (one code length per symbol)
are counted separately, as the paper's rates do not state them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch


def huffman_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Code length per symbol of a Huffman code for these counts (a lone symbol gets 1 bit).

    Ties are broken by symbol value, so the code is deterministic."""
    items = [(c, s) for s, c in counts.items() if c > 0]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][1]: 1}
    tie = itertools.count()
    heap = [(c, next(tie), [s]) for c, s in sorted(items, key=lambda cs: (cs[0], cs[1]))]
    heapq.heapify(heap)
    depth = {s: 0 for _, s in items}
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, next(tie), s1 + s2))
    return depth


def canonical_code(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """{symbol: (code, length)} of the canonical prefix code with these lengths."""
    code, prev_len, out = 0, 0, {}
    for s, n in sorted(lengths.items(), key=lambda sl: (sl[1], sl[0])):
        code <<= n - prev_len
        out[s] = (code, n)
        code += 1
        prev_len = n
    return out


def encode(symbols, code: dict[int, tuple[int, int]]) -> bytes:
    """The symbols' codewords written MSB first, the last byte padded with zero bits."""
    bits = []
    for s in symbols:
        value, n = code[int(s)]
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
    return np.packbits(np.array(bits, dtype=np.uint8)).tobytes() if bits else b""


def decode(data: bytes, code: dict[int, tuple[int, int]], count: int) -> list[int]:
    """The first `count` symbols of a stream written by `encode` with the same code."""
    table = {(n, value): s for s, (value, n) in code.items()}
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)) if data else np.zeros(0, np.uint8)
    out, value, n = [], 0, 0
    for b in bits:
        value, n = (value << 1) | int(b), n + 1
        if (n, value) in table:
            out.append(table[(n, value)])
            value, n = 0, 0
            if len(out) == count:
                break
    return out


def fixed_width(symbols, bits: int) -> bytes:
    """The symbols written in `bits` bits each, MSB first (the P+Q storage, actually packed)."""
    arr = np.asarray(symbols, dtype=np.int64)
    if len(arr) and (arr.min() < 0 or arr.max() >= 2**bits):
        raise ValueError(f"a symbol does not fit in {bits} bits")
    shifts = np.arange(bits - 1, -1, -1)
    bitmat = ((arr[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bitmat.flatten()).tobytes() if len(arr) else b""


def relative_index(codes: torch.Tensor, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(index symbols, weight codes) of the sparse stream of a layer's flattened weight codes
    (0 = pruned), filler entries included: symbol = position difference - 1 in [0, 2^b - 1]."""
    flat = codes.detach().flatten().cpu().numpy().astype(np.int64)
    positions = np.flatnonzero(flat)
    span = 2**index_bits
    diffs = np.diff(np.concatenate([[-1], positions]))
    fillers = np.maximum(0, (diffs - 1) // span)  # filler entries before each real one
    n = len(positions) + int(fillers.sum())
    index = np.empty(n, dtype=np.int64)
    weights = np.zeros(n, dtype=np.int64)
    at = 0
    for d, f, p in zip(diffs, fillers, positions, strict=True):
        index[at:at + f] = span - 1
        at += f
        index[at] = d - f * span - 1
        weights[at] = flat[p]
        at += 1
    return index, weights


def decode_relative_index(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """The flattened codes back from the sparse stream (the authors' decoder)."""
    out = np.zeros(size, dtype=np.int64)
    out[np.cumsum(index + 1) - 1] = weights
    return out


@dataclass(frozen=True)
class LayerStorage:
    """Bytes of one compressed layer's weights; every figure from a stream actually written."""

    weights: int  # entries of the dense weight
    nonzero: int  # kept (unpruned) weights
    entries: int  # stored entries: nonzero + fillers
    weight_bits: int
    index_bits: int
    fixed_weight_bytes: int  # P+Q: b-bit codes
    fixed_index_bytes: int  # P+Q: index_bits-bit differences
    huffman_weight_bytes: int  # P+Q+H
    huffman_index_bytes: int
    codebook_bytes: int  # 2^b float32 shared values
    huffman_table_bytes: int  # one code-length byte per symbol of each alphabet (not in the paper's rates)

    @property
    def dense_bytes(self) -> int:
        return 4 * self.weights

    @property
    def pq_bytes(self) -> int:
        return self.fixed_weight_bytes + self.fixed_index_bytes + self.codebook_bytes

    @property
    def pqh_bytes(self) -> int:
        return self.huffman_weight_bytes + self.huffman_index_bytes + self.codebook_bytes

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(dense_bytes=self.dense_bytes, pq_bytes=self.pq_bytes, pqh_bytes=self.pqh_bytes)
        out["huffman_weight_bits_per_entry"] = 8 * self.huffman_weight_bytes / max(self.entries, 1)
        out["huffman_index_bits_per_entry"] = 8 * self.huffman_index_bytes / max(self.entries, 1)
        return out


def huffman_stream(symbols: np.ndarray) -> tuple[bytes, dict[int, tuple[int, int]]]:
    code = canonical_code(huffman_lengths(Counter(int(s) for s in symbols)))
    return encode(symbols, code), code


def layer_storage(codes: torch.Tensor, weight_bits: int, index_bits: int) -> LayerStorage:
    """Write a layer's codes (0 = pruned) as the paper stores them, fixed-width and Huffman-coded,
    and return the byte counts; decodes the Huffman streams back and checks them."""
    index, weights = relative_index(codes, index_bits)
    h_weights, w_code = huffman_stream(weights)
    h_index, i_code = huffman_stream(index)
    if decode(h_weights, w_code, len(weights)) != weights.tolist() or \
            decode(h_index, i_code, len(index)) != index.tolist():
        raise AssertionError("Huffman round trip failed")  # a bug here, not a user error
    return LayerStorage(
        weights=codes.numel(), nonzero=int((codes != 0).sum()), entries=len(index), weight_bits=weight_bits,
        index_bits=index_bits, fixed_weight_bytes=len(fixed_width(weights, weight_bits)),
        fixed_index_bytes=len(fixed_width(index, index_bits)), huffman_weight_bytes=len(h_weights),
        huffman_index_bytes=len(h_index), codebook_bytes=4 * 2**weight_bits,
        huffman_table_bytes=len(w_code) + len(i_code))


def entropy_bits(symbols: np.ndarray) -> float:
    """Shannon entropy per symbol of the empirical distribution (the bound a Huffman code is within
    one bit of): for context beside the bytes written."""
    counts = np.bincount(np.asarray(symbols, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def bits_per(nbytes: int, count: int) -> float:
    return 8 * nbytes / count if count else math.nan
