"""Kronecker convolutions (suite/compress/kronecker.py): products by hand, the two-step forward
against the dense convolution, and the paper's configurations' sizes."""

import pytest
import torch
import torch.nn.functional as F

from suite.compress import kronecker as kr


def test_kron4_spatial_and_channel_cases_by_hand():
    # spatial: A (1,1,1,2) = [1, 2] along x, B (1,1,2,1) = [3, 4] along y: W[y, x] = A[x] B[y]
    a = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    b = torch.tensor([3.0, 4.0]).view(1, 1, 2, 1)
    assert kr.kron4(a, b).view(2, 2).tolist() == [[3.0, 6.0], [4.0, 8.0]]
    # channels: A (2,1,1,1) = [1, 2] over outputs, B (1,2,1,1) = [5, 7] over inputs: W[o, c] = A[o] B[c]
    a = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    b = torch.tensor([5.0, 7.0]).view(1, 2, 1, 1)
    assert kr.kron4(a, b).view(2, 2).tolist() == [[5.0, 7.0], [10.0, 14.0]]
    # index rule (A (x) B)[a o2 + e, ...] = A[a] B[e]: A (2,..) = [1, 2], B (2,..) = [3, 4] -> [3, 4, 6, 8]
    a, b = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1), torch.tensor([3.0, 4.0]).view(2, 1, 1, 1)
    assert kr.kron4(a, b).flatten().tolist() == [3.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("shape, conf, stride, padding", [
    ((128, 48, 9, 9), (1, 128, 24, 9, 1), 1, 0),  # the paper's KConv-a, second layer
    ((128, 48, 9, 9), (1, 128, 48, 1, 9), 1, 0),  # KConv-b
    ((128, 48, 9, 9), (2, 64, 24, 9, 1), 1, 0),  # KConv-c
    ((512, 64, 8, 8), (2, 256, 64, 8, 1), 1, 0),  # KConv-c, third layer
    ((96, 3, 9, 9), (2, 12, 1, 1, 9), 1, 0),  # the first-layer KConv of the deck
    ((12, 6, 4, 6), (3, 4, 2, 2, 3), 2, (1, 2)),  # every factor split, strided and padded
])
def test_two_step_forward_equals_the_dense_convolution(shape, conf, stride, padding):
    o, c, h, w = shape
    r, o1, c1, h1, w1 = conf
    layer = kr.KroneckerConv2d(c, o, (h, w), r=r, o1=o1, c1=c1, h1=h1, w1=w1, stride=stride, padding=padding)
    x = torch.randn(2, c, 17, 18)
    expected = F.conv2d(x, layer.weight(), layer.bias, stride=stride, padding=padding)
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)


def test_weights_of_the_paper_configurations():
    # KConv-a on the 9 x 9, 48 -> 128 layer: A (128, 24, 9, 1) and B (1, 2, 1, 9)
    s = kr.KronShape(1, 128, 24, 9, 1, 128, 48, 9, 9)
    assert s.b_shape == (1, 2, 1, 9)
    assert s.weights == 128 * 24 * 9 + 2 * 9
    # per output pixel: 2 groups x 128 x 24 x 9 (step 1) + 128 x 2 x 9 (step 2)
    assert s.macs_per_output_pixel() == 2 * 128 * 24 * 9 + 128 * 2 * 9
    # on conv2's 16 x 16 input: step 1 (9 x 1) at 8 x 16 positions, step 2 (1 x 9) at the 8 x 8 outputs
    assert s.macs(16, 16) == 8 * 16 * 2 * 128 * 24 * 9 + 8 * 8 * 128 * 2 * 9


def test_nearest_kronecker_recovers_a_sum_of_two_products():
    a, b = torch.randn(2, 4, 3, 3, 1), torch.randn(2, 2, 2, 1, 3)
    w = kr.kronecker_weight(a, b)
    a2, b2 = kr.nearest_kronecker(w, (4, 3, 3, 1), 2)
    torch.testing.assert_close(kr.kronecker_weight(a2, b2), w, atol=1e-5, rtol=1e-5)
    conv = torch.nn.Conv2d(6, 8, 3)
    with torch.no_grad():
        conv.weight.copy_(w)
    layer = kr.KroneckerConv2d.from_conv(conv, r=2, o1=4, c1=3, h1=3, w1=1)
    x = torch.randn(1, 6, 7, 7)
    torch.testing.assert_close(layer(x), conv(x), atol=1e-4, rtol=1e-4)


def test_a_factor_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="c1 = 5 must divide c = 48"):
        kr.KronShape(1, 128, 5, 9, 1, 128, 48, 9, 9)
