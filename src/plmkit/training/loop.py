"""The training loop: one Accelerate loop, the same for every objective, read top to bottom.

Gradient accumulation divides the summed loss by the number of targets across all micro-batches and processes, so
a step's gradient is the same whether the global batch runs on one process or many. Data order and masking are
keyed by example position, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, gather_object
from torch.utils.data import DataLoader, Dataset, Sampler

from plmkit import flops
from plmkit.config import RunConfig
from plmkit.errors import ConfigError, Interrupted, TrainingError
from plmkit.models.transformer import (
    apply_fused_kernels,
    pick_attention,
    sdpa_backends,
    set_attention,
    use_plmkit_sdpa,
)
from plmkit.objectives import EVAL_INDEX_OFFSET, Objective
from plmkit.objectives.base import use_compiled_loss
from plmkit.training import allocator, checkpoint
from plmkit.training.dropout import FastDropout, use_compiled_masks
from plmkit.training.interrupt import StopRequest, ignore_interrupts_in_worker
from plmkit.training.logging import MetricsLog, live_display, plot_losses, progress_bar, status_text, stderr
from plmkit.training.optim import build_optimizer, build_scheduler
from plmkit.training.profile import StepProfiler

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def resolve_precision(precision: str) -> str:
    """train.precision with `auto` decided: bf16 where this machine computes it fast (a CUDA GPU with bf16; else a
    CPU with AVX512-BF16 or AMX, where bf16 autocast runs the benchmark model about 1.6x faster than fp32), else
    fp32. Other values are returned unchanged."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def half_precision_slowdown(precision: str) -> float:
    """How many times slower this CPU's `precision` (bf16, fp16) matmuls run than its fp32 ones (the matmul probes
    the MFU peak comes from; cached per process)."""
    return flops.measured_peak_flops("fp32") / flops.measured_peak_flops(precision)


def cpu_has_fast_bf16() -> bool:
    """Whether the CPU has bf16 instructions (x86 AVX512-BF16 or AMX; the bf16 flag of an Arm CPU)."""
    try:
        caps = torch._C._cpu._get_cpu_capability()  # what torch's own kernels dispatch on
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
        except OSError:
            return False
        return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", "bf16"))


@dataclass
class FitResult:
    steps: int
    tokens_seen: int
    metrics: dict[str, float] = field(default_factory=dict)
    """Last training loss, initial and final eval loss / perplexity, wall time."""
    model: torch.nn.Module | None = None
    """The prepared training module (objective.wrap, then DDP/FSDP), for `accelerator.get_state_dict` at export."""
    done_before: bool = False
    """A resumed run whose checkpoint had already reached max_steps: nothing was trained (metrics is empty)."""
    stopped_by: str | None = None
    """A signal (SIGINT, SIGTERM) that came during the last step, when there was nothing left to stop: the caller
    finishes the run, then stops (`interrupted_after`)."""


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

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int, start: int,
                 lengths: list[int] | None = None):
        self.n, self.batch, self.world, self.rank, self.seed, self.start = n, batch_size, world, rank, seed, start
        self.lengths = torch.as_tensor(lengths) if lengths is not None else None
        self._epoch, self._perm = -1, None

    def _position(self, p: int) -> int:
        epoch = p // self.n
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=gen)
            if self.lengths is not None:
                perm = group_by_length(perm, self.lengths, 50 * self.batch * self.world)
            self._epoch, self._perm = epoch, perm
        return epoch * self.n + int(self._perm[p % self.n])

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            first = (k * self.world + self.rank) * self.batch
            yield [self._position(p) for p in range(first, first + self.batch)]
            k += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 1 << 62


def group_by_length(perm: torch.Tensor, lengths: torch.Tensor, chunk: int) -> torch.Tensor:
    """Sort each chunk of a shuffled order by example length (longest first), so a batch holds examples of similar
    length and pads little; the chunks stay in random order (as transformers' LengthGroupedSampler)."""
    parts = [c[torch.argsort(lengths[c], descending=True, stable=True)] for c in perm.split(chunk)]
    return torch.cat(parts)


