"""A spec's [grid]: every combination of one point per axis becomes a variant (DoReFa-Net's
bit-widths x models), with its baseline and label from templates."""

from __future__ import annotations

import itertools
from typing import Any

from suite.errors import UserError
from suite.typed import check_type, show

TEMPLATES = ("baseline", "label")  # keys of [grid] that are templates, not axes


def grid_cells(grid: Any, where: str) -> list[tuple[str, dict[str, str], dict]]:
    """Expand a [grid] table into (variant name, {axis: point}, variant table) cells.

    Each axis is a table of named points, each point a table of variant keys; a cell merges one
    point of every axis (in the axes' order) and is named "point1.point2...". The templates
    ``grid.baseline`` and ``grid.label`` are formatted with the cell's points ({axis} -> point).
    """
    if grid is None:
        return []
    if not isinstance(grid, dict):
        raise UserError(f"{where}: expected a table of axes, got {type(grid).__name__} {grid!r}")
    axes = {k: v for k, v in grid.items() if k not in TEMPLATES}
    if not axes:
        raise UserError(f"{where}: at least one axis (grid.AXIS.POINT = {{ variant keys }})")
    for axis, points in axes.items():
        if not isinstance(points, dict) or not points:
            raise UserError(f"{where}.{show(axis)}: expected a table of named points, each a table of variant keys")
        for point, table in points.items():
            if not point or not all(c.isalnum() or c in "_+-" for c in point):
                raise UserError(f"{where}.{show(axis)}.{show(point)}: point names may hold letters, digits, "
                                "'_', '+' and '-' only (they make variant names and file names)")
            if not isinstance(table, dict):
                raise UserError(f"{where}.{axis}.{point}: expected a table of variant keys, got {table!r}")
    templates = {k: check_type(grid[k], str, f"{where}.{k}") for k in TEMPLATES if k in grid}
    cells = []
    for combo in itertools.product(*[[(axis, p) for p in points] for axis, points in axes.items()]):
        coords = dict(combo)
        table: dict = {}
        for axis, point in combo:
            table = deep_merge(table, axes[axis][point])
        for key, template in templates.items():
            try:
                table[key] = template.format(**coords)
            except (KeyError, IndexError, ValueError) as e:
                raise UserError(f"{where}.{key}: template {template!r} names no axis {e}; "
                                f"axes: {', '.join(axes)}") from None
        cells.append((".".join(p for _, p in combo), coords, table))
    return cells



def deep_merge(base: dict, over: dict) -> dict:
    """`over` merged into `base`, tables recursively (neither is changed)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
