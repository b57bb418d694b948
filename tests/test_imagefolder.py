"""ImageFolder data: decode once (resize shorter side, centre crop) into a reused, extendable uint8
cache; lazily indexed batches made float on the device; top-5 error; and a run end to end."""

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

from suite.data import imagefolder as imf
from suite.data import in_shape, load_splits
from suite.data.lazy import LazyImages
from suite.data.source import locate
from suite.errors import UserError
from suite.spec import DataSpec
from suite.train.backprop import count_wrong


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lowbit-suite"


@pytest.fixture
def folder(tmp_path):
    return imf.write_synthetic(tmp_path / "imagenet", n_classes=4, train_per_class=15, val_per_class=5)


def test_synthetic_writer_makes_the_imagefolder_layout(folder):
    samples, classes = imf.list_images(folder)
    assert classes == [f"class_{c:03d}" for c in range(4)]
    assert len(samples["train"]) == 60 and len(samples["val"]) == 20
    names = [p for p, _ in samples["train"]]
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".jpg") for n in names)
    from PIL import Image

    assert any(Image.open(p).mode == "L" for p in names)  # grayscale files are there


def test_decode_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    from PIL import Image

    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = 255  # a white band: the middle half of a wide image
    Image.fromarray(image).save(tmp_path / "wide.png")
    out = imf.decode(str(tmp_path / "wide.png"), 20)  # 40 x 80 -> 20 x 40 -> centre 20 x 20
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    assert (out[:, :, 1:-1] == 255).all()  # the crop is the band (its edges softened by the antialiasing)
    assert torch.equal(out[:, :, 0], out[:, :, -1]) and out[0, 0, 0] > 128  # centred: symmetric, no black
    Image.fromarray(np.full((30, 30), 77, dtype=np.uint8)).save(tmp_path / "gray.png")
    assert torch.equal(imf.decode(str(tmp_path / "gray.png"), 30), torch.full((3, 30, 30), 77, dtype=torch.uint8))


def test_load_decodes_once_in_a_fixed_shuffle(folder, cache, monkeypatch):
    arrays, info = locate(imf.INFO, "full", folder.parent, image_size=24)
    samples, _ = imf.list_images(folder)
    order = imf._order(60).tolist()
    assert arrays["train_images"].shape == (60, 3, 24, 24) and arrays["train_images"].dtype == torch.uint8
    assert arrays["train_labels"].tolist() == [samples["train"][i][1] for i in order]
    for j in (0, 17, 59):
        assert torch.equal(arrays["train_images"][j], imf.decode(samples["train"][order[j]][0], 24))
    assert len(set(arrays["train_labels"][:12].tolist())) > 1  # the first images are not all one class
    assert info["num_classes"] == 4 and info["test_images_total"] == 20 and info["source"] == "full"

    def no_decoding(path, size):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imf, "decode", no_decoding)
    again, _ = locate(imf.INFO, "full", folder.parent, image_size=24)
    assert torch.equal(again["train_images"], arrays["train_images"])
    with pytest.raises(AssertionError, match="decoded again"):  # another size: another cache file
        locate(imf.INFO, "full", folder.parent, image_size=16)


def test_decoding_stops_at_what_is_needed_and_continues_later(folder, cache):
    first, _ = locate(imf.INFO, "full", folder.parent, image_size=16, n_train=10, n_test=3)
    assert len(first["train_images"]) == 10 and len(first["test_images"]) == 3
    meta = [json.loads(p.read_text()) for p in (cache / "imagefolder").glob("*.json")]
    assert sorted(m["decoded"] for m in meta) == [3, 10]
    more, _ = locate(imf.INFO, "full", folder.parent, image_size=16, n_train=40)
    assert len(more["train_images"]) == 40 and torch.equal(more["train_images"][:10], first["train_images"])


def test_a_corrupt_image_is_a_user_error_naming_it(folder, cache):
    bad = folder / "train" / "class_001" / "img_0001.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="img_0001.jpg: cannot decode the image"):
        locate(imf.INFO, "full", folder.parent, image_size=16)


