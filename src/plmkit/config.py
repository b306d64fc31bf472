"""The one typed run config: dataclass defaults -> YAML file -> `--set key.path=value` overrides.

Unknown keys, wrong types and out-of-range values fail at load time with a message naming the key and the file.
    plm config show configs/debug/mlm.yaml --set train.lr=1e-3
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plmkit.errors import ConfigError


@dataclass
class RunSection:
    name: str = "plm-run"
    """Name of the run; the default output folder is runs/<name>."""
    output_dir: str = "runs/${run.name}"
    """Folder for config.yaml, metrics.jsonl, checkpoints/ and final/."""
    seed: int = 13
    """Seed for weights, data order, masking and dropout."""


@dataclass
class DataConfig:
    source: str = "auto"
    """Where documents come from: auto (by file extension) | text | jsonl | hf (Hugging Face datasets)."""
    paths: list[str] = field(default_factory=list)
    """Files or globs (text or JSONL), or a local dataset folder when source is hf."""
    doc_split: str = "blank_line"
    """How plain text splits into documents: blank_line (paragraph blocks) | line (one per line) | doc_tags (one
    per `<doc ...>` ... `</doc>` block, as WikiExtractor writes them; the tag lines are dropped)."""
    text_field: str = "text"
    """Field holding the text in JSONL records and Hugging Face datasets."""
    hf_dataset: str | None = None
    """Hugging Face dataset name or local folder (source: hf), e.g. wikitext."""
    hf_config: str | None = None
    """Configuration name of the Hugging Face dataset, e.g. wikitext-2-raw-v1."""
    hf_split: str = "train"
    """Split of the Hugging Face dataset to read."""
    normalization: str = "NFC"
    """Unicode normalisation applied to every document: NFC | NFKC | none. A tokenizer trained on NFKC text
    normalises its input with NFKC too (full-width punctuation, letters and digits become their ASCII forms)."""
    min_chars: int = 20
    """Documents shorter than this many characters (after stripping) are dropped."""
    dedup: bool = True
    """Drop exact duplicate documents (after normalisation)."""
    validation_fraction: float = 0.01
    """Share of documents held out for evaluation, chosen by a hash of each document (deterministic); 0: train on
    every document and evaluate nothing."""
    block_size: int = 128
    """Tokens per training example after packing documents end to end."""
    doc_attention: bool = False
    """Block attention between documents packed into the same block (per-document attention)."""
    cache_dir: str = "~/.cache/plmkit/shards"
    """Where tokenized shards are cached, keyed by a hash of the data and tokenizer settings."""
    shard_tokens: int = 50_000_000
    """Maximum tokens per memory-mapped shard file."""
    segmenter: str = "auto"
    """Word boundaries stored with the shards for whole-word masking: auto (pretokenizer when objective.whole_word,
    else none) | none | pretokenizer (the tokenizer's pre-tokenizer words) | jieba (Chinese words)."""
    segmenter_dict: str | None = None
    """A jieba user dictionary for data.segmenter jieba (UTF-8, one word per line, optionally followed by a frequency
    and a part-of-speech tag, as jieba.load_userdict reads it): domain terms it lists are masked whole."""


@dataclass
class TokenizerTrainConfig:
    algorithm: str = "wordpiece"
    """bpe (byte-level) | wordpiece | unigram."""
    vocab_size: int = 8000
    """Size of the trained vocabulary, special tokens included."""
    min_frequency: int = 2
    """Merges / pieces seen fewer times than this are not added (bpe, wordpiece)."""
    lowercase: bool = False
    """Lower-case text before tokenizing."""
    strip_accents: bool | None = None
    """Remove accents and other combining marks (café -> cafe; also が -> か, हिन्दी -> हिनदी) before tokenizing; null: as
    lowercase for wordpiece (BERT-uncased's normaliser), off for bpe and unigram."""
    max_docs: int | None = None
    """Train the tokenizer on at most this many documents (all when null)."""


@dataclass
class TokenizerConfig:
    pretrained: str | None = None
    """An existing tokenizer folder or hub id; when set, no tokenizer is trained."""
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    special_tokens: dict[str, str] | None = None
    """Role -> token (pad, unk, cls, sep, mask, bos, eos); null picks the model architecture's usual set."""


@dataclass
class ModelConfig:
    arch: str = "bert"
    """bert | roberta (masked LM); gpt2 | llama (causal LM); electra (discriminator + generator, objective electra);
    t5 (encoder-decoder, objective span_corruption)."""
    hidden_size: int = 256
    """Width of the hidden states."""
    num_layers: int = 4
    """Transformer layers (t5: in the encoder, and as many in the decoder)."""
    num_heads: int = 4
    """Attention heads; hidden_size must be divisible by it."""
    intermediate_size: int | None = None
    """Feed-forward width; null means 4 x hidden_size (Llama: 8/3 x, rounded up to a multiple of 64)."""
    max_position_embeddings: int = 512
    """Position embeddings; data.block_size must fit (RoBERTa: block_size <= this - pad id - 1; unused by t5,
    whose relative positions fit any length)."""
    dropout: float = 0.1
    """Dropout on hidden states and attention probabilities."""
    vocab_size: int | None = None
    """Embedding rows; null means the tokenizer's vocabulary size."""
    embedding_size: int | None = None
    """ELECTRA only: width of the token, position and token-type embeddings the generator and discriminator share
    (ELECTRA-Small: 128 with hidden_size 256); null means hidden_size."""


@dataclass
class InitConfig:
    from_: str | None = None
    """YAML key `init.from`: a Hugging Face folder or hub id to continue from (domain-adaptive pre-training)."""


@dataclass
class TrainConfig:
    max_steps: int = 1000
    """Optimizer steps; ignored when epochs is set."""
    epochs: float | None = None
    """Passes over the training blocks; when set, max_steps is derived from it."""
    batch_size: int = 32
    """Blocks per device per micro-batch; effective batch = batch_size x grad_accum x devices."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float | None = 5.0e-4
    """Peak learning rate; null (fine-tuning only): the task's default (plm list tasks)."""
    lr_schedule: str = "linear"
    """constant | linear | cosine (after warm-up)."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to lr."""
    warmup_ratio: float = 0.0
    """Warm-up as a fraction of max_steps; when > 0 it replaces warmup_steps."""
    weight_decay: float = 0.01
    """AdamW weight decay (never on biases, LayerNorm/RMSNorm and embeddings)."""
    head_lr: float | None = None
    """Learning rate of a fine-tuning task head (the layers the pre-trained model did not have); null: lr."""
    layer_lr_decay: float = 1.0
    """Layer-wise LR decay: layer k from the top trains at lr x decay^k, embeddings lowest; 1.0: off."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.98
    """AdamW beta2 (0.95 is common for causal LMs)."""
    adam_eps: float = 1.0e-6
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (0 disables clipping)."""
    precision: str = "fp32"
    """fp32 | bf16 | fp16 (mapped onto accelerate's mixed_precision: autocast) | auto (bf16 where the device computes
    it fast: a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX; else fp32)."""
    fused_optimizer: bool = True
    """Fused AdamW kernel (torch.optim.AdamW(fused=True)) where the device has one (CPU, CUDA); false: the
    for-loop/foreach implementation. Losses agree within 1e-5 relative."""
    attention: str = "auto"
    """Attention kernel: auto | sdpa | eager | flash_attention_2. auto: flash_attention_2 on CUDA when flash-attn is
    installed and precision is bf16/fp16; on a CPU, eager while attention dropout is on (SDPA's CPU kernels do not
    implement dropout and fall back to a slower path); else sdpa. With data.doc_attention only sdpa takes the
    per-document masks (auto picks it)."""
    fused_kernels: str = "auto"
    """auto | off. auto: on CUDA, Liger's fused kernels (RMSNorm, SwiGLU, RoPE) when liger-kernel is installed and
    supports the architecture (Llama); nothing on a CPU. Never required."""
    fast_dropout: bool = True
    """On a CPU, dropout masks from 16-bit slices of 64-bit random integers instead of bernoulli_ (drop probability
    rounded to a multiple of 1/65536; about 2.5x cheaper dropout); nothing on CUDA, with compile or with
    gradient_checkpointing."""
    compile_dropout: bool | None = None
    """With fast_dropout: each mask is drawn and applied by one kernel that torch.compile (inductor) generates, from a
    hash of the element's index and a seed drawn from torch's generator (same drop probability and scale; about
    twice as fast again); it needs a C++ compiler, and without one the 16-bit slices run, after a warning. null: on
    for pre-training, off for fine-tuning tasks (their masks are small, and the kernel would add torch.compile's
    start-up, a few seconds, to short runs)."""
    compile_loss: bool = True
    """On a CPU, the float32 cross-entropy of the language-model losses (masked and causal LM, T5, ELECTRA's
    generator) runs as one kernel that torch.compile (inductor) generates, compiled once per process (a few
    seconds); it needs a C++ compiler, and without one the chunked eager loss runs, after a warning. Same loss;
    gradients equal to bf16 rounding."""
    heap_allocations: bool = True
    """On a CPU under Linux (glibc), large tensors come from malloc's heap instead of fresh pages from the kernel,
    so that each step reuses the last step's buffers (mmap and trim thresholds raised to 1 GiB for the process;
    about 15% faster steps on the benchmark model; freed memory stays with the process)."""
    tf32: bool | None = None
    """On CUDA, float32 matrix products on TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32). null: on under
    bf16/fp16 precision, for the products autocast leaves in float32 (an H100 runs them about 8x faster, and TF32
    keeps more bits than bf16); off under fp32. Nothing on a CPU."""
    compile: bool = False
    """torch.compile the training module (in place: checkpoints keep their parameter names). The first steps
    take longer while it compiles; needs a C++ compiler on a CPU."""
    compile_mode: str = "default"
    """torch.compile's mode with train.compile: default | reduce-overhead (CUDA graphs: fewer kernel launches, for
    inputs of fixed shapes such as packed causal-LM blocks) | max-autotune (also tries generated matrix-product
    kernels; compiles for minutes) | max-autotune-no-cudagraphs."""
    sdpa_backends: list[str] | None = None
    """The kernels SDPA attention may choose from (torch.nn.attention.sdpa_kernel), any of flash, efficient, cudnn,
    math; null: torch's own choice. E.g. [flash, efficient, cudnn] keeps it off the unfused math formula; a run whose
    attention no listed kernel supports stops with an error naming this setting."""
    compiled_sdpa: str = "graph"
    """With train.compile on CUDA, SDPA models run plmkit's attention (models/compiled_sdpa.py): graph | operator |
    off. Both graph and operator pass no attention mask where a batch has no padding (transformers 5.17 builds an
    all-true or causal mask while torch.compile traces, which keeps SDPA off its fused kernels with dropout, and off
    its causal shortcut). graph: SDPA traced into the compiled graph (BERT-base on an H200: 30.6% MFU against
    operator's 20.6%; GPT-2 124M the same with both). operator: attention with dropout and no mask runs as one
    operation that torch.compile calls without tracing into, so the eager dispatcher picks its kernel; its backward
    pass recomputes attention's forward pass from the same random state. off: SDPA as transformers runs it."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    profile_steps: int = 0
    """Record this many optimizer steps with torch.profiler (0: off) and write profile/ in the run folder: the
    operators by time (ops.txt), a Chrome/Perfetto trace (trace.json) and summary.json (wall time, and on a GPU the
    time its kernels ran: what share of the steps the device was busy)."""
    profile_from: int = 5
    """The step after which train.profile_steps starts recording (after torch.compile's first steps)."""
    log_every: int = 10
    """Write a metrics.jsonl row every this many steps (and at the last step)."""
    eval_every: int = 200
    """Evaluate every this many steps (0: only at the start and the end)."""
    eval_blocks: int = 256
    """Validation blocks in the fixed evaluation set (same blocks and masks every time)."""
    save_every: int = 500
    """Write a checkpoint every this many steps (and at the last step)."""
    keep_checkpoints: int = 2
    """Checkpoints kept in checkpoints/ (the oldest are deleted)."""
    num_workers: int | None = None
    """DataLoader worker processes that collate batches (masking included) beside the training process. null: 2 for
    pre-training on CUDA, where the host would otherwise collate while the GPU waits; 0 on a CPU, whose cores do the
    training, and for fine-tuning tasks, whose padded batches are cheap to make."""
    group_by_length: bool = True
    """Fine-tuning: batch examples of similar length together (less padding); packed blocks are all one length."""


@dataclass
class LogConfig:
    to: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    """Any of console, jsonl, tensorboard."""


@dataclass
class AdapterConfig:
    name: str = "none"
    """none (full fine-tuning) | lora (peft LoRA adapters; the task head is trained fully)."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    """Names of the linear layers that get adapters (BERT: query, key, value, dense)."""


@dataclass
class EvalConfig:
    at_start: bool = True
    """Evaluate before the first step (pre-training: the perplexity of the untrained model)."""
    per_epoch: bool = False
    """Also evaluate at the end of every epoch."""
    select_best_by: str | None = None
    """Metric whose best value picks the weights exported to final/ (accuracy, f1, eval_loss, ...); null: the last
    weights (pre-training) or the task's main metric (fine-tuning)."""
    patience: int = 0
    """Stop after this many evaluations without improving select_best_by (0: never stop early)."""


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    objective: Any = field(default_factory=lambda: {"name": "mlm"})
    """The objective: `name` picks it from the registry (plm list objectives); the rest are its settings."""
    task: Any = field(default_factory=dict)
    """Fine-tuning task: `name` picks it from the registry (plm list tasks); the rest are its settings."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# `from` is a Python keyword, so the dataclass field is `from_`; YAML and --set use `init.from`.
_KEYWORD_KEYS = {("init", "from"): "from_"}

CHOICES = {
    "data.source": ("auto", "text", "jsonl", "hf"),
    "data.doc_split": ("blank_line", "line", "doc_tags"),
    "data.segmenter": ("auto", "none", "pretokenizer", "jieba"),
    "data.normalization": ("NFC", "NFKC", "none"),
    "tokenizer.train.algorithm": ("bpe", "wordpiece", "unigram"),
    "model.arch": ("bert", "roberta", "gpt2", "llama", "electra", "t5"),
    "train.lr_schedule": ("constant", "linear", "cosine"),
    "train.precision": ("fp32", "bf16", "fp16", "auto"),
    "train.attention": ("auto", "sdpa", "eager", "flash_attention_2"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "train.fused_kernels": ("auto", "off"),
    "train.compiled_sdpa": ("operator", "graph", "off"),
    "adapter.name": ("none", "lora"),
}
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")
"""train.sdpa_backends' names, for torch.nn.attention.SDPBackend's FLASH_ATTENTION, EFFICIENT_ATTENTION,
CUDNN_ATTENTION and MATH."""
POSITIVE = ("data.block_size", "data.shard_tokens", "tokenizer.train.vocab_size", "model.hidden_size",
            "model.num_layers", "model.num_heads", "model.max_position_embeddings", "train.max_steps",
            "train.batch_size", "train.grad_accum", "train.log_every", "train.save_every",
            "train.keep_checkpoints", "train.eval_blocks", "train.adam_eps", "adapter.r", "adapter.alpha")
NON_NEGATIVE = ("data.min_chars", "train.warmup_steps", "train.weight_decay", "train.max_grad_norm",
                "train.eval_every", "train.profile_steps", "train.profile_from",
                "tokenizer.train.min_frequency", "eval.patience")
FRACTIONS = ("data.validation_fraction", "model.dropout", "train.adam_beta1", "train.adam_beta2",
             "train.warmup_ratio")  # in [0, 1)
NON_NEGATIVE_OR_NULL = ("train.num_workers",)
MAX_VOCAB = 2**24
"""tokenizer.train.vocab_size's bound: far above any vocabulary in use, far below the sizes at which the bpe trainer
asks for hundreds of GB and aborts the process."""
POSITIVE_OR_NULL = ("model.intermediate_size", "model.vocab_size", "model.embedding_size", "tokenizer.train.max_docs",
                    "train.lr", "train.head_lr")


def _rename_keywords(tree: dict, to_python: bool) -> dict:
    for (section, key), attr in _KEYWORD_KEYS.items():
        old, new = (key, attr) if to_python else (attr, key)
        if isinstance(tree.get(section), dict) and old in tree[section]:
            tree[section][new] = tree[section].pop(old)
    return tree


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line and column, 1-based)."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_yaml(path: str | Path) -> Any:
    """The data in a YAML file, or a one-line ConfigError naming the file: missing, a folder, not UTF-8 text, not
    valid YAML, or a key written twice in one mapping."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a YAML config file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(e)}") from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key.strip()}: {raw!r} is not valid YAML ({_yaml_problem(e)}); quote a value "
                          f"that starts with * or & or holds {{ [ : #, e.g. --set 'data.paths=[\"*.txt\"]'") from None
    return key.strip().split("."), value


