"""Every fast path of the training loop gives the plain path's loss within a stated tolerance (docs/pretraining.md,
"Speed"): fused AdamW (1e-5 relative, fp32), eager vs SDPA attention (1e-5, fp32, no dropout), the fused
cross-entropy (1e-6 loss, gradients to float32 rounding), the decoder fused into it (1e-6 loss in fp32), the sparse vs
full MLM head (1e-5), the sparse vs whole last layer (1e-6 loss, gradients 1e-4), bf16 autocast vs fp32 (first-step
loss within 2e-2 relative) and torch.compile vs eager (1e-4, slow). Also: the switches choose what they say on this
machine."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState

from plmkit.api import pretrain
from plmkit.config import ModelConfig, TrainConfig
from plmkit.errors import ConfigError
from plmkit.models import build_model
from plmkit.models.transformer import apply_fused_kernels, pick_attention, set_attention
from plmkit.objectives.base import (
    COMPILED_LOSS,
    block_attention_mask,
    fused_cross_entropy,
    linear_cross_entropy,
    summed_cross_entropy,
    use_compiled_loss,
)
from plmkit.objectives.mlm import MaskedLM, MLMConfig, SparseMaskedLM, prediction_index
from plmkit.training import loop
from plmkit.training.optim import build_optimizer

TOKENIZER = SimpleNamespace(pad_token_id=0, bos_token_id=1, eos_token_id=2)  # all build_model_config reads
CPU = torch.device("cpu")
STEPS = ["train.max_steps=4", "train.eval_every=0", "train.save_every=100", "train.lr_schedule=constant"]


def _bert(dropout: float = 0.0, arch: str = "bert"):
    cfg = ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=64,
                      vocab_size=64, dropout=dropout)
    return build_model(cfg, TOKENIZER, "masked_lm" if arch in ("bert", "roberta") else "causal_lm")


def _losses(metrics, run_dir) -> list[float]:
    return [row["loss"] for row in metrics(run_dir)]


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state, fixed by the first Accelerator's precision: reset it around a test
    that trains in another precision, before and after (so later tests get theirs)."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


# --- fused AdamW -----------------------------------------------------------------------------------------------------

def test_fused_optimizer_is_the_default_and_can_be_switched_off():
    model = _bert()
    assert build_optimizer(model, TrainConfig()).defaults["fused"] is True
    assert not build_optimizer(model, TrainConfig(fused_optimizer=False)).defaults["fused"]
    assert not build_optimizer(model, TrainConfig(), device="meta").defaults["fused"]  # no fused kernel there


def test_fused_adamw_gives_the_unfused_losses(debug_cfg, metrics, tmp_path):
    runs = {}
    for fused in (True, False):
        out = tmp_path / f"fused-{fused}"
        pretrain(debug_cfg("mlm", out, *STEPS, f"train.fused_optimizer={str(fused).lower()}"), show_progress=False)
        runs[fused] = _losses(metrics, out)
    assert len(runs[True]) == 4
    for a, b in zip(runs[True], runs[False]):
        assert math.isclose(a, b, rel_tol=1e-5), (runs[True], runs[False])
    assert runs[True][-1] != runs[True][0]  # the optimizer did move the weights


# --- attention -------------------------------------------------------------------------------------------------------

def test_auto_attention_picks_eager_on_a_cpu_only_with_attention_dropout():
    assert pick_attention(_bert(dropout=0.1), "auto", CPU, "bf16") == "eager"
    assert pick_attention(_bert(dropout=0.0), "auto", CPU, "bf16") == "sdpa"
    assert pick_attention(_bert(dropout=0.1), "auto", CPU, "bf16", doc_attention=True) == "sdpa"
    assert pick_attention(_bert(dropout=0.1), "sdpa", CPU, "fp32") == "sdpa"
    with pytest.raises(ConfigError, match="doc_attention"):
        pick_attention(_bert(), "eager", CPU, "fp32", doc_attention=True)


def test_auto_attention_on_cuda_wants_flash_attn_installed_and_half_precision(monkeypatch):
    cuda = torch.device("cuda")  # only the device type is read: no GPU needed
    model = _bert(dropout=0.1)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "flash_attn" else None)
    assert pick_attention(model, "auto", cuda, "bf16") == "flash_attention_2"
    assert pick_attention(model, "auto", cuda, "fp32") == "sdpa"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert pick_attention(model, "auto", cuda, "bf16") == "sdpa"


def test_eager_attention_gives_the_sdpa_loss_and_gradients():
    torch.manual_seed(0)
    ids = torch.randint(5, 64, (4, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0  # one padded row: the mask must act the same in both
    results = {}
    for name in ("sdpa", "eager"):
        torch.manual_seed(1)  # the same weights for both
        model = _bert(dropout=0.0)
        assert set_attention(model, name) == name
        model.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        results[name] = (loss.item(), model.bert.embeddings.word_embeddings.weight.grad.clone())
    assert math.isclose(results["sdpa"][0], results["eager"][0], rel_tol=1e-5)
    torch.testing.assert_close(results["sdpa"][1], results["eager"][1], rtol=1e-4, atol=1e-6)


def test_loop_trains_with_the_attention_it_reports(debug_cfg, metrics, tmp_path):
    """The same run with train.attention=sdpa and =eager (auto's choice on a CPU with dropout): equal losses without
    dropout; both train."""
    runs = {}
    for name in ("sdpa", "eager"):
        out = tmp_path / name
        pretrain(debug_cfg("mlm", out, *STEPS, "model.dropout=0.0", f"train.attention={name}"), show_progress=False)
        runs[name] = _losses(metrics, out)
    for a, b in zip(runs["sdpa"], runs["eager"]):
        assert math.isclose(a, b, rel_tol=1e-5), runs


def test_fused_kernels_do_nothing_on_a_cpu():
    model = _bert(arch="llama")
    assert apply_fused_kernels(model, CPU) == []


# --- the masked-LM head and its loss ------------------------------------------------------------------------------

@pytest.fixture(params=["compiled", "chunks"])
def loss_kernel(request):
    """fused_cross_entropy with its compiled kernel (the default on a CPU) and with the chunked eager path."""
    use_compiled_loss(request.param == "compiled")
    yield request.param
    use_compiled_loss(True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cross_entropy_matches_cross_entropy(dtype, loss_kernel):
    torch.manual_seed(0)
    logits = (torch.randn(150, 97) * 3).to(dtype)  # 150 rows: more than two chunks of 64, the last one short
    targets = torch.randint(0, 97, (150,))
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    fused = fused_cross_entropy(a, targets)
    plain = torch.nn.functional.cross_entropy(b.float(), targets, reduction="sum")
    assert fused.dtype == torch.float32
    assert math.isclose(fused.item(), plain.item(), rel_tol=1e-6)
    (fused * 0.37).backward()
    (plain * 0.37).backward()
    assert a.grad.dtype == dtype
    # both gradients are float32 values rounded once to the logits' dtype
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 8e-3, "atol": 1e-5}
    torch.testing.assert_close(a.grad, b.grad, **tol)
    with torch.no_grad():  # the evaluation path computes no gradient
        assert math.isclose(fused_cross_entropy(logits, targets).item(), plain.item(), rel_tol=1e-6)
    assert fused_cross_entropy(logits[:0], targets[:0]).item() == 0.0


def test_fused_cross_entropy_skips_ignored_rows_as_cross_entropy_does(loss_kernel):
    """Rows whose target is -100 (a causal LM's last position, padding) add no loss and get a zero gradient, in a
    chunk with kept rows and in a chunk of ignored rows only."""
    torch.manual_seed(0)
    logits = (torch.randn(150, 97) * 3).to(torch.bfloat16)
    targets = torch.randint(0, 97, (150,))
    targets[[0, 5, 63, 140]] = -100
    targets[64:128] = -100  # the second chunk of 64 rows: nothing kept
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    fused = fused_cross_entropy(a, targets)
    plain = torch.nn.functional.cross_entropy(b.float(), targets, ignore_index=-100, reduction="sum")
    assert math.isclose(fused.item(), plain.item(), rel_tol=1e-6)
    fused.backward()
    plain.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=8e-3, atol=1e-5)
    assert not a.grad[targets == -100].any()
    with torch.no_grad():
        assert math.isclose(fused_cross_entropy(logits, targets).item(), plain.item(), rel_tol=1e-6)


def test_summed_cross_entropy_counts_and_sums_the_kept_positions():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)  # (B, T, V)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, -1] = -100
    loss, count = summed_cross_entropy(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), reduction="sum")
    assert count.item() == 18 and math.isclose(loss.item(), expected.item(), rel_tol=1e-6)


def test_compiled_loss_is_used_and_falls_back_to_the_chunks_when_it_cannot_compile(monkeypatch):
    logits = torch.randn(70, 13, requires_grad=True)
    targets = torch.randint(0, 13, (70,))
    expected = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
    monkeypatch.setitem(COMPILED_LOSS, "function", None)
    monkeypatch.setitem(COMPILED_LOSS, "failed", None)
    assert math.isclose(fused_cross_entropy(logits, targets).item(), expected, rel_tol=1e-6)
    assert COMPILED_LOSS["function"] is not None  # compiled, and kept for the next call

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setitem(COMPILED_LOSS, "function", None)
    with pytest.warns(UserWarning, match="could not be compiled.*no working C"):
        assert math.isclose(fused_cross_entropy(logits, targets).item(), expected, rel_tol=1e-6)
    assert COMPILED_LOSS["failed"] == "no working C++ compiler"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: the chunks run from now on
        assert math.isclose(fused_cross_entropy(logits, targets).item(), expected, rel_tol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_linear_cross_entropy_gives_the_unfused_loss_and_gradients(precision, bias, loss_kernel):
    """The decoder and the loss in one step: the loss of `fused_cross_entropy(linear(x))` within 1e-6 relative
    (fp32; 1e-3 under bf16 autocast, where the bias is added in float32 rather than bf16), and the gradients of the
    input, weight and bias (scaled by the upstream gradient) within float32 / bf16 rounding."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 97, bias=bias)
    x = torch.randn(150, 24)
    targets = torch.randint(0, 97, (150,))
    targets[[3, 70]] = -100
    runs = []
    for fused in (False, True):
        linear.zero_grad()
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = (linear_cross_entropy(inputs, linear, targets) if fused
                    else fused_cross_entropy(linear(inputs), targets))
        (loss * 0.37).backward()
        runs.append((loss.item(), inputs.grad, *(p.grad.clone() for p in linear.parameters())))
    (plain, *plain_grads), (fused, *fused_grads) = runs
    assert math.isclose(fused, plain, rel_tol=1e-6 if precision == "fp32" else 1e-3)
    for a, b in zip(fused_grads, plain_grads):
        assert a.dtype == torch.float32
        if precision == "fp32":
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        else:  # products rounded to bf16 on both sides, in another order: within 1% of the tensor's largest
            assert (a - b).abs().max() <= 1e-2 * b.abs().max()
    with torch.no_grad():  # evaluation: the unfused path
        assert math.isclose(linear_cross_entropy(x, linear, targets).item(),
                            fused_cross_entropy(linear(x), targets).item(), rel_tol=1e-6)


def test_linear_cross_entropy_falls_back_to_the_chunks_when_the_kernel_cannot_compile(monkeypatch):
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 13)
    x = torch.randn(70, 8, requires_grad=True)
    targets = torch.randint(0, 13, (70,))
    expected = torch.nn.functional.cross_entropy(linear(x), targets, reduction="sum")
    expected.backward()
    want = x.grad.clone(), linear.weight.grad.clone(), linear.bias.grad.clone()
    x.grad = linear.weight.grad = linear.bias.grad = None

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no working C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setitem(COMPILED_LOSS, "function", None)
    monkeypatch.setitem(COMPILED_LOSS, "failed", None)
    with pytest.warns(UserWarning, match="could not be compiled"):
        loss = linear_cross_entropy(x, linear, targets)  # compiling fails inside the fused step: chunks, bias added
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-6)
    loss.backward()
    for got, wanted in zip((x.grad, linear.weight.grad, linear.bias.grad), want):
        torch.testing.assert_close(got, wanted, rtol=1e-5, atol=1e-6)


