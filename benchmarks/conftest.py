import sys
from pathlib import Path

from suite.run import allocator

allocator.keep_freed_memory()  # as the CLI does: the benchmarks measure what a run gets
sys.path.insert(0, str(Path(__file__).parent))  # timing.py
