"""SVHN: the synthetic files are in the real .mat layout, the suite's reader reads them exactly as
torchvision does, sources (full / auto / synthetic), the missing-data message, bad files, and
load_splits (with DoReFa-Net's 40 x 40 resize)."""

import numpy as np
import pytest
import scipy.io
import torch

from suite.data import in_shape, load_splits
from suite.data import svhn as sv
from suite.data.source import locate
from suite.errors import UserError
from suite.spec import DataSpec


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lowbit-suite"


def test_synthetic_files_have_the_real_layout(tmp_path):
    sv.write_synthetic(tmp_path, n_train=120, n_test=40)
    mat = scipy.io.loadmat(tmp_path / "train_32x32.mat")
    assert mat["X"].dtype == np.uint8 and mat["X"].shape == (32, 32, 3, 120)
    assert mat["y"].shape == (120, 1)
    assert set(np.unique(mat["y"])) <= set(range(1, 11)) and 10 in mat["y"] and 0 not in mat["y"]  # 10 = digit 0
    assert scipy.io.loadmat(tmp_path / "test_32x32.mat")["X"].shape == (32, 32, 3, 40)


def test_reader_matches_torchvision(tmp_path, monkeypatch):
    from torchvision.datasets import SVHN

    sv.write_synthetic(tmp_path, n_train=50, n_test=20)
    ours = sv.read_mat(tmp_path / "train_32x32.mat")
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)  # its md5 list knows only the originals
    theirs = SVHN(str(tmp_path), split="train")
    assert torch.equal(ours["images"], torch.from_numpy(theirs.data))
    assert torch.equal(ours["labels"], torch.from_numpy(theirs.labels))
    raw = scipy.io.loadmat(tmp_path / "train_32x32.mat")
    # image 3, channel 1, row 5, column 7 is X[5, 7, 1, 3]; label 10 became 0
    assert ours["images"][3, 1, 5, 7] == raw["X"][5, 7, 1, 3]
    assert ours["labels"].tolist() == [0 if v == 10 else int(v) for v in raw["y"][:, 0]]


@pytest.mark.parametrize("sub", ["svhn", "SVHN", ""])
def test_full_source_reads_the_folder(tmp_path, cache, sub):
    sv.write_synthetic(tmp_path / sub, n_train=60, n_test=30)
    arrays, info = locate(sv.INFO, "full", tmp_path, download=False)
    assert arrays["train_images"].shape == (60, 3, 32, 32) and arrays["train_images"].dtype == torch.uint8
    assert arrays["test_labels"].shape == (30,) and arrays["test_labels"].dtype == torch.int64
    assert 0 <= arrays["train_labels"].min() and arrays["train_labels"].max() <= 9
    assert info["source"] == "full" and "md5" in info["reader"] and info["training_files"] == "train_32x32.mat"


def test_extra_is_used_only_when_asked(tmp_path, cache):
    sv.write_synthetic(tmp_path, n_train=60, n_test=30, n_extra=25)
    assert len(locate(sv.INFO, "full", tmp_path, download=False)[0]["train_images"]) == 60
    arrays, info = locate(sv.INFO, "full", tmp_path, download=False, include_extra=True)
    assert len(arrays["train_images"]) == 85 and "extra_32x32.mat" in info["training_files"]


def test_missing_svhn_names_the_files_and_how_to_get_them(tmp_path, cache):
    with pytest.raises(UserError) as err:
        locate(sv.INFO, "full", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "train_32x32.mat" in msg and "test_32x32.mat" in msg and str(tmp_path / "nowhere" / "svhn") in msg
    assert "--data-dir" in msg and "download=True" in msg and "\n" not in msg


def test_auto_falls_back_to_a_cached_synthetic_folder(tmp_path, cache, capsys):
    arrays, info = locate(sv.INFO, "auto", tmp_path / "nowhere", download=False)
    assert info["source"] == "synthetic" and "SYNTHETIC" in capsys.readouterr().err
    folder = cache / "synthetic" / f"svhn-v{sv.SYNTHETIC_VERSION}"
    stamp = (folder / "train_32x32.mat").stat().st_mtime_ns
    again, _ = locate(sv.INFO, "synthetic")
    assert (folder / "train_32x32.mat").stat().st_mtime_ns == stamp  # written once, then reused
    assert torch.equal(again["train_images"], arrays["train_images"])
    assert len(arrays["train_labels"].unique()) == 10


def test_bad_files_are_user_errors_naming_the_file(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])})
    with pytest.raises(UserError, match=r"a\.mat: 'y' must hold 2 labels in 1\.\.10"):
        sv.read_mat(tmp_path / "a.mat")
    scipy.io.savemat(tmp_path / "b.mat", {"X": np.zeros((28, 28, 2), np.float32), "y": np.array([[1], [2]])})
    with pytest.raises(UserError, match=r"b\.mat: 'X' must be uint8 32 x 32 x 3 x N"):
        sv.read_mat(tmp_path / "b.mat")
    (tmp_path / "c.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match=r"c\.mat: cannot read an SVHN \.mat file"):
        sv.read_mat(tmp_path / "c.mat")


def test_load_splits_resizes_to_dorefas_40x40(cache):
    spec = DataSpec("svhn", 500, 100, test_size=200, source="synthetic", preprocessing="unit", image_size=40)
    assert in_shape(spec) == (3, 40, 40)
    splits = load_splits(spec, download=False)
    assert splits.train_x.shape == (500, 3, 40, 40) and splits.test_x.shape == (200, 3, 40, 40)
    assert 0 <= splits.train_x.min() and splits.train_x.max() <= 1 and splits.top5 is False
    assert splits.info["resized_to"] == "40x40 (bilinear)" and splits.info["test_set"].startswith("first 200")
    plain = load_splits(DataSpec("svhn", 500, 100, test_size=200, source="synthetic", preprocessing="unit"))
    # bilinear resizing keeps each image's mean brightness (within rounding)
    assert torch.allclose(splits.train_x.mean((1, 2, 3)), plain.train_x.mean((1, 2, 3)), atol=0.02)
