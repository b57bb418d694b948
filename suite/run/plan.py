"""A spec's runs: one per variant x seed (a grid's cells are variants), variant-major."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import UserError
from suite.spec import Spec, VariantSpec


@dataclass(frozen=True)
class Run:
    spec: Spec
    variant: VariantSpec
    seed: int


def plan(spec: Spec, variants: list[str] | None = None, seeds: list[int] | None = None) -> list[Run]:
    """Variant-major list of runs; `variants` and `seeds` narrow or replace the spec's own."""
    chosen = [spec.variant(v) for v in dict.fromkeys(variants)] if variants else list(spec.variants)
    if seeds is not None:
        bad = [s for s in seeds if not 0 <= s < 2**63]
        if bad:
            raise UserError(f"--seed {bad[0]}: outside 0..2^63-1")
    return [Run(spec, v, s) for v in chosen for s in (dict.fromkeys(seeds) if seeds else spec.seeds)]
