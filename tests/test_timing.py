"""suite/timing.py: the studies' interleaved timing and the thread setting around it."""

import pytest
import torch

from suite.timing import per_call_samples, torch_threads


def test_per_call_samples_divides_each_sample_by_its_own_repeat_count():
    calls = {"a": 0, "b": 0}

    def count(k):
        def fn():
            calls[k] += 1
        return fn

    samples = per_call_samples({"a": count("a"), "b": count("b")}, rounds=3, sample_seconds=1e-4)
    assert set(samples) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in samples.values())
    assert all(n > 3 for n in calls.values())  # calibration, warm-up and three samples each


def test_torch_threads_sets_then_restores_and_zero_leaves_alone():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
