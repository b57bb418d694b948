"""torchvision downloads that treat any network failure as "offline" (one line, then None)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def try_download(what: str, fetch: Callable[[], T], timeout: float = 20) -> T | None:
    """fetch() with a socket timeout (a machine without internet fails fast instead of hanging);
    on any failure print a one-line note naming `what` and return None, so the caller falls back
    to its next source (embedded subset, synthetic data) or its missing-data message."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return fetch()
    except Exception as e:  # noqa: BLE001 - any network failure means "offline" here
        print(f"note: {what} download failed ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    finally:
        socket.setdefaulttimeout(old)
