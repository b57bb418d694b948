"""What the gradient-compression hooks cost a training step on the CPU, as ratios to the float32
all-reduce hook within one process: one DDP step (forward, backward with the hook, Adam) of the
quick profile's ConvNet (BinaryConnect's at a quarter width, 64 CIFAR-10-sized images), in a gloo
group of ONE rank. With one rank the collectives copy locally, so the ratios are the hooks' own
encode / decode arithmetic (clipping, ternarizing, packing, top-k, scattering), not the network
time they save: on 2 ranks of one machine the "network" is a memory copy too.

    OMP_NUM_THREADS=1 flock -x /tmp/cpu.lock python -m pytest benchmarks/test_bench_comm_hooks.py \
        --benchmark-json=bench.json

extra_info: samples = {candidate: [seconds per step of each timed chunk, ...]} (every chunk),
`X_over_allreduce` = min(X samples) / min(allreduce samples), bytes_per_step per candidate.
No assertion on a time or a ratio.
"""

import time

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from suite.models import bc_cnn
from suite.train.gradient_compression import attach

CANDIDATES = ["allreduce", "terngrad(clip=2.5)", "terngrad(clip=0)", "gradient_dropping(rate=0.99)"]
STEPS_PER_CHUNK = 5
ROUNDS = 6


@pytest.fixture
def group_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _stepper(ref: str):
    torch.manual_seed(0)
    model = bc_cnn(num_classes=10, in_shape=(3, 32, 32), width=0.25, hidden=256)
    ddp = nn.parallel.DistributedDataParallel(model)
    hook = attach(ddp, ref)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 32, 32, generator=gen), torch.randint(0, 10, (64,), generator=gen)

    def chunk() -> float:
        start = time.perf_counter()
        for _ in range(STEPS_PER_CHUNK):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
        return (time.perf_counter() - start) / STEPS_PER_CHUNK

    return chunk, hook


def test_hook_step_vs_allreduce(benchmark, group_of_one):
    steppers = {ref: _stepper(ref) for ref in CANDIDATES}
    samples: dict[str, list[float]] = {ref: [] for ref in CANDIDATES}
    for chunk, _ in steppers.values():
        chunk()  # warm-up: DDP rebuilds its buckets after the first step
    for r in range(ROUNDS):  # interleaved, the order rotating every round
        for ref in CANDIDATES[r % len(CANDIDATES):] + CANDIDATES[:r % len(CANDIDATES)]:
            samples[ref].append(steppers[ref][0]())
    base = min(samples["allreduce"])
    benchmark.extra_info["samples"] = samples
    benchmark.extra_info["steps_per_chunk"] = STEPS_PER_CHUNK
    # compressing and packing against a plain allreduce: unlike work (suite/check/bench.py)
    benchmark.extra_info["unlike_work"] = [f"{ref}_over_allreduce" for ref in CANDIDATES[1:]]
    benchmark.extra_info["bytes_per_step"] = {ref: h.bytes_per_step for ref, (_, h) in steppers.items()}
    for ref in CANDIDATES[1:]:
        benchmark.extra_info[f"{ref}_over_allreduce"] = min(samples[ref]) / base
    benchmark.pedantic(steppers["allreduce"][0], rounds=1, iterations=1)
