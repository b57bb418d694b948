"""The bit-packed kernels (suite/kernels) against torch's fastest float32 path, as ratios measured in one
process (candidates interleaved, order rotating: benchmarks/timing.py).
Run on a quiet machine: `pytest benchmarks/test_lowbit_kernels.py --benchmark-json=...`.

Float candidates for a product: torch.matmul, oneDNN's linear with its weight pre-packed for the
batch (torch.ops.mkldnn._linear_pointwise, inductor's path) and torch._C._nn.mkldnn_linear (input
converted to oneDNN's layout each call); "float" in a ratio is the fastest of them. The packed
operands of a product are packed once (weights as panels, inputs as rows), as deployed weights and
the previous layer's packed output would be; convolutions pack their float input on every call.
Ratios are named A_over_B (the median of the per-round ratios), the watched candidate on top as the
gate reads them: xnor_over_float is the packed product's time over float's (its inverse the speed-up).
"""

import pytest
import torch
import torch.nn.functional as F
from timing import chunked, interleaved_samples, record_chunks

import suite.kernels as K
from suite.kernels import build, dispatch
from suite.kernels.conv import conv2d as packed_conv2d
from suite.kernels.conv import pack_weights
from suite.kernels.matmul import linear

pytestmark = pytest.mark.skipif(build.load() is None, reason="the bit-packed kernels could not be built")


def _float_candidates(x: torch.Tensor, w: torch.Tensor) -> dict:
    wt = w.t()
    fns = {"matmul": lambda: torch.matmul(x, wt)}
    try:
        packed_w = torch.ops.mkldnn._reorder_linear_weight(w, x.shape[0])
        torch.ops.mkldnn._linear_pointwise(x, packed_w, None, "none", [], "")
        fns["onednn_packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed_w, None, "none", [], "")
    except (AttributeError, RuntimeError):
        pass
    try:
        wm = w.to_mkldnn()
        torch._C._nn.mkldnn_linear(x.to_mkldnn(), wm, None)
        fns["mkldnn_linear"] = lambda: torch._C._nn.mkldnn_linear(x.to_mkldnn(), wm, None)
    except RuntimeError:
        pass
    return fns


def _with_float_best(samples: dict, float_names) -> dict:
    best = min(float_names, key=lambda k: min(samples[k]))
    return dict(samples, float=samples[best]), best


def _isas():
    return [n for n in ("avx512_vpopcntdq", "avx512bw", "avx2") if n in K.supported()]


def _register_bound(units, isa):
    return lambda: build.load().xnor_register_bound(units, isa)


def _xnor(name, a, b):
    def call():
        with K.forced(name):
            return K.xnor_matmul(a, b)
    return call


@pytest.mark.parametrize("batch", [200, 1])
def test_xnor_matmul_1024(benchmark, batch):
    """200 x 1024 times 1024 x 1024 (the MNIST MLP's hidden layer at the paper's batch), and one row
    called from Python (inference, batch 1). Every build the CPU has; the default one as `xnor`. At
    batch 200, also `register_bound_<build>` for AVX-512 VPOPCNTDQ and AVX2: the product's count of that
    build's tile instructions on registers alone, no loads and no epilogue (suite/kernels/lowbit.h)."""
    torch.manual_seed(0)
    x, w = torch.randn(batch, 1024), torch.randn(1024, 1024)
    a, b = K.pack_signs(x), K.pack_signs(w, "panels")
    fns = _float_candidates(x, w)
    floats = list(fns)
    fns["xnor"] = lambda: K.xnor_matmul(a, b)
    for name in _isas():
        fns[f"xnor_{name}"] = _xnor(name, a, b)
    # at batch 200: each build's tile instructions on registers alone, the product's count of them (a
    # unit: a tile's rows x its lanes x one word, suite/kernels/lowbit.h)
    tiles = {"avx512_vpopcntdq": (4, 32), "avx2": (7, 4)}
    bounds = [name for name in tiles if name in _isas()] if batch > 1 else []
    for name in bounds:
        rows, lanes = tiles[name]
        units = -(-batch // rows) * -(-w.shape[0] // lanes) * a.words.shape[-1]
        fns[f"register_bound_{name}"] = _register_bound(units, dispatch.ISAS.index(name))
    want = (torch.where(x >= 0, 1.0, -1.0) @ torch.where(w >= 0, 1.0, -1.0).T).int()
    assert torch.equal(fns["xnor"](), want)  # correctness, not time
    fns, n = chunked(fns, 0.002)
    samples = interleaved_samples(fns, 25 if batch > 1 else 40)
    samples, best = _with_float_best(samples, floats)
    pairs = [("xnor", "float")] + [("xnor", f) for f in floats] + [(f"xnor_{n}", "float") for n in _isas()]
    for name in bounds:  # how near each build runs to its instructions' bound, and the most it could gain
        pairs += [(f"xnor_{name}", f"register_bound_{name}"), (f"register_bound_{name}", "float")]
    record_chunks(benchmark, samples, n, pairs,
                  unlike=tuple(k for k in samples if k.startswith(("xnor", "register_bound"))),
                  float_best=best, kernels=K.status(), shape=[batch, 1024, 1024])


ALEXNET = {"conv3": (256, 384), "conv4": (384, 384), "conv5": (384, 256)}  # 3x3, padding 1, 13 x 13 maps


@pytest.mark.parametrize("layer", list(ALEXNET))
@pytest.mark.parametrize("batch", [16])
def test_binary_conv_alexnet(benchmark, layer, batch):
    """AlexNet's conv3-conv5 (XNOR-Net's network; 13 x 13 maps at 224 x 224 input): float conv2d
    against the packed binary convolution from the float input (its signs packed on every call) with
    alpha per channel and a bias, float output: a whole XNOR layer's product, K map aside."""
    cin, cout = ALEXNET[layer]
    torch.manual_seed(0)
    x, w, bias = torch.randn(batch, cin, 13, 13), torch.randn(cout, cin, 3, 3), torch.randn(cout)
    alpha = w.abs().mean((1, 2, 3))
    cw = pack_weights(w, K.Signs())
    fns = {"float": lambda: F.conv2d(x, w, bias, 1, 1),
           "packed": lambda: packed_conv2d(x, K.Signs(), cw, bias, alpha, 1, 1)}
    for name in _isas():
        def call(name=name):
            with K.forced(name):
                return packed_conv2d(x, K.Signs(), cw, bias, alpha, 1, 1)
        fns[f"packed_{name}"] = call
    want = F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0), None, 1, 1)
    assert torch.allclose(fns["packed"](), want * alpha.view(-1, 1, 1) + bias.view(-1, 1, 1), rtol=1e-5, atol=1e-4)
    fns, n = chunked(fns, 0.002)
    samples = interleaved_samples(fns, 15)
    record_chunks(benchmark, samples, n, [("packed", "float")] + [(f"packed_{isa}", "float") for isa in _isas()],
                  unlike=tuple(k for k in samples if k.startswith("packed")), kernels=K.status(),
                  shape=[batch, cin, cout, 13, 13])


