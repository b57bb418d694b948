"""Datasets as in-memory tensors, split and preprocessed once; batches are made by indexing.

`load_splits(data_spec)` returns train / validation / test tensors and a description of the
data actually used (full set or embedded subset, sizes, the test set's name), which goes into
every record and table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from suite.data.cifar10 import TEST_FILES as CIFAR10_TEST_FILES
from suite.data.cifar10 import load_cifar10
from suite.data.mnist import load_mnist
from suite.errors import UserError

# name -> loader(source, data_dir, download[, test_set]) -> (arrays, info); arrays: uint8 images
# (N x H x W or N x C x H x W) and int64 labels under train_/test_images, train_/test_labels.
DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}
NUM_CLASSES = {"mnist": 10, "cifar10": 10}
IN_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # after preprocessing: C x H x W
SOURCES = {"mnist": ("auto", "full", "embedded"), "cifar10": ("auto", "full", "synthetic")}
TEST_SETS = {"mnist": ("standard",), "cifar10": tuple(CIFAR10_TEST_FILES)}
PREPROCESSING = ("pm1", "unit", "standardize")
# Sources smaller than the full set: the spec's sizes are scaled down to what they hold.
_SMALL_SOURCES = ("embedded subset", "synthetic")


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    info: dict = field(default_factory=dict)

    def to(self, device) -> Splits:
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Splits(**moved, num_classes=self.num_classes, info=self.info)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def preprocess(images: torch.Tensor, how: str, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 N x H x W (or N x C x H x W) -> float32 N x C x H x W, once for the whole set.

    pm1: [-1, 1]; unit: [0, 1]; standardize: (x - mean) / std per channel, with `stats` = (mean,
    std) of the training split (`channel_stats`)."""
    x = images.float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if how == "pm1":  # [-1, 1], as BinaryConnect's code does (2x - 1)
        x.mul_(2.0).sub_(1.0)
    elif how == "standardize":
        mean, std = stats
        x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return x


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float32) of uint8 images scaled to [0, 1] (N x C x H x W or
    N x H x W), exact, from a 256-bin histogram per channel (ten times faster than a float pass)."""
    images = images.unsqueeze(1) if images.dim() == 3 else images
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        means.append(mean)
        stds.append(((counts * (values - mean) ** 2).sum() / (n - 1)).sqrt())
    return torch.stack(means).float(), torch.stack(stds).float()


def load_splits(data_spec, data_dir=None, download: bool = True) -> Splits:
    """Training split = the first train_size training images, validation = the next val_size
    (BinaryConnect: 50000 / 10000), test = the first test_size test images (all if unset).

    On the embedded subset (or synthetic data) the sizes are scaled down to what it holds,
    keeping their ratio. Standardization statistics come from the training split alone.
    """
    name = data_spec.dataset
    options = {"test_set": data_spec.test_set} if len(TEST_SETS[name]) > 1 else {}
    arrays, info = DATASETS[name](data_spec.source, data_dir, download, **options)
    n_avail = len(arrays["train_images"])
    n_train, n_val = data_spec.train_size, data_spec.val_size
    n_test = data_spec.test_size or len(arrays["test_images"])
    small = info["source"] in _SMALL_SOURCES
    if small and n_train + n_val > n_avail:
        scale = n_avail / (n_train + n_val)
        n_train, n_val = int(n_train * scale), n_avail - int(n_train * scale)
    if small:
        n_test = min(n_test, len(arrays["test_images"]))
    if n_train + n_val > n_avail:
        raise UserError(f"data.train_size + data.val_size = {n_train + n_val} exceeds the "
                        f"{n_avail} training images of {name} ({info['path']})")
    if n_test > len(arrays["test_images"]):
        raise UserError(f"data.test_size = {n_test} exceeds the {len(arrays['test_images'])} test "
                        f"images of {name} ({info.get('test_file', info['path'])})")
    if info.get("test_grouped_by_class") and n_test < len(arrays["test_images"]):
        raise UserError(f"data.test_size = {n_test}: the test file {info.get('test_file')} is grouped by class, "
                        "so its first images are not a sample of the test set; leave data.test_size unset")
    stats = None
    if data_spec.preprocessing == "standardize":
        stats = channel_stats(arrays["train_images"][:n_train])
        info = dict(info, standardization={"mean": [round(v, 5) for v in stats[0].tolist()],
                                           "std": [round(v, 5) for v in stats[1].tolist()]})
    x = preprocess(arrays["train_images"][: n_train + n_val], data_spec.preprocessing, stats)
    y = arrays["train_labels"][: n_train + n_val].long()
    test_x = preprocess(arrays["test_images"][:n_test], data_spec.preprocessing, stats)
    test_y = arrays["test_labels"][:n_test].long()
    whole_test = n_test == len(arrays["test_images"])
    if "test_set" in info:  # the loader names its test set (e.g. CIFAR-10's partial test files)
        test_set = info["test_set"] if whole_test else f"first {n_test} of the {info['test_set']}"
    else:
        test_set = ("full test set" if whole_test and info["source"] == "full" else f"first {n_test} test images"
                    + (" (embedded subset)" if info["source"] == "embedded subset" else ""))
    info = dict(info, dataset=name, n_train=n_train, n_val=n_val, n_test=n_test, test_set=test_set)
    return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], test_x, test_y, NUM_CLASSES[name], info)


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's shuffled index batches (last partial batch dropped, as the authors' code does:
    BatchNorm needs more than one sample). The permutation is drawn on the CPU with the run's
    generator, so it is the same on every device, and moved once per epoch."""
    perm = torch.randperm(n, generator=generator).to(device)
    return list(perm[: n - n % batch_size].split(batch_size))
