"""Every path the suite writes stays under the results folder: records, checkpoints and their
locks, tables and plots, the logs of --workers; names that would lead outside are refused."""

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suite.cli import main
from suite.paths import safe_name
from suite.records import inside, record_path
from suite.run import execute
from suite.run.checkpoint import checkpoint_path, clean_debris
from suite.run.parallel import Cell, _log_path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".torch_ext", "__pycache__", ".pytest_cache", ".hypothesis", ".tox", ".ruff_cache"}


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime) of every file under `folder` (caches and the repository's own data aside)."""
    out = {}
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SKIP]
        for name in files:
            path = Path(base, name)
            try:
                st_ = path.stat()
            except OSError:
                continue
            out[str(path)] = (st_.st_size, st_.st_mtime_ns)
    return out


def test_run_interrupt_resume_workers_and_report_write_only_under_the_results_folder(tmp_path, monkeypatch):
    results = tmp_path / "out" / "results"
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before, tmp_before = _files(ROOT), _files(tmp_path)
    smoke = ["--profile", "smoke", "--quiet", "--set", "data.source=embedded", "--results-dir", str(results),
             "--set", "name=edge.case+name-1_x"]
    original = execute.train_epochs

    def stop_after_first_checkpoint(trainer, run, record, progress, save_progress):
        def save_then_stop():
            save_progress()
            raise KeyboardInterrupt

        original(trainer, run, record, progress, save_then_stop)

    with monkeypatch.context() as m:  # an interrupted run: its checkpoint and lock are written too
        m.setattr(execute, "train_epochs", stop_after_first_checkpoint)
        assert main(["run", "binaryconnect-mnist", *smoke, "--variant", "det", "--set", "train.epochs=2"]) == 130
    assert list((results / "checkpoints").rglob("*.pt")) and list((results / "checkpoints").rglob("*.lock"))
    assert main(["run", "binaryconnect-mnist", *smoke, "--variant", "det", "--set", "train.epochs=2"]) == 0
    assert main(["run", "binaryconnect-mnist", *smoke, "--variant", "float", "--workers", "1"]) == 0
    assert main(["report", "--results-dir", str(results)]) == 0
    written = {p for p, v in _files(ROOT).items() if before.get(p) != v}
    assert written == set(), written  # nothing in the project (its results/ included) changed
    outside = {p for p, v in _files(tmp_path).items() if tmp_before.get(p) != v and not p.startswith(str(results))
               and not p.startswith(str(tmp_path / "cache"))}
    assert outside == set(), outside
    names = {p.relative_to(results).parts[0] for p in results.rglob("*") if p.is_file()}
    assert names == {"records", "logs", "edge.case+name-1_x.smoke.md", "edge.case+name-1_x.smoke.png"}
    assert list((results / "logs").rglob("*.log"))
    assert not [p for p in results.rglob("*") if p.suffix in (".pt", ".lock", ".tmp")]  # completed: nothing left


part = st.text(max_size=12)


@given(spec=part, profile=part, variant=part, run_id=part)
def test_paths_the_suite_builds_stay_inside_or_are_refused(tmp_path_factory, spec, profile, variant, run_id):
    results = tmp_path_factory.getbasetemp() / "results"
    for build in (lambda: record_path(results, spec, profile, variant, 1, run_id),
                  lambda: checkpoint_path(results, spec, profile, variant, 1, run_id),
                  lambda: _log_path(results, spec, profile, Cell(variant, 1, ())),
                  lambda: inside(results, f"{spec}.{profile}.md")):
        try:
            path = build()
        except ValueError:  # refused: never for names a spec may have
            assert not all(safe_name(n) for n in (spec, profile, variant, run_id))
            continue
        assert os.path.normpath(path).startswith(str(results) + os.sep)
        assert Path(os.path.normpath(path)).parent.resolve().is_relative_to(results.resolve())


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/abs", "a\\b", "a\0b", ""])
def test_inside_refuses_parts_that_lead_out(tmp_path, name):
    with pytest.raises(ValueError):
        inside(tmp_path, "records", name)
    assert clean_debris(tmp_path, "spec", "profile") == []  # no folder yet: nothing to clean
