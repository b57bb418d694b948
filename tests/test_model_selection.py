"""Model selection as the authors' trainers do it (summary of a run's epochs)."""

from suite.run.trainer import best_validation_epoch, summarize


def _epoch(n, val, test):
    return {"epoch": n, "val_error": val, "test_error": test, "test_error_top5": None, "train_seconds": 1.0,
            "samples_per_second": 1.0, "peak_rss_mb": 1.0, "peak_cuda_mb": None}


def test_tied_best_validation_keeps_the_last_epoch():
    # BinaryConnect / BinaryNet: `if val_err <= best_val_err` -> epoch 3 (tied with 2) is kept
    epochs = [_epoch(1, 2.0, 2.5), _epoch(2, 1.5, 1.9), _epoch(3, 1.5, 1.7), _epoch(4, 1.6, 1.6)]
    assert best_validation_epoch(epochs)["epoch"] == 3
    summary = summarize(epochs)
    assert summary["best_epoch"] == 3 and summary["test_error_at_best_val"] == 1.7
    assert summary["min_test_error"] == 1.6 and summary["final_test_error"] == 1.6


def test_no_validation_split_takes_the_last_epoch():
    epochs = [_epoch(1, None, 3.0), _epoch(2, None, 2.0), _epoch(3, None, 2.5)]
    assert summarize(epochs)["best_epoch"] == 3
