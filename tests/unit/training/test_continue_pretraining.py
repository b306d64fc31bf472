"""Continuing pre-training from a checkpoint (init.from, domain-adaptive pre-training): the body's weights are the
checkpoint's, a missing LM head is said in one line, and final/ keeps the checkpoint's pooler, which a masked-LM
model has no place for, so that AutoModel and fine-tuning load it instead of drawing a random one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, BertModel

from plmkit.api import pretrain, train_tokenizer_for


def _encoder_checkpoint(folder, tokenizer) -> BertModel:
    """A small BERT saved as AutoModel saves it: body and pooler, no masked-LM head (as a sentence-embedding model)."""
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    encoder = BertModel(config)  # with its pooler
    torch.nn.init.normal_(encoder.pooler.dense.weight)  # weights that a random draw would not give again
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return encoder


def test_continuing_from_an_encoder_keeps_its_pooler_and_says_the_head_is_new(debug_cfg, tmp_path, capsys, squash):
    tokenizer = train_tokenizer_for(debug_cfg("mlm", tmp_path / "tok"), show_progress=False)
    start = tmp_path / "encoder"
    encoder = _encoder_checkpoint(start, tokenizer)
    capsys.readouterr()
    pretrain(debug_cfg("mlm", tmp_path / "run", "train.max_steps=2", f"init.from={start}"), show_progress=False)
    err = squash(capsys.readouterr().err)
    assert squash("has no weights for the BertForMaskedLM head (6 tensors") in err
    assert squash("the head starts from random weights and the first losses are high") in err
    assert squash(f"init.from is set, so the model and its tokenizer are those of {start}, and these settings are not "
                  "used: model.hidden_size 32, model.num_layers 2") in err  # configs/debug/mlm.yaml's, not defaults

    final = tmp_path / "run" / "final"
    saved = load_file(final / "model.safetensors")
    torch.testing.assert_close(saved["bert.pooler.dense.weight"], encoder.pooler.dense.weight)
    body, info = AutoModel.from_pretrained(final, output_loading_info=True)
    assert not info["missing_keys"]  # the pooler is there: nothing drawn at random
    torch.testing.assert_close(body.pooler.dense.bias, encoder.pooler.dense.bias)
    assert not torch.equal(body.encoder.layer[0].attention.self.query.weight,
                           encoder.encoder.layer[0].attention.self.query.weight)  # trained
    _, info = AutoModelForMaskedLM.from_pretrained(final, output_loading_info=True)
    assert not info["missing_keys"] and info["unexpected_keys"] == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}


def test_a_checkpoint_with_its_head_loads_without_the_note(debug_cfg, tmp_path, capsys, squash):
    first = tmp_path / "first"
    pretrain(debug_cfg("mlm", first, "train.max_steps=1"), show_progress=False)
    capsys.readouterr()
    pretrain(debug_cfg("mlm", tmp_path / "again", "train.max_steps=1", f"init.from={first / 'final'}"),
             show_progress=False)
    assert squash("has no weights for the") not in squash(capsys.readouterr().err)
    assert not any("pooler" in k for k in load_file(tmp_path / "again" / "final" / "model.safetensors"))


def test_a_checkpoint_the_objective_cannot_continue_is_refused_before_any_work(debug_cfg, tmp_path):
    """A BERT given to ELECTRA (AutoModelForPreTraining would load it as BertForPreTraining), to T5's span
    corruption or to causal LM (AutoModelForCausalLM would load a BertLMHeadModel that attends both ways): refused
    from its config.json, before the tokenizer and the shards."""
    import pytest

    from plmkit.errors import PlmError

    tokenizer = train_tokenizer_for(debug_cfg("mlm", tmp_path / "tok"), show_progress=False)
    start = tmp_path / "encoder"
    _encoder_checkpoint(start, tokenizer)
    for objective, named in (("electra", "ELECTRA"), ("span_corruption", "T5 and other encoder-decoder"),
                             ("clm", "GPT-2, Llama and other causal-LM")):  # BertLMHeadModel would see ahead
        out = tmp_path / objective
        with pytest.raises(PlmError, match=rf"init.from {start} is a bert model, and objective '{objective}' "
                                           rf"continues {named} models"):
            pretrain(debug_cfg(objective, out, f"init.from={start}"), show_progress=False)
        assert not out.exists()


@pytest.mark.slow
def test_a_sentence_transformers_start_keeps_its_pooling_files(debug_cfg, tmp_path, capsys, squash):
    """Adapting a sentence-embedding model (as all-MiniLM-L6-v2) by continued pre-training: final/ keeps its
    modules.json and pooling folder, so SentenceTransformer loads it and pools as before (mean pooling, normalised)."""
    import json

    import pytest

    sentence_transformers = pytest.importorskip("sentence_transformers")
    tokenizer = train_tokenizer_for(debug_cfg("mlm", tmp_path / "tok"), show_progress=False)
    start = tmp_path / "st-model"
    _encoder_checkpoint(start, tokenizer)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
               {"idx": 3, "name": "3", "path": "../outside", "type": "sentence_transformers.models.Dense"}]
    (start / "modules.json").write_text(json.dumps(modules))
    (start / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    (start / "1_Pooling").mkdir()
    (start / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                  "pooling_mode_mean_tokens": True}))
    capsys.readouterr()
    pretrain(debug_cfg("mlm", tmp_path / "run", "train.max_steps=1", f"init.from={start}"), show_progress=False)
    assert squash("final/ keeps") in squash(capsys.readouterr().err)
    final = tmp_path / "run" / "final"
    assert (final / "1_Pooling" / "config.json").is_file() and not (tmp_path / "run" / "outside").exists()
    assert [m["path"] for m in json.loads((final / "modules.json").read_text())] == ["", "1_Pooling", "2_Normalize"]
    model = sentence_transformers.SentenceTransformer(str(final), device="cpu")
    vectors = model.encode(["a short text", "another one"], convert_to_tensor=True)
    assert vectors.shape == (2, 32)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(2))  # normalised, as the starting model was


def test_a_plain_start_gets_no_sentence_transformers_files(debug_cfg, tmp_path):
    tokenizer = train_tokenizer_for(debug_cfg("mlm", tmp_path / "tok"), show_progress=False)
    start = tmp_path / "encoder"
    _encoder_checkpoint(start, tokenizer)
    pretrain(debug_cfg("mlm", tmp_path / "run", "train.max_steps=1", f"init.from={start}"), show_progress=False)
    assert not (tmp_path / "run" / "final" / "modules.json").exists()
