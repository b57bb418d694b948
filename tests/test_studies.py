"""Studies (suite/studies/): the spec keys, the CLI path, and the estimators checked by hand."""

import json
import math

import pytest
import torch

from suite.cli import main
from suite.errors import UserError
from suite.paths import reproductions_dir
from suite.spec import PROFILES, load_spec
from suite.studies import gradient_fidelity as gf
from suite.studies import quantization_error as qe

STUDY_SPECS = ["quantization-error", "gradient-fidelity"]


@pytest.mark.parametrize("name", STUDY_SPECS)
@pytest.mark.parametrize("profile", PROFILES)
def test_study_specs_load_without_data_model_train(name, profile):
    spec = load_spec(reproductions_dir() / f"{name}.toml", profile)
    assert spec.study is not None and spec.data is None and spec.model is None and spec.train is None
    assert spec.seeds == spec.study.seeds and spec.seeds


def _write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ntitle = "t"\npaper = "p"\nbaselines = "none"\n' + text
                    + '\n[variants.a]\n[profiles.smoke]\n')
    return path


@pytest.mark.parametrize("body, message", [
    ('[study]\nname = "quantisation_error"', "did you mean 'quantization_error'"),
    ('[study]\nname = "quantization_error"\nlenght = 3', "study.lenght: unknown key (did you mean 'length'?)"),
    ('[study]\nname = "quantization_error"\nlength = 0', "study.length: must be positive"),
    ('[study]\nname = "gradient_fidelity"\nactivation = "relu"', "study.activation: expected one of"),
    ('[study]\nname = "quantization_error"\n[data]\ndataset = "mnist"', "has no [data]"),
    ('[study]\nname = "quantization_error"\nweight_quantizer = "dorefa_activation"', "study.weight_quantizer"),
])
def test_bad_study_input_names_the_key(tmp_path, body, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
                       .replace("?", r"\?")):
        load_spec(_write(tmp_path, body), "smoke")


def test_variant_study_overrides_and_training_keys(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ntitle = "t"\npaper = "p"\nbaselines = "none"\n[study]\nname = "quantization_error"\n'
                    '[variants.a]\nstudy = { length = 8 }\n[variants.b]\nweight_quantizer = "binaryconnect"\n'
                    '[profiles.smoke]\nrun_variants = ["a"]\n[profiles.quick]\n')
    from suite.studies import params_for

    spec = load_spec(path, "smoke")
    assert params_for(spec, spec.variant("a")).length == 8
    with pytest.raises(UserError, match="variants.b.weight_quantizer: a study's variant takes"):
        load_spec(path, "quick")


def test_smoke_profiles_run_through_the_cli_and_render(results):
    assert main(["run", "quantization-error", "--profile", "smoke", "--quiet", "--device", "cpu"]) == 0
    assert main(["run", "gradient-fidelity", "--profile", "smoke", "--quiet", "--device", "cpu",
                 "--set", "study.dims=[4]"]) == 0
    records = sorted((results / "records").rglob("*.json"))
    assert len(records) == 2 + 4
    for path in records:
        rec = json.loads(path.read_text())
        assert rec["status"] == "completed" and rec["study"] and rec["tables"] and rec["summary"]["seconds"] > 0
    table = (results / "quantization-error.smoke.md").read_text()
    assert "cells within 0.01 of the slide" in table and "| x_b " in table
    table = (results / "gradient-fidelity.smoke.md").read_text()
    assert "After pre-training, NES-200 pointed downhill in" in table and "cos(STE, CDG)" in table
    assert (results / "gradient-fidelity.smoke.png").exists()
    (results / "gradient-fidelity.smoke.md").unlink()
    assert main(["report", "gradient-fidelity", "--results-dir", str(results)]) == 0  # from the records alone
    assert "study.dims=[4]" in (results / "gradient-fidelity.smoke.md").read_text()


# --- quantization error -------------------------------------------------------------------

def _qe_run(**params):
    p = qe.Params(length=256, outputs=64, samples=256, **params)
    return qe.run(p, 0, torch.device("cpu"), False, "qe")


def test_float_weights_and_inputs_give_cosine_one():
    cells = _qe_run()["tables"]["cosine"]
    assert cells["32"]["32"] == pytest.approx(1.0, abs=1e-9)
    assert cells["1"]["1"] < cells["2"]["2"] < cells["8"]["8"] < 1


def test_one_bit_gaussian_weights_give_sqrt_two_over_pi():
    """cos(W x, sign(W) x) = E|w| / rms(w) = sqrt(2/pi) for Gaussian W and independent x (by hand)."""
    out = _qe_run(weight_bits=[1, 32], input_bits=[32])
    assert out["tables"]["cosine"]["32"]["1"] == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)


