"""`python -m suite` with one rank that crashes: ``crash_rank.py R:E ARGS...`` under torchrun runs
the suite's command line with ARGS, and rank R exits abruptly (no cleanup, exit code 3) when epoch
E starts, as a killed or crashed rank does. A test helper (tests/test_distributed.py); the suite
itself has no such hook."""

import os
import sys

from suite.cli import main
from suite.run import distributed
from suite.run.trainer import Trainer

rank, epoch = (int(v) for v in sys.argv[1].split(":"))
epoch_of = Trainer.epoch


def epoch_or_crash(self, number: int) -> dict:
    if distributed.rank() == rank and number == epoch:
        print(f"rank {rank}: exiting at the start of epoch {number} (tests/crash_rank.py)", file=sys.stderr, flush=True)
        os._exit(3)
    return epoch_of(self, number)


Trainer.epoch = epoch_or_crash
sys.exit(main(sys.argv[2:]))
