"""scripts/torch_env.py: uv, which does not read pip's configuration, is handed pip's settings."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "torch_env.py"
spec = importlib.util.spec_from_file_location("torch_env", SCRIPT)
torch_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_env)


def test_pip_settings_become_uv_variables_with_uvs_separators():
    settings = {"extra-index-url": ["file:///a/simple", "file:///b/simple"], "find-links": ["/w1", "/w2"],
                "constraint": ["/c.txt"], "index-url": ["https://mirror/simple"], "disable-pip-version-check": ["1"]}
    assert torch_env.uv_environment(settings, {}) == {
        "UV_EXTRA_INDEX_URL": "file:///a/simple file:///b/simple", "UV_FIND_LINKS": "/w1,/w2",
        "UV_CONSTRAINT": "/c.txt", "UV_INDEX_URL": "https://mirror/simple"}


def test_a_uv_variable_already_set_wins_and_no_index_carries_over():
    got = torch_env.uv_environment({"find-links": ["/w"], "no-index": ["true"]}, {"UV_FIND_LINKS": "/mine"})
    assert got == {"UV_NO_INDEX": "1"}


def test_pip_config_list_is_read_with_pips_precedence(monkeypatch):
    listing = ("global.find-links='/global'\n:env:.find-links='/from-env'\ninstall.constraint='/install.txt'\n"
               "global.constraint='/global.txt'\nglobal.extra-index-url='file:///a file:///b'\n")

    class Done:
        stdout = listing

    monkeypatch.setattr(torch_env.subprocess, "run", lambda *a, **k: Done())
    assert torch_env.pip_settings() == {"find-links": ["/from-env"], "constraint": ["/install.txt"],
                                        "extra-index-url": ["file:///a", "file:///b"]}
