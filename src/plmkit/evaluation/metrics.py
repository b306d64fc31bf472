"""Task metrics: accuracy / F1 (classification), micro / macro / grouped F1 (multi-label, HoC), entity-level
F1 (NER, seqeval, conlleval-compatible), and a confusion-matrix plot. Pure functions on predictions; numbers
come back as plain, unrounded Python floats and ints, so the result dicts go straight into JSON.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_THRESHOLD_GRID: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator as a float, 0.0 when the denominator is 0 (like sklearn's zero_division=0)."""
    return float(numerator) / float(denominator) if denominator else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    """F1 = 2TP / (2TP + FP + FN): one division of integers, so equal F1s compare equal exactly."""
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _as_ids(values: Sequence[int], num_labels: int, name: str) -> np.ndarray:
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of label ids; got an array of shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label ids; got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    bad = (ids < 0) | (ids >= num_labels)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{first}] = {int(ids[first])} is not a label id in [0, {num_labels}); "
                         "pass one name per id in labels (or the right num_labels)")
    return ids


def confusion_matrix(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> np.ndarray:
    """Count (reference, prediction) pairs.

    Args:
        predictions: predicted label ids, one per example.
        references: gold label ids, same length.
        num_labels: L; every id must lie in [0, L).

    Returns:
        An int64 array of shape (L, L): rows are reference labels, columns predicted labels.

    Raises:
        ValueError: lengths differ, or an id is out of range.
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1; got {num_labels}")
    pred = _as_ids(predictions, num_labels, "predictions")
    ref = _as_ids(references, num_labels, "references")
    if len(pred) != len(ref):
        raise ValueError(f"got {len(pred)} predictions but {len(ref)} references; pass one per example")
    counts = np.bincount(ref * num_labels + pred, minlength=num_labels * num_labels)
    return counts.reshape(num_labels, num_labels).astype(np.int64)  # (L, L)


def classification_metrics(predictions: Sequence[int], references: Sequence[int],
                           labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-label precision / recall / F1 for single-label classification.

    Precision, recall or F1 with a zero denominator count as 0.0 (like sklearn's ``zero_division=0``, but
    nothing warns). Macro-F1 averages over the labels that occur in the references or the predictions: a label
    that appears in neither has no defined F1 and would only drag the mean down. Such labels still appear in
    ``per_label`` (all zeros, support 0) so the keys are the same on every run.

    Args:
        predictions: predicted label ids, one per example.
        references: gold label ids, same length, not empty.
        labels: ``labels[i]`` names id ``i``; names must be unique.

    Returns:
        ``{"accuracy": float, "macro_f1": float, "per_label": {name: {"precision", "recall", "f1",
        "support"}}}``; support (an int) is the number of references with that label. Floats are unrounded.

    Raises:
        ValueError: lengths differ, the input is empty, an id has no name, or two labels share a name.
    """
    names = [str(label) for label in labels]
    if len(set(names)) != len(names):
        raise ValueError(f"labels must be unique names (labels[i] names id i); got {names}")
    if len(references) == 0:
        raise ValueError("no examples: accuracy is undefined for an empty evaluation set")
    matrix = confusion_matrix(predictions, references, len(names))
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)  # (L,) references per label
    predicted = matrix.sum(axis=0)  # (L,) predictions per label
    per_label = {}
    for i, name in enumerate(names):
        t, s, p = int(tp[i]), int(support[i]), int(predicted[i])
        per_label[name] = {"precision": _ratio(t, p), "recall": _ratio(t, s), "f1": _f1(t, p - t, s - t),
                           "support": s}
    present = [name for i, name in enumerate(names) if support[i] or predicted[i]]
    return {
        "accuracy": _ratio(int(tp.sum()), int(matrix.sum())),
        "macro_f1": float(np.mean([per_label[name]["f1"] for name in present])),
        "per_label": per_label,
    }


