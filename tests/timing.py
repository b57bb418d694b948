"""Timing helper shared by the benchmark tests: interleaved minimums (ratios within one run)."""

import time


def interleaved_min(fns: dict, rounds: int, best: dict | None = None, first_round: int = 0) -> dict:
    """Each function's fastest call over `rounds` rounds, updating `best` if given. The functions
    run interleaved and the order rotates every round, so that none always follows the same
    neighbour (a fixed order biased one ratio by up to 5% from one process to the next)."""
    best = best if best is not None else {}
    names = list(fns)
    for r in range(first_round, first_round + rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            best[k] = min(best.get(k, float("inf")), time.perf_counter() - t0)
    return best
