"""The lowbit-cost study (what binary and low-bit layers cost): its spec, its checks, one measured cell,
its table and figure."""

import pandas as pd
import pytest
import torch

from suite.errors import UserError
from suite.kernels import build
from suite.paths import reproductions_dir
from suite.spec import PROFILES, load_spec
from suite.studies import lowbit_cost as lc


@pytest.mark.parametrize("profile", PROFILES)
def test_spec_loads_in_every_profile(profile):
    spec = load_spec(reproductions_dir() / "lowbit-cost.toml", profile)
    assert spec.study is not None and spec.study.name == "lowbit_cost" and spec.seeds


def test_the_variants_cover_every_layer_of_the_cost_shapes_once():
    spec = load_spec(reproductions_dir() / "lowbit-cost.toml", "quick")
    chosen = [s for v in spec.variants for s in lc.shapes(lc.Params(**v.study))]
    assert sorted(s.name for s in chosen) == sorted(s.name for s in lc.costs.SHAPES)


def test_batches_are_the_listed_ones_and_the_papers_capped():
    alexnet_fc7 = next(s for s in lc.costs.SHAPES if s.name.startswith("fc7"))
    assert lc.batches(lc.Params(batches=[1]), alexnet_fc7) == [1, 256]
    assert lc.batches(lc.Params(batches=[1], max_batch=32), alexnet_fc7) == [1, 32]
    assert lc.batches(lc.Params(batches=[1, 8], train_batch=False), alexnet_fc7) == [1, 8]


@pytest.mark.parametrize("params,match", [
    (lc.Params(models=["VGG"]), r"x\.models / layers: no layer matches \['VGG'\]"),
    (lc.Params(batches=[0]), r"x\.batches: positive"),
    (lc.Params(batches=[], train_batch=False), r"x\.batches: positive"),
    (lc.Params(candidates=["ternary"]), r"x\.candidates: any of binary, dorefa_w1a2"),
    (lc.Params(rounds=0), r"x: rounds and sample_seconds must be positive"),
])
def test_check_names_the_key_and_what_was_expected(params, match):
    with pytest.raises(UserError, match=match):
        lc.check(params, "x")


def test_one_cell_measured_reported_and_drawn():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")
    p = lc.Params(layers=["fc 1024x1024"], batches=[1], train_batch=False, candidates=["binary"], rounds=2,
                  sample_seconds=1e-4)
    out = lc.run(p, 0, torch.device("cpu"), progress=False, desc="")
    s = out["summary"]
    assert (s["layers"], s["cells"], s["packed_cells"], s["packed_cells_run_packed"]) == (1, 1, 1, 1)
    # 1024 x 1024 float32 = 4 MiB; packed: 16 words x 1024 rows x 8 bytes + 1024 float scales
    assert s["weights_times_smaller_binary_min"] == pytest.approx(4 * 1024 * 1024 / (16 * 1024 * 8 + 4 * 1024))
    rows = out["tables"]["rows"]
    assert [r["candidate"] for r in rows] == ["float", "emulated binary", "packed binary"]
    assert all(r["ms"] > 0 and r["float_over_this"] > 0 for r in rows)
    record = {"tables": out["tables"], "params": vars(p), "summary": s, "variant": "mlp", "seed": 0,
              "provenance": {"device_name": "a CPU"},
              "spec": {"resolved": {"variants": [{"name": "mlp", "label": "MNIST MLPs"}]}}}
    baselines = pd.read_csv(reproductions_dir().parent / "baselines" / "lowbit_cost.csv", index_col="id")
    text = lc.render([record], baselines)
    assert "### MNIST MLPs" in text and "| fc 1024x1024 |" in text and "packed binary" in text
    assert "58 x (approx.)" in text and "confidence high" in text
    assert lc.plot([record]) is not None


@pytest.mark.parametrize("params,match", [
    (lc.Params(whole_models=["resnet"]), r"x\.whole_models: any of bnn_mlp, xnor_nin, got \['resnet'\]"),
    (lc.Params(model_steps=0), r"x: model_steps, eval_batch and model_rounds must be positive"),
    (lc.Params(test_images=-1), r"test_images >= 0"),
])
def test_check_of_the_whole_models(params, match):
    with pytest.raises(UserError, match=match):
        lc.check(params, "x")


def test_the_whole_networks_are_the_reproductions_own():
    """The study's BNN MLP and XNOR NIN are bnn-mnist's (quick profile) and xnor-nin-cifar10's (paper) networks:
    the same modules, quantizers and shapes as their specs build (the spec layer sits above the
    study, so the study builds them itself; this keeps the two in step)."""
    from suite.models import build_model
    from suite.studies import lowbit_cost_models as lcm

    for name, spec_name, variant, profile in (("bnn_mlp", "bnn-mnist", "bnn", "quick"),
                                               ("xnor_nin", "xnor-nin-cifar10", "xnor", "paper")):
        spec = load_spec(reproductions_dir() / f"{spec_name}.toml", profile)
        v = next(v for v in spec.variants if v.name == variant)
        m = lcm.MODELS[name]
        torch.manual_seed(0)
        theirs = build_model(spec.model, num_classes=10, in_shape=m.in_shape, quant=v.quant_config())
        torch.manual_seed(0)
        ours = m.build(m.binary, True)
        assert repr(ours) == repr(theirs), name
        t = spec.train  # the step the study times is the spec's: optimizer, LR, weight decay, batch
        assert (m.optimizer, m.lr, m.weight_decay, m.batch) == (v.optimizer or t.optimizer, v.lr_start or t.lr_start,
                                                                t.weight_decay, t.batch_size), name
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(),
                                                       strict=True))


def test_a_whole_network_measured_with_identical_predictions():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")
    from suite.studies import lowbit_cost_models as lcm

    calls = []

    def once(fns):
        calls.append(list(fns))
        return {k: [max(1e-6, _seconds(fn))] for k, fn in fns.items()}

    rows = lcm.model_costs("bnn_mlp", 0, steps=2, test_images=64, eval_batch=32, samples=once)
    assert calls == [["float", "packed", "emulated"], ["float", "packed", "emulated", "exported"]]
    train = [r for r in rows if r["measure"].startswith("training step")]
    infer = {r["candidate"]: r for r in rows if r["measure"].startswith("inference")}
    assert len(train) == 3 and set(infer) == {"float", "packed", "emulated", "exported"}
    assert "packed" in infer["packed"]["arithmetic"] and "emulated" in infer["emulated"]["arithmetic"]
    assert infer["packed"]["predictions_differing"] == 0 and infer["exported"]["predictions_differing"] == 0
    assert infer["float"]["predictions_differing"] is None
    assert 25 < infer["exported"]["float_bytes_over_this"] < 32  # bits, scales, thresholds, float first layer
    p = lc.Params(whole_models=["bnn_mlp"], model_steps=2, model_rounds=1)
    text = "\n".join(lc._model_lines(rows, vars(p)))
    assert "Whole networks" in text and "| training step (batch 100)" in text and "packed 0, exported 0" in text


def _seconds(fn):
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
