"""SVHN (cropped digits, 32 x 32): torchvision's reader when its md5 check passes, else a reader of
the same MATLAB layout, which also reads the synthetic look-alike so that smoke runs go through it.

Layout (as torchvision's ``SVHN`` expects, files directly in the folder): ``train_32x32.mat``,
``test_32x32.mat`` (and the optional ``extra_32x32.mat``); each holds ``X``, uint8
32 x 32 x 3 x N (rows, columns, RGB, images), and ``y``, N x 1 with labels 1..10 where 10 is the
digit 0. Read as torchvision does: images to N x 3 x 32 x 32, label 10 -> 0.

Training data: ``train_32x32.mat`` only (73,257 images). ``extra_32x32.mat`` (531,131 easier
images) is not used unless ``load_svhn(..., include_extra=True)``. BinaryConnect and BNN train on
pylearn2's ``splitted_train`` (598,388 images: train + extra less 6,000 held out for validation,
pylearn2/datasets/svhn.py) and DoReFa-Net's tensorpack script mixes train and extra
(svhn-digit-dorefa.py, RandomMixData): specs that train on train alone list that as a deviation.

Found (as ``DIR/svhn/``, ``DIR/SVHN/`` or ``DIR`` itself under a data root) or downloaded by the
data source policy (suite/data/source.py; ``"auto"`` never downloads 600 MB by itself). Its
stand-in, ``"synthetic"``: digit-like images written once in the real ``.mat`` layout to a cache
folder (`synthetic_folder`) and read back by the same reader; tables say so in capitals.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from suite.data.download import try_download
from suite.data.source import DatasetInfo, cache_folder
from suite.errors import UserError

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
SUBFOLDERS = ("svhn", "SVHN")
SYNTHETIC_VERSION = 1  # bump when write_synthetic's output changes: the cache folder is keyed by it

# 3 x 5 bitmaps of the digits 0-9 (rows top to bottom), for the synthetic look-alike.
_FONT = ("111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
         "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111")


def read_mat(path: Path) -> dict[str, torch.Tensor]:
    """One SVHN .mat file -> images (uint8 N x 3 x 32 x 32) and labels (int64, 10 -> 0), exactly
    as torchvision's SVHN reads it (X transposed (3, 2, 0, 1), y squeezed)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
        raise UserError(f"{path}: cannot read an SVHN .mat file ({type(e).__name__}: {e})") from None
    if "X" not in mat or "y" not in mat:
        raise UserError(f"{path}: not an SVHN file (expected variables 'X' and 'y', found "
                        f"{sorted(k for k in mat if not k.startswith('__'))})")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise UserError(f"{path}: 'X' must be uint8 32 x 32 x 3 x N, got {x.dtype} {x.shape}")
    labels = y.astype(np.int64).reshape(-1)
    if labels.shape != (x.shape[3],) or (len(labels) and not 1 <= labels.min() <= labels.max() <= 10):
        raise UserError(f"{path}: 'y' must hold {x.shape[3]} labels in 1..10 (10 = digit 0), got shape {y.shape}")
    labels[labels == 10] = 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels)}


def _find_folder(root: Path) -> Path | None:
    for folder in (*(root / s for s in SUBFOLDERS), root):
        if (folder / FILES["train"]).exists() and (folder / FILES["test"]).exists():
            return folder
    return None


def _torchvision_passes(folder: Path, split: str) -> bool:
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import check_integrity

    return check_integrity(str(folder / FILES[split]), SVHN.split_list[split][2])


def _read_split(folder: Path, split: str, check_md5: bool) -> tuple[dict, str]:
    """(arrays, reader): torchvision's SVHN for a file with the original md5, else `read_mat`."""
    if check_md5 and _torchvision_passes(folder, split):
        from torchvision.datasets import SVHN

        ds = SVHN(str(folder), split=split, download=False)
        return ({"images": torch.from_numpy(np.ascontiguousarray(ds.data)), "labels": torch.from_numpy(ds.labels)},
                "torchvision (md5 check passed)")
    return read_mat(folder / FILES[split]), "the suite's .mat reader (torchvision's md5 check failed)"


def _read_folder(folder: Path, include_extra: bool, check_md5: bool = True) -> tuple[dict, dict]:
    train, reader = _read_split(folder, "train", check_md5)
    test, _ = _read_split(folder, "test", check_md5)
    if include_extra:
        if not (folder / FILES["extra"]).exists():
            raise UserError(f"SVHN: {folder / FILES['extra']} not found (include_extra needs it)")
        extra, _ = _read_split(folder, "extra", check_md5)
        train = {k: torch.cat([train[k], extra[k]]) for k in ("images", "labels")}
    arrays = {"train_images": train["images"], "train_labels": train["labels"],
              "test_images": test["images"], "test_labels": test["labels"]}
    info = {"reader": reader, "test_set": "SVHN test set (test_32x32.mat)",
            "training_files": "train_32x32.mat + extra_32x32.mat" if include_extra else "train_32x32.mat"}
    return arrays, info


