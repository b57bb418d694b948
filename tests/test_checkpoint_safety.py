"""Checkpoints are untrusted input (a results folder may be shared): they are loaded without
running code, a file that does not load or lacks the expected shape is skipped with one line, a
checkpoint of this run that no longer fits says so in one line and --fresh removes it, and the
debris of runs that are gone (lock files, partial temporary files) is cleaned, never a live run's.
"""

import builtins
import errno
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.data.cifar10 import read_batch
from suite.errors import UserError
from suite.records import write_atomic
from suite.run import checkpoint, execute

RUN = ["run", "binaryconnect-mnist", "--profile", "smoke", "--quiet", "--no-report", "--variant", "det",
       "--set", "data.source=embedded", "--set", "train.epochs=2"]
FOLDER = ("checkpoints", "binaryconnect-mnist", "smoke")
PLANTED = "20991231T235959Z-abcdef-det-s1"  # sorts after every real run id: the first one tried


class Planted:
    """Unpickling this calls open(marker, "w"): the file appears if a load runs the pickle's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def run(capsys, *extra: str) -> tuple[int, list[str]]:
    code = main([*RUN, *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").rglob("*.json"))]


def interrupt_after_first_checkpoint(monkeypatch, results: Path, *extra: str) -> Path:
    """Run RUN + extra, interrupted (Ctrl-C) right after its first epoch's checkpoint; that checkpoint."""
    original = execute.train_epochs

    def stop_after_first_checkpoint(trainer, run_, record, progress, save_progress):
        def save_then_stop():
            save_progress()
            raise KeyboardInterrupt

        original(trainer, run_, record, progress, save_then_stop)

    with monkeypatch.context() as m:
        m.setattr(execute, "train_epochs", stop_after_first_checkpoint)
        assert main([*RUN, *extra]) == 130
    (path,) = results.joinpath(*FOLDER).glob("*.pt")
    return path


@pytest.fixture
def interrupted(results, capsys, monkeypatch) -> Path:
    """A genuine checkpoint of an interrupted run."""
    path = interrupt_after_first_checkpoint(monkeypatch, results)
    capsys.readouterr()
    return path


def _resave(path: Path, edit) -> None:
    state = checkpoint.load(path)
    edit(state)
    torch.save(state, path)


# --------------------------------------------------------------------- what a checkpoint holds

def test_a_checkpoint_holds_plain_data_only_and_resumes(interrupted, results, capsys):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(interrupted)) == []
    state, why = checkpoint.read(interrupted)
    assert why is None and state["meta"]["format"] == checkpoint.FORMAT
    assert not list(interrupted.parent.glob(".*.tmp"))
    code, lines = run(capsys)
    assert code == 0 and not any(line.startswith("note") for line in lines), lines
    (rec,) = records(results)
    assert rec["status"] == "completed" and rec["resumed_at_epochs"] == [1]
    assert sorted(p.name for p in results.joinpath(*FOLDER).iterdir()) == []  # checkpoint and lock removed


@pytest.mark.parametrize("hook", ["terngrad", "gradient_dropping(rate=0.9)"])
def test_a_gradient_compression_state_resumes_from_a_weights_only_checkpoint(hook, results, capsys, monkeypatch):
    """The hook's state (TernGrad's generator, dropping's residuals, the byte counts) is plain data
    in the checkpoint, and the resumed run ends as an uninterrupted one does, bit for bit."""
    compressed = ["--set", f"train.gradient_compression={hook}"]
    path = interrupt_after_first_checkpoint(monkeypatch, results, *compressed)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    state, why = checkpoint.read(path)
    assert why is None and state["trainer"]["exchange"][0]["steps"] > 0
    code, lines = run(capsys, *compressed)
    assert code == 0 and not any(line.startswith("note") for line in lines), lines
    (resumed,) = records(results)
    assert main([*RUN, *compressed, "--results-dir", str(results.parent / "uninterrupted")]) == 0
    (whole,) = records(results.parent / "uninterrupted")
    keys = ("epoch", "lr", "train_loss", "val_error", "test_error", "bytes_sent_per_step")
    assert resumed["resumed_at_epochs"] == [1] and resumed["communication"]["steps"] == whole["communication"]["steps"]
    assert [[e[k] for k in keys] for e in resumed["epochs"]] == [[e[k] for k in keys] for e in whole["epochs"]]


