"""Forward gradient: jvp derivatives equal backprop's gradient . v, the estimate is unbiased,
orthogonal directions are orthogonal, BatchNorm statistics move once per step, vmap equals the
loop, quantized models train, and specs choose the method per variant."""

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from suite.errors import UserError
from suite.models.mlp import mlp
from suite.nn import QuantConfig, latent_clip_targets
from suite.paths import reproductions_dir
from suite.spec import TrainSpec, load_spec, parse_set
from suite.train import METHODS
from suite.train.forward_gradient import ForwardGradient

MNIST_SPEC = reproductions_dir() / "fwdgrad-vs-backprop-mnist.toml"


def _model(dtype=torch.float64, hidden=(7,), batchnorm=True, quant=None, in_features=5, classes=3, seed=0):
    torch.manual_seed(seed)
    model = mlp(num_classes=classes, in_shape=(in_features,), hidden=list(hidden), batchnorm=batchnorm,
                quant=quant).to(dtype)
    model.train()
    return model


def _method(model, lr=0.1, optimizer="sgd", **options) -> ForwardGradient:
    train = TrainSpec(epochs=1, batch_size=8, lr_start=lr, method="forward_gradient", **options)
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    return ForwardGradient(model, opt, F.cross_entropy, train, latent_clip_targets(model))


