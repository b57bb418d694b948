"""k-bit latent weights (suite/nn/latent.py), their optimizer step (suite/train/latent_optim.py)
and the storage measurement (suite/nn/storage.py)."""

import io
import math
import textwrap
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from suite.errors import UserError
from suite.models.mlp import mlp
from suite.nn import QuantConfig, weight_memory
from suite.nn.latent import LatentStorage, latent_layers
from suite.nn.storage import run_storage, storage_bytes
from suite.quant import sign_pm1
from suite.quant.packing import pack_codes, unpack_codes
from suite.spec import load_spec
from suite.train.optim import make_optimizer


def bc(bits, **kw):
    options = dict(weight_quantizer="binaryconnect", clip_weights=1.0, lr_scale="glorot", weight_init_range=1.0)
    return QuantConfig(latent_bits=bits, **{**options, **kw})


def train(optimizer="adam", lr=0.003, momentum=0.0, weight_decay=0.0):
    return SimpleNamespace(optimizer=optimizer, lr_start=lr, momentum=momentum, weight_decay=weight_decay)


def teacher_data(n=512, d=20, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return x, y


def steps(model, opt, x, y, k):
    losses = []
    for _ in range(k):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("bits", [1, 3, 5, 6, 7])
@pytest.mark.parametrize("count", [1, 8, 13, 1000])
def test_bit_planes_round_trip(bits, count):
    codes = torch.randint(0, 2**bits, (count,), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.shape == (bits, math.ceil(count / 8)) and packed.dtype == torch.uint8
    assert torch.equal(unpack_codes(packed, bits, count), codes)


@pytest.mark.parametrize("bits", [8, 6, 5, 2])
def test_encode_decode_round_trip(bits):
    n = 2**bits - 1
    levels = torch.arange(n + 1, dtype=torch.float32) * (2 / n) - 1  # the 2^k values in [-1, 1]
    s = LatentStorage(levels.view(1, -1).repeat(3, 1), bits, torch.tensor(1.0))
    assert torch.equal(s.decode(), levels.view(1, -1).repeat(3, 1))  # levels survive exactly
    w = torch.rand(7, 11) * 2.4 - 1.2  # some beyond [-1, 1]
    s = LatentStorage(w, bits, torch.tensor(1.0))
    err = (s.decode() - w.clamp(-1, 1)).abs()
    assert err.max() <= 1 / n + 1e-6  # nearest level: within half a step (2 / n)
    assert s.decode().abs().max() <= 1.0  # clipped to the code range


def test_scale_is_the_clip_value_else_the_largest_weight():
    layer = bc(8).linear(10, 4)
    assert layer.latent.scale.item() == 1.0
    layer = QuantConfig(weight_quantizer="binaryconnect", latent_bits=8).linear(10, 4)  # no clip
    w = layer.latent.decode()
    assert layer.latent.scale.item() == pytest.approx(w.abs().max().item())


@pytest.mark.parametrize("bits", [8, 5])
def test_stochastic_rounding_is_unbiased(bits):
    torch.manual_seed(1)
    n = 2**bits - 1
    step = 2 / n
    # between two levels at several fractions of the step; 20000 copies of each value
    base = -1 + step * torch.tensor([3.0, 3.1, 3.5, 3.9, n - 1.3])
    w = base.repeat_interleave(20000)
    s = LatentStorage(torch.zeros_like(w), bits, torch.tensor(1.0))
    s.encode_(w.clone(), stochastic=True)
    got = s.decode().view(len(base), -1)
    mean, se = got.mean(1), got.std(1) / math.sqrt(got.shape[1])
    assert ((mean - base).abs() <= 4 * se + 1e-6).all(), (mean - base) / step  # + float32 rounding
    assert (got.std(1)[1:] > 0.2 * step).all()  # really random: nearest rounding would be biased by 0.1-0.5 step
    s.encode_(w.clone(), stochastic=False)
    nearest_bias = (s.decode().view(len(base), -1).mean(1) - base).abs()
    assert nearest_bias[1] > 4 * se[1]  # the test can tell a biased rounding


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_updates_below_one_level_move_the_latent_weights_in_expectation(optimizer):
    """Steps of a tenth of a level: stochastic rounding moves the latent weights by the float
    update on average (nearest rounding would leave every weight where it was)."""
    torch.manual_seed(2)
    layer = bc(8, lr_scale="none").linear(1, 20000, bias=False)
    w0 = layer.latent.decode()
    level = 2 / 255
    lr = 0.1 * level  # SGD step = lr * g with g = 1; Adam's first steps are lr * sign(g)
    opt = make_optimizer(train(optimizer, lr), layer)
    x = torch.ones(1, 1)
    for _ in range(5):
        layer(x).sum().backward()  # d loss / d w_b = 1 for every weight
        opt.step()
    moved = w0 - layer.latent.decode()
    inside = (w0.abs() < 1 - 2 * level).flatten()  # away from the clip
    m = moved.flatten()[inside]
    expected = 5 * lr
    assert abs(m.mean().item() - expected) <= 4 * m.std().item() / math.sqrt(m.numel())
    assert m.mean().item() > 0.5 * expected


@pytest.mark.parametrize("bits,bytes_per_8", [(8, 8), (6, 6), (5, 5)])
def test_codes_take_k_bits_per_weight_and_no_float_copy_remains(bits, bytes_per_8):
    """8 bits: one uint8 per weight; 6 and 5 bits: packed, k bytes per 8 weights (padded to 8)."""
    model = mlp(num_classes=10, in_shape=(1, 8, 8), quant=bc(bits), hidden=[32])
    layers = latent_layers(model)
    assert len(layers) == 2
    for layer in layers:
        count = layer.in_features * layer.out_features
        assert layer.latent.codes.dtype == torch.uint8
        assert storage_bytes([layer.latent.codes]) == math.ceil(count / 8) * bytes_per_8
        assert "weight" not in dict(layer.named_parameters())
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    opt = make_optimizer(train("sgd", 0.1), model)
    steps(model, opt, x, y, 2)
    float_tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    assert sum(t.numel() for t in float_tensors) < 2 * (32 + 10) + 4 * (32 + 10) + 2  # biases, BatchNorm, scales
    assert all(layer.latent.leaf is None for layer in layers)  # the step's float weights are gone


def test_measured_storage_of_float_and_8bit_latent_weights_with_sgd_and_adam():
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    latent_count = 64 * 32 + 32 * 10
    got = {}
    for bits in (32, 8):
        for name in ("sgd", "adam"):
            model = mlp(num_classes=10, in_shape=(1, 8, 8), quant=bc(bits), hidden=[32])
            opt = make_optimizer(train(name), model)
            steps(model, opt, x, y, 1)
            got[bits, name] = run_storage(model, opt)
    assert got[32, "sgd"]["latent_weight_bytes"] == 4 * latent_count
    assert got[8, "sgd"]["latent_weight_bytes"] == latent_count + 2 * 4  # codes + one float32 scale per layer
    assert got[32, "sgd"]["optimizer_state_bytes"] == got[8, "sgd"]["optimizer_state_bytes"] == 0
    # Adam: two float32 moments per weight, latent or not (the point of the project notes "Something
    # about softweight"), plus 4-byte step counts
    assert got[8, "adam"]["optimizer_state_bytes"] == got[32, "adam"]["optimizer_state_bytes"]
    assert got[8, "adam"]["optimizer_state_bytes"] >= 8 * latent_count
    saved = got[32, "adam"]["weight_storage_bytes"] - got[8, "adam"]["weight_storage_bytes"]
    assert saved == 3 * latent_count - 2 * 4


@pytest.mark.parametrize("bits,optimizer", [(8, "adam"), (8, "sgd"), (5, "adam")])
def test_training_with_k_bit_latent_weights_decreases_the_loss(bits, optimizer):
    torch.manual_seed(0)
    x, y = teacher_data()
    model = mlp(num_classes=4, in_shape=(20,), quant=bc(bits), hidden=[64])
    opt = make_optimizer(train(optimizer, 0.01 if optimizer == "adam" else 1.0), model)
    losses = steps(model, opt, x, y, 40)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_binary_weights_are_the_sign_of_the_decoded_latent_weights():
    torch.manual_seed(0)
    lin = bc(6).linear(12, 5)
    x = torch.randn(3, 12)
    wb = sign_pm1(lin.latent.decode())
    assert torch.equal(lin.quantized_weight(), wb)
    assert torch.equal(lin(x), F.linear(x, wb, lin.bias))
    conv = bc(8).conv2d(3, 4, 3, padding=1)
    xc = torch.randn(2, 3, 6, 6)
    assert torch.equal(conv(xc), F.conv2d(xc, sign_pm1(conv.latent.decode()), conv.bias, padding=1))
    # the gradient reaching the latent weights is the binary weights' one (straight through)
    lin(x).pow(2).sum().backward()
    wb_leaf = wb.clone().requires_grad_()
    F.linear(x, wb_leaf, lin.bias).pow(2).sum().backward()
    assert torch.allclose(lin.latent.leaf.grad, wb_leaf.grad)


@pytest.mark.parametrize("bits", [1, 2, 5, 6, 8])
def test_top_bits_are_the_sign_of_the_decoded_latent_weights(bits):
    n = 2**bits - 1
    levels = torch.arange(n + 1, dtype=torch.float32) * (2 / n) - 1  # every code, both sides of 0
    w = torch.cat([levels, torch.rand(101) * 2 - 1])
    s = LatentStorage(w, bits, torch.tensor(0.5))
    assert torch.equal(s.signs(), sign_pm1(s.decode()))
    assert (s.signs() == 1).any() and (s.signs() == -1).any()


def test_stochastic_binaryconnect_uses_the_decoded_latent_weights_at_test_time():
    layer = QuantConfig(weight_quantizer="binaryconnect(stochastic=True)", clip_weights=1.0,
                        latent_bits=8).linear(6, 3)
    layer.eval()
    x = torch.randn(2, 6)
    assert torch.equal(layer(x), F.linear(x, layer.latent.decode(), layer.bias))


@pytest.mark.parametrize("optimizer,momentum", [("adam", 0.0), ("sgd", 0.9)])
def test_state_dict_round_trip_resumes_bit_identically(optimizer, momentum):
    x, y = teacher_data(n=128)

    def build(seed):
        torch.manual_seed(seed)
        model = mlp(num_classes=4, in_shape=(20,), quant=bc(5), hidden=[32])
        opt = make_optimizer(train(optimizer, 0.01, momentum), model)
        return model, opt, torch.optim.lr_scheduler.ExponentialLR(opt, 0.5)

    model, opt, sched = build(0)
    steps(model, opt, x, y, 3)
    sched.step()
    buf = io.BytesIO()  # a checkpoint's way: torch.save of the state dicts and the RNG state
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "rng": torch.get_rng_state()}, buf)
    assert model.state_dict()["1.latent.codes"].dtype == torch.uint8
    steps(model, opt, x, y, 3)

    resumed, opt2, sched2 = build(1)  # other initial weights, overwritten by the checkpoint
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    resumed.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    torch.set_rng_state(state["rng"])
    steps(resumed, opt2, x, y, 3)
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert opt2.param_groups[-1]["lr"] == opt.param_groups[-1]["lr"]  # the scheduled LR of the codes too


