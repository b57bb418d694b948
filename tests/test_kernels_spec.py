"""A spec chooses the quantized layers' arithmetic per variant (variants.NAME.arithmetic), the spec
check rejects anything but packed / emulated, and a run's record says which ran (model.arithmetic)."""

import json

import pytest

from suite.cli import main
from suite.errors import UserError
from suite.kernels import build
from suite.nn import QuantLinear
from suite.spec import find_spec, load_spec

SMOKE = ["bnn-mnist", "--profile", "smoke", "--quiet", "--device", "cpu", "--set", "data.source=embedded",
         "--variant", "bnn", "--no-report"]


def test_spec_rejects_an_unknown_arithmetic():
    with pytest.raises(UserError, match=r"variants.bnn.arithmetic: 'fast' is not one of packed, emulated"):
        load_spec(find_spec("bnn-mnist"), "smoke", {"variants.bnn.arithmetic": "fast"})


def test_spec_arithmetic_reaches_the_layers():
    spec = load_spec(find_spec("bnn-mnist"), "smoke", {"variants.bnn.arithmetic": "emulated"})
    assert spec.variant("bnn").quant_config().arithmetic == "emulated"
    assert spec.variant("float").quant_config().arithmetic == "packed"  # the default
    assert QuantLinear(4, 3, arithmetic=spec.variant("bnn").quant_config().arithmetic).arithmetic == "emulated"


@pytest.mark.parametrize("arithmetic", ["packed", "emulated"])
def test_record_says_which_arithmetic_ran(tmp_path, monkeypatch, arithmetic):
    if arithmetic == "packed" and build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")
    monkeypatch.setenv("SUITE_RESULTS_DIR", str(tmp_path))
    assert main(["run", *SMOKE, "--set", f"variants.bnn.arithmetic={arithmetic}"]) == 0
    (path,) = (tmp_path / "records").rglob("*.json")
    model = json.loads(path.read_text())["model"]
    assert model["arithmetic"] == arithmetic
    # smoke: a 2 x 64 MLP, three quantized layers; packed, the first stays emulated (it takes the pixels)
    layers = model["arithmetic_layers"]
    assert sum(n for k, n in layers.items() if k.startswith(arithmetic)) == (2 if arithmetic == "packed" else 3)
    if arithmetic == "packed":
        assert layers["emulated (real-valued input)"] == 1
