"""The `plm` command line: each command parses its arguments, loads the config and calls one plmkit.api function.

Errors the user can fix print one line on stderr and exit with status 2 (`plm --debug ...` shows the traceback).
Machine-readable results go to stdout as one JSON object on one line; progress and logs go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="plmkit: pre-train, fine-tune, evaluate and share language models.")
config_app = typer.Typer(no_args_is_help=True, help="Show and check run configs.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Tokenizer stage only.")
data_app = typer.Typer(no_args_is_help=True, help="Data stage only.")
app.add_typer(config_app, name="config")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(data_app, name="data")
embeddings_app = typer.Typer(no_args_is_help=True, help="Static word embeddings (Word2Vec, GloVe): the context-free baseline.")
app.add_typer(embeddings_app, name="embeddings")

ConfigArg = Annotated[Path, typer.Argument(help="A run config YAML (see configs/).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set train.lr=1e-3 (repeatable).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _progress(quiet: bool) -> bool:
    """show_progress for a command's --quiet; quiet also turns off the bars transformers draws (loading weights)."""
    if quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    return not quiet


# The shortcut flags of the fine-tuning commands (finetune, tune, compare); finetune_config maps them onto keys.
FinetuneConfigArg = Annotated[Path | None, typer.Argument(help="A fine-tuning config YAML (optional).")]
ModelOpt = Annotated[str | None, typer.Option(help="Pre-trained model folder or hub id (init.from).")]
TaskOpt = Annotated[str | None, typer.Option(help="classification | multilabel | ner (task.name).")]
TrainOpt = Annotated[str | None, typer.Option(help="Training file, or hf:NAME[:CONFIG]:SPLIT (task.train).")]
ValidationOpt = Annotated[str | None, typer.Option(help="Validation file, or hf:NAME[:CONFIG]:SPLIT "
                                                        "(task.validation).")]


def emit(result: dict) -> None:
    """The command's result: one JSON object on one stdout line (from the main process only under torchrun; a RANK
    left in the environment of a single process, e.g. a node's rank, does not silence it)."""
    from plmkit.processes import first_process

    if not first_process():
        return
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def _one_process(command: str, why: str) -> None:
    """Refuse `command` under a multi-process launcher (torchrun, accelerate launch), where every process would do
    the same work and write the same files, or (compare) a second run would find the process group closed."""
    from plmkit.errors import PlmError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PlmError(f"plm {command} {why}; run it without torchrun or accelerate launch")


