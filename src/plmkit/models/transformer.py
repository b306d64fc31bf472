"""Build BERT, RoBERTa, GPT-2 and Llama from transformers' config classes (SDPA attention), or load a checkpoint.

No model code of our own: plmkit maps its ModelConfig onto the transformers config and calls AutoModelFor*.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
import transformers
from rich.console import Console
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    PretrainedConfig,
    PreTrainedModel,
)

from plmkit.config import ModelConfig
from plmkit.errors import CompatibilityError, ConfigError
from plmkit.models.electra import build_electra_config
from plmkit.paths import looks_local

AUTO_CLASSES = {"masked_lm": AutoModelForMaskedLM, "causal_lm": AutoModelForCausalLM,
                "electra": transformers.AutoModelForPreTraining,  # ElectraForPreTraining, the discriminator
                "seq2seq_lm": AutoModelForSeq2SeqLM}  # T5ForConditionalGeneration
ARCHS = {"bert": "masked_lm", "roberta": "masked_lm", "gpt2": "causal_lm", "llama": "causal_lm",
         "electra": "electra", "t5": "seq2seq_lm"}
"""Architecture -> the model kind it is built for."""


def build_model_config(cfg: ModelConfig, tokenizer) -> PretrainedConfig:
    """The transformers config for `cfg.arch`, with vocabulary and special-token ids taken from the tokenizer."""
    vocab = cfg.vocab_size or len(tokenizer)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    inner = cfg.intermediate_size or 4 * cfg.hidden_size
    if cfg.arch in ("bert", "roberta"):
        cls = transformers.BertConfig if cfg.arch == "bert" else transformers.RobertaConfig
        return cls(vocab_size=vocab, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                   num_attention_heads=cfg.num_heads, intermediate_size=inner,
                   max_position_embeddings=cfg.max_position_embeddings, hidden_dropout_prob=cfg.dropout,
                   attention_probs_dropout_prob=cfg.dropout, type_vocab_size=2 if cfg.arch == "bert" else 1,
                   **ids)
    if cfg.arch == "gpt2":
        return transformers.GPT2Config(vocab_size=vocab, n_embd=cfg.hidden_size, n_layer=cfg.num_layers,
                                       n_head=cfg.num_heads, n_inner=inner, n_positions=cfg.max_position_embeddings,
                                       resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, **ids)
    if cfg.arch == "llama":
        # SwiGLU has three matrices, so the usual width is 8/3 x hidden (rounded up to a multiple of 64).
        inner = cfg.intermediate_size or 64 * math.ceil(8 * cfg.hidden_size / 3 / 64)
        return transformers.LlamaConfig(vocab_size=vocab, hidden_size=cfg.hidden_size,
                                        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                                        num_key_value_heads=cfg.num_heads, intermediate_size=inner,
                                        max_position_embeddings=cfg.max_position_embeddings,
                                        attention_dropout=cfg.dropout, **ids)
    if cfg.arch == "electra":  # the discriminator; the objective builds its generator (models/electra.py)
        return build_electra_config(cfg, tokenizer)
    if cfg.arch == "t5":
        # The original T5 (Raffel et al. 2020): ReLU feed-forward, tied embeddings, relative position buckets (no
        # position table, so max_position_embeddings is unused); the decoder starts from the pad token, as in T5.
        return transformers.T5Config(vocab_size=vocab, d_model=cfg.hidden_size, d_ff=inner,
                                     d_kv=cfg.hidden_size // cfg.num_heads, num_layers=cfg.num_layers,
                                     num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads,
                                     dropout_rate=cfg.dropout, feed_forward_proj="relu", tie_word_embeddings=True,
                                     decoder_start_token_id=tokenizer.pad_token_id, **ids)
    raise ConfigError(f"model.arch {cfg.arch!r} is not supported; choose one of {', '.join(ARCHS)}")


def build_model(cfg: ModelConfig, tokenizer, kind: str) -> PreTrainedModel:
    """A randomly initialised model of `cfg.arch` for `kind` (masked_lm | causal_lm)."""
    if ARCHS.get(cfg.arch) != kind:
        fits = [a for a, k in ARCHS.items() if k == kind]
        raise ConfigError(f"model.arch {cfg.arch!r} cannot be trained as {kind}; use one of {', '.join(fits)} "
                          "or change objective.name")
    return AUTO_CLASSES[kind].from_config(build_model_config(cfg, tokenizer), attn_implementation="sdpa")


def masked_lm_head(model: PreTrainedModel) -> torch.nn.Module:
    """The LM head of a transformers masked-LM model (BERT's `cls`, RoBERTa's `lm_head`): hidden (..., H) -> (..., V)."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise ConfigError(f"{type(model).__name__} has no masked-LM head (cls or lm_head) that plmkit knows")


