"""Studies: specs that measure something other than a model trained on a dataset.

A spec with a ``[study]`` table is a study (``reproductions/README.md``, "Studies")::

    [study]
    name = "quantization_error"      # a key of STUDIES
    seeds = [0]                      # one run per variant x seed, as for any spec
    length = 1024                    # ... the study's own parameters (its `Params`)

It has no [data], [model] or [train]; its variants may carry ``study = { key = value }``
overrides, profiles override ``study.*`` like any key, and it runs, records and reports through
the same commands: ``python -m suite run NAME --profile P`` writes one record per variant x seed
(`suite.run.execute.execute_study`: the record schema of ``suite/records.py`` with ``epochs``
empty, plus ``study``, ``params``, ``tables`` and ``curves``), and ``python -m suite report``
puts the study's own table on its page (`suite/report/page.py`).

A study is a module named in STUDIES that provides

    Params                   frozen dataclass: the study's [study] keys, types and defaults
    check(params, where)     checks of meaning, raising UserError that names `where`.key
    run(params, seed, device, progress, desc) -> dict
                             {"summary": {...}, "tables": {...}, "curves": {...}}, plain JSON data
                             (progress: show a bar named `desc`)
    render(records, baselines) -> str
                             the markdown of its report from completed records (pandas DataFrame
                             of the spec's baselines file, or None)
    plot(records) -> Figure | None   (optional) a matplotlib figure shown beside the tables
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from suite.typed import build

STUDIES = {
    "quantization_error": "suite.studies.quantization_error",
    "gradient_fidelity": "suite.studies.gradient_fidelity",
    "memory": "suite.studies.memory",
    "deep_compression": "suite.studies.deep_compression",
    "tt_layer": "suite.studies.tt_layer",
    "sparse_crossover": "suite.studies.sparse_crossover",
    "low_rank": "suite.studies.low_rank",
    "lowbit_cost": "suite.studies.lowbit_cost",
}


def study_module(name: str) -> ModuleType:
    return importlib.import_module(STUDIES[name])


def params_for(spec, variant) -> Any:
    """The study's `Params` for one variant: [study] (profile and --set applied), then the
    variant's own ``study = {...}`` table; unknown keys and wrong types are UserErrors."""
    cls = study_module(spec.study.name).Params
    base = build(cls, spec.study.params, f"{spec.path}: study")  # errors in [study] itself name it
    if not variant.study:
        return base
    return build(cls, {**spec.study.params, **variant.study}, f"{spec.path}: variants.{variant.name}.study")


def check(spec) -> None:
    """Every variant's parameters: types (via `Params`) and meaning (the study's `check`)."""
    mod = study_module(spec.study.name)
    for v in spec.variants:
        params = params_for(spec, v)
        where = f"{spec.path}: " + (f"variants.{v.name}.study" if v.study else "study")
        if hasattr(mod, "check"):
            mod.check(params, where)