def _overrides_tree(overrides: list[str]) -> dict:
    tree: dict = {}
    for item in overrides:
        keys, value = _parse_override(item)
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key below a value")
        node[keys[-1]] = value
    return tree


def _fit_shapes(base: DictConfig, tree: dict) -> dict:
    """`tree` with the two shorthands a reader means: a section left empty (every key commented out) takes the
    defaults, and a single string where a list belongs (data.paths=a.txt) is a list of that one string."""
    out = {}
    for key, value in tree.items():
        node = base.get(key, None) if isinstance(base, DictConfig) else None
        if isinstance(node, DictConfig) and value is None and not base._get_node(key)._is_optional():
            continue  # a section (train:); an optional mapping (tokenizer.special_tokens) may still be unset
        if isinstance(node, ListConfig) and isinstance(value, str):
            value = [value]
        elif isinstance(node, DictConfig) and isinstance(value, dict):
            value = _fit_shapes(node, value)
        out[key] = value
    return out


def _merge(base: DictConfig, tree: dict, origin: str, prefix: str = "",
           docs: str = "`plm config show --doc`") -> DictConfig:
    tree = _fit_shapes(base, tree)
    for key, value in tree.items():
        if isinstance(base.get(key, None), DictConfig) and key != "objective" and not isinstance(value, dict):
            raise ConfigError(f"{prefix}{key} must be a mapping of settings; got {value!r} ({origin})")
    try:
        return OmegaConf.merge(base, OmegaConf.create(_rename_keywords(tree, to_python=True)))
    except OmegaConfBaseException as e:
        key = prefix + _public_key(getattr(e, "full_key", "") or "?")
        reason = str(e).splitlines()[0]
        if "Key" in type(e).__name__ or "not in" in reason:
            hint = _did_you_mean(base, _public_key(getattr(e, "full_key", "") or ""), prefix)
            raise ConfigError(f"unknown config key {key!r} ({origin}); {hint}see {docs}") from None
        raise ConfigError(f"{key}: {reason} ({origin})") from None


