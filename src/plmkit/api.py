"""One public function per CLI command; the CLI parses arguments and calls exactly these.

    from plmkit import load_config, pretrain
    result = pretrain(load_config("configs/debug/mlm.yaml", overrides=["train.max_steps=50"]))
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate.utils import set_seed
from torch.utils.data import Subset

from plmkit.config import RunConfig, save_config
from plmkit.data import load_corpus, prepare_shards
from plmkit.data.pack import KEYED_SETTINGS, input_fingerprint
from plmkit.errors import ConfigError, DataError, PlmError
from plmkit.models import (
    ARCHS,
    build_model,
    build_task_model,
    copy_sentence_transformer_files,
    kept_checkpoint_weights,
    load_pretrained_model,
)
from plmkit.objectives import build_objective, objectives
from plmkit.objectives.base import WRAPPED_PREFIX
from plmkit.processes import first_process
from plmkit.tokenization import check_compatibility, load_tokenizer, train_tokenizer
from plmkit.tokenization.compat import check_block_size, max_positions, position_limit
from plmkit.tokenization.special import special_token_order, trained_special_tokens
from plmkit.training import fit
from plmkit.training.logging import stderr
from plmkit.training.loop import build_accelerator, interrupted_after

RUN_ARTIFACTS = ("metrics.jsonl", "checkpoints", "final")
"""A folder holding any of these holds a run: pretrain refuses it unless told to resume or overwrite."""
TOKENIZER_STAMP = "plmkit_made_from.json"
"""In run_dir/tokenizer/: the key of the settings and data the tokenizer was made from (_tokenizer_key), so that a
later run in the folder reuses it only when that key is its own."""
RESUME_FIXED = ("run.seed", "data.", "tokenizer.", "model.", "init.", "objective.", "task.", "adapter.",
                "train.batch_size", "train.grad_accum")
"""Settings (or sections, ending with a dot) that a resumed run keeps: they decide the model, its tokenizer and the
order of the data, which the checkpoint's weights and data position belong to."""
RESUME_FREE = ("data.cache_dir",)
"""Exceptions to RESUME_FIXED that do not change what is trained."""
WRITTEN = RUN_ARTIFACTS + ("config.yaml", "loss.png", "results.json", "data_report.json", "tokenizer", "tensorboard")
"""Everything a run writes; --overwrite deletes these (and nothing else) before starting again."""
CLS_KINDS = ("masked_lm", "electra")
"""Model kinds whose training blocks start with the cls token (encoders)."""


@dataclass
class RunResult:
    output_dir: Path
    metrics: dict = field(default_factory=dict)


def train_tokenizer_for(cfg: RunConfig, *, show_progress: bool = True, announce_reuse: bool = True):
    """`plm tokenizer train`: train the configured tokenizer on the training documents into run_dir/tokenizer/.

    A tokenizer already there that was made from this config's data and tokenizer settings is kept as it is. One made
    from other settings is replaced, unless the folder holds a run (its checkpoints were trained with it) or plmkit
    did not write it (no stamp): both are refused.

    Trained tokenizers are cached by a hash of the data and tokenizer settings: the `tokenizers` trainers for
    WordPiece and Unigram are not reproducible run to run (huggingface/tokenizers#1794), and the cache makes two
    runs on the same data use the same vocabulary, so their losses compare."""
    if cfg.tokenizer.pretrained or cfg.init.from_:
        key = "tokenizer.pretrained" if cfg.tokenizer.pretrained else "init.from"
        raise ConfigError(f"{key} is set, so the run uses that tokenizer and none is trained; unset {key} to train "
                          "the one tokenizer.train describes")
    out = Path(cfg.run.output_dir) / "tokenizer"
    _refuse_foreign_tokenizer(out, "training a tokenizer would write over it")
    key = _tokenizer_key(cfg)
    if (out / "tokenizer.json").is_file():
        held, made_from = held_artifacts(out.parent), _made_from(out)
        if made_from == key:
            if announce_reuse:
                trained_with = f" (the run in {out.parent} was trained with it)" if held else ""
                stderr.print(f"{out} is already the tokenizer of these settings{trained_with}")
            return load_tokenizer(str(out))
        if held and made_from == _tokenizer_key(cfg, earlier=True):  # same settings, an earlier plmkit
            stderr.print(f"{out} was made from these settings by an earlier plmkit (before NFKC went into trained "
                         f"tokenizers and T5's ended texts with </s>); kept, since the run in {out.parent} was trained "
                         "with it (for the new tokenizer, set run.output_dir to another folder)")
            return load_tokenizer(str(out))
        if held:  # a run's own tokenizer, which its checkpoints were trained with
            raise PlmError(f"{out.parent} holds a run ({', '.join(held)}) whose tokenizer/ was made from other data "
                           "or tokenizer settings, and its checkpoints were trained with it; set run.output_dir to "
                           "another folder for a new tokenizer")
        stderr.print(f"{out} was not made from this config's data and tokenizer settings: training the configured "
                     "tokenizer in its place (set tokenizer.pretrained to use a tokenizer as it is)")
    cached = Path(cfg.data.cache_dir).expanduser() / f"tokenizer-{key}"
    if not (cached / "tokenizer.json").is_file():
        corpus = load_corpus(cfg.data, cfg.run.seed)
        tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
        train_tokenizer(corpus.train, cfg.tokenizer, cfg.model.arch, tmp, show_progress=show_progress,
                        nfkc=cfg.data.normalization == "NFKC")
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    else:
        stderr.print(f"reusing the tokenizer trained on the same data and settings: {cached}")
    tokenizer = load_tokenizer(str(cached))
    if len(tokenizer) > cfg.tokenizer.train.vocab_size:
        stderr.print(f"the tokenizer has {len(tokenizer):,} tokens, more than tokenizer.train.vocab_size "
                     f"({cfg.tokenizer.train.vocab_size:,}): {cfg.tokenizer.train.algorithm} keeps a token for every "
                     "character of the text (Chinese text has thousands)")  # bpe: refused below 256 + specials
    save_run_tokenizer(tokenizer, cfg, key=key)
    stderr.print(f"tokenizer ({cfg.tokenizer.train.algorithm}, {len(tokenizer)} tokens) saved to {out}")
    return tokenizer


def save_run_tokenizer(tokenizer, cfg: RunConfig, *, resume: bool = False, key: str | None = None) -> None:
    """Save the run's tokenizer into run_dir/tokenizer/ with the key of what it was made from (`key`, when the
    caller has it); never over a tokenizer plmkit did not write (one a resumed run was trained with, from before the
    stamp, is its own)."""
    out = Path(cfg.run.output_dir) / "tokenizer"
    if not resume:
        _refuse_foreign_tokenizer(out, "the run would write its tokenizer over it")
    stamp = (_made_from(out) if resume else None) or key or _tokenizer_key(cfg)  # a resumed run's stays as it was
    tokenizer.save_pretrained(out)
    (out / TOKENIZER_STAMP).write_text(json.dumps({"key": stamp}))


