"""Stopping a run on request: Ctrl-C (SIGINT) or a scheduler's SIGTERM (SLURM and Kubernetes send it before they
kill a job) ends training at the end of the current step, after a checkpoint, so `--resume` loses nothing."""

from __future__ import annotations

import signal
import threading
from typing import Self

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context that turns SIGINT and SIGTERM into a request the training loop reads between steps (`signal`: the
    name of the first one received, else None). A second signal stops at once, as it would without the context
    (SIGINT: KeyboardInterrupt; SIGTERM: the previous handler, by default the end of the process).

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
        if self.signal is not None:  # the second one: stop now, as that signal does without this context
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signal.Signals(signum).name

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a terminal's Ctrl-C, and the SIGTERM a launcher (torchrun: os.killpg) or a
    scheduler (SLURM) sends to every process, reach the workers too; a worker that died of one would break the batch
    the training process still fetches before it stops. The training process ends them (or they see it gone)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