@pytest.mark.parametrize("x_bits,w_bits", [(2, 1), (4, 1), (2, 2)])
def test_bitserial_gemm_1024(benchmark, x_bits, w_bits):
    """DoReFa's products, 200 x 1024 activations of x_bits times 1024 x 1024 weights of w_bits (1: the
    weights' signs; 2: DoReFa's 2-bit levels), operands packed once; and with the activations packed
    from float32 on every call (`with_packing`)."""
    torch.manual_seed(0)
    n_x = 2**x_bits - 1
    xq = torch.randint(0, n_x + 1, (200, 1024)).float() / n_x
    if w_bits == 1:
        wq, w_form = torch.where(torch.randn(1024, 1024) >= 0, 1.0, -1.0), K.Signs()
        wp = K.pack_signs(wq, "panels")
    else:
        n_w = 2**w_bits - 1
        wq, w_form = torch.randint(0, n_w + 1, (1024, 1024)).float() * 2 / n_w - 1, K.Codes(w_bits, 2 / n_w, -1.0)
        wp = K.pack_codes(wq, w_bits, n_w / 2, n_w / 2, "panels")
    x_form = K.Codes(x_bits, 1 / n_x)
    xp = K.pack_codes(xq, x_bits, n_x)
    fns = _float_candidates(xq, wq)
    floats = list(fns)
    fns["bitserial"] = lambda: linear(xp, x_form, wp, w_form)
    fns["with_packing"] = lambda: linear(K.pack_codes(xq, x_bits, n_x), x_form, wp, w_form)
    assert torch.allclose(fns["bitserial"](), xq @ wq.T, rtol=1e-5, atol=1e-3)
    fns, n = chunked(fns, 0.002)
    samples = interleaved_samples(fns, 20)
    samples, best = _with_float_best(samples, floats)
    record_chunks(benchmark, samples, n, [("bitserial", "float"), ("with_packing", "float")],
                  unlike=("bitserial", "with_packing"), float_best=best,
           kernels=K.status(), bits=[x_bits, w_bits])