def _did_you_mean(base: DictConfig, key: str, prefix: str = "") -> str:
    """"did you mean 'train.lr'? " for a misspelt leaf whose section exists, else ""."""
    import difflib

    *path, leaf = key.split(".")
    node = base
    for part in path:
        node = node.get(part, None) if isinstance(node, DictConfig) else None
    if not isinstance(node, DictConfig):
        return ""
    names = ["from" if name == "from_" else str(name) for name in node]
    close = difflib.get_close_matches(leaf, names, n=1, cutoff=0.6) or [
        name for name in names if ALIASES.get(leaf) == name]
    return f"did you mean {prefix + '.'.join([*path, close[0]])!r}? " if close else ""


ALIASES = {"rank": "r", "lora_r": "r", "lora_alpha": "alpha", "learning_rate": "lr", "lr_scheduler": "lr_schedule",
           "steps": "max_steps", "num_epochs": "epochs", "num_train_epochs": "epochs", "warmup": "warmup_steps",
           "gradient_accumulation_steps": "grad_accum", "per_device_train_batch_size": "batch_size",
           "n_layers": "num_layers", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
           "hidden": "hidden_size", "max_seq_length": "max_length", "seq_len": "block_size", "output": "output_dir"}
"""Names other tools (transformers, peft) give a setting, for the "did you mean" of a key difflib finds no match for."""