def _made_from(folder: Path) -> str | None:
    """The key in a run tokenizer's stamp, or None where there is none (a folder from elsewhere or an older plmkit)."""
    try:
        return json.loads((folder / TOKENIZER_STAMP).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refuse_foreign_tokenizer(folder: Path, why: str) -> None:
    """Raise when `folder` (run_dir/tokenizer) holds files but no stamp: a tokenizer plmkit did not write (the
    user's own, or one from a plmkit older than the stamp), which nothing may delete or write over."""
    if folder.is_dir() and any(folder.iterdir()) and _made_from(folder) is None:
        raise PlmError(f"{folder} holds a tokenizer without plmkit's stamp (your own, or one written by a plmkit "
                       f"older than the stamp), and {why}; move it out of run.output_dir (to train with it as it is, "
                       "set tokenizer.pretrained to its new path)")


def _tokenizer_key(cfg: RunConfig, *, earlier: bool = False) -> str:
    """The key of the settings and data a run's tokenizer is made from; `earlier`: the key a plmkit from before
    NFKC went into trained tokenizers and T5's ended texts with </s> gave the same settings."""
    tokenizer = asdict(cfg.tokenizer)
    if tokenizer["train"]["strip_accents"] is None:  # null trains what a plmkit without the key trained: same key
        del tokenizer["train"]["strip_accents"]
    parts = {"input": input_fingerprint(cfg.data), "seed": cfg.run.seed, "arch": cfg.model.arch,
             "data": {k: getattr(cfg.data, k) for k in KEYED_SETTINGS}, "tokenizer": tokenizer}
    if cfg.data.normalization == "NFKC" and not earlier:  # its tokenizers normalise with NFKC too: not the ones
        parts["nfkc_in_tokenizer"] = True  # cached before that
    if cfg.model.arch == "t5" and not earlier:  # its tokenizers end a text with </s>: not the ones cached before that
        parts["t5_eos"] = True
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def tokenizer_source(cfg: RunConfig) -> str:
    """The setting that names a fine-tuning run's tokenizer: tokenizer.pretrained, else init.from (--model)."""
    return "tokenizer.pretrained" if cfg.tokenizer.pretrained else "init.from / --model"


def resolve_tokenizer(cfg: RunConfig, *, show_progress: bool = True, resume: bool = False):
    """The run's tokenizer: tokenizer.pretrained, else init.from's, else run_dir/tokenizer (when it was made from
    this config's data and tokenizer settings, or the run resumes), else a trained one."""
    if cfg.tokenizer.pretrained:
        return load_tokenizer(cfg.tokenizer.pretrained, special_tokens=cfg.tokenizer.special_tokens)
    if cfg.init.from_:
        return load_tokenizer(cfg.init.from_, special_tokens=cfg.tokenizer.special_tokens, source="init.from")
    saved = Path(cfg.run.output_dir) / "tokenizer"
    if resume and (saved / "tokenizer.json").is_file():  # the one its checkpoints were trained with
        return load_tokenizer(str(saved))
    return train_tokenizer_for(cfg, show_progress=show_progress, announce_reuse=False)


def prepare_data(cfg: RunConfig, *, show_progress: bool = True):
    """`plm data prepare`: tokenize the corpus once into cached, memory-mapped shards; returns PreparedData."""
    _, data = _objective_and_shards(cfg, resolve_tokenizer(cfg, show_progress=show_progress),
                                    show_progress=show_progress)
    stderr.print(f"shards in {data.path}: {json.dumps(data.report.to_dict())}")
    return data


def _objective_and_shards(cfg: RunConfig, tokenizer, *, show_progress: bool):
    """(objective, PreparedData): the objective first, since the tokens it adds (T5's sentinels) are part of the
    tokenizer that keys the shard cache; then the shards, with word boundaries when it masks whole words (what
    data.segmenter auto picks)."""
    objective = build_objective(cfg.objective, tokenizer, cfg.run.seed)
    data = prepare_shards(cfg.data, tokenizer, cfg.run.seed, show_progress=show_progress,
                          whole_words=getattr(cfg.objective, "whole_word", False))
    return objective, data


def pretrain(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False,
             show_progress: bool = True) -> RunResult:
    """`plm pretrain`: tokenizer -> packed shards -> model -> training loop -> final/ (save_pretrained).

    Args:
        resume: continue from the latest checkpoint in run.output_dir.
        overwrite: delete the artifacts of an earlier run in run.output_dir first.
    """
    kind = objectives.get(cfg.objective.name).factory.model_kind
    check_pretrain_config(cfg, kind)
    run_dir, accelerator = _open_run(cfg, resume=resume, overwrite=overwrite)
    with accelerator.main_process_first():  # the main process trains the tokenizer and writes shards; others reuse them
        tokenizer = resolve_tokenizer(cfg, show_progress=show_progress, resume=resume)
        objective, data = _objective_and_shards(cfg, tokenizer, show_progress=show_progress)
        if accelerator.is_main_process:  # the run's tokenizer, with what the objective added
            save_run_tokenizer(tokenizer, cfg, resume=resume)
    if cfg.init.from_:
        model = load_pretrained_model(cfg.init.from_, kind)
        if hasattr(objective, "load_extra"):  # what the objective saved beside the model (ELECTRA's generator/)
            objective.load_extra(cfg.init.from_)
    else:
        model = build_model(cfg.model, tokenizer, kind)
    check_compatibility(tokenizer, model.config, block_size=cfg.data.block_size, needs=objective.needs)
    cls_id = tokenizer.cls_token_id if kind in CLS_KINDS else None
    # An objective that reshapes blocks (T5's span corruption shortens them) says how many raw tokens it reads.
    block_size = objective.raw_block_size(cfg.data.block_size) if hasattr(objective, "raw_block_size") \
        else cfg.data.block_size
    try:
        blocks = {split: data.dataset(split, block_size, cls_id=cls_id, with_segments=cfg.data.doc_attention)
                  for split in ("train", "validation")[:1 + (cfg.data.validation_fraction > 0)]}
    except DataError as e:
        if block_size == cfg.data.block_size:
            raise
        raise DataError(f"{e} (the {block_size} packed tokens that {cfg.objective.name} turns into "
                        f"data.block_size {cfg.data.block_size} input tokens)") from None
    train_blocks = blocks["train"]
    if accelerator.is_main_process and len(train_blocks.files) > 1 \
            and train_blocks.dropped > 0.01 * (len(train_blocks) * train_blocks.stride):  # what more shards lose
        stderr.print(f"[yellow]warning: {train_blocks.dropped:,} training tokens are left out: each of the "
                     f"{len(train_blocks.files)} shards ends in a piece shorter than a block; raise data.shard_tokens "
                     f"(now {cfg.data.shard_tokens:,}) well above data.block_size")
    if accelerator.is_main_process:
        (run_dir / "data_report.json").write_text(json.dumps(data.report.to_dict(), indent=1))
        stderr.print(f"model: {cfg.model.arch if not cfg.init.from_ else cfg.init.from_}, "
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
                     f"{len(blocks['train']):,} training blocks of {cfg.data.block_size} tokens")
    if "validation" in blocks:
        eval_blocks = Subset(blocks["validation"], range(min(len(blocks["validation"]), cfg.train.eval_blocks)))
    else:
        eval_blocks = []
        if accelerator.is_main_process:
            stderr.print("data.validation_fraction is 0: every document is trained on, and nothing is evaluated")
    result = fit(cfg, model, objective, blocks["train"], eval_blocks, run_dir, resume=resume,
                 accelerator=accelerator, show_progress=show_progress,
                 resume_command=resume_command("pretrain", run_dir))
    if result.done_before:
        return _finished_run(run_dir, accelerator)
    metrics = {"steps": result.steps, "tokens_seen": result.tokens_seen, **result.metrics}
    weights = accelerator.get_state_dict(result.model)  # every process takes part: FSDP/DeepSpeed gather here
    # objective.wrap keeps the exported model's parameters under hf_model.*; an objective that trains more than that
    # model (ELECTRA's generator) saves the rest itself, into final/ before it is moved into place.
    save_extra = getattr(objective, "save_extra", None)
    extra = (lambda folder: save_extra(weights, folder, tokenizer)) if save_extra else None
    model_weights = {k.removeprefix(WRAPPED_PREFIX): v for k, v in weights.items()
                     if save_extra is None or k.startswith(WRAPPED_PREFIX)}
    if accelerator.is_main_process:
        if cfg.init.from_:  # the starting checkpoint's pooler, which masked-LM training has no place for
            model_weights.update(kept_checkpoint_weights(cfg.init.from_, model, own=model_weights.keys()))
            extra = _with_sentence_transformer_files(extra, cfg.init.from_)
        model_card = render_model_card(cfg, data.report.to_dict(), metrics, kind, len(tokenizer))
        export_final(model, tokenizer, run_dir, model_card, model_weights, extra=extra)
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes trackers and, under torchrun, the process group
    interrupted_after(result, run_dir / "final")
    return RunResult(output_dir=run_dir, metrics=metrics)


def _with_sentence_transformer_files(extra: Callable[[Path], None] | None,
                                     init_from: str) -> Callable[[Path], None]:
    """`extra` (what an objective writes into final/), then a sentence-transformers starting model's own files
    (pooling and the rest), with one line saying so."""
    def write(folder: Path) -> None:
        if extra is not None:
            extra(folder)
        copied = copy_sentence_transformer_files(init_from, folder)
        if copied:
            stderr.print(f"final/ keeps {init_from}'s sentence-transformers files ({', '.join(copied)}): it loads "
                         "with SentenceTransformer and pools as the starting model did")

    return write


def check_pretrain_config(cfg: RunConfig, kind: str) -> None:
    """What pre-training needs that the config's own checks cannot see (they do not know the objectives' model
    kinds), checked before any tokenizer or data work."""
    if cfg.train.lr is None:
        raise ConfigError("train.lr is null: pre-training needs a learning rate (e.g. --set train.lr=5e-4)")
    if cfg.init.from_:  # the model, its kind and its positions come from init.from (checked once it loads)
        _check_init_kind(cfg.init.from_, kind, cfg.objective.name)
        unused = _unused_with_init_from(cfg)
        if unused and first_process():
            stderr.print(f"[yellow]warning: init.from is set, so the model and its tokenizer are those of "
                         f"{cfg.init.from_}, and these settings are not used: {', '.join(unused)}")
        return
    if ARCHS.get(cfg.model.arch) != kind:
        fits = [a for a, k in ARCHS.items() if k == kind]
        raise PlmError(f"objective {cfg.objective.name!r} trains a {kind} model but model.arch is "
                       f"{cfg.model.arch!r}; set model.arch to one of {', '.join(fits)}")
    if cfg.model.arch == "roberta" and cfg.tokenizer.pretrained is None:  # trained here: its pad id is known now
        specials = trained_special_tokens(cfg.tokenizer.special_tokens, cfg.model.arch)
        pad_id = special_token_order(specials).index(specials["pad"]) if "pad" in specials else None
    else:
        pad_id = None  # RoBERTa loses one position at least; the loaded tokenizer's id is checked once it loads
    table = cfg.model.max_position_embeddings
    check_block_size(cfg.data.block_size, position_limit(cfg.model.arch, table, pad_id), table)


def _check_init_kind(source: str, kind: str, objective: str) -> None:
    """Refuse, before any tokenizer or data work, a local init.from whose config.json names a model the objective
    cannot continue (a BERT for ELECTRA, a GPT-2 for masked LM, a bidirectional encoder for causal LM, which
    transformers would load as a decoder that sees the tokens it predicts); hub ids are checked once they load."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from plmkit.models.transformer import AUTO_CLASSES

    try:
        config = json.loads((Path(source).expanduser() / "config.json").read_text())
        model_type = config["model_type"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if kind == "electra":  # AutoModelForPreTraining takes a BERT too: not a discriminator
        fits = model_type == "electra"
    else:  # model types by name: no config class is imported
        fits = model_type in AUTO_CLASSES[kind]._model_mapping._model_mapping
        if kind == "causal_lm" and model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.get("is_decoder"):
            fits = False  # BERT, RoBERTa, ... load as ...LMHeadModel but attend both ways
    if not fits:
        named = {"masked_lm": "BERT, RoBERTa and other masked-LM", "causal_lm": "GPT-2, Llama and other causal-LM",
                 "electra": "ELECTRA", "seq2seq_lm": "T5 and other encoder-decoder"}[kind]
        raise PlmError(f"init.from {source} is a {model_type} model, and objective {objective!r} continues {named} "
                       "models; set init.from to such a checkpoint, or pick another objective")


def warn_unused_settings(cfg: RunConfig) -> None:
    """Name the model.* and tokenizer.train.* settings that fine-tuning from init.from does not use (once, on the
    first process): `plm finetune`, `plm compare` and `plm tune` call it."""
    unused = _unused_with_init_from(cfg)
    if unused and first_process():
        stderr.print(f"[yellow]warning: fine-tuning takes the model and its tokenizer as {cfg.init.from_} has them "
                     f"(with --scratch, its architecture), so these settings are not used: {', '.join(unused)}")


def _unused_with_init_from(cfg: RunConfig) -> list[str]:
    """The model.* and tokenizer.train.* settings that differ from their defaults: a run with init.from takes the
    model and the tokenizer as they are, so these change nothing (a config written for training from scratch)."""
    from plmkit.config import ModelConfig, TokenizerTrainConfig

    unused = []
    for section, ours, default in (("model", cfg.model, ModelConfig()),
                                   ("tokenizer.train", cfg.tokenizer.train, TokenizerTrainConfig())):
        defaults = asdict(default)
        unused += [f"{section}.{k} {v!r}" for k, v in asdict(ours).items() if v != defaults[k]]
    return unused


def _finished_run(run_dir: Path, accelerator) -> RunResult:
    """A resumed run that had nothing left to train: final/ and results.json stay as they are."""
    accelerator.end_training()
    try:
        metrics = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    return RunResult(output_dir=run_dir, metrics=metrics)


def _open_run(cfg: RunConfig, *, resume: bool, overwrite: bool):
    """(run_dir, accelerator) of a run: the folder claimed and config.yaml written by the main process, seeds set.
    A resumed run is first checked against the config.yaml it started with (nothing is written if it differs)."""
    run_dir = Path(cfg.run.output_dir)
    accelerator = build_accelerator(cfg, run_dir)  # one Accelerator for the whole run
    main = accelerator.is_main_process
    # Every process checks (the checks only read), so that a refusal stops each with its message; then the main
    # process alone writes.
    _claim_run_dir(run_dir, resume=resume, overwrite=overwrite, write=False)
    if resume:
        _check_resumed_config(cfg, run_dir, say=main)
        _check_resumed_world(run_dir, accelerator.num_processes, "finetune" if cfg.task is not None else "pretrain")
    accelerator.wait_for_everyone()
    if main:
        _claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    set_seed(cfg.run.seed)
    return run_dir, accelerator


def _check_resumed_world(run_dir: Path, world: int, command: str) -> None:
    """Refuse to resume checkpoints written by another number of processes: the data order and the global batch
    depend on it, and each process restores its own random state (random_states_<rank>.pkl)."""
    from plmkit.training import checkpoint

    found = checkpoint.latest(run_dir)
    saved = len(list(found.glob("random_states_*.pkl"))) if found is not None else 0
    if saved and saved != world:
        launch = (f"torchrun --nproc_per_node {saved} -m plmkit {command}" if saved > 1 else f"plm {command}")
        raise ConfigError(f"--resume: {found} was written by {saved} process{'es' * (saved > 1)} and this run has "
                          f"{world}; the data order, the global batch and the random states depend on it, so resume "
                          f"with {saved} in all, launched as before (on one node: {launch} "
                          f"{run_dir / 'config.yaml'} --resume, with the run's other flags such as --scratch) or "
                          "start a new run")


def resume_command(command: str, run_dir: Path, flags: str = "") -> str:
    """The command that continues a run. A relative run.output_dir means the config's relative paths (data, model,
    the run folder itself) are read from the folder plm runs in: the command says which. A run of several processes
    continues with as many (torchrun's form of the launch)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if world <= 1:
        launch = "plm"
    elif local == world:
        launch = f"torchrun --nproc_per_node {world} -m plmkit"
    else:  # several nodes: the same launch on every node
        launch = f"torchrun --nnodes {world // max(local, 1)} --nproc_per_node {local} ... -m plmkit"
    line = f"{launch} {command} {run_dir / 'config.yaml'} --resume{flags}"
    return line if run_dir.is_absolute() else f"cd {shlex.quote(str(Path.cwd()))} && {line}"


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _check_resumed_config(cfg: RunConfig, run_dir: Path, say: bool = True) -> None:
    """Refuse to resume a run that has checkpoints with a config that changes a RESUME_FIXED setting; print (with
    `say`) the settings that did change (max_steps, lr, ...). Settings the saved config lacks (from an older
    plmkit) pass."""
    from plmkit.config import read_yaml, to_dict
    from plmkit.training import checkpoint

    saved_path = run_dir / "config.yaml"
    if checkpoint.latest(run_dir) is None or not saved_path.is_file():
        return  # nothing to continue from: the run starts afresh
    saved, now = _flat(read_yaml(saved_path) or {}), _flat(to_dict(cfg))
    changed = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
    fixed = [k for k in changed
             if k not in RESUME_FREE and any(k == f or (f.endswith(".") and k.startswith(f)) for f in RESUME_FIXED)]
    if fixed:
        command = "finetune" if cfg.task is not None else "pretrain"
        listed = "; ".join(f"{k}: {changed[k][0]!r} in its config.yaml, {changed[k][1]!r} now" for k in fixed)
        raise ConfigError(f"--resume: {run_dir} cannot go on with other {', '.join(fixed)} ({listed}); resume with "
                          f"the run's own config (plm {command} {saved_path} --resume, with --set for "
                          "train.max_steps and the like) or start a new run (--overwrite or another run.output_dir)")
    if changed and say:
        stderr.print("resuming with changed settings: "
                     + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))


