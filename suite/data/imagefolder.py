"""ImageNet-style image folders (torchvision's ImageFolder layout), decoded once into a uint8 cache.

Layout: ``ROOT/train/CLASS/*.JPEG`` and ``ROOT/val/CLASS/*.JPEG``, one folder per class (ImageNet's
validation images sorted into class folders, as torchvision's ImageFolder and the XNOR-Net
reimplementations read them); classes are the sorted folder names of ``train/``, files are
listed by torchvision's ``make_dataset``. ROOT is looked for as ``DIR/imagenet``,
``DIR/ImageNet``, ``DIR/ILSVRC2012`` or ``DIR`` itself, DIR being --data-dir, $SUITE_DATA_DIR
or the cache (the data source policy, suite/data/source.py). The test set is ``val/`` (the papers
report ImageNet validation error); the spec's validation split comes from ``train/``.

Decoding happens once: each image is read with PIL (as RGB), its shorter side resized
to S = ``data.image_size`` (bilinear, antialiased) and centre-cropped to S x S, and written into a
uint8 N x 3 x S x S file (a numpy memmap) under the user cache, keyed by the folder, its file list
and S. Images are stored in a fixed shuffled order (seed 0), so "the first n" is a sample of all
classes; decoding stops at the images a run needs, and a later run that needs more continues
where it stopped (also after an interruption). Training reads the file through the memory map
(torch.from_numpy on it reads nothing until indexed); batches are gathered from it and made float
on the device (`suite.data.lazy`). No augmentation: every epoch sees the same centre crops.

``data.source``: ``full`` (found, else an error naming the layout: ImageNet cannot be downloaded
automatically), ``auto`` (found, else SYNTHETIC), ``synthetic`` (a small generated ImageFolder
of JPEG and PNG files of several sizes, written once to the cache and read by the same path).
Cached files are named in records relative to the cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from suite.data.source import DatasetInfo, cache_folder
from suite.errors import UserError
from suite.paths import portable_path

SUBFOLDERS = ("imagenet", "ImageNet", "ILSVRC2012")
ORDER_SEED = 0  # the fixed shuffle of each split's images (part of the cache key)
SYNTHETIC_VERSION = 1
_CHUNK = 256  # images decoded between two progress saves


def find_root(root: Path) -> Path | None:
    for folder in (*(root / s for s in SUBFOLDERS), root):
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return folder
    return None


def list_images(root: Path) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """{"train": [(path, label)], "val": [...]} in torchvision's order, and the class names."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root / "train"))
        val_classes, _ = find_classes(str(root / "val"))
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise UserError(f"{root / 'val'}: class folders not in train/: {', '.join(unknown[:5])}"
                            + (" ..." if len(unknown) > 5 else ""))
        samples = {"train": make_dataset(str(root / "train"), class_to_idx, IMG_EXTENSIONS),
                   "val": make_dataset(str(root / "val"), class_to_idx, IMG_EXTENSIONS, allow_empty=True)}
    except FileNotFoundError as e:
        raise UserError(f"{root}: not an ImageFolder ({e})") from None
    if not samples["val"]:
        raise UserError(f"{root / 'val'}: no images (extensions {', '.join(IMG_EXTENSIONS)})")
    return samples, classes


