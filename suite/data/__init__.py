"""Datasets as in-memory tensors, split and preprocessed once; batches are made by indexing.

`load_splits(data_spec)` returns train / validation / test tensors and a description of the
data actually used (full set or embedded subset, sizes, the test set's name), which goes into
every record and table. Image folders too large for that (ImageNet) stay uint8 on the host and
are made float one batch at a time on the device (`suite.data.lazy.LazyImages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from suite.data import cifar10, imagefolder, mnist, svhn
from suite.data.lazy import LazyImages
from suite.data.source import DatasetInfo, locate
from suite.data.whitening import fitted_zca, gcn_zca
from suite.errors import UserError

# data.dataset name -> its DatasetInfo (suite/data/source.py): classes, shape, where it comes from.
# To add a dataset: a module with a reader and an INFO, registered here.
DATASETS: dict[str, DatasetInfo] = {"mnist": mnist.INFO, "cifar10": cifar10.INFO, "svhn": svhn.INFO,
                                    "imagenet": imagefolder.INFO}
NUM_CLASSES = {name: d.num_classes for name, d in DATASETS.items()}
SOURCES = {name: d.sources for name, d in DATASETS.items()}
TEST_SETS = {name: d.test_sets for name, d in DATASETS.items()}
# gcn_zca: BinaryConnect's CIFAR-10 preprocessing (suite/data/whitening.py), fitted on the training split
PREPROCESSING = ("pm1", "unit", "standardize", "gcn_zca")
_STATS_SAMPLE = 10000  # standardize on an image folder: statistics of its first (shuffled) training images
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
    top5: bool = False  # evaluate top-5 error too (ImageNet)

    def to(self, device) -> Splits:
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return Splits(**moved, num_classes=self.num_classes, info=self.info, top5=self.top5)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def batch_transform(self):
        """The per-batch transform of images kept as uint8 on the host (None: in-memory float data)."""
        return self.train_x.transform if isinstance(self.train_x, LazyImages) else None

    def index_device(self, device) -> torch.device:
        """Where batch indices belong: the host for images gathered there, else the data's device."""
        return torch.device("cpu") if isinstance(self.train_x, LazyImages) else torch.device(device)


def in_shape(data_spec) -> tuple[int, ...]:
    """C x H x W of the model's input: the dataset's, or image_size x image_size when set."""
    shape, size = DATASETS[data_spec.dataset].in_shape, data_spec.image_size
    if size is None:
        if shape is None:
            raise UserError(f"data.image_size: required for dataset {data_spec.dataset!r} (e.g. 224)")
        return shape
    if size < 1:
        raise UserError(f"data.image_size: must be positive, got {size}")
    return (shape[0] if shape else 3, size, size)