def test_rng_states_round_trip_through_a_weights_only_load(tmp_path):
    generator = torch.Generator().manual_seed(3)
    np.random.seed(7)
    np.random.normal()  # a cached Gaussian in numpy's state too
    states = checkpoint.rng_states(generator)
    expected = (np.random.random(3), torch.rand(2), torch.rand(2, generator=generator))
    path = tmp_path / "rng.pt"
    torch.save(states, path)
    torch.manual_seed(0)
    np.random.seed(0)
    checkpoint.restore_rng_states(torch.load(path, weights_only=True), generator)
    assert np.array_equal(np.random.random(3), expected[0])
    assert torch.equal(torch.rand(2), expected[1]) and torch.equal(torch.rand(2, generator=generator), expected[2])


# --------------------------------------------------------------------- planted pickles run no code

def _zip_pickle(obj, path):
    torch.save(obj, path)


def _legacy_pickle(obj, path):
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _plain_pickle(obj, path):
    path.write_bytes(pickle.dumps(obj))


@pytest.mark.parametrize("write", [_zip_pickle, _legacy_pickle, _plain_pickle])
def test_a_planted_pickle_checkpoint_runs_no_code(write, results, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    planted = results.joinpath(*FOLDER, f"{PLANTED}.pt")
    planted.parent.mkdir(parents=True)
    write({"meta": {"config_hash": "x"}, "trainer": Planted(marker), "record": "{}"}, planted)
    code, lines = run(capsys)
    assert not marker.exists()  # the run looked at it, and nothing ran
    assert code == 0 and lines[1].startswith(f"note: checkpoint {planted} skipped: "), lines
    assert "it refers to Python objects" in lines[1] or "Unsupported operand" in lines[1]  # a protocol-4 pickle
    (rec,) = records(results)
    assert rec["status"] == "completed" and "resumed_at_epochs" not in rec  # started anew
    # the control: the same file, unpickled the old way, does run its code
    try:
        torch.load(planted, weights_only=False)
    except Exception:  # noqa: BLE001, S110 - the plain pickle is no torch file: its code has run all the same
        pass
    assert marker.exists()


def test_a_planted_cifar_batch_runs_no_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Planted(marker), "labels": [0]}))
    with pytest.raises(UserError, match=r"data_batch_1: cannot read a CIFAR-10 batch .*refused (builtins|io)\.open"):
        read_batch(path)
    assert not marker.exists()
    with open(path, "rb") as f:  # the control: an ordinary unpickler runs it
        pickle.load(f)
    assert marker.exists()


# --------------------------------------------------------------------- files that are not checkpoints

def _genuine_edit(edit):
    """A file made from this run's genuine checkpoint with one thing broken."""
    def make(source: Path, target: Path) -> None:
        state = checkpoint.load(source)
        edit(state)
        torch.save(state, target)
    return make


def _raw(data):
    def make(source: Path, target: Path) -> None:
        target.write_bytes(data(source) if callable(data) else data)
    return make


def _saved(obj):
    def make(source: Path, target: Path) -> None:
        torch.save(obj, target)
    return make


def _record(edit):
    def change(state):
        record = json.loads(state["record"])
        edit(record)
        state["record"] = json.dumps(record)
    return change


