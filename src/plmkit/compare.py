"""`plm compare`: the transfer gain, measured. A task is fine-tuned from the pre-trained model and from the
same architecture with random weights, at several labeled-set sizes and seeds: a table (mean ± std), a plot.
Try it: plm compare --model runs/quickstart/final --task classification --train train.tsv --sizes 100,400
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from plmkit.config import RunConfig, to_yaml
from plmkit.errors import Interrupted, PlmError
from plmkit.training.logging import progress_bar, stderr

Arm = Callable[[RunConfig, int], dict]
"""arm(run_cfg, size) -> metrics. It trains on `size` training examples drawn with run_cfg.run.seed, writes
config.yaml and results.json in run_cfg.run.output_dir, and returns steps, train_seconds and
best_eval_<metric> (as api.finetune does)."""


def _finetune_arm(scratch: bool) -> Arm:
    def run(cfg: RunConfig, size: int) -> dict:
        from plmkit import api

        result = api.finetune(cfg, scratch=scratch, overwrite=True, show_progress=False, train_limit=size,
                              resumable=False)
        return result.metrics

    return run


ARMS: dict[str, Arm] = {"pretrained": _finetune_arm(scratch=False), "scratch": _finetune_arm(scratch=True)}
"""Starting points compared at every size and seed: init.from's weights, and the same architecture with random
weights. The third, STATIC (a classifier over static word vectors), joins them when compare() is given
static_vectors."""
STATIC = "static"
"""The arm added by compare(static_vectors=DIR): a classifier over Word2Vec / GloVe vectors."""


def _static_arm(cfg: RunConfig, size: int) -> dict:
    """A linear classifier over the static vectors in init.from (compare sets it to static_vectors for this arm,
    so a run's saved config names the vectors it used)."""
    from plmkit.embeddings.classify import train_static_classifier

    return train_static_classifier(cfg, cfg.init.from_, train_limit=size)


DEFAULT_SIZES = (250, 1000, 8000)


def compare(cfg: RunConfig, *, sizes: Sequence[int] = DEFAULT_SIZES, seeds: int | Sequence[int] = 3,
            arms: Sequence[str] = ("pretrained", "scratch"), min_steps: int = 100,
            out: str | Path | None = None, overwrite: bool = False, keep_models: bool = False,
            show_progress: bool = True, static_vectors: str | Path | None = None) -> dict:
    """Fine-tune every arm at every labeled-set size with every seed; write OUT/runs.jsonl, compare.md,
    compare.json and compare.png; return the aggregated table.

    Args:
        cfg: a fine-tuning config (init.from, task.*, train.*), as for `finetune`.
        sizes: labeled-set sizes; a size above the training set is capped to it, and repeats run once.
        seeds: how many seeds (run.seed, run.seed + 1, ...), or the seeds. A seed draws the same training
            subset for every arm, so the arms are compared on the same examples.
        arms: names in ARMS.
        min_steps: every run makes at least this many optimizer updates (small sets get more epochs).
        out: the comparison folder (default run.output_dir + "-compare"); run folders are
            OUT/<arm>/n<size>-s<seed>/.
        overwrite: run everything again instead of reusing finished runs with the same settings.
        keep_models: keep each run's final/ (by default only scores, metrics.jsonl and curves are kept).
        static_vectors: the folder of `plm embeddings train` (vectors.txt): adds the arm "static", a classifier
            over those vectors trained on the same subsets (classification and multilabel tasks).
    """
    from plmkit.tasks import tasks

    known = {**ARMS, STATIC: _static_arm} if static_vectors is not None else ARMS
    if static_vectors is not None and STATIC not in arms:
        arms = (*arms, STATIC)
    unknown = [a for a in arms if a not in known]
    if unknown or not arms:
        hint = " (static: pass static_vectors / --static-vectors DIR)" if STATIC in unknown else ""
        raise PlmError(f"unknown arm(s) {unknown}; choose from: {', '.join(known)}{hint}")
    if len(set(arms)) < len(arms):
        raise PlmError(f"arms must not repeat; got {list(arms)}")
    if not sizes or any(int(s) < 1 for s in sizes):
        raise PlmError(f"sizes must be counts of labeled examples >= 1; got {list(sizes)}")
    if min_steps < 0:
        raise PlmError(f"min_steps must be >= 0; got {min_steps}")
    given = seeds
    seeds = [cfg.run.seed + i for i in range(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
    if isinstance(given, int) and given >= 1 and seeds[-1] >= 2**32:
        raise PlmError(f"seeds {given} counts up from run.seed ({cfg.run.seed}) past 2**32 - 1; lower run.seed or "
                       "give the seeds themselves")
    if not seeds or len(set(seeds)) < len(seeds) or not all(0 <= s < 2**32 for s in seeds):
        raise PlmError(f"seeds must be a count >= 1 or distinct numbers in [0, 2**32 - 1]; got {given}")
    from plmkit.api import check_finetune_config, warn_unused_settings

    check_finetune_config(cfg)
    if set(arms) - {STATIC}:  # the pretrained and scratch arms take init.from's model (or its architecture)
        warn_unused_settings(cfg)
    if static_vectors is not None:
        _check_static(cfg, static_vectors)
    out = Path(out) if out is not None else Path(str(cfg.run.output_dir).rstrip("/") + "-compare")
    metric = cfg.eval.select_best_by or tasks.get(cfg.task.name).factory.main_metric  # as api.finetune does
    key = "best_" + (metric if metric.startswith("eval_") else f"eval_{metric}")
    available = count_training_examples(cfg)
    used, capped = effective_sizes(sizes, available)
    for size in capped:
        stderr.print(f"[yellow]{size:,} labeled examples requested, {available:,} available: using all")
    plan = [(arm, size, seed) for size in used for seed in seeds for arm in arms]
    stderr.print(f"compare: {len(arms)} arms x {len(used)} sizes ({', '.join(f'{s:,}' for s in used)}) x "
                 f"{len(seeds)} seeds = {len(plan)} runs of {cfg.task.name} on {cfg.task.train}; {metric} on "
                 f"{cfg.task.validation or 'held-out training rows'}; results in {out}")
    out.mkdir(parents=True, exist_ok=True)
    growing = out / "runs.jsonl.partial"  # becomes runs.jsonl with compare.md: a stopped rerun leaves the old three
    growing.write_text("")
    rows, started = [], time.time()
    with progress_bar(show_progress, label="compare", status=False) as progress:
        bar = progress.add_task("runs", total=len(plan))
        for arm, size, seed in plan:
            run_cfg = run_config(cfg, arm, size, seed, min_steps, out)
            if arm == STATIC:
                run_cfg.init.from_ = str(static_vectors)
            try:
                one = _run_one(run_cfg, arm, size, key, overwrite=overwrite, keep_models=keep_models,
                               train=known[arm])
            except Interrupted as e:
                raise Interrupted(f"{arm} n={size} seed={seed}: {e}; run the same plm compare command again to go "
                                  "on (the finished runs are reused)", e.exit_code) from e
            row = {"arm": arm, "size": size, "seed": seed, "epochs": run_cfg.train.epochs, "metric": metric, **one}
            rows.append(row)
            with growing.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            took = "reused" if row["reused"] else f"{row['seconds']:.0f} s, {row['steps']} steps"
            line = f"{arm:10s} n={size:<6,} seed={seed:<5} {metric} {row['value']:.4f} ({took})"
            progress.console.print(line, soft_wrap=True)
            progress.advance(bar)
    epochs = {size: epochs_for(cfg, size, min_steps) for size in used}
    summary = {"metric": metric, "output_dir": str(out), "task": cfg.task.name, "model": cfg.init.from_,
               "train": cfg.task.train, "validation": cfg.task.validation, "arms": list(arms), "seeds": seeds,
               "min_steps": min_steps, "available": available, "sizes_requested": [int(s) for s in sizes],
               "capped": {str(s): available for s in capped}, "table": aggregate(rows, arms, epochs),
               "runs": len(rows), "reused": sum(r["reused"] for r in rows),
               "static_vectors": None if static_vectors is None else str(static_vectors),
               "wall_seconds": round(time.time() - started, 1)}
    (out / "compare.json").write_text(json.dumps(summary, indent=1))
    (out / "compare.md").write_text(render_markdown(summary), encoding="utf-8")
    os.replace(growing, out / "runs.jsonl")
    plot_compare(summary, out / "compare.png")
    stderr.print(render_markdown(summary, header=False) + f"in {out}: compare.md, compare.json, compare.png",
                 soft_wrap=True)
    return summary


def _check_static(cfg: RunConfig, static_vectors: str | Path) -> None:
    """Fail before any run: the static arm needs a classification task and a folder holding vectors.txt."""
    from plmkit.embeddings.classify import TASKS
    from plmkit.embeddings.vectors import VECTORS

    if cfg.task.name not in TASKS:
        raise PlmError(f"--static-vectors: the static-embedding classifier handles {' and '.join(TASKS)} tasks, "
                       f"not {cfg.task.name!r}; leave --static-vectors out for NER")
    from plmkit.embeddings.vectors import load_vectors

    folder = Path(static_vectors)
    if folder.name == VECTORS and folder.is_file():  # the file itself, as `plm embeddings neighbors` takes it
        folder = folder.parent
    if not (folder / VECTORS).is_file():
        raise PlmError(f"--static-vectors {folder}: no {VECTORS} there; give the --out folder of "
                       "`plm embeddings train`")
    load_vectors(folder, limit=2)  # a file that does not read fails now, not after the first transformer runs


def count_training_examples(cfg: RunConfig) -> int:
    """The examples api.finetune draws a training subset from (`draw_examples` with no limit: the training file,
    less the rows held out for validation when there is no task.validation)."""
    from plmkit.api import tokenizer_source
    from plmkit.tasks import build_task
    from plmkit.tasks.base import draw_examples
    from plmkit.tokenization import load_tokenizer

    tokenizer = load_tokenizer(cfg.tokenizer.pretrained or cfg.init.from_, source=tokenizer_source(cfg))
    train, _, _ = draw_examples(cfg, build_task(cfg.task, tokenizer, cfg.run.seed), None)
    return len(train)


def effective_sizes(sizes: Sequence[int], available: int) -> tuple[list[int], list[int]]:
    """(the sizes to run: capped at `available`, repeats dropped, ascending; the requested sizes over it)."""
    capped = sorted({int(s) for s in sizes if int(s) > available})
    return sorted({min(int(s), available) for s in sizes}), capped


def epochs_for(cfg: RunConfig, size: int, min_steps: int) -> float | None:
    """train.epochs for `size` examples: the configured epochs when they make at least `min_steps` optimizer
    updates (on one process), else the fewest whole passes that do; None when train.epochs is not set."""
    if cfg.train.epochs is None:
        return None
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    if math.ceil(cfg.train.epochs * size / per_step) >= min_steps:
        return cfg.train.epochs
    return float(math.ceil(min_steps * per_step / size))


def run_config(cfg: RunConfig, arm: str, size: int, seed: int, min_steps: int, out: Path) -> RunConfig:
    """A deep copy of cfg for one run: its seed, its folder OUT/<arm>/n<size>-s<seed>, and the epochs (without
    train.epochs: max_steps) raised to make at least `min_steps` updates. A run made longer trains to the end:
    early stopping is off for it (eval.patience 0), so it cannot stop before `min_steps`."""
    run_cfg = copy.deepcopy(cfg)
    run_cfg.run.seed, run_cfg.run.output_dir = seed, str(out / arm / f"n{size}-s{seed}")
    if cfg.train.epochs is None:
        run_cfg.train.max_steps = max(cfg.train.max_steps, min_steps)
    else:
        run_cfg.train.epochs = epochs_for(cfg, size, min_steps)
    if (run_cfg.train.epochs, run_cfg.train.max_steps) != (cfg.train.epochs, cfg.train.max_steps):
        run_cfg.eval.patience = 0
    return run_cfg


def _run_one(run_cfg: RunConfig, arm: str, size: int, key: str, *, overwrite: bool,
             keep_models: bool, train: Arm) -> dict:
    """Train one run, or reuse a finished one (results.json) whose saved config is this one."""
    run_dir = Path(run_cfg.run.output_dir)
    saved, results = run_dir / "config.yaml", run_dir / "results.json"
    reused = (not overwrite and results.is_file() and saved.is_file()
              and saved.read_text(encoding="utf-8") == to_yaml(run_cfg))
    if results.is_file() and not (reused or overwrite):
        stderr.print(f"[yellow]{run_dir} holds a run with other settings: running it again")
    started = time.time()
    metrics = json.loads(results.read_text()) if reused else train(run_cfg, size)
    if key not in metrics:
        raise PlmError(f"{run_dir}: the run reports no {key}; was it ever evaluated? (eval.per_epoch, "
                       "train.eval_every, eval.select_best_by)")
    for name in ("checkpoints",) if keep_models else ("checkpoints", "final"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    return {"value": metrics[key], "steps": metrics.get("steps"),
            "train_seconds": metrics.get("train_seconds"), "seconds": round(time.time() - started, 2),
            "reused": reused}


def aggregate(rows: list[dict], arms: Sequence[str], epochs: dict[int, float | None]) -> list[dict]:
    """One entry per size: each arm's mean, sample standard deviation (n - 1; None for one seed) and n over
    seeds, and the gain (pretrained mean - scratch mean) when both arms ran."""
    table = []
    for size in sorted({r["size"] for r in rows}):
        entry: dict = {"size": size, "epochs": epochs.get(size)}
        for arm in arms:
            values = [r["value"] for r in rows if r["arm"] == arm and r["size"] == size]
            std = statistics.stdev(values) if len(values) > 1 else None
            entry[arm] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
        if "pretrained" in entry and "scratch" in entry:
            entry["gain"] = entry["pretrained"]["mean"] - entry["scratch"]["mean"]
        table.append(entry)
    return table


def render_markdown(summary: dict, header: bool = True) -> str:
    """compare.md: a row per labeled-set size, a column per arm (mean ± std over seeds), then the gain."""
    arms, metric = summary["arms"], summary["metric"]
    gain = any("gain" in row for row in summary["table"])
    lines = []
    if header:
        validation = summary["validation"] or "held-out training rows"
        seeds = ", ".join(map(str, summary["seeds"]))
        lines += [f"# Transfer gain: {summary['task']}, {metric}", "",
                  (f"Model `{summary['model']}`; training file `{summary['train']}` "
                   f"({summary['available']:,} examples available); {metric} on `{validation}`; mean ± "
                   f"sample std over seeds {seeds}; at least {summary['min_steps']} optimizer updates per "
                   "run."), ""]
        if metric.removeprefix("eval_") == "loss":
            lines += ["Lower is better: a negative gain favours the pre-trained model.", ""]
        if summary.get("static_vectors"):
            lines += [(f"`static`: a linear classifier over the mean and max of the static word vectors in "
                       f"`{summary['static_vectors']}` (no transformer), trained on the same examples."), ""]
    columns = ["labeled examples", "epochs", *arms] + (["gain (pretrained - scratch)"] if gain else [])
    lines += ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for row in summary["table"]:
        cells = [f"{row['size']:,}", "-" if row["epochs"] is None else f"{row['epochs']:g}"]
        for arm in arms:
            mean, std = row[arm]["mean"], row[arm]["std"]
            cells.append(f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        if gain:
            cells.append(f"{row['gain']:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    if summary["capped"]:
        capped = summary["capped"].items()
        lines += ["", "; ".join(f"{int(s):,} requested, {n:,} available" for s, n in capped)]
    return "\n".join(lines) + "\n"


def plot_compare(summary: dict, path: Path) -> Path:
    """compare.png: the metric against labeled examples (log x axis), a line per arm with a ± std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["size"] for row in summary["table"]]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for arm in summary["arms"]:
        means = [row[arm]["mean"] for row in summary["table"]]
        stds = [row[arm]["std"] or 0.0 for row in summary["table"]]
        (line,) = ax.plot(sizes, means, "o-", label=arm)
        ax.fill_between(sizes, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labeled training examples")
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{summary['task']}: {summary['metric']} vs labeled examples "
                 f"(mean ± std over {len(summary['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
