"""Where the project's folders are (reproductions/, baselines/, results/), and paths as records
store them: relative, never a machine's absolute path."""

from __future__ import annotations

from pathlib import Path

from suite import settings


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
