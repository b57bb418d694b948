"""An offline machine: a failed download is a one-line note and None, never a hang or a crash."""

import socket

from suite.data.download import try_download


def test_failure_is_a_note_and_none_and_the_timeout_is_restored(capsys):
    before = socket.getdefaulttimeout()

    def offline():
        assert socket.getdefaulttimeout() == 5  # set while fetching
        raise OSError("Network is unreachable")

    assert try_download("MNIST", offline, timeout=5) is None
    assert "note: MNIST download failed (OSError: Network is unreachable)" in capsys.readouterr().err
    assert socket.getdefaulttimeout() == before


def test_success_returns_what_fetch_returns():
    assert try_download("X", lambda: 42) == 42
