"""Tensor memory (suite/tensor_memory.py): the counting CPU allocator measures known allocations
exactly, forgets freed ones, shows the activations a training step keeps, and leaves CUDA alone."""

import gc

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from suite import tensor_memory
from suite.tensor_memory import MIB, TensorMemory

pytestmark = pytest.mark.skipif(tensor_memory.install() is not None,
                                reason=f"counting allocator unavailable: {tensor_memory.status()}")


def _current() -> int:
    return tensor_memory.counts()["current"]


def test_a_known_allocation_is_measured_exactly():
    meter = TensorMemory("cpu")
    meter.reset()
    before = _current()
    a = torch.empty(1000, 3, dtype=torch.float64)  # 24000 bytes
    assert _current() - before == 24000
    assert tensor_memory.counted_bytes([a, a[1:], a.view(-1)]) == 24000  # one storage, counted once
    b = torch.ones(7, dtype=torch.uint8)
    assert _current() - before == 24007
    del a, b
    assert _current() == before
    # the peak saw both; the step rise too (no step marked yet)
    out = meter.read()
    assert out["peak_tensor_mb"] * MIB == pytest.approx(before + 24007, abs=0.5)
    assert out["step_tensor_mb"] * MIB == pytest.approx(24007, abs=0.5)


def test_freed_memory_is_not_counted_and_the_peak_resets():
    meter = TensorMemory("cpu")
    big = torch.zeros(1 << 20)  # 4 MiB, freed before the epoch
    del big
    meter.reset()
    small = torch.zeros(1024)  # 4 KiB
    out = meter.read()
    base = _current() - 4096
    assert out["peak_tensor_mb"] * MIB == pytest.approx(base + 4096, abs=0.5)
    del small


def test_step_figure_is_the_largest_rise_within_a_step():
    """Three steps holding 1, 3 and 2 MiB on top of what each started with; a tensor kept across
    steps raises the start of the next step, not its rise."""
    meter = TensorMemory("cpu")
    meter.reset()
    kept = []
    for mib in (1, 3, 2):
        tmp = torch.empty(mib * MIB, dtype=torch.uint8)
        kept.append(torch.empty(MIB // 4, dtype=torch.uint8))  # survives the step
        del tmp
        meter.step()
    out = meter.read()
    assert out["step_tensor_mb"] == pytest.approx(3.25)  # the 3 MiB step with its kept 0.25 MiB


def test_data_tensors_are_left_out_of_the_peak():
    data = torch.zeros(MIB // 4)  # 1 MiB, like a data set held in memory
    meter = TensorMemory("cpu", exclude=[data, data[:10]])
    meter.reset()
    held = _current()
    assert meter.read()["peak_tensor_mb"] * MIB == pytest.approx(held - MIB, abs=0.5)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def test_a_training_step_shows_the_activations_it_keeps():
    """Backprop keeps each layer's input and the ReLU outputs for the backward pass: after the
    forward pass the held bytes rise by at least the activations autograd saved."""
    model = _mlp()
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    gc.collect()
    before = _current()
    loss = F.cross_entropy(model(x), y)
    after_forward = _current()
    earlier = {t.untyped_storage().data_ptr() for t in (*model.parameters(), x, y)}
    saved = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
             for n in _graph_nodes(loss.grad_fn) for t in _saved_tensors(n)}
    saved_bytes = sum(b for p, b in saved.items() if p not in earlier)
    assert saved_bytes >= 64 * (512 + 512) * 4  # the two ReLU outputs (also the next layers' inputs)
    assert after_forward - before >= saved_bytes
    del loss
    gc.collect()
    assert _current() == before  # the graph freed, the activations with it


def _graph_nodes(fn):
    seen, stack = set(), [fn]
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        yield f
        stack += [g for g, _ in f.next_functions]


def _saved_tensors(node):
    for name in dir(node):
        if name.startswith("_saved_"):
            value = getattr(node, name)
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel():
                yield value


def test_backprop_step_needs_more_than_a_forward_gradient_step():
    """Measured per step with the meter as the harness would run it (an optimizer post-hook), on
    8 hidden layers with SGD (no optimizer temporaries): backprop keeps every layer's ReLU output,
    forward gradient one layer's input and output with their tangents."""
    from suite.spec import TrainSpec
    from suite.train import METHODS

    x, y = torch.randn(200, 256), torch.randint(0, 10, (200,))
    steps = {}
    for method in ("backprop", "forward_gradient"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), *[m for _ in range(7) for m in (nn.Linear(512, 512),
                              nn.ReLU())], nn.Linear(512, 10))
        meter = TensorMemory("cpu", exclude=[x, y], model=model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        opt.register_step_post_hook(lambda *_, meter=meter: meter.step())
        train = TrainSpec(epochs=1, batch_size=100, lr_start=1e-3, method=method, optimizer="sgd")
        m = METHODS[method](model, opt, F.cross_entropy, train, [])
        batches = list(torch.arange(200).split(100))
        m.epoch(x, y, batches)
        meter.reset()
        m.epoch(x, y, batches)
        steps[method] = meter.read()["step_tensor_mb"] * MIB
    activation = 100 * 512 * 4
    assert steps["backprop"] >= 8 * activation
    assert steps["forward_gradient"] <= 4 * activation + 100 * 256 * 4 + 50_000  # + the batch, the logits
    assert steps["backprop"] > 1.5 * steps["forward_gradient"]


def test_a_model_built_before_installation_is_reported_not_measured(monkeypatch):
    model = _mlp()
    monkeypatch.setattr(tensor_memory._module, "block_bytes", lambda address: -1)  # as if made before
    meter = TensorMemory("cpu", model=model)
    assert meter.method.startswith("unavailable:") and "before the counting allocator" in meter.method
    meter.reset()
    meter.step()
    assert meter.read() == {"peak_tensor_mb": None, "step_tensor_mb": None}


def test_off_by_environment_says_so(monkeypatch):
    monkeypatch.setattr(tensor_memory, "_module", None)
    monkeypatch.setattr(tensor_memory, "_error", None)
    monkeypatch.setenv(tensor_memory.ENV, "0")
    meter = TensorMemory("cpu")
    assert meter.method == f"unavailable: off ({tensor_memory.ENV}=0)"
    assert meter.read() == {"peak_tensor_mb": None, "step_tensor_mb": None}


def test_cuda_is_untouched(monkeypatch):
    """On CUDA the meter reads max_memory_allocated and never resets CUDA's statistics (the
    harness's own CUDA peak stays valid); the CPU counter does not see CUDA tensors."""
    calls = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: calls.append("read") or 3 * MIB)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    meter = TensorMemory(torch.device("cuda"))
    assert meter.method.startswith("cuda")
    meter.reset()
    meter.step()
    assert meter.read() == {"peak_tensor_mb": 3.0, "step_tensor_mb": None}
    assert calls == ["read"]
    if torch.cuda.is_available():
        before = _current()
        t = torch.empty(1 << 20, device="cuda")
        assert _current() == before
        del t
