"""plmkit_sdpa and plmkit_sdpa_graph (models/compiled_sdpa.py, train.compiled_sdpa operator and graph): no mask
where there is no padding, and (operator) attention with dropout as one custom operator. They must give what SDPA
gives, the same dropout mask included, eager and compiled, and leave the random stream as SDPA leaves it."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend
from transformers import AutoModel, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel
from transformers.masking_utils import bidirectional_mask_function

from plmkit.models import compiled_sdpa
from plmkit.models.transformer import use_plmkit_sdpa

CONFIG = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "max_position_embeddings": 64, "attention_probs_dropout_prob": 0.3}


def two_steps(attention: str, backend: str | None = None):
    """Two forward/backward passes of a tiny BERT in training mode: the losses, a query weight's gradient, the
    next number the global generator gives, and the compile counter (with `backend`)."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**CONFIG))
    model.set_attn_implementation(attention)
    model.train()
    counter = CompileCounterWithBackend(backend) if backend else None
    run = torch.compile(model, backend=counter) if backend else model
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    losses = []
    for _ in range(2):
        out = run(input_ids=ids, labels=ids)
        out.loss.backward()
        losses.append(out.loss.item())
    grad = model.bert.encoder.layer[0].attention.self.query.weight.grad
    return losses, grad, torch.rand(1).item(), counter


def test_same_losses_gradients_and_random_stream_as_sdpa_eager_and_compiled():
    name = compiled_sdpa.register("operator")
    plain_losses, plain_grad, plain_next, _ = two_steps("sdpa")
    op_losses, op_grad, op_next, _ = two_steps(name)
    compiled_losses, compiled_grad, compiled_next, counter = two_steps(name, "aot_eager")
    assert op_losses == plain_losses and compiled_losses == plain_losses
    assert torch.equal(op_grad, plain_grad) and torch.equal(compiled_grad, plain_grad)
    assert op_next == plain_next == compiled_next  # the backward pass restored the generator it reseeded
    assert counter.frame_count == 1  # one graph: the operator breaks nothing
    ops = {str(node.target) for graph in counter.graphs for node in graph.graph.nodes}
    assert "plmkit.sdpa_dropout" in ops
    assert not any("scaled_dot_product_attention" in op for op in ops)  # attention is not traced as SDPA


def test_operator_with_a_mask_matches_sdpa_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 8, 4, requires_grad=True) for _ in range(3))
    mask = torch.ones(8, 8, dtype=torch.bool).tril()[None, None]  # (1, 1, T, T): a causal pattern as a mask
    grad = torch.randn(2, 3, 8, 4)

    def gradients(attend):
        torch.manual_seed(7)
        out = attend()
        return (out, *torch.autograd.grad(out, (q, k, v), grad))

    plain = gradients(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.5, scale=0.4))
    op = gradients(lambda: torch.ops.plmkit.sdpa_dropout(q, k, v, mask, 0.5, False, 0.4)[0])
    for a, b in zip(plain, op, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert (plain[0] == 0).any()  # dropout did drop: the masks, not just the formula, agree


def test_switch_applies_only_to_sdpa_under_compile_on_cuda(monkeypatch):
    cuda = torch.device("cuda")  # only its type is read: no GPU needed
    monkeypatch.setattr(compiled_sdpa, "generator_state_fits", lambda device: True)

    def switched(mode="operator", compiled=True, device=cuda, attention="sdpa"):
        model = BertForMaskedLM(BertConfig(**CONFIG))
        model.set_attn_implementation(attention)
        return use_plmkit_sdpa(model, mode, compiled, device)

    assert switched() == compiled_sdpa.NAME
    assert switched("graph") == compiled_sdpa.GRAPH_NAME
    assert switched("off") is None
    assert switched(compiled=False) is None
    assert switched(device=torch.device("cpu")) is None
    assert switched(attention="eager") is None
    monkeypatch.setattr(compiled_sdpa, "generator_state_fits", lambda device: False)
    with pytest.warns(UserWarning, match="generator state"):  # the operator needs it; the mask change does not
        assert switched() == compiled_sdpa.GRAPH_NAME


def test_cpu_generator_state_fits():
    assert compiled_sdpa.generator_state_fits(torch.device("cpu"))
    assert not compiled_sdpa.generator_state_fits(torch.device("meta"))


def attention_masks(model) -> list:
    """The attn_mask argument of each attention call in the graph torch.compile traces for one training step."""
    counter = CompileCounterWithBackend("aot_eager")
    ids = torch.randint(0, 100, (2, 16))
    torch.compile(model.train(), backend=counter)(input_ids=ids, labels=ids).loss.backward()
    masks = []
    for graph in counter.graphs:
        for node in graph.graph.nodes:
            if "scaled_dot_product_attention" in str(node.target) or "plmkit" in str(node.target):
                masks.append(node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask"))
    return masks


@pytest.mark.parametrize("mode", ["operator", "graph"])
@pytest.mark.parametrize("decoder", [False, True])
def test_no_mask_without_padding_under_compile(decoder, mode):
    """transformers 5.17 builds an all-true (encoder) or causal (decoder) mask while tracing; plmkit_sdpa passes
    none, and a decoder's SDPA call then says is_causal (checked here as the same loss as the masked model's)."""
    torch.manual_seed(0)
    if decoder:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                           attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0))
    else:
        model = BertForMaskedLM(BertConfig(**CONFIG))
    model.set_attn_implementation(compiled_sdpa.register(mode))
    masks = attention_masks(model)
    assert masks and all(mask is None for mask in masks)
    ids = torch.randint(0, 100, (2, 16))
    model.eval()
    plain = model(input_ids=ids, labels=ids).loss
    model.set_attn_implementation("eager")  # an explicit (B, 1, T, T) mask
    assert torch.allclose(model(input_ids=ids, labels=ids).loss, plain, atol=1e-6)


