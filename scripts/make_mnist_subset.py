"""Cut the embedded MNIST subset (suite/data/embedded/mnist-subset/) from the full IDX files.

    python scripts/make_mnist_subset.py DATA_DIR/MNIST/raw   (the folder holding the full IDX files)

Keeps the first 12000 training and the first 2000 test images, in their original order, in
the original IDX format (gzip), so the same reader serves both.
"""

import gzip
import sys
from pathlib import Path

N = {"train": 12000, "t10k": 2000}
OUT = Path(__file__).resolve().parent.parent / "suite" / "data" / "embedded" / "mnist-subset"


def cut(src: Path, dst: Path, n: int, ndim: int) -> None:
    raw = gzip.open(src, "rb").read()
    header = bytearray(raw[: 4 + 4 * ndim])
    header[4:8] = n.to_bytes(4, "big")
    item = 1
    for i in range(1, ndim):
        item *= int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big")
    body = raw[4 + 4 * ndim: 4 + 4 * ndim + n * item]
    # mtime=0: the same input gives byte-identical files
    with open(dst, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(bytes(header) + body)


def main(raw_dir: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for split, n in N.items():
        cut(Path(raw_dir) / f"{split}-images-idx3-ubyte.gz", OUT / f"{split}-images-idx3-ubyte.gz", n, 3)
        cut(Path(raw_dir) / f"{split}-labels-idx1-ubyte.gz", OUT / f"{split}-labels-idx1-ubyte.gz", n, 1)


if __name__ == "__main__":
    main(sys.argv[1])