def wants_compiled_masks(setting: bool | None, objective) -> bool:
    """train.compile_dropout for this run. null: on for pre-training, whose compiled loss pays torch.compile's
    start-up anyway; off for a fine-tuning task (it scores predictions: it has `metrics`), whose masks are too small
    to gain from the kernel (benchmarks/README.md) and whose short runs would pay that start-up."""
    return setting if setting is not None else getattr(objective, "metrics", None) is None


def wants_tf32(setting: bool | None, precision: str) -> bool:
    """train.tf32 for this run. null: on under bf16 and fp16, where TF32 (10 mantissa bits) is more precise than
    the products' own dtype, for the products autocast leaves in float32; off under fp32, whose products it would
    round."""
    return setting if setting is not None else precision in ("bf16", "fp16")


def workers_for(setting: int | None, device: torch.device, objective) -> int:
    """train.num_workers for this run. null: 2 for a pre-training objective on CUDA (collating a step's blocks,
    masking included, beside the process that launches its kernels); 0 on a CPU, whose cores are busy training,
    and for a fine-tuning task (it scores predictions: it has `metrics`), whose padded batches are cheap to make."""
    if setting is not None:
        return setting
    return 2 if device.type == "cuda" and getattr(objective, "metrics", None) is None else 0


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
    mixed = PRECISIONS[resolve_precision(cfg.train.precision)]
    acc = Accelerator(cpu=cpu, mixed_precision=mixed, log_with=trackers or None,
                      project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)))
    if acc.is_main_process:
        for name, flag, kind in (("FSDP", "ACCELERATE_USE_FSDP", DistributedType.FSDP),
                                 ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED)):
            if os.environ.get(flag, "").lower() in ("1", "true") and acc.distributed_type != kind:
                stderr.print(f"[yellow]warning: the launch asked for {name}, but accelerate runs "
                             f"{acc.distributed_type.value} here ({name} needs CUDA devices): every process holds "
                             "the whole model, as with DDP")
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
        if launched not in (None, "", "no", mixed):  # "no" is the launcher's default, not a request
            stderr.print(f"[yellow]warning: the launch asked for mixed precision {launched}, but train.precision "
                         f"({cfg.train.precision}) decides: {mixed}; set train.precision to change it")
    return acc


def forward_layer_classes(module: torch.nn.Module) -> None:
    """Give an objective's wrapper the transformer layer classes of the models inside it (`_no_split_modules`):
    FSDP's transformer-layer wrap policy reads them from the module it prepares, and without them it would shard
    the whole model as one unit instead of layer by layer."""
    if getattr(module, "_no_split_modules", None):
        return
    names = [name for m in module.modules() if m is not module
             for name in (getattr(m, "_no_split_modules", None) or [])]
    if names:
        module._no_split_modules = list(dict.fromkeys(names))


