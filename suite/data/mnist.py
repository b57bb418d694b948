"""MNIST: found on disk (data dir, $SUITE_DATA_DIR, the cache), else torchvision's download,
else (source = "auto") the small real subset embedded in the package."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from suite.data.download import try_download
from suite.data.idx import read_idx
from suite.errors import UserError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EMBEDDED = Path(__file__).resolve().parent / "embedded" / "mnist-subset"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lowbit-suite" / "data"


def candidate_roots(data_dir: str | Path | None) -> list[Path]:
    """Where MNIST is looked for, in order: --data-dir, $SUITE_DATA_DIR, the download cache."""
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get("SUITE_DATA_DIR"):
        roots.append(Path(os.environ["SUITE_DATA_DIR"]))
    roots.append(DEFAULT_CACHE)
    return roots


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
        if len(out[f"{split}_images"]) != len(out[f"{split}_labels"]):
            raise UserError(f"{folder}: {split} images and labels differ in count "
                            f"({len(out[f'{split}_images'])} vs {len(out[f'{split}_labels'])})")
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


def load_mnist(source: str, data_dir=None, download: bool = True) -> tuple[dict, dict]:
    """The four MNIST arrays (uint8 images N x 28 x 28, int64 labels) and where they came from."""
    if source == "embedded":
        return _read_folder(EMBEDDED), _embedded_info()
    roots = candidate_roots(data_dir)
    for root in roots:
        folder = _find_raw(root)
        if folder is not None:
            return _read_folder(folder), {"source": "full", "path": str(folder)}
    if download and not os.environ.get("SUITE_OFFLINE"):
        folder = _download(roots[0])
        if folder is not None:
            return _read_folder(folder), {"source": "full", "path": str(folder), "downloaded": True}
    if source == "full":
        raise UserError(missing_message(roots))
    print("note: full MNIST not found; using the embedded subset (labelled so in tables). "
          + missing_message(roots), file=sys.stderr)
    return _read_folder(EMBEDDED), _embedded_info()


def _embedded_info() -> dict:
    return {"source": "embedded subset", "path": str(EMBEDDED)}