def test_fused_cross_entropy_backward_runs_once():
    """Its gradient is scaled in place: a second backward through the same graph is refused, not wrong."""
    logits = torch.randn(4, 9, requires_grad=True)
    loss = fused_cross_entropy(logits, torch.tensor([0, 1, 2, 3])) * 0.5
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()


@pytest.mark.parametrize(("sparse_head", "fused_loss"), [(True, True), (True, False), (False, True), (False, False)])
def test_mlm_head_and_loss_switches_give_the_same_loss(sparse_head, fused_loss, bert_tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bert", hidden_size=32, num_layers=2, num_heads=2,
                                    max_position_embeddings=64, dropout=0.0), bert_tokenizer, "masked_lm")
    ids = torch.randint(5, len(bert_tokenizer), (4, 32))
    plain = MaskedLM(MLMConfig(sparse_head=False, fused_loss=False), bert_tokenizer, seed=13)
    batch = plain.collate([{"input_ids": ids[i], "index": i} for i in range(4)])
    reference = model(**batch).loss.item()  # transformers' own masked-LM loss (mean)
    obj = MaskedLM(MLMConfig(sparse_head=sparse_head, fused_loss=fused_loss), bert_tokenizer, seed=13)
    out = obj.loss(obj.wrap(model), batch)
    assert math.isclose((out.loss_sum / out.num_targets).item(), reference, rel_tol=1e-5)
    assert obj.head_fraction == (0.15 if sparse_head else 1.0)  # what MFU counts