def test_implied_range_inverts_the_rounding_error_model():
    # half-range R, levels 2^k: step D = 2R / (2^k - 1), cos = 1 / sqrt(1 + D^2 / 12)
    r, k = 5.0, 6
    d = 2 * r / (2**k - 1)
    assert qe.implied_range(1 / math.sqrt(1 + d * d / 12), k) == pytest.approx(r)


# --- gradient fidelity ----------------------------------------------------------------------

def _smooth(theta):
    """f(theta) = sum(sin theta) + |A theta|^2 / 2 for any leading batch of parameter vectors."""
    a = torch.linspace(-1, 1, theta.shape[-1] ** 2, dtype=theta.dtype).reshape(theta.shape[-1], -1)
    return theta.sin().sum(-1) + 0.5 * (theta @ a.T).pow(2).sum(-1)


def _autograd(theta):
    t = theta.clone().requires_grad_(True)
    _smooth(t).backward()
    return t.grad


def test_cdg_equals_autograd_on_a_smooth_function():
    theta = torch.randn(12, dtype=torch.float64)
    cdg = gf.central_differences(lambda p, m: _smooth(p) - _smooth(m), theta, 1e-4, chunk=5)
    torch.testing.assert_close(cdg, _autograd(theta), atol=1e-6, rtol=1e-6)


def test_nes_converges_to_the_gradient_on_a_smooth_function():
    theta = torch.randn(10, dtype=torch.float64)
    sigma = 1e-3  # the Gaussian-smoothed gradient differs from the gradient by O(sigma^2)
    est = gf.nes_estimates(lambda p, m: _smooth(p) - _smooth(m), theta, sigma, [100, 20000], chunk=4096,
                           gen=torch.Generator().manual_seed(0))
    true = _autograd(theta)
    errors = {n: float((g - true).norm() / true.norm()) for n, g in est.items()}
    assert errors[20000] < 0.05 and errors[20000] < errors[100] / 5  # error ~ 1/sqrt(N)


def test_stochastic_rounding_is_the_seeds_relaxed_bernoulli_and_unbiased():
    # sign(sigmoid((logit p + logit v) / T) - 1/2) = sign(p + v - 1) = sign((2p - 1) / 2 + u), u = v - 1/2:
    # the experiment log's temperature T has no effect after the sign.
    p, v = torch.rand(10000, dtype=torch.float64), torch.rand(10000, dtype=torch.float64)
    for t in (0.1, 1.0, 10.0):
        relaxed = torch.sigmoid((torch.logit(p) + torch.logit(v)) / t)
        assert torch.equal(torch.sign(relaxed - 0.5), torch.sign(p + v - 1))
    # A layer output a: positives scaled by 1/max, negatives by 1/|min|; E[s] = a~ (straight-through exact in mean)
    a = torch.tensor([[4.0, 2.0, -1.0, -0.5, 0.0]])
    draws = 40000
    u = torch.rand(draws, 1, 5) - 0.5
    s = gf.stochastic_round(a.expand(draws, 1, 5), u, ste=False)
    expected = torch.tensor([1.0, 0.5, -1.0, -0.5, 0.0])
    assert set(s.unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(s.mean(0)[0], expected, atol=4 / math.sqrt(draws), rtol=0)


def test_ste_gradient_of_stochastic_rounding_is_the_scaled_identity():
    a = torch.tensor([[4.0, 2.0, -1.0, -0.5]], requires_grad=True)
    gf.stochastic_round(a, torch.zeros(1, 4), ste=True).sum().backward()
    torch.testing.assert_close(a.grad, torch.tensor([[0.25, 0.25, 1.0, 1.0]]))


def test_estimates_agree_where_the_loss_is_smooth():
    """Only the last layer (no activation after it): the loss is smooth there, so STE, CDG and a
    large NES agree on those coordinates (a check of the whole pipeline on the toy network)."""
    p = gf.Params(dims=[6], batch=64, nes_samples=[20000], nes_sigma=1e-3, cdg_epsilon=1e-3, chunk=512)
    prob = gf.Problem(6, p, seed=0, device=torch.device("cpu"))
    last = slice(prob.theta.numel() - prob.width, None)
    ste, cdg, nes = prob.ste()[last], prob.cdg()[last], prob.nes()[20000][last]
    torch.testing.assert_close(cdg, ste, atol=1e-3, rtol=1e-2)
    assert gf.cosine(nes, ste) > 0.9


def test_same_seed_same_numbers():
    assert _qe_run()["tables"] == _qe_run()["tables"]
    p = gf.Params(dims=[4], batch=32, nes_samples=[64], activation="stochastic", pretrain_steps=3, pretrain_batch=64,
                  eval_draws=2, random_directions=2)
    a, b = (gf.run_dim(4, p, seed=1, device=torch.device("cpu"), progress=False) for _ in range(2))
    assert (a["cos_to_cdg"], a["curves"]) == (b["cos_to_cdg"], b["curves"])