NOT_CHECKPOINTS = {
    "empty": (_raw(b""), "cannot be loaded"),
    "random-bytes": (_raw(os.urandom(4096)), "cannot be loaded"),
    "half-of-a-checkpoint": (_raw(lambda src: src.read_bytes()[: src.stat().st_size // 2]), "cannot be loaded"),
    "zip-of-something-else": (_raw(lambda src: _zip_bytes()), "cannot be loaded"),
    "a-list": (_saved([1, 2, 3]), "not a checkpoint of this suite"),
    "empty-tables": (_saved({"meta": {}, "trainer": {}, "record": "{}"}), "meta.config_hash: missing"),
    "deeply-nested": (_saved({"meta": {"x": [[[[[[[[[[[]]]]]]]]]]]}, "trainer": {}}), "meta.config_hash: missing"),
    "seed-as-text": (_genuine_edit(lambda s: s["meta"].update(seed="1")), "meta.seed: missing"),
    "meta-of-another-run": (_genuine_edit(lambda s: s["meta"].update(run_id="20990101T000000Z-000000")),
                            "its meta names another run than its file name"),
    "no-rng": (_genuine_edit(lambda s: s["trainer"].pop("rng")), "its trainer state lacks rng"),
    "rng-missing-numpy": (_genuine_edit(lambda s: s["trainer"]["rng"].pop("numpy")), "trainer.rng: expected"),
    "record-not-json": (_genuine_edit(lambda s: s.update(record="{")), "its record: expected the record's JSON"),
    "record-a-table": (_genuine_edit(lambda s: s.update(record={"a": 1})), "its record: expected the record's JSON"),
    "record-spec-empty": (_genuine_edit(_record(lambda r: r.update(spec={}))), "its record: spec.name: missing"),
    "record-summary-text": (_genuine_edit(_record(lambda r: r.update(summary="x"))), "its record: summary:"),
    "record-completed": (_genuine_edit(_record(lambda r: r.update(status="failed"))), "status is 'failed'"),
    "record-of-another-seed": (_genuine_edit(_record(lambda r: r.update(seed=2))), "another run than its meta"),
    "record-of-another-spec": (_genuine_edit(_record(lambda r: r["spec"].update(name="other"))),
                               "its record is of other [smoke]"),
    "record-name-escapes": (_genuine_edit(_record(lambda r: r["spec"].update(name="../../x"))),
                            "its record: spec.name: expected a safe name"),
}


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")
    return buf.getvalue()


@pytest.mark.parametrize("case", NOT_CHECKPOINTS, ids=list(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_skipped_with_one_line(case, interrupted, results, capsys):
    make, needle = NOT_CHECKPOINTS[case]
    planted = interrupted  # in place of this run's checkpoint, under its name
    make(interrupted, planted)
    code, lines = run(capsys)
    notes = [line for line in lines if line.startswith("note: checkpoint")]
    assert code == 0 and len(notes) == 1, lines
    assert notes[0].startswith(f"note: checkpoint {planted} skipped: ") and needle in notes[0], notes[0]
    assert notes[0].endswith("--fresh removes it")
    fresh = [r for r in records(results) if r["status"] == "completed"]
    assert len(fresh) == 1 and "resumed_at_epochs" not in fresh[0]
    assert planted.exists()  # skipped, never deleted without --fresh


def test_a_folder_or_a_fifo_named_like_a_checkpoint_is_skipped(interrupted, capsys):
    interrupted.unlink()
    interrupted.with_name(f"{PLANTED}.pt").mkdir()
    os.mkfifo(interrupted.with_name("20991230T000000Z-abcdef-det-s1.pt"))  # opening it would wait forever
    code, lines = run(capsys)
    notes = [line for line in lines if line.startswith("note: checkpoint")]
    assert code == 0 and len(notes) == 2 and all("not a regular file" in n for n in notes), lines


# --------------------------------------------------------------------- a checkpoint that no longer fits

def test_another_checkpoint_format_is_one_line_and_fresh_removes_it(interrupted, results, capsys):
    _resave(interrupted, lambda s: s["meta"].update(format=1))
    code, lines = run(capsys)
    assert code == 2 and len(lines) == 2, lines  # the header line, then the error
    assert lines[1] == (f"error: {interrupted}: this run's checkpoint was written in checkpoint format 1 and this "
                        f"code reads format {checkpoint.FORMAT}: it cannot be continued; rerun the same command with "
                        "--fresh to start the run anew (that removes the stale checkpoint)")
    assert run(capsys)[0] == 2  # it blocks every plain rerun ...
    code, lines = run(capsys, "--fresh")
    assert code == 0 and f"note: removed checkpoint {interrupted} (--fresh)" in lines
    assert not interrupted.exists()
    assert run(capsys)[0] == 0  # ... until --fresh has removed it


@pytest.mark.parametrize("edit", [
    lambda s: s["trainer"]["model"].update({"1.weight": torch.zeros(3, 3)}),
    lambda s: s["trainer"]["model"].pop("1.weight"),
    lambda s: s["trainer"]["model"].update({"extra.weight": torch.zeros(1)}),
    lambda s: s["trainer"]["optimizer"]["param_groups"].pop(),
    lambda s: s["trainer"]["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)),
    lambda s: s["trainer"]["rng"]["numpy"].update(keys=torch.zeros(3, dtype=torch.int64)),
    lambda s: s["trainer"].update(optimizer=[]),
], ids=["weight-shape", "weight-missing", "weight-extra", "optimizer-groups", "torch-rng", "numpy-rng",
        "optimizer-not-a-table"])
def test_a_checkpoint_that_no_longer_fits_is_one_line(edit, interrupted, capsys):
    _resave(interrupted, edit)
    code, lines = run(capsys)
    assert code == 2 and lines[-1].startswith(f"error: {interrupted}: this run's checkpoint no longer fits this code")
    assert lines[-1].endswith("rerun the same command with --fresh to start the run anew (that removes the stale "
                              "checkpoint)")
    assert len(lines) == 2, lines
    code, lines = run(capsys, "--fresh")
    assert code == 0 and not interrupted.exists()


def test_fresh_keeps_the_checkpoints_of_other_configurations(interrupted, results, capsys):
    other = interrupted  # made with the default learning rate; now --fresh with another one
    code, lines = run(capsys, "--fresh", "--set", "train.lr_start=0.002")
    assert code == 0 and other.exists() and not any("removed" in line for line in lines)
    code, lines = run(capsys)  # the first configuration's command still continues it
    assert code == 0 and not other.exists()
    assert sorted(str(r.get("resumed_at_epochs")) for r in records(results)) == ["None", "[1]"]
    assert [len(r["epochs"]) for r in records(results)] == [2, 2]


# --------------------------------------------------------------------- debris of runs that are gone

def test_debris_of_gone_runs_is_cleaned_and_a_live_runs_is_kept(interrupted, results, capsys):
    folder = interrupted.parent
    recs = results / "records" / "binaryconnect-mnist" / "smoke"
    dead, live = "20200101T000000Z-dead00-det-s1", "20200101T000000Z-11fe00-stoch-s3"
    files = {
        "dead lock": folder / f"{dead}.lock",
        "dead checkpoint temp": folder / f".{dead}.pt.abcd1234.tmp",
        "dead record temp": recs / f".{dead}.json.abcd1234.tmp",
        "live lock": folder / f"{live}.lock",
        "live checkpoint temp": folder / f".{live}.pt.abcd1234.tmp",
        "live record temp": recs / f".{live}.json.abcd1234.tmp",
        "not ours": folder / "notes.txt",
    }
    for path in files.values():
        path.write_bytes(b"x" * 1000)
    lock = checkpoint.RunLock(folder / f"{live}.pt")
    assert lock.acquire()  # a live run holds its lock (another process would, the same way)
    try:
        code = main([("stoch" if a == "det" else a) for a in RUN])  # another run of the spec and profile
        assert code == 0, capsys.readouterr().err
        gone = sorted(k for k, p in files.items() if not p.exists())
        assert gone == ["dead checkpoint temp", "dead lock", "dead record temp"]
    finally:
        lock.release(remove=True)
    assert interrupted.exists() and interrupted.with_suffix(".lock").exists()  # a resumable checkpoint: kept


def test_a_lock_cannot_be_taken_twice_and_a_removed_lock_file_is_not_held():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a, b = checkpoint.RunLock(Path(tmp) / "x.pt"), checkpoint.RunLock(Path(tmp) / "x.pt")
        assert a.acquire() and not b.acquire()
        a.release(remove=True)
        assert not (Path(tmp) / "x.lock").exists()
        assert b.acquire() and (Path(tmp) / "x.lock").exists()
        b.release()


# --------------------------------------------------------------------- a full disk, a read-only folder

class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_a_full_disk_while_checkpointing_is_one_line_without_temporary_files(tmp_path, monkeypatch, room):
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k), room))
    path = tmp_path / "c.pt"
    with pytest.raises(UserError) as e:
        checkpoint.save(path, {"w": torch.zeros(10000)})
    assert str(e.value).startswith(f"{path}: cannot write (No space left on device); free some space")
    assert "inline_container" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="No space left on device"):
        write_atomic(tmp_path / "r.json", "x" * 10000)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_a_run_stops_it_with_one_line(results, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, lines = run(capsys)
    assert code == 2 and lines[-1].startswith("error: ") and "No space left on device" in lines[-1], lines
    assert len(lines) == 2  # the header, then the error
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp") or (p.is_file() and p.stat().st_size == 0)]


def test_ctrl_c_during_a_checkpoint_write_is_an_interrupt_not_a_write_error(tmp_path, monkeypatch):
    real = os.fdopen

    class Interrupted(_FullDisk):
        def write(self, data):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Interrupted(real(fd, *a, **k), 0))
    with pytest.raises(KeyboardInterrupt):  # torch reports it as a RuntimeError; the run must see Ctrl-C
        checkpoint.save(tmp_path / "c.pt", {"w": torch.zeros(10000)})
    assert list(tmp_path.iterdir()) == []
