"""Quantization error measured by cosine similarity (the slide of that name).

The slide (Shuchang Zhou, "Neural Network Approximation: Low rank, Sparsity, and Quantization",
slides, Megvii, Mar. 2019) tabulates the cosine similarity between the float product W x and the
product of an n-bit W and an m-bit x, n, m in {1, 2, 3, 4, 6, 8, float}: "W_{b_s n} is n-bit
quantization of real W; x is Gaussian R.V. clipped by tanh". It states no quantizer, distribution
or size; ours:

- x = tanh(g), g ~ N(0, input_scale^2) (the slide), quantized by `input_quantizer`, by default
  the slides' own "Deterministic Quantization" Q_k(X) = alpha quantize_k((X - beta) / alpha) + beta,
  alpha = max(X) - min(X), beta = min(X) (`stochastic_round` in eval mode: round to nearest);
- W drawn from `weight_distribution` (gaussian, or student_t with `weight_dof` degrees of
  freedom) with standard deviation `weight_std`, quantized by `weight_quantizer`: by default the
  author's DoReFa-Net f_w^k (`dorefa_weight`: k = 1 sign(W) E|W|; k > 1 the 2^k levels of [-1, 1]
  after tanh and division by max|tanh W|), or `fixed_range`: the same 2^k levels
  2 quantize_k((W / R + 1) / 2) - 1 on a fixed range [-R, R], R = `weight_range` (clipped);
- bits 32 is the float tensor itself;
- the cosine between the (samples x outputs) matrices X W^T and Q(X) Q(W)^T, flattened.

One run draws one W and one X (numpy's generator, seeded by the run's seed) and computes every
cell; seeds give mean ± std.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from suite.errors import UserError

BITS = [1, 2, 3, 4, 6, 8, 32]
TOLERANCE = 0.01  # the "within 0.01"


@dataclass(frozen=True)
class Params:
    weight_bits: list[int] = field(default_factory=lambda: list(BITS))
    input_bits: list[int] = field(default_factory=lambda: list(BITS))
    length: int = 1024  # the dot products' length (W's columns, x's entries)
    outputs: int = 256  # W's rows
    samples: int = 1024  # x vectors
    input_scale: float = 1.0  # x = tanh(g), g ~ N(0, input_scale^2)
    input_quantizer: str = "stochastic_round"  # a registry input quantizer taking `bits` (eval mode)
    weight_distribution: str = "gaussian"  # gaussian | student_t
    weight_dof: float = 9.0  # student_t's degrees of freedom (> 2: finite variance)
    weight_std: float = 0.05  # W's standard deviation
    weight_quantizer: str = "dorefa_weight"  # a registry weight quantizer taking `bits`, or fixed_range
    weight_range: float = 1.0  # fixed_range: R


def check(p: Params, where: str) -> None:
    from suite.quant import parse_quantizer

    for key in ("weight_bits", "input_bits"):
        bad = [b for b in getattr(p, key) if not (1 <= b <= 16 or b == 32)]
        if bad or not getattr(p, key):
            raise UserError(f"{where}.{key}: expected bit-widths in 1..16 or 32 (float), got {getattr(p, key)}")
    for key in ("length", "outputs", "samples"):
        if getattr(p, key) < 1:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")
    for key in ("input_scale", "weight_std", "weight_range"):
        if not getattr(p, key) > 0:
            raise UserError(f"{where}.{key}: must be positive, got {getattr(p, key)}")
    if p.weight_distribution not in ("gaussian", "student_t"):
        raise UserError(f"{where}.weight_distribution: expected 'gaussian' or 'student_t', "
                        f"got {p.weight_distribution!r}")
    if p.weight_distribution == "student_t" and not p.weight_dof > 2:
        raise UserError(f"{where}.weight_dof: must be > 2 (a finite standard deviation), got {p.weight_dof}")
    quantizers = [("input_quantizer", p.input_quantizer, "input")]
    if p.weight_quantizer != "fixed_range":
        quantizers.append(("weight_quantizer", p.weight_quantizer, "weight"))
    for key, name, role in quantizers:
        try:
            parse_quantizer(f"{name}(bits=2)", role)
        except UserError as e:
            raise UserError(f"{where}.{key}: {e} (a quantizer with a `bits` argument)") from None


def draw_weights(p: Params, rng: np.random.Generator) -> torch.Tensor:
    shape = (p.outputs, p.length)
    if p.weight_distribution == "gaussian":
        w = rng.standard_normal(shape)
    else:
        w = rng.standard_t(p.weight_dof, shape) / math.sqrt(p.weight_dof / (p.weight_dof - 2))  # unit std
    return torch.from_numpy(w * p.weight_std).float()


def fixed_range(w: torch.Tensor, bits: int, r: float) -> torch.Tensor:
    """DoReFa's 2^k levels of [-1, 1], 2 quantize_k(v) - 1, on the fixed range [-r, r] (clipped)."""
    from suite.quant import quantize_k

    return (2 * quantize_k(((w / r + 1) / 2).clamp(0, 1), bits) - 1) * r


