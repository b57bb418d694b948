"""Hostile records and references. A malformed record is named under the table and the others
are tabulated (never a traceback, never no table); a reference that cannot be read fails the
check with one line; tables count distinct seeds; a full disk or a read-only folder during a
report is one line and leaves no temporary or empty file."""

import copy
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite import records as records_module
from suite.cli import main
from suite.errors import UserError
from suite.report import report

ROOT = Path(__file__).resolve().parent.parent
SPEC, PROFILE = "binaryconnect-mnist", "smoke"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Genuine records: the three variants of binaryconnect-mnist's smoke profile (seed 1) and the
    two of quantization-error's (a study)."""
    out = tmp_path_factory.mktemp("made") / "results"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["run", SPEC, "--profile", PROFILE, "--quiet", "--no-report", "--set", "data.source=embedded",
                     "--results-dir", str(out)]) == 0
        assert main(["run", "quantization-error", "--profile", "smoke", "--quiet", "--no-report", "--device", "cpu",
                     "--results-dir", str(out)]) == 0
    finally:
        os.chdir(cwd)
    return out


@pytest.fixture
def results(made, tmp_path, monkeypatch) -> Path:
    out = tmp_path / "results"
    shutil.copytree(made / "records", out / "records")
    monkeypatch.chdir(ROOT)
    return out


def _file(results: Path, variant: str, spec: str = SPEC, profile: str = PROFILE) -> Path:
    (path,) = (results / "records" / spec / profile).glob(f"*-{variant}-s*.json")
    return path


