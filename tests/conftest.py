import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from torch.utils import cpp_extension

from suite.run import allocator

allocator.keep_freed_memory()  # as the CLI does: the tests and benchmarks measure what a run gets

# The property tests draw the same examples on every run: CI must not fail on a draw it never made
# before (explore new ones locally with --hypothesis-profile=explore).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")

# Tests point XDG_CACHE_HOME at temporary folders (data caches); the C++ extensions' build cache
# must not follow it, or every such test that trains rebuilds them (about 30 s each). Pinned to the
# folder the command line builds in, so tests, benchmarks and runs share one build.
os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                      str(Path(cpp_extension._get_build_directory("lowbit_suite_kernels", False)).parent))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SUITE_DATA_DIR") or ROOT.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_mnist() -> Path:
    """The real MNIST beside the project (CI has it); the test is skipped where it is absent."""
    raw = SHARED_DATA / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {raw}")
    return SHARED_DATA


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """An empty results folder for the test (the project's results/ is never touched)."""
    out = tmp_path / "results"
    monkeypatch.setenv("SUITE_RESULTS_DIR", str(out))
    monkeypatch.chdir(ROOT)
    return out