def _version(asked: bool) -> None:
    """--version: plmkit's version and those of the libraries whose versions decide its results (for bug reports)."""
    if not asked:
        return
    from importlib.metadata import PackageNotFoundError, version

    from plmkit import __version__

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    libraries = ", ".join(f"{name} {of(name)}" for name in ("torch", "transformers", "tokenizers", "accelerate", "peft"))
    typer.echo(f"plmkit {__version__} ({libraries}; python {sys.version.split()[0]})")
    raise typer.Exit()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the versions of plmkit and its main libraries.")] = False
          ) -> None:
    if debug:
        os.environ["PLMKIT_DEBUG"] = "1"


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for the run; DIR/final/ is the pre-trained model.")] = Path(
        "runs/quickstart"),
    data: Annotated[list[str] | None, typer.Option(help="Your own text files or globs instead of the "
                                                      "standard-library docstrings (repeatable).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps (default: the quickstart's).")] = None,
    finetune: Annotated[bool, typer.Option(help="Then fine-tune it and a scratch twin on a labeled task.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a run in --out that no quickstart made (an earlier "
                                                 "quickstart's is always replaced).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a tokenizer and a small BERT on text every Python install has, offline, in a few minutes on a CPU."""
    from plmkit.quickstart import run_quickstart

    _one_process("quickstart", "trains its models one after another in one process")

    emit(run_quickstart(out, data=data, max_steps=max_steps, finetune=finetune, show_progress=_progress(quiet),
                        overwrite=overwrite))


@app.command()
def pretrain(config: ConfigArg, set_: SetOpt = None,
             resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint.")] = False,
             overwrite: Annotated[bool, typer.Option(help="Delete an earlier run in the output folder.")] = False,
             quiet: QuietOpt = False) -> None:
    """Pre-train a model (masked or causal LM, ELECTRA, T5 span corruption) from a config; the model lands in
    run.output_dir/final/."""
    from plmkit import api, load_config

    cfg = load_config(config, set_)
    if resume:
        _check_resumed_from_here(config, cfg)
    result = api.pretrain(cfg, resume=resume, overwrite=overwrite, show_progress=_progress(quiet))
    emit({"output_dir": str(result.output_dir), **result.metrics})


@app.command()
def finetune(
    config: FinetuneConfigArg = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    train: TrainOpt = None,
    validation: ValidationOpt = None,
    out: Annotated[str | None, typer.Option(help="Run folder (run.output_dir); the model lands in OUT/final/.")]
    = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training data (train.epochs).")] = None,
    lora: Annotated[bool, typer.Option(help="LoRA adapters instead of full fine-tuning (adapter.name=lora).")]
    = False,
    scratch: Annotated[bool, typer.Option(help="Same architecture, random weights (for comparisons).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an earlier run in the output folder.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a pre-trained model on a labeled task; the best checkpoint on validation lands in OUT/final/."""
    from plmkit import api

    cfg = finetune_config(config, set_, model=model, task=task, train=train, validation=validation, out=out,
                          epochs=epochs, lora=lora)
    if resume and config is not None:
        _check_resumed_from_here(config, cfg)
    result = api.finetune(cfg, scratch=scratch, resume=resume, overwrite=overwrite, show_progress=_progress(quiet))
    emit({"output_dir": str(result.output_dir), **result.metrics})


def _check_resumed_from_here(config: Path, cfg) -> None:
    """--resume with a run's own config.yaml whose run.output_dir, read from here, is a folder without a run: a
    relative run.output_dir (and data paths) would be read from the wrong folder, or the run folder was moved, and
    the run would start afresh there. Refused, saying what to do."""
    from plmkit.api import held_artifacts
    from plmkit.errors import PlmError

    home = config.resolve().parent
    out = Path(cfg.run.output_dir)
    if config.name != "config.yaml" or not held_artifacts(home) or out.resolve() == home \
            or held_artifacts(out.resolve()):
        return  # not a run folder's own config, or it names a run to continue
    if out.is_absolute():
        raise PlmError(f"{config} is the config of the run in {home}, but its run.output_dir is {out}, which holds "
                       f"no run (was the run folder moved?): --resume would start a new run there; add --set "
                       f"run.output_dir={home}")
    launch = (Path(*home.parts[:len(home.parts) - len(out.parts)])
              if home.parts[len(home.parts) - len(out.parts):] == out.parts else None)
    where = f"run it from {launch} (cd {launch})" if launch else "run it from the folder you started the run in"
    raise PlmError(f"{config} is the config of the run in {home}, but its run.output_dir {str(out)!r} is read from "
                   f"this folder ({Path.cwd()}), where it is {out.resolve()}: --resume would start a new run there. "
                   f"Relative paths in a config are read from the folder plm runs in; {where}")


def finetune_config(config: Path | None, set_: list[str] | None, *, model: str | None = None,
                    task: str | None = None, train: str | None = None, validation: str | None = None,
                    out: str | None = None, epochs: float | None = None, lora: bool = False):
    """A fine-tuning command's config: CONFIG (or resources/finetune.yaml), then the shortcut flags, then --set."""
    from importlib import resources

    from plmkit import load_config
    from plmkit.errors import ConfigError

    given = {"--model": ("init.from", model), "--task": ("task.name", task), "--train": ("task.train", train),
             "--validation": ("task.validation", validation), "--out": ("run.output_dir", out),
             "--epochs": ("train.epochs", epochs), "--lora": ("adapter.name", "lora" if lora else None)}
    shortcuts = {flag: key for flag, (key, value) in given.items() if value is not None}  # flag -> the key it sets
    overrides = [f"{key}={json.dumps(value) if isinstance(value, str) else value}"  # quoted: 'runs/run #1' whole
                 for key, value in given.values() if value is not None] + list(set_ or [])
    set_keys = {item.split("=", 1)[0].strip() for item in overrides}
    if out is not None and config is None and "run.name" not in set_keys and Path(out).name:
        overrides.insert(0, f"run.name={json.dumps(Path(out).name)}")  # the card's title: runs/sst2 -> sst2
    if "train.max_steps" in set_keys and "train.epochs" not in set_keys:
        overrides.insert(0, "train.epochs=null")  # a step count asked for on the command line beats CONFIG's epochs
    with resources.as_file(resources.files("plmkit") / "resources" / "finetune.yaml") as defaults:
        try:
            return load_config(config or defaults, overrides)
        except ConfigError as e:  # name the flag the user typed, not the --set it became
            by_set = {item.split("=", 1)[0].strip() for item in set_ or []}
            flag = next((flag for flag, key in shortcuts.items() if key not in by_set and str(e).startswith(key)),
                        None)
            if flag is None:
                raise
            raise ConfigError(str(e).replace("(--set, on top of", f"({flag}, on top of")) from None


@app.command()
def tune(
    config: FinetuneConfigArg = None,
    trials: Annotated[int, typer.Option(help="Trials to run; each is a full fine-tuning run.")] = 10,
    param: Annotated[list[str] | None, typer.Option("--param", help="Change the search space: lr=1e-5:1e-3:log, "
                                                    "batch_size=16,32, epochs=off (repeatable; docs/tuning.md).")]
    = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    train: TrainOpt = None,
    validation: ValidationOpt = None,
    out: Annotated[Path | None, typer.Option(help="Search folder (default: run.output_dir + -tune).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Most passes over the training data (train.epochs).")]
    = None,
    lora: Annotated[bool, typer.Option(help="LoRA adapters; adds the rank to the space (adapter.name=lora).")]
    = False,
    timeout: Annotated[float | None, typer.Option(help="Start no new trial after this many seconds.")] = None,
    keep_all: Annotated[bool, typer.Option(help="Keep every trial's final/ and checkpoints/.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an earlier search in the output folder.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Search learning rate, batch size, epochs and warm-up (LoRA: rank) with optuna; the best run is kept."""
    from plmkit.tune import tune as search

    cfg = finetune_config(config, set_, model=model, task=task, train=train, validation=validation, epochs=epochs,
                          lora=lora)
    emit(search(cfg, trials=trials, out=out, space=param or [], timeout=timeout, overwrite=overwrite,
                keep_all=keep_all, show_progress=_progress(quiet)))


@app.command()
def compare(
    config: FinetuneConfigArg = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    task: TaskOpt = None,
    train: TrainOpt = None,
    validation: ValidationOpt = None,
    out: Annotated[Path | None, typer.Option(help="Comparison folder (default: run.output_dir + -compare).")]
    = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training data (train.epochs).")] = None,
    sizes: Annotated[str, typer.Option(help="Labeled-set sizes, comma-separated.")] = "250,1000,8000",
    seeds: Annotated[str, typer.Option(help="How many seeds (run.seed, +1, ...), or a list: 13,42.")] = "3",
    min_steps: Annotated[int, typer.Option(help="Optimizer updates per run at least (more epochs).")] = 100,
    keep_models: Annotated[bool, typer.Option(help="Keep each run's final/ (default: scores only).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Run everything again (no reuse of finished runs).")] = False,
    static_vectors: Annotated[Path | None, typer.Option(help="A `plm embeddings train` folder: adds a static row, "
                                                        "a classifier over those word vectors.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune from the pre-trained model and from scratch at several labeled-set sizes: transfer gain."""
    from plmkit.compare import compare as run_compare

    _one_process("compare", "runs its fine-tuning runs one after another in one process")

    cfg = finetune_config(config, set_, model=model, task=task, train=train, validation=validation,
                          epochs=epochs)
    emit(run_compare(cfg, sizes=_numbers(sizes, "--sizes"), min_steps=min_steps, out=out, overwrite=overwrite,
                     seeds=int(seeds) if seeds.strip().isdigit() else _numbers(seeds, "--seeds"),
                     keep_models=keep_models, show_progress=_progress(quiet), static_vectors=static_vectors))


def _numbers(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{flag} takes whole numbers separated by commas; got {text!r}") from None


@app.command()
def evaluate(model_dir: Annotated[Path, typer.Argument(help="A fine-tuned model folder (RUN/final).")],
             data: Annotated[str, typer.Option(help="A labeled file in the task's format, or "
                                                    "hf:NAME[:CONFIG]:SPLIT.")],
             task: Annotated[str | None, typer.Option(help="classification | multilabel | ner (default: the task the "
                                                      "model was fine-tuned for).")] = None,
             set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Score a fine-tuned model on a labeled file; metrics go to RUN/eval/ and stdout (one JSON line)."""
    from plmkit import api

    _one_process("evaluate", "scores in one process (every process would score all of it and write the same files)")

    result = api.evaluate(model_dir, task, data, overrides=set_, show_progress=_progress(quiet))
    emit({k: v for k, v in result.items() if k not in ("confusion_matrix", "confusion_labels")})


@app.command()
def predict(model_dir: Annotated[Path, typer.Argument(help="A fine-tuned model folder (RUN/final).")],
            data: Annotated[str, typer.Option(help="A file of texts (labels optional; .txt: one text per line), "
                                                   "or hf:NAME[:CONFIG]:SPLIT.")],
            output: Annotated[Path, typer.Option(help="Where to write predictions (JSON lines).")],
            task: Annotated[str | None, typer.Option(help="classification | multilabel | ner (default: the task the "
                                                     "model was fine-tuned for).")] = None,
            set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Predict labels for every example of a file, one JSON object per line."""
    from plmkit import api

    _one_process("predict", "predicts in one process (every process would predict all of it and write the same "
                            "file)")

    emit(api.predict(model_dir, task, data, output, overrides=set_, show_progress=_progress(quiet)))


@app.command()
def estimate(
    model: Annotated[str | None, typer.Argument(help="A preset (gpt2, llama-3-8b, qwen2-72b, ...: docs/estimate.md), a "
                                                     "run config YAML, or a Hugging Face config.json or model folder.")]
    = None,
    preset: Annotated[str | None, typer.Option(help="A preset by name, instead of the argument: --preset qwen2-72b.")]
    = None,
    tokens: Annotated[str | None, typer.Option(help="Training tokens: 7e12, 7T, 300B (default: Chinchilla-optimal).")]
    = None,
    hardware: Annotated[str, typer.Option(help="h100 (SXM), h100-pcie, h200, a100, l4, rtx4090, ...")] = "h100",
    devices: Annotated[int, typer.Option(help="Number of devices.")] = 8,
    mfu: Annotated[float | None, typer.Option(help="Model FLOPs utilisation (default: the hardware's).")] = None,
    measure: Annotated[Path | None, typer.Option(help="Run 20 steps of this config here; use its MFU.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Sequence length (default: the model's training length).")]
    = None,
    micro_batch: Annotated[int, typer.Option(help="Sequences per device per micro-batch (activations).")] = 1,
    price: Annotated[float | None, typer.Option(help="$ per device-hour, for the cost.")] = None,
    pue: Annotated[float | None, typer.Option(help="Data-centre PUE for the energy (default 1.1).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object on one stdout line.")] = False,
) -> None:
    """Estimate FLOPs, device-hours, days, memory per device, energy and cost of pre-training a model."""
    from plmkit import api
    from plmkit.errors import ConfigError
    from plmkit.estimate import PRESETS

    if (model is None) == (preset is None):
        raise ConfigError("give the model once: a preset, run config YAML or Hugging Face config as the argument, or "
                          "--preset NAME" + (", not both" if model is not None else ""))
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not a preset; choose one of {', '.join(PRESETS)} (or give a config "
                          "file or model folder as the argument)")
    result = api.estimate(model or preset, tokens=tokens, hardware=hardware, devices=devices, mfu=mfu, measure=measure,
                          seq_len=seq_len, micro_batch=micro_batch, price=price, pue=pue)
    if json_:
        emit(result)
    else:
        from rich.console import Console

        from plmkit.estimate import render

        Console().print(render(result))


@tokenizer_app.command("train")
def tokenizer_train(config: ConfigArg, set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Train the configured tokenizer on the training documents into run.output_dir/tokenizer/."""
    from plmkit import api, load_config

    cfg = load_config(config, set_)
    tokenizer = api.train_tokenizer_for(cfg, show_progress=_progress(quiet))
    emit({"tokenizer_dir": str(Path(cfg.run.output_dir) / "tokenizer"), "vocab_size": len(tokenizer)})


@data_app.command("prepare")
def data_prepare(config: ConfigArg, set_: SetOpt = None, quiet: QuietOpt = False) -> None:
    """Tokenize the corpus once into cached, memory-mapped shards (a second run reuses them)."""
    from plmkit import api, load_config

    data = api.prepare_data(load_config(config, set_), show_progress=_progress(quiet))
    emit({"shards": str(data.path), **data.report.to_dict()})


@config_app.command("show")
def config_show(config: Annotated[Path | None, typer.Argument(help="A run config YAML.")] = None,
                set_: SetOpt = None,
                doc: Annotated[bool, typer.Option("--doc", help="List every key with its default and meaning.")]
                = False,
                markdown: Annotated[bool, typer.Option(help="With --doc: the Markdown table of docs/.")] = False
                ) -> None:
    """Print the resolved, validated config as YAML (or, with --doc, the reference of every key)."""
    from plmkit.config import load_config, reference_markdown, reference_rows, to_yaml

    if doc and markdown:
        typer.echo(reference_markdown(), nl=False)
        return
    if doc:
        for key, type_, default, text in reference_rows():
            typer.echo(f"{key} ({type_}, default {default!r}): {text}")
        return
    from plmkit.embeddings import is_embeddings_config

    if config is not None and is_embeddings_config(config):  # a `plm embeddings train` config
        from plmkit.embeddings.config import embeddings_to_yaml, load_embeddings_config

        typer.echo(embeddings_to_yaml(load_embeddings_config(config, set_)), nl=False)
        return
    typer.echo(to_yaml(load_config(config, set_)), nl=False)


@config_app.command("check")
def config_check(folder: Annotated[Path, typer.Argument(help="A YAML config, or a folder of them.")]) -> None:
    """Load and validate a YAML config, or every one under a folder (each is checked; the mistakes are listed)."""
    from plmkit.errors import ConfigError, PlmError

    if not folder.exists():
        raise ConfigError(f"{folder} does not exist; give a YAML config or a folder of them")
    paths = [folder] if folder.is_file() else sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")])
    if not paths:
        raise ConfigError(f"{folder} holds no YAML config (*.yaml, *.yml)")
    failed = []
    for path in paths:
        try:
            _check_one_config(path)
        except PlmError as e:
            if len(paths) == 1:
                raise
            failed.append(str(path))
            typer.echo(f"error  {path}: {e}", err=True)
            continue
        typer.echo(f"ok  {path}", err=True)
    if failed:  # every file is checked first, so that one pass lists every mistake
        raise ConfigError(f"{len(failed)} of {len(paths)} configs under {folder} failed (listed above): "
                          f"{', '.join(failed)}")
    emit({"checked": len(paths)})


def _check_one_config(path: Path) -> None:
    from plmkit.config import load_config
    from plmkit.embeddings import is_embeddings_config, load_embeddings_config

    if is_embeddings_config(path):
        load_embeddings_config(path)
        return
    cfg = load_config(path)
    if cfg.task is None:  # a pre-training config: the checks `plm pretrain` makes before its data work
        from plmkit.api import check_pretrain_config
        from plmkit.objectives import objectives

        check_pretrain_config(cfg, objectives.get(cfg.objective.name).factory.model_kind)


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="objectives | tasks")] = "objectives") -> None:
    """List what a registry holds, one line each with its docstring."""
    from plmkit.objectives import objectives
    from plmkit.tasks import tasks

    registries = {"objectives": objectives, "tasks": tasks}
    if what not in registries:
        raise typer.BadParameter(f"choose one of: {', '.join(registries)}")
    width = max((len(entry.name) for entry in registries[what]), default=0)
    for entry in registries[what]:
        lr = getattr(entry.factory, "default_lr", None)
        typer.echo(f"{entry.name:{width}s}  {entry.doc}" + (f" (default train.lr {lr:g})" if lr else ""))


@embeddings_app.command("train")
def embeddings_train(
    config: Annotated[Path, typer.Argument(help="An embeddings config YAML (configs/embeddings/).")],
    method: Annotated[str | None, typer.Option(help="word2vec | glove (embeddings.method).")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (run.output_dir): OUT/vectors.txt.")] = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the vectors of an earlier run in OUT.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train Word2Vec or GloVe vectors on the config's corpus; OUT/vectors.txt is in word2vec text format."""
    from plmkit import api
    from plmkit.embeddings import load_embeddings_config

    shortcuts = {"embeddings.method": method, "run.output_dir": out}
    cfg = load_embeddings_config(config, [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + (set_ or []))
    result = api.train_embeddings(cfg, overwrite=overwrite, show_progress=_progress(quiet))
    emit({k: v for k, v in result.metrics.items() if k != "corpus"})


@embeddings_app.command("neighbors")
def embeddings_neighbors(
    vectors: Annotated[Path, typer.Argument(help="The OUT folder of `plm embeddings train` (or a vectors.txt).")],
    word: Annotated[str, typer.Argument(help="The query word.")],
    k: Annotated[int, typer.Option("--k", help="How many neighbours.")] = 10,
) -> None:
    """The nearest words to WORD by cosine similarity of the static vectors."""
    from plmkit import api

    emit(api.embedding_neighbors(vectors, word, k=k))


@embeddings_app.command("contrast")
def embeddings_contrast(
    model: Annotated[str, typer.Option(help="A transformer folder (e.g. RUN/final) or hub id.")],
    vectors: Annotated[Path, typer.Option(help="The OUT folder of `plm embeddings train`.")],
    word: Annotated[str, typer.Option(help="The word to follow across contexts.")] = "bank",
    context: Annotated[list[str] | None, typer.Option("--context", help="A sentence holding WORD (repeatable; "
                                                      "default: river and money sentences for 'bank').")] = None,
    sense: Annotated[list[str] | None, typer.Option("--sense", help="A label per --context (repeatable), for "
                                                    "within- and across-sense similarities.")] = None,
    layer: Annotated[int, typer.Option(help="Hidden layer of the transformer (-1: the last).")] = -1,
    out: Annotated[Path | None, typer.Option(help="The plot (default: VECTORS/contrast-WORD.png).")] = None,
) -> None:
    """WORD in several contexts: one static vector, against the transformer's contextual vectors (cosines, a plot)."""
    from plmkit import api

    png = out or (vectors if vectors.is_dir() else vectors.parent) / f"contrast-{word}.png"
    emit(api.contrast_embeddings(model, vectors, word, context, senses=sense, layer=layer, out=png))


def main() -> None:
    """Console entry point: run the app, turning PlmError into one clear line on stderr (exit status 2)."""
    from plmkit.errors import Interrupted, PlmError

    try:
        app()  # usage errors are reported by typer itself (exit status 2)
    except Interrupted as e:
        from plmkit.processes import first_process

        if first_process():  # every process stops alike; one says so
            typer.echo(str(e), err=True)
        sys.exit(e.exit_code)
    except PlmError as e:
        if os.environ.get("PLMKIT_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except SystemExit as e:
        if e.code == 130:  # typer turns a KeyboardInterrupt outside training (a second Ctrl-C too) into exit 130
            typer.echo("interrupted (what the command had finished writing stays)", err=True)
        raise
    except Exception as e:
        if os.environ.get("PLMKIT_DEBUG"):
            raise
        typer.echo(f"error: {type(e).__name__}: {e} (run `plm --debug ...` for the traceback)", err=True)
        sys.exit(1)