def quantize(x: torch.Tensor, bits: int, quantizer: str, role: str, p: Params) -> torch.Tensor:
    from suite.quant import build_quantizer

    if bits == 32:
        return x
    if quantizer == "fixed_range":
        return fixed_range(x, bits, p.weight_range)
    with torch.no_grad():
        return build_quantizer(f"{quantizer}(bits={bits})", role).eval()(x)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    rng = np.random.default_rng(seed)
    x = torch.tanh(torch.from_numpy(rng.standard_normal((p.samples, p.length)) * p.input_scale).float()).to(device)
    w = draw_weights(p, rng).to(device)
    y = x @ w.T
    wq = {n: quantize(w, n, p.weight_quantizer, "weight", p) for n in p.weight_bits}
    cells = {}  # input bits -> weight bits -> cosine
    for m in tqdm(p.input_bits, desc=desc, disable=not progress, leave=False):
        xq = quantize(x, m, p.input_quantizer, "input", p)
        cells[str(m)] = {str(n): cosine(y, xq @ wq[n].T) for n in p.weight_bits}
    summary = {"weight_factor": {str(n): cosine(y, x @ wq[n].T) for n in p.weight_bits},
               "input_factor": {str(m): cosine(y, quantize(x, m, p.input_quantizer, "input", p) @ w.T)
                                for m in p.input_bits},
               "weight_mean_abs_over_rms": float(w.abs().mean() / w.pow(2).mean().sqrt()),
               "weight_max_over_rms": float(w.abs().max() / w.pow(2).mean().sqrt())}
    return {"summary": summary, "tables": {"cosine": cells}}


# --- report -------------------------------------------------------------------------------

def _bits_name(bits: int, of: str) -> str:
    """The slide's labels: W_{b_s n} / W and x_b (1 bit), x_m / x."""
    if bits == 32:
        return of
    if of == "x":
        return "x_b" if bits == 1 else f"x_{bits}"
    return f"W_b_s{bits}"


def slide_values(baselines: pd.DataFrame | None) -> dict[tuple[int, int], float]:
    """(weight bits, input bits) -> the slide's cosine, from the baselines file."""
    if baselines is None or "w_bits" not in baselines:
        return {}
    rows = baselines[baselines["metric"] == "cosine_similarity"]
    return {(int(r["w_bits"]), int(r["a_bits"])): float(r["value"]) for _, r in rows.iterrows()}


def _mean_cells(records: list[dict]) -> dict[tuple[int, int], tuple[float, float | None]]:
    values: dict[tuple[int, int], list[float]] = {}
    for r in records:
        for m, row in r["tables"]["cosine"].items():
            for n, v in row.items():
                values.setdefault((int(n), int(m)), []).append(v)
    return {k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else None) for k, v in values.items()}


def implied_range(cos: float, bits: int) -> float | None:
    """The half-range R (in units of the quantized tensor's rms) that uniform rounding to 2^k
    levels must have for this cosine, from the fine-quantization error model: error variance
    D^2 / 12 with D = 2 R / (2^k - 1), cos = 1 / sqrt(1 + D^2 / 12)."""
    if not 0 < cos < 1:
        return None
    return math.sqrt(12 * (1 / cos**2 - 1)) * (2**bits - 1) / 2


def _reason(n: int, m: int, ours: dict, slide: dict) -> str:
    """Which factor of the cell differs: the slide's cells are (nearly) the product of the
    weight factor (its float-x row) and the input factor (its float-W column)."""
    parts = []
    for factor, key, label in (("weights", (n, 32), _bits_name(n, "W")), ("inputs", (32, m), _bits_name(m, "x"))):
        if key in ours and key in slide and abs(ours[key][0] - slide[key]) > TOLERANCE / 2:
            parts.append(f"{factor} ({label} with float {'x' if factor == 'weights' else 'W'}: ours "
                         f"{ours[key][0]:.3f}, slide {slide[key]:.3f})")
    if parts:
        return "the " + " and the ".join(parts) + " differ"
    return "neither factor differs by more than 0.005: the interaction of the two quantizations"