def decode(path: str, size: int) -> torch.Tensor:
    """One image file -> uint8 3 x size x size: RGB, shorter side resized to size (bilinear,
    antialiased), centre crop. Read with PIL, as torchvision's ImageFolder does."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as f:
            image = torch.from_numpy(np.array(f.convert("RGB"))).permute(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot decode the image ({type(e).__name__}: {e})") from None
    return TF.center_crop(TF.resize(image, size, antialias=True), size).contiguous()


def cache_dir() -> Path:
    return cache_folder("imagefolder")


def _cache_key(root: Path, split: str, files: list[str], size: int) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((str(root.resolve()), split, size, ORDER_SEED, len(files))).encode())
    for f in files:
        h.update(f.encode())
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (two runs never decode into the same file at once)."""
    import fcntl

    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_json(path: Path, content: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(content, f)
    os.replace(tmp, path)


def decoded_images(root: Path, split: str, files: list[str], size: int, needed: int,
                   progress: bool = True) -> tuple[torch.Tensor, Path]:
    """The first `needed` of `files` (already in the stored order) as uint8 needed x 3 x size x
    size over the cache file, decoding those not yet in it; and the cache file's path."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = _cache_key(root, split, files, size)
    data_path, meta_path = cache / f"{key}.u8", cache / f"{key}.json"
    shape = (len(files), 3, size, size)
    with _locked(cache / f"{key}.lock"):
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        if meta is None or meta.get("shape") != list(shape):  # new, or a stale file under the same key
            np.memmap(data_path, dtype=np.uint8, mode="w+", shape=shape).flush()  # sparse until written
            meta = {"root": str(root), "split": split, "shape": list(shape), "decoded": 0}
            _write_json(meta_path, meta)
        done = meta["decoded"]
        if done < needed:
            out = np.memmap(data_path, dtype=np.uint8, mode="r+", shape=shape)
            bar = tqdm(total=needed - done, desc=f"decoding {split}/ to {size}x{size} (once)", unit="img",
                       disable=None if progress else True, leave=False)
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                while done < needed:
                    stop = min(done + _CHUNK, needed)
                    for i, image in enumerate(pool.map(lambda f: decode(f, size), files[done:stop]), done):
                        out[i] = image.numpy()
                    out.flush()
                    _write_json(meta_path, dict(meta, decoded=stop))  # an interrupted decode resumes here
                    bar.update(stop - done)
                    done = stop
            bar.close()
            del out
    # copy-on-write mapping: writable for torch.from_numpy, nothing written back, read lazily
    view = np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)[:needed]
    return torch.from_numpy(view), data_path


def write_synthetic(root: Path, n_classes: int = 10, train_per_class: int = 40, val_per_class: int = 10,
                    seed: int = 0) -> Path:
    """A small learnable ImageFolder in the real layout (root/train/CLASS/*.jpg|png, root/val/...):
    each class a colour and a stripe orientation, images of several sizes and aspect ratios, some
    PNG and some grayscale, so that decoding, RGB conversion, resizing and cropping are exercised."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.uniform(30, 225, size=(n_classes, 3))
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c in range(n_classes):
            folder = Path(root) / split / f"class_{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = rng.integers(40, 97, size=2)
                yy, xx = np.mgrid[0:h, 0:w]
                stripes = np.sin((xx * np.cos(np.pi * c / n_classes) + yy * np.sin(np.pi * c / n_classes)) / 3)
                image = colours[c][None, None, :] * (0.75 + 0.25 * stripes[..., None]) + rng.normal(0, 12, (h, w, 3))
                picture = Image.fromarray(image.clip(0, 255).astype(np.uint8))
                if i % 7 == 3:  # a grayscale file: read back as RGB
                    picture = picture.convert("L")
                if i % 3 == 0:
                    picture.save(folder / f"img_{i:04d}.png")
                else:
                    picture.save(folder / f"img_{i:04d}.jpg", quality=90)
    return Path(root)


def synthetic_folder() -> Path:
    """The cached synthetic ImageFolder (written once, atomically, under the user cache)."""
    folder = cache_folder("synthetic") / f"imagefolder-v{SYNTHETIC_VERSION}"
    if find_root(folder) is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".imagefolder-"))
        write_synthetic(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another run wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def missing_message(roots: list[Path]) -> str:
    where = "; ".join(str(r / "imagenet") for r in roots)
    return (f"ImageNet (ImageFolder layout) not found. Expected train/CLASS/*.JPEG and val/CLASS/*.JPEG (the "
            f"validation images sorted into the same class folders) in one of: {where} (or the folder itself). "
            f"It cannot be downloaded automatically: get ILSVRC2012 from image-net.org, sort val/ into class "
            f"folders (e.g. with the valprep.sh script of the PyTorch ImageNet example), then pass --data-dir DIR "
            f"or set SUITE_DATA_DIR=DIR. data.source = \"synthetic\" runs on generated data (a pipeline test only).")


def _order(n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(ORDER_SEED))


def _read_root(root: Path, image_size: int, n_train: int | None, n_test: int | None,
               progress: bool = True) -> tuple[dict, dict]:
    samples, classes = list_images(root)
    arrays, info = {}, {"num_classes": len(classes), "image_size": image_size}
    for split, key, needed in (("train", "train", n_train), ("val", "test", n_test)):
        order = _order(len(samples[split]))
        files = [samples[split][i][0] for i in order.tolist()]
        labels = torch.tensor([samples[split][i][1] for i in order.tolist()], dtype=torch.int64)
        count = len(files) if needed is None else min(needed, len(files))
        images, cache_file = decoded_images(root, split, files, image_size, count, progress)
        arrays[f"{key}_images"], arrays[f"{key}_labels"] = images, labels[:count]
        info[f"{split}_images_in_folder"] = len(files)
        info[f"{split}_cache"] = portable_path(cache_file, cache_dir())
    info["test_images_total"] = info["val_images_in_folder"]
    info["test_set"] = (f"{root.name}/val ({info['val_images_in_folder']} images in a fixed shuffled order, "
                        f"shorter side resized to {image_size}, centre crop)")
    return arrays, info


def _read(root: Path, image_size: int | None = None, n_train: int | None = None,
          n_test: int | None = None) -> tuple[dict, dict]:
    if image_size is None:
        raise UserError("data.image_size: required for an ImageFolder data set (e.g. 224)")
    return _read_root(root, image_size, n_train, n_test)


def _synthetic(**options) -> tuple[dict, dict]:
    folder = synthetic_folder()
    arrays, info = _read(folder, **options)
    return arrays, dict(info, source="synthetic", root="cache", test_set="synthetic val/ images",
                        path=f"generated (suite.data.imagefolder.write_synthetic) in synthetic/{folder.name}")


INFO = DatasetInfo(name="ImageNet", num_classes=1000, in_shape=None, find=find_root, read=_read,
                   stand_in="synthetic", read_stand_in=_synthetic, missing=missing_message, top5=True,
                   image_folder=True)
