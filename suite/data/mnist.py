"""MNIST: the four IDX files, found or downloaded by the data source policy (suite/data/source.py);
its stand-in is the small real subset embedded in the package (the first 12,000 training and
2,000 test images)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from suite.data.download import try_download
from suite.data.idx import read_idx
from suite.data.source import DatasetInfo
from suite.errors import UserError
from suite.paths import portable_path

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EMBEDDED = Path(__file__).resolve().parent / "embedded" / "mnist-subset"


def _find_raw(root: Path) -> Path | None:
    """The folder holding the four files (as .gz or unpacked), in torchvision's layout or flat."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        if all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in FILES.values()):
            return folder
    return None


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, name in FILES.items():
        path = folder / name if (folder / name).exists() else folder / f"{name}.gz"
        out[key] = read_idx(path, 3 if key.endswith("images") else 1)
    for split in ("train", "test"):
        images, labels = out[f"{split}_images"], out[f"{split}_labels"]
        if tuple(images.shape[1:]) != (28, 28):
            raise UserError(f"{folder / FILES[split + '_images']}: images must be 28 x 28, got "
                            f"{' x '.join(map(str, images.shape[1:]))}")
        if len(images) != len(labels):
            raise UserError(f"{folder}: {split} images and labels differ in count ({len(images)} vs {len(labels)})")
        if len(labels) and int(labels.max()) > 9:
            raise UserError(f"{folder / FILES[split + '_labels']}: labels must be digits 0..9, found "
                            f"{int(labels.max())}")
        out[f"{split}_labels"] = labels.long()
    return out


def _download(root: Path) -> Path | None:
    """torchvision's download into root; None (after a one-line note) when offline."""
    from torchvision.datasets import MNIST

    def fetch() -> Path:
        with tempfile.TemporaryDirectory() as tmp:
            MNIST(tmp, train=True, download=True)  # verifies torchvision's md5 sums
            raw = root / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for name in FILES.values():
                shutil.copy2(Path(tmp) / "MNIST" / "raw" / f"{name}.gz", raw / f"{name}.gz")
        return raw

    return try_download("MNIST", fetch)


def missing_message(roots: list[Path]) -> str:
    names = ", ".join(f"{f}.gz" for f in FILES.values())
    where = "; ".join(str(r / "MNIST" / "raw") for r in roots)
    return (f"MNIST not found. Expected the four IDX files ({names}; .gz or unpacked) in one of: "
            f"{where}. Get them with torchvision (python -c \"from torchvision.datasets import MNIST; "
            f"MNIST('DIR', download=True)\") or from the MNIST site, then pass --data-dir DIR or set "
            f"SUITE_DATA_DIR=DIR; or set data.source = \"embedded\" for the small bundled subset.")


def _embedded() -> tuple[dict, dict]:
    return _read_folder(EMBEDDED), {"source": "embedded subset", "path": portable_path(EMBEDDED, EMBEDDED.parents[2]),
                                    "root": "package"}


INFO = DatasetInfo(name="MNIST", num_classes=10, in_shape=(1, 28, 28), find=_find_raw,
                   read=lambda folder: (_read_folder(folder), {}), stand_in="embedded", read_stand_in=_embedded,
                   missing=missing_message, download=_download, auto_downloads=True)