def held_artifacts(run_dir: Path) -> list[str]:
    """The RUN_ARTIFACTS in `run_dir`: any of them means the folder holds a run. An empty metrics.jsonl is a run
    that stopped before it logged a step: nothing in the folder to lose."""
    return [name for name in RUN_ARTIFACTS if (run_dir / name).exists()
            and not (name == "metrics.jsonl" and (run_dir / name).stat().st_size == 0)]


def _claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, write: bool = True) -> None:
    """Refuse a folder that holds a run unless resumed or overwritten; with `write`, clear it for --overwrite and
    create it."""
    existing = held_artifacts(run_dir)
    if existing and not (resume or overwrite):
        raise PlmError(f"{run_dir} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
                       "--overwrite to start again, or set run.output_dir to another folder")
    clear = overwrite and not resume
    if clear:
        _refuse_foreign_tokenizer(run_dir / "tokenizer", "--overwrite would delete it")
    if not write:
        return
    if clear:
        for path in (run_dir / name for name in WRITTEN):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def export_final(model, tokenizer, run_dir: Path, model_card: str, state_dict: dict | None = None,
                 extra: Callable[[Path], None] | None = None) -> Path:
    """Write final/ atomically: save_pretrained (safetensors, unwrapped) + tokenizer + model card README.md.

    `state_dict` is the full set of weights when the model was sharded (accelerator.get_state_dict); `extra(folder)`
    writes more into final/ before it is moved into place (ELECTRA's generator/)."""
    from accelerate.utils import extract_model_from_parallel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-file save needs no bar of its own
    model = extract_model_from_parallel(model)  # drops DDP and torch.compile wrappers (no `_orig_mod.` keys)
    final, tmp = run_dir / "final", run_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)  # safetensors
    tokenizer.model_max_length = max_positions(model.config)
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(model_card, encoding="utf-8")
    if extra is not None:
        extra(tmp)
    _readable_as_umask_allows(tmp)  # safetensors writes its files 0600: others on a shared file system could not read
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _readable_as_umask_allows(folder: Path) -> None:
    """Make the files under `folder` readable as the process's umask allows new files to be (0644 under the usual
    022). The umask is read from /proc (Linux), not by setting it, which would change it for other threads."""
    try:
        mask = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                        if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        return  # not Linux: files keep the modes they were written with
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & 0o777 | (0o444 & ~mask))


