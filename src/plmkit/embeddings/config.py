"""The typed config of `plm embeddings train`: the run and data sections of a pre-training config (same corpus,
same cleaning), a word vocabulary, and the settings of Word2Vec or GloVe. Loaded like a run config: dataclass
defaults -> YAML -> `--set key.path=value`; unknown keys and bad values fail naming the key and the file.

    plm embeddings train configs/embeddings/glove-300d.yaml --set embeddings.epochs=5
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plmkit.config import CHOICES, DataConfig, RunSection, layered_schema, read_yaml
from plmkit.errors import ConfigError

METHODS = ("word2vec", "glove")


@dataclass
class VocabConfig:
    lowercase: bool = True
    """Lower-case words before counting them (queries are lower-cased the same way)."""
    min_count: int = 5
    """Words seen fewer times in the training documents are dropped (and skipped when windows are formed)."""
    max_vocab: int | None = None
    """Keep at most this many of the most frequent words; null: all that pass min_count."""


@dataclass
class EmbeddingsSection:
    method: str = "word2vec"
    """word2vec (gensim: skip-gram or CBOW, negative sampling) | glove (ours: weighted least squares)."""
    dim: int = 100
    """Vector dimension."""
    window: int = 5
    """Context words on each side (symmetric window)."""
    epochs: int = 5
    """Passes over the corpus (word2vec) or over the non-zero co-occurrence counts (GloVe)."""
    workers: int = 1
    """Worker threads (gensim) / torch threads (GloVe); one worker makes word2vec reproducible."""


@dataclass
class Word2VecConfig:
    sg: bool = True
    """true: skip-gram (predict the context from the word); false: CBOW (the word from its averaged context)."""
    negative: int = 5
    """Negative samples per positive pair (negative sampling; hierarchical softmax is not used)."""
    sample: float = 1.0e-3
    """Down-sampling threshold for frequent words (0: off)."""
    lr: float = 0.025
    """Initial learning rate, decayed linearly to min_lr (CBOW usually takes 0.05)."""
    min_lr: float = 1.0e-4
    """Learning rate at the end of training."""


@dataclass
class GloveConfig:
    x_max: float = 100.0
    """Co-occurrence count at which the weight f(x) = min(1, (x / x_max)^alpha) reaches 1."""
    alpha: float = 0.75
    """Exponent of the weighting function."""
    lr: float = 0.5
    """AdaGrad learning rate. The reference's 0.05 is per co-occurrence entry; with a mini-batch's gradients summed
    per word, 0.5 fits WikiText-2 better (docs/embeddings.md)."""
    batch_size: int = 16384
    """Non-zero co-occurrence entries per update."""
    distance_weighting: bool = True
    """Count a pair d words apart as 1/d (Pennington et al.); false: every pair in the window counts 1."""
    device: str = "cpu"
    """Torch device for training: cpu | cuda | auto (cuda when available)."""


@dataclass
class EmbeddingsConfig:
    run: RunSection = field(default_factory=lambda: RunSection(name="embeddings"))
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    embeddings: EmbeddingsSection = field(default_factory=EmbeddingsSection)
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    glove: GloveConfig = field(default_factory=GloveConfig)


_POSITIVE = ("vocab.min_count", "embeddings.dim", "embeddings.window", "embeddings.epochs", "embeddings.workers",
             "word2vec.lr", "glove.x_max", "glove.alpha", "glove.lr", "glove.batch_size", "word2vec.negative")
_NON_NEGATIVE = ("word2vec.sample", "word2vec.min_lr", "data.min_chars")


def is_embeddings_config(path: str | Path) -> bool:
    """True for a YAML file with a top-level `embeddings:` section (a config of `plm embeddings train`)."""
    try:
        tree = read_yaml(path)
    except ConfigError:  # load_config, which reads it next, says what is wrong with it
        return False
    return isinstance(tree, dict) and "embeddings" in tree


def load_embeddings_config(path: str | Path | None = None,
                           overrides: list[str] | None = None) -> EmbeddingsConfig:
    """Load a static-embeddings config: dataclass defaults, then the YAML file, then `key.path=value` overrides.

    Raises:
        ConfigError: an unknown key, a wrong type or an out-of-range value, naming the key and the file.
    """
    schema, origin = layered_schema(EmbeddingsConfig, path, overrides,
                                    sections="run:, data:, vocab:, embeddings:, ...", docs="docs/embeddings.md")
    try:
        cfg: EmbeddingsConfig = OmegaConf.to_object(schema)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{getattr(e, 'full_key', '?')}: {str(e).splitlines()[0]} ({origin})") from None
    validate_embeddings_config(cfg, origin)
    return cfg


def validate_embeddings_config(cfg: EmbeddingsConfig, origin: str = "config") -> None:
    def get(dotted: str):
        value = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    for key, allowed in CHOICES.items():
        if key.startswith("data.") and get(key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {get(key)!r} ({origin})")
    if cfg.embeddings.method not in METHODS:
        raise ConfigError(f"embeddings.method must be one of {', '.join(METHODS)}; got {cfg.embeddings.method!r} "
                          f"({origin})")
    for key in _POSITIVE:
        if not get(key) > 0:
            raise ConfigError(f"{key} must be > 0; got {get(key)} ({origin})")
    for key in _NON_NEGATIVE:
        if get(key) < 0:
            raise ConfigError(f"{key} must be >= 0; got {get(key)} ({origin})")
    if cfg.vocab.max_vocab is not None and cfg.vocab.max_vocab <= 0:
        raise ConfigError(f"vocab.max_vocab must be > 0 or null; got {cfg.vocab.max_vocab} ({origin})")
    if not 0 <= cfg.data.validation_fraction < 1:
        raise ConfigError(f"data.validation_fraction must be in [0, 1); got {cfg.data.validation_fraction} ({origin})")
    if cfg.glove.device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"glove.device must be cpu, cuda or auto; got {cfg.glove.device!r} ({origin})")



def embeddings_to_yaml(cfg: EmbeddingsConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