def fit(cfg: RunConfig, model: torch.nn.Module, objective: Objective, train_set: Dataset, eval_set: Dataset,
        run_dir: Path, *, resume: bool = False, accelerator: Accelerator | None = None,
        show_progress: bool = True, on_eval: Callable[[int, dict], None] | None = None,
        resume_command: str | None = None) -> FitResult:
    """Train `model` with `objective` on packed blocks; write metrics.jsonl, checkpoints/ and loss.png in run_dir.

    Args:
        resume: continue from the latest complete checkpoint in run_dir/checkpoints (start fresh if none).
        on_eval: called as on_eval(step, row) on the main process after each evaluation (e.g. `plm tune` reports the
            score to optuna there, and stops a pruned trial by raising).
        resume_command: the command that continues this run, for the message of a run stopped by a signal (None:
            the caller says what to do instead).

    Raises:
        Interrupted: SIGINT or SIGTERM asked the run to stop; it did after the step it was in, with a checkpoint.
    """
    acc = accelerator or build_accelerator(cfg, run_dir)
    world, rank, tc = acc.num_processes, acc.process_index, cfg.train
    max_steps = steps_for(cfg, len(train_set), world)
    precision = resolve_precision(tc.precision)
    if tc.warmup_ratio == 0 and tc.warmup_steps >= max_steps > 0 and acc.is_main_process:
        stderr.print(f"[yellow]warning: train.warmup_steps ({tc.warmup_steps}) is not below the run's {max_steps} "
                     f"steps: the learning rate never reaches train.lr ({tc.lr:g}); lower "
                     "train.warmup_steps (or use train.warmup_ratio)")
    if acc.device.type == "cpu" and precision != "fp32" and acc.is_main_process:
        slower = half_precision_slowdown(precision)
        if slower > 2:  # a CPU without instructions for it emulates it
            stderr.print(f"[yellow]warning: train.precision is {precision}, but this CPU runs {precision} matmuls "
                         f"{slower:.0f}x slower than fp32 (matmul probes); set train.precision=auto (bf16 where the "
                         "device computes it fast, else fp32) or fp32")
    if tc.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    # Fast paths (docs/pretraining.md, "Speed"): each has a switch and gives the plain path's loss within a tolerance.
    attention = set_attention(model, pick_attention(model, tc.attention, acc.device, precision,
                                                    cfg.data.doc_attention))
    kernels = apply_fused_kernels(model, acc.device) if tc.fused_kernels == "auto" else []
    attention = use_plmkit_sdpa(model, tc.compiled_sdpa, tc.compile, acc.device) or attention
    # CUDA's bernoulli_ is cheap already. Gradient checkpointing recomputes the forward pass outside the mode, where
    # the replayed masks would be torch's, not the ones the forward pass drew.
    fast_masks = tc.fast_dropout and acc.device.type == "cpu" and not tc.compile and not tc.gradient_checkpointing
    if fast_masks:
        kernels.append("fast dropout masks")
    dropout_mode = FastDropout if fast_masks else nullcontext
    attention_kernels = sdpa_backends(tc.sdpa_backends)
    use_compiled_masks(wants_compiled_masks(tc.compile_dropout, objective))
    use_compiled_loss(tc.compile_loss and not tc.compile)  # inside a compiled model, the plain loss is traced
    if tc.heap_allocations and acc.device.type == "cpu" and allocator.heap_for_large_tensors():
        kernels.append("heap allocations")
    if acc.device.type == "cuda":  # before the peak: an fp32 run's peak is TF32's when TF32 is on
        torch.backends.cuda.matmul.allow_tf32 = wants_tf32(tc.tf32, precision)
        if torch.backends.cuda.matmul.allow_tf32:
            kernels.append("TF32")
    # Model FLOPs per trained token (recomputation not counted: MFU, not HFU) and the peak of one device.
    seq_len = flops.sequence_length(train_set, objective)
    flops_per_token = flops.module_flops_per_token(model, seq_len, head_fraction=flops.head_fraction(objective))
    peak, peak_source = flops.peak_flops(acc.device, precision)
    model = objective.wrap(model)  # e.g. masked LM: the LM head runs only at predicted positions
    forward_layer_classes(model)
    if hasattr(model, "extra_flops_per_token"):  # a module that trains more than `model` (ELECTRA's generator)
        flops_per_token += model.extra_flops_per_token(seq_len)
    if tc.compile:  # in place: parameter names, and so checkpoints, stay those of the eager module
        model.compile(mode=None if tc.compile_mode == "default" else tc.compile_mode)
    optimizer = build_optimizer(model, tc, acc.device)
    scheduler = build_scheduler(optimizer, tc, max_steps)  # stepped by us: accelerate would step it per process
    model, optimizer = acc.prepare(model, optimizer)

    state = {"step": 0, "micro_step": 0, "tokens_seen": 0, "initial_eval_loss": None, "best_step": None,
             "best_scores": {}, "evals_without_improvement": 0}
    found = _load_newest(acc, model, run_dir) if resume else None
    if found is not None:
        found, state = found
        scheduler.load_state_dict(state.pop("scheduler"))
        if acc.is_main_process:
            stderr.print(f"resuming from {found} (step {state['step']})")
        if state["step"] >= max_steps:
            stderr.print(f"{found} has reached the run's {max_steps} steps: nothing to train (raise train.max_steps "
                         "or train.epochs to train on)")
            return FitResult(steps=state["step"], tokens_seen=state["tokens_seen"], model=model, done_before=True)
    log = MetricsLog(run_dir / "metrics.jsonl", state["step"] if found else None, enabled=acc.is_main_process)
    if acc.log_with:
        acc.init_trackers("tensorboard")  # event files in run_dir/tensorboard/

    lengths = None  # tasks pad to the longest example of a batch: batch examples of similar length together
    if tc.group_by_length and getattr(objective, "group_by_length", False):
        lengths = [len(example["input_ids"]) for example in train_set]
    # Each DataLoader gets its own generator: creating an iterator draws a seed, and drawing it from the global RNG
    # would shift dropout randomness whenever an evaluation runs, so a resumed run would drift from an unbroken one.
    pin = acc.device.type == "cuda"  # page-locked batches: their copies to the GPU do not wait for it
    loader = DataLoader(Positions(train_set), collate_fn=objective.collate,
                        num_workers=workers_for(tc.num_workers, acc.device, objective),
                        generator=torch.Generator().manual_seed(cfg.run.seed), pin_memory=pin,
                        worker_init_fn=ignore_interrupts_in_worker,
                        batch_sampler=StepSampler(len(train_set), tc.batch_size, world, rank, cfg.run.seed,
                                                  start=state["micro_step"], lengths=lengths))
    eval_loader = DataLoader(Positions(eval_set, offset=EVAL_INDEX_OFFSET), collate_fn=objective.collate,
                             batch_size=tc.batch_size, sampler=list(range(rank, len(eval_set), world)),
                             generator=torch.Generator(), pin_memory=pin)
    task_metrics = getattr(objective, "metrics", None)  # tasks score predictions; objectives only have a loss

    def evaluate() -> dict[str, float]:
        eval_model = acc.unwrap_model(model)
        eval_model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=acc.device)  # (loss sum, targets)
        outputs: dict[str, list] = {}
        extra = MeanMetrics()  # the objective's own metrics (ELECTRA: generator and discriminator parts)
        with torch.no_grad(), acc.autocast(), attention_kernels():
            for batch in eval_loader:
                out = objective.loss(eval_model, _to(batch, acc.device))
                total += torch.stack([out.loss_sum.double(), out.num_targets.double()])
                extra.add(out.metrics)
                for key, values in (out.outputs or {}).items():
                    outputs.setdefault(key, []).extend(values)
        total = acc.reduce(total, reduction="sum")
        model.train()
        if total[1] == 0:  # a loss over no targets would read as 0 (perplexity 1)
            raise TrainingError(f"the {len(eval_set)} evaluation examples hold no token to predict: every token is "
                                "special or unknown; check that the tokenizer fits the text (data_report.json: "
                                "train_unknown_tokens) or evaluate on more blocks (train.eval_blocks)")
        loss = (total[0] / total[1].clamp(min=1)).item()
        scores = {"eval_loss": loss, **{f"eval_{k}": v for k, v in extra.means(world).items()}}
        if task_metrics is not None:
            if world > 1:
                outputs = {k: gather_object(v) for k, v in outputs.items()}
            scores.update({f"eval_{k}": v for k, v in task_metrics(outputs).items()})
        elif getattr(objective, "perplexity", True):  # False where exp(loss) is none (ELECTRA's weighted sum)
            scores["eval_ppl"] = math.exp(min(loss, 50.0))
        return scores

    best_key = _metric_key(cfg.eval.select_best_by)
    if state["initial_eval_loss"] is None and cfg.eval.at_start and len(eval_set):
        scores = evaluate()
        state["initial_eval_loss"] = scores["eval_loss"]
        if show_progress and acc.is_main_process:
            stderr.print(f"step      0  {_scores_text(scores)} before training")
    model.train()
    batches = iter(loader)

    def to_device(cpu: list[dict]) -> tuple[list[dict], int, int]:
        """An optimizer step's micro-batches on the device, and the prediction targets and input tokens of all
        processes, counted on the CPU before the copies (no wait for the device)."""
        counts = [sum(int((b["labels"] != -100).sum()) for b in cpu), sum(_input_tokens(b) for b in cpu)]
        if world > 1:
            counts = [int(v) for v in acc.reduce(torch.tensor(counts, device=acc.device), reduction="sum")]
        return [_to(b, acc.device) for b in cpu], counts[0], counts[1]

    profiler = (StepProfiler(run_dir / "profile", tc.profile_steps, tc.profile_from, acc.device)
                if tc.profile_steps > 0 and acc.is_main_process else None)
    steps_per_epoch = max(1, math.ceil(len(train_set) / (tc.batch_size * tc.grad_accum * world)))
    last_row: dict = {}
    mfus: list[float] = []
    mfus_above_one = False
    if show_progress and acc.is_main_process:
        stderr.print(f"model FLOPs {flops_per_token:.3g} per token; MFU against {world} x {peak / 1e12:.3g} TFLOP/s "
                     f"({peak_source})")
        fused = "fused" if getattr(optimizer, "optimizer", optimizer).defaults.get("fused") else "unfused"
        stderr.print(f"precision {precision}, {attention} attention, {fused} AdamW"
                     + "".join(f", {k}" for k in kernels) + (", torch.compile" if tc.compile else ""))
        if world > 1:
            stderr.print(f"{world} processes ({acc.distributed_type.value}); global batch {tc.batch_size} x "
                         f"{tc.grad_accum} x {world} = {tc.batch_size * tc.grad_accum * world} examples per step")
    started, window_start, window_tokens, window_metrics = time.time(), time.time(), 0, MeanMetrics()
    def save_checkpoint() -> Path:
        return checkpoint.save(acc, run_dir, state["step"], {**state, "scheduler": scheduler.state_dict()},
                               keep=tc.keep_checkpoints)

    progress = progress_bar(show_progress and acc.is_main_process)
    with progress, StopRequest() as stop:  # Ctrl-C / SIGTERM: stop after the step, with a checkpoint
        bar = progress.add_task("train", total=max_steps, completed=state["step"], status="")
        upcoming: list[dict] = []  # the next step's micro-batches, collated during this step's backward passes
        # The loss is read on the host only where a row is logged or a checkpoint written: a read waits for the
        # device, and every step's would keep the host from queuing the next step while the GPU works. Between
        # reads, the first step whose loss is not finite (and that loss) are kept on the device.
        first_bad = torch.tensor([math.inf, 0.0], dtype=torch.float64, device=acc.device)  # (step, its loss)
        while state["step"] < max_steps:
            if profiler is not None:
                profiler.before(state["step"])
            cpu_batches = upcoming + [next(batches) for _ in range(tc.grad_accum - len(upcoming))]
            micro, all_targets, step_tokens = to_device(cpu_batches)
            upcoming = []
            loss_sum = torch.zeros((), dtype=torch.float64, device=acc.device)
            for i, batch in enumerate(micro):
                sync = i == len(micro) - 1
                with nullcontext() if sync else acc.no_sync(model):
                    with dropout_mode(), attention_kernels():
                        out = objective.loss(model, batch)
                    # DDP averages gradients over processes; multiply by world so the result is sum / all_targets.
                    acc.backward(out.loss_sum * (world / max(all_targets, 1)))
                if state["step"] + 1 < max_steps:  # the CPU collates one of the next step's batches meanwhile
                    upcoming.append(next(batches))
                loss_sum += out.loss_sum.detach().double()
                window_metrics.add(out.metrics)
            grad_norm = acc.clip_grad_norm_(model.parameters(), tc.max_grad_norm if tc.max_grad_norm > 0 else math.inf)
            lr = max(scheduler.get_last_lr())  # the peak group (a task head may train faster)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["micro_step"] += tc.grad_accum
            state["tokens_seen"] += step_tokens
            window_tokens += step_tokens
            if profiler is not None:
                profiler.after(state["step"], last=state["step"] == max_steps)
            newly_bad = ~torch.isfinite(loss_sum) & torch.isinf(first_bad[0])  # no host read: device-side updates
            first_bad = torch.stack([torch.where(newly_bad, float(state["step"]), first_bad[0]),
                                     torch.where(newly_bad, loss_sum, first_bad[1])])

            step, last = state["step"], state["step"] == max_steps
            evaluate_now = len(eval_set) > 0 and (last or (tc.eval_every > 0 and step % tc.eval_every == 0)
                                                  or (cfg.eval.per_epoch and step % steps_per_epoch == 0))
            log_now = evaluate_now or step % tc.log_every == 0
            if log_now or step % tc.save_every == 0:  # a row or a checkpoint is due: read the loss
                loss = float(acc.reduce(loss_sum, reduction="sum")) / max(all_targets, 1)
                bad_step, bad_loss = min(acc.gather(first_bad[None]).tolist())  # the earliest of all processes
                if math.isfinite(bad_step):
                    advice = f"lower train.lr (now {tc.lr}) or raise train.warmup_steps (now {tc.warmup_steps})"
                    if precision == "fp16":
                        advice += ", or use train.precision=bf16 or fp32"
                    saved = checkpoint.latest(run_dir)
                    advice += (f"; then continue from {saved} with --resume" if saved else "; then start again")
                    raise TrainingError(f"the loss became {bad_loss} at step {int(bad_step)}: {advice}")
            stop_early = False
            if log_now:
                now = time.time()
                row = {"step": step, "time": round(now, 3), "loss": round(loss, 6), "lr": lr,
                       "grad_norm": round(float(grad_norm), 6), "tokens_seen": state["tokens_seen"],
                       "tokens_per_s": round(window_tokens / max(now - window_start, 1e-9), 1)}
                row.update(flops.utilisation(row["tokens_per_s"], flops_per_token, peak * world))
                row.update(window_metrics.means(world))  # every process's micro-batches since the last row
                if row["mfu"] > 1 and not mfus_above_one and "probe" in peak_source and acc.is_main_process:
                    stderr.print(f"[yellow]MFU {row['mfu']:.0%} at step {step}: above 100%, so the matmul probe that "
                                 f"measured the peak ({peak / 1e12:.3g} TFLOP/s) ran while the device was busier than "
                                 "it is now (another process on the same cores?); this run's MFU figures read high")
                mfus_above_one = mfus_above_one or row["mfu"] > 1
                mfus.append(row["mfu"])
                if evaluate_now:
                    row.update({k: round(v, 6) for k, v in evaluate().items()})
                    if show_progress and acc.is_main_process:  # a line per evaluation stays above the bar
                        progress.console.print(f"step {step:>6}  loss {loss:.4f}  {_scores_text(row)}")
                    if best_key is not None:
                        stop_early = _track_best(acc, model, row, best_key, state, run_dir, cfg.eval.patience)
                        if stop_early and not last and acc.is_main_process:  # at the last step nothing stops
                            evaluations = "evaluation" if cfg.eval.patience == 1 else "evaluations"
                            progress.console.print(f"early stopping: {best_key} has not improved for "
                                                   f"{cfg.eval.patience} {evaluations} (best at step "
                                                   f"{state['best_step']})")
                log.write(row)
                if acc.log_with:
                    acc.log({k: v for k, v in row.items() if k not in ("step", "time")}, step=step)
                if evaluate_now and on_eval is not None and acc.is_main_process:  # after the row is logged: a run
                    on_eval(step, row)  # that on_eval stops (a pruned trial) keeps its last evaluation
                progress.update(bar, completed=step, status=status_text(row))
                if show_progress and acc.is_main_process and not evaluate_now and not live_display():
                    # a log file (a launcher's, a scheduler's) gets no live bar: a line per logged row instead
                    stderr.print(f"step {step:>6}/{max_steps}  {status_text(row)}")
                last_row, window_start, window_tokens, window_metrics = row, time.time(), 0, MeanMetrics()
            else:
                progress.update(bar, completed=step)
            saved = save_checkpoint() if last or stop_early or step % tc.save_every == 0 else None
            if stop_early:
                break
            if not last and _stop_requested(stop, acc, world, synced=log_now or step % tc.save_every == 0):
                found = saved or save_checkpoint()
                name = stop.signal or "a signal to another process"
                raise Interrupted(f"stopped by {name} at step {step} of {max_steps}; checkpoint {found} written"
                                  + (f": continue with {resume_command}" if resume_command else ""),
                                  exit_code=_exit_code(stop.signal))
        stopped_by = stop.signal  # one that came during the last step: the run is complete, the caller stops after it

    for tracker in acc.trackers:  # not acc.end_training(): that would also end the process group the caller uses
        tracker.finish()
    if acc.is_main_process:
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png", title=cfg.run.name,
                    initial_eval_loss=state["initial_eval_loss"])
    metrics = {"train_seconds": round(time.time() - started, 2)}
    if state["initial_eval_loss"] is not None:
        metrics["initial_eval_loss"] = state["initial_eval_loss"]
        if task_metrics is None and getattr(objective, "perplexity", True):
            metrics["initial_eval_ppl"] = math.exp(min(state["initial_eval_loss"], 50.0))
    if mfus:
        metrics["mfu"] = flops.mean_mfu(mfus)  # the mean over the logged windows
    metrics["peak_memory_gb"] = peak_memory_gb(acc.device)
    if last_row:
        metrics.update({k: v for k, v in last_row.items() if k == "loss" or k.startswith("eval_")})
    if best_key is not None and state["best_step"] is not None:
        metrics.update({"best_step": state["best_step"], **{f"best_{k}": v for k, v in state["best_scores"].items()}})
    return FitResult(steps=state["step"], tokens_seen=state["tokens_seen"], metrics=metrics, model=model,
                     stopped_by=stopped_by)