def test_missing_imagenet_explains_the_layout(tmp_path, cache):
    with pytest.raises(UserError) as err:
        locate(imf.INFO, "full", tmp_path / "nowhere", image_size=224)
    msg = str(err.value)
    assert "train/CLASS/*.JPEG" in msg and str(tmp_path / "nowhere" / "imagenet") in msg and "--data-dir" in msg
    with pytest.raises(UserError, match="data.image_size: required"):
        in_shape(DataSpec("imagenet", 10, 0))


def test_load_splits_keeps_images_on_the_host_and_batches_them(cache):
    spec = DataSpec("imagenet", 300, 60, test_size=50, source="synthetic", preprocessing="pm1", image_size=32)
    splits = load_splits(spec, download=False)
    assert isinstance(splits.train_x, LazyImages) and splits.top5
    assert splits.in_shape == (3, 32, 32) and splits.num_classes == 10
    assert (len(splits.train_x), len(splits.val_x), len(splits.test_x)) == (300, 60, 50)
    assert splits.index_device("cuda") == torch.device("cpu") and splits.batch_transform.how == "pm1"
    batch = splits.train_x[torch.tensor([0, 5, 7])]
    raw = splits.train_x.images[[0, 5, 7]]
    assert batch.dtype == torch.float32 and torch.equal(batch, raw.float() / 255 * 2 - 1)
    view = splits.test_x[10:20]  # a slice is a view: nothing read until load()
    assert isinstance(view, LazyImages) and torch.equal(view.load(), splits.test_x[torch.arange(10, 20)])
    assert splits.info["source"] == "synthetic" and splits.info["n_test"] == 50


def test_standardize_statistics_are_applied_per_batch(cache):
    spec = DataSpec("imagenet", 200, 0, source="synthetic", preprocessing="standardize", image_size=16)
    splits = load_splits(spec, download=False)
    x = splits.train_x[torch.arange(200)]
    assert x.mean((0, 2, 3)).abs().max() < 1e-4 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-3


def test_count_wrong_top1_and_top5():
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3],  # class 0 first
                           [0.0, 1, 2, 3, 4, 5, 6],  # ranking 6, 5, 4, 3, 2, 1, 0
                           [0.0, 1, 2, 3, 4, 5, 6],
                           [5.0, 0, 0, 0, 0, 0, 9]])
    labels = torch.tensor([0, 2, 1, 0])  # right; top-5 only; miss; top-5 only (second)
    wrong = count_wrong(nn.Identity(), logits, labels, batch_size=3, top5=True)
    assert wrong.tolist() == [3, 1]
    assert count_wrong(nn.Identity(), logits, labels, batch_size=3).item() == 3


def test_imagenet_run_records_top5(cache, tmp_path, results):
    from suite.cli import main

    spec = tmp_path / "tiny-imagenet.toml"
    spec.write_text(textwrap.dedent("""
        name = "tiny-imagenet"
        title = "ImageFolder smoke"
        paper = "test"
        baselines = "none.csv"
        [data]
        dataset = "imagenet"
        train_size = 320
        val_size = 40
        test_size = 50
        image_size = 64
        preprocessing = "standardize"
        source = "synthetic"
        [model]
        name = "alexnet"
        width = 0.125
        hidden = 64
        [train]
        loss = "cross_entropy"
        lr_start = 0.001
        lr_schedule = "constant"
        batch_size = 32
        epochs = 1
        eval_batch_size = 25
        [variants.xnor]
        weight_quantizer = "xnor_weight"
        input_quantizer = "xnor_input"
        float_layers = ["first", "last"]
        [profiles.smoke]
    """))
    assert main(["run", str(spec), "--profile", "smoke", "--quiet", "--device", "cpu", "--no-report"]) == 0
    (record,) = (results / "records" / "tiny-imagenet" / "smoke").glob("*.json")
    epoch = json.loads(record.read_text())["epochs"][0]
    assert 0 <= epoch["test_error"] <= 100
    assert epoch["test_error_top5"] is not None and epoch["test_error_top5"] <= epoch["test_error"]


def test_in_memory_datasets_record_no_top5(cache):
    splits = load_splits(DataSpec("svhn", 100, 20, source="synthetic"), download=False)
    assert splits.top5 is False and splits.batch_transform is None
    assert splits.index_device("cpu") == torch.device("cpu") and isinstance(splits.train_x, torch.Tensor)
    assert np.isclose(splits.train_x.max().item(), 1.0)