def _batch(n=16, features=5, classes=3, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def _true_gradient(model, x, y) -> torch.Tensor:
    """Backprop's gradient on a copy (so the model's BatchNorm statistics are not touched)."""
    twin = copy.deepcopy(model)
    twin.zero_grad()
    F.cross_entropy(twin(x), y).backward()
    return torch.cat([p.grad.flatten() for p in twin.parameters() if p.requires_grad])


@pytest.mark.parametrize("options", [
    dict(num_directions=1),
    dict(num_directions=1, direction_distribution="rademacher"),
    dict(num_directions=4, orthogonal_directions=True),
    dict(num_directions=4, batched_directions=True),
], ids=["loop", "rademacher", "orthogonal", "vmap"])
def test_jvp_directional_derivative_equals_backprop_gradient_dot_v(options):
    model = _model()
    x, y = _batch()
    g = _true_gradient(model, x, y)
    method = _method(model, **options)
    loss, derivs = method.estimate(x, y)
    v = method.directions  # the step's directions (the single reused row in the loop)
    assert derivs.shape == (options["num_directions"],)
    assert torch.allclose(derivs, v @ g, rtol=0, atol=1e-5)
    assert torch.allclose(method.grad_flat, (derivs @ v) / len(derivs), rtol=0, atol=1e-12)
    assert torch.isclose(loss, F.cross_entropy(copy.deepcopy(model)(x), y), atol=1e-12)
    assert not loss.requires_grad and loss.grad_fn is None  # no autograd graph


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("options", [
    dict(direction_distribution="gaussian"),
    dict(direction_distribution="rademacher"),
    dict(orthogonal_directions=True),
    dict(orthogonal_directions=True, direction_distribution="rademacher"),
], ids=["gaussian", "rademacher", "orthogonal", "orthogonal-rademacher"])
def test_estimator_is_unbiased(options):
    """Averaged over many directions (estimates of successive steps at a fixed point, so the
    orthogonal option's previous-step constraint is in force) the estimate points along the
    gradient: cosine -> 1, and closer with more directions."""
    model = _model(hidden=(6,), batchnorm=False)  # d = 57
    x, y = _batch()
    g = _true_gradient(model, x, y)
    method = _method(model, num_directions=25, batched_directions=True, **options)
    total = torch.zeros_like(g)
    cosines = {}
    for i in range(1, 241):  # 6000 directions
        method.estimate(x, y)
        total += method.grad_flat
        if i in (4, 240):
            cosines[i * 25] = _cos(total / i, g)
    assert cosines[6000] > 0.99  # observed 0.996 (gaussian) to 0.9997 (orthogonal)
    assert cosines[6000] > cosines[100]


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_single_direction_cosine_is_about_one_over_sqrt_d(distribution):
    """One direction's estimate (grad . v) v has E[cos^2] = 1/d with the gradient."""
    model = _model(hidden=(40,), batchnorm=False, in_features=10, classes=4, dtype=torch.float32)  # d = 604
    x, y = _batch(features=10, classes=4, dtype=torch.float32)
    g = _true_gradient(model, x, y)
    method = _method(model, num_directions=500, batched_directions=True, direction_distribution=distribution)
    cos = []
    for _ in range(4):
        _, derivs = method.estimate(x, y)
        cos.append(derivs / (method.directions.norm(dim=1) * g.norm()))  # cosine of each one-direction estimate
    cos = torch.cat(cos).abs()
    d = method.d
    assert d == 604
    assert math.sqrt(float((cos**2).mean())) == pytest.approx(1 / math.sqrt(d), rel=0.1)
    if distribution == "gaussian":
        assert float(cos.mean()) == pytest.approx(math.sqrt(2 / (math.pi * d)), rel=0.1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_orthogonal_directions_within_and_across_steps(dtype, tol):
    model = _model(dtype=dtype, hidden=(40,), in_features=20)  # d = 1000
    x, y = _batch(features=20, dtype=dtype)
    method = _method(model, num_directions=8, orthogonal_directions=True)
    d, eye = method.d, torch.eye(8, dtype=dtype)
    method.estimate(x, y)
    first = method.directions.clone()
    assert torch.allclose(first @ first.T / d, eye, atol=tol)  # orthonormal after the sqrt(d) scaling
    method.estimate(x, y)
    second = method.directions.clone()
    assert torch.allclose(second @ second.T / d, eye, atol=tol)
    assert (second @ first.T / d).abs().max() < tol  # orthogonal to the previous step's
    # the previous directions are method state: a restored method continues the constraint
    state = method.state_dict()
    assert torch.equal(state["previous_directions"], second)
    restored = _method(_model(dtype=dtype, hidden=(40,), in_features=20), num_directions=8,
                       orthogonal_directions=True)
    restored.load_state_dict(state)
    restored.estimate(x, y)
    assert (restored.directions @ second.T / d).abs().max() < tol
    method.estimate(x, y)
    assert torch.equal(method.directions, restored.directions)  # same generator state, same draws


def test_all_directions_of_a_full_orthogonal_frame_give_the_exact_gradient():
    """With k = d orthonormal directions (scaled by sqrt(d)), (1/k) sum (g.v) v = g exactly."""
    model = _model(hidden=(3,), batchnorm=False, in_features=4, classes=2)  # d = 23
    x, y = _batch(features=4, classes=2)
    method = _method(model, num_directions=23, batched_directions=True)
    method.orthogonal = True  # one step only: 2k <= d is needed for the next step, not this one
    method.previous = torch.empty_like(method.directions)
    method.estimate(x, y)
    assert torch.allclose(method.grad_flat, _true_gradient(model, x, y), atol=1e-10)


@pytest.mark.parametrize("batched", [False, True])
def test_batchnorm_statistics_move_once_per_step(batched):
    model = _model(hidden=(7, 7))
    x, y = _batch()
    once = copy.deepcopy(model)
    with torch.no_grad():
        once(x)  # one train-mode forward pass
    _method(model, num_directions=5, batched_directions=batched).estimate(x, y)
    for (name, a), (_, b) in zip(model.named_buffers(), once.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    assert int(model[2].num_batches_tracked) == 1


@pytest.mark.parametrize("options", [dict(), dict(orthogonal_directions=True)], ids=["plain", "orthogonal"])
def test_vmap_equals_loop(options):
    x, y = _batch(dtype=torch.float32)
    results = []
    for batched in (False, True):
        model = _model(dtype=torch.float32, hidden=(7, 7))
        method = _method(model, num_directions=6, batched_directions=batched, **options)
        losses = [method.step(x, y) for _ in range(3)]
        results.append((torch.stack(losses), method.grad_flat.clone(), dict(model.state_dict())))
    (l1, g1, s1), (l2, g2, s2) = results
    assert torch.allclose(l1, l2, atol=1e-6) and torch.allclose(g1, g2, atol=1e-5)
    for name in s1:
        assert torch.allclose(s1[name].float(), s2[name].float(), atol=1e-5), name


@pytest.mark.parametrize("quantizer", ["binaryconnect", "binaryconnect(stochastic=True)"])
def test_binaryconnect_model_trains_by_forward_gradient(quantizer):
    """The quantizers' jvp rules (straight-through tangents) let forward mode train a binary model."""
    torch.manual_seed(0)
    x = torch.randn(128, 10)
    y = (x[:, :4].argmax(1))  # a learnable 4-class problem
    model = _model(dtype=torch.float32, hidden=(32,), in_features=10, classes=4, seed=3,
                   quant=QuantConfig(weight_quantizer=quantizer, clip_weights=1.0))
    assert model[1].weight_quantizer is not None
    method = _method(model, lr=0.03, optimizer="adam", num_directions=10)
    batches = list(torch.arange(128).split(32))
    losses = [float(method.epoch(x, y, batches)) for _ in range(16)]
    # mean training loss of the first two epochs and the last four (stochastic binarization is noisy)
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:2]) / 2
    assert model[1].weight.abs().max() <= 1.0  # latent weights clipped after each update


def test_bnn_style_model_trains_by_forward_gradient():
    """Binary weights and binary inputs (sign with the saturating straight-through tangent) between
    BatchNorm + Hardtanh, as in BNN's MLP: forward mode trains it too."""
    import torch.nn as nn

    quant = QuantConfig(weight_quantizer="bnn_sign", input_quantizer="bnn_sign", clip_weights=1.0)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.Hardtanh(), quant.linear(32, 32),
                          nn.BatchNorm1d(32), nn.Hardtanh(), quant.linear(32, 4), nn.BatchNorm1d(4))
    torch.manual_seed(0)
    x = torch.randn(128, 10)
    y = x[:, :4].argmax(1)
    method = _method(model, lr=0.03, optimizer="adam", num_directions=6)
    batches = list(torch.arange(128).split(64))
    losses = [float(method.epoch(x, y, batches)) for _ in range(10)]
    assert sum(losses[-4:]) / 4 < 0.85 * sum(losses[:2]) / 2