def _exit_code(signal_name: str | None) -> int:
    """The shell's status for a process ended by the signal: 128 + its number (SIGINT 130, SIGTERM 143)."""
    return 143 if signal_name == "SIGTERM" else 130


def interrupted_after(result: FitResult, final: Path, completed: object = None) -> None:
    """Raise Interrupted for a signal that came during the last step, once the caller has written `final`;
    `completed` (the caller's result) travels with it."""
    if result.stopped_by is not None:
        raise Interrupted(f"stopped by {result.stopped_by} during the last step; the run is complete ({final})",
                          exit_code=_exit_code(result.stopped_by), completed=completed)


def _stop_requested(stop: StopRequest, acc: Accelerator, world: int, *, synced: bool) -> bool:
    """Whether to stop after this step: at once in a single process; with several, only at a step where they all
    wait anyway (`synced`: a logged row or a checkpoint), where they agree on it (a signal may reach one only)."""
    if world == 1:
        return stop.signal is not None
    if not synced:
        return False
    asked = torch.tensor(0.0 if stop.signal is None else 1.0, device=acc.device)
    return bool(acc.reduce(asked, reduction="sum") > 0)


def _load_newest(acc: Accelerator, model, run_dir: Path) -> tuple[Path, dict] | None:
    """(checkpoint, trainer state) of the newest checkpoint that loads, or None where there is none. A damaged one
    (a disk fault or a hand edit: a kill cannot leave one) is passed over for the one before it, with a warning;
    when none loads, the newest one's error is raised."""
    candidates = checkpoint.checkpoint_dirs(run_dir)[::-1]
    keys = set(acc.unwrap_model(model).state_dict())
    first_error = None
    for found in candidates:
        try:
            state = checkpoint.load(acc, found, keys)
        except checkpoint.CheckpointError as e:
            first_error = first_error or e
            stderr.print(f"[yellow]warning: {e}; trying the checkpoint before it")
            continue
        if first_error is not None:
            stderr.print(f"[yellow]warning: resuming from {found.name}, not from the newest checkpoint "
                         f"({first_error.checkpoint.name})")
        return found, state
    if first_error is not None:
        raise TrainingError(f"{first_error}, and no checkpoint before it loads either: start the run again "
                            "(--overwrite)") from first_error
    return None


