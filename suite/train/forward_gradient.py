"""Forward gradient (Baydin, Pearlmutter, Syme, Wood, Torr 2022, "Gradients without
Backpropagation"): training with forward-mode directional derivatives, no backward pass.

Each step draws `num_directions` random directions v_1..v_k over all trainable parameters (one
flat vector of d numbers each), computes the directional derivatives grad f . v_i by one
forward-mode pass each (`forward_mode.py`: layer by layer, holding one layer's activations and
tangents, no autograd graph), and hands the estimate

    g = (1/k) sum_i (grad f . v_i) v_i

to the spec's ordinary optimizer as the gradient (written into ``p.grad``), then clips latent
weights as backprop does. With E[v v^T] = I the estimate is unbiased: E[g] = grad f.

Directions (``train.direction_distribution``): ``gaussian`` (v ~ N(0, I)) or ``rademacher``
(entries +-1 with probability 1/2), drawn by a counter-based generator (`directions.py`: Philox,
on all threads) under a key the method draws each step from its own generator (seeded from the
run's seed), direction i of a step being stream i of that key, so every mode below sees the same
directions and a checkpoint restores them.

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

Batched directions (``train.batched_directions``): the k directions carried through one pass
together, the primal computed once (one primal and 2k tangent products per layer instead of 3k):
faster, but the tangent activations are k times as large. The loop (default) runs k passes one
after another.

BatchNorm running statistics (buffers) are updated by the forward pass in train mode exactly
once per step (the first direction's pass). Stochastic layers (stochastic BinaryConnect, dropout)
see the same random draws for every direction of a step (the global RNG state is restored between
directions; vmap uses randomness="same"), so the k derivatives are of one function.

Memory between steps (kept by the method): the gradient buffer (d numbers); one direction (d)
when looping over k > 1 directions (with k = 1 the direction is drawn into the gradient buffer,
which the derivative then scales: g = (grad f . v) v); k directions (k d) when batched or
orthogonal, and k more for the previous step's directions when orthogonal. Within a step: one
layer's activations and tangents (k tangents when batched).

No host synchronisation per step: the loss and the derivatives stay on the device.
"""

from __future__ import annotations

import math
import warnings

import torch

from suite.errors import UserError
from suite.nn import clip_latent_weights
from suite.train import directions, forward_mode

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
        self.layers = forward_mode.layers_of(model)
        self.scratch = {}  # BatchNorm statistics of layers passed by dual tensors, for passes that keep them
        # The estimate lives in one flat buffer; p.grad are views of it.
        self.grad_flat = torch.zeros(self.d, dtype=dtype, device=self.device)
        self.grads = self._views(self.grad_flat)
        # Directions: k rows when they are needed together (batched, orthogonal); else one row for
        # k > 1 (drawn again for each direction), none for k = 1 (drawn into grad_flat).
        self.materialized = self.batched or self.orthogonal
        rows = self.k if self.materialized else (1 if self.k > 1 else 0)
        self._rows = torch.empty(rows, self.d, dtype=dtype, device=self.device) if rows else None
        self.previous = torch.empty(self.k, self.d, dtype=dtype, device=self.device) if self.orthogonal else None
        self.has_previous = False
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))  # from the run's seed
        self.key = None  # this step's direction key
        _load_jvp_decompositions()  # the loss (and layers without a rule) use forward-mode AD formulas
        directions.kernels()  # built or loaded now (once per machine), not in a timed epoch

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

    def _tangents(self, flat: torch.Tensor, batch: int | None = None):
        """The pass's parameter -> tangent lookup: views of `flat` (no copies); None for others."""
        by_id = {id(p): v for p, v in zip(self.params, self._views(flat, batch), strict=True)}
        return lambda p: by_id.get(id(p))

    @property
    def directions(self) -> torch.Tensor:
        """The step's directions as rows: the kept ones (batched, orthogonal), else drawn again
        from the step's key (for inspection; the loop does not keep them)."""
        if self.materialized:
            return self._rows
        out = torch.empty(self.k, self.d, dtype=self.grad_flat.dtype, device=self.device)
        for i, row in enumerate(out):
            directions.fill(row, self.key, i, self.distribution)
        return out

    def _orthonormalize(self) -> None:
        """Rows of `directions`: off the previous step's span, orthonormal, times sqrt(d); the
        result is also kept (in `previous`) for the next step."""
        v, p = self._rows, self.previous
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

    def _pass(self, x, y, tangents, k=None, update_stats=True):
        p = forward_mode.Pass(tangents, k, update_stats, self.scratch)
        z, zt = forward_mode.run(self.layers, x, p)
        return forward_mode.loss_derivatives(self.loss_fn, z, zt, y, k)

    @torch.no_grad()  # no backward graph; forward-mode AD is not affected by no_grad
    def estimate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw this step's directions and write the forward-gradient estimate into `grad_flat`.

        Returns the loss (0-d) and the k directional derivatives (grad f . v_i), on the device.
        """
        self.key = int(torch.randint(0, 2**63 - 1, (), generator=self.generator))
        if self.materialized:
            for i, row in enumerate(self._rows):
                directions.fill(row, self.key, i, self.distribution)
            if self.orthogonal:
                self._orthonormalize()
        if self.batched:
            loss, derivs = self._pass(x, y, self._tangents(self._rows, self.k), k=self.k)
        else:
            rng = self._rng_state() if self.k > 1 else None
            derivs = []
            for i in range(self.k):
                if i:
                    self._restore_rng(rng)
                if self.materialized:
                    row = self._rows[i]
                else:  # k = 1: drawn into the gradient buffer, then scaled by the derivative
                    row = self.grad_flat if self.k == 1 else self._rows[0]
                    directions.fill(row, self.key, i, self.distribution)
                loss_i, deriv = self._pass(x, y, self._tangents(row), update_stats=i == 0)
                if i == 0:
                    loss = loss_i
                if not self.materialized:  # accumulate as we go: one direction in memory
                    # a 0-d factor: torch's CPU kernels take it as a scalar; broadcasting the (1,)
                    # tensor instead took 9x as long on the MNIST MLP's 1.9 M parameters
                    factor = deriv.view(())
                    if self.k == 1:
                        self.grad_flat.mul_(factor)
                    elif i == 0:
                        torch.mul(row, factor, out=self.grad_flat)
                    else:
                        self.grad_flat.addcmul_(row, factor)
                derivs.append(deriv)
            derivs = torch.cat(derivs)
        if self.materialized:
            torch.mv(self._rows.T, derivs.to(self._rows.dtype), out=self.grad_flat)
        if self.k > 1:
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
