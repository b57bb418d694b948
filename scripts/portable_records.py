"""Rewrite run records made before records were portable, once: machine paths become the relative
forms the suite now writes, and the configuration hash is recomputed by the one rule of
`suite.records.run_config`. Every number is left untouched (the script checks that).

    python scripts/portable_records.py [FOLDER ...]      (default: results/)

- ``spec.path`` (and ``spec.resolved.path``): ``.../reproductions/NAME.toml`` -> ``reproductions/NAME.toml``;
- ``data.path``: relative to the data root it was found in (``MNIST/raw``), with ``data.root`` naming
  that root; the embedded MNIST subset relative to the package; synthetic data relative to the cache;
- ``spec.config_hash``: recomputed by the one rule, settings at their default left out;
- ``data.test_file``: relative to the data root; ``data.*_cache``: relative to the decoded-image cache;
- ``spec.resolved.table_columns`` (added since; the measured figures a table shows): the spec's own,
  where the record has none;
- the spec's descriptive text (``title``, ``paper``, ``deviations``, ``profile_note``) as the spec
  file words it now, where the record ran the spec's current configuration (its hash is the one
  the spec gives today): wording only, as the tables show it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suite.records import config_hash, flat, record_config  # noqa: E402
from suite.spec.schema import defaults  # noqa: E402

ABSOLUTE = re.compile(r"^/")


def _spec_path(path: str) -> str:
    if ABSOLUTE.match(path) and "/reproductions/" in path:
        return "reproductions/" + path.rsplit("/reproductions/", 1)[1]
    return path


def _data(data: dict) -> dict:
    out = dict(data)
    path = out.get("path") or ""
    if "/suite/data/embedded/" in path:
        out["path"], out["root"] = "suite/data/embedded/" + path.rsplit("/suite/data/embedded/", 1)[1], "package"
    elif path.startswith("generated (") and " in /" in path:
        head, where = path.split(" in /", 1)
        out["path"], out["root"] = f"{head} in {'synthetic/' + where.rsplit('/synthetic/', 1)[1]}", "cache"
    elif ABSOLUTE.match(path):
        # a data root: the folder holding the dataset's own folder (MNIST/, cifar-10-batches-py/, ...)
        name = {"raw": "MNIST/raw"}.get(Path(path).name, Path(path).name)
        out["path"], out["root"] = name, out.get("root", "SUITE_DATA_DIR")
    if ABSOLUTE.match(out.get("test_file") or ""):
        test = Path(out["test_file"])
        out["test_file"] = f"{test.parent.name}/{test.name}"
    for key in ("train_cache", "val_cache"):
        if ABSOLUTE.match(out.get(key) or ""):
            out[key] = Path(out[key]).name
    return out


def _table_columns(name: str) -> list[str]:
    import tomllib

    path = ROOT / "reproductions" / f"{name}.toml"
    return tomllib.loads(path.read_text()).get("table_columns", []) if path.exists() else []


TEXT = ("title", "paper", "deviations", "profile_note")


def _current_text(rec: dict) -> dict | None:
    """The spec's descriptive text today, if the record ran the spec's current configuration."""
    from suite.errors import UserError
    from suite.records import run_config
    from suite.spec import load_spec

    path = ROOT / "reproductions" / f"{rec['spec']['name']}.toml"
    try:
        spec = load_spec(path, rec["spec"]["profile"], rec["spec"]["resolved"].get("overrides") or {})
    except (UserError, OSError):
        return None
    resolved = spec.resolved()
    if config_hash(run_config(resolved, rec["variant"], rec.get("data"), defaults())) != rec["spec"]["config_hash"]:
        return None
    return {k: resolved[k] for k in TEXT}


def portable(record: dict) -> dict:
    rec = json.loads(json.dumps(record))
    resolved = rec["spec"].get("resolved", {})
    if "table_columns" not in resolved and _table_columns(rec["spec"]["name"]):
        resolved["table_columns"] = _table_columns(rec["spec"]["name"])
    rec["spec"]["path"] = _spec_path(rec["spec"].get("path", ""))
    if "path" in rec["spec"].get("resolved", {}):
        rec["spec"]["resolved"]["path"] = _spec_path(rec["spec"]["resolved"]["path"])
    if isinstance(rec.get("data"), dict):
        rec["data"] = _data(rec["data"])
    rec["spec"]["config_hash"] = config_hash(record_config(rec, defaults()))
    if (text := _current_text(rec)) is not None:
        rec["spec"]["resolved"].update(text)
    return rec


def _numbers(record: dict) -> dict:
    return {k: v for k, v in flat({"epochs": record.get("epochs"), "summary": record.get("summary"),
                                   "tables": record.get("tables")}).items() if not isinstance(v, str)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path, default=[ROOT / "results"])
    changed = 0
    for folder in ap.parse_args().folders:
        for path in sorted(folder.rglob("records/**/*.json")):
            record = json.loads(path.read_text())
            new = portable(record)
            assert _numbers(new) == _numbers(record), path  # only paths and the hash change
            if new != record:
                path.write_text(json.dumps(new, indent=1) + "\n")
                changed += 1
    print(f"{changed} record(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