def render_model_card(cfg: RunConfig, report: dict, metrics: dict, kind: str, vocab_size: int | None = None) -> str:
    """A Hugging Face model card: data, tokenizer, objective, steps, tokens and final metrics."""
    task = {"masked_lm": "fill-mask", "causal_lm": "text-generation", "electra": "feature-extraction",
            "seq2seq_lm": "text2text-generation"}[kind]
    auto = {"masked_lm": "AutoModelForMaskedLM", "causal_lm": "AutoModelForCausalLM",
            "electra": "AutoModelForPreTraining", "seq2seq_lm": "AutoModelForSeq2SeqLM"}[kind]
    source = cfg.data.hf_dataset or ", ".join(cfg.data.paths)
    tokenizer = cfg.tokenizer.pretrained or cfg.init.from_ or (
        f"{cfg.tokenizer.train.algorithm}, trained on the same data, vocabulary "
        f"{vocab_size if vocab_size is not None else cfg.tokenizer.train.vocab_size:,}")
    objective = ", ".join(f"{k}={v}" for k, v in vars(cfg.objective).items())
    lines = [
        "---", "library_name: transformers", f"pipeline_tag: {task}",
        *_base_card_fields(cfg.init.from_).splitlines(),
        *_card_datasets([cfg.data.hf_dataset] if cfg.data.source == "hf" and cfg.data.hf_dataset else []).splitlines(),
        "tags: [plmkit]", "---", "",
        f"# {cfg.run.name}", "",
        (f"Pre-training continued with plmkit ({cfg.objective.name}) from {cfg.init.from_}." if cfg.init.from_ else
         f"Pre-trained from random weights with plmkit ({cfg.objective.name}); architecture: "
         f"{ARCH_NAMES.get(cfg.model.arch, cfg.model.arch)}."), "",
        "| | |", "|---|---|",
        f"| data | {source} |",
        f"| documents (train / validation) | {report.get('train_documents')} / {report.get('validation_documents')} |",
        f"| tokenizer | {tokenizer} |",
        f"| objective | {objective} |",
        f"| block size | {cfg.data.block_size} tokens |",
        f"| steps | {metrics['steps']} |",
        f"| tokens seen | {metrics['tokens_seen']:,} |",
    ]
    for key in ("initial_eval_loss", "eval_loss", "eval_ppl"):
        if metrics.get(key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]:.4f} |")
    if metrics.get("initial_eval_ppl") is not None:  # none where exp(loss) is no perplexity (ELECTRA)
        lines.append(f"| eval perplexity before training | {metrics['initial_eval_ppl']:.1f} |")
    lines += ["", "## Use", "", "```python",
              f"from transformers import {auto}, AutoTokenizer, pipeline",
              'model_dir = "path/to/final"',
              f"model = {auto}.from_pretrained(model_dir)",
              "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
              f'pipe = pipeline("{task}", model=model_dir)' if kind != "seq2seq_lm" else  # no such pipeline in v5
              'ids = tokenizer("The <extra_id_0> sat on <extra_id_1> mat.", return_tensors="pt").input_ids\n'
              "print(tokenizer.decode(model.generate(ids, max_new_tokens=20)[0]))  # fills the sentinels",
              "```", ""]
    return "\n".join(lines)


