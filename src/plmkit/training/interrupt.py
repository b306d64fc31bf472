"""Stopping a run on request: Ctrl-C (SIGINT) or a scheduler's SIGTERM (SLURM and Kubernetes send it before they
kill a job) ends training at the end of the current step, after a checkpoint, so `--resume` loses nothing."""

from __future__ import annotations

import signal
import threading
from typing import Self

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context that turns SIGINT and SIGTERM into a request the training loop reads between steps (`signal`: the
    name of the first one received, else None). A second SIGINT stops at once (KeyboardInterrupt), as usual.

    Handlers are installed only from the main thread (Python delivers signals there), and not for a signal that is
    ignored (a process started in the background of a shell ignores SIGINT: it stays ignored). On exit the previous
    handlers come back."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                handler = signal.getsignal(sig)
                if handler in (signal.SIG_IGN, None):
                    continue
                self._previous[sig] = handler
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt
        self.signal = self.signal or signal.Signals(signum).name

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a terminal's Ctrl-C reaches the workers too, and a worker that exits on it would
    break the batch the training process still fetches before it stops; the training process stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
