"""Reproduction specs: TOML -> typed, validated `Spec`, with profiles and `--set` overrides.

A spec file (``reproductions/NAME.toml``) has these tables; every key is documented in
``reproductions/README.md``::

    name, title, paper, baselines, deviations, reference_variant   # top level
    [data]      dataset, train_size, val_size, test_size, preprocessing, source, test_set
    [model]     name + the builder's own keyword arguments
    [train]     method, loss, optimizer, lr_start, lr_end, lr_schedule, batch_size, epochs, seeds,
                num_directions, direction_distribution, orthogonal_directions, batched_directions
    [variants.NAME]   weight_quantizer, clip_weights, latent_bits, lr_scale, baseline, label, and per-variant
                      training overrides: method, optimizer, lr_start, lr_end, num_directions, ...
    [profiles.NAME]   scaled_down, note, and any of the keys above as dotted overrides
    [study]     a study spec (suite/studies/) instead of [data], [model], [train]: name, seeds and
                the study's parameters; its variants carry study = {...} overrides

Resolution order: file -> profile overrides -> ``--set key=value`` overrides. Every error names
the file and the key, and suggests the nearest valid key for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import UserError

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


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    batch_size: int
    lr_start: float
    lr_end: float | None = None  # None: constant learning rate
    lr_schedule: str = "exponential"  # exponential (per epoch, lr_start -> lr_end) | constant
    method: str = "backprop"
    loss: str = "squared_hinge"
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    seeds: list[int] = field(default_factory=lambda: [0])
    eval_batch_size: int = 1000
    max_loss: float | None = None  # a mean epoch loss above this (or not finite) ends the run as diverged
    sync_batchnorm: bool = False  # under torchrun: BatchNorm over the global batch (GPUs); else no effect
    # method = "forward_gradient" only (suite/train/forward_gradient.py):
    num_directions: int = 1  # random directions per step
    direction_distribution: str = "gaussian"  # gaussian | rademacher
    orthogonal_directions: bool = False  # orthonormal within a step and orthogonal to the previous step's
    batched_directions: bool = False  # all directions in one vmap'ed jvp (faster, num_directions x memory)


# Training keys a variant may override; None (the default) keeps the spec's train.* value.
VARIANT_TRAIN_KEYS = ("method", "optimizer", "lr_start", "lr_end", "num_directions", "direction_distribution",
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
    num_directions: int | None = None
    direction_distribution: str | None = None
    orthogonal_directions: bool | None = None
    batched_directions: bool | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: dict[str, Any]


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

    @property
    def seeds(self) -> list[int]:
        return self.study.seeds if self.study is not None else self.train.seeds

    def resolved(self) -> dict[str, Any]:
        """The resolved spec as plain data (what a record stores and the hash covers)."""
        return dataclasses.asdict(self)

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


def config_hash(resolved: dict[str, Any]) -> str:
    """Short stable hash of a resolved configuration (records with equal hashes are comparable)."""
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# --- generic typed construction -------------------------------------------------------------

_TOP_KEYS = {"name", "title", "paper", "baselines", "deviations", "reference_variant", "data", "model",
             "train", "variants", "grid", "study", "profiles"}
_GRID_TEMPLATES = ("baseline", "label")  # keys of [grid] that are templates, not axes
_PROFILE_KEYS = {"scaled_down", "note", "run_variants"}


def _show(key: str) -> str:
    """A key as it can be printed on one line (a key with control characters is quoted)."""
    return key if key.isprintable() else repr(key)


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return value converted to `hint` (int -> float widening only) or raise UserError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if hint is typing.Any:
        return value
    raise TypeError(f"unsupported type hint {hint!r}")  # a bug in this module, not user input


def _build(cls: type, table: Any, where: str, **given: Any) -> Any:
    """Construct dataclass `cls` from a TOML table: unknown keys, missing keys and types checked."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table, got {type(table).__name__} {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    for key in table:
        if key not in fields:
            raise UserError(f"{where}.{_show(key)}: unknown key{_suggest(key, fields)}; "
                            f"valid keys: {', '.join(sorted(fields))}")
    kwargs = dict(given)
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _check_type(table[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{where}.{name}: missing (required)")
    return cls(**kwargs)


# --- merging profiles and overrides -------------------------------------------------------

def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: typing.Iterable[str]) -> dict[str, Any]:
    """Parse ``--set key.path=value`` items; the value is read as TOML, else taken as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def _check_override_keys(raw: dict, over: dict, where: str) -> None:
    """Overrides may only name keys a spec can have (model keys are checked by the builder)."""
    sections = {"data": DataSpec, "train": TrainSpec}
    for key, value in over.items():
        if key not in _TOP_KEYS - {"profiles"}:
            raise UserError(f"{where}: unknown key {key!r}{_suggest(key, _TOP_KEYS - {'profiles'})}")
        if key in sections and isinstance(value, dict):
            valid = {f.name for f in dataclasses.fields(sections[key])}
            for k in value:
                if k not in valid:
                    raise UserError(f"{where}: unknown key '{key}.{k}'{_suggest(k, valid)}")
        if key == "variants" and isinstance(value, dict):
            valid = {f.name for f in dataclasses.fields(VariantSpec)} - {"name"}
            for vname, vtable in value.items():
                if vname not in raw.get("variants", {}):
                    raise UserError(f"{where}: unknown variant 'variants.{vname}'"
                                    f"{_suggest(vname, raw.get('variants', {}))}")
                for k in vtable if isinstance(vtable, dict) else ():
                    if k not in valid:
                        raise UserError(f"{where}: unknown key 'variants.{vname}.{k}'{_suggest(k, valid)}")
        if key == "study" and isinstance(value, dict) and (valid := _study_keys(raw.get("study"))):
            for k in value:
                if k not in valid:
                    raise UserError(f"{where}: unknown key 'study.{k}'{_suggest(k, valid)}")


def _study_keys(table: Any) -> set[str] | None:
    """The keys a [study] table of a known study may hold; None if it names none."""
    from suite.studies import STUDIES, study_module

    name = table.get("name") if isinstance(table, dict) else None
    if name not in STUDIES:
        return None
    return {"name", "seeds"} | {f.name for f in dataclasses.fields(study_module(name).Params)}


def _parse_study(merged: dict, where: str) -> StudySpec | None:
    """The [study] table of a study spec (None for a training spec); a study spec has no
    [data], [model] or [train]: its settings are the study's parameters."""
    from suite.studies import STUDIES

    if "study" not in merged:
        return None
    table = merged["study"]
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise UserError(f"{where}: study.name: missing (required): one of {', '.join(STUDIES)}")
    name = table["name"]
    if name not in STUDIES:
        raise UserError(f"{where}: study.name: unknown study {name!r}{_suggest(name, STUDIES)}; "
                        f"known: {', '.join(STUDIES)}")
    for key in ("data", "model", "train"):
        if key in merged:
            raise UserError(f"{where}: {key}: a study spec (study.name = {name!r}) has no [{key}]; "
                            "its settings go in [study]")
    seeds = _check_type(table.get("seeds", [0]), list[int], f"{where}: study.seeds")
    if not seeds:
        raise UserError(f"{where}: study.seeds: at least one seed")
    return StudySpec(name=name, seeds=seeds, params={k: v for k, v in table.items() if k not in ("name", "seeds")})


def _check_run_variants(raw: dict, value: Any, where: str) -> None:
    """A profile's ``run_variants``: a non-empty list of the spec's variant names, or absent."""
    if value is None:
        return
    names = list(raw.get("variants", {}) if isinstance(raw.get("variants"), dict) else {})
    names += [name for name, _, _ in _grid_cells(raw.get("grid"), f"{where}: grid")]
    for n in _check_type(value, list[str], where):
        if n not in names:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            raise UserError(f"{where}: no variant {n!r}{_suggest(n, names)}; the spec has {shown}")
    if not value:
        raise UserError(f"{where}: at least one variant")


# --- grids -------------------------------------------------------------------------------

def _grid_cells(grid: Any, where: str) -> list[tuple[str, dict[str, str], dict]]:
    """Expand a [grid] table into (variant name, {axis: point}, variant table) cells.

    Each axis is a table of named points, each point a table of variant keys; a cell merges one
    point of every axis (in the axes' order) and is named "point1.point2...". The templates
    ``grid.baseline`` and ``grid.label`` are formatted with the cell's points ({axis} -> point).
    """
    if grid is None:
        return []
    if not isinstance(grid, dict):
        raise UserError(f"{where}: expected a table of axes, got {type(grid).__name__} {grid!r}")
    axes = {k: v for k, v in grid.items() if k not in _GRID_TEMPLATES}
    if not axes:
        raise UserError(f"{where}: at least one axis (grid.AXIS.POINT = {{ variant keys }})")
    for axis, points in axes.items():
        if not isinstance(points, dict) or not points:
            raise UserError(f"{where}.{_show(axis)}: expected a table of named points, each a table of variant keys")
        for point, table in points.items():
            if not point or not all(c.isalnum() or c in "_+-" for c in point):
                raise UserError(f"{where}.{_show(axis)}.{_show(point)}: point names may hold letters, digits, "
                                "'_', '+' and '-' only (they make variant names and file names)")
            if not isinstance(table, dict):
                raise UserError(f"{where}.{axis}.{point}: expected a table of variant keys, got {table!r}")
    templates = {k: _check_type(grid[k], str, f"{where}.{k}") for k in _GRID_TEMPLATES if k in grid}
    cells = []
    for combo in itertools.product(*[[(axis, p) for p in points] for axis, points in axes.items()]):
        coords = dict(combo)
        table: dict = {}
        for axis, point in combo:
            table = _deep_merge(table, axes[axis][point])
        for key, template in templates.items():
            try:
                table[key] = template.format(**coords)
            except (KeyError, IndexError, ValueError) as e:
                raise UserError(f"{where}.{key}: template {template!r} names no axis {e}; "
                                f"axes: {', '.join(axes)}") from None
        cells.append((".".join(p for _, p in combo), coords, table))
    return cells


# --- loading ------------------------------------------------------------------------------

def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: spec file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: malformed TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text: {e}") from None


def load_spec(path: str | Path, profile: str = "quick", overrides: dict[str, Any] | None = None) -> Spec:
    """Read, merge (profile, then overrides) and validate a spec file."""
    path = Path(path)
    raw = read_toml(path)
    where = str(path)
    for key in raw:
        if key not in _TOP_KEYS:
            raise UserError(f"{where}: unknown key {key!r}{_suggest(key, _TOP_KEYS)}")
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UserError(f"{where}: profiles: expected a table of profiles")
    if profile not in profiles:
        raise UserError(f"{where}: no profile {profile!r}{_suggest(profile, profiles)}; "
                        f"the spec has: {', '.join(profiles) or 'none'}")
    for pname, ptable in profiles.items():  # every profile, so a typo anywhere is caught early
        if not isinstance(ptable, dict):
            raise UserError(f"{where}: profiles.{pname}: expected a table")
        _check_override_keys(raw, {k: v for k, v in ptable.items() if k not in _PROFILE_KEYS},
                             f"{where}: profiles.{pname}")
        _check_run_variants(raw, ptable.get("run_variants"), f"{where}: profiles.{pname}.run_variants")
    prof = profiles[profile]
    prof_over = {k: v for k, v in prof.items() if k not in _PROFILE_KEYS}
    overrides = dict(overrides or {})
    set_over = _nest(overrides)
    _check_override_keys(raw, set_over, f"{where}: --set")
    merged = _deep_merge(_deep_merge({k: v for k, v in raw.items() if k != "profiles"}, prof_over), set_over)

    study = _parse_study(merged, where)
    for key in ("name", "title", "paper", "baselines") + (() if study else ("data", "model", "train")):
        if key not in merged:
            raise UserError(f"{where}: {key}: missing (required)")
    for key in ("name", "title", "paper", "baselines"):
        _check_type(merged[key], str, f"{where}: {key}")
    deviations = _check_type(merged.get("deviations", []), list[str], f"{where}: deviations")
    reference = _check_type(merged.get("reference_variant"), str | None, f"{where}: reference_variant")
    scaled_down = _check_type(prof.get("scaled_down", profile != "paper"), bool,
                              f"{where}: profiles.{profile}.scaled_down")
    note = _check_type(prof.get("note", ""), str, f"{where}: profiles.{profile}.note")

    data = model = train = None  # a study spec has none of them
    if study is None:
        data = _build(DataSpec, merged["data"], f"{where}: data")
        train = _build(TrainSpec, merged["train"], f"{where}: train")
        model_table = merged["model"]
        if not isinstance(model_table, dict) or not isinstance(model_table.get("name"), str):
            raise UserError(f"{where}: model.name: missing (required): a model builder name")
        model = ModelSpec(name=model_table["name"], params={k: v for k, v in model_table.items() if k != "name"})
    explicit = merged.get("variants", {})
    cells = _grid_cells(merged.get("grid"), f"{where}: grid")
    if not isinstance(explicit, dict) or not (explicit or cells):
        raise UserError(f"{where}: variants: expected at least one [variants.NAME] table (or a [grid])")
    variants = tuple(_build(VariantSpec, t, f"{where}: variants.{_show(n)}", name=n, grid={})
                     for n, t in explicit.items())
    for name, coords, table in cells:
        if name in explicit:
            raise UserError(f"{where}: grid cell {name!r} has the name of a [variants.{name}] table")
        variants += (_build(VariantSpec, table, f"{where}: grid cell {name}", name=name, grid=coords),)
    run_variants = prof.get("run_variants")
    if run_variants is not None:  # the profile runs a subset of the variants (checked above)
        variants = tuple(v for v in variants if v.name in run_variants)

    spec = Spec(name=merged["name"], title=merged["title"], paper=merged["paper"],
                baselines=merged["baselines"], path=where, profile=profile, scaled_down=scaled_down,
                profile_note=note, deviations=deviations, data=data, model=model, train=train,
                variants=variants, overrides=overrides, reference_variant=reference, study=study)
    validate(spec)
    return spec


def validate(spec: Spec) -> None:
    """Checks of meaning (not type): impossible values, unknown names. Imports are local to
    keep spec loading light for `list`."""
    w = spec.path
    if spec.study is not None:
        return _validate_study(spec)
    t, d = spec.train, spec.data
    positive = {"train.epochs": t.epochs, "train.batch_size": t.batch_size,
                "train.eval_batch_size": t.eval_batch_size, "data.train_size": d.train_size}
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{w}: {key}: must be positive, got {value}")
    if d.val_size < 0 or (d.test_size is not None and d.test_size <= 0):
        raise UserError(f"{w}: data.val_size / data.test_size: must be >= 0 / > 0")
    if t.batch_size > d.train_size:
        raise UserError(f"{w}: train.batch_size: {t.batch_size} is larger than data.train_size {d.train_size}")
    if t.lr_schedule not in ("exponential", "constant"):
        raise UserError(f"{w}: train.lr_schedule: expected 'exponential' or 'constant', got {t.lr_schedule!r}")
    if not 0 <= t.momentum < 1:
        raise UserError(f"{w}: train.momentum: must be in [0, 1), got {t.momentum}")
    if not t.seeds:
        raise UserError(f"{w}: train.seeds: at least one seed")
    from suite.data import DATASETS, PREPROCESSING, SOURCES, TEST_SETS

    if d.dataset not in DATASETS:
        raise UserError(f"{w}: data.dataset: unknown dataset {d.dataset!r}{_suggest(d.dataset, DATASETS)}; "
                        f"known: {', '.join(DATASETS)}")
    choices = {"train.loss": (t.loss, ("squared_hinge", "cross_entropy")),
               "train.optimizer": (t.optimizer, ("sgd", "adam")),
               "data.source": (d.source, SOURCES[d.dataset]),
               "data.test_set": (d.test_set, TEST_SETS[d.dataset]),
               "data.preprocessing": (d.preprocessing, PREPROCESSING)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"{w}: {key}: {value!r} is not one of {', '.join(allowed)}{_suggest(value, allowed)}")
    _validate_training(spec, "train", spec.train)
    if spec.reference_variant is not None and spec.reference_variant not in [v.name for v in spec.variants]:
        names = [v.name for v in spec.variants]
        raise UserError(f"{w}: reference_variant: no variant {spec.reference_variant!r}"
                        f"{_suggest(spec.reference_variant, names)}; the spec has {', '.join(names)}")
    from suite.models import check_model
    from suite.quant import parse_quantizer

    check_model(spec.model, f"{w}: model")
    for v in spec.variants:
        _validate_training(spec, f"variants.{v.name}", spec.train_for(v), v)
        for key in ("weight_quantizer", "input_quantizer", "gradient_quantizer"):
            try:
                if getattr(v, key) != "none":
                    parse_quantizer(getattr(v, key))
            except UserError as e:
                raise UserError(f"{w}: variants.{v.name}.{key}: {e}") from None
        for position in v.float_layers:
            if position not in ("first", "last"):
                raise UserError(f"{w}: variants.{v.name}.float_layers: expected 'first' and/or 'last', "
                                f"got {position!r}")
        if v.model:
            check_model(spec.model_for(v), f"{w}: variants.{v.name}.model")
        if v.lr_scale not in ("none", "glorot"):
            raise UserError(f"{w}: variants.{v.name}.lr_scale: expected 'none' or 'glorot', got {v.lr_scale!r}")
        for key in ("clip_weights", "weight_init_range"):
            value = getattr(v, key)
            if value is not None and not value > 0:
                raise UserError(f"{w}: variants.{v.name}.{key}: must be positive, got {value}")
        if v.latent_bits != 32:
            _validate_latent_bits(spec, v)
        _try_build(spec, v)


def _validate_study(spec: Spec) -> None:
    """A study spec: every variant's study parameters (types and meaning, by the study), and
    no training keys on its variants (they would be silently unused)."""
    from suite.studies import check

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


def _try_build(spec: Spec, variant: VariantSpec) -> None:
    """Build the variant's model on the meta device (no memory, milliseconds): every model
    argument and quantizer parameter is checked before anything runs or is written."""
    import torch

    from suite.data import NUM_CLASSES, in_shape
    from suite.harness import quant_config
    from suite.models import build_model

    try:
        shape = in_shape(spec.data)
    except UserError as e:
        raise UserError(f"{spec.path}: {e}") from None
    try:
        with torch.device("meta"):
            build_model(spec.model_for(variant), num_classes=NUM_CLASSES[spec.data.dataset],
                        in_shape=shape, quant=quant_config(variant))
    except UserError as e:
        raise UserError(f"{spec.path}: variants.{variant.name}: {e}") from None


def _validate_training(spec: Spec, where: str, t: TrainSpec, variant: VariantSpec | None = None) -> None:
    """The training settings of the spec (where = "train") or of one variant (its overrides
    applied): learning rates, method and the forward-gradient options."""
    from suite.train import METHODS

    w = spec.path

    def key(name: str) -> str:  # name the key where the value was set
        own = variant is not None and getattr(variant, name, None) is not None
        return f"{where}.{name}" if own else f"train.{name}"

    if t.method not in METHODS:
        raise UserError(f"{w}: {key('method')}: {t.method!r} is not one of {', '.join(METHODS)}"
                        f"{_suggest(t.method, METHODS)}")
    if t.optimizer not in ("sgd", "adam"):
        raise UserError(f"{w}: {key('optimizer')}: {t.optimizer!r} is not one of sgd, adam"
                        f"{_suggest(t.optimizer, ('sgd', 'adam'))}")
    if not t.lr_start > 0 or (t.lr_end is not None and not t.lr_end > 0):
        raise UserError(f"{w}: {key('lr_start')} / {key('lr_end')}: must be positive, got {t.lr_start} / {t.lr_end}")
    if t.lr_schedule == "exponential" and t.lr_end is None:
        raise UserError(f"{w}: {key('lr_end')}: required by lr_schedule = 'exponential'")
    if t.num_directions < 1:
        raise UserError(f"{w}: {key('num_directions')}: must be at least 1, got {t.num_directions}")
    if t.direction_distribution not in ("gaussian", "rademacher"):
        raise UserError(f"{w}: {key('direction_distribution')}: expected 'gaussian' or 'rademacher', "
                        f"got {t.direction_distribution!r}")
    if variant is not None and t.method != "forward_gradient":
        for name in FORWARD_GRADIENT_KEYS:
            if getattr(variant, name) is not None:
                raise UserError(f"{w}: {where}.{name}: applies to method 'forward_gradient' only; this variant "
                                f"trains by {t.method!r} (set {where}.method = \"forward_gradient\")")


def find_spec(name_or_path: str, root: Path | None = None) -> Path:
    """A spec by file path or by name in reproductions/."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    root = root or reproductions_dir()
    candidate = root / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    names = [q.stem for q in sorted(root.glob("*.toml"))]
    raise UserError(f"no spec {name_or_path!r} in {root}{_suggest(name_or_path, names)}; "
                    f"known: {', '.join(names) or 'none'}")


def reproductions_dir() -> Path:
    from suite.paths import project_root

    return project_root() / "reproductions"
