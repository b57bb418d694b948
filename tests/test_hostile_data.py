"""Hostile data files: damaged, forged or odd MNIST, CIFAR-10 and SVHN files in a data folder.
Each is one line naming the file and what was expected, exit code 2, nothing written; a pickle
runs no code; a pipe or a device named like a data file does not hang the reader."""

import gzip
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from suite.cli import main
from suite.data import cifar10, mnist, svhn

ROOT = Path(__file__).resolve().parent.parent


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def _mnist_folder(folder: Path, n_train: int = 3000, n_test: int = 1000) -> Path:
    """A small MNIST in the real IDX layout (gzip), random digits."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        prefix = "train" if split == "train" else "t10k"
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return folder


def _replace(name: str, data):
    """Replace one MNIST file with `data` (bytes, or a function of the original bytes)."""
    def edit(folder: Path) -> Path:
        path = folder / name
        original = path.read_bytes()
        path.write_bytes(data(original) if callable(data) else data)
        return path
    return edit


def _gz(array) -> bytes:
    return gzip.compress(_idx(np.asarray(array, dtype=np.uint8)))


def _flip_middle(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 64]) + raw[middle + 64:]


def _special(name: str, make):
    def edit(folder: Path) -> Path:
        path = folder / name
        path.unlink()
        make(path)
        return path
    return edit


def _unpacked(folder: Path, gz_name: str, cut) -> Path:
    """Unpack one file (the reader then prefers it over the .gz) and damage it with `cut`."""
    path = folder / gz_name.removesuffix(".gz")
    path.write_bytes(cut(gzip.decompress((folder / gz_name).read_bytes())))
    return path


TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
MNIST_CASES = {
    "truncated-gzip": (_replace(TRAIN_IMAGES, lambda raw: raw[: len(raw) // 2]), "damaged or incomplete"),
    "corrupt-gzip": (_replace(TRAIN_IMAGES, _flip_middle), "damaged or incomplete"),
    "not-gzip": (_replace(TRAIN_IMAGES, b"plain text, not gzip"), "damaged or incomplete"),
    "empty-file": (_replace(TRAIN_LABELS, b""), "not an IDX file (bad magic number empty"),
    "empty-gzip": (_replace(TRAIN_LABELS, gzip.compress(b"")), "not an IDX file"),
    "wrong-magic": (_replace(TRAIN_LABELS, gzip.compress(b"\x08\x03\x00\x00" + bytes(100))), "not an IDX file"),
    "labels-with-three-dims": (_replace(TRAIN_LABELS, lambda raw: _gz(np.zeros((3000, 1, 1)))),
                               "wrong IDX magic number 00000803"),
    "float-type-code": (_replace(TRAIN_LABELS, gzip.compress(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) +
                                                             bytes(4))), "wrong IDX magic number 00000d01"),
    "dims-overflow": (_replace(TRAIN_IMAGES, gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**32 - 1,
                                                                                              2**32 - 1, 2**32 - 1))),
                      "truncated or padded"),
    "header-cut": (_replace(TRAIN_IMAGES, gzip.compress(bytes([0, 0, 8, 3, 0, 0]))), "truncated IDX header"),
    "padded": (_replace(TRAIN_LABELS, lambda raw: gzip.compress(gzip.decompress(raw) + b"extra")),
               "truncated or padded"),
    "images-32x32": (_replace(TRAIN_IMAGES, _gz(np.zeros((3000, 32, 32)))), "images must be 28 x 28, got 32 x 32"),
    "labels-above-9": (_replace(TRAIN_LABELS, _gz(np.full(3000, 10))), "labels must be digits 0..9, found 10"),
    "labels-255": (_replace(TRAIN_LABELS, _gz(np.full(3000, 255))), "labels must be digits 0..9, found 255"),
    "counts-differ": (_replace(TRAIN_LABELS, _gz(np.zeros(2999))), "train images and labels differ in count"),
    "no-images": (_replace(TRAIN_IMAGES, _gz(np.zeros((0, 28, 28)))), "images and labels differ in count"),
    "too-few-images": (lambda folder: (_replace(TRAIN_IMAGES, _gz(np.zeros((100, 28, 28))))(folder),
                                       _replace(TRAIN_LABELS, _gz(np.zeros(100)))(folder))[0],
                       "exceeds the 100 training images of mnist (MNIST/raw under --data-dir)"),
    "test-labels-truncated-gzip": (_replace("t10k-labels-idx1-ubyte.gz", lambda raw: raw[:-9]),
                                   "expected gzip-compressed IDX data: the file is damaged or incomplete"),
    "gzip-of-cut-idx": (_replace(TRAIN_IMAGES, lambda raw: gzip.compress(gzip.decompress(raw)[:-784])),
                        "truncated or padded: 2351232 bytes, the header (3000, 28, 28) needs 2352016"),
    "unpacked-cut-idx": (lambda folder: _unpacked(folder, TRAIN_IMAGES, lambda raw: raw[: len(raw) // 3]),
                         "truncated or padded"),
    "unpacked-cut-header": (lambda folder: _unpacked(folder, TRAIN_LABELS, lambda raw: raw[:6]),
                            "truncated IDX header"),
    "a-folder": (_special(TRAIN_IMAGES, lambda p: p.mkdir()), "not a regular file"),
    "a-fifo": (_special(TRAIN_IMAGES, os.mkfifo), "not a regular file"),
    "symlink-to-dev-zero": (_special(TRAIN_IMAGES, lambda p: p.symlink_to("/dev/zero")), "not a regular file"),
}


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def run_with(results, capsys):
    """Run a spec's smoke profile on the data folder given, expecting one line; nothing written."""
    def run(spec: str, folder: Path, *extra: str) -> str:
        line = one_line_error(capsys, ["run", spec, "--profile", "smoke", "--quiet", "--no-report", "--no-download",
                                       "--data-dir", str(folder), "--set", "data.source=full", *extra])
        assert not results.exists()
        return line
    return run


