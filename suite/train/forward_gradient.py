"""Forward gradient (Baydin, Pearlmutter, Syme, Wood, Torr 2022, "Gradients without
Backpropagation"): training with forward-mode directional derivatives, no backward pass.

Each step draws `num_directions` random directions v_1..v_k over all trainable parameters (one
flat vector of d numbers each), computes the directional derivatives grad f . v_i with
``torch.func.jvp`` over ``torch.func.functional_call`` (forward mode: no autograd graph is built
or kept), and hands the estimate

    g = (1/k) sum_i (grad f . v_i) v_i

to the spec's ordinary optimizer as the gradient (written into ``p.grad``), then clips latent
weights as backprop does. With E[v v^T] = I the estimate is unbiased: E[g] = grad f.

Directions (``train.direction_distribution``): ``gaussian`` (v ~ N(0, I)) or ``rademacher``
(entries +-1 with probability 1/2), drawn from the method's own generator (seeded from the run's
seed), one d-vector per direction, so every mode below sees the same directions.

Orthogonal directions (``train.orthogonal_directions``, the "orthogonal trick" of the project
notes "Something about softweight"): the step's k directions are orthonormalised among themselves
and made orthogonal to the previous step's k directions (kept as method state; ``state_dict``
exposes them). The draws are projected off the previous directions, then orthonormalised by a QR
factorisation of the k x d matrix (CholeskyQR: the Cholesky factor of the k x k Gram matrix, in
float64, applied by one matrix product; for 20 directions over VGG16's 15 M parameters on the CPU
it took half the time of ``torch.linalg.qr`` and its rows were orthogonal to 1e-5, QR's to 1e-3,
in float32), then scaled by sqrt(d). Why sqrt(d): each orthonormal row q has E[q q^T] = I / d
(for Gaussian draws q is uniform on the sphere; for Rademacher draws by the symmetry of signs and coordinates), so
v = sqrt(d) q keeps E[v v^T] = I and the estimate unbiased (over the draws of both steps). Given
the previous step's unit directions P (k x d), this step's avoid span(P): E[v v^T | P] =
d / (d - k) (I - P^T P), so E[g | P] = d / (d - k) (I - P^T P) grad f: the gradient's component
along the last step's directions (a fraction k / d of a random gradient) is left out of this
step's estimate, by design. Needs 2k <= d.

Batched directions (``train.batched_directions``): all k jvps in one ``torch.func.vmap`` call,
the primal forward computed once and the k tangents carried together: faster, but the tangent
activations are k times as large. The loop (default) runs the k jvps one after another.

BatchNorm running statistics (buffers) are updated by the forward pass in train mode exactly
once per step (from the first direction's pass; the others work on scratch copies). Stochastic
layers (stochastic BinaryConnect, dropout) see the same random draws for every direction of a
step (the global RNG state is restored between directions; vmap uses randomness="same"), so the
k derivatives are of one function.

Memory per step, beyond the model, optimizer state and one forward pass's working set (no
activations are kept for a backward pass): the gradient buffer (d numbers) and one direction
(d) in the loop; k directions (k d) when batched or orthogonal, and k more for the previous
step's directions when orthogonal.

No host synchronisation per step: the loss and the derivatives stay on the device.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import torch
from torch.func import functional_call, jvp, vmap

from suite.errors import UserError
from suite.nn import clip_latent_weights

DISTRIBUTIONS = ("gaussian", "rademacher")  # train.direction_distribution


def _load_jvp_decompositions() -> None:
    """torch loads its forward-AD decompositions at the first jvp, scripting them with
    torch.jit.script, which warns that it is deprecated: a torch internal, silenced here once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        try:
            from torch._decomp import decompositions_for_jvp  # noqa: F401
        except ImportError:  # another torch version: then nothing to silence
            pass


