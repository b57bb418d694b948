"""TernGrad (Wen, Xu, Yan, Wu, Wang, Chen, Li; NeurIPS 2017, "TernGrad: Ternary Gradients to Reduce
Communication in Distributed Deep Learning") as a DDP communication hook.

Each rank ternarizes its local gradient layer by layer (the paper's "layer-wise ternarizing") and
the ranks exchange 2 bits per value plus one float32 scaler per layer:

    g~_t = ternarize(g_t) = s_t . sign(g_t) o b_t,   s_t = ||g_t||_inf = max(abs(g_t)),
    P(b_tk = 1 | g_t) = |g_tk| / s_t,  P(b_tk = 0 | g_t) = 1 - |g_tk| / s_t          (unbiased: E g~ = g)
    gradient clipping before it: f(g_i) = g_i if |g_i| <= c sigma, sign(g_i) c sigma otherwise,
    sigma the standard deviation of the layer's gradient, c = 2.5 ("works well for all tested
    datasets, DNNs and optimizers"); clip = 0 is TernGrad-noclip.
(equations as printed on the authors' NeurIPS 2017 poster and slides, github wenwei202/terngrad
@ec4f75e9, Poster_Wen_NIPS2017.pdf and NIPS17-TernGrad-slides-v3.pdf.)

Where the paper is silent, the authors' code (same repository, terngrad/inception/bingrad_common.py
and inception_train.py) decides:
- sigma is the population standard deviation about the layer's mean (`clip_gradients_by_stddev`);
- scaler sharing: every rank ternarizes with the largest scaler of all ranks, s = max_i s^(i)
  (`max_scalers`), so one all-reduce (max) of the L layer scalers precedes the exchange and the
  average is s . sum_i t^(i) / W; `share_scalers = false` instead sends each rank's own scalers in
  its message (4 bytes per layer) and averages sum_i s^(i) t^(i) / W;
- `min_size`: tensors with fewer values are sent as float32 (the authors' --size_to_binarize,
  9217 in their AlexNet script; 1 = ternarize all, as the paper describes);
- `quantize_logits = false` sends the classifier's weight and bias as float32 (the authors'
  --quantize_logits, default false; the classifier is the model's last layer with a weight matrix);
- 2-bit packing: `packing.pack_ternary` (their `ternary_encoder`).

Departures: the scaler is max|f(g)| of the clipped gradient as the paper writes (the authors' code
takes c sigma itself, which differs only when no value of the layer exceeds c sigma); the random
draws come from a generator of the hook's own, seeded with torch's initial seed and the rank, so
the ranks' noise is independent (the suite seeds every rank alike, and the global generator would
give every rank the same draws) and the global stream (dropout) stays as in the float run.

"Per layer" here is per parameter tensor (a weight and its bias are two layers, as the authors'
per-Variable scalers): DDP hands the hook buckets of about 25 MB holding many layers, and one
scaler for a whole bucket would let its largest gradients set the probabilities of every layer's
(the variance bound grows with s: the paper's reason for layer-wise scalers). The hook cuts each
bucket back into its parameters (`CompressionHook.segments`) and scales each on its own.

Why an all-gather of packed bytes and not an all-reduce: all-reduce sums the tensor it is given
element by element in that tensor's dtype; four 2-bit codes packed in a byte do not add as bytes
(their sum overflows into the neighbour's bits), and with per-rank scalers the values are not
even on one scale. All-reducing unpacked int8 values (in {-W..W} after the sum) would move 8 bits
per value instead of 2. So each rank sends its packed message once and every rank decodes and
averages all of them, in rank order, identically (the ranks' weights stay equal). With W ranks a
ring all-gather sends (W - 1) x the message per rank against about 2 x 32 bits per value for a
float all-reduce: 2-bit messages stay cheaper up to W = 32.

nccl: every tensor stays on the bucket's device (the generator too), and the collectives are
nccl-capable (all_reduce max, all_gather_single of uint8); this path is untested here (CPU only).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from suite.train.gradient_compression import packing
from suite.train.gradient_compression.base import CompressionHook, Segment

SEED_STRIDE = 1_000_003  # a prime: each rank's generator seed = initial seed + stride x (rank + 1)


class TernGrad(CompressionHook):
    name = "terngrad"

    def __init__(self, clip: float = 2.5, share_scalers: bool = True, min_size: int = 1,
                 quantize_logits: bool = True):
        super().__init__()
        if isinstance(clip, bool) or not isinstance(clip, int | float) or clip < 0:
            raise ValueError(f"clip must be a number >= 0 (0: no clipping), got {clip!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
        self.clip, self.share_scalers = float(clip), bool(share_scalers)
        self.min_size, self.quantize_logits = min_size, bool(quantize_logits)
        self._float_params: set[int] = set()
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None  # restored before the generator exists

    def options(self) -> dict:
        return {"clip": self.clip, "share_scalers": self.share_scalers, "min_size": self.min_size,
                "quantize_logits": self.quantize_logits}

    def bind(self, module, group=None) -> None:
        super().bind(module, group)
        if not self.quantize_logits:  # the classifier: the last layer with a weight matrix (not a BatchNorm after it)
            layers = [m for m in module.modules() if getattr(m, "weight", None) is not None and m.weight.dim() >= 2]
            self._float_params = {self._param_index[id(p)] for p in layers[-1].parameters(recurse=False)}

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(torch.initial_seed() + SEED_STRIDE * (self.rank + 1))
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)
        return self._generator

    def ternary(self, s: Segment) -> bool:
        return s.numel >= self.min_size and s.index not in self._float_params

    # ------------------------------------------------------------------ arithmetic
    def clipped(self, g: torch.Tensor) -> torch.Tensor:
        """f(g): g clipped to [-c sigma, c sigma] (a new tensor; c = 0: a copy of g)."""
        if not self.clip:
            return g.clone()
        sigma = g.std(correction=0)
        return g.clamp(-self.clip * sigma, self.clip * sigma)

    def ternarize(self, g: torch.Tensor, scale: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """sign(g) o b with P(b = 1) = |g| / scale (scale per value, > 0 where g != 0): int8 in
        {-1, 0, 1}; b = 1 where u scale < |g|, u ~ U[0, 1) from the hook's generator unless given.
        A zero scale (an all-zero layer) gives zeros, not 0/0."""
        if u is None:
            u = torch.rand(g.shape, generator=self.generator(g.device), device=g.device, dtype=g.dtype)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (torch.sign(g) * (u * safe < g.abs())).to(torch.int8)

    # ------------------------------------------------------------------ the hook
    def communicate(self, bucket) -> torch.futures.Future:
        buf = bucket.buffer()
        segs = self.segments(bucket)
        tern = [s for s in segs if self.ternary(s)]
        flt = [s for s in segs if not self.ternary(s)]
        n_tern = sum(s.numel for s in tern)
        parts: list[torch.Tensor] = []
        scalers = None
        if tern:
            g = torch.cat([self.clipped(buf[s.start:s.end]) for s in tern])
            sizes = torch.tensor([s.numel for s in tern], device=buf.device)
            # per-layer max |f(g)|: one segmented reduction over the concatenated layers
            scalers = torch.segment_reduce(g.abs(), "max", lengths=sizes, unsafe=True)
            if self.share_scalers and self.world > 1:
                self.count("scalers", scalers)
                dist.all_reduce(scalers, op=dist.ReduceOp.MAX, group=self.group)  # s = max_i s^(i)
            t = self.ternarize(g, torch.repeat_interleave(scalers, sizes, output_size=n_tern))
            if not self.share_scalers:  # float32 whatever the bucket's dtype: 4 bytes each, read back as such
                parts.append(packing.as_bytes(scalers.float()))
        parts += [packing.as_bytes(buf[s.start:s.end]) for s in flt]
        float_bytes = sum(p.numel() for p in parts)
        if tern:
            parts.append(packing.pack_ternary(t))
        payload = packing.pad_to_words(torch.cat(parts) if len(parts) > 1 else parts[0])
        self._count_parts(payload.numel(), float_bytes, n_tern, len(tern))
        fut, gathered = self.all_gather_bytes(payload, part=None)
        return fut.then(lambda _: self.decode(gathered, buf, segs, tern, flt, scalers, float_bytes))

    def _count_parts(self, total: int, float_bytes: int, n_tern: int, n_layers: int) -> None:
        """The payload's bytes by part (own scalers, float32 tensors, 2-bit codes, padding)."""
        own_scalers = 0 if self.share_scalers else 4 * n_layers
        codes = packing.packed_size(n_tern) if n_tern else 0
        for part, size in (("scalers", own_scalers), ("float", float_bytes - own_scalers), ("codes", codes),
                           ("padding", total - float_bytes - codes)):
            if size:
                self._current[part] = self._current.get(part, 0) + size

    def decode(self, gathered, buf, segs, tern, flt, scalers, float_bytes) -> torch.Tensor:
        """Every rank's message -> the average gradient, identical on every rank (rank order)."""
        out = torch.empty_like(buf)
        n_tern = sum(s.numel for s in tern)
        codes_at = float_bytes
        if tern:
            sizes = torch.tensor([s.numel for s in tern], device=buf.device)
            codes = packing.packed_size(n_tern)
            values = None
            for r in range(self.world):
                t = packing.unpack_ternary(gathered[r, codes_at:codes_at + codes], n_tern).to(buf.dtype)
                if not self.share_scalers:  # this rank's own scalers, first in its message
                    own = gathered[r, :4 * len(tern)].view(torch.float32).to(buf.dtype)
                    t = t * torch.repeat_interleave(own, sizes, output_size=n_tern)
                values = t if values is None else values.add_(t)
            if self.share_scalers:
                values.mul_(torch.repeat_interleave(scalers, sizes, output_size=n_tern))
            values.div_(self.world)
            at = 0
            for s in tern:
                out[s.start:s.end] = values[at:at + s.numel]
                at += s.numel
        at = 0 if self.share_scalers else 4 * len(tern)
        for s in flt:
            nbytes = s.numel * buf.element_size()
            rows = gathered[:, at:at + nbytes].contiguous().view(buf.dtype)  # (world, numel)
            out[s.start:s.end] = rows.sum(0).div_(self.world)
            at += nbytes
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["generator"] = self._generator.get_state() if self._generator is not None else self._generator_state
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._generator_state = state.get("generator")
        if self._generator is not None and self._generator_state is not None:
            self._generator.set_state(self._generator_state)
