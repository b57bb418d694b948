"""Gradient fidelity in a binary-activation network: the straight-through gradient (STE) and
evolution-strategies estimates (NES) against a central-difference gradient (CDG), after the
experiment log "2021/5/19 结果反馈与讨论记录" (results and discussion notes, in Chinese, unsigned,
2021-05-15/19).

The log's setting ("BinaryDuo's setup, 2 models / gaussian data"): a student network with
binary activations is compared with a fixed teacher on Gaussian inputs x ~ N(0, I_dim), dim in
8, 16, 32, 64, with and without pre-training the student by STE (the log: 2000 batches of
16000 x dim for sign activations, 500 steps of batch 16k for stochastic rounding), and with the
log's stochastic-rounding activations. At the student's weights theta, on one batch of 256:

- STE: autograd through sign with BNN's estimator g * 1_{|a| <= 1} (`suite.quant.sign_ste`);
  stochastic rounding: straight through the sampling (exact for the mean: E[s] = a~, below);
- CDG: g_i = (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps), every coordinate i;
- NES: g = sum_j (L(theta + sigma u_j) - L(theta - sigma u_j)) u_j / (2 sigma N), u_j ~ N(0, I),
  N in `nes_samples`; the smaller N are prefixes of the largest one's directions;
- cosine similarity of STE and NES to CDG, and the loss decrease L(theta) - L(theta - lr g / |g|)
  after one step of length lr along each (normalized) estimate, for each lr in `learning_rates`.

Stochastic rounding (the log's "Stochastic Rounding flow"): a layer's output A is mapped to
[-1, 1] (positives divided by |max A|, negatives by |min A|, over the whole layer output), p =
(A~ + 1) / 2, a relaxed Bernoulli(p) sample at a temperature T, minus 1/2, through sign. The sign
of sigmoid((logit p + logistic noise) / T) - 1/2 is that of logit p + noise: the sample is
+1 with probability p whatever T (the temperature has no effect after the sign), and E[s] = A~.

Where the log is silent we chose (each stated in the spec's deviations): a network
dim -> (width_factor dim) x depth -> 1 without biases, weights N(0, 1/fan_in); the teacher the
same architecture with sign activations and its own random weights (realizable); the squared
error loss; Adam for pre-training; for stochastic rounding, the STE gradient averaged over
`eval_draws` noise draws, one draw per CDG coordinate pair and per NES direction pair (shared by
its + and - evaluation), and the loss decrease averaged over `eval_draws` draws shared by every lr.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from suite.errors import UserError
from suite.quant import sign_pm1, sign_ste
from suite.quant.noise import uniform_centered

ACTIVATIONS = ("sign", "stochastic")


@dataclass(frozen=True)
class Params:
    dims: list[int] = field(default_factory=lambda: [8, 16, 32, 64])
    width_factor: int = 1  # hidden width = width_factor x dim
    depth: int = 2  # binary hidden layers
    batch: int = 256  # the batch whose loss is differentiated (the log's 256)
    activation: str = "sign"  # sign | stochastic (the log's stochastic rounding)
    pretrain_steps: int = 0  # STE pre-training steps (0: the raw, randomly initialised student)
    pretrain_batch: int = 16000
    pretrain_lr: float = 0.01  # Adam
    cdg_epsilon: float = 0.05
    nes_sigma: float = 0.01
    nes_samples: list[int] = field(default_factory=lambda: [500, 5000, 50000])
    learning_rates: list[float] = field(default_factory=lambda: [round(10 ** (e / 4), 6) for e in range(-12, 5)])
    eval_draws: int = 16  # stochastic: noise draws for the STE mean and the loss-decrease objective
    random_directions: int = 20  # the null: an estimate points downhill if it beats all these random directions
    chunk: int = 32  # loss evaluations per batched forward (memory: chunk x batch x width floats per layer)


def check(p: Params, where: str) -> None:
    positive = {k: getattr(p, k) for k in ("width_factor", "depth", "batch", "pretrain_batch", "eval_draws", "chunk",
                                           "random_directions",
                                           "pretrain_lr", "cdg_epsilon", "nes_sigma")}
    for key, value in positive.items():
        if not value > 0:
            raise UserError(f"{where}.{key}: must be positive, got {value}")
    for key in ("dims", "nes_samples", "learning_rates"):
        values = getattr(p, key)
        if not values or not all(v > 0 for v in values):
            raise UserError(f"{where}.{key}: expected a non-empty list of positive numbers, got {values}")
    if p.pretrain_steps < 0:
        raise UserError(f"{where}.pretrain_steps: must be >= 0, got {p.pretrain_steps}")
    if p.activation not in ACTIVATIONS:
        raise UserError(f"{where}.activation: expected one of {', '.join(ACTIVATIONS)}, got {p.activation!r}")


# --- the toy network: a flat parameter vector, any leading batch of parameter vectors --------

def layer_shapes(dim: int, p: Params) -> list[tuple[int, int]]:
    width = p.width_factor * dim
    return [(width, dim)] + [(width, width)] * (p.depth - 1) + [(1, width)]


def init_theta(shapes: list[tuple[int, int]], gen: torch.Generator) -> torch.Tensor:
    """Weights N(0, 1/fan_in), flattened: unit-variance pre-activations for unit-variance inputs."""
    return torch.cat([torch.randn(o * i, generator=gen) / math.sqrt(i) for o, i in shapes])


def stochastic_round(a: torch.Tensor, u: torch.Tensor, ste: bool) -> torch.Tensor:
    """The log's stochastic rounding of one layer output a (..., batch, width) given uniform noise
    u in (-1/2, 1/2): a~ = a / |max a| (a > 0) or a / |min a| (a < 0) over each evaluation's whole
    output, then +1 with probability p = (a~ + 1) / 2, else -1, drawn as sign(a~ / 2 + u): the
    log's sign(RelaxedBernoulli(p, T) - 1/2) for every temperature T (see the module docstring).
    With `ste`, the gradient passes straight through the sampling to a~ (the scales held constant)."""
    tiny = torch.finfo(a.dtype).tiny
    inv_hi = 1 / a.detach().amax(dim=(-2, -1), keepdim=True).clamp_min(tiny)
    inv_lo = 1 / a.detach().amin(dim=(-2, -1), keepdim=True).neg().clamp_min(tiny)
    # positives / |max a| + negatives / |min a|: no bool mask (torch.where is slow on the CPU)
    scaled = a.clamp_min(0).mul_(inv_hi).add_(a.clamp_max(0).mul_(inv_lo))
    if ste:
        s = sign_pm1(torch.add(u, scaled.detach(), alpha=0.5))
        return scaled + (s - scaled).detach()
    t = scaled.mul_(0.5)
    t = t.add_(u) if torch.broadcast_shapes(t.shape, u.shape) == t.shape else t + u
    return sign_pm1(t, out=t)


def forward(theta: torch.Tensor, x: torch.Tensor, shapes, activation: str, noise=None,
            ste: bool = False) -> torch.Tensor:
    """Outputs (..., batch) for parameters theta (..., P): each leading index one network."""
    lead = theta.shape[:-1]
    h, offset = x, 0
    for i, (o, n_in) in enumerate(shapes):
        w = theta[..., offset: offset + o * n_in].reshape(*lead, o, n_in)
        offset += o * n_in
        a = h @ w.transpose(-1, -2)
        if i == len(shapes) - 1:
            return a.squeeze(-1)
        if activation == "sign":
            h = sign_ste(a) if ste else sign_pm1(a)
        else:
            h = stochastic_round(a, noise[i], ste)
    raise AssertionError("unreachable: the last layer returns")


class Problem:
    """One student, teacher and evaluation batch; batched loss evaluations."""

    def __init__(self, dim: int, p: Params, seed: int, device: torch.device):
        self.p, self.device = p, device
        self.shapes = layer_shapes(dim, p)
        self.width = self.shapes[0][0]
        self.gen = torch.Generator().manual_seed(seed * 100_003 + dim)
        torch.manual_seed(seed * 100_003 + dim)  # the stochastic activations' noise (suite.quant.noise)
        self.teacher = init_theta(self.shapes, self.gen).to(device)
        self.theta = init_theta(self.shapes, self.gen).to(device)
        self.x = torch.randn(p.batch, dim, generator=self.gen).to(device)
        self.y = self.target(self.x)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.teacher, x, self.shapes, "sign")

    def noise(self, *lead: int, batch: int | None = None) -> list[torch.Tensor] | None:
        """Uniform draws in (-1/2, 1/2) for each hidden layer (stochastic rounding), or None."""
        if self.p.activation == "sign":
            return None
        template = torch.empty(*lead, batch or self.p.batch, self.width, device=self.device)
        return [uniform_centered(template) for _ in range(len(self.shapes) - 1)]

    def loss(self, theta, x=None, y=None, noise=None, ste=False) -> torch.Tensor:
        x = self.x if x is None else x
        y = self.y if y is None else y
        out = forward(theta, x, self.shapes, self.p.activation, noise, ste)
        return (out - y).pow(2).mean(-1)

    @torch.no_grad()
    def pair_differences(self, plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
        """L(plus_k) - L(minus_k) for parameter rows k, each pair sharing one noise draw."""
        out = []
        for i in range(0, len(plus), self.p.chunk):
            both = torch.stack([plus[i: i + self.p.chunk], minus[i: i + self.p.chunk]])  # (2, c, P)
            losses = self.loss(both, noise=self.noise(both.shape[1]))
            out.append(losses[0] - losses[1])
        return torch.cat(out)

    @torch.no_grad()
    def objective(self, thetas: torch.Tensor) -> torch.Tensor:
        """The loss at each row of thetas; stochastic: the mean over eval_draws draws shared by all rows."""
        if self.p.activation == "sign":
            return self.loss(thetas)
        noise = self.noise(self.p.eval_draws)
        return self.loss(thetas.unsqueeze(-2), noise=noise).mean(-1)

    def pretrain(self, progress: bool) -> list[float]:
        """Adam on fresh Gaussian batches, gradients by STE; the loss at ten evenly spaced steps
        (the last included), to show how far it converged."""
        p = self.p
        if not p.pretrain_steps:
            return []
        theta = self.theta.clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=p.pretrain_lr)
        history = torch.empty(p.pretrain_steps, device=self.device)
        for step in tqdm(range(p.pretrain_steps), desc=f"pre-train dim {self.shapes[0][1]}", disable=not progress,
                         leave=False):
            x = torch.randn(p.pretrain_batch, self.shapes[0][1], generator=self.gen).to(self.device)
            loss = self.loss(theta, x, self.target(x), self.noise(batch=p.pretrain_batch), ste=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history[step] = loss.detach()  # no host sync in the loop
        self.theta = theta.detach()
        marks = np.linspace(0, p.pretrain_steps - 1, min(10, p.pretrain_steps)).round().astype(int)
        return history[torch.from_numpy(marks)].tolist()

    def ste(self) -> torch.Tensor:
        theta = self.theta.clone().requires_grad_(True)
        noise = self.noise(self.p.eval_draws)
        self.loss(theta, noise=noise, ste=True).mean().backward()  # stochastic: the mean over draws
        return theta.grad

    def cdg(self) -> torch.Tensor:
        return central_differences(self.pair_differences, self.theta, self.p.cdg_epsilon, self.p.chunk)

    def nes(self) -> dict[int, torch.Tensor]:
        return nes_estimates(self.pair_differences, self.theta, self.p.nes_sigma, self.p.nes_samples, self.p.chunk,
                             self.gen)

    def decrease(self, grad: torch.Tensor, lrs: torch.Tensor) -> torch.Tensor:
        """L(theta) - L(theta - lr g / |g|) for each lr (positive: the loss went down)."""
        direction = grad / grad.norm().clamp_min(torch.finfo(grad.dtype).tiny)
        thetas = torch.cat([self.theta[None], self.theta - lrs[:, None] * direction])
        losses = self.objective(thetas)
        return losses[0] - losses[1:]


def central_differences(pair_differences, theta: torch.Tensor, eps: float, chunk: int) -> torch.Tensor:
    """CDG: g_i = (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps) for every coordinate i;
    `pair_differences(plus, minus)` gives L(plus_k) - L(minus_k) for rows k."""
    n = theta.numel()
    grad = torch.empty_like(theta)
    for i in range(0, n, chunk):
        rows = torch.arange(i, min(i + chunk, n), device=theta.device)
        step = torch.zeros(len(rows), n, dtype=theta.dtype, device=theta.device)
        step[torch.arange(len(rows)), rows] = eps
        grad[rows] = pair_differences(theta + step, theta - step) / (2 * eps)
    return grad


def nes_estimates(pair_differences, theta: torch.Tensor, sigma: float, samples: list[int], chunk: int,
                  gen: torch.Generator) -> dict[int, torch.Tensor]:
    """NES with antithetic pairs, sum_j (L(theta + sigma u_j) - L(theta - sigma u_j)) u_j / (2 sigma N),
    u_j ~ N(0, I), for every N in `samples`: the smaller N use the first directions of the largest."""
    total = torch.zeros_like(theta)
    done, out = 0, {}
    for target in sorted(set(samples)):
        while done < target:
            c = min(chunk, target - done)
            u = torch.randn(c, theta.numel(), generator=gen, dtype=theta.dtype).to(theta.device)
            total += pair_differences(theta + sigma * u, theta - sigma * u) @ u
            done += c
        out[target] = total / (2 * sigma * done)
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny))


def run_dim(dim: int, p: Params, seed: int, device: torch.device, progress: bool) -> dict:
    t0 = time.perf_counter()
    prob = Problem(dim, p, seed, device)
    pretrain_losses = prob.pretrain(progress)
    estimates = {"STE": prob.ste(), "CDG": prob.cdg()}
    estimates.update({f"NES-{n}": g for n, g in prob.nes().items()})
    lrs = torch.tensor(p.learning_rates, device=device)
    curves = {name: prob.decrease(g, lrs).tolist() for name, g in estimates.items()}
    best = {name: max(zip(c, p.learning_rates, strict=True)) for name, c in curves.items()}
    # The null: the best decrease along random directions (a max over lrs is positive by chance
    # too: half of all directions go down to first order, and a stochastic objective is noisy)
    null = sorted(float(prob.decrease(torch.randn(prob.theta.numel(), generator=prob.gen).to(device), lrs).max())
                  for _ in range(p.random_directions))
    return {
        "dim": dim, "parameters": prob.theta.numel(), "pretrain_losses": pretrain_losses,
        "loss": float(prob.objective(prob.theta[None])[0]),
        "cos_to_cdg": {name: cosine(g, estimates["CDG"]) for name, g in estimates.items() if name != "CDG"},
        "cos_nes_to_ste": {name: cosine(g, estimates["STE"]) for name, g in estimates.items()
                           if name.startswith("NES")},
        "best_decrease": {name: {"decrease": d, "lr": lr} for name, (d, lr) in best.items()},
        "random_best_decrease": null,
        "downhill": {name: d > 0 and d > null[-1] for name, (d, _) in best.items()},
        "lrs": list(p.learning_rates), "curves": curves, "seconds": time.perf_counter() - t0,
    }


def run(p: Params, seed: int, device: torch.device, progress: bool, desc: str) -> dict:
    rows = [run_dim(d, p, seed, device, progress) for d in tqdm(p.dims, desc=desc,
                                                                  disable=not progress, leave=False)]
    largest = f"NES-{max(p.nes_samples)}"
    summary = {"pretrained": p.pretrain_steps > 0, "activation": p.activation, "largest_nes": largest,
               "nes_downhill": {str(r["dim"]): r["downhill"][largest] for r in rows},
               "cos_ste_to_cdg": {str(r["dim"]): r["cos_to_cdg"]["STE"] for r in rows},
               "cos_nes_to_cdg": {str(r["dim"]): r["cos_to_cdg"][largest] for r in rows}}
    tables = {"dims": [{k: v for k, v in r.items() if k not in ("curves", "lrs")} for r in rows]}
    curves = {str(r["dim"]): {"lrs": r["lrs"], "decrease": r["curves"]} for r in rows}
    return {"summary": summary, "tables": tables, "curves": curves}


# --- report -------------------------------------------------------------------------------

def _ms(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _estimators(records: list[dict]) -> list[str]:
    names = list(records[0]["tables"]["dims"][0]["cos_to_cdg"])
    return names  # STE, then NES-N in increasing N


def variant_table(records: list[dict]) -> pd.DataFrame:
    names = _estimators(records)
    dims = [row["dim"] for row in records[0]["tables"]["dims"]]
    rows = []
    for i, dim in enumerate(dims):
        per_seed = [r["tables"]["dims"][i] for r in records]
        row = {"dim": dim, "params": per_seed[0]["parameters"]}
        if per_seed[0]["pretrain_losses"]:
            row["pre-training loss, first → last step"] = (f"{_ms([s['pretrain_losses'][0] for s in per_seed])} → "
                                                           f"{_ms([s['pretrain_losses'][-1] for s in per_seed])}")
        row["loss L(θ)"] = _ms([s["loss"] for s in per_seed], 4)
        for name in names:
            row[f"cos({name}, CDG)"] = _ms([s["cos_to_cdg"][name] for s in per_seed])
        for name in ["STE", "CDG", names[-1]]:
            best = [s["best_decrease"][name] for s in per_seed]
            down = sum(s["downhill"][name] for s in per_seed)
            lrs = "/".join(f"{b['lr']:.3g}" for b in best)
            row[f"best ΔL {name} (lr)"] = (f"{_ms([b['decrease'] for b in best], 4)} ({lrs})"
                                           + (" ↓" if down == len(best) else f", ↓ {down}/{len(best)}" if down else ""))
        row[f"best ΔL, random directions (max of {len(per_seed[0]['random_best_decrease'])})"] = _ms(
            [s["random_best_decrease"][-1] for s in per_seed], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def render(records: list[dict], baselines=None) -> str:
    resolved = records[-1]["spec"]["resolved"]
    order = [v["name"] for v in resolved["variants"]]
    labels = {v["name"]: v.get("label") or v["name"] for v in resolved["variants"]}
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    out = ["Cosine similarity to the central-difference gradient (CDG) and the best loss decrease "
           "ΔL = L(θ) − L(θ − lr·g/|g|) over the learning rates tried, at the lr that gave it; mean ± std over "
           "seeds. ↓: the estimate points downhill, i.e. its best ΔL is positive and larger than that of every one "
           "of the random directions tried (last column; a best ΔL > 0 alone arises by chance).", ""]
    for name in order + sorted(set(by_variant) - set(order)):
        if name not in by_variant:
            continue
        recs = sorted(by_variant[name], key=lambda r: r["seed"])
        p = recs[-1]["params"]
        setting = (f"{p['activation']} activations, "
                   + (f"pre-trained by STE ({p['pretrain_steps']} steps of {p['pretrain_batch']})"
                      if p["pretrain_steps"] else "not pre-trained")
                   + f"; CDG ε = {p['cdg_epsilon']:g}, NES σ = {p['nes_sigma']:g}, batch {p['batch']}")
        out += [f"### {labels.get(name, name)}", "", setting + f"; {len(recs)} seed(s).", "",
                variant_table(recs).to_markdown(index=False, disable_numparse=True), ""]
    out += _finding(records)
    return "\n".join(out)


def _finding(records: list[dict]) -> list[str]:
    """Did NES (largest N) point downhill after pre-training? The experiment log found it did not."""
    lines = []
    for pretrained in (True, False):
        cases = [(r["variant"], dim, down) for r in records if r["summary"]["pretrained"] == pretrained
                 for dim, down in r["summary"]["nes_downhill"].items()]
        if not cases:
            continue
        largest = records[0]["summary"]["largest_nes"]
        downhill = sum(d for _, _, d in cases)
        state = "after pre-training" if pretrained else "without pre-training"
        failed = ", ".join(f"{v} dim {d}" for v, d, down in cases if not down) or "none"
        if pretrained:
            seed = "the experiment log (2021-05-15/19) found that NES did not point downhill after pre-training"
            verdict = (f"{seed}: ours agrees" if downhill == 0 else f"{seed}: ours disagrees"
                       if downhill == len(cases) else
                       f"{seed}: ours agrees in {len(cases) - downhill} of {len(cases)} cases, those not downhill")
        else:
            verdict = "the experiment log reports no failure without pre-training"
        lines.append(f"**{state.capitalize()}, {largest} pointed downhill in {downhill} of {len(cases)} cases** "
                     f"(variant × dim × seed; downhill: best ΔL > 0 and above every random direction's; not "
                     f"downhill: {failed}); {verdict}.")
    return ["Finding:", ""] + [f"- {line}" for line in lines] + [""] if lines else []


def plot(records: list[dict]):
    """Loss decrease versus learning rate, one panel per variant x dim, mean over seeds (a figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resolved = records[-1]["spec"]["resolved"]
    order = [v["name"] for v in resolved["variants"]]
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    names = [n for n in order if n in by_variant] + sorted(set(by_variant) - set(order))
    dims = list(records[0]["curves"])
    if not names or not dims:
        return None
    estimators = list(records[0]["curves"][dims[0]]["decrease"])
    color = {est: f"C{i}" for i, est in enumerate(estimators)}  # the same colour in every panel
    fig, axes = plt.subplots(len(names), len(dims) + 1, figsize=(3.2 * (len(dims) + 1), 2.6 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        recs = by_variant[name]
        for col, dim in enumerate(dims):
            ax = axes[row][col]
            lrs = recs[0]["curves"][dim]["lrs"]
            for est in recs[0]["curves"][dim]["decrease"]:
                ys = np.mean([r["curves"][dim]["decrease"][est] for r in recs], axis=0)
                ax.plot(lrs, ys, label=est, marker=".", color=color[est],
                        linestyle="--" if est.startswith("NES") else "-")
            i = [t["dim"] for t in recs[0]["tables"]["dims"]].index(int(dim))
            null = statistics.fmean(r["tables"]["dims"][i]["random_best_decrease"][-1] for r in recs)
            ax.axhline(null, color="grey", linestyle=":", linewidth=1, label="best of random directions")
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_title(f"{name}, dim {dim}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(names) - 1:
                ax.set_xlabel("learning rate (step length)")
        ax = axes[row][-1]
        table_dims = [t["dim"] for t in recs[0]["tables"]["dims"]]
        for est in recs[0]["tables"]["dims"][0]["cos_to_cdg"]:
            ys = [statistics.fmean(r["tables"]["dims"][i]["cos_to_cdg"][est] for r in recs)
                  for i in range(len(table_dims))]
            ax.plot(table_dims, ys, marker="o", label=est, color=color[est])
        ax.set_xscale("log", base=2)
        ax.set_title(f"{name}: cos to CDG", fontsize=9)
        ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("ΔL (loss decrease)")
    axes[0][0].legend(fontsize=7)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{records[0]['spec']['name']} — profile {records[0]['spec']['profile']} (mean over seeds)")
    fig.tight_layout()
    return fig
