"""Model card metadata carried from the base model: its license and language (as the Hugging Face Trainer's cards
take the base model's license), and the hub datasets a run read; the front matter stays valid YAML."""

from __future__ import annotations

import yaml

from plmkit.api import render_finetune_card, render_model_card
from plmkit.cli import finetune_config
from plmkit.config import load_config


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def _base(tmp_path, front: str):
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "README.md").write_text(f"---\n{front}---\n\n# a model\n", encoding="utf-8")
    return folder


def test_finetune_card_takes_the_base_models_license_and_language(tmp_path):
    base = _base(tmp_path, "language: en\nlicense: apache-2.0\ntags: [sentence-transformers]\n")
    cfg = finetune_config(None, None, model=str(base), task="classification", train="t.tsv", out="runs/x")
    front = _front(render_finetune_card(cfg, {"eval_accuracy": 0.9}, scratch=False))
    assert front["license"] == "apache-2.0" and front["language"] == "en" and front["tags"] == ["plmkit"]
    assert "license" not in _front(render_finetune_card(cfg, {}, scratch=True))  # random weights: nothing inherited


def test_pretraining_card_from_init_from_and_a_hub_dataset(tmp_path):
    base = _base(tmp_path, "license: mit\nlanguage: [en, zh]\n")
    cfg = load_config(None, [f"init.from={base}", "data.source=hf", "data.hf_dataset=Salesforce/wikitext",
                             "data.hf_config=wikitext-2-raw-v1"])
    metrics = {"steps": 1, "tokens_seen": 10}
    front = _front(render_model_card(cfg, {}, metrics, "masked_lm"))
    assert front["license"] == "mit" and front["language"] == ["en", "zh"]
    assert front["datasets"] == ["Salesforce/wikitext"]
    sliced = load_config(None, ["data.source=hf", "data.hf_dataset=Salesforce/wikitext",
                                "data.hf_config=wikitext-2-raw-v1", "data.hf_split=train[:10%]"])
    assert _front(render_model_card(sliced, {}, metrics, "masked_lm"))["datasets"] == ["Salesforce/wikitext"]


def test_exported_files_are_readable_as_the_umask_allows(tmp_path):
    import os
    import stat

    from plmkit.api import _readable_as_umask_allows

    (tmp_path / "generator").mkdir()
    for path in (tmp_path / "model.safetensors", tmp_path / "generator" / "model.safetensors"):
        path.write_bytes(b"x")
        path.chmod(0o600)  # as safetensors writes them
    old = os.umask(0o022)
    try:
        _readable_as_umask_allows(tmp_path)
    finally:
        os.umask(old)
    for path in (tmp_path / "model.safetensors", tmp_path / "generator" / "model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_base_card_without_front_matter_or_with_bad_yaml_adds_nothing(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "README.md").write_text("# just a title\n", encoding="utf-8")
    broken = _base(tmp_path, "license: [unclosed\n")
    for folder in (plain, broken, tmp_path / "no-card"):
        cfg = finetune_config(None, None, model=str(folder), task="classification", train="t.tsv", out="runs/x")
        front = _front(render_finetune_card(cfg, {}, scratch=False))
        assert "license" not in front and front["library_name"] == "transformers"


def test_the_card_heads_its_table_with_the_scores_of_the_weights_it_holds():
    cfg = finetune_config(None, None, model="m", task="classification", train="t.tsv", out="runs/x")
    metrics = {"steps": 38, "eval_accuracy": 0.6585, "best_step": 26, "best_eval_accuracy": 0.7073}
    card = render_finetune_card(cfg, metrics, scratch=False)
    table = [line for line in card.splitlines() if line.startswith("| ") and line != "| | |"]
    assert table[:2] == ["| step of final/ (the best on validation) | 26 |", "| eval_accuracy (final/) | 0.7073 |"]
    assert "| eval_accuracy (last step) | 0.6585 |" in table and "| steps | 38 |" in table
