"""Inference speed of the KConv table's networks (Zhou et al. 2015, as quoted in the deck: KConv-a
3.3x, KConv-b 3.0x, KConv-c 2.9x "speedup") on this CPU: the maxout CNN of
suite/models/maxout_cnn.py with dense convolutions against the same network with conv2 and conv3
made Kronecker convolutions (suite/compress/kronecker.py), forward only, eval mode, no autograd.

Collected only when asked (``pytest benchmarks/test_kronecker_speed.py``); run it on a quiet
machine. The candidates run interleaved, the order rotating every round (benchmarks/timing.py); every
chunk's time is kept in ``extra_info["samples"]`` (seconds per chunk of ``forwards_per_chunk`` forwards)
and each ratio is stored as ``kconv-a_over_baseline`` and so on (the median of the per-round ratios;
its inverse is the paper's "speedup"), the watched candidate on top as in every benchmark here, so
that a slower KConv reads as a larger ratio.
Nothing is asserted on a time: the figures are for the report and the regression gate.
"""

import pytest
import torch
from timing import interleaved_samples, record

from suite.compress.kronecker import KronShape
from suite.models.maxout_cnn import maxout_cnn
from suite.timing import repeats_for

CONFIGS = {  # the KConv table's (r, o1, c1, h1, w1) for conv2; conv3
    "baseline": {},
    "kconv-a": {"conv2": [1, 128, 24, 9, 1], "conv3": [1, 256, 64, 8, 1]},
    "kconv-b": {"conv2": [1, 128, 48, 1, 9], "conv3": [1, 512, 64, 1, 8]},
    "kconv-c": {"conv2": [2, 64, 24, 9, 1], "conv3": [2, 256, 64, 8, 1]},
}
LAYERS = {"conv2": (128, 48, 9, 16), "conv3": (512, 64, 8, 8)}  # filters, channels, kernel, input size


def macs(config: dict) -> int:
    """Multiply-adds of the network's convolutions for one 24 x 24 RGB image (10 classes)."""
    total = 16 * 16 * 96 * 3 * 81 + 40 * 128  # conv1 (16 x 16 outputs), conv4 (1 x 1)
    for name, (o, c, k, size) in LAYERS.items():
        if name in config:
            total += KronShape(*config[name], o, c, k, k).macs(size, size)
        else:
            total += (size - k + 1) ** 2 * o * c * k * k
    return total


@pytest.mark.parametrize("batch", [1, 128])
def test_kconv_network_forward(benchmark, batch):
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 24, 24)
    nets = {name: maxout_cnn(num_classes=10, in_shape=(3, 24, 24), kconv=conf).eval()
            for name, conf in CONFIGS.items()}

    def forward(net):
        def call():
            with torch.inference_mode():
                net(x)
        return call

    fns = {name: forward(net) for name, net in nets.items()}
    repeats = repeats_for(fns["baseline"], 0.05)  # one chunk = as many forwards for every candidate

    def chunk(k):
        def call():
            for _ in range(repeats):
                fns[k]()
        return call

    others = [k for k in CONFIGS if k != "baseline"]
    timed = interleaved_samples({k: chunk(k) for k in fns}, rounds=15)
    ratios = record(benchmark, timed, [(k, "baseline") for k in others], per_chunk=repeats, unlike=tuple(others))
    mac_ratios = {k: macs({}) / macs(CONFIGS[k]) for k in others}  # named without "_over_": not a time
    benchmark.extra_info.update({"batch": batch, "threads": torch.get_num_threads(), "forwards_per_chunk": repeats,
                                 "multiply_add_ratio_baseline_to": mac_ratios})
    benchmark.pedantic(fns["baseline"], rounds=1, iterations=1)
    ms = {k: 1e3 * min(v) / repeats for k, v in timed.items()}
    print(f"\nbatch {batch}, {torch.get_num_threads()} threads: baseline {ms['baseline']:.2f} ms; "
          + ", ".join(f"{k} {ms[k]:.2f} ms (speedup {1 / ratios[f'{k}_over_baseline']:.2f}x, "
                      f"multiply-adds {mac_ratios[k]:.2f}x)" for k in others))
