"""Magnitude pruning with masks kept through retraining (suite/compress/pruning.py)."""

import pytest
import torch

from suite.compress import pruning


def test_mask_keeps_the_largest_magnitudes_and_only_shrinks():
    w = torch.tensor([0.1, -3.0, 2.0, -0.5])
    assert pruning.magnitude_mask(w, 0.5).tolist() == [False, True, True, False]
    within = torch.tensor([True, False, True, True])  # -3.0 pruned earlier: it stays pruned
    assert pruning.magnitude_mask(w, 0.5, within).tolist() == [False, False, True, True]
    assert pruning.schedule(0.08, 2, 4) == pytest.approx(0.08 ** 0.5)


def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    pruner = pruning.Pruner.for_layers(model, ["0", "2"])
    pruner.prune({"0": 0.25, "2": 0.5})
    assert pruner.density() == {"0": 0.25, "2": 0.5}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    pruner.attach(opt)
    for _ in range(5):
        loss = model(torch.randn(16, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        assert (model[0].weight.grad[~pruner.masks["0"]] == 0).all()
        opt.step()
    assert int((model[0].weight != 0).sum()) == 16 and int((model[2].weight != 0).sum()) == 8
    assert (model[0].weight[~pruner.masks["0"]] == 0).all()