def test_batched_directions_with_a_quantizer_equal_the_loop():
    """The quantizers' autograd Functions carry vmap rules, so directions batch through them."""
    x, y = _batch(dtype=torch.float32)
    # each method seeds its direction generator from the global RNG, which _model reseeds
    method = _method(_model(dtype=torch.float32, quant=QuantConfig(weight_quantizer="binaryconnect")),
                     num_directions=3, batched_directions=True)
    method.estimate(x, y)
    reference = _method(_model(dtype=torch.float32, quant=QuantConfig(weight_quantizer="binaryconnect")),
                        num_directions=3)
    reference.estimate(x, y)
    assert torch.allclose(method.grad_flat, reference.grad_flat, atol=1e-5)


def test_orthogonal_needs_two_k_at_most_d():
    with pytest.raises(UserError, match="2 x num_directions"):
        _method(_model(hidden=(3,), batchnorm=False, in_features=2, classes=2), num_directions=10,
                orthogonal_directions=True)


def test_method_registered_and_epoch_returns_a_device_tensor():
    assert METHODS["forward_gradient"] is ForwardGradient
    model = _model(dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    loss = _method(model, num_directions=2).epoch(x, y, list(torch.arange(16).split(8)))
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0


# --- specs: the method and its options chosen per variant ------------------------------------

def test_variant_overrides_make_the_training_settings():
    spec = load_spec(MNIST_SPEC, "smoke")
    bp, fg = spec.train_for(spec.variant("backprop")), spec.train_for(spec.variant("fg10"))
    assert (bp.method, bp.lr_start) == ("backprop", 1e-3)
    assert (fg.method, fg.lr_start, fg.num_directions) == ("forward_gradient", 1e-4, 10)
    assert not fg.orthogonal_directions and not fg.batched_directions
    assert spec.train_for(spec.variant("orth1")).orthogonal_directions is True
    assert spec.reference_variant == "backprop"
    assert [v.name for v in spec.variants] == ["backprop", "fg1", "fg10", "fg20", "orth1"]  # run_variants
    assert "fg50" in [v.name for v in load_spec(MNIST_SPEC, "paper").variants]


def test_trainer_uses_the_variants_method_and_lr():
    from suite.data import Splits
    from suite.run.plan import Run
    from suite.run.trainer import Trainer

    spec = load_spec(MNIST_SPEC, "smoke")
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    data = Splits(x, y, x[:8], y[:8], x[:8], y[:8], 10, {"source": "synthetic"})
    trainer = Trainer(Run(spec, spec.variant("orth1"), 1), data, torch.device("cpu"))
    assert isinstance(trainer.method, ForwardGradient) and trainer.method.orthogonal
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-4
    assert Trainer(Run(spec, spec.variant("backprop"), 1), data, torch.device("cpu")).optimizer.param_groups[0]["lr"] \
        == 1e-3


@pytest.mark.parametrize("override,message", [
    ("variants.backprop.num_directions=5", r"variants.backprop.num_directions: applies to method 'forward_gradient'"),
    ("variants.fg1.num_directions=0", r"variants.fg1.num_directions: must be at least 1"),
    ('variants.fg1.direction_distribution="uniform"',
     r"variants.fg1.direction_distribution: 'uniform' is not one of gaussian"),
    ('variants.fg1.method="forward_gradiant"', r"variants.fg1.method: 'forward_gradiant' is not one of.*did you mean"),
    ("variants.fg1.lr_start=-1", r"variants.fg1.lr_start / train.lr_end: must be positive"),
    ("variants.fg1.orthogonal_directions=1", r"variants.fg1.orthogonal_directions: expected true or false"),
    ('reference_variant="backprob"', r"reference_variant: no variant 'backprob'.*did you mean 'backprop'"),
    ("train.num_directionz=2", r"unknown key 'train.num_directionz'.*did you mean 'num_directions'"),
])
def test_bad_forward_gradient_settings_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_spec(MNIST_SPEC, "smoke", parse_set([override]))


def test_run_variants_must_name_variants(tmp_path):
    text = MNIST_SPEC.read_text().replace('run_variants = ["backprop", "fg1", "fg10", "fg20", "orth1"]',
                                          'run_variants = ["backprop", "fg2"]', 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"profiles.quick.run_variants: no variant 'fg2'.*did you mean 'fg20'"):
        load_spec(path, "paper")


def test_train_spec_defaults_keep_backprop_specs_unchanged():
    spec = load_spec(reproductions_dir() / "binaryconnect-mnist.toml", "smoke")
    for v in spec.variants:
        assert spec.train_for(v) == spec.train
    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    assert {"num_directions", "direction_distribution", "orthogonal_directions", "batched_directions"} <= fields
