"""CIFAR-10: the pickle-layout reader (with and without `filenames`), test-set choice, the
missing-data message, synthetic data, standardisation, the real partial test files, and VGG16."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from suite.data import channel_stats, load_splits
from suite.data.cifar10 import INFO, PARTIAL_FOLDER, TEST_FILES, TRAIN_FILES, read_batch, write_synthetic
from suite.data.source import locate
from suite.errors import UserError
from suite.models.vgg import vgg
from suite.spec import DataSpec


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("filenames", [True, False])
def test_reader_reads_the_standard_layout(tmp_path, no_data_env, filenames):
    folder = write_synthetic(tmp_path, per_batch=20, n_test=30, filenames=filenames)
    raw = pickle.load(open(folder / "data_batch_1", "rb"), encoding="latin1")
    assert ("filenames" in raw) == filenames
    arrays, info = locate(INFO, "full", tmp_path, download=False)
    assert arrays["train_images"].shape == (100, 3, 32, 32) and arrays["train_images"].dtype == torch.uint8
    assert arrays["test_images"].shape == (30, 3, 32, 32)
    assert arrays["train_labels"].dtype == torch.int64 and 0 <= arrays["train_labels"].min() <= 9
    # rows are R, G, B planes of 32 x 32, row-major
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32)
    assert torch.equal(arrays["train_images"][0], torch.from_numpy(first))
    assert arrays["train_labels"][:20].tolist() == list(raw["labels"])
    assert "pickle reader" in info["reader"] and "md5" in info["reader"]  # torchvision refuses these files
    assert info["test_set"] == TEST_FILES["standard"][1]


def test_partial_test_files_are_selectable(tmp_path, no_data_env):
    folder = write_synthetic(tmp_path, per_batch=10, n_test=40)
    test = pickle.load(open(folder / "test_batch", "rb"), encoding="latin1")
    (tmp_path / PARTIAL_FOLDER).mkdir()
    exact = {"batch_label": "x", "labels": test["labels"][:25], "data": test["data"][:25]}
    with open(tmp_path / PARTIAL_FOLDER / "test_batch_exact_first1000", "wb") as f:
        pickle.dump(exact, f)
    arrays, info = locate(INFO, "full", tmp_path, download=False, test_set="exact_first1000")
    assert len(arrays["test_images"]) == 25 and info["test_set"] == "CIFAR-10 test images 0-999 (exact)"
    with pytest.raises(UserError, match="test_batch_mixed_jpeg_q75 not found"):
        locate(INFO, "full", tmp_path, download=False, test_set="mixed_jpeg_q75")


def test_missing_cifar10_names_the_files_and_how_to_get_them(tmp_path, no_data_env):
    with pytest.raises(UserError) as err:
        locate(INFO, "full", tmp_path / "nowhere", download=False)
    msg = str(err.value)
    for name in (*TRAIN_FILES, "batches.meta", "test_batch"):
        assert name in msg
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg and "--data-dir" in msg
    assert "CIFAR10('DIR', download=True)" in msg and "cifar-10-test-partial" in msg


def test_auto_falls_back_to_synthetic_data_said_so(tmp_path, no_data_env, capsys):
    splits = load_splits(DataSpec("cifar10", 45000, 5000, source="auto", preprocessing="standardize"),
                         tmp_path / "nowhere", download=False)
    assert splits.info["source"] == "synthetic" and "SYNTHETIC" in capsys.readouterr().err
    assert splits.train_x.shape[1:] == (3, 32, 32) and len(splits.train_x) + len(splits.val_x) == 2000
    assert splits.train_x.mean().abs() < 0.05  # standardised with the training split's statistics


def test_bad_batch_is_a_user_error(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(UserError, match="'data' must be uint8 N x 3072"):
        read_batch(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot read a CIFAR-10 batch"):
        read_batch(path)


def test_channel_stats_are_exact():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert torch.allclose(mean.double(), x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), x.std(dim=(0, 2, 3)), atol=1e-6)


def test_class_grouped_test_file_refuses_a_prefix(tmp_path, no_data_env):
    folder = write_synthetic(tmp_path, per_batch=20, n_test=30)
    shutil.copy(folder / "test_batch", folder / "test_batch_mixed_jpeg_q75")
    spec = DataSpec("cifar10", 80, 20, test_size=10, test_set="mixed_jpeg_q75", source="full")
    with pytest.raises(UserError, match="grouped by class"):
        load_splits(spec, tmp_path, download=False)


# --- the real files beside the project (skipped where absent) -------------------------------

@pytest.fixture
def shared_cifar(request):
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.mark.realdata
def test_real_partial_test_files(shared_cifar):
    exact = read_batch(shared_cifar / PARTIAL_FOLDER / "test_batch_exact_first1000")
    mixed = read_batch(shared_cifar / PARTIAL_FOLDER / "test_batch_mixed_jpeg_q75")
    assert exact["images"].shape == (1000, 3, 32, 32) and mixed["images"].shape == (10000, 3, 32, 32)
    assert exact["labels"].bincount().tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    assert mixed["labels"].bincount().tolist() == [1000] * 10
    assert (mixed["labels"].diff() >= 0).all()  # grouped by class
    lossless = mixed["lossless"]
    assert lossless.dtype == torch.bool and int(lossless.sum()) == 1000
    # the lossless images of the mixed file are exactly test images 0-999
    as_bytes = sorted(img.numpy().tobytes() for img in mixed["images"][lossless])
    assert as_bytes == sorted(img.numpy().tobytes() for img in exact["images"])


@pytest.mark.realdata
def test_real_training_set_through_load_splits(shared_cifar):
    splits = load_splits(DataSpec("cifar10", 1000, 200, test_set="mixed_jpeg_q75", source="full",
                                  preprocessing="standardize"), shared_cifar, download=False)
    info = splits.info
    assert info["source"] == "full" and "pickle reader" in info["reader"]
    assert info["test_set"].startswith("all 10000") and "indicative only" in info["test_set"]
    assert info["test_lossless"] == 1000 and splits.test_x.shape == (10000, 3, 32, 32)
    assert splits.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # data_batch_1's first labels


# --- VGG16 ------------------------------------------------------------------------------------

def test_vgg16_is_kuangliu_cifar_vgg16():
    model = vgg(num_classes=10, in_shape=(3, 32, 32))
    assert sum(p.numel() for p in model.parameters()) == 14_728_266  # kuangliu/pytorch-cifar VGG('VGG16')
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 13
    small = vgg(num_classes=10, in_shape=(3, 32, 32), width=0.125)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="divisible by 32"):
        vgg(num_classes=10, in_shape=(1, 28, 28))


def test_vgg_layers_come_from_the_quant_config():
    from suite.nn import QuantConfig
    from suite.nn.layers import QuantConv2d, QuantLinear

    model = vgg(num_classes=10, in_shape=(3, 32, 32), width=0.0625, quant=QuantConfig(weight_quantizer="binaryconnect"))
    layers = [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    assert len(layers) == 14 and all(m.weight_quantizer is not None for m in layers)