@dataclass(frozen=True)
class BatchPreprocess:
    """`preprocess` applied to one uint8 batch on the device (images kept on the host)."""

    how: str
    stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def to(self, device) -> BatchPreprocess:
        return BatchPreprocess(self.how, None if self.stats is None else tuple(s.to(device) for s in self.stats))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return preprocess(images, self.how, self.stats)


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
    keeping their ratio. Standardization statistics and the ZCA whitening come from the training
    split alone. `data.image_size` resizes in-memory images once (bilinear, e.g. DoReFa-Net's
    40 x 40 SVHN) and sets an image folder's decoded size.
    """
    name, dataset = data_spec.dataset, DATASETS[data_spec.dataset]
    options = {"test_set": data_spec.test_set} if len(dataset.test_sets) > 1 else {}
    if dataset.image_folder:  # decode only the images the splits use (the first ones of a fixed shuffle)
        options.update(image_size=in_shape(data_spec)[1], n_train=data_spec.train_size + data_spec.val_size,
                       n_test=data_spec.test_size)
    arrays, info = locate(dataset, data_spec.source, data_dir, download, **options)
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
    # an image folder's loader returns only the images used: it says how many there are
    folder, whole_test = dataset.image_folder, n_test == info.get("test_images_total", len(arrays["test_images"]))
    size = data_spec.image_size
    if size is not None and not folder and in_shape(data_spec)[1:] != arrays["train_images"].shape[-2:]:
        arrays = dict(arrays, train_images=resize_images(arrays["train_images"][: n_train + n_val], size),
                      test_images=resize_images(arrays["test_images"][:n_test], size))  # only the images used
        info = dict(info, resized_to=f"{size}x{size} (bilinear)")
    stats = None
    if data_spec.preprocessing == "standardize":
        # an image folder's statistics from a sample: its first images are a random draw (fixed shuffle)
        stats = channel_stats(arrays["train_images"][: min(n_train, _STATS_SAMPLE) if folder else n_train])
        info = dict(info, standardization={"mean": [round(v, 5) for v in stats[0].tolist()],
                                           "std": [round(v, 5) for v in stats[1].tolist()]})
    y = arrays["train_labels"][: n_train + n_val].long()
    test_y = arrays["test_labels"][:n_test].long()
    if folder:
        if data_spec.preprocessing == "gcn_zca":
            raise UserError("data.preprocessing: 'gcn_zca' needs the images in memory; an image folder takes "
                            "pm1, unit or standardize (applied per batch)")
        transform, images = BatchPreprocess(data_spec.preprocessing, stats), arrays["train_images"]
        splits = Splits(LazyImages(images[:n_train], transform), y[:n_train],
                        LazyImages(images[n_train:n_train + n_val], transform), y[n_train:],
                        LazyImages(arrays["test_images"][:n_test], transform), test_y,
                        info.get("num_classes", NUM_CLASSES[name]), top5=dataset.top5)
    elif data_spec.preprocessing == "gcn_zca":
        zca, about = fitted_zca(arrays["train_images"][:n_train])
        info = dict(info, whitening=dict(about, method="GCN (scale 55) + ZCA (filter_bias 0.1), pylearn2's"))
        x = gcn_zca(arrays["train_images"][: n_train + n_val], zca)
        test_x = gcn_zca(arrays["test_images"][:n_test], zca)
    else:
        x = preprocess(arrays["train_images"][: n_train + n_val], data_spec.preprocessing, stats)
        test_x = preprocess(arrays["test_images"][:n_test], data_spec.preprocessing, stats)
    if "test_set" in info:  # the loader names its test set (e.g. CIFAR-10's partial test files)
        test_set = info["test_set"] if whole_test else f"first {n_test} of the {info['test_set']}"
    else:
        test_set = ("full test set" if whole_test and info["source"] == "full" else f"first {n_test} test images"
                    + (" (embedded subset)" if info["source"] == "embedded subset" else ""))
    info = dict(info, dataset=name, n_train=n_train, n_val=n_val, n_test=n_test, test_set=test_set)
    if folder:
        splits.info = info
        return splits
    return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], test_x, test_y, NUM_CLASSES[name], info,
                  top5=dataset.top5)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N x [C x] H x W -> N x [C x] size x size, bilinear (antialiased when shrinking; as
    tensorpack's imgaug.Resize, cv2's INTER_LINEAR, when enlarging), a chunk at a time."""
    from torchvision.transforms.v2 import functional as TF

    x = images.unsqueeze(1) if images.dim() == 3 else images
    out = torch.cat([TF.resize(c, [size, size], antialias=True) for c in x.split(8192)]) if len(x) else \
        x.new_empty((0, x.shape[1], size, size))
    return out.squeeze(1) if images.dim() == 3 else out


def batch_indices(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """One epoch's shuffled index batches (last partial batch dropped, as the authors' code does:
    BatchNorm needs more than one sample). The permutation is drawn on the CPU with the run's
    generator, so it is the same on every device, and moved once per epoch."""
    perm = torch.randperm(n, generator=generator).to(device)
    return list(perm[: n - n % batch_size].split(batch_size))