def missing_message(roots: list[Path]) -> str:
    where = "; ".join(str(r / "svhn") for r in roots)
    return (f"SVHN not found. Expected {FILES['train']} and {FILES['test']} (optionally {FILES['extra']}) in one "
            f"of: {where} (or the folder itself). Get them with torchvision (python -c \"from torchvision.datasets "
            f"import SVHN; [SVHN('DIR/svhn', split=s, download=True) for s in ('train', 'test')]\") or from "
            f"http://ufldl.stanford.edu/housenumbers/, then pass --data-dir DIR or set SUITE_DATA_DIR=DIR. "
            f"data.source = \"synthetic\" runs on generated data (a pipeline test only).")


def _download(root: Path, include_extra: bool = False) -> Path | None:
    """torchvision's download (md5-checked) into root/svhn; None (after a one-line note) when offline."""
    from torchvision.datasets import SVHN

    folder = root / "svhn"

    def fetch() -> Path:
        for split in ("train", "test", "extra") if include_extra else ("train", "test"):
            SVHN(str(folder), split=split, download=True)
        return folder

    return try_download("SVHN", fetch)


def _digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """House-number look-alikes: the label's 3 x 5 glyph scaled to 15 x 25 at a random offset, random
    foreground and background colours, pixel noise. uint8 N x 32 x 32 x 3."""
    n = len(labels)
    glyphs = np.array([[int(c) for c in g] for g in _FONT], dtype=np.float32).reshape(10, 5, 3)
    glyphs = glyphs.repeat(5, axis=1).repeat(5, axis=2)  # 25 x 15
    masks = np.zeros((n, 32, 32), dtype=np.float32)
    rows, cols = rng.integers(0, 8, size=n), rng.integers(0, 18, size=n)
    for i in range(n):  # writing a test fixture, not a training path
        masks[i, rows[i]:rows[i] + 25, cols[i]:cols[i] + 15] = glyphs[labels[i]]
    fg, bg = rng.uniform(0, 255, size=(n, 1, 1, 3)), rng.uniform(0, 255, size=(n, 1, 1, 3))
    away = np.abs(fg - bg) < 80  # keep the digit visible
    fg = np.where(away, 255 - bg, fg)
    images = bg + (fg - bg) * masks[..., None] + rng.normal(0, 20, size=(n, 32, 32, 3))
    return images.clip(0, 255).astype(np.uint8)


def _savemat_atomic(path: Path, labels: np.ndarray, rng: np.random.Generator) -> None:
    import scipy.io

    x = _digit_images(labels, rng).transpose(1, 2, 3, 0)  # N x H x W x C -> H x W x C x N, the real layout
    y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)  # the digit 0 is stored as 10
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        scipy.io.savemat(tmp, {"X": np.ascontiguousarray(x), "y": y})
        os.replace(tmp, path)  # readers never see a half-written file
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_synthetic(folder: Path, n_train: int = 2400, n_test: int = 800, n_extra: int = 0, seed: int = 0) -> Path:
    """Write a small learnable SVHN look-alike in the real .mat layout (X uint8 32 x 32 x 3 x N, y N x 1
    with 10 for the digit 0) into `folder`; returns `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test), ("extra", n_extra)):
        if n:
            _savemat_atomic(folder / FILES[split], rng.integers(0, 10, size=n), rng)
    return folder


def synthetic_folder() -> Path:
    """The cached synthetic SVHN folder (written on first use, under the user cache)."""
    folder = cache_folder("synthetic") / f"svhn-v{SYNTHETIC_VERSION}"
    if _find_folder(folder) is None:
        write_synthetic(folder)
    return folder


def _synthetic(include_extra: bool = False) -> tuple[dict, dict]:
    folder = synthetic_folder()
    if include_extra and not (folder / FILES["extra"]).exists():
        write_synthetic(folder)  # same seed: train and test unchanged
        _savemat_atomic(folder / FILES["extra"], np.random.default_rng(1).integers(0, 10, size=800),
                        np.random.default_rng(2))
    arrays, _ = _read_folder(folder, include_extra, check_md5=False)
    return arrays, {"source": "synthetic", "path": f"generated (suite.data.svhn.write_synthetic) in "
                    f"synthetic/{folder.name}", "root": "cache", "test_set": "synthetic test set"}


INFO = DatasetInfo(name="SVHN", num_classes=10, in_shape=(3, 32, 32), find=_find_folder,
                   read=lambda folder, include_extra=False: _read_folder(folder, include_extra), stand_in="synthetic",
                   read_stand_in=_synthetic, missing=missing_message, download=_download)