def _public_key(key: str) -> str:
    return key.replace("init.from_", "init.from")


def layered_schema(schema_type: type, path: str | Path | None, overrides: list[str] | None, *, sections: str,
                   docs: str = "`plm config show --doc`") -> tuple[DictConfig, str]:
    """The dataclass defaults of `schema_type`, then the YAML file, then `key.path=value` overrides, merged but not
    yet converted (so the caller's checks can follow); returns (schema, origin), origin naming where the last layer
    came from for error messages.

    Raises:
        ConfigError: a missing or malformed file, an unknown key (pointing at `docs`) or a wrong type.
    """
    schema = OmegaConf.structured(schema_type)
    origin = "defaults"
    if path is not None:
        path = Path(path)
        tree = read_yaml(path) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{path} must hold a mapping of sections ({sections})")
        origin = str(path)
        schema = _merge(schema, tree, origin, docs=docs)
    if overrides:
        origin = f"--set, on top of {origin}"
        schema = _merge(schema, _overrides_tree(list(overrides)), origin, docs=docs)
    return schema, origin


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config: dataclass defaults, then the YAML file, then `key.path=value` overrides.

    Args:
        path: a YAML file, or None for the defaults alone.
        overrides: OmegaConf-style dotlist entries, e.g. ["train.lr=1e-3", "data.paths=[a.txt]"].

    Returns:
        The validated RunConfig; `cfg.objective` is the registered objective's config dataclass.

    Raises:
        ConfigError: an unknown key, a wrong type or an out-of-range value, naming the key and the file.
    """
    schema, origin = layered_schema(RunConfig, path, overrides, sections="run:, data:, train:, ...")
    try:
        cfg: RunConfig = OmegaConf.to_object(schema)  # resolves ${...} interpolations
    except OmegaConfBaseException as e:
        raise ConfigError(f"{_public_key(getattr(e, 'full_key', '?'))}: {str(e).splitlines()[0]} ({origin})") from None
    cfg.objective = _registered_section(cfg.objective, origin, "objective", "mlm")
    cfg.task = _registered_section(cfg.task, origin, "task", "classification", required=False)
    validate(cfg, origin)
    return cfg


def _registered_section(section: Any, origin: str, kind: str, example: str, required: bool = True) -> Any:
    """Validate the `objective:` / `task:` section against the config dataclass registered under its `name`."""
    if kind == "objective":
        from plmkit.objectives import objectives as registry
    else:
        from plmkit.tasks import tasks as registry
    if section is not None and not isinstance(section, (dict, DictConfig)):
        raise ConfigError(f"{kind} must be a mapping such as {{name: {example}}}; got {section!r} ({origin})")
    section = dict(section or {})
    name = section.pop("name", None)
    if name is None:
        if not required and not section:
            return None
        raise ConfigError(f"{kind}.name is missing ({origin}); choose one of: {', '.join(registry.names())}")
    try:
        entry = registry.get(name)
    except ConfigError as e:
        raise ConfigError(f"{kind}.name: {e} ({origin})") from None
    schema = OmegaConf.structured(entry.config)
    node = _merge(schema, section, origin, prefix=f"{kind}.") if section else schema
    try:
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{kind}.{getattr(e, 'full_key', '?')}: {e} ({origin})") from None
    obj.name = name
    return obj


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig, origin: str = "config") -> None:
    """Range and choice checks that types alone cannot express."""
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {_get(cfg, key)!r} ({origin})")
    for key in POSITIVE:
        if not _get(cfg, key) > 0:
            raise ConfigError(f"{key} must be > 0; got {_get(cfg, key)} ({origin})")
    for key in NON_NEGATIVE:
        if _get(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0; got {_get(cfg, key)} ({origin})")
    for key in NON_NEGATIVE_OR_NULL:
        if _get(cfg, key) is not None and _get(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0 or null; got {_get(cfg, key)} ({origin})")
    for key in POSITIVE_OR_NULL:
        if _get(cfg, key) is not None and _get(cfg, key) <= 0:
            raise ConfigError(f"{key} must be > 0 or null; got {_get(cfg, key)} ({origin})")
    for key in FRACTIONS:
        if not 0 <= _get(cfg, key) < 1:
            raise ConfigError(f"{key} must be in [0, 1); got {_get(cfg, key)} ({origin})")
    if cfg.tokenizer.train.vocab_size > MAX_VOCAB:
        raise ConfigError(f"tokenizer.train.vocab_size must be <= {MAX_VOCAB:,} (the largest vocabularies in use "
                          f"hold about 256,000 tokens); got {cfg.tokenizer.train.vocab_size:,} ({origin})")
    if not 0 <= cfg.run.seed < 2**32:
        raise ConfigError(f"run.seed must be in [0, 2**32 - 1]; got {cfg.run.seed} ({origin})")
    if not 0 < cfg.train.layer_lr_decay <= 1:
        raise ConfigError(f"train.layer_lr_decay must be in (0, 1]; got {cfg.train.layer_lr_decay} ({origin})")
    if cfg.train.epochs is not None and cfg.train.epochs <= 0:
        raise ConfigError(f"train.epochs must be > 0 or null; got {cfg.train.epochs} ({origin})")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ConfigError(f"model.hidden_size ({cfg.model.hidden_size}) must be divisible by model.num_heads "
                          f"({cfg.model.num_heads}) ({origin})")
    if getattr(cfg.objective, "whole_word", False) and cfg.data.segmenter == "none":
        raise ConfigError(f"objective.whole_word needs word boundaries, but data.segmenter is none; set "
                          f"data.segmenter to auto or pretokenizer (English) or jieba (Chinese) ({origin})")
    if getattr(cfg.objective, "name", None) == "span_corruption" and cfg.data.doc_attention:
        raise ConfigError(f"span_corruption does not support data.doc_attention (T5 packs documents without isolating "
                          f"them); set data.doc_attention=false ({origin})")
    if cfg.data.segmenter_dict is not None and cfg.data.segmenter != "jieba":
        raise ConfigError(f"data.segmenter_dict is a jieba user dictionary, but data.segmenter is "
                          f"{cfg.data.segmenter}; set data.segmenter=jieba or remove data.segmenter_dict ({origin})")
    if cfg.model.embedding_size is not None and cfg.model.arch != "electra":
        raise ConfigError(f"model.embedding_size is for model.arch electra; remove it or set it to null for "
                          f"{cfg.model.arch} ({origin})")
    if cfg.train.sdpa_backends is not None:
        unknown = set(cfg.train.sdpa_backends) - set(SDPA_BACKENDS)
        if unknown or not cfg.train.sdpa_backends:
            raise ConfigError(f"train.sdpa_backends: {sorted(unknown) or 'an empty list'}; list any of "
                              f"{', '.join(SDPA_BACKENDS)}, or null for torch's choice ({origin})")
    unknown_logs = set(cfg.log.to) - {"console", "jsonl", "tensorboard"}
    if unknown_logs:
        raise ConfigError(f"log.to: unknown target(s) {sorted(unknown_logs)}; use console, jsonl, tensorboard ({origin})")
    for section in ("objective", "task"):
        check = getattr(getattr(cfg, section, None), "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as e:
                raise ConfigError(f"{section}.{e} ({origin})") from None


def to_dict(cfg: RunConfig) -> dict:
    """The resolved config as plain data, with public key names (init.from)."""
    tree = dataclasses.asdict(dataclasses.replace(cfg, objective={}, task={}))
    for key in ("objective", "task"):
        section = getattr(cfg, key)
        tree[key] = {"name": section.name, **dataclasses.asdict(section)} if section is not None else {}
    return _rename_keywords(tree, to_python=False)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config; `load_config(path)` gives the same config back."""
    Path(path).write_text(to_yaml(cfg), encoding="utf-8")


