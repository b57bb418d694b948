"""XNOR-Net: BWN weights (alpha per output channel) and binary inputs scaled by the K map."""

import contextlib

import pytest
import torch
import torch.func
import torch.nn.functional as F

from suite.nn import QuantConv2d, QuantLinear
from suite.quant import XNORInput, XNORWeight, fused, sign_pm1


@pytest.fixture(autouse=True, params=["fused", "torch_ops"])
def kernel_path(request):
    """Every case on both paths: the fused CPU kernels (where built) and the torch ops."""
    if request.param == "fused" and fused.prepare() is None:
        pytest.skip(f"fused CPU kernels: {fused.status()}")
    with fused.disabled() if request.param == "torch_ops" else contextlib.nullcontext():
        yield request.param

W = torch.tensor([[0.5, -1.5, 0.0, 1.0], [-0.2, -0.2, 0.4, 0.2]])
# alpha = mean |W| per row = [0.75, 0.25]; B = sign(W) with sign(0) = +1
W_TILDE = [[0.75, -0.75, 0.75, 0.75], [-0.25, -0.25, 0.25, 0.25]]
G = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 2.0, 0.0]])
# dC/dW = alpha 1_{|W| <= 1} G + B mean(B G):
#   alpha 1_{|W|<=1} G = [[0.75, 0, 2.25, 3], [0.25, -0.25, 0.5, 0]]   (|-1.5| > 1 masked; |1.0| passes)
#   mean(B G) = [(1 - 2 + 3 + 4) / 4, (-1 + 1 + 2 + 0) / 4] = [1.5, 0.5]
#   B mean(B G) = [[1.5, -1.5, 1.5, 1.5], [-0.5, -0.5, 0.5, 0.5]]
GRAD_W = [[2.25, -1.5, 3.75, 4.5], [-0.25, -0.75, 1.0, 0.5]]


def test_weight_forward_scales_sign_by_mean_abs_per_output_channel(kernel_path):
    assert XNORWeight()(W).tolist() == W_TILDE
    b, alpha = XNORWeight().factors(W)
    if kernel_path == "fused":  # alpha folded into the weights in the kernel's one pass
        assert b.tolist() == W_TILDE and alpha is None
    else:
        assert b.tolist() == [[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0]] and alpha.tolist() == [0.75, 0.25]
    assert XNORWeight().factors(W, scale_output=False)[0].tolist() == W_TILDE


def test_weight_backward_leaves_the_callers_gradient_alone():
    w, g = W.clone().requires_grad_(), G.clone()
    XNORWeight()(w).backward(g)
    assert torch.equal(g, G) and w.grad.tolist() == GRAD_W


def test_layer_gradient_matches_the_weight_quantizers():
    """The layer's own path (alpha on the output, or folded in the kernel) against
    F.linear(x, XNORWeight()(W)): same output and gradients."""
    layer = QuantLinear(4, 2, weight_quantizer=XNORWeight())
    with torch.no_grad():
        layer.weight.copy_(W)
    x = torch.randn(3, 4)
    g = torch.randn(3, 2)
    layer(x).backward(g)
    w = W.clone().requires_grad_()
    F.linear(x, XNORWeight()(w), layer.bias.detach()).backward(g)
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-6)


def test_weight_backward_is_the_exact_derivative_under_the_ste():
    w = W.clone().requires_grad_()
    XNORWeight()(w).backward(G)
    assert w.grad.tolist() == GRAD_W


def test_weight_tangent_applies_the_same_jacobian():
    # J is symmetric (alpha 1_{|W|<=1} on the diagonal + B B^T / n per channel): J G = J^T G
    out, t = torch.func.jvp(XNORWeight(), (W,), (G,))
    assert out.tolist() == W_TILDE and t.tolist() == GRAD_W


