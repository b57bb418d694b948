"""The spec's schema: the typed tables a reproduction spec resolves to (`suite/spec/load.py` reads
them from TOML; ``reproductions/README.md`` documents every key)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from suite.errors import UserError
from suite.models import ModelSpec
from suite.nn import QuantConfig
from suite.paths import portable_path
from suite.train.config import TrainSpec

PROFILES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    train_size: int
    val_size: int
    test_size: int | None = None  # None: the whole test set
    preprocessing: str = "pm1"  # pm1: pixels scaled to [-1, 1] (BinaryConnect's "centered" inputs)
    source: str = "auto"  # auto: full data if found, else the embedded subset (synthetic for cifar10); full; ...
    test_set: str = "standard"  # cifar10: standard | exact_first1000 | mixed_jpeg_q75 (partial test files)
    # Images resized to image_size x image_size (in memory, once; e.g. DoReFa-Net's 40 x 40 SVHN);
    # required for an image folder (imagenet), whose images are decoded once at that size (suite/data/imagefolder.py)
    image_size: int | None = None


# Training keys a variant may override; None (the default) keeps the spec's train.* value.
VARIANT_TRAIN_KEYS = ("method", "optimizer", "lr_start", "lr_end", "gradient_compression", "num_directions",
                      "direction_distribution",
                      "orthogonal_directions", "batched_directions")
FORWARD_GRADIENT_KEYS = ("num_directions", "direction_distribution", "orthogonal_directions", "batched_directions")


@dataclass(frozen=True)
class VariantSpec:
    name: str
    label: str = ""
    weight_quantizer: str = "none"  # a registry name, e.g. "binaryconnect(stochastic=True)"
    input_quantizer: str = "none"  # applied to each quantized layer's input (activations)
    gradient_quantizer: str = "none"  # applied to the gradient flowing back into each quantized layer's output
    clip_weights: float | None = None  # clip latent weights to [-c, c] after each update
    latent_bits: int = 32  # latent weights in float32 (32) or k-bit codes, k in 1..8 (suite/nn/latent.py)
    # packed: binary/low-bit products on the bit-packed CPU kernels where a layer's weights and inputs
    # both are (suite/nn/packed.py); emulated: in float32 on the quantized values. Same numbers.
    arithmetic: str = "packed"
    lr_scale: str = "none"  # none | glorot (BinaryConnect's per-layer 1/sqrt(1.5/(fan_in+fan_out)))
    weight_init_range: float | None = None  # latent weights drawn from U(-r, r); None: torch default
    baseline: str | None = None  # id of the row in the spec's baselines file
    float_layers: list[str] = field(default_factory=list)  # "first" / "last": kept in full precision
    model: dict[str, Any] = field(default_factory=dict)  # builder arguments merged over [model]
    grid: dict[str, str] = field(default_factory=dict)  # a grid cell's point on each axis (set by the grid)
    study: dict[str, Any] = field(default_factory=dict)  # study specs: parameters merged over [study]
    # Per-variant training overrides (None: the spec's train.* value); see VARIANT_TRAIN_KEYS.
    method: str | None = None
    optimizer: str | None = None
    lr_start: float | None = None
    lr_end: float | None = None
    gradient_compression: str | None = None
    num_directions: int | None = None
    direction_distribution: str | None = None
    orthogonal_directions: bool | None = None
    batched_directions: bool | None = None

    def quant_config(self) -> QuantConfig:
        """How the model builder makes this variant's quantized layers."""
        return QuantConfig(weight_quantizer=self.weight_quantizer, input_quantizer=self.input_quantizer,
                           gradient_quantizer=self.gradient_quantizer, clip_weights=self.clip_weights,
                           lr_scale=self.lr_scale, weight_init_range=self.weight_init_range,
                           float_layers=tuple(self.float_layers), latent_bits=self.latent_bits,
                           arithmetic=self.arithmetic)


@dataclass(frozen=True)
class StudySpec:
    """A study spec's [study] table (suite/studies/): the study's name, seeds and parameters."""
    name: str
    params: dict[str, Any]  # checked by the study's own `Params` (suite.studies.params_for)
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    paper: str
    baselines: str  # file name in baselines/
    path: str
    profile: str
    scaled_down: bool
    profile_note: str
    deviations: list[str]
    data: DataSpec | None  # None (with model and train) in a study spec
    model: ModelSpec | None
    train: TrainSpec | None
    variants: tuple[VariantSpec, ...]
    overrides: dict[str, Any]  # the --set overrides, shown in reports
    reference_variant: str | None = None  # tables show time and memory relative to this variant
    study: StudySpec | None = None  # a study (suite/studies/) instead of a training run
    # Every cell of a [grid] (name, label, baseline, grid point), also those a profile does not run:
    # the report lays out the paper's whole table from the records alone.
    grid_cells: tuple[dict[str, Any], ...] = ()
    table_columns: list[str] = field(default_factory=list)  # measured summary figures the table shows too

    @property
    def seeds(self) -> list[int]:
        return self.study.seeds if self.study is not None else self.train.seeds

    def resolved(self) -> dict[str, Any]:
        """The resolved spec as plain data, as a record stores it: portable (the spec file's path
        relative to the project, never a machine path). `suite.records.run_config` picks from it
        what decides a run's numbers."""
        out = dataclasses.asdict(self)
        out["path"] = portable_path(self.path)
        return out

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise UserError(f"{self.path}: no variant {name!r}; the spec has {[v.name for v in self.variants]}")

    def model_for(self, variant: VariantSpec) -> ModelSpec:
        """The model a variant builds: [model], then the variant's own `model` arguments."""
        return ModelSpec(self.model.name, {**self.model.params, **variant.model}) if variant.model else self.model

    def train_for(self, variant: VariantSpec) -> TrainSpec:
        """The training settings a variant runs with: train.*, then the variant's own overrides."""
        return dataclasses.replace(self.train, **{k: getattr(variant, k) for k in VARIANT_TRAIN_KEYS
                                                  if getattr(variant, k) is not None})



def defaults() -> dict[str, Any]:
    """'data.X', 'train.X', 'variant.X' -> the spec's default for that option (as a run
    configuration names it: `suite.records.run_config`)."""
    out = {}
    for prefix, cls in (("", Spec), ("data.", DataSpec), ("train.", TrainSpec), ("variant.", VariantSpec)):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f"{prefix}{f.name}"] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f"{prefix}{f.name}"] = f.default_factory()
    return out
