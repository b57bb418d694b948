"""CIFAR-10: torchvision's reader when its integrity check passes, else a reader of the same
standard python-pickle layout (copies whose md5 differs, e.g. without the ``filenames`` key).

Layout (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5``, ``batches.meta``,
``test_batch``; each batch unpickles (``encoding="latin1"``) to a dict with ``data`` (uint8
N x 3072: the R, G, B planes of a 32 x 32 image, row-major) and ``labels``. The test set is
selectable (``data.test_set``): the standard ``test_batch``, or one of the partial test files
in ``cifar-10-test-partial/``, beside or inside the batches' folder
(``test_batch_exact_first1000``: test images 0-999, exact; ``test_batch_mixed_jpeg_q75``: all
10000 test images grouped by class, 9000 of them decoded from JPEG q75, a ``lossless`` key
marking the exact ones). Every table says which.

Found or downloaded by the data source policy (suite/data/source.py; ``auto`` never downloads
170 MB by itself). Its stand-in (``"synthetic"``, or ``"auto"`` when no copy is on disk) is a small
synthetic set written in the same layout to a temporary folder and read back by the same reader:
it tests the pipeline, never a result, and tables say so in capitals.

The batches are pickles, which can run code when loaded: they are read with an unpickler that
accepts only what the standard layout holds (numpy arrays, lists, numbers, strings).
"""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

from suite.data.download import try_download
from suite.data.source import DatasetInfo
from suite.errors import UserError
from suite.paths import portable_path

FOLDER = "cifar-10-batches-py"
PARTIAL_FOLDER = "cifar-10-test-partial"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
META = "batches.meta"
# test_set -> (file name, description for tables)
TEST_FILES = {
    "standard": ("test_batch", "standard CIFAR-10 test set (test_batch)"),
    "exact_first1000": ("test_batch_exact_first1000", "CIFAR-10 test images 0-999 (exact)"),
    "mixed_jpeg_q75": ("test_batch_mixed_jpeg_q75",
                       "all 10000 CIFAR-10 test images, 9000 of them JPEG-decoded (q75): indicative only"),
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# The only globals a standard batch refers to: numpy's array reconstruction (numpy 1 and 2 names).
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data and numpy arrays: a planted pickle cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: not part of a CIFAR-10 batch")


def read_batch(path: Path) -> dict[str, torch.Tensor]:
    """One pickled batch -> images (uint8 N x 3 x 32 x 32), labels (int64) and, where the file
    has it, ``lossless`` (bool: the image is exact, not JPEG-decoded)."""
    try:
        entry = _BatchUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError) as e:
        raise UserError(f"{path}: cannot read a CIFAR-10 batch ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise UserError(f"{path}: not a CIFAR-10 batch (expected keys 'data' and 'labels', found {keys})")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: 'data' must be uint8 N x 3072, got {data.dtype} {data.shape}")
    try:
        labels = np.asarray(entry["labels"])
        ok = labels.dtype.kind in "iu" or (labels.dtype == object and all(isinstance(v, int) for v in labels.flat))
        labels = labels.astype(np.int64) if ok else None
    except (TypeError, ValueError, OverflowError):
        labels = None
    if labels is None or labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise UserError(f"{path}: 'labels' must be {len(data)} integers in 0..9")
    out = {"images": torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), "labels": torch.from_numpy(labels)}
    if "lossless" in entry:
        lossless = np.asarray(entry["lossless"])
        if lossless.shape != (len(data),) or lossless.dtype.kind not in "biu":
            raise UserError(f"{path}: 'lossless' must be {len(data)} flags (0/1)")
        out["lossless"] = torch.as_tensor(lossless.astype(bool))
    return out


def _find_folder(root: Path) -> Path | None:
    """The folder holding the five training batches: root/cifar-10-batches-py, or root itself."""
    for folder in (root / FOLDER, root):
        if all((folder / f).exists() for f in TRAIN_FILES):
            return folder
    return None


def _find_test_file(folder: Path, test_set: str) -> Path | None:
    name = TEST_FILES[test_set][0]
    for candidate in (folder / name, folder.parent / PARTIAL_FOLDER / name, folder / PARTIAL_FOLDER / name):
        if candidate.exists():
            return candidate
    return None