@pytest.mark.parametrize(("arch", "attention", "documents"),
                         [("bert", "sdpa", False), ("bert", "sdpa", True), ("bert", "eager", False),
                          ("roberta", "sdpa", True), ("roberta", "eager", False)])
def test_sparse_last_layer_gives_the_whole_layers_loss_and_gradients(arch, attention, documents):
    """The last layer at the predicted positions only: loss within 1e-6 relative, every gradient within 1e-4 of its
    tensor's largest (key biases, whose true gradient is 0 under softmax, excepted), with and without per-document
    masks."""
    torch.manual_seed(0)
    model = _bert(arch=arch)  # 2 layers: the first runs whole, the last (sparse or not) is compared
    set_attention(model, attention)
    ids = torch.randint(5, 64, (3, 32))
    labels = torch.full_like(ids, -100)
    keep = torch.rand(3, 32) < 0.2
    keep[1] = False  # a row with nothing to predict
    labels[keep] = ids[keep]
    mask = block_attention_mask(torch.randint(0, 3, (3, 32)).sort(1).values, causal=False) if documents else None
    runs = []
    for sparse_last_layer in (False, True):
        module = SparseMaskedLM(model, sparse_last_layer=sparse_last_layer)
        assert module.sparse_last_layer == sparse_last_layer
        model.zero_grad()
        loss, count = module(ids, labels, attention_mask=mask)
        loss.backward()
        runs.append((loss.item(), count.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (whole, count, grads), (sparse, sparse_count, sparse_grads) = runs
    assert sparse_count == count == keep.sum()
    assert math.isclose(sparse, whole, rel_tol=1e-6)
    for name, grad in grads.items():
        if not name.endswith("key.bias"):
            assert (sparse_grads[name] - grad).abs().max() <= 1e-4 * grad.abs().max(), name


def test_sparse_last_layer_trains_with_dropout_and_counts_its_flops(bert_tokenizer):
    torch.manual_seed(0)
    model = _bert(dropout=0.1)
    set_attention(model, "eager")
    obj = MaskedLM(MLMConfig(), bert_tokenizer, seed=3)
    module = obj.wrap(model)
    assert module.sparse_last_layer
    ids = torch.randint(5, 64, (4, 32))
    labels = torch.full_like(ids, -100)
    labels[:, ::5] = ids[:, ::5]
    with torch.no_grad():
        reference = SparseMaskedLM(model, sparse_last_layer=False)(ids, labels)[0].item()
    losses = [module(ids, labels)[0] for _ in range(2)]
    assert losses[0].item() != losses[1].item()  # dropout draws new masks in the sparse layer too
    assert all(math.isclose(loss.item(), reference, rel_tol=0.1) for loss in losses)
    losses[0].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.endswith("position_ids"))
    assert module.extra_flops_per_token(32) < 0


def test_sparse_last_layer_stays_off_where_it_cannot_run(bert_tokenizer):
    """The whole last layer runs when the switch is off, without the sparse head, and with an attention
    implementation the sparse layer does not call."""
    model = _bert()
    assert not SparseMaskedLM(model, sparse_last_layer=False).sparse_last_layer
    assert not SparseMaskedLM(model, sparse=False).sparse_last_layer
    assert SparseMaskedLM(model).sparse_last_layer
    model.config._attn_implementation = "flex_attention"
    assert not SparseMaskedLM(model).sparse_last_layer
    assert SparseMaskedLM(model).extra_flops_per_token(32) == 0


def test_compiled_masked_lm_stops_recompiling_as_the_masked_count_changes():
    """Each batch masks another number of positions. Compiled, the loss must become shape-generic after a few
    counts (dynamo's automatic dynamic shapes); the chunked loss's loop over rows made each count a new graph."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    wrapper = SparseMaskedLM(_bert())
    wrapper.compile()
    gen = torch.Generator().manual_seed(0)

    def step(count: int) -> None:
        ids = torch.randint(5, 64, (2, 32), generator=gen)
        labels = torch.full_like(ids, -100)
        labels.view(-1)[torch.randperm(64, generator=gen)[:count]] = 7
        loss_sum, num = wrapper(ids, labels)
        assert num.item() == count and math.isfinite(loss_sum.item())
        loss_sum.backward()

    for count in (3, 4, 5):
        step(count)
    graphs = counters["stats"]["unique_graphs"]
    for count in range(6, 13):
        step(count)
    assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()


# --- precision -------------------------------------------------------------------------------------------------------

def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loop.resolve_precision("fp32") == "fp32" and loop.resolve_precision("fp16") == "fp16"
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    assert loop.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    assert loop.resolve_precision("auto") == "fp32"


def test_bf16_autocast_first_step_loss_within_2pct_of_fp32(debug_cfg, metrics, tmp_path, fresh_accelerator_state,
                                                           monkeypatch, capsys, squash):
    """Also: bf16 asked for on a CPU that emulates it (its matmul probes far slower than fp32's) is warned about."""
    monkeypatch.setattr(loop, "half_precision_slowdown", lambda precision: 25.0)
    first = {}
    for precision in ("fp32", "bf16"):
        AcceleratorState._reset_state(True)
        out = tmp_path / precision
        pretrain(debug_cfg("mlm", out, "train.max_steps=1", "train.eval_every=0", f"train.precision={precision}"),
                 show_progress=False)
        first[precision] = _losses(metrics, out)[0]
        warned = squash("train.precision is bf16, but this CPU runs bf16 matmuls 25x slower than fp32") in squash(
            capsys.readouterr().err)
        assert warned == (precision == "bf16")
    assert first["fp32"] != first["bf16"]  # bf16 did run: its rounding shows
    assert math.isclose(first["bf16"], first["fp32"], rel_tol=2e-2), first


# --- torch.compile ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_compiled_loop_gives_the_eager_losses(debug_cfg, metrics, tmp_path):
    """torch.compile vs eager, no dropout (compiled dropout draws other random numbers): losses within 1e-4, and the
    checkpoint and final/ keep the eager parameter names."""
    from torch._dynamo.utils import counters

    counters.clear()
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        pretrain(debug_cfg("mlm", out, *STEPS, "model.dropout=0.0", f"train.compile={str(compiled).lower()}"),
                 show_progress=False)
        runs[compiled] = _losses(metrics, out)
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile the training module
    for a, b in zip(runs[False], runs[True]):
        assert math.isclose(a, b, rel_tol=1e-4), runs
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "compile-True" / "final" / "model.safetensors").keys()
    assert keys == load_file(tmp_path / "compile-False" / "final" / "model.safetensors").keys()
    assert not any("_orig_mod" in k for k in keys)


def test_tf32_defaults_on_under_reduced_precision_only():
    """train.tf32 null: TF32 for the float32 products of a bf16/fp16 run (more precise than those dtypes), never
    silently for an fp32 run; true or false decide."""
    assert loop.wants_tf32(None, "bf16") and loop.wants_tf32(None, "fp16")
    assert not loop.wants_tf32(None, "fp32")
    assert loop.wants_tf32(True, "fp32") and not loop.wants_tf32(False, "bf16")


def test_sdpa_backends_restrict_the_kernel_and_a_kernel_that_cannot_run_is_named(debug_cfg, metrics, tmp_path):
    """train.sdpa_backends=[math] gives torch's own choice's losses (no dropout); [flash] with attention dropout
    (which the CPU's flash kernel lacks) stops with a ConfigError naming the setting, not torch's bare message."""
    runs = {}
    for name, backends in (("auto", "null"), ("math", "[math]")):
        out = tmp_path / name
        pretrain(debug_cfg("mlm", out, *STEPS, "model.dropout=0.0", "train.attention=sdpa",
                           f"train.sdpa_backends={backends}"), show_progress=False)
        runs[name] = _losses(metrics, out)
    for a, b in zip(runs["auto"], runs["math"], strict=True):
        assert math.isclose(a, b, rel_tol=1e-5), runs
    with pytest.raises(ConfigError, match=r"train.sdpa_backends=\['flash'\]"):
        pretrain(debug_cfg("mlm", tmp_path / "flash", *STEPS, "model.dropout=0.1", "train.attention=sdpa",
                           "train.sdpa_backends=[flash]"), show_progress=False)
    with pytest.raises(ConfigError, match=r"train.sdpa_backends=\['cudnn'\]"):  # a backend a CPU does not have
        pretrain(debug_cfg("mlm", tmp_path / "cudnn", *STEPS, "train.attention=sdpa",
                           "train.sdpa_backends=[cudnn]"), show_progress=False)


@pytest.mark.parametrize("backends", ["[flash, fast]", "[]"])
def test_sdpa_backends_names_are_checked(debug_cfg, tmp_path, backends):
    with pytest.raises(ConfigError, match="train.sdpa_backends"):
        debug_cfg("mlm", tmp_path, f"train.sdpa_backends={backends}")


def test_compile_mode_reaches_torch_compile(debug_cfg, tmp_path, monkeypatch):
    """train.compile_mode is passed to torch.compile as its mode (default: torch's default, mode None)."""
    modes = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: modes.append(kw.get("mode")))
    for mode in ("default", "reduce-overhead"):
        pretrain(debug_cfg("mlm", tmp_path / mode, "train.max_steps=1", "train.eval_every=0", "train.compile=true",
                           f"train.compile_mode={mode}"), show_progress=False)
    assert modes == [None, "reduce-overhead"]
    with pytest.raises(ConfigError, match="train.compile_mode"):
        debug_cfg("mlm", tmp_path / "x", "train.compile_mode=fastest")


