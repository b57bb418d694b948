"""Grid specs, per-variant model arguments and full-precision first/last layers."""

import textwrap

import pytest
import torch.nn as nn

from suite.errors import UserError
from suite.models import build_model
from suite.nn import QuantConfig, QuantLinear
from suite.spec import load_spec

BASE = """
name = "g"
title = "t"
paper = "p"
baselines = "binaryconnect.csv"
[data]
dataset = "mnist"
train_size = 100
val_size = 0
[model]
name = "mlp"
hidden = [8, 8]
[train]
epochs = 1
batch_size = 10
lr_start = 0.01
lr_end = 0.001
[profiles.smoke]
"""

GRID = """
[variants.float]
label = "float"
[grid]
baseline = "row-{bits}-{size}"
label = "W{bits} / {size}"
[grid.bits.b1]
weight_quantizer = "dorefa_weight(bits=1)"
float_layers = ["first", "last"]
[grid.bits.b2]
weight_quantizer = "dorefa_weight(bits=2)"
[grid.size.small]
model = { hidden = [4] }
[grid.size.big]
model = { hidden = [16, 16] }
"""


def write(tmp_path, text):
    p = tmp_path / "g.toml"
    p.write_text(textwrap.dedent(BASE + text))
    return p


def test_grid_expands_to_named_cells_after_explicit_variants(tmp_path):
    spec = load_spec(write(tmp_path, GRID), "smoke")
    assert [v.name for v in spec.variants] == ["float", "b1.small", "b1.big", "b2.small", "b2.big"]
    cell = spec.variant("b1.big")
    assert cell.grid == {"bits": "b1", "size": "big"}
    assert cell.baseline == "row-b1-big" and cell.label == "Wb1 / big"
    assert spec.model_for(cell).params["hidden"] == [16, 16]
    assert spec.model_for(spec.variant("float")).params["hidden"] == [8, 8]


def test_grid_cells_build_their_own_models(tmp_path):
    spec = load_spec(write(tmp_path, GRID), "smoke")
    cell = spec.variant("b1.small")
    model = build_model(spec.model_for(cell), num_classes=10, in_shape=(1, 28, 28), quant=cell.quant_config())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [4, 10]
    # float_layers = first and last: with one hidden layer both linears are float
    assert all(m.weight_quantizer is None for m in linears)


def test_run_variants_may_name_grid_cells(tmp_path):
    text = GRID + '[profiles.quick]\nrun_variants = ["b2.big", "float"]\n'
    spec = load_spec(write(tmp_path, text), "quick")
    assert [v.name for v in spec.variants] == ["float", "b2.big"]
    with pytest.raises(UserError, match="b2.bog"):
        load_spec(write(tmp_path, GRID + '[profiles.quick]\nrun_variants = ["b2.bog"]\n'), "quick")


@pytest.mark.parametrize("text, match", [
    ('[grid.bits."b.1"]\nweight_quantizer = "binaryconnect"\n', "point names"),
    ('[grid]\nbaseline = "x-{nope}"\n[grid.bits.b1]\nweight_quantizer = "binaryconnect"\n', "names no axis"),
    ('[grid]\nlabel = "x"\n', "at least one axis"),
    ('[grid.bits.b1]\nweight_quantizr = "binaryconnect"\n', "did you mean 'weight_quantizer'"),
    ('[grid.bits.b1]\nmodel = { hiden = [3] }\n', "hiden"),
    ('[grid.bits.b1]\ngrid = { a = "b" }\n', "unknown key"),
    ('[variants.b1]\n[grid.bits.b1]\n', "has the name of"),
    ('[variants.v]\nfloat_layers = ["middle"]\n', "float_layers"),
])
def test_grid_and_variant_errors_name_the_key(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_spec(write(tmp_path, text), "smoke")


def test_first_layer_never_quantizes_its_input():
    q = QuantConfig(weight_quantizer="binaryconnect", input_quantizer="bnn_sign")
    first, middle = q.linear(4, 4, position="first"), q.linear(4, 4)
    assert first.input_quantizer is None and first.weight_quantizer is not None
    assert middle.input_quantizer is not None


def test_float_layers_are_plain_float_and_keep_default_init():
    q = QuantConfig(weight_quantizer="binaryconnect", clip_weights=1.0, lr_scale="glorot",
                    weight_init_range=5.0, float_layers=("first", "last"))
    for position in ("first", "last"):
        layer = q.linear(64, 64, position=position)
        assert isinstance(layer, QuantLinear)
        assert layer.weight_quantizer is None and layer.clip_value is None and layer.lr_scale is None
        assert layer.weight.abs().max() <= 1 / 8  # torch's U(-1/sqrt(fan_in), ...), not U(-5, 5)
    assert q.linear(64, 64).weight_quantizer is not None
    with pytest.raises(ValueError, match="position"):
        q.linear(4, 4, position="middle")
