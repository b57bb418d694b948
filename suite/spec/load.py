"""TOML file -> `Spec`: the file, then its profile's overrides, then ``--set`` overrides, each
key checked (unknown keys named with the nearest valid one), then `validate`."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from suite.errors import UserError
from suite.paths import reproductions_dir
from suite.spec.grid import deep_merge, grid_cells
from suite.spec.schema import DataSpec, ModelSpec, Spec, StudySpec, TrainSpec, VariantSpec
from suite.spec.validate import validate
from suite.typed import build, check_type, show, suggest

TOP_KEYS = {"name", "title", "paper", "baselines", "deviations", "reference_variant", "table_columns", "data",
            "model", "train", "variants", "grid", "study", "profiles"}
PROFILE_KEYS = {"scaled_down", "note", "run_variants"}
MAX_SPEC_BYTES = 1 << 20  # a spec is a page of TOML; anything larger is not one
# Names become folder and file names under the results folder: no separators, no "..", no dot first.
SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def check_name(name: str, where: str) -> str:
    if not SAFE_NAME.fullmatch(name) or ".." in name or len(name) > 120:
        raise UserError(f"{where}: {show(name)!r} is not a safe name: letters, digits, '_', '.', '+' and '-' only "
                        "(not first: '.'), no '..', at most 120 characters (it names folders and files)")
    return name


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at `path` as a table; a missing, unreadable, oversized or malformed file (or
    one that is not a regular file: a folder, a device) is a one-line UserError."""
    path = Path(path)
    try:
        if not path.is_file():
            raise UserError(f"{path}: spec file not found" if not path.exists() else
                            f"{path}: not a regular file (a spec is a .toml file)")
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise UserError(f"{path}: {path.stat().st_size} bytes; a spec file is at most {MAX_SPEC_BYTES} bytes")
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read the spec file ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: malformed TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text: {e}") from None
    except RecursionError:
        raise UserError(f"{path}: tables or arrays nested too deeply") from None


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
    raise UserError(f"no spec {name_or_path!r} in {root}{suggest(name_or_path, names)}; "
                    f"known: {', '.join(names) or 'none'}")


