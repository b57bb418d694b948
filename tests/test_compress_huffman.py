"""Huffman coding and the relative sparse index (suite/compress/huffman.py), by hand."""

import numpy as np
import torch

from suite.compress import huffman as hf


def test_huffman_code_of_a_small_alphabet():
    lengths = hf.huffman_lengths({0: 5, 1: 2, 2: 1, 3: 1})
    assert lengths == {0: 1, 1: 2, 2: 3, 3: 3}
    code = hf.canonical_code(lengths)
    assert code == {0: (0b0, 1), 1: (0b10, 2), 2: (0b110, 3), 3: (0b111, 3)}
    # 0 10 110 111 -> 010110111, padded: 01011011 10000000
    data = hf.encode([0, 1, 2, 3], code)
    assert data == bytes([0b01011011, 0b10000000])
    assert hf.decode(data, code, 4) == [0, 1, 2, 3]


def test_relative_index_with_a_filler_zero():
    """Nonzero codes at positions 1, 4 and 17, 3-bit differences (at most 8): 17 - 4 = 13 > 8 needs a
    filler entry 8 positions on (code 0), then the remaining difference 5."""
    codes = torch.zeros(20, dtype=torch.long)
    codes[1], codes[4], codes[17] = 5, 7, 3
    index, weights = hf.relative_index(codes, index_bits=3)
    assert index.tolist() == [1, 2, 7, 4] and weights.tolist() == [5, 7, 0, 3]
    assert hf.decode_relative_index(index, weights, 20).tolist() == codes.tolist()
    edge = torch.zeros(17, dtype=torch.long)
    edge[7], edge[16] = 1, 2  # differences 8 (fits) and 9 (one filler, then 1)
    index, weights = hf.relative_index(edge, 3)
    assert index.tolist() == [7, 7, 0] and weights.tolist() == [1, 0, 2]


def test_layer_storage_counts_the_bytes_written():
    codes = torch.zeros(20, dtype=torch.long)
    codes[1], codes[4], codes[17] = 5, 7, 3
    s = hf.layer_storage(codes, weight_bits=3, index_bits=3)
    assert (s.weights, s.nonzero, s.entries) == (20, 3, 4)
    assert s.fixed_index_bytes == 2 and s.fixed_weight_bytes == 2  # 4 x 3 bits -> 12 bits -> 2 bytes
    assert s.codebook_bytes == 4 * 8
    # Huffman on 4 distinct symbols, each once: 2 bits each -> 1 byte per stream
    assert s.huffman_weight_bytes == 1 and s.huffman_index_bytes == 1
    assert hf.fixed_width([5, 7, 0, 3], 3) == bytes([0b10111100, 0b00110000])


def test_entropy_bounds_the_huffman_length():
    rng = np.random.default_rng(0)
    symbols = rng.geometric(0.4, 5000)
    data, code = hf.huffman_stream(symbols)
    h = hf.entropy_bits(symbols)
    assert h <= 8 * len(data) / len(symbols) < h + 1