def peak_memory_gb(device: torch.device) -> float:
    """The run's peak memory in GiB: on CUDA the most torch allocated on the device (its caching allocator may hold
    more); elsewhere the process's peak resident memory (everything in it, the Python interpreter included)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux reports KiB


class MeanMetrics:
    """Running means of an objective's LossOutput.metrics (scalar tensors, summed without a device sync until read)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        if metrics:
            for key, value in metrics.items():
                value = value.detach().double()
                self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.count += 1

    def means(self, world: int = 1) -> dict[str, float]:
        """The means over this process's batches; with `world` > 1 over every process's (a collective call: every
        process makes it)."""
        parts = [({k: float(v) for k, v in self.sums.items()}, self.count)]
        if world > 1:
            parts = gather_object(parts)
        sums: dict[str, float] = {}
        for part, _ in parts:
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value
        count = sum(n for _, n in parts)
        return {key: round(value / count, 6) for key, value in sums.items()} if count else {}


def _metric_key(name: str | None) -> str | None:
    """eval.select_best_by -> the metrics.jsonl key it reads (accuracy -> eval_accuracy)."""
    if name is None:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"


def _track_best(acc: Accelerator, model, row: dict, key: str, state: dict, run_dir: Path, patience: int) -> bool:
    """Keep the best weights in checkpoints/best/ (atomically); True when patience has run out."""
    if key not in row:
        found = ", ".join(k.removeprefix("eval_") for k in row if k.startswith("eval_"))
        raise ConfigError(f"eval.select_best_by: no metric {key.removeprefix('eval_')!r}; this run reports {found}")
    value, best = row[key], state["best_scores"].get(key)
    improved = best is None or (value < best if key == "eval_loss" else value > best)
    if improved:
        state.update(best_step=row["step"], evals_without_improvement=0,
                     best_scores={k: v for k, v in row.items() if k.startswith("eval_")})
        checkpoint.save_weights(acc, model, Path(run_dir) / "checkpoints" / "best")
        return False
    state["evals_without_improvement"] += 1
    return patience > 0 and state["evals_without_improvement"] >= patience


def _scores_text(scores: dict) -> str:
    def one(key: str, value: float) -> str:
        if key == "eval_ppl":
            return f"(ppl {value:.1f})"
        return f"{'eval' if key == 'eval_loss' else key.removeprefix('eval_')} {value:.4f}"

    return "  ".join(one(k, v) for k, v in scores.items() if k.startswith("eval_"))


def _input_tokens(batch: dict) -> int:
    """Non-padding input tokens of a batch (all of them for packed blocks)."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    return batch["input_ids"].numel()


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