def test_weight_gradient_of_a_zero_channel():
    """All-zero channel: alpha = 0, B = +1, dC/dW = mean(G) (the alpha term); it can leave zero."""
    w = torch.zeros(1, 4, requires_grad=True)
    XNORWeight()(w).backward(torch.tensor([[1.0, 2.0, 3.0, 6.0]]))
    assert w.grad.tolist() == [[3.0, 3.0, 3.0, 3.0]]


def test_conv_weight_alpha_over_each_filter():
    w = torch.randn(6, 2, 3, 3)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(XNORWeight()(w), sign_pm1(w) * alpha)


def test_input_k_for_a_linear_layer_is_the_per_sample_mean_abs():
    x = torch.tensor([[1.0, -2.0, 0.0, 3.0], [-0.5, 0.5, 0.5, -0.5]])
    layer = QuantLinear(4, 2, weight_quantizer=XNORWeight(), input_quantizer=XNORInput())
    assert XNORInput().output_scale(x, layer).tolist() == [[1.5], [0.5]]
    with torch.no_grad():
        layer.weight.copy_(W)
        layer.bias.copy_(torch.tensor([0.1, -0.2]))
    # (sign(x) . B^T) alpha K + b: [[4, 2], [-2, 0]] * [0.75, 0.25] * [[1.5], [0.5]] + [0.1, -0.2]
    assert torch.allclose(layer(x), torch.tensor([[4.6, 0.55], [-0.65, -0.2]]))


def test_input_k_map_by_hand():
    """K = A * k: A the channel mean of |I|, k the 2x2 box; with padding, zeros count."""
    i0 = [[1.0, -2.0, 0.0], [3.0, 0.0, -1.0], [0.0, 1.0, 2.0]]
    i1 = [[-1.0, 0.0, 2.0], [1.0, 2.0, -3.0], [4.0, 1.0, 0.0]]
    x = torch.tensor([[i0, i1]])  # A = [[1, 1, 1], [2, 1, 2], [2, 1, 1]]
    k = XNORInput().output_scale(x, QuantConv2d(2, 3, 2))
    assert k.tolist() == [[[[1.25, 1.25], [1.5, 1.25]]]]
    k = XNORInput().output_scale(x, QuantConv2d(2, 3, 2, padding=1))
    assert k.shape == (1, 1, 4, 4) and k[0, 0, 0].tolist() == [0.25, 0.5, 0.5, 0.25]
    # stride 2 on the zero-padded 5x5 A: windows [0 0; 0 1], [0 0; 1 1], [0 2; 0 2], [1 2; 1 1]
    k = XNORInput().output_scale(x, QuantConv2d(2, 3, 2, stride=2, padding=1))
    assert k.tolist() == [[[[0.25, 0.5], [1.0, 1.25]]]]


