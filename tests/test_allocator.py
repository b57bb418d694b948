"""suite/allocator.py: freed weight-sized buffers are reused instead of faulting in again."""

import subprocess
import sys
import textwrap

import pytest

from suite import allocator

# A training step's pattern: weight-sized buffers made and freed in a different order each step.
STEPS = textwrap.dedent("""
    import resource, sys, torch
    from suite import allocator
    if sys.argv[1] == "tuned":
        print(allocator.keep_freed_memory(), file=sys.stderr)
    w = torch.randn(1024, 1024)
    keep = None
    for _ in range(3):  # warm-up
        a = w + 0; b = w * 2; keep = None; c = a + b; keep = c; del a, b
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        a = w + 0; b = w * 2; keep = None; c = a + b; keep = c; del a, b
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_tuned_malloc_reuses_freed_buffers():
    if "glibc" not in allocator.keep_freed_memory():
        pytest.skip(f"not glibc: {allocator.state()}")
    default, tuned = _faults("default"), _faults("tuned")
    # 50 steps x three 4 MiB buffers: up to 150000 page faults when each comes back fresh
    assert tuned * 4 < default, (tuned, default)


def test_state_is_recorded_and_applying_twice_changes_nothing():
    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() == first == allocator.state()
    if sys.platform.startswith("linux") and "glibc" in first:
        assert "mmap threshold 32 MiB" in first