# Families that draw CJK labels, tried first (sans before serif, to sit well next to DejaVu Sans); after them
# every other font matplotlib knows is tried by its character map.
_CJK_FONT_HINTS: tuple[str, ...] = ("noto sans cjk", "source han sans", "wenquanyi", "microsoft yahei", "simhei",
                                    "pingfang", "hiragino sans", "droid sans fallback", "noto sans sc",
                                    "noto sans tc", "noto serif cjk", "source han serif", "ar pl", "simsun")
# Fonts with a glyph for every code point that is only a box naming its Unicode block: tofu by design.
_PLACEHOLDER_FONTS: tuple[str, ...] = ("last resort",)
_GLYPH_WARNING = r"Glyph \d+ .*missing from"  # matplotlib's UserWarning when a font lacks a character


def _codes(text: str) -> frozenset[int]:
    """The code points a font must have to draw text (spaces and line breaks need no glyph)."""
    return frozenset(ord(ch) for ch in text if not ch.isspace())


def _read_charmap(path: str) -> frozenset[int]:
    """The code points the font file at path has glyphs for; empty when the file cannot be read."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


_charmap = functools.lru_cache(maxsize=8)(_read_charmap)  # for the default font; a scan reads each font once


def _default_font() -> str:
    """The file matplotlib draws plain text with (the first match of rcParams' font.family)."""
    from matplotlib import font_manager

    return font_manager.findfont(font_manager.FontProperties())


def _font_rank(entry) -> tuple[int, bool, int]:
    from matplotlib import font_manager

    name = entry.name.lower()
    hint = next((i for i, h in enumerate(_CJK_FONT_HINTS) if h in name), len(_CJK_FONT_HINTS))
    weight = entry.weight if isinstance(entry.weight, int) else font_manager.weight_dict.get(entry.weight, 400)
    return hint, entry.style != "normal", abs(weight - 400)  # known CJK families, then upright, regular weight


@functools.lru_cache(maxsize=32)
def _font_with(codes: frozenset[int], default: str, num_fonts: int) -> str | None:
    """font_covering's search; default and num_fonts key the cache, so new defaults or fonts are seen."""
    from matplotlib import font_manager

    if codes <= _charmap(default):
        return default
    entries = sorted((e for e in font_manager.fontManager.ttflist
                      if not any(p in e.name.lower() for p in _PLACEHOLDER_FONTS)), key=_font_rank)
    for entry in entries:  # about 0.2 s for 70 fonts, once per distinct character set (the answer is cached)
        if codes <= _read_charmap(entry.fname):
            return entry.fname
    return None


def font_covering(text: str) -> str | None:
    """A font file, among those matplotlib knows, with a glyph for every character of text.

    matplotlib's default font when it suffices; otherwise known CJK families first (Noto Sans CJK, Source Han,
    WenQuanYi, Microsoft YaHei, SimHei, ...), then any other font whose character map has every character.
    Placeholder fonts (Last Resort: a box for every code point) never count. The answer is cached per
    character set, default font and number of known fonts.

    Args:
        text: the characters to draw (spaces need no glyph).

    Returns:
        The path of the font file, or None when no known font draws them all. A font installed after
        matplotlib built its font cache is found only once that cache is rebuilt.
    """
    from matplotlib import font_manager

    return _font_with(_codes(text), _default_font(), len(font_manager.fontManager.ttflist))


def _escape_missing(text: str, charmap: frozenset[int]) -> str:
    r"""text with each character the font lacks written as its \u escape, so that nothing is drawn as tofu."""
    return "".join(ch if ch.isspace() or ord(ch) in charmap else ascii(ch)[1:-1] for ch in text)


def _rows_of(entries: list[str], width: int) -> str:
    """Join entries with wide gaps into lines of about width characters (no entry is split)."""
    lines: list[str] = []
    for entry in entries:
        if lines and len(lines[-1]) + 3 + len(entry) <= width:
            lines[-1] += "   " + entry
        else:
            lines.append(entry)
    return "\n".join(lines)


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], title: str = ""):
    """The confusion-matrix figure that :func:`plot_confusion_matrix` saves (a matplotlib ``Figure``).

    Label names that matplotlib's default font draws (e.g. Latin) are drawn with it, exactly as always. Names
    it cannot draw (e.g. Chinese, on a machine without a CJK font for the default) are drawn with a font that
    has every glyph (see :func:`font_covering`). When no installed font has them, the axes show the label ids
    (0, 1, ...), and a caption under the plot maps each id to its name, with the characters no font draws
    written as ``\\u`` escapes, and says where the names are in full: ``plm evaluate`` writes them, in id
    order, as ``confusion_labels`` in its eval JSON. The title gets the same treatment.

    Args:
        matrix: (L, L) counts, rows = reference, columns = prediction (as from :func:`confusion_matrix`).
        labels: L names, in id order.
        title: optional title above the plot.

    Returns:
        A ``matplotlib.figure.Figure`` on an Agg canvas, not yet drawn.

    Raises:
        ValueError: the matrix is not square or does not match the number of labels.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    counts = np.asarray(matrix)
    n = len(labels)
    if counts.ndim != 2 or counts.shape != (n, n):
        raise ValueError(f"matrix must be (L, L) with L = len(labels) = {n}; got shape {counts.shape}")
    row_sums = counts.sum(axis=1, keepdims=True)  # (L, 1)
    shares = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)  # (L, L)

    names = [str(label) for label in labels]
    default_map = _charmap(_default_font())
    needs_font = not _codes("".join(names)) <= default_map
    label_font = font_covering("".join(names)) if needs_font else None  # None: the default font, as always
    by_id = needs_font and label_font is None
    title_font = font_covering(title) if title and not _codes(title) <= default_map else None

    side = min(max(4.0, 0.55 * n + 2.5), 14.0)  # inches
    font = 10 if n <= 8 else 8
    fig = Figure(figsize=(side + 1.2, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of reference row")
    for r in range(n):
        for c in range(n):
            ax.text(c, r, str(int(counts[r, c])), ha="center", va="center", fontsize=font,
                    color="white" if shares[r, c] > 0.5 else "black")
    ticks = np.arange(n)
    tick_texts = [str(i) for i in range(n)] if by_id else names
    extra = {"fontproperties": FontProperties(fname=label_font, size=font)} if label_font else {}
    rotate = n > 6 or max((len(text) for text in tick_texts), default=0) > 8
    ax.set_xticks(ticks, tick_texts, fontsize=font, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor", **extra)
    ax.set_yticks(ticks, tick_texts, fontsize=font, **extra)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    if by_id:
        mapping = _rows_of([f"{i} = {_escape_missing(name, default_map)}" for i, name in enumerate(names)], 90)
        note = ("The axes show label ids: no installed font draws every label name (\\u escapes stand in above).\n"
                "plm evaluate lists the names in id order as confusion_labels in its eval JSON.")
        ax.annotate(f"{mapping}\n{note}", xy=(0.5, 0.0), xycoords=ax.xaxis.label, xytext=(0, -8),
                    textcoords="offset points", ha="center", va="top", fontsize=8)
    if title:
        if title_font:
            size = matplotlib.rcParams["axes.titlesize"]  # what set_title uses without fontproperties
            ax.set_title(title, fontproperties=FontProperties(fname=title_font, size=size))
        elif not _codes(title) <= default_map:
            ax.set_title(_escape_missing(title, default_map))
        else:
            ax.set_title(title)
    return fig


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path,
                          title: str = "") -> Path:
    """Draw a confusion matrix as a PNG: counts in the cells, colour by share of the reference row.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it is safe in headless
    runs. The figure grows with the number of labels; it stays readable from about 2 to 20 labels. Label
    names the default font cannot draw (e.g. Chinese) use an installed font that can, or else the axes show
    label ids with a caption mapping id -> name (see :func:`confusion_figure`); no missing-glyph warning
    reaches the console.

    Args:
        matrix: (L, L) counts, rows = reference, columns = prediction (as from :func:`confusion_matrix`).
        labels: L names, in id order.
        path: where to write the PNG; missing parent folders are created.
        title: optional title above the plot.

    Returns:
        The path written, as a ``Path``.

    Raises:
        ValueError: the matrix is not square or does not match the number of labels.
    """
    out = Path(path)
    with warnings.catch_warnings():  # a safety net: confusion_figure already draws only glyphs its fonts have
        warnings.filterwarnings("ignore", message=_GLYPH_WARNING, category=UserWarning)
        fig = confusion_figure(matrix, labels, title)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=120, bbox_inches="tight")  # keeps long tick labels in frame
    return out


def _check_multilabel(probabilities: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probabilities, dtype=float)
    refs = np.asarray(references)
    if probs.ndim != 2 or probs.shape != refs.shape:
        raise ValueError(f"probabilities and references must both be (N, L); got {probs.shape} and "
                         f"{refs.shape}")
    if np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must lie in [0, 1] (apply a sigmoid to the logits first)")
    if not np.isin(refs, (0, 1)).all():
        raise ValueError("references must be a 0/1 indicator matrix (N, L)")
    return probs, refs.astype(bool)


def _group_union(rows: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """OR together the rows of each group: (N, L) bool -> (G, L) bool, groups in order of first appearance."""
    if len(groups) != len(rows):
        raise ValueError(f"groups must name one group per row; got {len(groups)} groups for {len(rows)} rows")
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(g, len(index)) for g in groups], dtype=np.int64)  # (N,)
    union = np.zeros((len(index), rows.shape[1]), dtype=bool)  # (G, L)
    np.logical_or.at(union, ids, rows)
    return union


def _micro_f1(pred: np.ndarray, ref: np.ndarray) -> float:
    tp = int((pred & ref).sum())
    return _f1(tp, int(pred.sum()) - tp, int(ref.sum()) - tp)


def multilabel_metrics(probabilities: np.ndarray, references: np.ndarray, threshold: float = 0.5,
                       groups: Sequence[str] | None = None) -> dict:
    """Micro- and macro-F1 for multi-label classification, optionally also pooled per group (HoC abstracts).

    A label is predicted when its probability is ``>= threshold``. Micro-F1 pools every (row, label) cell.
    Macro-F1 averages per-label F1 over the labels that occur in the references or the predictions (as in
    :func:`classification_metrics`); 0.0 when no label occurs anywhere.

    With ``groups`` (e.g. the abstract id of each HoC sentence), each group's predicted label set is the union
    of its rows' predicted sets and its reference set the union of its rows' reference sets;
    ``grouped_micro_f1`` is micro-F1 over those (group, label) cells, the abstract-level HoC score. (Other
    published HoC scorers average differently, e.g. BLUE's eval_hoc.py is example-based; compare numbers only
    with the same scorer.)

    Args:
        probabilities: (N, L) probabilities in [0, 1].
        references: (N, L) 0/1 gold indicators.
        threshold: decision threshold in [0, 1].
        groups: optional group name per row (length N).

    Returns:
        ``{"micro_f1", "macro_f1", "threshold"}`` as floats, plus ``"grouped_micro_f1"`` when groups are
        given.

    Raises:
        ValueError: shapes differ, values are out of range, or groups has the wrong length.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold}")
    probs, ref = _check_multilabel(probabilities, references)
    pred = probs >= threshold  # (N, L)
    tp = (pred & ref).sum(axis=0)  # (L,)
    n_pred, n_ref = pred.sum(axis=0), ref.sum(axis=0)  # (L,)
    per_label = [_f1(int(t), int(p - t), int(r - t)) for t, p, r in zip(tp, n_pred, n_ref, strict=True)]
    present = [f for f, p, r in zip(per_label, n_pred, n_ref, strict=True) if p or r]
    result = {
        "micro_f1": _micro_f1(pred, ref),
        "macro_f1": float(np.mean(present)) if present else 0.0,
        "threshold": float(threshold),
    }
    if groups is not None:
        result["grouped_micro_f1"] = _micro_f1(_group_union(pred, groups), _group_union(ref, groups))
    return result


