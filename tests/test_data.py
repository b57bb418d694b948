"""MNIST reading: IDX headers checked, data found or a message that says where to put it."""

import gzip
from pathlib import Path

import pytest
import torch

from suite.data import load_splits
from suite.data.idx import read_idx
from suite.data.mnist import FILES, INFO
from suite.data.source import locate
from suite.errors import UserError
from suite.spec import DataSpec


def _idx(path: Path, array: torch.Tensor, magic: bytes | None = None, cut: int = 0) -> Path:
    header = magic or bytes([0, 0, 8, array.dim()])
    header += b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    blob = header + array.to(torch.uint8).numpy().tobytes()
    blob = blob[: len(blob) - cut] if cut else blob
    with gzip.open(path, "wb") as f:
        f.write(blob)
    return path


def test_read_idx_round_trip(tmp_path):
    a = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    assert torch.equal(read_idx(_idx(tmp_path / "x.gz", a), 3), a)


def test_read_idx_rejects_wrong_magic(tmp_path):
    a = torch.zeros(2, 3, 3, dtype=torch.uint8)
    with pytest.raises(UserError, match=r"x.gz: wrong IDX magic number 00000d03"):
        read_idx(_idx(tmp_path / "x.gz", a, magic=bytes([0, 0, 0x0D, 3])), 3)
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(_idx(tmp_path / "y.gz", a, magic=bytes([1, 2, 8, 3])), 3)


def test_read_idx_rejects_truncated_file(tmp_path):
    a = torch.zeros(4, 3, 3, dtype=torch.uint8)
    with pytest.raises(UserError, match="truncated"):
        read_idx(_idx(tmp_path / "x.gz", a, cut=5), 3)
    p = tmp_path / "broken.gz"
    p.write_bytes(b"this is not gzip data")
    with pytest.raises(UserError, match="broken.gz: cannot read"):
        read_idx(p, 3)


def test_missing_mnist_says_which_files_where(tmp_path, monkeypatch):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(UserError) as err:
        locate(INFO, "full", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    for name in FILES.values():
        assert f"{name}.gz" in msg
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg and "--data-dir" in msg


def test_auto_falls_back_to_embedded_subset(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    splits = load_splits(DataSpec("mnist", 50000, 10000), tmp_path / "nowhere", download=False)
    assert splits.info["source"] == "embedded subset"
    assert (splits.info["n_train"], splits.info["n_val"], splits.info["n_test"]) == (10000, 2000, 2000)
    assert "embedded subset" in splits.info["test_set"]
    assert "using the embedded subset" in capsys.readouterr().err
    assert splits.train_x.shape == (10000, 1, 28, 28)
    assert splits.train_x.min().item() == -1.0 and splits.train_x.max().item() == 1.0
    assert set(splits.train_y.unique().tolist()) == set(range(10))


def test_real_mnist_splits(shared_mnist):
    splits = load_splits(DataSpec("mnist", 50000, 10000), shared_mnist, download=False)
    assert splits.info["source"] == "full" and splits.info["test_set"] == "full test set"
    assert len(splits.train_x) == 50000 and len(splits.val_x) == 10000 and len(splits.test_x) == 10000
    counts = torch.cat([splits.train_y, splits.val_y]).bincount().tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_too_large_split_is_an_error(shared_mnist):
    with pytest.raises(UserError, match="exceeds the 60000 training images"):
        load_splits(DataSpec("mnist", 55000, 10000), shared_mnist, download=False)
