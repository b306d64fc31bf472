"""`plm embeddings contrast` on a tiny random BERT and tiny GloVe vectors: one static vector for every context,
contextual vectors that differ, the plot, and the errors for bad contexts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plmkit import api
from plmkit.embeddings import load_embeddings_config
from plmkit.embeddings.contrast import DEFAULT_CONTEXTS, contextual_vectors, word_span
from plmkit.errors import PlmError

ROOT = Path(__file__).resolve().parents[3]
CONTEXTS = ["Wrap the text into lines of the given width.", "The TEXT is a string.",
            "Return the text unchanged, with its whitespace."]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("glove") / "run"
    cfg = load_embeddings_config(ROOT / "configs/embeddings/debug-glove.yaml",
                                 [f"run.output_dir={out}", f"data.paths=[{ROOT / 'tests/fixtures/tiny.txt'}]"])
    api.train_embeddings(cfg, show_progress=False)
    return out


def test_static_is_one_point_and_contextual_vectors_differ(tiny_encoder, vectors, tmp_path):
    png = tmp_path / "plot" / "text.png"
    result = api.contrast_embeddings(tiny_encoder, vectors, "text", CONTEXTS, senses=["a", "a", "b"], out=png)
    assert result["word"] == "text" and [c["text"] for c in result["contexts"]] == CONTEXTS
    assert result["static"]["mean_cosine"] == result["static"]["min_cosine"] == 1.0
    assert result["static"]["within_sense"] == result["static"]["across_sense"] == 1.0
    assert len(result["static"]["neighbors"]) == 8 and result["static"]["dim"] == 16
    cos = np.array(result["contextual"]["cosine"])
    assert cos.shape == (3, 3) and result["contextual"]["dim"] == 32
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-3)
    np.testing.assert_allclose(cos, cos.T)
    assert result["contextual"]["min_cosine"] < 0.999  # the same word, other sentences: other vectors
    assert result["contextual"]["within_sense"] == pytest.approx(cos[0, 1], abs=1e-4)
    assert result["contextual"]["across_sense"] == pytest.approx((cos[0, 2] + cos[1, 2]) / 2, abs=1e-4)
    assert all(c["tokens"] for c in result["contexts"])
    assert result["plot"] == str(png) and png.stat().st_size > 10_000


def test_contextual_vector_is_the_mean_over_the_word_pieces(tiny_encoder):
    vecs, pieces = contextual_vectors(tiny_encoder, "whitespace", ["Strip the whitespace here.",
                                                                   "whitespace again"], layer=0)
    assert vecs.shape == (2, 32)
    assert "".join(p.removeprefix("##") for p in pieces[0]) == "whitespace"
    # layer 0 is the input embeddings: the same pieces at another position differ only by position embeddings
    assert not np.allclose(vecs[0], vecs[1])


def test_default_contexts_are_for_bank():
    assert {s for s, _ in DEFAULT_CONTEXTS} == {"river", "money"}
    assert all(word_span(text, "bank") for _, text in DEFAULT_CONTEXTS)


def test_bad_input_is_a_clear_error(tiny_encoder, vectors):
    with pytest.raises(PlmError, match="does not contain the word 'text'"):
        api.contrast_embeddings(tiny_encoder, vectors, "text", ["no such word here", "the text"])
    with pytest.raises(PlmError, match="at least two contexts"):
        api.contrast_embeddings(tiny_encoder, vectors, "text", ["the text"])
    with pytest.raises(PlmError, match="one --sense per --context"):
        api.contrast_embeddings(tiny_encoder, vectors, "text", CONTEXTS, senses=["a"])
    with pytest.raises(PlmError, match="the built-in examples are for the word 'bank'"):
        api.contrast_embeddings(tiny_encoder, vectors, "text")
    with pytest.raises(PlmError, match="'bank' is not in the vocabulary"):
        api.contrast_embeddings(tiny_encoder, vectors)  # the tiny corpus never mentions banks
    with pytest.raises(PlmError, match="--layer 9: the model has hidden states 0..2"):
        api.contrast_embeddings(tiny_encoder, vectors, "text", CONTEXTS, layer=9)
    with pytest.raises(PlmError, match="not a transformer model folder"):
        api.contrast_embeddings(vectors, vectors, "text", CONTEXTS)


def test_a_word_of_a_script_without_spaces_is_found_inside_its_sentence():
    from plmkit.embeddings.contrast import word_span

    assert word_span("我去银行存钱。", "银行") == (2, 4)
    assert word_span("河岸边有一家银行。", "银行") == (6, 8)
    assert word_span("The Bank is open", "bank") == (4, 8)
    with pytest.raises(PlmError, match="does not contain the word 'bank'"):
        word_span("an embankment", "bank")  # a Latin word still needs its edges