def _torchvision_passes(folder: Path) -> bool:
    """torchvision's own md5 check of the six standard files and batches.meta."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    files = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return all(check_integrity(str(folder / name), md5) for name, md5 in files)


def _read_with_torchvision(folder: Path, train: bool) -> dict[str, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(folder.parent), train=train, download=False)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # HWC -> CHW
    return {"images": images, "labels": torch.as_tensor(ds.targets, dtype=torch.int64)}


def _read_folder(folder: Path, test_set: str, check_md5: bool = True) -> tuple[dict, dict]:
    test_file = _find_test_file(folder, test_set)
    if test_file is None:
        name = TEST_FILES[test_set][0]
        raise UserError(f"CIFAR-10 test set {test_set!r}: file {name} not found in {folder}, "
                        f"{folder.parent / PARTIAL_FOLDER} or {folder / PARTIAL_FOLDER}"
                        + ("; data.test_set = \"exact_first1000\" or \"mixed_jpeg_q75\" selects the partial "
                           "test files (cifar-10-test-partial/)" if test_set == "standard" else ""))
    genuine = (check_md5 and folder.name == FOLDER and (folder / "test_batch").exists()
               and (folder / META).exists() and _torchvision_passes(folder))
    if genuine:
        train = _read_with_torchvision(folder, train=True)
        reader = "torchvision (md5 check passed)"
    else:
        parts = [read_batch(folder / f) for f in TRAIN_FILES]
        train = {k: torch.cat([p[k] for p in parts]) for k in ("images", "labels")}
        reader = ("the suite's pickle reader (torchvision's md5 check failed: these files differ from the "
                  "originals' bytes, e.g. no 'filenames' key)")
    test = _read_with_torchvision(folder, train=False) if genuine and test_set == "standard" else read_batch(test_file)
    arrays = {"train_images": train["images"], "train_labels": train["labels"],
              "test_images": test["images"], "test_labels": test["labels"]}
    if "lossless" in test:
        arrays["test_lossless"] = test["lossless"]
    info = {"test_file": portable_path(test_file, folder.parent), "reader": reader,
            "test_set": TEST_FILES[test_set][1]}
    if "lossless" in test:
        info["test_lossless"] = int(test["lossless"].sum())
    if test_set == "mixed_jpeg_q75":
        info["test_grouped_by_class"] = True
    return arrays, info


def missing_message(roots: list[Path]) -> str:
    where = "; ".join(str(r / FOLDER) for r in roots)
    return (f"CIFAR-10 not found. Expected the python-pickle batches ({', '.join(TRAIN_FILES)}, {META}, "
            f"test_batch) in one of: {where}. Get them with torchvision (python -c \"from torchvision.datasets "
            f"import CIFAR10; CIFAR10('DIR', download=True)\") or as cifar-10-python.tar.gz from the CIFAR "
            f"site, then pass --data-dir DIR or set SUITE_DATA_DIR=DIR; the partial test files "
            f"({', '.join(TEST_FILES[t][0] for t in ('exact_first1000', 'mixed_jpeg_q75'))}) go in "
            f"DIR/{PARTIAL_FOLDER}/. data.source = \"synthetic\" runs on generated data (a pipeline test only).")


def _download(root: Path) -> Path | None:
    """torchvision's download (md5-checked) into root; None (after a one-line note) when offline."""
    from torchvision.datasets import CIFAR10

    def fetch() -> Path:
        CIFAR10(str(root), train=True, download=True)
        return root / FOLDER

    return try_download("CIFAR-10", fetch)


def write_synthetic(folder: Path, per_batch: int = 400, n_test: int = 1000, filenames: bool = True,
                    seed: int = 0) -> Path:
    """Write a small learnable CIFAR-10 look-alike in the standard layout: each class is a fixed
    random low-frequency colour pattern plus pixel noise. Returns ``folder/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, size=(10, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    out = Path(folder) / FOLDER
    out.mkdir(parents=True, exist_ok=True)

    def batch(n: int, label: str) -> dict:
        labels = rng.integers(0, 10, size=n)
        images = templates[labels] + rng.normal(0, 40, size=(n, 3, 32, 32))
        entry = {"batch_label": label, "labels": labels.tolist(),
                 "data": images.clip(0, 255).astype(np.uint8).reshape(n, 3072)}
        if filenames:
            entry["filenames"] = [f"synthetic_{i:05d}.png" for i in range(n)]
        return entry

    for i, name in enumerate(TRAIN_FILES, 1):
        with open(out / name, "wb") as f:
            pickle.dump(batch(per_batch, f"synthetic training batch {i} of 5"), f)
    with open(out / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, "synthetic testing batch 1 of 1"), f)
    with open(out / META, "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": list(CLASSES), "num_vis": 3072}, f)
    return out


def _synthetic(test_set: str = "standard") -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix="cifar10-synthetic-") as tmp:
        arrays, _ = _read_folder(write_synthetic(Path(tmp)), "standard", check_md5=False)
    return arrays, {"source": "synthetic", "path": "generated (suite.data.cifar10.write_synthetic)",
                    "root": "package", "test_set": "synthetic test batch"}


def _check_test_set(test_set: str) -> str:
    if test_set not in TEST_FILES:
        raise UserError(f"data.test_set: {test_set!r} is not one of {', '.join(TEST_FILES)}")
    return test_set


INFO = DatasetInfo(name="CIFAR-10", num_classes=10, in_shape=(3, 32, 32), find=_find_folder,
                   read=lambda folder, test_set="standard": _read_folder(folder, _check_test_set(test_set)),
                   stand_in="synthetic", read_stand_in=_synthetic, missing=missing_message,
                   download=lambda root, test_set="standard": _download(root), test_sets=tuple(TEST_FILES))
