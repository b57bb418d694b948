"""Gradient-compression DDP hooks (suite/train/gradient_compression/): each hook's arithmetic on a
small case worked by hand (one process, a gloo group of one), and a 2-rank gloo run (spawned
processes, one thread each) checking that the ranks' weights stay identical, that the bytes sent
per step are what the encoding says, and that gradient dropping's residuals hold what was not sent.
"""

import json
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from suite.errors import UserError
from suite.train.gradient_compression import GradientDropping, TernGrad, attach, build, packing, parse
from suite.train.gradient_compression.base import ddp_hook


class FakeBucket:
    """What DDP hands a hook: the flat local gradient and the parameters laid out in it."""

    def __init__(self, grads: list[torch.Tensor]):
        self.params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
        self.flat = torch.cat([g.reshape(-1) for g in grads]).clone()

    def buffer(self):
        return self.flat

    def parameters(self):
        return self.params

    def is_last(self):
        return True


@pytest.fixture
def group_of_one(tmp_path):
    """A gloo process group of one rank (the hooks' collectives then copy), torn down after."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _bound(hook, bucket):
    module = nn.Module()
    for i, p in enumerate(bucket.params):
        module.register_parameter(f"p{i}", p)
    hook.bind(module)
    return hook


# ---------------------------------------------------------------- packing


def test_two_bits_per_value_in_the_authors_quarter_layout():
    t = torch.tensor([-1, 0, 1, 1, 0])
    # codes t + 1 = 0 1 2 2 1, padded to 8: 0 1 | 2 2 | 1 0 | 0 0, four quarters of 2 codes;
    # byte i = q0[i] + 4 q1[i] + 16 q2[i] + 64 q3[i]: 0 + 8 + 16 + 0 = 24 and 1 + 8 + 0 + 0 = 9
    packed = packing.pack_ternary(t)
    assert packed.dtype == torch.uint8 and packed.tolist() == [24, 9]
    assert packing.unpack_ternary(packed, 5).tolist() == [-1, 0, 1, 1, 0]
    many = torch.randint(-1, 2, (1001,))
    assert packing.packed_size(1001) == 251 and torch.equal(packing.unpack_ternary(packing.pack_ternary(many), 1001),
                                                            many.to(torch.int8))


# ---------------------------------------------------------------- TernGrad by hand


def test_terngrad_clips_at_c_sigma_then_scales_by_the_max():
    g = torch.tensor([1.0] * 9 + [10.0])
    # mean 1.9; deviations -0.9 (x9) and 8.1: variance (9 x 0.81 + 65.61) / 10 = 7.29, sigma = 2.7;
    # c sigma = 2.5 x 2.7 = 6.75: the 10 is clipped to 6.75, and s = max |f(g)| = 6.75
    f = TernGrad(clip=2.5).clipped(g)
    assert torch.allclose(f, torch.tensor([1.0] * 9 + [6.75]))
    assert TernGrad(clip=0).clipped(g).tolist() == g.tolist()  # TernGrad-noclip


def test_terngrad_ternarizes_the_posters_example_with_given_draws():
    # the authors' poster: g = [0.30, -1.20, ..., 0.9], s = 1.20, P(b = 1) = |g| / s = 0.25, 1, .., 0.75
    g = torch.tensor([0.30, -1.20, 0.0, 0.90])
    s = torch.full((4,), 1.20)
    u = torch.tensor([0.1, 0.999, 0.5, 0.8])  # b = 1 where u s < |g|: 0.12 < .3, 1.1988 < 1.2, no, 0.96 > .9
    assert TernGrad().ternarize(g, s, u).tolist() == [1, -1, 0, 0]  # g~ = s t = [1.2, -1.2, 0, 0]
    assert TernGrad().ternarize(torch.zeros(4), torch.zeros(4), u).tolist() == [0] * 4  # all-zero layer: no 0/0


def test_terngrad_is_unbiased():
    hook = TernGrad()
    g = torch.tensor([0.3, -1.2, 0.05, 0.9, -0.6])
    s = torch.full_like(g, 1.2)
    draws = torch.stack([hook.ternarize(g, s).float() * 1.2 for _ in range(20000)])
    # each value is s b with b ~ Bernoulli(|g|/s): std of the mean <= 1.2 / 2 / sqrt(20000) = 0.0042
    assert torch.allclose(draws.mean(0), g, atol=5 * 0.0043)


def test_terngrad_hook_sends_two_bits_per_value_and_per_layer_scalers(group_of_one):
    weight, bias = torch.tensor([[1.0] * 9 + [10.0]]), torch.tensor([0.5, -0.25])
    bucket = FakeBucket([weight, bias])
    hook = _bound(TernGrad(clip=2.5), bucket)
    out = ddp_hook(hook, bucket).wait()
    # layer-wise: weight f(g) in {1, 6.75}, s = 6.75; bias sigma = 0.375, c sigma = 0.9375 > 0.5: s = 0.5
    # (not the bucket's max 6.75). Every value comes back as 0 or +-s of its own layer.
    assert set(out[:10].abs().tolist()) <= {0.0, 6.75} and out[9].item() == 6.75  # |f| = s: sent for sure
    assert out[10].item() == 0.5 and set(out[11:].abs().tolist()) <= {0.0, 0.5}
    # one rank: the scalers stay home; 12 values -> 3 bytes of codes, padded to 4
    assert hook.last_step == {"codes": 3, "padding": 1} and hook.bytes_per_step == 4


def test_terngrad_keeps_small_tensors_and_the_classifier_float_when_asked(group_of_one):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.BatchNorm1d(2))  # 15, 8 and 2 + 2 values
    hook = TernGrad(clip=0, min_size=3, quantize_logits=False)
    hook.bind(model)
    bucket = FakeBucket([torch.randn_like(p) for p in model.parameters()])
    bucket.params = list(model.parameters())
    out = ddp_hook(hook, bucket).wait()
    # float32: the classifier (Linear(3, 2): 6 + 2 values, not the BatchNorm after it) and the
    # BatchNorm's 2 + 2 (fewer than min_size = 3 each): 12 values, 48 bytes, sent and averaged as they are
    assert hook.last_step["float"] == 48 and torch.equal(out[15:], bucket.flat[15:])
    assert hook.last_step["codes"] == 4  # the first layer's 12 + 3 values, 2 bits each
    assert set(out[:12].abs().unique().tolist()) <= {0.0, bucket.flat[:12].abs().max().item()}


def test_terngrad_decode_averages_the_ranks_messages_by_hand():
    hook = TernGrad()
    hook.world = 2
    from suite.train.gradient_compression.base import Segment
    seg = [Segment(0, 0, 4)]
    # rank 0 sent t = [1, 0, -1, 1], rank 1 t = [1, 1, 0, -1], shared s = 0.5:
    # average = s (t0 + t1) / 2 = 0.5 [2, 1, -1, 0] / 2 = [0.5, 0.25, -0.25, 0]
    msgs = [packing.pad_to_words(packing.pack_ternary(torch.tensor(t))) for t in ([1, 0, -1, 1], [1, 1, 0, -1])]
    out = hook.decode(torch.stack(msgs), torch.zeros(4), seg, seg, [], torch.tensor([0.5]), 0)
    assert out.tolist() == [0.5, 0.25, -0.25, 0.0]
    # own scalers per rank (share_scalers = false): s0 = 0.5, s1 = 2.0 sit first in each message:
    # (0.5 [1, 0, -1, 1] + 2 [1, 1, 0, -1]) / 2 = [1.25, 1.0, -0.25, -0.75]
    hook.share_scalers = False
    msgs = [torch.cat([packing.as_bytes(torch.tensor([s])), m]) for s, m in zip((0.5, 2.0), msgs, strict=True)]
    out = hook.decode(torch.stack(msgs), torch.zeros(4), seg, seg, [], None, 4)
    assert out.tolist() == [1.25, 1.0, -0.25, -0.75]


# ---------------------------------------------------------------- gradient dropping by hand


def test_gradient_dropping_sends_the_largest_and_keeps_the_rest_as_residuals(group_of_one):
    g1 = torch.tensor([0.1, -2.0, 0.3, 0.05, 1.0, -0.2, 0.0, 0.4, -0.6, 0.02])
    bucket = FakeBucket([g1])
    hook = _bound(GradientDropping(rate=0.8), bucket)
    # R = 80% of 10 values: k = 2 sent, the largest |g|: -2.0 (index 1) and 1.0 (index 4)
    out = ddp_hook(hook, bucket).wait()
    assert out.tolist() == [0, -2.0, 0, 0, 1.0, 0, 0, 0, 0, 0]
    assert torch.allclose(hook.residuals[0], torch.tensor([0.1, 0, 0.3, 0.05, 0, -0.2, 0.0, 0.4, -0.6, 0.02]))
    assert hook.last_step == {"values": 8, "indices": 8}  # 2 x (float32 value + int32 index)
    # step 2: grad += residuals = [0.6, 0, 0.3, 0.05, 0, -0.2, 0, 0.4, -0.5, 0.02]: 0.6 and -0.5 go
    bucket.flat = torch.tensor([0.5, 0, 0, 0, 0, 0, 0, 0, 0.1, 0])
    out = ddp_hook(hook, bucket).wait()
    assert torch.allclose(out, torch.tensor([0.6, 0, 0, 0, 0, 0, 0, 0, -0.5, 0]))
    assert torch.allclose(hook.residuals[0], torch.tensor([0, 0, 0.3, 0.05, 0, -0.2, 0, 0.4, 0, 0.02]))


def test_gradient_dropping_per_layer_threshold(group_of_one):
    # R = 70%. scope "layer": each tensor keeps its own largest ceil(0.3 n): 1 of 2 (5.0) and 1 of
    # 3 (-0.3); scope "bucket": ceil(0.3 x 5) = 2 of all 5, both in the first tensor
    bucket = FakeBucket([torch.tensor([5.0, -4.0]), torch.tensor([0.1, -0.3, 0.2])])
    hook = _bound(GradientDropping(rate=0.7, scope="layer"), bucket)
    assert ddp_hook(hook, bucket).wait().tolist() == pytest.approx([5.0, 0, 0, -0.3, 0])
    bucket = FakeBucket([torch.tensor([5.0, -4.0]), torch.tensor([0.1, -0.3, 0.2])])
    hook = _bound(GradientDropping(rate=0.7, scope="bucket"), bucket)
    assert ddp_hook(hook, bucket).wait().tolist() == pytest.approx([5.0, -4.0, 0, 0, 0])


def test_references_parse_and_bad_ones_say_why():
    assert parse("terngrad(clip=0, share_scalers=false)") == ("terngrad", {"clip": 0, "share_scalers": False})
    assert build("none") is None and isinstance(build("gradient_dropping(rate=0.99)"), GradientDropping)
    with pytest.raises(UserError, match="did you mean 'terngrad'"):
        build("terngard")
    with pytest.raises(UserError, match="has no argument 'c'"):
        build("terngrad(c=2.5)")
    with pytest.raises(UserError, match="rate"):
        build("gradient_dropping(rate=99)")


# ---------------------------------------------------------------- 2 ranks, gloo

HOOKS = ["allreduce", "terngrad(clip=2.5)", "terngrad(clip=0, share_scalers=false)",
         "gradient_dropping(rate=0.99)", "gradient_dropping(rate=0.9, scope=\"layer\")"]
STEPS = 4


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


class CheckedDropping(GradientDropping):
    """Gradient dropping that checks, per bucket, what it sent against what it kept: the message
    (read back from the gathered buffer) plus the new residual is the gradient plus the old
    residual, and no kept value is larger than a sent one."""

    failures: list[str]

    def communicate(self, bucket):
        self.failures = getattr(self, "failures", [])
        segs = self.segments(bucket)
        self._before = bucket.buffer().clone()
        for s in segs:
            r = self.residuals.get(s.index)
            if r is not None:
                self._before[s.start:s.end] += r
        self._segs = segs
        return super().communicate(bucket)

    def decode(self, gathered, buf, k, vbytes):
        own = torch.zeros_like(buf)
        own[gathered[self.rank, vbytes:vbytes + 4 * k].view(torch.int32).long()] = \
            gathered[self.rank, :4 * k].view(torch.float32)
        kept = torch.cat([self.residuals[s.index] for s in self._segs])
        if not torch.equal(own + kept, self._before):
            self.failures.append("sent + residual != grad + old residual")
        if self.scope == "bucket" and own.abs().max() > 0 and own[own != 0].abs().min() < kept.abs().max():
            self.failures.append("a residual is larger than a sent value")
        if int((own != 0).sum()) > k:
            self.failures.append("more values sent than k")
        return super().decode(gathered, buf, k, vbytes)


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    results = {}
    for ref in HOOKS:
        model = _model()
        ddp = nn.parallel.DistributedDataParallel(model)
        if ref.startswith("gradient_dropping"):
            hook = CheckedDropping(**parse(ref)[1])
            hook.bind(model)
            ddp.register_comm_hook(hook, ddp_hook)
        else:
            hook = attach(ddp, ref)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        same = []
        for _ in range(STEPS):
            x, y = torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
            flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
            both = [torch.empty_like(flat) for _ in range(2)]
            dist.all_gather(both, flat)
            same.append(torch.equal(both[0], both[1]))
        results[ref] = {"same_weights": same, "summary": hook.summary(),
                        "failures": getattr(hook, "failures", []),
                        "sizes": [p.numel() for p in model.parameters()]}
    with open(f"{out}.{rank}", "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_keep_equal_weights_and_send_what_the_encoding_says(tmp_path):
    out = str(tmp_path / "result")
    env = {"OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in (0, 1)]
    sizes = ranks[0]["allreduce"]["sizes"]
    n, layers = sum(sizes), len(sizes)  # 3114 values in 4 parameter tensors, one DDP bucket
    float_bytes = 4 * n
    for ref in HOOKS:
        for rank in ranks:
            r = rank[ref]
            assert all(r["same_weights"]), (ref, r["same_weights"])  # every step, bit for bit
            assert r["summary"]["steps"] == STEPS and r["failures"] == [], (ref, r["failures"])
    for rank in ranks:
        assert rank["allreduce"]["summary"]["bytes_per_step"] == float_bytes
        tern = rank["terngrad(clip=2.5)"]["summary"]
        codes = math.ceil(n / 4)
        # shared scalers: one all-reduce (max) of 4 scalers, then 2 bits per value, padded to 4 bytes
        assert tern["bytes_per_step_by_part"] == {"scalers": 4 * layers, "codes": codes, "padding": -codes % 4}
        assert float_bytes / tern["bytes_per_step"] >= 12  # issue 17: at least 12x fewer, scalers included
        own = rank["terngrad(clip=0, share_scalers=false)"]["summary"]["bytes_per_step_by_part"]
        assert own == {"scalers": 4 * layers, "codes": codes, "padding": -(codes + 4 * layers) % 4}
        k = math.ceil(0.01 * n)  # R = 99%, one threshold over the bucket: 32 values + 32 indices
        assert rank["gradient_dropping(rate=0.99)"]["summary"]["bytes_per_step_by_part"] == {"values": 4 * k,
                                                                                             "indices": 4 * k}
        k_layers = sum(math.ceil(0.1 * s) for s in sizes)  # R = 90% per tensor
        per_layer = rank['gradient_dropping(rate=0.9, scope="layer")']["summary"]["bytes_per_step"]
        assert per_layer == 8 * k_layers


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_terngrad_spec_names_a_valid_hook_per_variant(profile):
    from suite.paths import reproductions_dir
    from suite.spec import load_spec

    spec = load_spec(reproductions_dir() / "terngrad-cifar10.toml", profile)
    hooks = {v.name: spec.train_for(v).gradient_compression for v in spec.variants}
    assert hooks["float"] == "allreduce" and hooks["terngrad"] == "terngrad(clip=2.5)"
    assert hooks.get("terngrad-noclip") == "terngrad(clip=0)"
    if profile != "paper":
        assert hooks["dropping"] == "gradient_dropping(rate=0.99)"
    else:
        assert spec.data.dataset == "imagenet" and spec.train.batch_size == 256 and spec.train.lr_start == 0.01


def test_a_bad_hook_reference_is_a_user_error(tmp_path):
    from suite.errors import UserError
    from suite.paths import reproductions_dir
    from suite.spec import load_spec

    with pytest.raises(UserError, match=r"variants.terngrad.gradient_compression: .*has no argument 'clipp'"):
        load_spec(reproductions_dir() / "terngrad-cifar10.toml", "smoke",
                  {"variants.terngrad.gradient_compression": "terngrad(clipp=2)"})
