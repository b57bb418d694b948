"""The reproductions in reproductions/ at a glance (`python -m suite list`): one row per spec,
read from its TOML without loading it; a spec that cannot be read shows its error in its row."""

from __future__ import annotations

from pathlib import Path

from suite.errors import UserError
from suite.paths import reproductions_dir
from suite.spec.load import read_toml


def _variants(raw: dict) -> str:
    variants = raw.get("variants", {})
    names = ", ".join(variants) if isinstance(variants, dict) else ""
    grid = raw.get("grid", {})
    axes = {k: v for k, v in grid.items() if isinstance(v, dict)} if isinstance(grid, dict) else {}
    if axes:  # a grid: its axes and sizes, not every cell
        names = ", ".join(filter(None, [names, "grid " + " x ".join(f"{a} ({len(p)})" for a, p in axes.items())]))
    return names


def catalog(root: Path | None = None) -> list[dict]:
    rows = []
    for path in sorted((root or reproductions_dir()).glob("*.toml")):
        try:
            raw = read_toml(path)
        except UserError as e:
            rows.append({"spec": path.stem, "title": f"(cannot be read: {e})", "profiles": "", "variants": ""})
            continue
        profiles = raw.get("profiles", {})
        rows.append({"spec": path.stem, "title": str(raw.get("title", "")),
                     "profiles": ", ".join(profiles) if isinstance(profiles, dict) else "", "variants": _variants(raw)})
    return rows