# --- fine-tuning --------------------------------------------------------------------------------------------------


def finetune(cfg: RunConfig, *, scratch: bool = False, resume: bool = False, overwrite: bool = False,
             show_progress: bool = True, train_limit: int | None = None, on_eval=None,
             resumable: bool = True) -> RunResult:
    """`plm finetune`: a task head on init.from (or, with `scratch`, the same architecture with random weights),
    trained by the same loop; the best checkpoint on validation becomes final/ (loadable by AutoModelFor*).

    Args:
        train_limit: train on this many training examples, drawn at random with run.seed (the validation set,
            when taken from the training file, is held out first).
        on_eval: passed to `fit`: called as on_eval(step, row) after each evaluation.
        resumable: a run stopped by a signal names `plm finetune ... --resume` to continue it; False for the runs
            of compare and tune, which say what to do themselves.
    """
    from plmkit.tasks import build_task
    from plmkit.tasks.base import check_unknown_tokens, draw_examples

    check_finetune_config(cfg)
    if resumable:  # plm finetune's own runs; compare and tune make many, and say it once themselves
        warn_unused_settings(cfg)
    # before the run folder: a model path that is wrong leaves nothing behind
    tokenizer = load_tokenizer(cfg.tokenizer.pretrained or cfg.init.from_, source=tokenizer_source(cfg))
    run_dir, accelerator = _open_run(cfg, resume=resume, overwrite=overwrite)
    task = build_task(cfg.task, tokenizer, cfg.run.seed)
    if cfg.train.lr is None:
        cfg.train.lr = task.default_lr
        if accelerator.is_main_process:
            stderr.print(f"train.lr: {cfg.train.lr:g}, the {cfg.task.name} default")
    train_raw, valid_raw, valid_source = draw_examples(cfg, task, train_limit)
    if not cfg.task.validation and accelerator.is_main_process:
        stderr.print(f"[yellow]no task.validation: holding out {len(valid_raw)} training examples for validation")
    _warn_overlap(train_raw, valid_raw, cfg.task.train, valid_source)
    if cfg.eval.select_best_by is None:
        cfg.eval.select_best_by = task.main_metric
    _check_select_best_by(cfg.eval.select_best_by, task)
    model = build_task_model(cfg.init.from_, task.model_kind, task.model_kwargs(), scratch=scratch)
    _fit_max_length(task, model.config)
    train, valid = task.encode(train_raw, source=cfg.task.train), task.encode(valid_raw, source=valid_source)
    check_unknown_tokens(tokenizer, train, cfg.task.train, refuse=True, warn=accelerator.is_main_process)
    full = sum(len(example["input_ids"]) >= task.cfg.max_length for example in train)
    if full > 0.01 * len(train) and accelerator.is_main_process:  # the texts cut at task.max_length
        positions = max_positions(model.config)
        fix = (f"raise task.max_length (the model has {positions} positions) if their ends matter"
               if task.cfg.max_length < positions else
               "the model reads no further (its positions end there): split long texts, or use a model with more "
               "positions, if their ends matter")
        stderr.print(f"{full:,} of {len(train):,} training examples ({full / len(train):.0%}) fill task.max_length "
                     f"({task.cfg.max_length} tokens), so longer ones are cut there; {fix}")
    base_model = model
    if cfg.adapter.name == "lora":
        from plmkit.models.peft import add_lora, checkpoint_has_frozen_pooler, trainable_share
        from plmkit.training import checkpoint

        latest = checkpoint.latest(run_dir) if resume else None
        frozen = latest is not None and checkpoint_has_frozen_pooler(latest)
        if frozen and accelerator.is_main_process:
            stderr.print(f"{latest} was written with the pooler frozen (plmkit before 2026-11-28): the run goes on "
                         "that way")
        model = add_lora(model, cfg.adapter, task.model_kind, train_pooler=not frozen)
        stderr.print(f"LoRA r={cfg.adapter.r} on {', '.join(cfg.adapter.target_modules)}: "
                     f"{trainable_share(model):.1%} of the parameters are trained")
    if accelerator.is_main_process:
        stderr.print(f"{cfg.task.name}: {len(train):,} training and {len(valid):,} validation examples, "
                     f"{len(task.labels)} labels; model {cfg.init.from_}{' (from scratch)' if scratch else ''}, "
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    command = resume_command("finetune", run_dir, " --scratch" if scratch else "")
    result = fit(cfg, model, task, train, valid, run_dir, resume=resume, accelerator=accelerator,
                 show_progress=show_progress, on_eval=on_eval, resume_command=command if resumable else None)
    if result.done_before:
        return _finished_run(run_dir, accelerator)
    metrics = {"steps": result.steps, "tokens_seen": result.tokens_seen, **result.metrics}
    best = run_dir / "checkpoints" / "best"
    if (best / "model.safetensors").is_file():
        from plmkit.training.checkpoint import load_weights

        weights = load_weights(best)
    else:
        weights = accelerator.get_state_dict(result.model)
    if cfg.adapter.name == "lora":  # fold the adapters in: final/ loads without peft
        from plmkit.models.peft import merge_lora

        peft_model = accelerator.unwrap_model(result.model)
        model, weights = merge_lora(peft_model, _complete(weights, peft_model)), None
    else:
        model = base_model
    if accelerator.is_main_process:
        threshold = metrics.get("best_eval_threshold", getattr(task, "threshold", None))  # the best weights' own
        if threshold is not None:
            model.config.plmkit_threshold = threshold
        model.config.plmkit_task_inputs = {k: getattr(cfg.task, k) for k in TASK_INPUTS if hasattr(cfg.task, k)}
        card = render_finetune_card(cfg, metrics, scratch, threshold)
        export_final(model, tokenizer, run_dir, card, weights)
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=1))
        plot_finetune_curves(run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    done = RunResult(output_dir=run_dir, metrics=metrics)
    interrupted_after(result, run_dir / "final", completed=done)
    return done


TASK_INPUTS = ("text_column", "text_pair_column", "label_column", "group_column", "max_length")
"""task.* settings saved with a fine-tuned model (config.json: plmkit_task_inputs) and taken again by plm evaluate
and plm predict: a sentence-pair model scored without its second text would score something else."""


def _check_select_best_by(name: str, task) -> None:
    """eval.select_best_by must name what the task reports; checked before training, not at the first evaluation."""
    known = ("loss", *task.metric_names())
    if name.removeprefix("eval_") not in known:
        raise ConfigError(f"eval.select_best_by: no metric {name.removeprefix('eval_')!r}; the {type(task).__name__} "
                          f"task reports {', '.join(known)}")


def _fit_max_length(task, model_config) -> None:
    """Cut inputs at the model's positions where task.max_length asks for more (a longer input has no position
    embedding and would stop the run at the first batch that holds one)."""
    limit = max_positions(model_config)
    if task.cfg.max_length > limit:
        stderr.print(f"task.max_length {task.cfg.max_length} is more than the model's {limit} positions: inputs are "
                     f"cut at {limit} tokens")
        task.cfg.max_length = limit


def check_finetune_config(cfg: RunConfig) -> None:
    """What every fine-tuning command needs before it starts: a task, a model and training data."""
    if cfg.task is None:
        raise PlmError("no task: pass --task classification|multilabel|ner or set task.name in the config")
    if not cfg.init.from_:
        raise PlmError("no model to fine-tune: pass --model PATH_OR_ID or set init.from (e.g. runs/quickstart/final)")
    if not cfg.task.train:
        raise PlmError("no training data: pass --train FILE or set task.train")


def _complete(weights: dict, model) -> dict:
    """A saved state dict lacks the second name of tied tensors: fill those from the live model."""
    state = model.state_dict()
    return {**{k: v for k, v in state.items() if k not in weights}, **weights}


def _warn_overlap(train_raw, valid_raw, train_source, valid_source) -> None:
    from plmkit.tasks.io import count_overlap

    def texts(examples):
        return [getattr(e, "text", None) or " ".join(getattr(e, "tokens", [])) for e in examples]

    shared = count_overlap(texts(train_raw), texts(valid_raw))
    if shared:
        stderr.print(f"[yellow]warning: {shared} of {len(valid_raw)} examples in {valid_source} also occur in "
                     f"{train_source}; validation scores will be optimistic")


ARCH_NAMES = {"bert": "BERT", "roberta": "RoBERTa", "gpt2": "GPT-2", "llama": "Llama", "electra": "ELECTRA",
              "t5": "T5"}
"""model.arch as a model card writes it."""


def render_finetune_card(cfg: RunConfig, metrics: dict, scratch: bool, threshold: float | None = None) -> str:
    """A Hugging Face model card for a fine-tuned model: how it was trained, its scores, and a `pipeline` snippet
    that gives what `plm predict` gives (multi-label: every label's score and the tuned threshold; NER: entity
    spans)."""
    task = {"classification": "text-classification", "multilabel": "text-classification",
            "ner": "token-classification"}[cfg.task.name]
    def row(key: str, value) -> str:
        return f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"

    if metrics.get("best_step") is not None:  # final/ holds the best checkpoint: its scores head the table
        first = [row("step of final/ (the best on validation)", metrics["best_step"])]
        first += [row(f"{k.removeprefix('best_')} (final/)", v) for k, v in metrics.items() if k.startswith("best_eval_")]
        rest = [row(f"{k} (last step)" if k.startswith("eval_") else k, v) for k, v in metrics.items()
                if not k.startswith("best_")]
        rows = "\n".join(first + rest)
    else:
        rows = "\n".join(row(k, v) for k, v in metrics.items())
    start = "random weights (from scratch)" if scratch else cfg.init.from_
    how = (f" It was trained with LoRA adapters (rank {cfg.adapter.r}, alpha {cfg.adapter.alpha}, on "
           f"{', '.join(cfg.adapter.target_modules)}), merged into the weights: no peft is needed to load it."
           if cfg.adapter.name == "lora" else "")
    cut_as_predict = f"truncation=True, max_length={cfg.task.max_length}"  # fitted to the model's positions
    use = (f'from transformers import pipeline\npipe = pipeline("{task}", model="path/to/final")\n'
           f'pipe(["your text"], {cut_as_predict})  # cut where plm predict cuts (task.max_length)')
    if cfg.task.name == "multilabel":
        cut = threshold if threshold is not None else 0.5
        use = ('from transformers import pipeline\n'
               f'pipe = pipeline("{task}", model="path/to/final", top_k=None, function_to_apply="sigmoid")\n'
               f'scores = pipe(["your text"], {cut_as_predict})[0]  # every label with its score\n'
               f'labels = [s["label"] for s in scores if s["score"] >= {cut:g}]  '
               "# the threshold tuned on validation (config.json: plmkit_threshold)")
    elif cfg.task.name == "ner":  # a word takes its first sub-token's tag, as in training and plm predict
        use = ('from transformers import pipeline\n'
               f'pipe = pipeline("{task}", model="path/to/final", aggregation_strategy="first")  # entity spans')
    hub = "" if scratch or Path(cfg.init.from_).expanduser().exists() else f"base_model: {cfg.init.from_}\n"
    from plmkit.tasks.io import is_hf_spec, parse_hf_spec

    specs = [s for s in (cfg.task.train, cfg.task.validation) if s and is_hf_spec(s)]
    hub += ("" if scratch else _base_card_fields(cfg.init.from_)) + _card_datasets(parse_hf_spec(s)[0] for s in specs)
    return (f"---\nlibrary_name: transformers\npipeline_tag: {task}\n{hub}tags: [plmkit]\n---\n\n# {cfg.run.name}\n\n"
            f"Fine-tuned with plmkit for `{cfg.task.name}` from {start} on {cfg.task.train} "
            f"(validation: {cfg.task.validation or 'held out from training'}).{how}\n\n| | |\n|---|---|\n{rows}\n\n"
            f"```python\n{use}\n```\n")


def _base_card_fields(init_from: str | None) -> str:
    """`license:` and `language:` lines from the model card (README.md front matter) of a local `init.from`
    folder, as the Hugging Face Trainer's cards take the base model's license; "" where it has none."""
    if not init_from:
        return ""
    card = Path(init_from).expanduser() / "README.md"
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    if not text.startswith("---"):
        return ""
    import yaml

    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return ""
    if not isinstance(meta, dict):
        return ""
    keys = ("license", "license_name", "license_link", "language")  # the hub wants a name and link with "other"
    return "".join(f"{key}: {json.dumps(meta[key], ensure_ascii=False)}\n" for key in keys
                   if isinstance(meta.get(key), (str, list)) and meta[key])


def _card_datasets(names) -> str:
    """A model card's `datasets:` line for the hub datasets among the dataset `names` (those that are no local
    folder), else ""."""
    hub = [n for n in dict.fromkeys(names) if not Path(n).expanduser().exists()]
    return f"datasets: [{', '.join(hub)}]\n" if hub else ""


def plot_finetune_curves(run_dir: Path) -> Path | None:
    """curves.png: train loss, dev loss and the dev metric against step; warns when dev loss rises while the
    training loss falls (overfitting)."""
    from plmkit.training.logging import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in rows if "eval_loss" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next((k for k in ("eval_accuracy", "eval_micro_f1", "eval_f1") if evals and k in evals[0]), None)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train loss", lw=1)
    ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="dev loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if metric:
        right = ax.twinx()
        right.plot([r["step"] for r in evals], [r[metric] for r in evals], "s--", color="tab:green",
                   label=f"dev {metric.removeprefix('eval_')}")
        right.set_ylabel(metric.removeprefix("eval_"))
        right.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png")
    plt.close(fig)
    if len(evals) >= 2 and evals[-1]["eval_loss"] > min(r["eval_loss"] for r in evals[:-1]) and rows[-1]["loss"] < rows[0]["loss"]:
        stderr.print("[yellow]warning: the dev loss rose while the training loss fell (overfitting); the best "
                     "checkpoint was kept as final/, and fewer epochs or a lower train.lr may do better")
    return run_dir / "curves.png"


def fine_tuned_for(config) -> str | None:
    """The task a model folder's config says it was fine-tuned for (classification, multilabel or ner; None where
    its head class or problem type does not say), from the saved head class and problem type."""
    from plmkit.models.transformer import TASK_HEADS

    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(TASK_HEADS["token_classification"]) for a in architectures):
        return "ner"
    if any(a.endswith(TASK_HEADS["sequence_classification"]) for a in architectures):
        return {"single_label_classification": "classification",
                "multi_label_classification": "multilabel"}.get(getattr(config, "problem_type", None))
    return None