def tune_threshold(probabilities: np.ndarray, references: np.ndarray, groups: Sequence[str] | None = None,
                   grid: Sequence[float] = DEFAULT_THRESHOLD_GRID) -> float:
    """The threshold from ``grid`` that maximises micro-F1 (``grouped_micro_f1`` when groups are given).

    Tune on validation data, then report :func:`multilabel_metrics` on test data at the returned threshold.
    Ties go to the grid value closest to 0.5 (the smaller one if two are equally close).

    Args:
        probabilities: (N, L) probabilities in [0, 1].
        references: (N, L) 0/1 gold indicators.
        groups: optional group name per row; then the grouped score is maximised.
        grid: candidate thresholds in [0, 1]; default 0.05, 0.10, ..., 0.95.

    Returns:
        The chosen threshold as a float.

    Raises:
        ValueError: the grid is empty, or the inputs are invalid (see :func:`multilabel_metrics`).
    """
    candidates = [float(t) for t in grid]
    if not candidates:
        raise ValueError("grid must hold at least one threshold")
    key = "micro_f1" if groups is None else "grouped_micro_f1"
    scores = [multilabel_metrics(probabilities, references, t, groups)[key] for t in candidates]
    best = max(scores)
    tied = [t for t, s in zip(candidates, scores, strict=True) if s == best]
    return min(tied, key=lambda t: (abs(t - 0.5), t))


