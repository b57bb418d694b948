"""Training methods, chosen by a spec's ``train.method`` (or a variant's ``method``).

A method is a class built once per run as ``Method(model, optimizer, loss_fn, train_spec,
clip_targets)``; ``method.epoch(x, y, batches)`` trains over the batches (index tensors) and
returns the mean training loss as a device tensor (no host sync in the loop). A method with
state of its own (e.g. the previous step's directions) exposes ``state_dict`` /
``load_state_dict`` for checkpoints.
"""

from suite.train.backprop import Backprop
from suite.train.forward_gradient import ForwardGradient

METHODS = {"backprop": Backprop, "forward_gradient": ForwardGradient}