class ForwardGradient:
    """The `forward_gradient` training method (options from the spec's TrainSpec)."""

    def __init__(self, model, optimizer, loss_fn, train_spec, clip_targets):
        self.model, self.optimizer, self.loss_fn, self.clip_targets = model, optimizer, loss_fn, clip_targets
        self.k = train_spec.num_directions
        self.distribution = train_spec.direction_distribution
        self.orthogonal = train_spec.orthogonal_directions
        self.batched = train_spec.batched_directions
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise UserError("forward_gradient: the model has no trainable parameters")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise UserError("forward_gradient: all trainable parameters must share one dtype and device")
        self.d = sum(p.numel() for p in self.params)
        if self.orthogonal and 2 * self.k > self.d:
            raise UserError(f"forward_gradient: orthogonal_directions needs 2 x num_directions <= the {self.d} "
                            f"trainable parameters, got num_directions = {self.k}")
        self.device, dtype = first.device, first.dtype
        # Primal values (aliases of the parameters: they follow the optimizer's in-place updates).
        self.primals = {n: p.detach() for n, p in named}
        self.buffers = dict(model.named_buffers())
        # The estimate lives in one flat buffer; p.grad are views of it.
        self.grad_flat = torch.zeros(self.d, dtype=dtype, device=self.device)
        self.grads = self._views(self.grad_flat)
        # Directions: k rows when they are needed together (batched, orthogonal), else one row reused.
        self.materialized = self.batched or self.orthogonal
        rows = self.k if self.materialized else 1
        self.directions = torch.empty(rows, self.d, dtype=dtype, device=self.device)
        self.row_tangents = [dict(zip(self.names, self._views(self.directions[i]), strict=True)) for i in range(rows)]
        self.batched_tangents = dict(zip(self.names, self._views(self.directions, batch=rows), strict=True))
        self.previous = torch.empty_like(self.directions) if self.orthogonal else None
        self.has_previous = False
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))  # from the run's seed
        _load_jvp_decompositions()

    # --- the pieces --------------------------------------------------------------------------

    def _views(self, flat: torch.Tensor, batch: int | None = None) -> list[torch.Tensor]:
        """Per-parameter views of a flat d-vector (or of the columns of a batch x d matrix)."""
        out, offset = [], 0
        for p in self.params:
            n = p.numel()
            part = flat[..., offset:offset + n]
            out.append(part.view(batch, *p.shape) if batch is not None else part.view(p.shape))
            offset += n
        return out

    def _loss_and_buffers(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        # Buffers are cloned inside the transformed function (a transform may not mutate captured
        # tensors); the updated copies come back as aux output.
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        return self.loss_fn(functional_call(self.model, (params, buffers), (x,)), y), buffers

    def _draw(self, row: torch.Tensor) -> None:
        if self.distribution == "gaussian":
            row.normal_(generator=self.generator)
        else:  # rademacher: +-1 with probability 1/2
            row.random_(0, 2, generator=self.generator).mul_(2).sub_(1)

    def _orthonormalize(self) -> None:
        """Rows of `directions`: off the previous step's span, orthonormal, times sqrt(d); the
        result is also kept (in `previous`) for the next step."""
        v, p = self.directions, self.previous
        if self.has_previous:  # previous rows are stored scaled by sqrt(d): P^T P / d is the projector
            v.addmm_(v @ p.T, p, alpha=-1.0 / self.d)
        # CholeskyQR: V = L Q with L the Cholesky factor of the k x k Gram matrix V V^T (in float64),
        # so Q = L^-1 V, one matrix product (written into p, whose old rows are no longer needed).
        # Random rows make V well conditioned when k << d, and one pass is orthogonal to float
        # precision; a second pass restores it when k is a sizable fraction of d (small models).
        passes = 2 if 16 * self.k > self.d else 1
        eye = torch.eye(self.k, dtype=torch.float64, device=v.device)
        for i in range(passes):
            lower = torch.linalg.cholesky_ex((v @ v.T).double())[0]
            inv = torch.linalg.solve_triangular(lower, eye, upper=False)
            if i == passes - 1:
                inv.mul_(math.sqrt(self.d))
            torch.matmul(inv.to(v.dtype), v, out=p)
            v.copy_(p)
        self.has_previous = True

    def _restore_rng(self, state) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def _rng_state(self):
        return torch.get_rng_state(), (torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    @torch.no_grad()  # no backward graph; forward-mode AD is not affected by no_grad
    def estimate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw this step's directions and write the forward-gradient estimate into `grad_flat`.

        Returns the loss (0-d) and the k directional derivatives (grad f . v_i), on the device.
        """
        f = partial(self._loss_and_buffers, x=x, y=y)
        if self.materialized:
            for row in self.directions:
                self._draw(row)
            if self.orthogonal:
                self._orthonormalize()
        if self.batched:
            def one(tangents):
                return jvp(f, (self.primals,), (tangents,), has_aux=True)
            try:
                losses, derivs, buffers = vmap(one, randomness="same")(self.batched_tangents)
            except RuntimeError as e:
                if "vmap support" in str(e):
                    raise UserError(f"forward_gradient with batched_directions = true: {e} (set "
                                    "batched_directions = false to loop over the directions)") from None
                raise
            loss = losses[0]
            for name, value in buffers.items():
                self.buffers[name].copy_(value[0])
        else:
            rng = self._rng_state() if self.k > 1 else None
            derivs = []
            for i in range(self.k):
                if i:
                    self._restore_rng(rng)
                if not self.materialized:
                    self._draw(self.directions[0])
                tangents = self.row_tangents[i if self.materialized else 0]
                loss_i, deriv, buffers = jvp(f, (self.primals,), (tangents,), has_aux=True)
                if i == 0:
                    loss = loss_i
                    for name, value in buffers.items():  # running statistics: once per step
                        self.buffers[name].copy_(value)
                if not self.materialized:  # accumulate as we go: one direction in memory
                    if i == 0:
                        torch.mul(self.directions[0], deriv, out=self.grad_flat)
                    else:
                        self.grad_flat.addcmul_(self.directions[0], deriv)
                derivs.append(deriv)
            derivs = torch.stack(derivs)
        if self.materialized:
            torch.mv(self.directions.T, derivs.to(self.directions.dtype), out=self.grad_flat)
        self.grad_flat.div_(self.k)
        return loss.detach(), derivs

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, _ = self.estimate(x, y)
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g
        self.optimizer.step()
        if self.clip_targets:
            clip_latent_weights(self.clip_targets)
        return loss

    # --- the method interface ----------------------------------------------------------------

    def epoch(self, x, y, batches) -> torch.Tensor:
        """Train over `batches` (index tensors); the mean training loss as a 0-d device tensor."""
        self.model.train()
        total = torch.zeros((), device=x.device)
        for idx in batches:
            total += self.step(x[idx], y[idx])
        return total / max(len(batches), 1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(),
                "previous_directions": self.previous.clone() if self.has_previous else None}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        previous = state.get("previous_directions")
        if previous is not None and self.previous is not None:
            self.previous.copy_(previous)
            self.has_previous = True
        else:
            self.has_previous = False