def _check_tags(sentences: Sequence[Sequence[str]], name: str) -> None:
    for i, sentence in enumerate(sentences):
        for j, tag in enumerate(sentence):
            if tag != "O" and not (isinstance(tag, str) and tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise ValueError(f"{name}[{i}][{j}] = {tag!r} is not an IOB2 tag; "
                                 "use 'O', 'B-TYPE' or 'I-TYPE'")


def ner_metrics(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict:
    """Entity-level precision, recall and F1 with seqeval in its default, conlleval-compatible mode.

    Tags are IOB2 strings (``O``, ``B-TYPE``, ``I-TYPE``). As in conlleval, an ``I-`` tag that does not
    continue an entity of its type starts a new one. An entity counts only if its type and both boundaries
    match. Undefined ratios are 0.0 (seqeval's ``zero_division=0``, so nothing warns); a type that is only
    predicted still appears in ``per_type`` with support 0.

    Args:
        predictions: predicted tags, one list per sentence.
        references: gold tags, with the same sentence count and the same length for every sentence.

    Returns:
        ``{"f1", "precision", "recall", "per_type": {TYPE: {"precision", "recall", "f1", "support"}}}``:
        micro-averaged floats (unrounded); support is the number of gold entities of that type. All zeros and
        an empty ``per_type`` when there are no entities at all.

    Raises:
        ValueError: sentence counts differ, a sentence's lengths differ (naming the first such index), or a
            tag is not IOB2.
    """
    from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predicted sentences but {len(references)} reference "
                         "sentences")
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        if len(pred) != len(ref):
            raise ValueError(f"sentence {i}: {len(pred)} predicted tags but {len(ref)} reference tags; "
                             "predict exactly one tag per word")
    _check_tags(predictions, "predictions")
    _check_tags(references, "references")
    pred = [list(sentence) for sentence in predictions]  # seqeval needs lists, not tuples
    ref = [list(sentence) for sentence in references]

    types = sorted({entity[0] for entity in get_entities(ref) + get_entities(pred)})
    if not types:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}}
    p, r, f, _ = precision_recall_fscore_support(ref, pred, average="micro", zero_division=0)
    ps, rs, fs, supports = precision_recall_fscore_support(ref, pred, average=None, zero_division=0)
    # seqeval orders per-type rows by sorted entity type, the same order as `types`
    per_type = {t: {"precision": float(tp), "recall": float(tr), "f1": float(tf), "support": int(ts)}
                for t, tp, tr, tf, ts in zip(types, ps, rs, fs, supports, strict=True)}
    return {"f1": float(f), "precision": float(p), "recall": float(r), "per_type": per_type}