def _check_fine_tuned_for(model_dir: str | Path, task_name: str | None):
    """The folder's model config, after refusing a folder with another task's head (its weights would load under a
    new, random head, or a single-label head would be read as multi-label) or with no task head at all."""
    from transformers import AutoConfig

    from plmkit.models.transformer import TASK_HEADS

    try:
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise PlmError(f"{model_dir}: no model config ({str(e).splitlines()[0]}); give the final/ folder of a "
                       "`plm finetune` run") from None
    found = fine_tuned_for(config)
    architectures = getattr(config, "architectures", None) or []
    if found is not None and task_name is not None and found != task_name:
        raise PlmError(f"{model_dir} was fine-tuned for {found} ({', '.join(architectures)}), not {task_name}; "
                       f"pass --task {found}")
    if architectures and not any(a.endswith(tuple(TASK_HEADS.values())) for a in architectures):
        raise PlmError(f"{model_dir} has no task head ({', '.join(architectures)}): it is not a fine-tuned model; "
                       "fine-tune it first (plm finetune --model ...) and give the run's final/ folder")
    return config


def _load_task_model(model_dir: str | Path, task_name: str | None, overrides: list[str] | None = None):
    """(task, model) for a fine-tuned folder: the label set comes from the model's config, and the task too when
    `task_name` is None."""
    import transformers

    from plmkit.config import load_config
    from plmkit.models.transformer import TASK_CLASSES, TASK_HEADS
    from plmkit.tasks import build_task

    tokenizer = load_tokenizer(str(model_dir), source="MODEL_DIR")
    config = _check_fine_tuned_for(model_dir, task_name)
    if task_name is None:  # the task its head was fine-tuned for
        task_name = fine_tuned_for(config)
        heads = getattr(config, "architectures", None) or []
        if task_name is None and any(a.endswith(TASK_HEADS["sequence_classification"]) for a in heads) \
                and getattr(config, "num_labels", 0) > 1:  # no problem_type (many hub models): transformers' default
            task_name = "classification"
            stderr.print(f"{model_dir}: a sequence classifier whose config names no problem_type: scored as "
                         "single-label classification (pass --task multilabel if it is one)")
        if task_name is None:
            raise PlmError(f"{model_dir}: its config does not say which task it was fine-tuned for; pass --task "
                           "classification, multilabel or ner")
    saved = getattr(config, "plmkit_task_inputs", None) or {}  # --set task.* below still wins
    saved_sets = [f"task.{k}={json.dumps(v)}" for k, v in saved.items() if k in TASK_INPUTS]
    cfg = load_config(None, [f"task.name={task_name}", *saved_sets, *(overrides or [])])
    task = build_task(cfg.task, tokenizer, cfg.run.seed)
    auto = getattr(transformers, TASK_CLASSES[task.model_kind])
    try:
        model = auto.from_pretrained(str(model_dir), config=config, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise PlmError(f"{model_dir}: not a {task.model_kind} model folder ({str(e).splitlines()[0]}); give the "
                       "final/ folder of a `plm finetune` run") from None
    _fit_max_length(task, model.config)
    task.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if hasattr(task, "threshold"):
        task.threshold, task.tune = getattr(model.config, "plmkit_threshold", 0.5), False
    return task, model.eval()


def _run_task(task, model, encoded: list[dict], batch_size: int = 64, show_progress: bool = True) -> dict:
    import torch
    from rich.progress import Progress

    outputs: dict[str, list] = {}
    with torch.no_grad(), Progress(console=stderr, disable=not show_progress, transient=True) as progress:
        bar = progress.add_task("predicting", total=len(encoded))
        for start in range(0, len(encoded), batch_size):
            batch = task.collate(encoded[start:start + batch_size])
            for key, values in (task.loss(model, batch).outputs or {}).items():
                outputs.setdefault(key, []).extend(values)
            progress.advance(bar, min(batch_size, len(encoded) - start))
    return outputs


def evaluate(model_dir: str | Path, task_name: str | None, data: str | Path, *, overrides: list[str] | None = None,
             show_progress: bool = True) -> dict:
    """`plm evaluate`: score a fine-tuned model on a labeled file; writes eval/<task>-<file>.json (and a
    confusion-matrix PNG for classification) next to the model's final/ folder. Another file of the same name
    (a/dev.tsv, then b/dev.tsv) gets its own: eval/<task>-<file>-<hash of its path>.json."""
    from plmkit.tasks.base import check_unknown_tokens

    task, model = _load_task_model(model_dir, task_name, overrides)
    task_name = task.cfg.name  # given, or the one the folder says
    encoded = task.encode(task.read(str(data)), source=str(data))
    check_unknown_tokens(task.tokenizer, encoded, str(data), refuse=False)
    outputs = _run_task(task, model, encoded, show_progress=show_progress)
    scores = task.metrics(outputs)
    model_dir = Path(model_dir)
    out = (model_dir.parent if model_dir.name == "final" else model_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    name = _eval_name(out, task_name, str(data))
    result = {"task": task_name, "data": str(data), "data_path": _data_path(str(data)),
              "examples": len(encoded), **scores}
    if task_name == "classification":
        from plmkit.evaluation import confusion_matrix, plot_confusion_matrix

        matrix = confusion_matrix(outputs["prediction"], outputs["reference"], len(task.labels))
        plot_confusion_matrix(matrix, task.labels, out / f"{name}-confusion.png", title=f"{task_name}: {data}")
        result["confusion_matrix"] = matrix.tolist()
        result["confusion_labels"] = [str(label) for label in task.labels]  # its rows' and columns' order
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    stderr.print(f"metrics written to {out / f'{name}.json'}")
    return result


def _data_path(data: str) -> str:
    """What identifies evaluation data: a file's resolved path, or a Hugging Face split's hf:NAME[:CONFIG]:SPLIT."""
    from plmkit.tasks.io import is_hf_spec, parse_hf_spec

    if is_hf_spec(data):
        name, config, split = parse_hf_spec(data)
        local = Path(name).expanduser()
        return ":".join(["hf", str(local.resolve()) if local.exists() else name, *([config] if config else []), split])
    return str(Path(data).resolve())


def _eval_name(out: Path, task_name: str, data: str) -> str:
    """<task>-<file stem> (for hf:NAME[:CONFIG]:SPLIT, its last name part, config and split), unless eval/ already
    holds that name for other data (its data_path differs): then the name also carries a hash of this data's path,
    so that neither result overwrites the other."""
    from plmkit.tasks.io import is_hf_spec, parse_hf_spec

    if is_hf_spec(data):
        dataset, config, split = parse_hf_spec(data)
        stem = "-".join(p for p in (Path(dataset).name, config, split) if p)
    else:
        stem = Path(data).stem
    name, path = f"{task_name}-{stem}", _data_path(data)
    try:
        earlier = json.loads((out / f"{name}.json").read_text()).get("data_path", path)
    except (OSError, ValueError, AttributeError):
        return name  # none yet, or not ours to keep
    if earlier == path:
        return name
    return f"{name}-{hashlib.blake2b(path.encode(), digest_size=4).hexdigest()}"


def predict(model_dir: str | Path, task_name: str | None, data: str | Path, output: str | Path, *,
            overrides: list[str] | None = None, show_progress: bool = True) -> dict:
    """`plm predict`: labels for every example of a (possibly unlabeled) file, one JSON object per line."""
    from plmkit.tasks.base import check_unknown_tokens
    from plmkit.tasks.ner import entities

    if Path(output).is_dir():
        raise PlmError(f"--output {output} is a folder; give a file to write, e.g. {Path(output) / 'preds.jsonl'}")
    task, model = _load_task_model(model_dir, task_name, overrides)
    raw = [_unlabeled(example) for example in task.read(str(data), require_labels=False)]  # labels are not used
    encoded = task.encode(raw, source=str(data))
    check_unknown_tokens(task.tokenizer, encoded, str(data), refuse=False)
    predictions = task.decode(_run_task(task, model, encoded, show_progress=show_progress))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for example, prediction in zip(raw, predictions):
            text = {"text": example.text} if hasattr(example, "text") else {"tokens": example.tokens}
            if getattr(example, "text_pair", None) is not None:
                text["text_pair"] = example.text_pair
            if "tags" in prediction:  # NER: the spans too, as seqeval reads the tags
                prediction = {**prediction, "entities": entities(example.tokens, prediction["tags"])}
            f.write(json.dumps({**text, **prediction}, ensure_ascii=False) + "\n")
    return {"output": str(output), "examples": len(predictions)}


def _unlabeled(example):
    """A read example with its labels dropped (an NER sentence tagged all O): what predict encodes, so that labels
    it does not use, perhaps ones the model never saw, cannot stop it."""
    import dataclasses

    if hasattr(example, "tags"):
        return dataclasses.replace(example, tags=["O"] * len(example.tokens))
    return dataclasses.replace(example, labels=[])


# --- planning -----------------------------------------------------------------------------------------------------


def estimate(model: str, *, tokens: str | float | None = None, hardware: str = "h100", devices: int = 8,
             mfu: float | None = None, measure: str | Path | None = None, seq_len: int | None = None,
             micro_batch: int = 1, price: float | None = None, pue: float | None = None) -> dict:
    """`plm estimate`: FLOPs, device-hours, days, memory per device (DDP, ZeRO-1/2/3, FSDP), energy and cost of
    pre-training `model` (a preset, a run config YAML, or a Hugging Face config.json or folder) on `tokens`.

    Args:
        measure: a run config: run 20 steps of `plm pretrain` on it here and use the MFU measured (instead of
            `mfu` or the hardware's default).
    """
    from plmkit import estimate as planning

    if measure is not None and mfu is not None:
        raise PlmError("give --mfu or --measure CONFIG, not both")
    def plan(mfu, source):
        return planning.estimate(model, tokens=tokens, hardware=hardware, devices=devices, mfu=mfu,
                                 mfu_source=source, seq_len=seq_len, micro_batch=micro_batch, price=price,
                                 pue=planning.DEFAULT_PUE if pue is None else pue)

    if measure is None:
        return plan(mfu, None)
    plan(0.5, "a stand-in")  # every other input checked before 20 steps are spent on the measurement
    mfu, source = planning.measure_mfu(measure)
    stderr.print(f"MFU {source}; used for {devices} x {hardware}")
    import torch

    if not torch.cuda.is_available():  # measure_mfu ran on this machine's CPU
        stderr.print(f"[yellow]warning: this MFU was measured on a CPU; a {hardware}'s differs (kernels, precision, "
                     "memory bandwidth): measure on the hardware you plan for, or give --mfu")
    return plan(mfu, source)


# --- static embeddings --------------------------------------------------------------------------------------------


def train_embeddings(cfg, *, overwrite: bool = False, show_progress: bool = True) -> RunResult:
    """`plm embeddings train`: Word2Vec (gensim) or GloVe (plmkit.embeddings.glove) on the training documents of
    cfg.data, read and cleaned as `plm pretrain` reads them; OUT/vectors.txt is in word2vec text format.

    Args:
        cfg: an EmbeddingsConfig (plmkit.embeddings.load_embeddings_config).
        overwrite: replace the vectors of an earlier run in run.output_dir.
    """
    from plmkit.embeddings.train import train_embeddings as train

    out, results = train(cfg, overwrite=overwrite, show_progress=show_progress)
    return RunResult(output_dir=out, metrics=results)


def embedding_neighbors(vectors_dir: str | Path, word: str, k: int = 10) -> dict:
    """`plm embeddings neighbors`: the k nearest words to `word` by cosine similarity of their static vectors."""
    from plmkit.embeddings.vectors import neighbors

    return neighbors(vectors_dir, word, k=k)


def contrast_embeddings(model_dir: str | Path, vectors_dir: str | Path, word: str = "bank",
                        contexts: list[str] | None = None, *, senses: list[str] | None = None, layer: int = -1,
                        out: str | Path | None = None) -> dict:
    """`plm embeddings contrast`: `word` in several contexts, as one static vector and as the contextual vectors
    of a transformer (model_dir); cosine similarities, and a 2-D plot at `out` (PNG).

    Args:
        contexts: sentences that each hold `word`; None: plmkit.embeddings.contrast.DEFAULT_CONTEXTS ("bank").
        senses: a label per context (e.g. river, money) for within- and across-sense similarities.
        layer: the hidden layer read (-1: the last; 0: the input embeddings).
    """
    from plmkit.embeddings.contrast import contrast

    return contrast(model_dir, vectors_dir, word, contexts, senses=senses, layer=layer, out=out)
