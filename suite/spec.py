"""Reproduction specs: TOML -> typed, validated `Spec`, with profiles and `--set` overrides.

A spec file (``reproductions/NAME.toml``) has these tables; every key is documented in
``reproductions/README.md``::

    name, title, paper, baselines, deviations     # top level
    [data]      dataset, train_size, val_size, test_size, preprocessing, source
    [model]     name + the builder's own keyword arguments
    [train]     method, loss, optimizer, lr_start, lr_end, lr_schedule, batch_size, epochs, seeds
    [variants.NAME]   weight_quantizer, clip_weights, lr_scale, baseline, label
    [profiles.NAME]   scaled_down, note, and any of the keys above as dotted overrides

Resolution order: file -> profile overrides -> ``--set key=value`` overrides. Every error names
the file and the key, and suggests the nearest valid key for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
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
    source: str = "auto"  # auto: full data if found, else the embedded subset; full; embedded


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


@dataclass(frozen=True)
class VariantSpec:
    name: str
    label: str = ""
    weight_quantizer: str = "none"  # a registry name, e.g. "binaryconnect(stochastic=True)"
    clip_weights: float | None = None  # clip latent weights to [-c, c] after each update
    lr_scale: str = "none"  # none | glorot (BinaryConnect's per-layer 1/sqrt(1.5/(fan_in+fan_out)))
    weight_init_range: float | None = None  # latent weights drawn from U(-r, r); None: torch default
    baseline: str | None = None  # id of the row in the spec's baselines file


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: dict[str, Any]


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
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    variants: tuple[VariantSpec, ...]
    overrides: dict[str, Any]  # the --set overrides, shown in reports

    def resolved(self) -> dict[str, Any]:
        """The resolved spec as plain data (what a record stores and the hash covers)."""
        return dataclasses.asdict(self)

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise UserError(f"{self.path}: no variant {name!r}; the spec has {[v.name for v in self.variants]}")


def config_hash(resolved: dict[str, Any]) -> str:
    """Short stable hash of a resolved configuration (records with equal hashes are comparable)."""
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# --- generic typed construction -------------------------------------------------------------

_TOP_KEYS = {"name", "title", "paper", "baselines", "deviations", "data", "model", "train",
             "variants", "profiles"}
_PROFILE_KEYS = {"scaled_down", "note"}


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
            raise UserError(f"{where}.{key}: unknown key{_suggest(key, fields)}; "
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
    prof = profiles[profile]
    prof_over = {k: v for k, v in prof.items() if k not in _PROFILE_KEYS}
    overrides = dict(overrides or {})
    set_over = _nest(overrides)
    _check_override_keys(raw, set_over, f"{where}: --set")
    merged = _deep_merge(_deep_merge({k: v for k, v in raw.items() if k != "profiles"}, prof_over), set_over)

    for key in ("name", "title", "paper", "baselines", "data", "model", "train", "variants"):
        if key not in merged:
            raise UserError(f"{where}: {key}: missing (required)")
    for key in ("name", "title", "paper", "baselines"):
        _check_type(merged[key], str, f"{where}: {key}")
    deviations = _check_type(merged.get("deviations", []), list[str], f"{where}: deviations")
    scaled_down = _check_type(prof.get("scaled_down", profile != "paper"), bool,
                              f"{where}: profiles.{profile}.scaled_down")
    note = _check_type(prof.get("note", ""), str, f"{where}: profiles.{profile}.note")

    data = _build(DataSpec, merged["data"], f"{where}: data")
    train = _build(TrainSpec, merged["train"], f"{where}: train")
    model_table = merged["model"]
    if not isinstance(model_table, dict) or not isinstance(model_table.get("name"), str):
        raise UserError(f"{where}: model.name: missing (required): a model builder name")
    model = ModelSpec(name=model_table["name"], params={k: v for k, v in model_table.items() if k != "name"})
    if not isinstance(merged["variants"], dict) or not merged["variants"]:
        raise UserError(f"{where}: variants: expected at least one [variants.NAME] table")
    variants = tuple(_build(VariantSpec, t, f"{where}: variants.{n}", name=n) for n, t in merged["variants"].items())

    spec = Spec(name=merged["name"], title=merged["title"], paper=merged["paper"],
                baselines=merged["baselines"], path=where, profile=profile, scaled_down=scaled_down,
                profile_note=note, deviations=deviations, data=data, model=model, train=train,
                variants=variants, overrides=overrides)
    validate(spec)
    return spec


def validate(spec: Spec) -> None:
    """Checks of meaning (not type): impossible values, unknown names. Imports are local to
    keep spec loading light for `list`."""
    w = spec.path
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
    if not t.lr_start > 0 or (t.lr_end is not None and not t.lr_end > 0):
        raise UserError(f"{w}: train.lr_start / train.lr_end: must be positive, got {t.lr_start} / {t.lr_end}")
    if t.lr_schedule not in ("exponential", "constant"):
        raise UserError(f"{w}: train.lr_schedule: expected 'exponential' or 'constant', got {t.lr_schedule!r}")
    if t.lr_schedule == "exponential" and t.lr_end is None:
        raise UserError(f"{w}: train.lr_end: required by lr_schedule = 'exponential'")
    if not 0 <= t.momentum < 1:
        raise UserError(f"{w}: train.momentum: must be in [0, 1), got {t.momentum}")
    if not t.seeds:
        raise UserError(f"{w}: train.seeds: at least one seed")
    choices = {"train.method": (t.method, ("backprop",)),
               "train.loss": (t.loss, ("squared_hinge", "cross_entropy")),
               "train.optimizer": (t.optimizer, ("sgd", "adam")),
               "data.source": (d.source, ("auto", "full", "embedded")),
               "data.preprocessing": (d.preprocessing, ("pm1", "unit"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(f"{w}: {key}: {value!r} is not one of {', '.join(allowed)}{_suggest(value, allowed)}")
    from suite.data import DATASETS
    from suite.models import check_model
    from suite.quant import parse_quantizer

    if d.dataset not in DATASETS:
        raise UserError(f"{w}: data.dataset: unknown dataset {d.dataset!r}{_suggest(d.dataset, DATASETS)}; "
                        f"known: {', '.join(DATASETS)}")
    check_model(spec.model, f"{w}: model")
    for v in spec.variants:
        try:
            if v.weight_quantizer != "none":
                parse_quantizer(v.weight_quantizer)
        except UserError as e:
            raise UserError(f"{w}: variants.{v.name}.weight_quantizer: {e}") from None
        if v.lr_scale not in ("none", "glorot"):
            raise UserError(f"{w}: variants.{v.name}.lr_scale: expected 'none' or 'glorot', got {v.lr_scale!r}")
        for key in ("clip_weights", "weight_init_range"):
            value = getattr(v, key)
            if value is not None and not value > 0:
                raise UserError(f"{w}: variants.{v.name}.{key}: must be positive, got {value}")


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
