"""`plm embeddings train`: the training documents of a pre-training data section (read, cleaned and split exactly
as `plm pretrain` does) -> words -> vocabulary -> Word2Vec or GloVe -> OUT/vectors.txt.

    cfg = load_embeddings_config("configs/embeddings/word2vec-sgns.yaml"); out, results = train_embeddings(cfg)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from plmkit.data import load_corpus
from plmkit.embeddings.config import EmbeddingsConfig, embeddings_to_yaml
from plmkit.embeddings.vectors import VECTORS, VOCAB, write_vectors
from plmkit.errors import PlmError
from plmkit.tokenization.vocab import build_vocab, split_words
from plmkit.training.logging import progress_bar, stderr

WRITTEN = (VECTORS, VOCAB, "config.yaml", "results.json", "metrics.jsonl", "loss.png")


def train_embeddings(cfg: EmbeddingsConfig, *, overwrite: bool = False, show_progress: bool = True
                     ) -> tuple[Path, dict]:
    """Train static word vectors as `cfg` says; returns (the output folder, the figures of results.json).

    Writes OUT/vectors.txt (word2vec text format), vocab.json, config.yaml (resolved), metrics.jsonl (a row per
    epoch), loss.png and results.json.

    Raises:
        PlmError: OUT already holds vectors (pass overwrite), or the corpus yields no vocabulary.
    """
    out = Path(cfg.run.output_dir)
    if out.exists() and not out.is_dir():
        raise PlmError(f"{out} is a file; give --out (run.output_dir) a folder")
    if (out / VECTORS).exists() and not overwrite:
        raise PlmError(f"{out} already holds {VECTORS}; pass --overwrite to replace it or --out another folder")
    if cfg.embeddings.method == "glove" and cfg.glove.device == "cuda":  # here, not in the config: it may be for
        import torch  # another machine

        if not torch.cuda.is_available():
            raise PlmError("glove.device is cuda, but torch sees no CUDA device on this machine; use cpu or auto")
    started = time.time()
    corpus = load_corpus(cfg.data, cfg.run.seed)
    tokenized = [split_words(doc, cfg.vocab.lowercase) for doc in corpus.train]
    vocab = build_vocab(tokenized, lowercase=cfg.vocab.lowercase, min_count=cfg.vocab.min_count,
                        max_vocab=cfg.vocab.max_vocab)
    total_words = sum(map(len, tokenized))
    method, e = cfg.embeddings.method, cfg.embeddings
    stderr.print(f"{method}: {len(corpus.train):,} training documents, {total_words:,} words, vocabulary "
                 f"{len(vocab):,} (min_count {cfg.vocab.min_count}); dim {e.dim}, window {e.window}, "
                 f"{e.epochs} epochs")
    results: dict = {"method": method, "output_dir": str(out), "vocab_size": len(vocab), "dim": e.dim,
                     "window": e.window, "epochs": e.epochs, "train_documents": len(corpus.train),
                     "train_words": total_words, "train_words_in_vocab": int(sum(vocab.counts))}
    rows: list[dict] = []
    with progress_bar(show_progress, label=method) as progress:
        bar = progress.add_task("epochs", total=e.epochs, status="")

        def on_epoch(row: dict) -> None:
            rows.append(row)
            progress.update(bar, advance=1, status=f"loss {row['loss']:.4g}  {row['seconds']:.0f} s/epoch")

        train_started = time.time()
        if method == "word2vec":
            from plmkit.embeddings.word2vec import train_word2vec

            sentences = [[w for w in doc if w in vocab.index] for doc in tokenized]
            kv, _ = train_word2vec(sentences, vocab, cfg, on_epoch=on_epoch)
            vectors = np.stack([kv[w] for w in vocab.words])
        else:
            vectors, extra = _train_glove(cfg, vocab, tokenized, on_epoch)
            results.update(extra)
    results["train_seconds"] = round(time.time() - train_started, 1)
    out.mkdir(parents=True, exist_ok=True)  # an earlier run's files go only now: a failed or stopped one keeps them
    for name in WRITTEN:
        (out / name).unlink(missing_ok=True)
    (out / "config.yaml").write_text(embeddings_to_yaml(cfg), encoding="utf-8")
    write_vectors(out / VECTORS, vocab.words, vectors)
    vocab.save(out / VOCAB)
    with (out / "metrics.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    results.update({"final_loss": rows[-1]["loss"] if rows else None, "corpus": corpus.report.to_dict(),
                    "seconds": round(time.time() - started, 1)})
    plot_loss(rows, out / "loss.png", method)
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    stderr.print(f"{len(vocab):,} vectors of dimension {e.dim} in {out / VECTORS} ({results['seconds']:.0f} s)")
    return out, results


def _train_glove(cfg: EmbeddingsConfig, vocab, tokenized: list[list[str]], on_epoch) -> tuple[np.ndarray, dict]:
    import torch

    from plmkit.embeddings.glove import cooccurrence, fit_glove

    g = cfg.glove
    started = time.time()
    rows, cols, values = cooccurrence([vocab.ids(doc) for doc in tokenized], len(vocab), cfg.embeddings.window,
                                      distance_weighting=g.distance_weighting)
    counting = round(time.time() - started, 1)
    stderr.print(f"glove: {len(values):,} non-zero co-occurrence counts ({len(values) / len(vocab) ** 2:.2%} of "
                 f"the matrix) in {counting} s")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.embeddings.workers)
    try:
        vectors, _ = fit_glove(rows, cols, values, len(vocab), dim=cfg.embeddings.dim, epochs=cfg.embeddings.epochs,
                               lr=g.lr, x_max=g.x_max, alpha=g.alpha, batch_size=g.batch_size, seed=cfg.run.seed,
                               device=g.device,
                               on_epoch=lambda epoch, loss, secs: on_epoch(
                                   {"epoch": epoch, "loss": loss, "seconds": round(secs, 2)}))
    finally:
        torch.set_num_threads(threads)
    return vectors, {"cooccurrence_nonzeros": len(values), "cooccurrence_seconds": counting}


def plot_loss(rows: list[dict], path: Path, method: str) -> Path | None:
    """loss.png: the training loss of every epoch (GloVe: the weighted least-squares cost per non-zero count;
    Word2Vec: gensim's summed negative-sampling loss of the epoch)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], "o-")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean weighted squared error" if method == "glove" else "loss (gensim, summed over the epoch)")
    ax.set_title(f"{method}: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