@pytest.mark.parametrize(("sparse_last_layer", "documents"), [(True, False), (True, True), (False, False)])
def test_prediction_index_from_the_collate_gives_one_graph_and_the_same_loss(sparse_last_layer, documents):
    """With the predicted positions computed where the labels are (the collate, on the CPU), the masked LM selects
    them with no data-dependent shape: dynamo traces it whole (no graph break, so nothing waits for a GPU), and
    the loss and gradients equal those of the positions found from the labels in the forward pass."""
    torch.manual_seed(0)
    model = _bert()
    set_attention(model, "sdpa")
    module = SparseMaskedLM(model, sparse_last_layer=sparse_last_layer)
    ids = torch.randint(5, 64, (3, 32))
    labels = torch.where(torch.rand(3, 32) < 0.2, ids, torch.full_like(ids, -100))
    mask = block_attention_mask(torch.randint(0, 3, (3, 32)).sort(1).values, causal=False) if documents else None
    runs = []
    for index in ({}, prediction_index(labels)):
        model.zero_grad()
        loss, count = module(ids, labels, attention_mask=mask, **index)
        loss.backward()
        runs.append((loss.item(), count.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert runs[0][:2] == runs[1][:2]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2], strict=True))
    torch._dynamo.reset()
    with_index = torch._dynamo.explain(module)(ids, labels, attention_mask=mask, **prediction_index(labels))
    assert with_index.graph_break_count == 0
    torch._dynamo.reset()
    assert torch._dynamo.explain(module)(ids, labels, attention_mask=mask).graph_break_count > 0  # what it avoids


def test_collating_workers_default_to_two_for_pretraining_on_cuda_only():
    objective, task = SimpleNamespace(), SimpleNamespace(metrics=lambda outputs: {})  # a task scores predictions
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert loop.workers_for(None, cuda, objective) == 2
    assert loop.workers_for(None, cpu, objective) == 0 and loop.workers_for(None, cuda, task) == 0
    assert loop.workers_for(3, cpu, task) == 3 and loop.workers_for(0, cuda, objective) == 0