@pytest.mark.parametrize("case", MNIST_CASES, ids=list(MNIST_CASES))
def test_bad_mnist_file_is_one_line(case, tmp_path, run_with):
    edit, needle = MNIST_CASES[case]
    folder = _mnist_folder(tmp_path / "data" / "MNIST" / "raw")
    path = edit(folder)
    line = run_with("binaryconnect-mnist", tmp_path / "data", "--variant", "det")
    assert needle in line and (str(path) in line or "data.train_size" in line), line


def test_the_generated_mnist_itself_is_read(tmp_path):
    arrays, _ = mnist.INFO.read(_mnist_folder(tmp_path / "raw"))
    assert arrays["train_images"].shape == (3000, 28, 28) and int(arrays["train_labels"].max()) <= 9


# --------------------------------------------------------------------- CIFAR-10 batches

class Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _batch(**entry):
    base = {"data": np.zeros((400, 3072), np.uint8), "labels": [0] * 400}
    return pickle.dumps({**base, **entry})


CIFAR_CASES = {
    "labels-floats": (_batch(labels=[1.5] * 400), "'labels' must be 400 integers in 0..9"),
    "labels-strings": (_batch(labels=["cat"] * 400), "'labels' must be 400 integers in 0..9"),
    "labels-unknown-class": (_batch(labels=[10] * 400), "'labels' must be 400 integers in 0..9"),
    "labels-negative": (_batch(labels=[-1] * 400), "'labels' must be 400 integers in 0..9"),
    "labels-ragged": (_batch(labels=[[1], [1, 2]] * 200), "'labels' must be 400 integers in 0..9"),
    "labels-too-few": (_batch(labels=[0] * 399), "'labels' must be 400 integers in 0..9"),
    "labels-bools": (_batch(labels=[True] * 400), "'labels' must be 400 integers in 0..9"),
    "data-ragged": (_batch(data=[[0] * 3072, [0] * 10] * 200), "rows of different lengths or types"),
    "data-floats": (_batch(data=np.zeros((400, 3072), np.float32)), "'data' must be uint8 N x 3072"),
    "data-wrong-width": (_batch(data=np.zeros((400, 100), np.uint8)), "'data' must be uint8 N x 3072"),
    "data-a-string": (_batch(data="pixels"), "'data' must be uint8 N x 3072"),
    "lossless-wrong-length": (_batch(lossless=[1, 0]), "'lossless' must be 400 flags"),
    "no-labels-key": (pickle.dumps({"data": np.zeros((1, 3072), np.uint8)}), "expected keys 'data' and 'labels'"),
    "a-list": (pickle.dumps([1, 2, 3]), "not a CIFAR-10 batch"),
    "deeply-nested": (pickle.dumps({"data": [[[[[[[[]]]]]]]], "labels": []}), "'data' must be uint8"),
    "truncated-pickle": (lambda raw: raw[: len(raw) // 2], "cannot read a CIFAR-10 batch"),
    "empty-file": (b"", "cannot read a CIFAR-10 batch"),
    "not-a-pickle": (b"\x00\x01\x02 random bytes", "cannot read a CIFAR-10 batch"),
    "planted-code": (None, "refused"),
}


@pytest.mark.parametrize("case", CIFAR_CASES, ids=list(CIFAR_CASES))
def test_bad_cifar_batch_is_one_line_and_runs_no_code(case, tmp_path, run_with):
    content, needle = CIFAR_CASES[case]
    folder = cifar10.write_synthetic(tmp_path / "data")
    path = folder / "data_batch_3"
    marker = tmp_path / "code-ran"
    if content is None:
        content = pickle.dumps({"data": Planted(marker), "labels": [0]})
    path.write_bytes(content(path.read_bytes()) if callable(content) else content)
    line = run_with("binaryconnect-cifar10", tmp_path / "data", "--set", "data.test_set=standard", "--variant", "det")
    assert str(path) in line and needle in line, line
    assert not marker.exists()


CUT_FILES = {"test_batch": ("test_batch", "standard"),
             "partial-test-file": (f"../{cifar10.PARTIAL_FOLDER}/test_batch_exact_first1000", "exact_first1000"),
             "first-training-batch": ("data_batch_1", "standard")}


@pytest.mark.parametrize("case", CUT_FILES, ids=list(CUT_FILES))
def test_a_cut_cifar_file_names_itself_and_what_a_batch_holds(case, tmp_path, run_with):
    """Any batch the run reads, cut short: the line names that file, the layout expected, and the remedy."""
    name, test_set = CUT_FILES[case]
    folder = cifar10.write_synthetic(tmp_path / "data")
    path = (folder / name).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((folder / "test_batch").read_bytes()[:5000])
    line = run_with("binaryconnect-cifar10", tmp_path / "data", "--set", f"data.test_set={test_set}",
                    "--variant", "det")
    assert line.startswith(f"error: {path}: cannot read a CIFAR-10 batch (UnpicklingError"), line
    assert "expected a pickled dict with 'data' (uint8 N x 3072) and 'labels'" in line, line
    assert "delete it and get it again" in line, line


def test_a_fifo_named_like_a_batch_does_not_hang(tmp_path, run_with):
    folder = cifar10.write_synthetic(tmp_path / "data")
    (folder / "data_batch_2").unlink()
    os.mkfifo(folder / "data_batch_2")
    line = run_with("binaryconnect-cifar10", tmp_path / "data", "--set", "data.test_set=standard", "--variant", "det")
    assert "data_batch_2: not a regular file" in line


# --------------------------------------------------------------------- SVHN .mat files

def _mat(**variables):
    def write(path: Path) -> None:
        import scipy.io

        scipy.io.savemat(str(path), variables)
    return write


X = np.zeros((32, 32, 3, 2400), np.uint8)
SVHN_CASES = {
    "labels-fractional": (_mat(X=X, y=np.full((2400, 1), 1.5)), "'y' must hold 2400 labels in 1..10"),
    "labels-zero": (_mat(X=X, y=np.zeros((2400, 1))), "'y' must hold 2400 labels in 1..10"),
    "labels-eleven": (_mat(X=X, y=np.full((2400, 1), 11)), "'y' must hold 2400 labels in 1..10"),
    "labels-text": (_mat(X=X, y=np.array(["a"] * 2400)), "'y' must hold 2400 labels in 1..10"),
    "labels-too-few": (_mat(X=X, y=np.ones((10, 1))), "'y' must hold 2400 labels in 1..10"),
    "images-float": (_mat(X=X.astype(np.float32), y=np.ones((2400, 1))), "'X' must be uint8 32 x 32 x 3 x N"),
    "images-28": (_mat(X=np.zeros((28, 28, 3, 2400), np.uint8), y=np.ones((2400, 1))), "'X' must be uint8"),
    "no-X": (_mat(y=np.ones((2400, 1))), "not an SVHN file"),
    "not-a-mat-file": (lambda p: p.write_bytes(b"plain text"), "cannot read an SVHN .mat file"),
    "empty-file": (lambda p: p.write_bytes(b""), "cannot read an SVHN .mat file"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot read an SVHN .mat file"),
}


@pytest.mark.parametrize("case", SVHN_CASES, ids=list(SVHN_CASES))
def test_bad_svhn_file_is_one_line(case, tmp_path, run_with):
    write, needle = SVHN_CASES[case]
    folder = svhn.write_synthetic(tmp_path / "data" / "svhn")
    path = folder / "train_32x32.mat"
    if case != "truncated":
        path.unlink()
    write(path)
    line = run_with("binaryconnect-svhn", tmp_path / "data", "--variant", "det")
    assert str(path) in line and needle in line, line


def test_the_synthetic_svhn_itself_is_read(tmp_path):
    folder = svhn.write_synthetic(tmp_path / "svhn")
    assert len(svhn.read_mat(folder / "train_32x32.mat")["labels"]) == 2400
    shutil.rmtree(folder)
