"""Makes sure the shared environment `.tox/torch` exists and is current (`tox -e torch --notest`),
with uv doing the installing (tox-uv): uv links torch and its wheels (5.5 GB) from its cache in
seconds, where pip unpacks them again for every fresh checkout (about two minutes).

uv does not read pip's configuration. On machines whose packages come from local indexes or
folders (pip.conf's index-url, extra-index-url, find-links, constraint), uv would look on PyPI
instead, and download torch, or fail offline. So pip's settings are handed to uv here as uv's
environment variables; a UV_* variable already set wins.

    python scripts/torch_env.py [TOX_INI_FOLDER]     (the runner envs' commands_pre in tox.ini)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# pip's setting -> (uv's variable, separator uv expects between several values)
PIP_TO_UV = {
    "index-url": ("UV_INDEX_URL", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
    "timeout": ("UV_HTTP_TIMEOUT", " "),
    "default-timeout": ("UV_HTTP_TIMEOUT", " "),
}


def pip_settings() -> dict[str, list[str]]:
    """pip's effective settings for `pip install`, from `pip config list` (`section.key='value'`
    lines): PIP_* variables (section `:env:`) win over the files' `install` section, which wins
    over `global`, as in pip."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}  # no pip here: nothing to hand over
    rank = {"global": 0, "install": 1, ":env:": 2}
    found = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if sep and section in rank and rank[section] >= found.get(key, (-1, None))[0]:
            found[key] = (rank[section], value.strip().strip("'\"").split())
    return {key: values for key, (_, values) in found.items()}


def uv_environment(settings: dict[str, list[str]], environ: dict[str, str]) -> dict[str, str]:
    """The UV_* variables that make uv find what pip finds; those already in `environ` are kept."""
    added = {}
    for key, values in settings.items():
        if key in PIP_TO_UV and values:
            variable, separator = PIP_TO_UV[key]
            if variable not in environ and variable not in added:
                added[variable] = separator.join(values)
    if settings.get("no-index") and settings["no-index"][0].lower() in ("1", "true", "yes", "on"):
        added.setdefault("UV_NO_INDEX", "1")
    return added


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    env = os.environ | uv_environment(pip_settings(), dict(os.environ))
    return subprocess.run([sys.executable, "-m", "tox", "-c", str(root), "-e", "torch", "--notest", "-q"],
                          env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