def field_docs(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, doc) for every leaf field, read from the attribute docstrings in this file."""
    docs = _attribute_docstrings(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = prefix + ("from" if f.name == "from_" else f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else default) and not isinstance(default, dict):
            rows += field_docs(type(default), key + ".")
        else:
            rows.append((key, _type_name(f.type), default, docs.get(f.name, "")))
    return rows


def reference_markdown() -> str:
    """docs/config-reference.md: every key with its type, default and meaning (a test keeps the file current)."""
    lines = ["# Config reference", "",
             "Generated from `src/plmkit/config.py` by `plm config show --doc --markdown > docs/config-reference.md`.",
             ("Objective settings (`objective.*`) depend on `objective.name`; see `plm list objectives` and "
              "[pretraining.md](pretraining.md)."), "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_, default, doc in reference_rows():
        lines.append(f"| `{key}` | {_cell(type_)} | `{default!r}` | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def reference_rows() -> list[tuple[str, str, Any, str]]:
    """(key, type, default, meaning) of every key: the run config's, then each objective's and each task's
    (`objective.mlm: mask_prob`), which depend on objective.name and task.name."""
    from plmkit.objectives import objectives
    from plmkit.tasks import tasks

    rows = field_docs()
    for kind, registry in (("objective", objectives), ("task", tasks)):
        for entry in registry:
            rows += field_docs(entry.config, f"{kind}.{entry.name}: ")
    return rows


def _type_name(t: Any) -> str:
    return str(t).replace("typing.", "")


def _cell(type_: str) -> str:
    """A type in a Markdown table cell: `float | None` with its bar escaped, so that the row keeps its columns."""
    return type_.replace("|", "\\|")


def _attribute_docstrings(cls: type) -> dict[str, str]:
    import inspect

    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out, body = {}, tree.body[0].body
    for stmt, nxt in itertools.pairwise(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            out[stmt.target.id] = " ".join(str(nxt.value.value).split())
    return out


__all__ = ["MISSING", "RunConfig", "field_docs", "load_config", "save_config", "to_dict", "to_yaml", "validate"]