def _xnor_conv_reference(conv: QuantConv2d, x: torch.Tensor) -> torch.Tensor:
    """A float matrix product of the binarized, scaled tensors, patch by patch: every receptive
    field of the input binarized and multiplied by its own K (mean |I| over the field, per group),
    every filter binarized and multiplied by its alpha."""
    n = x.shape[0]
    g, o = conv.groups, conv.out_channels
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    else:
        padding = conv.padding
    args = dict(kernel_size=conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    sign_patches = F.unfold(sign_pm1(x), **args)  # zero padding stays 0 here, as in the conv
    abs_patches = F.unfold(x.abs(), **args)
    length = sign_patches.shape[-1]
    sign_patches = sign_patches.view(n, g, -1, length)
    k = abs_patches.view(n, g, -1, length).mean(2, keepdim=True)  # (n, g, 1, L)
    scaled_patches = sign_patches * k
    w = conv.weight
    scaled_w = (sign_pm1(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)).view(g, o // g, -1)
    out = torch.einsum("gok,ngkl->ngol", scaled_w, scaled_patches).reshape(n, o, length)
    h = (x.shape[2] + 2 * (padding if isinstance(padding, int) else padding[0])
         - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
    return out.view(n, o, h, -1) + conv.bias.view(1, o, 1, 1)


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                dict(groups=2, padding=1), dict(groups=4, dilation=2, stride=2),
                                dict(padding=1, padding_mode="reflect"), dict(padding=1, padding_mode="circular")])
def test_xnor_conv_equals_float_product_of_binarized_scaled_tensors(kw):
    torch.manual_seed(3)
    conv = QuantConv2d(4, 8, 3, weight_quantizer=XNORWeight(), input_quantizer=XNORInput(), **kw)
    x = torch.randn(2, 4, 9, 9)
    ours = conv(x)
    ref = _xnor_conv_reference(conv, x)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-5


def test_bwn_conv_is_a_float_conv_with_binary_scaled_weights():
    torch.manual_seed(4)
    conv = QuantConv2d(4, 6, 3, padding=1, groups=2, weight_quantizer=XNORWeight())
    x = torch.randn(2, 4, 7, 7)
    expected = F.conv2d(x, XNORWeight()(conv.weight), conv.bias, padding=1, groups=2)
    assert (conv(x) - expected).abs().max().item() <= 1e-5


def test_input_backward_mask_and_gradient_through_k():
    # a linear layer, K per sample = mean |x|; W = identity-like so the output is easy to follow
    x = torch.tensor([[0.5, -2.0]], requires_grad=True)
    layer = QuantLinear(2, 1, bias=False, input_quantizer=XNORInput())
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0]]))
    y = layer(x)  # (sign(0.5) + sign(-2)) * K = 0 * 1.25 = 0
    assert y.item() == 0.0
    y.backward()
    # d/dx of (s . w) K: through sign, w K 1_{|x| <= 1} = [1.25, 0]; through K, (s . w) sign(x)/2 = 0
    assert x.grad.tolist() == [[1.25, 0.0]]
    x2 = torch.tensor([[0.5, 2.0]], requires_grad=True)
    layer(x2).backward()  # (1 + 1) K, K = 1.25; dK/dx = sign(x) / 2
    assert x2.grad.tolist() == [[1.25 + 2 * 0.5, 2 * 0.5]]


def test_input_without_scale_is_plain_sign():
    layer = QuantLinear(3, 2, input_quantizer=XNORInput(scale=False))
    x = torch.tensor([[0.3, -4.0, 0.0]])
    assert torch.allclose(layer(x), F.linear(torch.tensor([[1.0, -1.0, 1.0]]), layer.weight, layer.bias))
    assert XNORInput(scale=False).output_scale(x, layer) is None


def test_unbatched_conv_input():
    torch.manual_seed(5)
    conv = QuantConv2d(2, 4, 3, padding=1, groups=2, weight_quantizer=XNORWeight(), input_quantizer=XNORInput())
    x = torch.randn(2, 6, 6)
    assert torch.allclose(conv(x), conv(x.unsqueeze(0)).squeeze(0), atol=1e-6)


