"""Where the project's folders are (reproductions/, baselines/, results/), and paths as records
store them: relative, never a machine's absolute path."""

from __future__ import annotations

import os
import re
from pathlib import Path

from suite import settings
from suite.errors import UserError

# Names that become folder and file names under the results folder (spec, profile and variant
# names, a baselines file): no separators, no "..", no dot first.
SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")
MAX_NAME = 120


def safe_name(name: str) -> bool:
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name and len(name) <= MAX_NAME


def project_root() -> Path:
    """$SUITE_ROOT, else the current directory if it holds reproductions/, else the source checkout."""
    if settings.project_root() is not None:
        return settings.project_root()
    cwd = Path.cwd()
    if (cwd / "reproductions").is_dir():
        return cwd
    return Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    return settings.results_dir() or project_root() / "results"


def baselines_dir() -> Path:
    return project_root() / "baselines"


def reproductions_dir() -> Path:
    return project_root() / "reproductions"


def portable_path(path: str | Path, root: str | Path | None = None) -> str:
    """`path` relative to `root` (default: the project), as a record may store it; a path outside
    it keeps only its last part, marked so: records hold no machine's absolute paths."""
    path = Path(path)
    base = Path(root) if root is not None else project_root()
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except (ValueError, OSError):
        return f"(outside {'the project' if root is None else base.name})/{path.name}"


def writable_folder(path: str | Path, what: str) -> Path:
    """`path` as a folder the suite may write into (it need not exist yet): not a file, under no
    file, and writable (not on a read-only filesystem); else a one-line UserError naming `what`
    (the option or variable it came from)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise UserError(f"{what} {path}: a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable (read-only or another user's); "
                        "choose another folder")
    return path
