"""ELECTRA: replaced-token labels, masking, the shared embeddings, the loss and its gradients, the generator's shape
and its export (objectives/electra.py, models/electra.py)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForMaskedLM, ElectraForMaskedLM, ElectraForPreTraining

from plmkit.config import ModelConfig, load_config
from plmkit.errors import ConfigError
from plmkit.flops import module_flops_per_token
from plmkit.models import build_model
from plmkit.models.electra import build_generator, build_generator_config
from plmkit.objectives.electra import corrupt, sample_replacements
from plmkit.objectives.mlm import MLMConfig, example_draws, mask_tokens

B, T = 4, 32


@pytest.fixture
def tok(tokenizers_by_arch):
    return tokenizers_by_arch["electra"]


def _objective(tok, **kw):
    from plmkit.objectives import build_objective

    cfg = load_config(None, ["objective.name=electra", *(f"objective.{k}={v}" for k, v in kw.items())]).objective
    return build_objective(cfg, tok, 13)


def _discriminator(tok, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"arch": "electra", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                         "max_position_embeddings": 64, "dropout": 0.0, **kw})
    return build_model(cfg, tok, "electra")


def _batch(obj, tok, tiny_docs, n: int = B):
    ids = tok("\n".join(tiny_docs), add_special_tokens=False)["input_ids"]
    return obj.collate([{"input_ids": torch.tensor([tok.cls_token_id, *ids[i * (T - 1):(i + 1) * (T - 1)]]),
                         "index": i} for i in range(n)])


# --- replaced-token labels -----------------------------------------------------------------------------------------

def test_labels_are_one_exactly_where_the_corrupted_input_differs():
    original = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 20, 21, 22, 23, 3]])  # (B, T)
    masked = torch.tensor([[0, 1, 0, 1, 0, 0], [0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    sampled = torch.tensor([99, 12, 98, 22, 97])  # row 0 pos 3 and row 1 pos 3 draw the original token back
    corrupted, replaced = corrupt(original, masked, sampled)
    assert corrupted.tolist() == [[2, 99, 11, 12, 13, 3], [2, 20, 98, 22, 97, 3]]
    assert replaced.tolist() == [[False, True, False, False, False, False], [False, False, True, False, True, False]]
    assert torch.equal(replaced, corrupted != original)
    assert not replaced[~masked].any()  # an unmasked position is never labelled replaced
    assert corrupted.dtype == torch.long and torch.equal(original[0], torch.tensor([2, 10, 11, 12, 13, 3]))


def test_a_sample_equal_to_the_original_is_labelled_original():
    original = torch.tensor([[5, 6, 7]])
    masked = torch.ones_like(original, dtype=torch.bool)
    corrupted, replaced = corrupt(original, masked, original[0].clone())
    assert torch.equal(corrupted, original) and not replaced.any()


def test_the_discriminator_is_scored_on_the_corrupted_input_with_these_labels(tok, tiny_docs, monkeypatch):
    """Inside the training module: the discriminator reads the generator's samples at the masked positions and
    the original tokens elsewhere, and its targets are 1 exactly where those differ (never at special tokens)."""
    obj = _objective(tok)
    module = obj.wrap(_discriminator(tok)).train()
    batch = _batch(obj, tok, tiny_docs)
    seen = {}
    forward = module.hf_model.forward

    def spy(input_ids, **kw):
        seen["input_ids"] = input_ids
        return forward(input_ids=input_ids, **kw)

    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def spy_bce(logits, labels, **kw):
        seen["labels"] = labels
        return bce(logits, labels, **kw)

    monkeypatch.setattr(module.hf_model, "forward", spy)
    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", spy_bce)
    obj.loss(module, batch)
    keep = batch["labels"] != -100
    original = torch.where(keep, batch["labels"], batch["input_ids"])
    corrupted = seen["input_ids"]
    assert torch.equal(corrupted[~keep], original[~keep])  # only masked positions change
    assert not torch.isin(corrupted[keep], obj.special_ids).any()  # no mask token (or other special) is left
    scored = ~torch.isin(original, obj.special_ids)
    assert torch.equal(seen["labels"], (corrupted != original)[scored].float())
    assert (original[0, 0] == tok.cls_token_id) and not scored[:, 0].any()


# --- masking and sampling --------------------------------------------------------------------------------------------

def test_every_selected_token_becomes_the_mask_token_at_the_configured_rate(tok, tiny_docs):
    obj = _objective(tok, mask_prob=0.15)
    batch = _batch(obj, tok, tiny_docs, n=64)
    keep = batch["labels"] != -100
    assert (batch["input_ids"][keep] == tok.mask_token_id).all()  # 100% [MASK], the paper's setting
    assert not (batch["input_ids"][~keep] == tok.mask_token_id).any()
    special = torch.isin(torch.where(keep, batch["labels"], batch["input_ids"]), obj.special_ids)
    assert not keep[special].any()
    rate = keep.sum() / (~special).sum()
    assert abs(rate.item() - 0.15) < 0.03, rate
    again = _objective(tok, mask_prob=0.15).collate([{"input_ids": torch.arange(5, 37), "index": 0}])
    once = obj.collate([{"input_ids": torch.arange(5, 37), "index": 0}])
    assert all(torch.equal(once[k], again[k]) for k in once)  # masks are keyed by (seed, example index)


def test_collate_matches_mlm_masking_with_all_mask_tokens(tok):
    obj = _objective(tok)
    ids = torch.arange(5, 5 + T)
    batch = obj.collate([{"input_ids": ids, "index": 7}])
    inputs, labels = mask_tokens(ids, MLMConfig(mask_prob=0.15, replace_with_mask=1.0, replace_with_random=0.0),
                                 obj.special_ids, tok.mask_token_id, obj.masker.random_pool,
                                 example_draws(13, [7], T)[:, 0])
    assert torch.equal(batch["input_ids"][0], inputs) and torch.equal(batch["labels"][0], labels)


def test_samples_follow_the_softmax_and_never_draw_special_tokens():
    V = 12
    special = torch.tensor([0, 1, 2, 3, 4])
    logits = torch.zeros(4000, V)
    logits[:, 3] = 10.0  # a special token the generator likes: never drawn
    logits[:, 7] = math.log(3.0)  # three times as likely as each other ordinary token
    drawn = sample_replacements(logits, special, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (4000,) and drawn.dtype == torch.long
    assert not torch.isin(drawn, special).any()
    share = (drawn == 7).float().mean().item()
    assert abs(share - 3 / 9) < 0.03, share  # 7 ordinary tokens: 3 / (3 + 6)
    cold = sample_replacements(logits, special, temperature=0.05, generator=torch.Generator().manual_seed(0))
    assert (cold == 7).all()
    assert sample_replacements(logits[:0], special).shape == (0,)


# --- the model pair ----------------------------------------------------------------------------------------------------

def test_generator_shares_the_embeddings_and_ties_its_decoder(tok):
    disc = _discriminator(tok)
    gen = build_generator(disc, 0.25)
    assert isinstance(disc, ElectraForPreTraining) and isinstance(gen, ElectraForMaskedLM)
    assert gen.electra.embeddings is disc.electra.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assert getattr(gen.electra.embeddings, name).weight is getattr(disc.electra.embeddings, name).weight
    assert gen.generator_lm_head.weight is disc.electra.embeddings.word_embeddings.weight
    assert gen.config._attn_implementation == disc.config._attn_implementation


@pytest.mark.parametrize(("hidden", "heads", "size", "want"), [(32, 2, 0.25, (8, 1, 32)), (256, 4, 0.25, (64, 1, 256)),
                                                               (768, 12, 1 / 3, (256, 4, 1024)),
                                                               (48, 4, 0.5, (24, 2, 96))])
def test_generator_config_scales_width_and_heads(tok, hidden, heads, size, want):
    disc = _discriminator(tok, hidden_size=hidden, num_heads=heads, embedding_size=16).config
    gen = build_generator_config(disc, size)
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size) == want
    assert gen.hidden_size % gen.num_attention_heads == 0
    assert gen.embedding_size == disc.embedding_size == 16  # shared embeddings need the same width
    assert gen.num_hidden_layers == disc.num_hidden_layers and gen.vocab_size == disc.vocab_size
    assert disc.hidden_size == hidden  # the discriminator's config is not changed


def test_bad_settings_are_config_errors(tok):
    with pytest.raises(ConfigError, match="generator_size"):
        load_config(None, ["objective.name=electra", "objective.generator_size=1.5"])
    with pytest.raises(ConfigError, match="temperature"):
        load_config(None, ["objective.name=electra", "objective.temperature=0"])
    with pytest.raises(ConfigError, match="mask_prob"):
        load_config(None, ["objective.name=electra", "objective.mask_prob=1.5"])
    with pytest.raises(ConfigError, match="embedding_size"):
        load_config(None, ["model.arch=bert", "model.embedding_size=64"])
    assert load_config(None, ["model.arch=electra", "model.embedding_size=16"]).model.embedding_size == 16
    bert = build_model(ModelConfig(arch="bert", hidden_size=32, num_layers=1, num_heads=2), tok, "masked_lm")
    with pytest.raises(ConfigError, match="ElectraForPreTraining"):
        _objective(tok).wrap(bert)


def test_embedding_size_is_projected_to_the_hidden_width(tok, tiny_docs):
    disc = _discriminator(tok, hidden_size=64, num_heads=2, embedding_size=16)
    assert disc.electra.embeddings.word_embeddings.weight.shape == (len(tok), 16)
    obj = _objective(tok)
    out = obj.loss(obj.wrap(disc), _batch(obj, tok, tiny_docs))
    assert torch.isfinite(out.loss_sum)


# --- the loss ----------------------------------------------------------------------------------------------------------

def test_loss_is_generator_mean_plus_weighted_discriminator_mean_per_masked_token(tok, tiny_docs):
    obj = _objective(tok, disc_weight=50.0)
    module = obj.wrap(_discriminator(tok)).eval()
    batch = _batch(obj, tok, tiny_docs)
    with torch.no_grad():
        out = obj.loss(module, batch)
    m = out.metrics
    assert out.num_targets == (batch["labels"] != -100).sum()  # what the training loop counts
    per_target = out.loss_sum / out.num_targets
    torch.testing.assert_close(per_target, m["generator_loss"] + 50.0 * m["discriminator_loss"])
    assert abs(m["generator_loss"].item() - math.log(len(tok))) < 0.5  # ~ln V at initialisation
    assert abs(m["discriminator_loss"].item() - math.log(2)) < 0.1  # ~ln 2 at initialisation
    assert 0 < m["replaced_fraction"] < 0.2 and 0 <= m["discriminator_accuracy"] <= 1
    with torch.no_grad():
        again = obj.loss(module, batch)  # evaluation samples are seeded by the batch: the eval loss repeats
    assert torch.equal(out.loss_sum, again.loss_sum)


def test_gradients_reach_generator_discriminator_and_shared_embeddings(tok, tiny_docs):
    obj = _objective(tok)
    module = obj.wrap(_discriminator(tok)).train()
    assert obj.wrap(module.hf_model) is module  # the same generator each time
    out = obj.loss(module, _batch(obj, tok, tiny_docs))
    assert out.loss_sum.requires_grad and torch.isfinite(out.loss_sum)
    out.loss_sum.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
    gen_only = module.generator.electra.encoder.layer[0].attention.self.query.weight.grad
    disc_only = module.hf_model.discriminator_predictions.dense_prediction.weight.grad
    assert gen_only.abs().sum() > 0 and disc_only.abs().sum() > 0
    names = [n for n, _ in module.named_parameters()]
    assert not any(n.startswith("generator.electra.embeddings.") for n in names)  # shared: listed once, hf_model.*
    assert "hf_model.electra.embeddings.word_embeddings.weight" in names


def test_the_generator_gets_gradient_from_its_own_loss_only(tok, tiny_docs):
    """Samples are drawn without gradient: with disc_weight 0 the discriminator gets none, and the generator's
    gradient is the same whatever the weight."""
    grads = {}
    for weight in (0.0, 50.0):
        obj = _objective(tok, disc_weight=weight)
        module = obj.wrap(_discriminator(tok)).train()
        torch.manual_seed(1)
        obj.loss(module, _batch(obj, tok, tiny_docs)).loss_sum.backward()
        grads[weight] = module.generator.electra.encoder.layer[0].attention.self.query.weight.grad.clone()
        if weight == 0.0:
            assert module.hf_model.discriminator_predictions.dense_prediction.weight.grad.abs().sum() == 0
    torch.testing.assert_close(grads[0.0], grads[50.0])


def test_generator_flops_are_counted(tok):
    obj = _objective(tok)
    module = obj.wrap(_discriminator(tok))
    extra = module.extra_flops_per_token(T)
    assert extra == module_flops_per_token(module.generator, T, head_fraction=0.15) > 0
    assert extra < module_flops_per_token(module.hf_model, T)  # a quarter-width generator costs less
    assert obj.perplexity is False and obj.head_fraction == 1.0


# --- export ------------------------------------------------------------------------------------------------------------

def test_save_extra_writes_a_generator_that_loads_with_no_missing_keys(tok, tiny_docs, tmp_path):
    obj = _objective(tok)
    module = obj.wrap(_discriminator(tok)).eval()
    obj.save_extra(module.state_dict(), tmp_path, tok)
    loaded, info = AutoModelForMaskedLM.from_pretrained(tmp_path / "generator", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert isinstance(loaded, ElectraForMaskedLM) and (tmp_path / "generator" / "model.safetensors").is_file()
    assert (tmp_path / "generator" / "tokenizer.json").is_file()
    ids = _batch(obj, tok, tiny_docs)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, module.generator(input_ids=ids).logits)
    # a state dict that lists the shared embeddings once (under hf_model.*) gives the same generator
    once = {k: v for k, v in module.state_dict().items()
            if not k.startswith(("generator.electra.embeddings.", "generator.generator_lm_head.weight"))}
    obj.save_extra(once, tmp_path / "again", tok)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path / "again" / "generator")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(input_ids=ids).logits, module.generator(input_ids=ids).logits)


def test_init_from_an_electra_run_keeps_its_generator(tok, tiny_docs, tmp_path):
    """load_extra (api.pretrain calls it with init.from): the generator saved in final/generator/ is the one wrap()
    uses, with the embeddings of the discriminator it is given; a folder without generator/ gets a new one."""
    first = _objective(tok)
    module = first.wrap(_discriminator(tok)).eval()
    first.save_extra(module.state_dict(), tmp_path, tok)

    again = _objective(tok)
    again.load_extra(str(tmp_path))
    discriminator = _discriminator(tok)
    continued = again.wrap(discriminator).eval()
    assert continued.generator.electra.embeddings is discriminator.electra.embeddings  # still shared
    assert continued.generator.generator_lm_head.weight is discriminator.electra.embeddings.word_embeddings.weight
    saved, loaded = module.generator.state_dict(), continued.generator.state_dict()
    for key in saved:
        if not key.startswith(("electra.embeddings.", "generator_lm_head.weight")):
            torch.testing.assert_close(loaded[key], saved[key], msg=key)
    ids = _batch(again, tok, tiny_docs)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(continued.generator(input_ids=ids).logits, module.generator(input_ids=ids).logits)

    fresh = _objective(tok)
    fresh.load_extra(str(tmp_path / "no-such-run"))
    assert fresh.generator_from is None
    discriminator = _discriminator(tok)
    torch.manual_seed(1)  # _discriminator seeds 0, so the first run's generator drew from the same stream
    new = fresh.wrap(discriminator)
    layer = "electra.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(new.generator.state_dict()[layer], saved[layer])
