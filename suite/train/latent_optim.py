"""The optimizer step of k-bit latent weights (`suite/nn/latent.py`), for SGD and Adam.

The latent codes join the run's torch optimizer as param groups marked ``latent`` (with their
layer's LR scale): the torch step skips them (they have no ``.grad``), the LR schedule scales
their ``lr``, and ``optimizer.state`` keeps their state, so checkpoints save it. After the torch
step a post-hook (`LatentUpdate`) updates each layer as torch would a float parameter, with the
gradient of this step's binary weights (the latent weights' one, straight through):

    SGD:   b = mu b + g (b = g at the first step; mu = 0: no state),  w <- w - lr b
    Adam:  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  w <- w - lr m^ / (sqrt(v^) + eps)
           (m^, v^ bias-corrected; coupled weight decay g += wd w as torch's SGD and Adam)

w is decoded from the codes, updated, and re-encoded with stochastic rounding. The state stays
float32 (m, v for Adam; b for SGD with momentum): this is the memory that, as the project notes
"Something about softweight" observe, Adam brings back. No host sync: the step count lives on the
CPU, as torch's Adam keeps it.
"""

from __future__ import annotations

import torch

from suite.nn.latent import LatentStorage, latent_layers


def latent_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """One ``latent`` param group of codes per distinct layer LR scale (as `param_groups`)."""
    by_scale: dict[float | None, list] = {}
    for layer in latent_layers(model):
        by_scale.setdefault(layer.lr_scale, []).append(layer.latent.codes)
    return [{"params": codes, "lr": lr * (s if s is not None else 1.0), "latent": True,
             **({"lr_scale": s} if s is not None else {})} for s, codes in by_scale.items()]


class LatentUpdate:
    """A step post-hook of a torch SGD or Adam optimizer that updates the latent codes."""

    def __init__(self, model: torch.nn.Module, adam: bool):
        self.storage: dict[torch.Tensor, LatentStorage] = {m.latent.codes: m.latent for m in latent_layers(model)}
        self.adam = adam

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            if not group.get("latent"):
                continue
            for codes in group["params"]:
                storage = self.storage[codes]
                if storage.leaf is None or storage.leaf.grad is None:
                    continue  # no forward and backward since the last step (torch skips such params too)
                g, w = storage.leaf.grad, storage.decode()
                storage.leaf = None  # the transient binary weights and their gradient go here
                if group["weight_decay"]:
                    g = g.add(w, alpha=group["weight_decay"])
                (self._adam if self.adam else self._sgd)(w, g, optimizer.state[codes], group)
                storage.encode_(w)

    @staticmethod
    def _sgd(w, g, state, group) -> None:
        mu = group["momentum"]
        if mu:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()
            else:
                state["momentum_buffer"].mul_(mu).add_(g)
            g = state["momentum_buffer"]
        w.add_(g, alpha=-group["lr"])

    @staticmethod
    def _adam(w, g, state, group) -> None:
        b1, b2 = group["betas"]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)  # on the CPU, as torch's Adam
            state["exp_avg"] = torch.zeros_like(g, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(g, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"].item()  # a CPU tensor: no device sync
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = v.sqrt().div_((1 - b2**t) ** 0.5).add_(group["eps"])
        w.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))
