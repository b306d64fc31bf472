"""Confusion-matrix labels the default font cannot draw (Chinese on a machine without a CJK font): they get a font
that has them, or else ids on the axes and a caption mapping id -> name; no glyph is drawn as tofu and no
missing-glyph warning leaks. Labels the default font draws take the old path unchanged."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text

from plmkit.evaluation import metrics, plot_confusion_matrix

pytestmark = pytest.mark.filterwarnings("error")  # a "Glyph ... missing from font(s)" warning fails the test

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MATRIX = np.array([[3, 1], [0, 2]])
CHINESE = ["正面", "负面"]  # positive, negative


def _tick_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_xticklabels()]


def _assert_no_tofu(fig) -> None:
    """Every character of every visible text has a glyph in the font that text is drawn with."""
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text():
            continue
        path = text.get_fontproperties().get_file() or font_manager.findfont(text.get_fontproperties())
        charmap = FT2Font(path).get_charmap()
        missing = [ch for ch in text.get_text() if not ch.isspace() and ord(ch) not in charmap]
        assert not missing, f"{text.get_text()!r} drawn with {path} lacks {missing}"


def _save(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)  # outside plot_confusion_matrix's warning filter
    return buffer.getvalue()


def test_chinese_labels_write_a_png_without_glyph_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = plot_confusion_matrix(MATRIX, CHINESE, tmp_path / "cm.png", title="classification: 数据/dev.tsv")
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert path.read_bytes()[:8] == PNG_MAGIC

    fig = metrics.confusion_figure(MATRIX, CHINESE)  # the drawing itself, without the safety net
    expected = CHINESE if metrics.font_covering("".join(CHINESE)) else ["0", "1"]  # a CJK font is installed or not
    assert _tick_texts(fig) == expected
    _assert_no_tofu(fig)


def test_without_a_font_for_the_labels_the_axes_show_ids_and_a_caption_names_them(monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "font_covering", lambda text: None)  # as on a machine with no CJK font
    labels = [*CHINESE, "neutral"]
    matrix = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 4]])
    fig = metrics.confusion_figure(matrix, labels, title="classification: 数据/dev.tsv")
    ax = fig.axes[0]

    assert _tick_texts(fig) == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    caption = ax.texts[-1].get_text()  # after the 9 cell counts
    assert "0 = \\u6b63\\u9762" in caption and "1 = \\u8d1f\\u9762" in caption  # distinct, and decodable
    assert "2 = neutral" in caption  # names the font draws stay as they are
    assert "confusion_labels" in caption  # where the names are in full
    assert ax.get_title() == "classification: \\u6570\\u636e/dev.tsv"
    _assert_no_tofu(fig)
    assert _save(fig)[:8] == PNG_MAGIC

    path = plot_confusion_matrix(matrix, labels, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_labels_the_default_font_lacks_are_drawn_with_a_font_that_has_them():
    labels = ["\u2900 up", "\u2901 down"]  # arrows: in matplotlib's DejaVu Serif, not in DejaVu Sans
    font = metrics.font_covering("".join(labels))
    if font is None or font == font_manager.findfont(font_manager.FontProperties()):
        pytest.skip("needs a font that has these arrows and a default font that lacks them")
    fig = metrics.confusion_figure(MATRIX, labels)
    assert _tick_texts(fig) == labels
    ticks = fig.axes[0].get_xticklabels() + fig.axes[0].get_yticklabels()
    assert {t.get_fontproperties().get_file() for t in ticks} == {font}
    assert {t.get_fontsize() for t in ticks} == {10}  # the size the default path uses for 2 labels
    _assert_no_tofu(fig)
    _save(fig)


def test_labels_the_default_font_draws_keep_the_default_path(monkeypatch):
    monkeypatch.setattr(metrics, "font_covering", lambda text: pytest.fail(f"looked for a font for {text!r}"))
    labels = ["negative", "café", "Ωmega"]
    fig = metrics.confusion_figure(np.eye(3, dtype=int), labels, title="classification: dev.tsv")
    ax = fig.axes[0]
    assert _tick_texts(fig) == labels
    assert {t.get_fontproperties().get_file() for t in ax.get_xticklabels()} == {None}  # rcParams' font
    assert ax.get_title() == "classification: dev.tsv"
    assert len(ax.texts) == 9  # the cell counts only: no caption
    _assert_no_tofu(fig)
    _save(fig)


def test_placeholder_fonts_do_not_count_as_covering():
    # matplotlib >= 3.10 ships Last Resort, which has a box for every code point; a box is tofu, not a glyph
    assert metrics.font_covering("\U000f0000") is None  # plane-15 private use: no real font has it
