"""suite/allocator.py: freed weight-sized buffers are reused instead of faulting in again."""

import platform
import subprocess
import sys
import textwrap

import pytest

from suite.run import allocator

# In a fresh process: how an 8 MiB tensor (a 1024 x 2048 weight) is allocated and what happens to
# its memory when it is freed, from glibc's own accounting (mallinfo2, glibc >= 2.33).
ALLOCATE_AND_FREE = textwrap.dedent("""
    import ctypes, sys, torch
    from suite.run import allocator
    if sys.argv[1] == "tuned":
        allocator.keep_freed_memory()
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2()
    t = torch.empty(1024, 2048)
    live = libc.mallinfo2()
    del t
    freed = libc.mallinfo2()
    print((live.hblkhd - before.hblkhd) >> 20, freed.fordblks >> 20)  # MiB mapped for it, MiB kept free
""")


def _allocate_and_free(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", ALLOCATE_AND_FREE, mode], capture_output=True, text=True,
                         check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    mapped, kept = out.stdout.split()
    return int(mapped), int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_tuned_malloc_keeps_weight_sized_buffers_for_reuse():
    """By default glibc maps a weight-sized block on its own and unmaps it when freed, so the next
    step's buffer faults in afresh; tuned, the block comes from the heap and stays there when freed.
    (Page faults per training step are the visible effect, but their count depends on the order of
    earlier frees, 0 to 1300 a step by default on a 1024 x 1024 BWN layer: not a stable test.)"""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"not glibc: {platform.libc_ver()}")
    assert _allocate_and_free("default") == (8, 0)
    mapped, kept = _allocate_and_free("tuned")
    assert mapped == 0 and kept >= 8, (mapped, kept)


def test_state_is_recorded_and_applying_twice_changes_nothing():
    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() == first == allocator.state()
    if sys.platform.startswith("linux") and "glibc" in first:
        assert "mmap threshold 32 MiB" in first
