"""Datasets as in-memory tensors, split and preprocessed once; batches are made by indexing.

`load_splits(data_spec)` returns train / validation / test tensors and a description of the
data actually used (full set or embedded subset, sizes, the test set's name), which goes into
every record and table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from suite.data.mnist import load_mnist
from suite.errors import UserError

# name -> loader(source, data_dir, download) -> (arrays, info); arrays as in suite.data.mnist
DATASETS = {"mnist": load_mnist}
NUM_CLASSES = {"mnist": 10}


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


def preprocess(images: torch.Tensor, how: str) -> torch.Tensor:
    """uint8 N x H x W (or N x C x H x W) -> float32 N x C x H x W, once for the whole set."""
    x = images.float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if how == "pm1":  # [-1, 1], as BinaryConnect's code does (2x - 1)
        x.mul_(2.0).sub_(1.0)
    return x


def load_splits(data_spec, data_dir=None, download: bool = True) -> Splits:
    """Training split = the first train_size training images, validation = the next val_size
    (BinaryConnect: 50000 / 10000), test = the first test_size test images (all if unset).

    On the embedded subset the sizes are scaled down to what it holds, keeping their ratio.
    """
    arrays, info = DATASETS[data_spec.dataset](data_spec.source, data_dir, download)
    n_avail = len(arrays["train_images"])
    n_train, n_val = data_spec.train_size, data_spec.val_size
    n_test = data_spec.test_size or len(arrays["test_images"])
    if info["source"] == "embedded subset" and n_train + n_val > n_avail:
        scale = n_avail / (n_train + n_val)
        n_train, n_val = int(n_train * scale), n_avail - int(n_train * scale)
        n_test = min(n_test, len(arrays["test_images"]))
    if n_train + n_val > n_avail:
        raise UserError(f"data.train_size + data.val_size = {n_train + n_val} exceeds the "
                        f"{n_avail} training images of {data_spec.dataset} ({info['path']})")
    if n_test > len(arrays["test_images"]):
        raise UserError(f"data.test_size = {n_test} exceeds the {len(arrays['test_images'])} test "
                        f"images of {data_spec.dataset} ({info['path']})")
    x = preprocess(arrays["train_images"][: n_train + n_val], data_spec.preprocessing)
    y = arrays["train_labels"][: n_train + n_val].long()
    test_x = preprocess(arrays["test_images"][:n_test], data_spec.preprocessing)
    test_y = arrays["test_labels"][:n_test].long()
    full_test = n_test == len(arrays["test_images"]) and info["source"] == "full"
    info = dict(info, dataset=data_spec.dataset, n_train=n_train, n_val=n_val, n_test=n_test,
                test_set="full test set" if full_test else f"first {n_test} test images"
                + (" (embedded subset)" if info["source"] == "embedded subset" else ""))
    return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], test_x, test_y,
                  NUM_CLASSES[data_spec.dataset], info)


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's shuffled index batches (last partial batch dropped, as the authors' code does:
    BatchNorm needs more than one sample). The permutation is drawn on the CPU with the run's
    generator, so it is the same on every device, and moved once per epoch."""
    perm = torch.randperm(n, generator=generator).to(device)
    return list(perm[: n - n % batch_size].split(batch_size))