def _edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def report_lines(capsys, results: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["report", "--results-dir", str(results), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def _set(*keys, value):
    def change(record):
        node = record
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _drop(*keys):
    def change(record):
        node = record
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


SHAPES = {  # the 12 shapes first, then more of each kind
    "spec-empty": (_set("spec", value={}), "spec.name: missing"),
    "summary-empty": (_set("summary", value={}), "summary.epochs_run: missing"),
    "time-null": (_set("summary", "median_epoch_seconds", value=None), "summary.median_epoch_seconds: expected"),
    "run-id-integer": (_set("run_id", value=5), "run_id: expected a string, got int"),
    "json-nested-100000-deep": (None, "unreadable (RecursionError"),
    "json-nested-70-deep": (_set("extra", value=json.loads("[" * 70 + "]" * 70)), "nested more than 64 levels"),
    "epochs-null": (_set("epochs", value=None), "epochs: expected an array, got null"),
    "epoch-a-string": (_set("epochs", value=["x"]), "epochs[0]: expected an object"),
    "provenance-empty": (_set("provenance", value={}), "provenance.device: missing"),
    "model-null": (_set("model", value=None), "model: expected an object, got null"),
    "data-a-list": (_set("data", value=[]), "data: expected an object"),
    "seed-text": (_set("seed", value="1"), "seed: expected an integer, got str '1'"),
    "status-unknown": (_set("status", value="ok"), "status: unknown 'ok'"),
    "variant-integer": (_set("variant", value=3), "variant: expected a string"),
    "schema-2": (_set("schema", value=2), "schema 2, this suite reads 1"),
    "schema-text": (_set("schema", value="1"), "schema: expected an integer"),
    "train-loss-text": (lambda r: r["epochs"][0].update(train_loss="x"), "epochs[0].train_loss: expected a number"),
    "test-error-infinite": (lambda r: r["epochs"][0].update(test_error=float("inf")), "epochs[0].test_error"),
    "val-error-text": (lambda r: r["epochs"][0].update(val_error="x"), "epochs[0].val_error"),
    "epoch-number-float": (lambda r: r["epochs"][0].update(epoch=1.5), "epochs[0].epoch: expected an integer"),
    "peak-cuda-text": (_set("summary", "peak_cuda_mb", value="x"), "summary.peak_cuda_mb"),
    "saving-text": (_set("model", "weight_memory_saving", value="x"), "model.weight_memory_saving"),
    "memory-bytes-missing": (_drop("model", "weight_memory_bytes"), "model.weight_memory_bytes: missing"),
    "epochs-run-text": (_set("summary", "epochs_run", value="2"), "summary.epochs_run: expected an integer"),
    "test-error-null": (_set("summary", "test_error_at_best_val", value=None), "summary.test_error_at_best_val"),
    "completed-without-epochs": (_set("epochs", value=[]), "epochs: a completed training run with none"),
    "name-escapes": (_set("spec", "name", value="../../x"), "spec.name: expected a safe name"),
    "profile-escapes": (_set("spec", "profile", value="../x"), "spec.profile: expected a safe name"),
    "name-other-folder": (_set("spec", "name", value="bnn-mnist"), "in the folder of binaryconnect-mnist/smoke but"),
    "title-missing": (_drop("spec", "resolved", "title"), "spec.resolved.title: missing"),
    "baselines-escapes": (_set("spec", "resolved", "baselines", value="../../etc/passwd"), "spec.resolved.baselines"),
    "deviations-text": (_set("spec", "resolved", "deviations", value="abc"), "spec.resolved.deviations"),
    "overrides-list": (_set("spec", "resolved", "overrides", value=[1]), "spec.resolved.overrides"),
    "variants-a-table": (_set("spec", "resolved", "variants", value={}), "spec.resolved.variants: expected an array"),
    "variant-entry-text": (_set("spec", "resolved", "variants", value=["x"]), "spec.resolved.variants[0]"),
    "variant-baseline-list": (lambda r: r["spec"]["resolved"]["variants"][0].update(baseline=[1]),
                              "spec.resolved.variants[0].baseline"),
    "table-columns-text": (_set("spec", "resolved", "table_columns", value="abc"), "spec.resolved.table_columns"),
    "reference-variant-list": (_set("spec", "resolved", "reference_variant", value=["x"]),
                               "spec.resolved.reference_variant"),
    "grid-cells-bad": (_set("spec", "resolved", "grid_cells", value=[{"grid": 3}]), "spec.resolved.grid_cells[0]"),
    "batch-size-text": (_set("spec", "resolved", "train", "batch_size", value="big"),
                        "spec.resolved.train.batch_size"),
    "n-train-text": (_set("data", "n_train", value="x"), "data.n_train"),
    "malloc-integer": (_set("provenance", "malloc", value=1), "provenance.malloc"),
    "study-integer": (_set("study", value=3), "study: expected a string"),
    "not-an-object": (lambda r: None, None),  # replaced by a list below
}


@pytest.mark.parametrize("case", SHAPES, ids=list(SHAPES))
def test_a_malformed_record_is_named_and_the_others_tabulated(case, results, capsys):
    change, needle = SHAPES[case]
    path = _file(results, "det")
    if case == "json-nested-100000-deep":
        path.write_text("[" * 100000 + "]" * 100000)
    elif case == "not-an-object":
        path.write_text("[1, 2, 3]")
        needle = "expected a JSON object, got an array"
    else:
        _edit(path, change)
    code, lines = report_lines(capsys, results, "--no-plots")
    assert code == 0, lines
    page = (results / f"{SPEC}.{PROFILE}.md").read_text()
    relative = path.relative_to(results).as_posix()
    note = next(line for line in page.splitlines() if f"Skipped unreadable record {relative}" in line)
    assert needle in note, note
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    assert any("float" in row for row in rows) and any("stochastic" in row for row in rows)  # the others tabulated


def test_the_plots_survive_what_the_tables_survive(results, capsys):
    _edit(_file(results, "det"), lambda r: r["epochs"][0].update(val_error="x"))
    _edit(_file(results, "stoch"), _set("summary", value={}))
    code, lines = report_lines(capsys, results)
    assert code == 0 and (results / f"{SPEC}.{PROFILE}.png").stat().st_size > 1000


def test_only_malformed_records_is_one_line(results, capsys):
    for variant in ("float", "det", "stoch"):
        _edit(_file(results, variant), _set("spec", value={}))
    code, lines = report_lines(capsys, results, SPEC)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: no usable records; unreadable: ")


def test_garbage_files_among_records(results, capsys, monkeypatch):
    folder = results / "records" / SPEC / PROFILE
    (folder / "binary.json").write_bytes(bytes(range(256)))
    (folder / "empty.json").write_bytes(b"")
    (folder / "not-utf8.json").write_bytes(b'{"a": "\xff"}')
    limit = max(p.stat().st_size for p in folder.glob("*.json")) + 1  # (64 MiB in use: a smaller one here)
    (folder / "huge.json").write_text(json.dumps({"padding": "x" * limit}))
    (folder / "folder.json").mkdir()
    monkeypatch.setattr(records_module, "MAX_RECORD_BYTES", limit)
    code, lines = report_lines(capsys, results, "--no-plots")
    page = (results / f"{SPEC}.{PROFILE}.md").read_text()
    assert code == 0
    for name, why in [("binary.json", "unreadable"), ("empty.json", "unreadable (JSONDecodeError"),
                      ("not-utf8.json", "unreadable"), ("huge.json", "larger than 0 MiB"),
                      ("folder.json", "unreadable")]:
        assert f"Skipped unreadable record records/{SPEC}/{PROFILE}/{name}: {why}" in page, name


# --------------------------------------------------------------------- hypothesis: any mutation of a record

def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
                      st.sampled_from(["../x", "", "completed", "det", "nan", "/etc/passwd", "a" * 300]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_of_a_record_is_named_or_tabulated(made, data):
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        shutil.copytree(made / "records" / SPEC, results / "records" / SPEC)
        path = _file(results, data.draw(st.sampled_from(["float", "det", "stoch"])))
        record = json.loads(path.read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            where = data.draw(st.sampled_from(list(_paths(record))))
            node = record
            for key in where[:-1]:
                node = node[key]
            if data.draw(st.booleans()) and isinstance(node, dict):
                del node[where[-1]]
            else:
                node[where[-1]] = data.draw(json_value)
        path.write_text(json.dumps(record))
        try:
            (page,) = report(results, SPEC, plots=data.draw(st.booleans()))
        except UserError as e:  # every record unusable: one line
            assert "\n" not in str(e)
            return
        text = page.read_text()
        why = records_module.read_record(path)[1]
        assert why is None or f"{path.relative_to(results).as_posix()}: " in text


# --------------------------------------------------------------------- studies

def test_a_study_record_its_render_cannot_read_is_named(results, capsys):
    gaussian = _file(results, "gaussian", "quantization-error", "smoke")
    _edit(gaussian, lambda r: r["tables"].update(cosine=[1, 2]))
    heavy = _file(results, "heavy-tailed", "quantization-error", "smoke")
    code, lines = report_lines(capsys, results, "quantization-error", "--no-plots")
    page = (results / "quantization-error.smoke.md").read_text()
    assert code == 0 and "the study's table cannot read it (AttributeError" in page
    assert heavy.name not in page.split("Skipped")[-1]  # the other one is tabulated
    _edit(heavy, _set("study", value="nope"))
    code, lines = report_lines(capsys, results, "quantization-error", "--no-plots")
    assert code == 2 and len(lines) == 1 and "study: unknown 'nope'" in lines[0]


def test_study_records_that_do_not_fit_together_are_one_line(results, capsys):
    gaussian = _file(results, "gaussian", "quantization-error", "smoke")
    copy_path = gaussian.with_name(gaussian.name.replace("-gaussian-s0", "-gaussian-s7"))
    shutil.copy(gaussian, copy_path)
    _edit(copy_path, _set("seed", value=7))
    _edit(copy_path, lambda r: r["tables"]["cosine"].update({"99": {"99": 0.5}}))  # a cell no other seed has
    code, lines = report_lines(capsys, results, "quantization-error", "--no-plots")
    assert code in (0, 2) and len(lines) == 1
    if code == 2:
        assert "the study's records cannot be tabulated together" in lines[0]


# --------------------------------------------------------------------- distinct seeds

def test_a_seed_run_twice_counts_once_and_is_named(results, capsys):
    det = _file(results, "det")
    twin = det.with_name("20990101T000000Z-abcdef-det-s1.json")
    shutil.copy(det, twin)
    _edit(twin, _set("run_id", value="20990101T000000Z-abcdef"))
    code, _ = report_lines(capsys, results, "--no-plots")
    page = (results / f"{SPEC}.{PROFILE}.md").read_text()
    header = next(line for line in page.splitlines() if line.startswith("| variant"))
    row = next(line for line in page.splitlines() if line.startswith("| BinaryConnect deterministic"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")], strict=True))
    assert code == 0 and cells["n"] == "1" and "±" not in cells["ours (%)"]
    assert "det: 2 records of seed 1; one counts (the newest completed), so n counts distinct seeds." in page


# --------------------------------------------------------------------- a full disk, a read-only folder

@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_write_that_fails_during_a_report_is_one_line(failure, results, capsys, monkeypatch):
    assert report_lines(capsys, results)[0] == 0
    page = results / f"{SPEC}.{PROFILE}.md"
    before = page.read_text()

    def refuse(*args, **kwargs):
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(os, "fsync", refuse)
    code, lines = report_lines(capsys, results)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and os.strerror(failure) in lines[0]
    assert page.read_text() == before  # the old page stays whole
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp") or (p.is_file() and not p.stat().st_size)]


# --------------------------------------------------------------------- references

@pytest.fixture
def reference(made, tmp_path) -> Path:
    """A reference of binaryconnect-mnist's smoke profile made from the genuine records (seed 1)."""
    root = tmp_path / "reference"
    folder = root / SPEC / PROFILE
    (folder / "records").mkdir(parents=True)
    for path in (made / "records" / SPEC / PROFILE).glob("*.json"):
        shutil.copy(path, folder / "records" / path.name)
    (folder / "reference.json").write_text(json.dumps({"seeds": [1], "threads": 1, "timing": {}}))
    return root


def _meta(change):
    def edit(folder: Path):
        meta = json.loads((folder / "reference.json").read_text())
        change(meta)
        (folder / "reference.json").write_text(json.dumps(meta))
    return edit


def _meta_text(text):
    def edit(folder: Path):
        (folder / "reference.json").write_text(text)
    return edit


def _records(change):
    def edit(folder: Path):
        for path in (folder / "records").glob("*.json"):
            _edit(path, change)
    return edit


def _special(make):
    def edit(folder: Path):
        (folder / "reference.json").unlink()
        make(folder / "reference.json")
    return edit


REFERENCES = {
    "records-folder-deleted": (lambda f: shutil.rmtree(f / "records"), "its records do not hold every variant"),
    "seeds-empty": (_meta(lambda m: m.update(seeds=[])), "seeds: expected a non-empty list of integers"),
    "seeds-text": (_meta(lambda m: m.update(seeds=["1"])), "seeds: expected a non-empty list of integers"),
    "seeds-booleans": (_meta(lambda m: m.update(seeds=[True])), "seeds: expected a non-empty list of integers"),
    "seeds-missing": (_meta(lambda m: m.pop("seeds")), "seeds: expected a non-empty list of integers"),
    "seed-not-run": (_meta(lambda m: m.update(seeds=[1, 2])), "its records do not hold every variant for seeds"),
    "threads-zero": (_meta(lambda m: m.update(threads=0)), "threads: expected a positive integer"),
    "threads-boolean": (_meta(lambda m: m.update(threads=True)), "threads: expected a positive integer"),
    "threads-missing": (_meta(lambda m: m.pop("threads")), "threads: expected a positive integer"),
    "timing-a-list": (_meta(lambda m: m.update(timing=[])), "timing: expected"),
    "timing-samples-text": (_meta(lambda m: m.update(timing={"det": {"samples": ["x"]}})), "timing: expected"),
    "timing-samples-negative": (_meta(lambda m: m.update(timing={"det": {"samples": [-1.0]}})), "timing: expected"),
    "timing-unit-zero": (_meta(lambda m: m.update(timing={"det": {"unit_epochs": 0, "samples": [1.0]}})),
                         "timing: expected"),
    "meta-a-list": (_meta_text("[1, 2]"), "expected a JSON object, got list"),
    "meta-a-string": (_meta_text('"reference"'), "expected a JSON object, got str"),
    "meta-empty-object": (_meta_text("{}"), "seeds: expected"),
    "meta-empty-file": (_meta_text(""), "unreadable (JSONDecodeError)"),
    "meta-not-json": (_meta_text("{seeds: [1]"), "unreadable (JSONDecodeError)"),
    "meta-nested-100000-deep": (_meta_text("[" * 100000 + "]" * 100000), "unreadable (RecursionError)"),
    "meta-a-folder": (_special(lambda p: p.mkdir()), "not a regular file"),
    "meta-dev-zero": (_special(lambda p: p.symlink_to("/dev/zero")), "not a regular file"),
    "summaries-empty": (_records(_set("summary", value={})), "summary.epochs_run: missing"),
    "records-spec-empty": (_records(_set("spec", value={})), "spec.name: missing"),
    "record-truncated": (lambda f: [p.write_text(p.read_text()[:100]) for p in (f / "records").glob("*det*")],
                         "unreadable (JSONDecodeError"),
}


@pytest.mark.parametrize("case", REFERENCES, ids=list(REFERENCES))
def test_a_broken_reference_fails_the_check_with_one_line(case, reference, capsys):
    edit, needle = REFERENCES[case]
    edit(reference / SPEC / PROFILE)
    code = main(["check", SPEC, "--reference-dir", str(reference), "--no-timing"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {reference / SPEC / PROFILE}") and needle in lines[0], lines[0]
    assert lines[0].endswith("remake the reference with check --update")


def test_a_reference_folder_that_is_a_file_fails_the_check(reference, capsys):
    folder = reference / SPEC / PROFILE
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    assert main(["check", SPEC, "--reference-dir", str(reference), "--no-timing"]) == 2
    assert "a file where the reference folder should be" in capsys.readouterr().err


def test_the_genuine_reference_is_read(reference):
    from suite.check.reference import read_reference

    attempt = read_reference(reference / SPEC / PROFILE)
    assert attempt is not None and len(attempt.records) == 3 and copy.deepcopy(attempt.meta)["seeds"] == [1]
