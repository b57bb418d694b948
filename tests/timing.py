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


def more_rounds_while(over, fns: dict, rounds: int, seconds: float, extra_for: list | None = None) -> tuple[dict, int]:
    """Warm-up, `rounds` interleaved rounds, then, while `over(best)` holds and within `seconds`,
    more rounds of `extra_for` (default: all). A minimum only falls with more samples: another
    process holding the CPU gets waited out, and a step that is really slower stays slower.
    Returns the minimums and the number of extra rounds."""
    for fn in fns.values():
        fn()  # warm-up: first-call allocations
    best = interleaved_min(fns, rounds)
    extra_fns = {k: fns[k] for k in extra_for} if extra_for is not None else fns
    extra, deadline = 0, time.perf_counter() + seconds
    while over(best) and time.perf_counter() < deadline:
        interleaved_min(extra_fns, 1, best, first_round=rounds + extra)
        extra += 1
    return best, extra
