"""Model builders, one file per family; each is a plain function taking keyword arguments and a
`QuantConfig` that says how to make its quantized layers.

To add a family: write ``suite/models/FAMILY.py`` with a builder ``def NAME(*, num_classes,
in_shape, quant, ...)`` and add it to `MODELS`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from suite.errors import UserError
from suite.models.alexnet import alexnet
from suite.models.bc_cnn import bc_cnn
from suite.models.dorefa_svhn import dorefa_svhn
from suite.models.maxout_cnn import maxout_cnn
from suite.models.mlp import mlp
from suite.models.nin import nin
from suite.models.vgg import vgg
from suite.nn import QuantConfig
from suite.typed import check_type


@dataclass(frozen=True)
class ModelSpec:
    """A model to build: a builder name and its keyword arguments (a spec's [model] table)."""

    name: str
    params: dict[str, Any]



MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "vgg": vgg, "bc_cnn": bc_cnn, "nin": nin,
                                               "alexnet": alexnet, "dorefa_svhn": dorefa_svhn, "maxout_cnn": maxout_cnn}

# Supplied by the harness from the dataset and the variant, never by the spec's [model] table.
_HARNESS_ARGS = {"num_classes", "in_shape", "quant"}
# Builder arguments, by name, whose range the builders' types do not say and torch does not check
# when a layer is built (BatchNorm takes momentum = 2 or eps = -1 and fails, or trains on NaNs, later).
ARGUMENT_RANGES = {
    "bn_momentum": ("in (0, 1]", lambda v: 0 < v <= 1),
    "bn_eps": ("positive", lambda v: v > 0),
    "bn_weight_min": ("at least 0", lambda v: v >= 0),
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "input_dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "width": ("positive", lambda v: v > 0),
}


def check_model(model_spec, where: str) -> None:
    """Name known, and every key of the spec's [model] table an argument of the builder, of the
    type its annotation states, finite, and in range (`ARGUMENT_RANGES`): a value the builder would
    take but training would fail on is refused when the spec loads, before anything runs."""
    if model_spec.name not in MODELS:
        close = difflib.get_close_matches(model_spec.name, list(MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{where}.name: unknown model {model_spec.name!r}{hint}; known: {', '.join(MODELS)}")
    builder = MODELS[model_spec.name]
    params = inspect.signature(builder).parameters
    hints = typing.get_type_hints(builder)
    valid = [p for p in params if p not in _HARNESS_ARGS]
    for key, value in model_spec.params.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}.{key}: not an argument of model {model_spec.name!r}{hint}; "
                            f"it takes: {', '.join(valid)}")
        if key in hints:
            value = check_type(value, hints[key], f"{where}.{key}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{where}.{key}: must be a finite number, got {value}")
        if key in ARGUMENT_RANGES and isinstance(value, int | float) and not isinstance(value, bool):
            what, ok = ARGUMENT_RANGES[key]
            if not ok(value):
                raise UserError(f"{where}.{key}: must be {what}, got {value}")


def build_model(model_spec, *, num_classes: int, in_shape: tuple[int, ...], quant: QuantConfig) -> nn.Module:
    try:
        return MODELS[model_spec.name](num_classes=num_classes, in_shape=in_shape, quant=quant,
                                       **model_spec.params)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"model {model_spec.name!r}: {e}") from None
