"""The contract every registered objective meets, with a tiny model of each architecture that fits it:
collate shapes and determinism, a finite loss with gradients everywhere, overfitting one batch, and per-document
attention that really isolates documents."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from plmkit.config import ModelConfig, load_config
from plmkit.models import ARCHS, build_model
from plmkit.objectives import build_objective, objectives
from plmkit.objectives.mlm import PREDICTION_KEYS, prediction_index
from plmkit.tokenization import SPECIAL_ROLES, check_compatibility

B, T = 4, 32
CASES = [(name, arch) for name in objectives.names() for arch, kind in ARCHS.items()
         if kind == objectives.get(name).factory.model_kind]
OBJECTIVE_FOR_ARCH = {arch: name for name, arch in reversed(CASES)}


def _tiny_model(arch: str, tokenizer, kind: str):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=64, dropout=0.0)
    return build_model(cfg, tokenizer, kind)


def _objective(name: str, tokenizer, seed: int = 13):
    entry = objectives.get(name)
    return entry.factory(entry.config(), tokenizer, seed)


def _examples(tokenizer, docs: list[str], objective=None) -> list[dict]:
    """B blocks of real text (learnable, unlike random ids), as the packer emits them: T tokens each, or as many as
    the objective reads to produce T input tokens (T5's span corruption reads more)."""
    n = objective.raw_block_size(T) if hasattr(objective, "raw_block_size") else T
    ids = tokenizer("\n".join(docs), add_special_tokens=False)["input_ids"]
    assert len(ids) >= B * n, "the fixture text is too short"
    return [{"input_ids": torch.tensor(ids[i * n:(i + 1) * n], dtype=torch.long), "index": i} for i in range(B)]


def test_every_objective_has_an_architecture():
    assert {name for name, _ in CASES} == set(objectives.names())
    assert {"mlm", "clm"} <= set(objectives.names())


@pytest.mark.parametrize("name", objectives.names())
def test_registry_entry(name):
    entry = objectives.get(name)
    assert entry.name == name and entry.doc
    assert dataclasses.is_dataclass(entry.config)
    assert entry.factory.model_kind in set(ARCHS.values())
    assert set(entry.factory.needs) <= set(SPECIAL_ROLES)
    cfg = load_config(None, [f"objective.name={name}"]).objective
    assert isinstance(cfg, entry.config) and cfg.name == name


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_build_objective_from_config_and_tokenizer_fits(name, arch, tokenizers_by_arch):
    tok = tokenizers_by_arch[arch]
    obj = build_objective(load_config(None, [f"objective.name={name}", f"model.arch={arch}"]).objective, tok, 13)
    assert isinstance(obj, objectives.get(name).factory)
    model = _tiny_model(arch, tok, obj.model_kind)
    check_compatibility(tok, model.config, block_size=T, needs=obj.needs)


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_collate_shapes_dtypes_and_determinism(name, arch, tokenizers_by_arch, tiny_docs):
    tok = tokenizers_by_arch[arch]
    obj = _objective(name, tok)
    examples = _examples(tok, tiny_docs, obj)
    batch = obj.collate(examples)
    assert {"input_ids", "labels"} <= set(batch)
    for key, value in batch.items():
        assert value.dtype == torch.int64, key
        if obj.model_kind == "seq2seq_lm" and key.startswith(("labels", "decoder")):
            assert value.shape[0] == B, key  # targets have their own, fixed length
        elif key in PREDICTION_KEYS:  # the masked LM's predicted positions, computed on the CPU
            assert torch.equal(value, prediction_index(batch["labels"])[key]), key
        else:
            assert value.shape == (B, T), key
    if obj.model_kind == "seq2seq_lm":  # every batch the same shape: fixed-size targets too
        assert batch["labels"].shape == obj.collate(_examples(tok, tiny_docs[::-1], obj)).get("labels").shape
    assert (batch["labels"] != -100).any()
    again = _objective(name, tok).collate(examples)
    assert batch.keys() == again.keys() and all(torch.equal(batch[k], again[k]) for k in batch)


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_loss_is_finite_and_backward_fills_every_grad(name, arch, tokenizers_by_arch, tiny_docs):
    tok = tokenizers_by_arch[arch]
    obj = _objective(name, tok)
    model = _tiny_model(arch, tok, obj.model_kind).train()
    module = obj.wrap(model)  # trains what the loop trains (ELECTRA: the generator too)
    out = obj.loss(module, obj.collate(_examples(tok, tiny_docs, obj)))
    assert out.loss_sum.ndim == 0 and out.loss_sum.requires_grad
    assert torch.isfinite(out.loss_sum)
    assert out.num_targets.ndim == 0 and not out.num_targets.is_floating_point() and out.num_targets > 0
    per_target = (out.loss_sum / out.num_targets).item()
    expected = torch.log(torch.tensor(float(len(tok)))).item()  # ~ln(V) at init
    if name == "electra":  # plus disc_weight x the discriminator's binary cross-entropy at p = 1/2, ln 2
        expected += obj.cfg.disc_weight * torch.log(torch.tensor(2.0)).item()
    assert 0.5 < per_target / expected < 1.5
    out.loss_sum.backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_overfits_one_repeated_batch(name, arch, tokenizers_by_arch, tiny_docs):
    tok = tokenizers_by_arch[arch]
    obj = _objective(name, tok)
    model = _tiny_model(arch, tok, obj.model_kind).train()
    batch = obj.collate(_examples(tok, tiny_docs, obj))
    opt = torch.optim.AdamW(obj.wrap(model).parameters(), lr=3e-3)  # wrap() returns the same module each time
    losses = []
    for _ in range(30):
        out = obj.loss(obj.wrap(model), batch)
        loss = out.loss_sum / out.num_targets
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = obj.loss(obj.wrap(model), batch)
    final = (out.loss_sum / out.num_targets).item()
    assert final <= 0.7 * losses[0], (losses[0], final)


def _token_outputs(model, **inputs) -> torch.Tensor:
    """Per-token outputs to compare: the logits, or for ELECTRA's discriminator (one near-zero score per token at
    initialisation) its last hidden states."""
    if model.config.model_type == "electra":
        return model.electra(**inputs).last_hidden_state
    return model(**inputs).logits


@pytest.mark.parametrize("arch", [a for a, name in OBJECTIVE_FOR_ARCH.items()
                                  if objectives.get(name).factory.model_kind != "seq2seq_lm"])
def test_doc_attention_isolates_documents(arch, tokenizers_by_arch):
    """Two documents packed in one block: with segment_ids the second one's logits differ from full attention and
    do not change when the first document's tokens do; the first one's equal running it alone."""
    tok = tokenizers_by_arch[arch]
    obj = _objective(OBJECTIVE_FOR_ARCH[arch], tok)
    model = _tiny_model(arch, tok, obj.model_kind).eval()
    half = T // 2
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(len(tok.all_special_ids) + 5, len(tok), (2, T), generator=g)
    segments = torch.tensor([0] * half + [1] * half)
    batch = obj.collate([{"input_ids": ids[i], "index": i, "segment_ids": segments} for i in range(2)])
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, T, T) and mask.dtype == torch.bool

    changed = batch["input_ids"].clone()
    changed[:, :half] = torch.randint(len(tok.all_special_ids) + 5, len(tok), (2, half), generator=g)
    assert not torch.equal(changed[:, :half], batch["input_ids"][:, :half])
    with torch.no_grad():
        full = _token_outputs(model, input_ids=batch["input_ids"])  # (2, T, V)
        per_doc = _token_outputs(model, input_ids=batch["input_ids"], attention_mask=mask)
        per_doc_changed = _token_outputs(model, input_ids=changed, attention_mask=mask)
        full_changed = _token_outputs(model, input_ids=changed)
        first_alone = _token_outputs(model, input_ids=batch["input_ids"][:, :half])

    assert (full[:, half:] - per_doc[:, half:]).abs().max() > 1e-4  # the mask is honoured
    assert (full_changed[:, half:] - full[:, half:]).abs().max() > 1e-4  # without it, doc 1 leaks into doc 2
    torch.testing.assert_close(per_doc_changed[:, half:], per_doc[:, half:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_doc[:, :half], first_alone, rtol=1e-4, atol=1e-5)