def load_pretrained_model(name_or_path: str, kind: str) -> PreTrainedModel:
    """Load a checkpoint (local Hugging Face folder or hub id) as a `kind` model; safetensors only, no remote code.

    A checkpoint without the LM head (e.g. a sentence-embedding BERT) loads with a freshly initialised head, and
    says so in one line (transformers' own report calls such a checkpoint corrupted)."""
    local = Path(name_or_path).expanduser()
    if not local.exists() and looks_local(name_or_path):
        raise CompatibilityError(f"init.from: {name_or_path} does not exist; give a folder written by "
                                 "save_pretrained (e.g. runs/NAME/final) or a hub id")
    try:
        model, info = AUTO_CLASSES[kind].from_pretrained(str(local) if local.exists() else name_or_path,
                                                         attn_implementation="sdpa", use_safetensors=True,
                                                         trust_remote_code=False, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise CompatibilityError(f"init.from: could not load {name_or_path} as a {kind} model: "
                                 f"{str(e).splitlines()[0]}") from None
    prefix = f"{model.base_model_prefix}."
    new = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))  # outside the body: the LM head
    from plmkit.processes import first_process

    if new and first_process():
        Console(stderr=True).print(
            f"init.from: {name_or_path} has no weights for the {type(model).__name__} head ({len(new)} tensors, "
            f"e.g. {new[0]}): it was saved without it (a sentence-embedding or base model), so the head starts "
            "from random weights and the first losses are high; the body's weights are the checkpoint's")
    return model


def kept_checkpoint_weights(name_or_path: str, model: PreTrainedModel,
                            own: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """The pooler of a BERT/RoBERTa checkpoint that `model` (a ...ForMaskedLM, which has none) did not load, named
    as in `model`'s own save (bert.pooler.dense.weight, ...): pre-training puts them into final/ as they were, so
    that AutoModel and fine-tuning load the checkpoint's pooler instead of drawing a random one. Empty when the
    checkpoint has none, `model` has its own, or its weights are not in safetensors files found locally or in the
    hub cache. `own`: the names of `model`'s weights where the caller has them (gathered on every process: the
    model's own state_dict would gather sharded weights on one process alone).
    """
    from safetensors import safe_open
    from transformers.utils import cached_file

    prefix = f"{model.base_model_prefix}."
    own = set(own if own is not None else model.state_dict().keys())

    def found(filename: str) -> str | None:
        local = Path(name_or_path).expanduser()
        if local.is_dir():
            return str(local / filename) if (local / filename).is_file() else None
        try:
            return cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False)
        except OSError:
            return None

    files = [found("model.safetensors")]
    if files[0] is None and (index := found("model.safetensors.index.json")) is not None:
        files = [found(name) for name in sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))]
    kept: dict[str, torch.Tensor] = {}
    for file in filter(None, files):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                name = prefix + key.removeprefix(prefix)
                if name.startswith(f"{prefix}pooler.") and name not in own:
                    kept[name] = f.get_tensor(key)
    return kept


SENTENCE_TRANSFORMER_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
"""What makes a Hugging Face folder a sentence-transformers model, beside its module folders (1_Pooling/, ...)."""


def copy_sentence_transformer_files(source: str | Path, folder: Path) -> list[str]:
    """Copy a local sentence-transformers model's own files (modules.json, its configs and the folders of its
    pooling and normalisation modules) from `source` into `folder`, so that a model adapted by continued
    pre-training loads with `SentenceTransformer(folder)` and pools as it did. Returns the names copied; none when
    `source` is no local sentence-transformers folder, or keeps its transformer in a subfolder (an older layout,
    whose weights would not be the adapted ones). A module whose path leaves the folder is left out of the
    modules.json written."""
    source = Path(source).expanduser()
    try:
        modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(modules, list):
        return []
    kept, copied = [], []
    for module in modules:
        if not isinstance(module, dict):
            continue
        path, kind = module.get("path") or "", str(module.get("type", ""))
        if kind.endswith(".Transformer"):
            if path:  # an older layout keeps the transformer in a folder: its weights are not the adapted ones
                return []
            kept.append(module)  # "": the transformer is the folder being written
        elif not path or (not Path(path).is_absolute() and ".." not in Path(path).parts):
            if path and (source / path).is_dir():
                shutil.copytree(source / path, folder / path, dirs_exist_ok=True)
                copied.append(f"{path}/")
            kept.append(module)  # without a folder (Normalize has no files): as the starting model lists it
    if not copied:
        return []
    for name in SENTENCE_TRANSFORMER_FILES[1:]:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
            copied.insert(0, name)
    (folder / "modules.json").write_text(json.dumps(kept, indent=2), encoding="utf-8")  # the modules copied
    return ["modules.json", *copied]


