"""Which process of a multi-process launch (torchrun, accelerate launch) this is, for what is said once."""

from __future__ import annotations

import os


def first_process() -> bool:
    """True unless this is a process other than the first of a multi-process launch: what says a warning once. A
    RANK left in the environment of a single process (a node's rank) does not count."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or os.environ.get("RANK", "0") == "0"
