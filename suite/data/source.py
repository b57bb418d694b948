"""Where a dataset comes from: one policy for every dataset, each described by one `DatasetInfo`.

For ``data.source = "auto"`` or ``"full"`` the dataset's files are looked for in the data roots,
in order: ``--data-dir``, ``$SUITE_DATA_DIR``, the cache (``~/.cache/lowbit-suite/data``). If none
holds them they are downloaded into the cache (torchvision's downloads, checked by their md5;
``"auto"`` downloads only small datasets, see `auto_downloads`), unless ``--no-download`` or the
machine is offline (one line says so). Then ``"full"`` stops with a message naming the files
expected, where, and how to get them; ``"auto"`` falls back to the dataset's stand-in (MNIST's
embedded subset, or synthetic data in the real file layout) and says so, and so does every table.
The stand-in can also be asked for by name (``"embedded"``, ``"synthetic"``).

What a record stores of the data's origin is portable: the folder relative to the root it was
found in, and which root that was (``--data-dir``, ``SUITE_DATA_DIR``, ``cache``, ``package``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite import settings
from suite.errors import UserError
from suite.paths import portable_path


def cache_root() -> Path:
    """Where datasets are downloaded to (and looked for last)."""
    return settings.cache_dir() / "data"


def cache_folder(name: str) -> Path:
    """A folder of the suite's cache (decoded images, whitening, synthetic data sets)."""
    return settings.cache_dir() / name


def data_roots(data_dir: str | Path | None) -> list[tuple[str, Path]]:
    """(label, folder) of every place a dataset is looked for, in order."""
    roots = [("--data-dir", Path(data_dir))] if data_dir else []
    if settings.data_dir() is not None:
        roots.append(("SUITE_DATA_DIR", settings.data_dir()))
    return roots + [("cache", cache_root())]


def origin(path: str | Path, root: Path, label: str) -> dict:
    """A found folder or file as a record stores it: relative to its data root, and which root."""
    return {"path": portable_path(path, root), "root": label}


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its shape and classes, how to find, read, download and stand in for it."""

    name: str  # as messages name it
    num_classes: int
    in_shape: tuple[int, ...] | None  # C x H x W after preprocessing; None: set by data.image_size
    find: Callable[[Path], Path | None]  # the dataset's folder under a data root, or None
    read: Callable[..., tuple[dict, dict]]  # read(folder, **options) -> (arrays, info)
    stand_in: str  # "embedded" | "synthetic": what "auto" falls back to
    read_stand_in: Callable[..., tuple[dict, dict]]  # read_stand_in(**options)
    missing: Callable[[list[Path]], str]  # the message naming the files expected, where, how to get them
    download: Callable[..., Path | None] | None = None  # download(cache_root, **options): the folder, or None
    auto_downloads: bool = False  # "auto" may download it (small enough)
    test_sets: tuple[str, ...] = ("standard",)
    top5: bool = False  # tables report top-5 error beside top-1
    image_folder: bool = False  # decoded to a uint8 cache and kept on the host (suite/data/lazy.py)

    @property
    def sources(self) -> tuple[str, ...]:
        return ("auto", "full", self.stand_in)


def locate(info: DatasetInfo, source: str, data_dir=None, download: bool = True, **options) -> tuple[dict, dict]:
    """The dataset's arrays and where they came from, by the one policy above."""
    if source == info.stand_in:
        return info.read_stand_in(**options)
    roots = data_roots(data_dir)
    for label, root in roots:
        folder = info.find(root)
        if folder is not None:
            arrays, meta = info.read(folder, **options)
            return arrays, {**meta, **origin(folder, root, label), "source": "full"}
    if download and info.download is not None and (source == "full" or info.auto_downloads):
        folder = info.download(cache_root(), **options)
        if folder is not None:
            arrays, meta = info.read(folder, **options)
            return arrays, {**meta, **origin(folder, cache_root(), "cache"), "source": "full", "downloaded": True}
    expected = [root for _, root in roots]
    if source == "full":
        raise UserError(info.missing(expected))
    what = "the embedded subset" if info.stand_in == "embedded" else "SYNTHETIC data"
    print(f"note: {info.name} not found; using {what} (labelled so in tables). " + info.missing(expected),
          file=sys.stderr)
    return info.read_stand_in(**options)
