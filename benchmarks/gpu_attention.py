"""Which attention kernel torch's SDPA runs for a BERT-base layer's shapes, eager and under torch.compile, with and
without attention dropout: a training step (forward and backward) recorded with torch.profiler, and each case's
kernels named by family (cuDNN, flash, memory-efficient, or the unfused "math" formula: batched matrix products and a
separate softmax). A GPU profile of the BERT-base benchmark (benchmarks/README.md) showed the math formula under
torch.compile with dropout 0.1; this says in seconds whether that is SDPA's choice, and whether limiting SDPA to
its fused kernels (train.sdpa_backends) avoids it.

    python benchmarks/gpu_attention.py                 # on a CUDA GPU, bf16, BERT-base's shapes
    python benchmarks/gpu_attention.py --shape 16,12,1024,64 --causal --dropout 0   # GPT-2 124M's
    python benchmarks/gpu_attention.py --device cpu --shape 2,2,64,16               # a smoke run of the script

Cases: eager with SDPA's own choice and limited to each backend (cudnn, flash, efficient, math), with and without
dropout; compiled with SDPA's choice; compiled with dropout limited to the fused backends; compiled with dropout
through plmkit's operator (train.compiled_sdpa=operator). A case that fails reports its error. With dropout, also
how far the operator and compiled SDPA (train.compiled_sdpa=graph) are from eager SDPA from the same seed
(`agreement`: the same dropout mask gives 0 or rounding). Prints one JSON object on one stdout line: per case the
kernel family, the step time, the achieved TFLOP/s and the kernels, or the error where no allowed kernel runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from plmkit.errors import ConfigError
from plmkit.models import compiled_sdpa  # noqa: F401 - registers torch.ops.plmkit.sdpa_dropout
from plmkit.models.transformer import sdpa_backends


def family(names: list[str]) -> str:
    text = " ".join(names).lower()
    for key, label in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "memory-efficient"),
                       ("efficient", "memory-efficient")):
        if key in text:
            return label
    return "math" if ("bmm" in text or "gemm" in text or "softmax" in text) else "unknown"


LIMITS = {"auto": None, "flash": ["flash"], "efficient": ["efficient"], "cudnn": ["cudnn"], "math": ["math"],
          "fused": ["flash", "efficient", "cudnn"], "operator": None}
"""What each case limits SDPA to, as train.sdpa_backends names (the loop's own `sdpa_backends`); auto: SDPA's
choice; operator: SDPA's choice inside plmkit's operator (plmkit.models.compiled_sdpa)."""


def attention(q, k, v, p: float, causal: bool):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)


def operator_attention(q, k, v, p: float, causal: bool):
    """What the loop runs with train.compiled_sdpa: SDPA inside plmkit's custom operator."""
    return torch.ops.plmkit.sdpa_dropout(q, k, v, None, p, causal, q.shape[-1] ** -0.5)[0]


def case(device: str, dtype: torch.dtype, p: float, compiled: bool, shape: tuple[int, int, int, int],
         backend: str = "auto", causal: bool = False) -> dict:
    """One training step of attention alone: its kernel family, time and achieved TFLOP/s (forward and backward,
    4 x B x H x T^2 x d forward, twice that backward, halved when causal)."""
    torch._dynamo.reset()
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    formula = operator_attention if backend == "operator" else attention
    fn = torch.compile(formula) if compiled else formula
    kernels = sdpa_backends(LIMITS[backend])
    result = {"backend": backend, "dropout": p, "compile": compiled, "causal": causal}

    def step():
        with kernels():
            fn(q, k, v, p, causal).sum().backward()

    try:
        step()
    except ConfigError as exc:  # no allowed kernel for this case: torch's own message
        return {**result, "family": None, "error": str(exc.__cause__ or exc).strip().splitlines()[0][:200]}
    except Exception as exc:  # noqa: BLE001 - any other failure is this case's result, not the end of the others
        text = str(exc).strip().splitlines()
        return {**result, "family": None, "error": f"{type(exc).__name__}: {text[0][:200] if text else ''}"}

    for _ in range(2):  # warm up (the step above compiled)
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(10):
        step()
    sync()
    seconds = (time.perf_counter() - start) / 10
    B, H, T, d = shape
    flops = 3 * 4 * B * H * T * T * d / (2 if causal else 1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync()
    if device == "cuda":
        names = sorted({e.key for e in prof.key_averages() if e.self_device_time_total > 0})
    else:
        names = sorted({e.key for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0})
    return {**result, "family": family(names), "step_ms": round(seconds * 1e3, 3),
            "tflops": round(flops / seconds / 1e12, 2), "kernels": names[:12]}


def agreement(device: str, dtype: torch.dtype, shape: tuple[int, int, int, int], p: float, causal: bool) -> dict:
    """How far plmkit's operator (train.compiled_sdpa=operator) and compiled SDPA (=graph) are from eager SDPA,
    each run from the same seed: the largest absolute difference over the output and the three gradients, next to
    the largest absolute value of eager's. 0 (or rounding) means the same dropout mask and the same kernel; a
    difference of the values' own size, another mask (another kernel, or inductor's own random numbers)."""
    cpu = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(shape, generator=cpu).to(device, dtype) for _ in range(4))

    def run(fn) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        torch.manual_seed(7)
        out = fn(*leaves, p, causal)
        out.backward(grad)
        return [out.detach().float()] + [t.grad.float() for t in leaves]

    torch._dynamo.reset()
    eager = run(attention)
    result = {"dropout": p, "eager_max_abs": round(max(float(t.abs().max()) for t in eager), 4)}
    for name, fn in (("operator", operator_attention), ("compiled", torch.compile(attention))):
        try:
            got = run(fn)
            result[f"{name}_max_diff"] = float(max((a - b).abs().max() for a, b in zip(eager, got, strict=True)))
        except Exception as exc:  # noqa: BLE001 - reported, like the cases' failures
            text = str(exc).strip().splitlines()
            result[f"{name}_max_diff"] = f"{type(exc).__name__}: {text[0][:200] if text else ''}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke run of the script")
    parser.add_argument("--shape", default="32,12,512,64", help="batch, heads, sequence, head size (BERT-base, 512)")
    parser.add_argument("--dropout", type=float, default=0.1, help="the attention dropout of the cases with one")
    parser.add_argument("--causal", action="store_true", help="causal attention (GPT-2: --shape 16,12,1024,64)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_attention.py: no CUDA device (torch.cuda.is_available() is false); --device cpu runs a smoke run",
              file=sys.stderr)
        sys.exit(3)
    try:
        shape = tuple(int(x) for x in args.shape.split(","))
    except ValueError:
        parser.error(f"--shape {args.shape!r}: give four integers, batch,heads,sequence,head_size")
    if len(shape) != 4:
        parser.error(f"--shape {args.shape!r}: give four integers, batch,heads,sequence,head_size")
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32

    def one(p: float, compiled: bool, backend: str = "auto") -> dict:
        return case(args.device, dtype, p, compiled, shape, backend, args.causal)

    drops = (0.0, args.dropout) if args.dropout > 0 else (0.0,)
    cases = [one(p, False, backend) for p in drops for backend in ("auto", "cudnn", "flash", "efficient", "math")]
    cases += [one(p, True) for p in drops]
    if args.dropout > 0:
        cases.append(one(args.dropout, True, "fused"))
        cases.append(one(args.dropout, True, "operator"))
    agree = agreement(args.device, dtype, shape, args.dropout, args.causal) if args.dropout > 0 else None
    print(json.dumps({"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                      "torch": torch.__version__, "shape": shape, "causal": args.causal, "dtype": str(dtype),
                      "cases": cases, "agreement": agree}))


if __name__ == "__main__":
    main()
