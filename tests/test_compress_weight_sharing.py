"""k-means weight sharing with trained centroids (suite/compress/weight_sharing.py)."""

import torch

from suite.compress import weight_sharing as ws


def test_kmeans_on_two_obvious_clusters():
    c, assign = ws.kmeans_1d(torch.tensor([0.0, 1.0, 9.0, 10.0]), 2)
    assert c.tolist() == [0.5, 9.5] and assign.tolist() == [0, 0, 1, 1]


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    """Equation 3: dL/dC_k = sum_ij dL/dW_ij 1(I_ij = k). With L = sum(W * G), dL/dW = G."""
    layer = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [-2.0, 0.0]]))  # a pruned zero at (1, 1)
    shared = ws.share_weights(layer, bits=2)  # 3 shared values, code 0 = zero
    # linear initialization -2, -0.5, 1 over [min, max]; the middle cluster stays empty
    assert shared.centroids.tolist() == [-2.0, -0.5, 1.0] and shared.codes.tolist() == [[3, 1], [1, 0]]
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    layer(torch.zeros(1, 2))  # the forward pre-hook sets layer.weight from the codebook
    (layer.weight * g).sum().backward()
    assert shared.centroids.grad.tolist() == [2.0 + 3.0, 0.0, 1.0]  # the zero's gradient 4 goes nowhere
    assert [n for n, _ in layer.named_parameters()] == ["shared.centroids"]


def test_shared_layer_computes_with_the_codebook():
    layer = torch.nn.Linear(16, 4)
    w = torch.linspace(-1, 1, 64).view(4, 16)
    with torch.no_grad():
        layer.weight.copy_(w)
    shared = ws.share_weights(layer, bits=7)  # 127 linear centroids, every other one a weight: exact
    torch.testing.assert_close(shared.weight(), w)
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), x @ w.T + layer.bias)
