"""Run logging: metrics.jsonl (one JSON object per logged step), a live progress bar on stderr, TensorBoard when
installed, and the loss-curve PNG written at the end of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True, soft_wrap=True)
"""Where progress and messages go. Lines are not cut at the console width (80 columns where stderr is a log file),
so that paths in them stay whole and can be copied; a terminal wraps them itself."""



class MetricsLog:
    """Appends rows to metrics.jsonl; on resume, drops the rows written after the checkpoint being resumed."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        if not enabled:
            return
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            rows = read_metrics(self.path)
            kept = [r for r in rows if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, row: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def progress_bar(enabled: bool, label: str = "train", status: bool = True) -> Progress:
    """A bar on stderr: label, bar, done/total, (a task's `status` field), elapsed time and ETA. Not drawn where
    stderr is no terminal (a log file): rich would write only its last state there, cut at 80 columns; the training
    loop prints a line per logged row instead."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn(bar_width=12), MofNCompleteColumn()]
    if status:
        columns.append(TextColumn("{task.fields[status]}"))
    return Progress(*columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=stderr, disable=not enabled or not live_display(), transient=False)


def live_display() -> bool:
    """Whether stderr shows a live bar: a terminal or a Jupyter notebook, not a log file."""
    return stderr.is_terminal or stderr.is_jupyter


def status_text(row: dict) -> str:
    text = f"loss {row['loss']:.4f}  {row['tokens_per_s']:,.0f} tok/s"
    if "mfu" in row:
        text += f"  MFU {row['mfu']:.1%}"
    if "eval_loss" in row:
        text += f"  eval {row['eval_loss']:.4f}"
    if "eval_ppl" in row:
        text += f" (ppl {row['eval_ppl']:.1f})"
    return text


def plot_losses(metrics_path: Path, out_path: Path, title: str = "",
                initial_eval_loss: float | None = None) -> Path | None:
    """Training loss (and evaluation loss where present, from step 0 when given) against step, saved as a PNG."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and math.isfinite(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if initial_eval_loss is not None:
        evals.insert(0, (0, initial_eval_loss))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", lw=1.5, ms=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / target token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
