"""Reproduction specs: TOML -> typed, validated `Spec`, with profiles and `--set` overrides.

A spec file (``reproductions/NAME.toml``) has these tables; every key is documented in
``reproductions/README.md``::

    name, title, paper, baselines, deviations, reference_variant   # top level
    [data]      dataset, train_size, val_size, test_size, preprocessing, source, test_set
    [model]     name + the builder's own keyword arguments
    [train]     method, loss, optimizer, lr_start, lr_end, lr_schedule, batch_size, epochs, seeds, ...
    [variants.NAME]   quantizers, latent-weight options, baseline, label, per-variant training overrides
    [grid]      axes of named points whose combinations become variants (grid.py)
    [profiles.NAME]   scaled_down, note, run_variants, and any of the keys above as dotted overrides
    [study]     a study spec (suite/studies/) instead of [data], [model], [train]

Resolution order (load.py): file -> profile overrides -> ``--set key=value`` overrides; then the
checks of meaning (validate.py). Every error names the file and the key, and suggests the nearest
valid key for a typo. schema.py holds the dataclasses.
"""

from suite.spec.load import check_name, find_spec, load_spec, parse_set, read_toml
from suite.spec.schema import PROFILES, DataSpec, ModelSpec, Spec, StudySpec, TrainSpec, VariantSpec

__all__ = ["PROFILES", "DataSpec", "ModelSpec", "Spec", "StudySpec", "TrainSpec", "VariantSpec", "check_name",
           "find_spec", "load_spec", "parse_set", "read_toml"]
