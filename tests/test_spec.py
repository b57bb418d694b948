"""Spec loading: every shipped spec and profile loads; bad input gives one clear message."""

from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import UserError
from suite.paths import reproductions_dir
from suite.spec import PROFILES, load_spec, parse_set

SPECS = sorted(reproductions_dir().glob("*.toml"))
BASE = reproductions_dir() / "binaryconnect-mnist.toml"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_spec_profile_loads(path, profile):
    spec = load_spec(path, profile)
    assert spec.name == path.stem
    assert spec.scaled_down == (profile != "paper")


def test_profile_overrides_and_set():
    spec = load_spec(BASE, "smoke", parse_set(["train.epochs=5", "variants.det.clip_weights=0.5"]))
    assert spec.train.epochs == 5
    assert spec.model.params["hidden"] == [64, 64]  # from the smoke profile
    assert spec.variant("det").clip_weights == 0.5
    assert spec.overrides == {"train.epochs": 5, "variants.det.clip_weights": 0.5}


def test_paper_profile_is_the_protocol():
    spec = load_spec(BASE, "paper")
    t, d = spec.train, spec.data
    assert (t.batch_size, t.epochs, d.train_size, d.val_size) == (200, 1000, 50000, 10000)
    assert spec.train.loss == "squared_hinge"
    assert spec.model.params["hidden"] == [1024, 1024, 1024]


def test_parse_set_reads_toml_values():
    assert parse_set(["a.b=3", "c=0.5", "d=true", "e=[1, 2]", "f=adam", 'g="x"']) == {
        "a.b": 3, "c": 0.5, "d": True, "e": [1, 2], "f": "adam", "g": "x"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_set(["train.epochs"])


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("edit,message", [
    (("train.epochs = 20", "train.epocs = 20"), r"unknown key 'train.epocs'.*did you mean 'epochs'"),
    (("batch_size = 200", 'batch_size = "big"'), r"train.batch_size: expected an integer, got str"),
    (("lr_start = 0.01", "lr_start = -0.01"), r"train.lr_start / train.lr_end: must be positive"),
    (("batch_size = 200", "batch_size = 99999"), r"train.batch_size: 99999 is larger than data.train_size"),
    (('optimizer = "sgd"', 'optimizer = "adamw"'), r"train.optimizer: 'adamw' is not one of sgd, adam"),
    (('weight_quantizer = "binaryconnect"', 'weight_quantizer = "binaryconect"'),
     r"variants.det.weight_quantizer: unknown quantizer 'binaryconect' \(did you mean 'binaryconnect'\?\)"),
    (("hidden = [1024, 1024, 1024]", "hiden = [1024]"),
     r"model.hiden: not an argument of model 'mlp' \(did you mean 'hidden'\?\)"),
    (('dataset = "mnist"', 'dataset = "mnsit"'),
     r"data.dataset: 'mnsit' is not one of mnist, .*\(did you mean 'mnist'\?\)"),
    (("[data]", "[data]\nbogus = 1"), r"data.bogus: unknown key"),
    (("[train]", "[train\n"), r"malformed TOML"),
])
def test_bad_specs_name_file_and_key(tmp_path, edit, message):
    old, new = edit
    text = BASE.read_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(UserError, match=message) as err:
        load_spec(path, "paper")
    assert str(path) in str(err.value)


def test_unknown_profile_and_variant(tmp_path):
    with pytest.raises(UserError, match="no profile 'quik'.*did you mean 'quick'"):
        load_spec(BASE, "quik")
    with pytest.raises(UserError, match="unknown variant 'variants.dett'"):
        load_spec(BASE, "smoke", {"variants.dett.clip_weights": 1.0})
    with pytest.raises(UserError, match="unknown key 'trian'"):
        load_spec(BASE, "smoke", {"trian.epochs": 1})


def test_cli_user_error_is_one_line_and_exit_2(tmp_path, capsys, results):
    code = main(["run", "binaryconnect-mnist", "--profile", "smoke", "--set", "train.lr_start=-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not results.exists()  # nothing written


def test_cli_unknown_spec(capsys):
    assert main(["run", "binaryconect-mnist"]) == 2
    assert "did you mean 'binaryconnect-mnist'" in capsys.readouterr().err
