"""Context-free vs contextual: a static embedding gives a word one vector whatever the sentence ("bank" of a river
and "bank" of money are one point), while a transformer's hidden state for the word moves with its context.

    result = contrast("runs/mlm-bert-small/final", "runs/glove-300d", "bank", out="bank.png")
    result["contextual"]["within_sense"], result["contextual"]["across_sense"]
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from plmkit.embeddings.vectors import load_vectors, lookup
from plmkit.errors import PlmError

DEFAULT_CONTEXTS = [
    ("river", "We had a picnic on the grassy bank of the river."),
    ("river", "The boat drifted slowly towards the muddy bank of the stream."),
    ("river", "After the flood the water rose over the bank and into the fields."),
    ("money", "She deposited her salary at the bank on Monday morning."),
    ("money", "The bank approved the loan for their new house."),
    ("money", "He withdrew some cash from his account at the bank."),
]
"""(sense, sentence) pairs for the word "bank", used when no contexts are given."""


UNSPACED = re.compile("[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
"""Thai, kana and CJK ideographs: scripts written without spaces between words."""


def word_span(text: str, word: str) -> tuple[int, int]:
    """Character span of the first whole-word, case-insensitive occurrence of `word` in `text`; a word in a script
    written without spaces (Chinese, Japanese, Thai) is found anywhere, since no character marks its edges."""
    before, after = ("", "") if UNSPACED.search(word) else (r"(?<!\w)", r"(?!\w)")
    match = re.search(before + re.escape(word) + after, text, flags=re.IGNORECASE)
    if match is None:
        raise PlmError(f"the context {text!r} does not contain the word {word!r}; every --context must hold it")
    return match.span()


def _load_encoder(model_dir: str | Path):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from plmkit.tokenization import load_tokenizer

    hf_logging.set_verbosity_error()  # a masked-LM folder loaded without its head warns about unused weights
    hf_logging.disable_progress_bar()
    try:
        tokenizer = load_tokenizer(str(model_dir), source="--model")
        model = AutoModel.from_pretrained(str(model_dir))
    except (OSError, ValueError, PlmError) as e:
        raise PlmError(f"{model_dir}: not a transformer model folder ({str(e).splitlines()[0]}); give --model a "
                       "final/ folder of `plm pretrain` or `plm finetune`, or a hub id") from None
    if not getattr(tokenizer, "is_fast", False):
        raise PlmError(f"{model_dir}: the tokenizer has no character offsets (not a fast tokenizer)")
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return tokenizer, model.eval()


def contextual_vectors(model_dir: str | Path, word: str, contexts: list[str], layer: int = -1
                       ) -> tuple[np.ndarray, list[list[str]]]:
    """The hidden state of `word` in each context at `layer` (mean over its sub-word tokens).

    Returns:
        ((contexts, hidden) float32 array, the sub-word tokens that made up the word in each context).
    """
    import torch

    tokenizer, model = _load_encoder(model_dir)
    vectors, pieces = [], []
    for text in contexts:
        start, end = word_span(text, word)
        enc = tokenizer(text, return_offsets_mapping=True, return_tensors="pt", truncation=True)
        offsets = enc.pop("offset_mapping")[0].tolist()
        picked = [k for k, (s, e) in enumerate(offsets) if e > s and e > start and s < end]
        if not picked:
            raise PlmError(f"no token of {text!r} covers {word!r} (truncated?)")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        if not -len(hidden) <= layer < len(hidden):
            raise PlmError(f"--layer {layer}: the model has hidden states 0..{len(hidden) - 1} (-1: the last)")
        vectors.append(hidden[layer][0, picked].float().mean(0).numpy())
        pieces.append(tokenizer.convert_ids_to_tokens(enc["input_ids"][0, picked].tolist()))
    return np.stack(vectors), pieces


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def _pair_means(cos: np.ndarray, senses: list[str] | None) -> dict:
    n = len(cos)
    off = ~np.eye(n, dtype=bool)
    out = {"mean_cosine": round(float(cos[off].mean()), 4), "min_cosine": round(float(cos[off].min()), 4)}
    if senses is not None and len(set(senses)) > 1:
        same = np.array([[a == b for b in senses] for a in senses]) & off
        across = ~same & off
        if same.any():
            out["within_sense"] = round(float(cos[same].mean()), 4)
        out["across_sense"] = round(float(cos[across].mean()), 4)
    return out


def contrast(model_dir: str | Path, vectors_dir: str | Path, word: str = "bank", contexts: list[str] | None = None,
             *, senses: list[str] | None = None, layer: int = -1, out: str | Path | None = None,
             neighbors: int = 8) -> dict:
    """Compare `word`'s static vector (one for every context) with its contextual vectors in `contexts`.

    Returns:
        word, contexts (text, sense, sub-word tokens), static (the same vector in every context: cosine 1.0
        between any two; its nearest neighbours), contextual (the cosine matrix, mean / min off-diagonal,
        within- and across-sense means when senses are given), plot (the PNG written, when `out` is set).
    """
    if contexts is None:
        if word.lower() != "bank" or senses is not None:
            raise PlmError("give the sentences with --context (the built-in examples are for the word 'bank')")
        senses, contexts = [s for s, _ in DEFAULT_CONTEXTS], [t for _, t in DEFAULT_CONTEXTS]
    if len(contexts) < 2:
        raise PlmError(f"give at least two contexts to compare; got {len(contexts)}")
    if senses is not None and len(senses) != len(contexts):
        raise PlmError(f"give one --sense per --context: {len(senses)} senses for {len(contexts)} contexts")
    for text in contexts:
        word_span(text, word)  # every context holds the word: fail before loading anything
    kv, vocab = load_vectors(vectors_dir)
    key = lookup(kv, vocab, word, vectors_dir)
    static = np.asarray(kv[key], dtype=np.float32)
    vectors, pieces = contextual_vectors(model_dir, word, contexts, layer)
    cos = cosine_matrix(vectors)
    static_cos = cosine_matrix(np.stack([static] * len(contexts)))  # one vector: 1.0 everywhere
    result = {
        "word": key, "model": str(model_dir), "vectors": str(vectors_dir), "layer": layer,
        "contexts": [{"text": t, "sense": s, "tokens": p}
                     for t, s, p in zip(contexts, senses or [None] * len(contexts), pieces)],
        "static": {"dim": len(static), **_pair_means(static_cos, senses),
                   "neighbors": [[w, round(float(s), 4)] for w, s in kv.most_similar(key, topn=neighbors)]},
        "contextual": {"dim": vectors.shape[1], **_pair_means(cos, senses),
                       "cosine": [[round(float(v), 4) for v in row] for row in cos]},
    }
    if out is not None:
        result["plot"] = str(plot_contrast(result, kv, static, vectors, Path(out), vocab))
    return result


def _project(points: np.ndarray) -> np.ndarray:
    """2-D PCA coordinates of the rows of `points`."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _short(path: str) -> str:
    """A model or vectors folder for a title: its name, with the parent's when the name is generic (final, model)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name in ("final", "model", "run") and p.parent.name else p.name


def plot_contrast(result: dict, kv, static: np.ndarray, contextual: np.ndarray, path: Path, vocab=None) -> Path:
    """Three panels: the static space around the word (one point for all contexts), the contextual vectors of the
    word (one point per context, 2-D PCA) and their cosine similarities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    word, contexts = result["word"], result["contexts"]
    senses = [c["sense"] or f"context {i + 1}" for i, c in enumerate(contexts)]
    palette = plt.get_cmap("tab10")
    colour = {s: palette(i % 10) for i, s in enumerate(dict.fromkeys(senses))}
    frequent = set(vocab.words[:100]) if vocab is not None else set()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5 + 0.2 * len(contexts)), dpi=110)

    # static: the word, its neighbours and the (less frequent) words of the contexts, in the static space
    labels, points, colours = [word], [static], ["black"]
    for w, _ in result["static"]["neighbors"]:
        labels.append(w), points.append(kv[w]), colours.append("grey")
    for c, sense in zip(contexts, senses):
        for w in re.findall(r"\w+", c["text"].lower() if (vocab is None or vocab.lowercase) else c["text"]):
            if w in kv.key_to_index and w not in labels and w not in frequent and len(labels) < 30:
                labels.append(w), points.append(kv[w]), colours.append(colour[sense])
    coords = _project(np.stack(points))
    ax = axes[0]
    ax.scatter(coords[1:, 0], coords[1:, 1], c=colours[1:], s=25)
    ax.scatter(coords[0, 0], coords[0, 1], marker="*", s=320, c="black", zorder=3)
    for (x, y), label in zip(coords[1:], labels[1:]):
        ax.annotate(label, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.annotate(f"{word} (all {len(contexts)} contexts)", coords[0], fontsize=9, weight="bold",
                xytext=(6, -12), textcoords="offset points")
    ax.set_title(f"static ({_short(result['vectors'])}): one point for '{word}'\nneighbours grey, context words "
                 "coloured by sense", fontsize=10)

    # contextual: one point per context
    coords = _project(contextual)
    ax = axes[1]
    for i, ((x, y), sense) in enumerate(zip(coords, senses)):
        ax.scatter(x, y, color=colour[sense], s=70, label=sense if senses.index(sense) == i else None)
        ax.annotate(str(i + 1), (x, y), fontsize=10, xytext=(5, 4), textcoords="offset points")
    ax.margins(0.15)
    ax.set_title(f"contextual: '{word}' in each context\n({_short(result['model'])}, layer {result['layer']}; "
                 "2-D PCA)", fontsize=10)
    if any(c["sense"] for c in contexts):
        ax.legend(fontsize=8)

    # cosine similarities between the contextual vectors
    cos = np.array(result["contextual"]["cosine"])
    ax = axes[2]
    image = ax.imshow(cos, vmin=min(0.0, float(cos.min())), vmax=1.0, cmap="viridis")
    ticks = [f"{i + 1} ({s})" if contexts[i]["sense"] else str(i + 1) for i, s in enumerate(senses)]
    ax.set_xticks(range(len(cos)), ticks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cos)), ticks, fontsize=8)
    for (r, c), v in np.ndenumerate(cos):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_title("cosine between the contexts\ncontextual (static: 1.00 everywhere)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    listing = [f"{i + 1} ({c['sense']}): {c['text']}" if c["sense"] else f"{i + 1}: {c['text']}"
               for i, c in enumerate(contexts)]
    fig.tight_layout(rect=(0, 0.035 * len(listing), 1, 1))
    fig.text(0.01, 0.01, "\n".join(listing), fontsize=8, va="bottom", family="monospace")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