def parse_set(items: typing.Iterable[str]) -> dict[str, Any]:
    """Parse ``--set key.path=value`` items; the value is read as TOML, else taken as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except (tomllib.TOMLDecodeError, RecursionError):
            value = raw.strip()
        if key in out:
            raise UserError(f"--set {key}: given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {'.'.join(parts[:i + 1])} is set to a value, not a table")
        if isinstance(node.get(parts[-1]), dict):
            raise UserError(f"--set {key}: a table, set its keys instead (--set {key}.KEY=VALUE)")
        node[parts[-1]] = value
    return nested


def _check_override_keys(raw: dict, over: dict, where: str) -> None:
    """Overrides may only name keys a spec can have (model keys are checked by the builder)."""
    sections = {"data": DataSpec, "train": TrainSpec}
    for key, value in over.items():
        if key not in TOP_KEYS - {"profiles"}:
            raise UserError(f"{where}: unknown key {show(key)!r}{suggest(key, TOP_KEYS - {'profiles'})}")
        if key in sections and isinstance(value, dict):
            valid = {f.name for f in dataclasses.fields(sections[key])}
            for k in value:
                if k not in valid:
                    raise UserError(f"{where}: unknown key '{key}.{show(k)}'{suggest(k, valid)}")
        if key == "variants" and isinstance(value, dict):
            valid = {f.name for f in dataclasses.fields(VariantSpec)} - {"name"}
            known = raw.get("variants", {}) if isinstance(raw.get("variants"), dict) else {}
            for vname, vtable in value.items():
                if vname not in known:
                    raise UserError(f"{where}: unknown variant 'variants.{show(vname)}'{suggest(vname, known)}")
                for k in vtable if isinstance(vtable, dict) else ():
                    if k not in valid:
                        raise UserError(f"{where}: unknown key 'variants.{vname}.{show(k)}'{suggest(k, valid)}")
        if key == "study" and isinstance(value, dict) and (valid := _study_keys(raw.get("study"))):
            for k in value:
                if k not in valid:
                    raise UserError(f"{where}: unknown key 'study.{show(k)}'{suggest(k, valid)}")


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
        raise UserError(f"{where}: study.name: unknown study {show(name)!r}{suggest(name, STUDIES)}; "
                        f"known: {', '.join(STUDIES)}")
    for key in ("data", "model", "train"):
        if key in merged:
            raise UserError(f"{where}: {key}: a study spec (study.name = {name!r}) has no [{key}]; "
                            "its settings go in [study]")
    seeds = check_type(table.get("seeds", [0]), list[int], f"{where}: study.seeds")
    if not seeds:
        raise UserError(f"{where}: study.seeds: at least one seed")
    return StudySpec(name=name, seeds=seeds, params={k: v for k, v in table.items() if k not in ("name", "seeds")})


def _check_run_variants(raw: dict, value: Any, where: str) -> None:
    """A profile's ``run_variants``: a non-empty list of the spec's variant names, or absent."""
    if value is None:
        return
    names = list(raw.get("variants", {}) if isinstance(raw.get("variants"), dict) else {})
    names += [name for name, _, _ in grid_cells(raw.get("grid"), f"{where}: grid")]
    for n in check_type(value, list[str], where):
        if n not in names:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            raise UserError(f"{where}: no variant {show(n)!r}{suggest(n, names)}; the spec has {shown}")
    if not value:
        raise UserError(f"{where}: at least one variant")


def _variants(merged: dict, where: str) -> tuple[tuple[VariantSpec, ...], tuple[dict, ...]]:
    """The [variants.*] tables, then every [grid] cell; and the grid cells as the report shows them."""
    explicit = merged.get("variants", {})
    cells = grid_cells(merged.get("grid"), f"{where}: grid")
    if not isinstance(explicit, dict) or not (explicit or cells):
        raise UserError(f"{where}: variants: expected at least one [variants.NAME] table (or a [grid])")
    variants = tuple(build(VariantSpec, t, f"{where}: variants.{show(n)}",
                           name=check_name(n, f"{where}: variants"), grid={}) for n, t in explicit.items())
    for name, coords, table in cells:
        if name in explicit:
            raise UserError(f"{where}: grid cell {name!r} has the name of a [variants.{name}] table")
        variants += (build(VariantSpec, table, f"{where}: grid cell {name}", name=name, grid=coords),)
    shown = tuple({"name": v.name, "label": v.label, "baseline": v.baseline, "grid": v.grid}
                  for v in variants if v.grid)
    return variants, shown


def load_spec(path: str | Path, profile: str = "quick", overrides: dict[str, Any] | None = None) -> Spec:
    """Read, merge (profile, then overrides) and validate a spec file."""
    path = Path(path)
    raw = read_toml(path)
    where = str(path)
    for key in raw:
        if key not in TOP_KEYS:
            raise UserError(f"{where}: unknown key {show(key)!r}{suggest(key, TOP_KEYS)}")
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UserError(f"{where}: profiles: expected a table of profiles")
    if profile not in profiles:
        raise UserError(f"{where}: no profile {show(profile)!r}{suggest(profile, profiles)}; "
                        f"the spec has: {', '.join(profiles) or 'none'}")
    for pname, ptable in profiles.items():  # every profile, so a typo anywhere is caught early
        if not isinstance(ptable, dict):
            raise UserError(f"{where}: profiles.{show(pname)}: expected a table")
        _check_override_keys(raw, {k: v for k, v in ptable.items() if k not in PROFILE_KEYS},
                             f"{where}: profiles.{pname}")
        _check_run_variants(raw, ptable.get("run_variants"), f"{where}: profiles.{pname}.run_variants")
    prof = profiles[profile]
    prof_over = {k: v for k, v in prof.items() if k not in PROFILE_KEYS}
    overrides = dict(overrides or {})
    set_over = _nest(overrides)
    _check_override_keys(raw, set_over, f"{where}: --set")
    merged = deep_merge(deep_merge({k: v for k, v in raw.items() if k != "profiles"}, prof_over), set_over)

    study = _parse_study(merged, where)
    for key in ("name", "title", "paper", "baselines") + (() if study else ("data", "model", "train")):
        if key not in merged:
            raise UserError(f"{where}: {key}: missing (required)")
    for key in ("name", "title", "paper", "baselines"):
        check_type(merged[key], str, f"{where}: {key}")
    check_name(merged["name"], f"{where}: name")
    deviations = check_type(merged.get("deviations", []), list[str], f"{where}: deviations")
    reference = check_type(merged.get("reference_variant"), str | None, f"{where}: reference_variant")
    columns = check_type(merged.get("table_columns", []), list[str], f"{where}: table_columns")
    scaled_down = check_type(prof.get("scaled_down", profile != "paper"), bool,
                             f"{where}: profiles.{profile}.scaled_down")
    note = check_type(prof.get("note", ""), str, f"{where}: profiles.{profile}.note")

    data = model = train = None  # a study spec has none of them
    if study is None:
        data = build(DataSpec, merged["data"], f"{where}: data")
        train = build(TrainSpec, merged["train"], f"{where}: train")
        model_table = merged["model"]
        if not isinstance(model_table, dict) or not isinstance(model_table.get("name"), str):
            raise UserError(f"{where}: model.name: missing (required): a model builder name")
        model = ModelSpec(name=model_table["name"], params={k: v for k, v in model_table.items() if k != "name"})
    variants, cells = _variants(merged, where)
    run_variants = prof.get("run_variants")
    if run_variants is not None:  # the profile runs a subset of the variants (checked above)
        variants = tuple(v for v in variants if v.name in run_variants)

    spec = Spec(name=merged["name"], title=merged["title"], paper=merged["paper"],
                baselines=merged["baselines"], path=where, profile=profile, scaled_down=scaled_down,
                profile_note=note, deviations=deviations, data=data, model=model, train=train,
                variants=variants, overrides=overrides, reference_variant=reference, study=study,
                grid_cells=cells, table_columns=columns)
    validate(spec)
    return spec