@pytest.mark.parametrize("batch", [3, 20])
def test_linear_alpha_on_output_or_weights_gives_the_same_values_and_gradients(batch):
    """QuantLinear puts alpha on the output for small batches (fewer rows than in_features) and on
    the weights otherwise; both must be the plain composition F.linear(x, alpha B, b)."""
    torch.manual_seed(6)
    layer = QuantLinear(8, 5, weight_quantizer=XNORWeight(), input_quantizer=XNORInput())
    x = torch.randn(batch, 8, requires_grad=True)
    g = torch.randn(batch, 5)
    layer(x).backward(g)
    grads = [t.grad.clone() for t in (x, layer.weight, layer.bias)]
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    k = x2.abs().mean(1, keepdim=True)
    ref = F.linear(sign_pm1(x2.detach()) + (x2 - x2.detach()) * (x2.abs() <= 1), XNORWeight()(w)) * k + b
    ref.backward(g)
    assert torch.allclose(layer(x), ref, atol=1e-5)
    for ours, theirs in zip(grads, (x2.grad, w.grad, b.grad), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_weight_gradient_under_torch_func_transforms():
    """grad and vmap(grad) take the out-of-place path of the backward: same values."""
    def loss(w, x):
        return (x @ XNORWeight()(w).t()).square().sum()

    torch.manual_seed(7)
    w = torch.randn(5, 4) * 0.8
    xs = torch.randn(3, 2, 4)
    per_batch = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(w, xs)
    for i in range(3):
        wi = w.clone().requires_grad_()
        loss(wi, xs[i]).backward()
        assert torch.allclose(per_batch[i], wi.grad, atol=1e-5)
        assert torch.allclose(torch.func.grad(loss)(w, xs[i]), wi.grad, atol=1e-5)


# project=true: mean-centre over input channels, clamp to [-1, 1], in place (both reference codes).
# A 1 x 2 x 1 x 2 filter: channel 0 = [0.5, 2.0], channel 1 = [1.5, -1.0]; channel means per
# position [1.0, 0.5] -> centred [[-0.5, 1.5], [0.5, -1.5]] -> clamped [[-0.5, 1.0], [0.5, -1.0]];
# alpha = (0.5 + 1 + 0.5 + 1) / 4 = 0.75, signs [[-1, +1], [+1, -1]].
W_CONV = torch.tensor([[[[0.5, 2.0]], [[1.5, -1.0]]]])
W_PROJECTED = [[[[-0.5, 1.0]], [[0.5, -1.0]]]]
W_CONV_TILDE = [[[[-0.75, 0.75]], [[0.75, -0.75]]]]


def test_projection_mean_centres_over_input_channels_and_clamps_in_place():
    w = W_CONV.clone()
    out = XNORWeight(project=True)(w)
    assert w.tolist() == W_PROJECTED and out.tolist() == W_CONV_TILDE
    b, alpha = XNORWeight(project=True).factors(W_CONV.clone(), scale_output=False)
    assert b.tolist() == W_CONV_TILDE and alpha is None


def test_projection_is_off_by_default():
    w = W_CONV.clone()
    XNORWeight()(w)
    assert torch.equal(w, W_CONV)


def test_projected_layer_keeps_the_gradient_of_a_weight_that_drifted_past_one():
    """Without the projection the weight 2.0 is outside |W| <= 1 and its own gradient term is
    masked; projected, it sits at 1.0 and keeps it. The layer's parameter itself is projected."""
    layer = QuantConv2d(2, 1, (1, 2), bias=False, weight_quantizer=XNORWeight(project=True))
    with torch.no_grad():
        layer.weight.copy_(W_CONV)
    x = torch.ones(1, 2, 1, 2)
    layer(x).sum().backward()
    assert layer.weight.tolist() == W_PROJECTED
    # dC/dW~ = x = 1 everywhere; dC/dW = alpha 1_{|W|<=1} + sign(W) mean(sign(W)) = 0.75 + 0 (mean of signs is 0)
    assert layer.weight.grad.tolist() == [[[[0.75, 0.75]], [[0.75, 0.75]]]]
    plain = QuantConv2d(2, 1, (1, 2), bias=False, weight_quantizer=XNORWeight())
    with torch.no_grad():
        plain.weight.copy_(W_CONV)
    plain(x).sum().backward()
    # alpha = (0.5 + 2 + 1.5 + 1) / 4 = 1.25; the 2.0 is masked: sign term only, mean(sign) = 0.5
    assert plain.weight.grad[0, 0, 0, 1].item() == 0.5


def test_projection_refuses_a_torch_func_wrapped_weight():
    with pytest.raises(RuntimeError, match="project=false"):
        torch.func.jvp(XNORWeight(project=True), (W_CONV.clone(),), (torch.ones_like(W_CONV),))