@pytest.mark.parametrize("mode", ["operator", "graph"])
def test_a_padded_batch_keeps_its_mask_and_transformers_sdpa(mode):
    """With a padding mask the call stays transformers' SDPA, mask included: the H200 took the unfused formula for
    attention with a mask and dropout eagerly, slower than compiled."""
    model = BertForMaskedLM(BertConfig(**CONFIG))
    model.set_attn_implementation(compiled_sdpa.register(mode))
    counter = CompileCounterWithBackend("aot_eager")
    ids, padding = torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long)
    padding[0, -4:] = 0
    torch.compile(model.train(), backend=counter)(input_ids=ids, attention_mask=padding, labels=ids).loss.backward()
    targets = [str(node.target) for graph in counter.graphs for node in graph.graph.nodes]
    assert not any("plmkit" in target for target in targets)
    sdpa = [node for graph in counter.graphs for node in graph.graph.nodes
            if "scaled_dot_product_attention" in str(node.target)]
    assert sdpa and all((node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")) is not None
                        for node in sdpa)


def test_mask_function_keeps_padding_and_document_masks():
    padding = torch.ones(2, 8, dtype=torch.bool)
    padding[0, -3:] = False
    for causal in (False, True):
        args = {"batch_size": 2, "q_length": 8, "kv_length": 8, "attention_mask": padding,
                "allow_is_causal_skip": causal, "allow_is_bidirectional_skip": not causal}
        if not causal:
            args["mask_function"] = bidirectional_mask_function
        mask = compiled_sdpa.mask_forward(**args)
        assert mask is not None and not mask[0, 0, :, -3:].any() and mask[1].all() != causal
    assert compiled_sdpa.mask_forward(batch_size=2, q_length=8, kv_length=8, allow_is_causal_skip=True) is None
    assert compiled_sdpa.mask_forward(batch_size=2, q_length=8, kv_length=8, allow_is_causal_skip=False) is not None


@pytest.mark.parametrize("mode", ["operator", "graph"])
def test_exported_model_does_not_record_the_implementation(tmp_path, mode):
    model = BertForMaskedLM(BertConfig(**CONFIG))
    model.set_attn_implementation(compiled_sdpa.register(mode))
    model.save_pretrained(tmp_path)
    assert "plmkit" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config._attn_implementation in ("sdpa", "eager")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_evaluation_and_no_dropout_run_transformers_sdpa(dropout):
    """Without dropout (evaluation) the function is transformers' SDPA: the same output as the sdpa model's."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**{**CONFIG, "attention_probs_dropout_prob": dropout})).eval()
    ids = torch.randint(0, 100, (2, 16))
    plain = model(input_ids=ids).logits
    model.set_attn_implementation(compiled_sdpa.register("operator"))
    assert torch.equal(model(input_ids=ids).logits, plain)


def test_graph_mode_traces_sdpa_with_dropout_and_no_operator():
    """Mode graph: attention with dropout stays SDPA in the compiled graph (no operator, no mask, the dropout
    probability passed on), one graph, and the eager losses are SDPA's."""
    name = compiled_sdpa.register("graph")
    plain_losses, plain_grad, _, _ = two_steps("sdpa")
    graph_losses, graph_grad, _, _ = two_steps(name)
    assert graph_losses == plain_losses and torch.equal(graph_grad, plain_grad)
    losses, _, _, counter = two_steps(name, "aot_eager")
    assert counter.frame_count == 1 and losses == plain_losses
    nodes = [node for graph in counter.graphs for node in graph.graph.nodes]
    assert not any("plmkit" in str(node.target) for node in nodes)
    sdpa = [node for node in nodes if "scaled_dot_product_attention" in str(node.target)]
    assert len(sdpa) == CONFIG["num_hidden_layers"]
    for node in sdpa:
        assert (node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")) is None
        assert (node.args[4] if len(node.args) > 4 else node.kwargs.get("dropout_p")) == CONFIG[
            "attention_probs_dropout_prob"]


def test_register_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="operator or graph"):
        compiled_sdpa.register("off")
