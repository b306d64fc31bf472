"""decay_groups / build_optimizer: weight decay on the matrices of linear layers only (not on biases,
LayerNorm / RMSNorm or embeddings), for each architecture plmkit builds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.pytorch_utils import Conv1D

from plmkit.config import ModelConfig, TrainConfig
from plmkit.models import ARCHS, build_model
from plmkit.training.optim import build_optimizer, decay_groups

TOKENIZER = SimpleNamespace(pad_token_id=0, bos_token_id=1, eos_token_id=2)  # all build_model_config reads
NORMS = (nn.LayerNorm, LlamaRMSNorm)
LINEAR = (nn.Linear, Conv1D)  # GPT-2 uses Conv1D, a linear layer with a transposed weight


def _model(arch: str) -> nn.Module:
    cfg = ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=64,
                      vocab_size=64)
    return build_model(cfg, TOKENIZER, ARCHS[arch])


def _expected(model: nn.Module) -> tuple[set[int], set[int]]:
    """(decay, no_decay) parameter ids by layer type; a tied weight counts where it is first owned."""
    decay, no_decay, seen = set(), set(), set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, (nn.Embedding, *NORMS)) or name == "bias":
                no_decay.add(id(param))
            elif isinstance(module, LINEAR) and name == "weight":
                decay.add(id(param))
            else:
                no_decay.add(id(param))  # e.g. BERT's stand-alone output bias
    return decay, no_decay


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_decay_groups(arch):
    model = _model(arch)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = decay_groups(model)
    got_decay, got_no_decay = {id(p) for p in decay}, {id(p) for p in no_decay}
    assert len(got_decay) == len(decay) and len(got_no_decay) == len(no_decay)  # no parameter listed twice
    assert not got_decay & got_no_decay  # exactly one group each
    assert got_decay | got_no_decay == {id(p) for p in model.parameters()}  # and none left out
    want_decay, want_no_decay = _expected(model)
    assert got_decay == want_decay, sorted(names[i] for i in got_decay ^ want_decay)
    assert got_no_decay == want_no_decay, sorted(names[i] for i in got_no_decay ^ want_no_decay)
    # the kinds the rule is about are all present in this architecture
    kinds = {type(m) for m in model.modules()}
    assert any(issubclass(k, nn.Embedding) for k in kinds) and any(issubclass(k, NORMS) for k in kinds)
    assert any(issubclass(k, LINEAR) for k in kinds)


def test_gpt2_conv1d_weights_decay_and_tied_head_does_not():
    model = _model("gpt2")
    decay, no_decay = decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    assert "transformer.h.0.attn.c_attn.weight" in {names[id(p)] for p in decay}
    assert model.lm_head.weight is model.transformer.wte.weight
    assert any(p is model.lm_head.weight for p in no_decay)  # the tied head is the (not decayed) embedding


def test_llama_rmsnorm_not_decayed():
    model = _model("llama")
    _, no_decay = decay_groups(model)
    norms = [m.weight for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    assert norms and all(any(p is w for p in no_decay) for w in norms)


def test_frozen_parameters_are_left_out():
    model = _model("bert")
    model.bert.embeddings.position_embeddings.weight.requires_grad_(False)
    decay, no_decay = decay_groups(model)
    frozen = model.bert.embeddings.position_embeddings.weight
    assert not any(p is frozen for p in decay + no_decay)
    assert len(decay) + len(no_decay) == sum(1 for p in model.parameters() if p.requires_grad)


def test_build_optimizer_sets_decay_per_group():
    model = _model("bert")
    opt = build_optimizer(model, TrainConfig(weight_decay=0.05, lr=1e-3))
    decay, no_decay = decay_groups(model)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [len(decay), len(no_decay)]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_group_by_length_sorts_within_chunks_and_keeps_every_example():
    import torch

    from plmkit.training.loop import group_by_length

    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(1, 50, (100,), generator=torch.Generator().manual_seed(1))
    grouped = group_by_length(perm, lengths, chunk=20)
    assert sorted(grouped.tolist()) == list(range(100))
    for start in range(0, 100, 20):
        chunk = grouped[start:start + 20]
        assert set(chunk.tolist()) == set(perm[start:start + 20].tolist())  # chunks keep their members
        assert lengths[chunk].tolist() == sorted(lengths[chunk].tolist(), reverse=True)
