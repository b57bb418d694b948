"""The cost table's rows (suite/nn/costs.py): every candidate measured, the packed ones really
packed, weight bytes as packed (checked by hand for one shape). No time is asserted."""

import time

import pytest

from suite.kernels import build
from suite.nn.costs import SHAPES, VARIANTS, Shape, layer_costs, packed_weight_bytes


@pytest.fixture(scope="module", autouse=True)
def _kernels():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")


@pytest.mark.parametrize("shape", [Shape("t", "fc 100x40", "linear", 100, 40, 8),
                                   Shape("t", "conv 16-8 3x3 6x6", "conv", 16, 8, 2, 3, 1, 6)])
def test_rows_for_every_candidate(shape):
    def once(fns):  # one call each: the rows, not the times, are tested here
        out = {}
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[k] = [time.perf_counter() - t0]
        return out

    rows = layer_costs(shape, 3, once)
    assert [r["candidate"] for r in rows] == ["float", "emulated binary"] + [f"packed {v}" for v in VARIANTS]
    assert all(r["arithmetic"].startswith("packed") for r in rows if r["candidate"].startswith("packed"))
    assert all(r["ms"] > 0 and r["float_over_this"] > 0 for r in rows)


def test_packed_weight_bytes_by_hand():
    fc = Shape("t", "fc 1024x1024", "linear", 1024, 1024, 200)
    # 16 words a row, 1024 rows (32 panels of 32), 1 bit plane, plus 1024 float scales
    assert packed_weight_bytes(fc, 1) == 8 * 16 * 1024 + 4 * 1024
    conv = Shape("t", "c", "conv", 96, 256, 1, 5, 2, 27)  # 2 words a tap (96 channels), 25 taps
    assert packed_weight_bytes(conv, 2) == 8 * 2 * 25 * 256 * 2 + 4 * 256
    assert len(SHAPES) == 15
