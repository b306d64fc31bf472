"""final/: a plain Hugging Face folder (safetensors, config, tokenizer, model card) transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, pipeline

from plmkit.api import export_final, pretrain
from plmkit.models import build_model
from plmkit.tokenization import load_tokenizer

STEPS = 4
AUTO = {"mlm": AutoModelForMaskedLM, "clm": AutoModelForCausalLM}


@pytest.fixture(scope="module")
def final(debug_cfg, tmp_path_factory):
    """objective -> the final/ folder of a short debug run (each trained once per module)."""
    runs = {}

    def get(objective: str):
        if objective not in runs:
            out = tmp_path_factory.mktemp(f"export-{objective}") / "run"
            pretrain(debug_cfg(objective, out, f"train.max_steps={STEPS}"), show_progress=False)
            runs[objective] = out / "final"
        return runs[objective]

    return get


def _keys(path) -> list[str]:
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return list(f.keys())


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_final_folder_layout_and_model_card(objective, final):
    path = final(objective)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (path / name).is_file(), name
    assert not list(path.glob("*.bin")) and not (path.parent / ".final.tmp").exists()
    card = (path / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert f"| steps | {STEPS} |" in card
    assert f"with plmkit ({objective})" in card
    arch = "BERT" if objective == "mlm" else "GPT-2"  # the architecture's name, not model.arch's "a gpt2 model"
    assert f"Pre-trained from random weights with plmkit ({objective}); architecture: {arch}." in card
    assert ("pipeline_tag: fill-mask" if objective == "mlm" else "pipeline_tag: text-generation") in card
    assert AUTO[objective].__name__ in card
    vocab = len(json.loads((path / "tokenizer.json").read_text())["model"]["vocab"])
    assert f"trained on the same data, vocabulary {vocab:,} |" in card


def test_the_card_states_the_tokenizers_vocabulary_not_the_setting():
    """Chinese text keeps a token per character: 6,168 tokens against a setting of 8,000 in a review."""
    from plmkit import load_config
    from plmkit.api import render_model_card

    cfg = load_config(Path(__file__).parents[3] / "configs" / "debug" / "mlm.yaml")
    card = render_model_card(cfg, {}, {"steps": 1, "tokens_seen": 10}, "masked_lm", vocab_size=6168)
    assert "vocabulary 6,168 |" in card and f"vocabulary {cfg.tokenizer.train.vocab_size}" not in card


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_no_wrapper_prefixes_in_weights(objective, final):
    keys = _keys(final(objective))
    assert keys and not [k for k in keys if k.startswith(("_orig_mod.", "module."))]


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_reloads_with_auto_classes(objective, final):
    path = final(objective)
    model, info = AUTO[objective].from_pretrained(path, output_loading_info=True)
    assert info["missing_keys"] in (set(), []) and info["unexpected_keys"] in (set(), [])
    assert not info.get("mismatched_keys")
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) <= model.config.vocab_size
    assert tokenizer.model_max_length == 64  # the debug model's positions, for pipelines that truncate


def test_fill_mask_pipeline(final):
    fill = pipeline("fill-mask", model=str(final("mlm")), device="cpu")
    guesses = fill(f"Return a new {fill.tokenizer.mask_token} of the items.", top_k=3)
    assert len(guesses) == 3
    assert all(isinstance(g["token_str"], str) and 0 <= g["score"] <= 1 for g in guesses)


def test_causal_model_generates(final):
    path = final("clm")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("Return a new list", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    assert out.shape == (1, ids.shape[1] + 4)
    assert isinstance(tokenizer.decode(out[0]), str)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own import
def test_export_final_unwraps_compiled_models(final, tmp_path):
    """A torch.compile wrapper (what accelerate may hand back) must not leak `_orig_mod.` into the weights."""
    source = final("mlm")
    tokenizer = load_tokenizer(str(source))
    model = AutoModelForMaskedLM.from_pretrained(source)
    final_dir = export_final(torch.compile(model), tokenizer, tmp_path, "# card\n")
    assert final_dir == tmp_path / "final"
    assert not [k for k in _keys(final_dir) if k.startswith("_orig_mod.")]
    _, info = AutoModelForMaskedLM.from_pretrained(final_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_export_final_replaces_an_earlier_final(final, tmp_path, debug_cfg):
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "stale.txt").write_text("from an earlier run")
    tokenizer = load_tokenizer(str(final("mlm")))
    model = build_model(debug_cfg("mlm", tmp_path).model, tokenizer, "masked_lm")
    export_final(model, tokenizer, tmp_path, "# card\n")
    assert not (tmp_path / "final" / "stale.txt").exists()
    assert (tmp_path / "final" / "README.md").read_text() == "# card\n"
