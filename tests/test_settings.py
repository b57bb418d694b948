"""Every environment variable the suite reads is read in suite/settings.py and documented in the
README; the few others are a launcher's (torchrun's) or set for child processes."""

import ast
from pathlib import Path

from suite import settings

ROOT = Path(__file__).resolve().parent.parent
# module -> why it may touch os.environ itself
ALLOWED = {"suite/settings.py": "the settings",
           "suite/run/distributed.py": "reads torchrun's own variables (RANK, WORLD_SIZE, LOCAL_RANK, ...)",
           "suite/run/parallel.py": "sets OMP_NUM_THREADS for the cells it starts",
           "suite/check/__init__.py": "sets OMP_NUM_THREADS for the per-spec check processes"}


def _environ_uses(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [n.lineno for n in ast.walk(tree)
            if (isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv", "putenv")
                and isinstance(n.value, ast.Name) and n.value.id == "os")]


def test_only_settings_reads_the_environment():
    offenders = {str(p.relative_to(ROOT)): lines for p in sorted((ROOT / "suite").rglob("*.py"))
                 if (lines := _environ_uses(p)) and str(p.relative_to(ROOT)) not in ALLOWED}
    assert not offenders, f"read environment variables in suite/settings.py: {offenders}"


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in settings.DOCUMENTED if name not in readme]
    assert not missing, f"README.md does not mention {missing}"


def test_settings_are_read_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_FUSED_KERNELS", "off")
    assert settings.fused_kernels_off()
    monkeypatch.setenv("SUITE_FUSED_KERNELS", "1")
    assert not settings.fused_kernels_off()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert settings.cache_dir() == tmp_path / "lowbit-suite"
