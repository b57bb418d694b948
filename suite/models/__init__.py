"""Model builders, one file per family; each is a plain function taking keyword arguments and a
`QuantConfig` that says how to make its quantized layers.

To add a family: write ``suite/models/FAMILY.py`` with a builder ``def NAME(*, num_classes,
in_shape, quant, ...)`` and add it to `MODELS`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from suite.errors import UserError
from suite.models.alexnet import alexnet
from suite.models.bc_cnn import bc_cnn
from suite.models.dorefa_svhn import dorefa_svhn
from suite.models.mlp import mlp
from suite.models.nin import nin
from suite.models.vgg import vgg
from suite.nn import QuantConfig


@dataclass(frozen=True)
class ModelSpec:
    """A model to build: a builder name and its keyword arguments (a spec's [model] table)."""

    name: str
    params: dict[str, Any]



MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "vgg": vgg, "bc_cnn": bc_cnn, "nin": nin,
                                               "alexnet": alexnet, "dorefa_svhn": dorefa_svhn}

# Supplied by the harness from the dataset and the variant, never by the spec's [model] table.
_HARNESS_ARGS = {"num_classes", "in_shape", "quant"}


def check_model(model_spec, where: str) -> None:
    """Name known, and every key of the spec's [model] table an argument of the builder."""
    if model_spec.name not in MODELS:
        close = difflib.get_close_matches(model_spec.name, list(MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where}.name: unknown model {model_spec.name!r}{hint}; known: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[model_spec.name]).parameters
    valid = [p for p in params if p not in _HARNESS_ARGS]
    for key in model_spec.params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}.{key}: not an argument of model {model_spec.name!r}{hint}; "
                            f"it takes: {', '.join(valid)}")


def build_model(model_spec, *, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig) -> nn.Module:
    try:
        return MODELS[model_spec.name](num_classes=num_classes, in_shape=in_shape, quant=quant,
                                       **model_spec.params)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"model {model_spec.name!r}: {e}") from None