TASK_CLASSES = {"sequence_classification": "AutoModelForSequenceClassification",
                "token_classification": "AutoModelForTokenClassification"}
TASK_HEADS = {kind: auto.removeprefix("AutoModel") for kind, auto in TASK_CLASSES.items()}
"""The end of the head class's name that a saved config.json's `architectures` lists for each task model kind
(BertForSequenceClassification ends with ForSequenceClassification)."""


def build_task_model(name_or_path: str, kind: str, label_kwargs: dict, *, scratch: bool = False) -> PreTrainedModel:
    """A task head on a pre-trained encoder (a new, randomly initialised head), or with `scratch` the same
    architecture with random weights everywhere (for measuring what pre-training bought)."""
    auto = getattr(transformers, TASK_CLASSES[kind])
    local = Path(name_or_path).expanduser()
    if not local.exists() and looks_local(name_or_path):
        raise CompatibilityError(f"init.from: {name_or_path} does not exist; give a Hugging Face model folder "
                                 "(e.g. runs/quickstart/final) or a hub id")
    source = str(local) if local.exists() else name_or_path
    try:
        if scratch:
            config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=False, **label_kwargs)
            return auto.from_config(config, attn_implementation="sdpa")
        old = transformers.AutoConfig.from_pretrained(source, trust_remote_code=False)
        heads = [a for a in getattr(old, "architectures", None) or [] if a.endswith(tuple(TASK_HEADS.values()))]
        same_head = (heads and heads[0].endswith(TASK_HEADS[kind]) and dict(old.id2label) == label_kwargs["id2label"]
                     and getattr(old, "problem_type", None) == label_kwargs.get("problem_type"))
        model = auto.from_pretrained(source, attn_implementation="sdpa", use_safetensors=True,
                                     trust_remote_code=False, ignore_mismatched_sizes=bool(heads), **label_kwargs)
    except (OSError, ValueError) as e:
        raise CompatibilityError(f"init.from: could not load {name_or_path} for {kind}: "
                                 f"{str(e).splitlines()[0]}") from None
    if heads and not same_head:  # a fine-tuned model: its head knows other labels (or another task)
        _new_head(model)
        Console(stderr=True).print(
            f"[yellow]init.from: {name_or_path} was fine-tuned ({heads[0]}, labels {list(old.id2label.values())}); "
            "its head is replaced by a new, randomly initialised one for this task's labels")
    return model


def _new_head(model: PreTrainedModel) -> None:
    """Draw the weights of everything outside the encoder (the task head) afresh, as transformers initialises a
    new head: linear weights from N(0, initializer_range), biases 0, norms 1 and 0. (model._init_weights would
    leave them: transformers 5 skips parameters it has marked as loaded.)"""
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for name, child in model.named_children():
            if name == model.base_model_prefix:
                continue
            for module in child.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, torch.nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()


# --- fast paths (train.attention, train.fused_kernels) ---------------------------------------------------------------

ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attn_pdrop", "attention_dropout", "dropout_rate")
"""Where BERT/RoBERTa, GPT-2, Llama and T5 configs keep the dropout on attention probabilities."""


def transformers_model(module: torch.nn.Module) -> PreTrainedModel | None:
    """The outermost transformers model inside `module` (an objective's wrapper, a PEFT model, or itself)."""
    return next((m for m in module.modules() if isinstance(m, PreTrainedModel)), None)


