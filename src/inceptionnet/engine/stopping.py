"""A clean stop on SIGTERM or Ctrl-C: the run finishes the optimizer step in progress, writes last.pt and ends,
so `--resume` loses nothing. A scheduler's preemption (SIGTERM) and a user's Ctrl-C otherwise cost the epoch in
progress, since last.pt is written at epoch ends."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """Records the SIGTERM or SIGINT that arrives while `listening()`; `signum` is 0 until then. A second
    Ctrl-C stops at once (KeyboardInterrupt), for a user who will not wait for the step to end."""

    def __init__(self) -> None:
        self.signum = 0

    @property
    def signal_name(self) -> str:
        """The received signal's name ("SIGTERM", "SIGINT"); only meaningful once `signum` is set."""
        return signal.Signals(self.signum).name

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        if signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextmanager
    def listening(self) -> Iterator[StopRequest]:
        """Take over SIGTERM, and SIGINT unless the process ignores it (a background job), for the `with`
        block; the previous handlers come back after it. Handlers can only be set from the main thread:
        elsewhere the signals keep their handlers."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous[signal.SIGINT] = signal.default_int_handler
        for signum in previous:
            signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
