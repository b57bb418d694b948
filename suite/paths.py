"""Where the project's folders are: reproductions/, baselines/, results/."""

import os
from pathlib import Path


def project_root() -> Path:
    """$SUITE_ROOT, else the current directory if it holds reproductions/, else the source checkout."""
    if os.environ.get("SUITE_ROOT"):
        return Path(os.environ["SUITE_ROOT"])
    cwd = Path.cwd()
    if (cwd / "reproductions").is_dir():
        return cwd
    return Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    return Path(os.environ.get("SUITE_RESULTS_DIR") or project_root() / "results")


def baselines_dir() -> Path:
    return project_root() / "baselines"
