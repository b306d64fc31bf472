"""The generated config reference in docs/ matches config.py (regenerate with the command in its header)."""

from pathlib import Path

from plmkit.config import reference_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_is_current():
    text = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert text == reference_markdown(), (
        "docs/config-reference.md is stale: plm config show --doc --markdown > docs/config-reference.md")
    assert "`train.lr`" in text and "`init.from`" in text
