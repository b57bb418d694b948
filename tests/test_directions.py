"""Forward-gradient directions (suite/train/directions.py): Philox4x32-10 matches the Random123
known answers, the draws are a pure function of (key, stream, element), the same on any thread
count and on every instruction set the CPU runs, and have the distributions they claim."""

import contextlib
import math

import pytest
import torch

from suite.train import directions

pytestmark = pytest.mark.skipif(directions.kernels() is None, reason=f"kernels {directions.status()}")
ISAS = directions.kernels().isas() if directions.kernels() is not None else []


@contextlib.contextmanager
def isa(name):
    before = directions.kernels().use_isa(name)
    try:
        yield
    finally:
        directions.kernels().use_isa(before)


def test_the_widest_instruction_set_is_in_use_and_others_are_refused_by_name():
    k = directions.kernels()
    assert k.isa() == ISAS[0] and ISAS[-1] == "portable"
    assert directions.status() == f"philox ({ISAS[0]})"
    with pytest.raises(RuntimeError, match="unknown instruction set sse9"):
        k.use_isa("sse9")


def test_philox_known_answers():
    """Random123's kat_vectors for philox4x32 10 (counter, key -> output)."""
    k = directions.kernels()
    assert k.philox4x32([0, 0, 0, 0], [0, 0]) == [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    assert k.philox4x32([0xffffffff] * 4, [0xffffffff] * 2) == [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    assert k.philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]) == \
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]


@pytest.mark.parametrize("name", ISAS)
def test_elements_are_the_philox_words_of_their_block(name):
    """Element e of stream s under key K: word e % 4 of Philox((e div 4, 0, s, 0), K); rademacher
    is its top bit, gaussian the Box-Muller pair of words (0, 1) or (2, 3), computed here by hand."""
    k = directions.kernels()
    key, stream = 0x0123456789ABCDEF, 5
    out = torch.empty(203)
    gauss = torch.empty(203, dtype=torch.float64)
    with isa(name):
        directions.fill(out, key, stream, "rademacher")
        directions.fill(gauss, key, stream, "gaussian")
    for e in (0, 1, 2, 3, 4, 63, 64, 65, 131, 202):
        words = k.philox4x32([e // 4, 0, stream, 0], [key & 0xFFFFFFFF, key >> 32])
        assert out[e] == (1.0 if words[e % 4] >> 31 else -1.0)
        pair = e % 4 // 2 * 2
        u1 = ((words[pair] >> 8) + 1) * 2.0**-24
        u2 = (words[pair + 1] >> 8) * 2.0**-24
        r, t = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
        assert gauss[e].item() == pytest.approx(r * (math.cos(t) if e % 2 == 0 else math.sin(t)), abs=2e-5)


def test_the_same_on_any_thread_count_and_regenerable():
    before = torch.get_num_threads()
    draws = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            v = torch.empty(300_001)
            draws.append(directions.fill(v, 42, 3, "gaussian").clone())
    finally:
        torch.set_num_threads(before)
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], directions.fill(torch.empty(300_001), 42, 4, "gaussian"))  # another stream
    scaled = directions.fill(torch.empty(300_001), 42, 3, "gaussian", scale=-0.5)
    assert torch.allclose(scaled, -0.5 * draws[0])


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_moments(distribution):
    v = directions.fill(torch.empty(1_000_000, dtype=torch.float64), 7, 0, distribution)
    assert abs(v.mean()) < 5e-3 and abs(v.var() - 1) < 5e-3
    if distribution == "gaussian":
        assert abs((v**4).mean() - 3) < 0.03  # kurtosis of a normal
        assert abs((v.abs() < 1).double().mean() - 0.6827) < 3e-3
    else:
        assert set(v.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("name", ISAS[:-1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_instruction_set_draws_the_portable_numbers(name, dtype):
    """At lengths that end inside a group of 16 blocks and at one many groups long: the same words,
    so the same signs bit for bit; gaussians bit for bit on AVX2, within float32 rounding on AVX-512
    (it fuses the polynomials' multiply-adds)."""
    for n in (1, 3, 63, 64, 65, 203, 300_001):
        for distribution in ("gaussian", "rademacher"):
            with isa("portable"):
                expected = directions.fill(torch.empty(n, dtype=dtype), 0xFEDCBA9876543210, 11, distribution, 0.5)
            with isa(name):
                got = directions.fill(torch.empty(n, dtype=dtype), 0xFEDCBA9876543210, 11, distribution, 0.5)
            if distribution == "gaussian" and name == "avx512":
                torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(got, expected), (n, distribution)