def sdpa_backends(names: list[str] | None) -> Callable[[], AbstractContextManager]:
    """train.sdpa_backends as a context factory: torch.nn.attention.sdpa_kernel over the named backends (flash,
    efficient, cudnn, math), raising torch's 'no kernel' errors as a ConfigError that names the setting; a no-op
    for None (torch's own choice)."""
    if names is None:
        return nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = [{"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name] for name in names]

    @contextmanager
    def limited():
        with sdpa_kernel(chosen):
            try:
                yield
            except RuntimeError as exc:
                if not any(text in str(exc) for text in ("No available kernel", "No viable backend")):
                    raise
                raise ConfigError(f"train.sdpa_backends={names}: none of these attention kernels can run this "
                                  f"model's attention here (its dropout, mask, dtype or device); add another (math "
                                  f"runs everything) or set it to null") from exc

    return limited


def pick_attention(model: torch.nn.Module, requested: str, device: torch.device, precision: str,
                   doc_attention: bool = False) -> str:
    """The attention implementation that train.attention=`requested` means for this model on `device`.

    auto: FlashAttention-2 on CUDA when flash-attn is installed, the precision is bf16/fp16 and the model supports it;
    on a CPU, eager attention while attention dropout is on (SDPA's CPU kernels implement no dropout and fall back to
    a path about 1.6x slower than eager attention for the benchmark model); SDPA otherwise and with per-document
    masks, which only SDPA takes as they are."""
    if requested != "auto":
        if doc_attention and requested != "sdpa":
            raise ConfigError(f"data.doc_attention needs train.attention sdpa or auto; got {requested!r}")
        return requested
    hf = transformers_model(model)
    if hf is None or doc_attention:
        return "sdpa"
    if device.type == "cuda":
        flash = (precision in ("bf16", "fp16") and getattr(hf, "_supports_flash_attn", False)
                 and importlib.util.find_spec("flash_attn") is not None)
        return "flash_attention_2" if flash else "sdpa"
    dropout = max(float(getattr(hf.config, key, 0.0) or 0.0) for key in ATTENTION_DROPOUT_KEYS)
    return "eager" if device.type == "cpu" and dropout > 0 else "sdpa"


def set_attention(model: torch.nn.Module, name: str) -> str:
    """Switch the transformers model inside `model` to attention implementation `name`; returns the one in use."""
    hf = transformers_model(model)
    if hf is None:
        return name
    if hf.config._attn_implementation != name:
        try:
            hf.set_attn_implementation(name)
        except (ImportError, ValueError) as e:
            raise ConfigError(f"train.attention={name}: {str(e).splitlines()[0]}; use sdpa or auto") from None
    return hf.config._attn_implementation


def use_plmkit_sdpa(model: torch.nn.Module, mode: str, compiled: bool, device: torch.device) -> str | None:
    """With train.compiled_sdpa (`mode`: operator, graph or off) under train.compile on CUDA: switch an SDPA model to
    `plmkit_sdpa` (operator) or `plmkit_sdpa_graph` (graph; models/compiled_sdpa.py: no all-true or causal masks
    where there is no padding, and with operator attention with dropout and no mask as one operation that
    torch.compile does not trace into). Returns the new implementation's name, or None where nothing changed (off,
    another attention, a CPU, or a transformers version that refuses the name)."""
    hf = transformers_model(model)
    if mode == "off" or not (compiled and device.type == "cuda") or hf is None or hf.config._attn_implementation != "sdpa":
        return None
    from plmkit.models import compiled_sdpa

    if mode == "operator" and not compiled_sdpa.generator_state_fits(device):
        warnings.warn(f"train.compiled_sdpa=operator: {device}'s random generator state is not the "
                      f"{compiled_sdpa.STATE_BYTES.get(device.type)} bytes this was written for; the mask change "
                      f"alone applies (train.compiled_sdpa=graph)", stacklevel=2)
        mode = "graph"
    try:
        hf.set_attn_implementation(compiled_sdpa.register(mode))
    except (ImportError, ValueError, AttributeError) as e:
        warnings.warn(f"train.compiled_sdpa: transformers refused the attention implementation "
                      f"({str(e).splitlines()[0]}); SDPA runs as transformers runs it", stacklevel=2)
        return None
    return hf.config._attn_implementation


LIGER_ARCHS = {"llama": "apply_liger_kernel_to_llama"}
"""Architectures plmkit builds that liger-kernel patches (RMSNorm, SwiGLU, RoPE); BERT, RoBERTa, GPT-2 have none."""


def apply_fused_kernels(model: torch.nn.Module, device: torch.device) -> list[str]:
    """Liger's Triton kernels (RMSNorm, SwiGLU, RoPE) on a CUDA model whose architecture Liger supports, when
    liger-kernel is installed; returns what was applied (nothing on a CPU). The loss stays plmkit's, so Liger's
    fused linear cross-entropy is not used."""
    hf = transformers_model(model)
    name = LIGER_ARCHS.get(getattr(getattr(hf, "config", None), "model_type", None))
    if device.type != "cuda" or name is None or importlib.util.find_spec("liger_kernel") is None:
        return []
    import liger_kernel.transformers as liger

    getattr(liger, name)(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                         fused_linear_cross_entropy=False, model=hf)
    return ["liger (rope, rms_norm, swiglu)"]
