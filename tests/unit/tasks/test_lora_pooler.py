"""LoRA on a sequence classifier trains BERT's pooler in full with the classifier: a masked LM pre-trained from
scratch has no pooler weights, and a frozen random pooler would stay random under every prediction."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from plmkit.config import AdapterConfig
from plmkit.models.peft import add_lora, merge_lora


def _config() -> BertConfig:
    return BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, num_labels=2)


def test_the_pooler_trains_with_the_classifier_and_survives_the_merge():
    torch.manual_seed(0)
    plain = BertForSequenceClassification(_config())
    before = plain.bert.pooler.dense.weight.detach().clone()
    model = add_lora(plain, AdapterConfig(name="lora"), "sequence_classification")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("pooler" in n for n in trained) and any("classifier" in n for n in trained)
    assert any("lora_" in n for n in trained) and not any("word_embeddings" in n for n in trained)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    out = model(input_ids=torch.randint(0, 60, (4, 8)), labels=torch.tensor([0, 1, 0, 1]))
    out.loss.backward()
    optimizer.step()
    merged = merge_lora(model)
    assert isinstance(merged, BertForSequenceClassification)
    assert not torch.equal(merged.bert.pooler.dense.weight, before)  # the trained copy is kept


def test_token_classification_has_no_pooler_to_train():
    model = add_lora(BertForTokenClassification(_config()), AdapterConfig(name="lora"), "token_classification")
    assert not any("pooler" in n for n, p in model.named_parameters() if p.requires_grad)


def test_a_checkpoint_written_with_the_pooler_frozen_is_resumed_that_way(tmp_path):
    """Checkpoints of LoRA runs from before the pooler trained name its weights without peft's wrapper: such a run
    goes on with it frozen, so that its checkpoints load."""
    from safetensors.torch import save_file

    from plmkit.models.peft import checkpoint_has_frozen_pooler

    for train_pooler, folder in ((False, tmp_path / "old"), (True, tmp_path / "new")):
        model = add_lora(BertForSequenceClassification(_config()), AdapterConfig(name="lora"),
                         "sequence_classification", train_pooler=train_pooler)
        folder.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    assert checkpoint_has_frozen_pooler(tmp_path / "old")
    assert not checkpoint_has_frozen_pooler(tmp_path / "new")
    assert not checkpoint_has_frozen_pooler(tmp_path / "none")
