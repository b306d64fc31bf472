"""The training loop: one Accelerate loop, the same for every objective, read top to bottom.

Gradient accumulation divides the summed loss by the number of targets across all micro-batches and processes, so
a step's gradient is the same whether the global batch runs on one process or many. Data order and masking are
keyed by example position, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from torch.utils.data import DataLoader, Dataset, Sampler

from plmkit.config import RunConfig
from plmkit.errors import TrainingError
from plmkit.objectives import EVAL_INDEX_OFFSET, Objective
from plmkit.training import checkpoint
from plmkit.training.logging import MetricsLog, plot_losses, progress_bar, status_text, stderr
from plmkit.training.optim import build_optimizer, build_scheduler

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class FitResult:
    steps: int
    tokens_seen: int
    metrics: dict[str, float] = field(default_factory=dict)
    """Last training loss, initial and final eval loss / perplexity, wall time."""
    model: torch.nn.Module | None = None
    """The prepared training module (objective.wrap, then DDP/FSDP), for `accelerator.get_state_dict` at export."""


class Positions(Dataset):
    """Wraps a block dataset so that sample position p (epoch * n + block) returns that block with its position as
    `index`, the key the objective seeds its masking with."""

    def __init__(self, blocks: Dataset, offset: int = 0):
        self.blocks, self.offset = blocks, offset

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, position: int) -> dict:
        example = dict(self.blocks[position % len(self.blocks)])
        example["index"] = position + self.offset
        return example


class StepSampler(Sampler):
    """Yields this process's micro-batches of sample positions, forever, from micro-step `start`.

    Global micro-batch k holds positions [k*B*W, (k+1)*B*W) of an endless stream of seeded per-epoch permutations;
    process r takes the r-th slice of B. Resuming at micro-step k costs nothing: no data is read to skip."""

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int, start: int):
        self.n, self.batch, self.world, self.rank, self.seed, self.start = n, batch_size, world, rank, seed, start
        self._epoch, self._perm = -1, None

    def _position(self, p: int) -> int:
        epoch = p // self.n
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return epoch * self.n + int(self._perm[p % self.n])

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            first = (k * self.world + self.rank) * self.batch
            yield [self._position(p) for p in range(first, first + self.batch)]
            k += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 1 << 62


def steps_for(cfg: RunConfig, num_blocks: int, world: int) -> int:
    """train.max_steps, or the steps that train.epochs passes over `num_blocks` take."""
    if cfg.train.epochs is None:
        return cfg.train.max_steps
    per_step = cfg.train.batch_size * cfg.train.grad_accum * world
    return max(1, math.ceil(cfg.train.epochs * num_blocks / per_step))


def build_accelerator(cfg: RunConfig, run_dir: Path) -> Accelerator:
    trackers = []
    if "tensorboard" in cfg.log.to:
        try:
            import tensorboard  # noqa: F401
            trackers = ["tensorboard"]
        except ImportError:
            stderr.print("[yellow]log.to has tensorboard but it is not installed; pip install tensorboard")
    # Without a GPU, accelerate sets up multi-process (gloo) training only when told to use the CPU.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(cpu=cpu, mixed_precision=PRECISIONS[cfg.train.precision], log_with=trackers or None,
                       project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)))


def fit(cfg: RunConfig, model: torch.nn.Module, objective: Objective, train_set: Dataset, eval_set: Dataset,
        run_dir: Path, *, resume: bool = False, accelerator: Accelerator | None = None,
        show_progress: bool = True) -> FitResult:
    """Train `model` with `objective` on packed blocks; write metrics.jsonl, checkpoints/ and loss.png in run_dir.

    Args:
        resume: continue from the latest complete checkpoint in run_dir/checkpoints (start fresh if none).
    """
    acc = accelerator or build_accelerator(cfg, run_dir)
    world, rank, tc = acc.num_processes, acc.process_index, cfg.train
    max_steps = steps_for(cfg, len(train_set), world)
    if tc.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = objective.wrap(model)  # e.g. masked LM: the LM head runs only at predicted positions
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, max_steps)  # stepped by us: accelerate would step it per process
    model, optimizer = acc.prepare(model, optimizer)

    state = {"step": 0, "micro_step": 0, "tokens_seen": 0, "initial_eval_loss": None}
    found = checkpoint.latest(run_dir) if resume else None
    if found is not None:
        state = checkpoint.load(acc, found)
        scheduler.load_state_dict(state.pop("scheduler"))
        stderr.print(f"resuming from {found} (step {state['step']})")
    log = MetricsLog(run_dir / "metrics.jsonl", state["step"] if found else None, enabled=acc.is_main_process)
    if acc.log_with:
        acc.init_trackers("tensorboard")  # event files in run_dir/tensorboard/

    # Each DataLoader gets its own generator: creating an iterator draws a seed, and drawing it from the global RNG
    # would shift dropout randomness whenever an evaluation runs, so a resumed run would drift from an unbroken one.
    loader = DataLoader(Positions(train_set), collate_fn=objective.collate, num_workers=tc.num_workers,
                        generator=torch.Generator().manual_seed(cfg.run.seed),
                        batch_sampler=StepSampler(len(train_set), tc.batch_size, world, rank, cfg.run.seed,
                                                  start=state["micro_step"]))
    eval_positions = list(range(rank, min(len(eval_set), tc.eval_blocks), world))
    eval_loader = DataLoader(Positions(eval_set, offset=EVAL_INDEX_OFFSET), collate_fn=objective.collate,
                             batch_size=tc.batch_size, sampler=eval_positions, generator=torch.Generator())

    def evaluate() -> tuple[float, float]:
        eval_model = acc.unwrap_model(model)
        eval_model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=acc.device)  # (loss sum, targets)
        with torch.no_grad(), acc.autocast():
            for batch in eval_loader:
                out = objective.loss(eval_model, _to(batch, acc.device))
                total += torch.stack([out.loss_sum.double(), out.num_targets.double()])
        total = acc.reduce(total, reduction="sum")
        model.train()
        loss = (total[0] / total[1].clamp(min=1)).item()
        return loss, math.exp(min(loss, 50.0))

    if state["initial_eval_loss"] is None:
        state["initial_eval_loss"] = evaluate()[0]
        if show_progress and acc.is_main_process:
            stderr.print(f"step      0  eval {state['initial_eval_loss']:.4f} "
                         f"(ppl {math.exp(min(state['initial_eval_loss'], 50.0)):.1f}) before training")
    model.train()
    batches = iter(loader)
    block_tokens = tc.batch_size * world * train_set[0]["input_ids"].numel()
    last_row: dict = {}
    started, window_start, window_tokens = time.time(), time.time(), 0
    progress = progress_bar(show_progress and acc.is_main_process)
    with progress:
        bar = progress.add_task("train", total=max_steps, completed=state["step"], status="")
        while state["step"] < max_steps:
            micro = [_to(next(batches), acc.device) for _ in range(tc.grad_accum)]
            local_targets = sum(int((b["labels"] != -100).sum()) for b in micro)
            all_targets = int(acc.reduce(torch.tensor(local_targets, device=acc.device), reduction="sum"))
            loss_sum = torch.zeros((), dtype=torch.float64, device=acc.device)
            for i, batch in enumerate(micro):
                sync = i == len(micro) - 1
                with nullcontext() if sync else acc.no_sync(model):
                    out = objective.loss(model, batch)
                    # DDP averages gradients over processes; multiply by world so the result is sum / all_targets.
                    acc.backward(out.loss_sum * (world / max(all_targets, 1)))
                loss_sum += out.loss_sum.detach().double()
            grad_norm = acc.clip_grad_norm_(model.parameters(), tc.max_grad_norm if tc.max_grad_norm > 0 else math.inf)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["micro_step"] += tc.grad_accum
            state["tokens_seen"] += block_tokens * tc.grad_accum
            window_tokens += block_tokens * tc.grad_accum
            loss = float(acc.reduce(loss_sum, reduction="sum")) / max(all_targets, 1)
            if not math.isfinite(loss):
                advice = f"lower train.lr (now {tc.lr}) or raise train.warmup_steps (now {tc.warmup_steps})"
                if tc.precision == "fp16":
                    advice += ", or use train.precision=bf16 or fp32"
                saved = checkpoint.latest(run_dir)
                advice += (f"; then continue from {saved} with --resume" if saved else "; then start again")
                raise TrainingError(f"the loss became {loss} at step {state['step']}: {advice}")

            step, last = state["step"], state["step"] == max_steps
            evaluate_now = last or (tc.eval_every > 0 and step % tc.eval_every == 0)
            if evaluate_now or last or step % tc.log_every == 0:
                now = time.time()
                row = {"step": step, "time": round(now, 3), "loss": round(loss, 6), "lr": lr,
                       "grad_norm": round(float(grad_norm), 6), "tokens_seen": state["tokens_seen"],
                       "tokens_per_s": round(window_tokens / max(now - window_start, 1e-9), 1)}
                if evaluate_now:
                    row["eval_loss"], row["eval_ppl"] = (round(v, 6) for v in evaluate())
                    if show_progress and acc.is_main_process:  # a line per evaluation stays above the bar
                        progress.console.print(f"step {step:>6}  {status_text(row)}")
                log.write(row)
                if acc.log_with:
                    acc.log({k: v for k, v in row.items() if k not in ("step", "time")}, step=step)
                progress.update(bar, completed=step, status=status_text(row))
                last_row, window_start, window_tokens = row, time.time(), 0
            else:
                progress.update(bar, completed=step)
            if last or step % tc.save_every == 0:
                checkpoint.save(acc, run_dir, step, {**state, "scheduler": scheduler.state_dict()},
                                keep=tc.keep_checkpoints)

    for tracker in acc.trackers:  # not acc.end_training(): that would also end the process group the caller uses
        tracker.finish()
    if acc.is_main_process:
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png", title=cfg.run.name,
                    initial_eval_loss=state["initial_eval_loss"])
    metrics = {"initial_eval_loss": state["initial_eval_loss"],
               "initial_eval_ppl": math.exp(min(state["initial_eval_loss"], 50.0)),
               "train_seconds": round(time.time() - started, 2)}
    if last_row:
        metrics.update({k: last_row[k] for k in ("loss", "eval_loss", "eval_ppl") if k in last_row})
    return FitResult(steps=state["step"], tokens_seen=state["tokens_seen"], metrics=metrics, model=model)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