def render_variant(label: str, records: list[dict], slide: dict) -> list[str]:
    ours = _mean_cells(records)
    w_bits = sorted({n for n, _ in ours})
    x_bits = sorted({m for _, m in ours})
    n_seeds = len(records)
    rows = []
    for m in x_bits:
        row = {"inputs \\ weights": _bits_name(m, "x")}
        for n in w_bits:
            mean, std = ours[(n, m)]
            cell = f"{mean:.3f}" + (f"±{std:.3f}" if std is not None else "")
            if (n, m) in slide:
                flag = " ⚠" if abs(mean - slide[(n, m)]) > TOLERANCE else ""
                cell += f" / {slide[(n, m)]:.3f}{flag}"
            row[_bits_name(n, "W")] = cell
        rows.append(row)
    compared = [(k, ours[k][0] - slide[k]) for k in ours if k in slide]
    off = sorted([(k, d) for k, d in compared if abs(d) > TOLERANCE], key=lambda kd: -abs(kd[1]))
    out = [f"### {label}", "",
           f"Cells: ours (mean{' ± std over ' + str(n_seeds) + ' seeds' if n_seeds > 1 else ', one seed'}) / "
           "the slide's; ⚠ where they differ by more than 0.01.", "",
           pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    if compared:
        worst = max(abs(d) for _, d in compared)
        out += [f"**{len(compared) - len(off)} of {len(compared)} cells within 0.01 of the slide** "
                f"(largest difference {worst:.3f}).", ""]
    if off:
        by_reason: dict[str, list[str]] = {}  # one line per likely reason, its cells in table order
        for (n, m), d in sorted(off, key=lambda kd: (kd[0][0], kd[0][1])):
            by_reason.setdefault(_reason(n, m, ours, slide), []).append(
                f"{_bits_name(m, 'x')} × {_bits_name(n, 'W')} {ours[(n, m)][0]:.3f} vs {slide[(n, m)]:.3f} ({d:+.3f})")
        out += [f"Cells differing by more than 0.01 ({len(off)}), ours vs the slide, by likely reason:", ""]
        out += [f"- {reason[0].upper() + reason[1:]}: {'; '.join(cells)}." for reason, cells in by_reason.items()]
        out.append("")
    def mean(key: str) -> float:
        return statistics.fmean(r["summary"][key] for r in records)

    out += [f"Our W (mean over the {len(records)} seeds): E|W| / rms(W) = {mean('weight_mean_abs_over_rms'):.3f}, "
            f"max|W| / rms(W) = {mean('weight_max_over_rms'):.1f}.", ""]
    return out


def render(records: list[dict], baselines: pd.DataFrame | None) -> str:
    slide = slide_values(baselines)
    resolved = records[-1]["spec"]["resolved"]
    labels = {v["name"]: v.get("label") or v["name"] for v in resolved["variants"]}
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    out = []
    for name in [v["name"] for v in resolved["variants"]] + sorted(set(by_variant) - set(labels)):
        if name in by_variant:
            out += render_variant(labels.get(name, name), by_variant[name], slide)
    if slide:
        out += _slide_notes(slide)
    return "\n".join(out)


def _slide_notes(slide: dict) -> list[str]:
    """What the slide's own numbers imply (computed from the baselines file)."""
    notes = []
    products = [abs(slide[(n, m)] - slide[(n, 32)] * slide[(32, m)]) for n, m in slide
                if (n, 32) in slide and (32, m) in slide]
    if products:
        notes.append(f"The slide's cells are the product of their row's and column's float factor to within "
                     f"{max(products):.3f} (cos(W x, Q(W) Q(x)) ≈ cos(W x, Q(W) x) · cos(W x, W Q(x)) for independent "
                     "W and x): a cell that differs is explained by its weight factor (row x), its input factor "
                     "(column W), or both.")
    if (1, 32) in slide:
        notes.append(f"With float inputs, 1-bit weights thresholded at 0 give cos = E|W| / rms(W), whatever the "
                     f"scale: sqrt(2/π) = {math.sqrt(2 / math.pi):.3f} for Gaussian W; the slide's "
                     f"{slide[(1, 32)]:.3f} means its W was not Gaussian: E|W| / rms(W) below sqrt(2/π) means "
                     "heavier tails (trained weights have them).")
    if (6, 32) in slide and (r := implied_range(slide[(6, 32)], 6)):
        notes.append(f"Uniform rounding to 2^k levels has error variance Δ²/12; the slide's 6-bit weight factor "
                     f"{slide[(6, 32)]:.3f} implies levels spanning ±{r:.1f} rms(W), far wider than a Gaussian "
                     "sample's largest value (our max|W| / rms(W) above): a range set by a few outlying weights, "
                     "as the max of a trained layer is.")
    return ["Reading the slide:", ""] + [f"- {n}" for n in notes] + [""] if notes else []
