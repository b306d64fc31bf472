"""`plm quickstart`: the whole pre-training path, offline, in a few minutes on a laptop CPU.

It writes a corpus from text every Python install has (the standard library's docstrings and the language
reference topics shipped in `pydoc_data`), trains a WordPiece tokenizer and a small BERT on it, evaluates
perplexity on held-out paragraphs before and after, exports DIR/final/ and fills masks with the exported model.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sysconfig
import time
from importlib import resources
from pathlib import Path

from plmkit.config import load_config
from plmkit.errors import PlmError
from plmkit.training.logging import stderr

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "ensurepip",
             "__pycache__", "tkinter"}
FILL_MASK_PROMPTS = [
    "Return a new [MASK] containing the items of the iterable.",
    "Raise ValueError if the value is not [MASK] the list.",
    "The default value of the timeout [MASK] is None.",
    "If the file does not exist, an [MASK] is raised.",
]


def _stdlib_docstrings():
    """(kind, docstring) for every module, class and function docstring of the standard library, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    kinds = {ast.Module: "module", ast.ClassDef: "class", ast.FunctionDef: "function",
             ast.AsyncFunctionDef: "function"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("test"))
        for name in sorted(f for f in filenames if f.endswith(".py") and not f.startswith("test")):
            try:
                tree = ast.parse(Path(dirpath, name).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if type(node) in kinds:
                    yield kinds[type(node)], ast.get_docstring(node) or ""


def stdlib_paragraphs(min_chars: int = 40) -> list[str]:
    """Paragraphs of the standard library's docstrings and pydoc topics, whitespace-normalised, in a fixed order."""
    paragraphs: list[str] = []
    for _, docstring in _stdlib_docstrings():
        paragraphs += _paragraphs(docstring, min_chars)
    try:
        from pydoc_data.topics import topics

        for key in sorted(topics):
            paragraphs += _paragraphs(topics[key], min_chars)
    except ImportError:
        pass
    return paragraphs


def stdlib_labeled(per_label: int = 1200, min_chars: int = 40) -> list[tuple[str, str]]:
    """A labeled task every Python install can build: the first paragraph of a docstring -> what it documents
    (module, class or function). At most `per_label` of each, chosen by a hash of the text (deterministic)."""
    import hashlib

    seen, by_label = set(), {}
    for kind, docstring in _stdlib_docstrings():
        first = _paragraphs(docstring, min_chars)[:1]
        if first and first[0] not in seen:
            seen.add(first[0])
            by_label.setdefault(kind, []).append(first[0])
    rows = []
    for kind, texts in sorted(by_label.items()):
        texts.sort(key=lambda t: hashlib.blake2b(t.encode(), digest_size=8).digest())
        rows += [(text, kind) for text in texts[:per_label]]
    return rows


def _paragraphs(text: str, min_chars: int) -> list[str]:
    out = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [p for p in out if len(p) >= min_chars]


def write_stdlib_corpus(path: Path) -> tuple[Path, int]:
    """Write the paragraphs, one blank-line-separated document each; returns (path, documents)."""
    paragraphs = stdlib_paragraphs()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path, len(paragraphs)


def _refuse_another_run(out: Path, overwrite: bool) -> None:
    """A quickstart replaces its own earlier run in `out`; a run of anything else there (a typo in --out) is kept."""
    from plmkit.api import held_artifacts
    from plmkit.config import read_yaml

    held = held_artifacts(out)
    if not held or overwrite:
        return
    try:
        saved = read_yaml(out / "config.yaml")
        name = saved.get("run", {}).get("name") if isinstance(saved, dict) and isinstance(saved.get("run"), dict) \
            else None
    except PlmError:  # missing or unreadable: not known to be a quickstart's
        name = None
    if name != "quickstart":
        raise PlmError(f"{out} holds a run that no quickstart made ({', '.join(held)}); a quickstart would delete "
                       "it: pass another --out, or --overwrite to replace it")


def run_quickstart(out: str | Path = "runs/quickstart", *, data: list[str] | None = None,
                   max_steps: int | None = None, finetune: bool = True, show_progress: bool = True,
                   overwrite: bool = False) -> dict:
    """Pre-train a small BERT end to end and return a summary (wall time, perplexity before/after, fill-mask).

    Args:
        out: the run folder; out/final/ is the pre-trained masked LM.
        data: the user's own text files or globs instead of the standard-library corpus.
        max_steps: training steps instead of the quickstart config's.
        finetune: then fine-tune the model and a scratch twin on a labeled task built from the same docstrings.
        overwrite: replace a run in `out` that no quickstart made (an earlier quickstart's is always replaced).

    Raises:
        PlmError: `out` holds a run that no quickstart made, and `overwrite` is false.
    """
    from plmkit.api import pretrain

    started = time.time()
    out = Path(out)
    _refuse_another_run(out, overwrite)
    if not data:
        corpus, count = write_stdlib_corpus(out / "data" / "stdlib_docs.txt")
        stderr.print(f"corpus: {count:,} paragraphs of standard-library docstrings and reference topics -> {corpus}")
        data = [str(corpus)]
    overrides = [f"run.output_dir={out}", f"data.paths={json.dumps([str(p) for p in data])}",
                 f"data.cache_dir={out / 'cache'}"]
    if max_steps is not None:  # a shorter run warms up for a tenth of it at most, so that it reaches its peak LR
        overrides += [f"train.max_steps={max_steps}", f"train.warmup_steps={min(150, max(0, max_steps // 10))}"]
    config_file = resources.files("plmkit") / "resources" / "quickstart.yaml"
    with resources.as_file(config_file) as path:
        cfg = load_config(path, overrides)
    result = pretrain(cfg, overwrite=True, show_progress=show_progress)
    predictions = fill_masks(out / "final", FILL_MASK_PROMPTS)
    before, after = result.metrics["initial_eval_loss"], result.metrics.get("eval_loss")
    summary = {
        "output_dir": str(out), "final": str(out / "final"), "wall_seconds": round(time.time() - started, 1),
        "steps": result.metrics["steps"], "tokens_seen": result.metrics["tokens_seen"],
        "eval_loss_before": round(before, 4), "eval_ppl_before": round(math.exp(min(before, 50)), 1),
        "eval_loss_after": round(after, 4), "eval_ppl_after": round(math.exp(min(after, 50)), 1),
        "fill_mask": predictions,
    }
    stderr.print(f"\n[bold]held-out perplexity[/]: {summary['eval_ppl_before']:,.1f} before -> "
                 f"{summary['eval_ppl_after']:,.1f} after {summary['steps']} steps "
                 f"({summary['wall_seconds']:.0f} s); loss curve: {out / 'loss.png'}")
    for prompt, guesses in predictions.items():
        stderr.print(f"  {prompt}\n    -> " + ", ".join(f"{g['token']} ({g['score']:.2f})" for g in guesses))
    stderr.print(f"model: {out / 'final'} (AutoModelForMaskedLM.from_pretrained / pipeline('fill-mask'))")
    if finetune:
        summary["finetune"] = finetune_pretrained_vs_scratch(out, show_progress=show_progress)
        summary["wall_seconds"] = round(time.time() - started, 1)
    return summary


def finetune_pretrained_vs_scratch(out: Path, *, show_progress: bool = True) -> dict:
    """Fine-tune out/final and a randomly initialised twin on the docstring-kind task; scores on held-out rows.

    Writes out/finetune/data/{train,dev}.tsv and the runs out/finetune/{pretrained,scratch}/ (out/final/ is left
    as it is)."""
    from plmkit.api import finetune

    rows = stdlib_labeled()
    data = out / "finetune" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", [r for i, r in enumerate(rows) if i % 5]), ("dev", rows[::5])):
        lines = ["text\tlabel"] + [f"{text.replace(chr(9), ' ')}\t{label}" for text, label in part]
        (data / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    stderr.print(f"\n[bold]fine-tuning[/]: docstring -> module / class / function ({len(rows) - len(rows[::5])} "
                 f"training, {len(rows[::5])} held-out rows), from the pre-trained model and from scratch")
    config_file = resources.files("plmkit") / "resources" / "quickstart_finetune.yaml"
    scores = {}
    for start in ("pretrained", "scratch"):
        overrides = [f"init.from={out / 'final'}", f"task.train={data / 'train.tsv'}",
                     f"task.validation={data / 'dev.tsv'}", f"run.output_dir={out / 'finetune' / start}"]
        with resources.as_file(config_file) as path:
            cfg = load_config(path, overrides)
        result = finetune(cfg, scratch=start == "scratch", overwrite=True, show_progress=show_progress)
        scores[start] = {k: round(result.metrics[f"best_eval_{k}"], 4) for k in ("accuracy", "macro_f1")}
    stderr.print(f"held-out accuracy: {scores['pretrained']['accuracy']:.1%} from the pre-trained model, "
                 f"{scores['scratch']['accuracy']:.1%} from scratch (macro-F1 {scores['pretrained']['macro_f1']:.3f} "
                 f"vs {scores['scratch']['macro_f1']:.3f}); models in {out / 'finetune'}")
    return scores


def fill_masks(model_dir: Path, prompts: list[str], top_k: int = 3) -> dict[str, list[dict]]:
    """Top-k fill-mask guesses of an exported model, through transformers' own pipeline."""
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(model_dir), device="cpu")
    mask = fill.tokenizer.mask_token
    return {p: [{"token": g["token_str"], "score": round(float(g["score"]), 3)}
                for g in fill(p.replace("[MASK]", mask), top_k=top_k)] for p in prompts}
