"""Checks of meaning (not type) on a loaded `Spec`: impossible values, and names checked against
the registries that define them (datasets, models, quantizers, losses, optimizers, methods, ...).
Every error names the file and the key. Imports of the registries are local, to keep spec loading
light for `list`."""

from __future__ import annotations

import dataclasses
import math

from suite.errors import UserError
from suite.spec.schema import FORWARD_GRADIENT_KEYS, Spec, TrainSpec, VariantSpec
from suite.typed import suggest

MAX_EPOCHS = 1_000_000
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


def _one_of(where: str, value: str, allowed) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"{where}: {value!r} is not one of {', '.join(allowed)}{suggest(value, allowed)}")


def _finite_floats(obj, where: str) -> None:
    """Every float field of a spec table finite (an infinite LR or a NaN bound is never meant)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{where}.{f.name}: must be a finite number, got {value}")


def validate(spec: Spec) -> None:
    w = spec.path
    from suite.records import SUMMARY_COLUMNS

    for column in spec.table_columns:
        _one_of(f"{w}: table_columns", column, SUMMARY_COLUMNS)
    if spec.study is not None:
        return _validate_study(spec)
    t, d = spec.train, spec.data
    _finite_floats(t, f"{w}: train")
    positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                "train.eval_batch_size": t.eval_batch_size, "data.train_size": d.train_size}
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{w}: {key}: must be positive, got {value}")
    if t.epochs > MAX_EPOCHS:
        raise UserError(f"{w}: train.epochs: {t.epochs} is more than {MAX_EPOCHS}")
    if d.val_size < 0 or (d.test_size is not None and d.test_size <= 0):
        raise UserError(f"{w}: data.val_size / data.test_size: must be >= 0 / > 0")
    if t.batch_size > d.train_size:
        raise UserError(f"{w}: train.batch_size: {t.batch_size} is larger than data.train_size {d.train_size}")
    if not 0 <= t.momentum < 1:
        raise UserError(f"{w}: train.momentum: must be in [0, 1), got {t.momentum}")
    if t.weight_decay < 0:
        raise UserError(f"{w}: train.weight_decay: must be >= 0, got {t.weight_decay}")
    if t.max_loss is not None and not t.max_loss > 0:
        raise UserError(f"{w}: train.max_loss: must be positive (a mean loss above it ends the run), got {t.max_loss}")
    _validate_seeds(t.seeds, f"{w}: train.seeds")
    from suite.data import DATASETS, PREPROCESSING, SOURCES, TEST_SETS
    from suite.train.losses import LOSSES
    from suite.train.optim import SCHEDULES

    _one_of(f"{w}: data.dataset", d.dataset, DATASETS)
    _one_of(f"{w}: data.source", d.source, SOURCES[d.dataset])
    _one_of(f"{w}: data.test_set", d.test_set, TEST_SETS[d.dataset])
    _one_of(f"{w}: data.preprocessing", d.preprocessing, PREPROCESSING)
    _one_of(f"{w}: train.loss", t.loss, LOSSES)
    _one_of(f"{w}: train.lr_schedule", t.lr_schedule, SCHEDULES)
    _validate_training(spec, "train", spec.train)
    names = [v.name for v in spec.variants]
    if spec.reference_variant is not None and spec.reference_variant not in names:
        raise UserError(f"{w}: reference_variant: no variant {spec.reference_variant!r}"
                        f"{suggest(spec.reference_variant, names)}; the spec has {', '.join(names)}")
    from suite.models import check_model

    check_model(spec.model, f"{w}: model")
    for v in spec.variants:
        _validate_variant(spec, v)


def _validate_seeds(seeds: list[int], where: str) -> None:
    if not seeds:
        raise UserError(f"{where}: at least one seed")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise UserError(f"{where}: seed {s} is outside 0..2^63-1")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: a seed is listed twice ({seeds}); each seed is one run")


def _validate_variant(spec: Spec, v: VariantSpec) -> None:
    from suite.models import check_model
    from suite.nn import LAYER_POSITIONS, LR_SCALES
    from suite.nn.packed import ARITHMETICS
    from suite.quant import parse_quantizer

    where = f"{spec.path}: variants.{v.name}"
    _finite_floats(v, where)
    _validate_training(spec, f"variants.{v.name}", spec.train_for(v), v)
    for key in ("weight_quantizer", "input_quantizer", "gradient_quantizer"):
        try:
            if getattr(v, key) != "none":
                parse_quantizer(getattr(v, key))
        except UserError as e:
            raise UserError(f"{where}.{key}: {e}") from None
    for position in v.float_layers:
        _one_of(f"{where}.float_layers", position, LAYER_POSITIONS)
    if v.model:
        check_model(spec.model_for(v), f"{where}.model")
    _one_of(f"{where}.lr_scale", v.lr_scale, LR_SCALES)
    _one_of(f"{where}.arithmetic", v.arithmetic, ARITHMETICS)
    for key in ("clip_weights", "weight_init_range"):
        value = getattr(v, key)
        if value is not None and not value > 0:
            raise UserError(f"{where}.{key}: must be positive, got {value}")
    if v.latent_bits != 32:
        _validate_latent_bits(spec, v)
    _validate_lean_adam(spec, v)
    _try_build(spec, v)


def _validate_study(spec: Spec) -> None:
    """A study spec: every variant's study parameters (types and meaning, by the study), and
    no training keys on its variants (they would be silently unused)."""
    from suite.studies import check

    _validate_seeds(spec.study.seeds, f"{spec.path}: study.seeds")
    defaults = VariantSpec(name="")
    for v in spec.variants:
        used = [f.name for f in dataclasses.fields(VariantSpec)
                if f.name not in ("name", "label", "baseline", "study", "grid")
                and getattr(v, f.name) != getattr(defaults, f.name)]
        if used:
            raise UserError(f"{spec.path}: variants.{v.name}.{used[0]}: a study's variant takes label, baseline and "
                            "study = {...} only")
    if spec.reference_variant is not None and spec.reference_variant not in [v.name for v in spec.variants]:
        raise UserError(f"{spec.path}: reference_variant: no variant {spec.reference_variant!r}")
    check(spec)


def _validate_latent_bits(spec: Spec, v: VariantSpec) -> None:
    """k-bit latent weights (suite/nn/latent.py): 1..8 bits, BinaryConnect weights, backprop."""
    from suite.quant import parse_quantizer

    where = f"{spec.path}: variants.{v.name}.latent_bits"
    if not 1 <= v.latent_bits <= 8:
        raise UserError(f"{where}: expected 32 (float32) or 1 to 8 (k-bit codes), got {v.latent_bits}")
    if v.weight_quantizer == "none" or parse_quantizer(v.weight_quantizer)[0] != "binaryconnect":
        raise UserError(f"{where}: k-bit latent weights need weight_quantizer 'binaryconnect' (whose straight-"
                        f"through gradient is the latent weights'), got {v.weight_quantizer!r}")
    if spec.train_for(v).method != "backprop":
        raise UserError(f"{where}: k-bit latent weights train by backprop only, got method "
                        f"{spec.train_for(v).method!r}")


def _validate_lean_adam(spec: Spec, v: VariantSpec) -> None:
    """The in-backward 8-bit Adam (suite/train/lean_optim.py) updates 8-bit latent codes."""
    if spec.train_for(v).optimizer == "lean_adam" and v.latent_bits != 8:
        raise UserError(f"{spec.path}: variants.{v.name}: optimizer 'lean_adam' updates 8-bit latent weights: "
                        f"set latent_bits = 8 (got {v.latent_bits})")


def _try_build(spec: Spec, variant: VariantSpec) -> None:
    """Build the variant's model on the meta device (no memory, milliseconds): every model
    argument and quantizer parameter is checked before anything runs or is written."""
    import torch

    from suite.data import NUM_CLASSES, in_shape
    from suite.models import build_model

    try:
        shape = in_shape(spec.data)
    except UserError as e:
        raise UserError(f"{spec.path}: {e}") from None
    try:
        with torch.device("meta"):
            build_model(spec.model_for(variant), num_classes=NUM_CLASSES[spec.data.dataset],
                        in_shape=shape, quant=variant.quant_config())
    except UserError as e:
        raise UserError(f"{spec.path}: variants.{variant.name}: {e}") from None


def _validate_training(spec: Spec, where: str, t: TrainSpec, variant: VariantSpec | None = None) -> None:
    """The training settings of the spec (where = "train") or of one variant (its overrides
    applied): learning rates, method, optimizer and the forward-gradient options."""
    from suite.train import METHODS
    from suite.train.forward_gradient import DISTRIBUTIONS
    from suite.train.optim import OPTIMIZERS

    w = spec.path

    def key(name: str) -> str:  # name the key where the value was set
        own = variant is not None and getattr(variant, name, None) is not None
        return f"{where}.{name}" if own else f"train.{name}"

    _one_of(f"{w}: {key('method')}", t.method, METHODS)
    _one_of(f"{w}: {key('optimizer')}", t.optimizer, OPTIMIZERS)
    if not t.lr_start > 0 or (t.lr_end is not None and not t.lr_end > 0):
        raise UserError(f"{w}: {key('lr_start')} / {key('lr_end')}: must be positive, got {t.lr_start} / {t.lr_end}")
    if t.lr_schedule == "exponential" and t.lr_end is None:
        raise UserError(f"{w}: {key('lr_end')}: required by lr_schedule = 'exponential'")
    if t.num_directions < 1:
        raise UserError(f"{w}: {key('num_directions')}: must be at least 1, got {t.num_directions}")
    _one_of(f"{w}: {key('direction_distribution')}", t.direction_distribution, DISTRIBUTIONS)
    from suite.train.gradient_compression import NONE, build

    if t.gradient_compression != NONE:
        try:
            build(t.gradient_compression)  # the hook's own checks too (rate, clip, scope): refused before any run
        except UserError as e:
            raise UserError(f"{w}: {key('gradient_compression')}: {e}") from None
        if t.method != "backprop":
            raise UserError(f"{w}: {key('gradient_compression')}: a DDP communication hook compresses backprop's "
                            f"gradients; method {t.method!r} exchanges no gradients")
    if variant is not None and t.method != "forward_gradient":
        for name in FORWARD_GRADIENT_KEYS:
            if getattr(variant, name) is not None:
                raise UserError(f"{w}: {where}.{name}: applies to method 'forward_gradient' only; this variant "
                                f"trains by {t.method!r} (set {where}.method = \"forward_gradient\")")