def test_inference_weight_memory_is_the_binary_one_whatever_the_latent_precision():
    float_latent = weight_memory(mlp(num_classes=10, in_shape=(1, 8, 8), quant=bc(32), hidden=[32]))
    packed = weight_memory(mlp(num_classes=10, in_shape=(1, 8, 8), quant=bc(5), hidden=[32]))
    assert packed["total_bytes"] == float_latent["total_bytes"]
    assert packed["saving"] == float_latent["saving"] > 1


SPEC = """
name = "lp"
title = "t"
paper = "p"
baselines = "latent_precision.csv"
[data]
dataset = "mnist"
train_size = 100
val_size = 0
[model]
name = "mlp"
hidden = [8]
[train]
epochs = 1
batch_size = 10
lr_start = 0.01
lr_end = 0.001
[variants.v]
{variant}
[profiles.smoke]
"""


@pytest.mark.parametrize("variant,message", [
    ('weight_quantizer = "binaryconnect"\nlatent_bits = 12', "variants.v.latent_bits: expected 32 (float32) or 1 to 8"),
    ('latent_bits = 8', "variants.v.latent_bits: k-bit latent weights need weight_quantizer 'binaryconnect'"),
    ('weight_quantizer = "xnor_weight"\nlatent_bits = 8', "need weight_quantizer 'binaryconnect'"),
    ('weight_quantizer = "binaryconnect"\nlatent_bits = 8\nmethod = "forward_gradient"', "backprop only"),
    ('optimizer = "rmsprop"', "variants.v.optimizer: 'rmsprop' is not one of sgd, adam"),
])
def test_spec_rejects_impossible_latent_settings(tmp_path, variant, message):
    path = tmp_path / "lp.toml"
    path.write_text(textwrap.dedent(SPEC.format(variant=variant)))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(path, "smoke")


def test_spec_variant_chooses_latent_bits_and_optimizer(tmp_path):
    path = tmp_path / "lp.toml"
    path.write_text(textwrap.dedent(SPEC.format(variant='weight_quantizer = "binaryconnect"\n'
                                                       'latent_bits = 6\noptimizer = "sgd"')))
    spec = load_spec(path, "smoke")
    v = spec.variant("v")
    assert v.latent_bits == 6 and spec.train_for(v).optimizer == "sgd" and spec.train.optimizer == "adam"
