"""The straight-through base shared by quantizers whose gradient and tangent pass unchanged."""

import torch


class StraightThrough(torch.autograd.Function):
    """Subclasses define only `forward(x, *options)`: dL/dx := dL/dq (straight-through estimator,
    Bengio et al. 2013), the forward-mode tangent likewise, and no gradient for the options (bit
    widths, thresholds). Works under torch.func.jvp and torch.func.vmap."""

    generate_vmap_rule = True  # torch.func.vmap (batched forward-gradient directions)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.n_options = len(inputs) - 1

    @staticmethod
    def backward(ctx, grad):
        return (grad,) + (None,) * ctx.n_options

    @staticmethod
    def jvp(ctx, tangent, *options):
        return tangent
