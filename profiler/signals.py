"""SIGTERM as an exception, so a terminated run cleans up exactly like Ctrl-C does.

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM kill the process
outright, which would leave a staged run folder behind. `Terminated` is a
KeyboardInterrupt, so every `except BaseException` / `finally` that removes
staged files runs for it too; only the exit code (143) and word differ.
"""
from __future__ import annotations

import contextlib
import signal
import threading

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised where the main thread was, unwinding through the cleanup."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises Terminated; the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
