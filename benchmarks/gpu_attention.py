"""Which attention kernel torch's SDPA runs for a BERT-base layer's shapes, eager and under torch.compile, with and
without attention dropout: a training step (forward and backward) recorded with torch.profiler, and each case's
kernels named by family (cuDNN, flash, memory-efficient, or the unfused "math" formula: batched matrix products and a
separate softmax). A GPU profile of the BERT-base benchmark (benchmarks/README.md) showed the math formula under
torch.compile with dropout 0.1; this says in seconds whether that is SDPA's choice, and whether limiting SDPA to
its fused kernels (train.sdpa_backends) avoids it.

    python benchmarks/gpu_attention.py                 # on a CUDA GPU, bf16
    python benchmarks/gpu_attention.py --device cpu    # a smoke run of the script

Prints one JSON object on one stdout line: per case, the kernel family, the time of a step, and the kernels.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile


def family(names: list[str]) -> str:
    text = " ".join(names).lower()
    for key, label in (("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "memory-efficient"),
                       ("efficient", "memory-efficient")):
        if key in text:
            return label
    return "math" if ("bmm" in text or "gemm" in text or "softmax" in text) else "unknown"


def attention(q, k, v, p: float):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=p)


def case(device: str, dtype: torch.dtype, p: float, compiled: bool, shape: tuple[int, int, int, int],
         fused_only: bool = False) -> dict:
    """One case; `fused_only`: SDPA limited to the fused kernels (train.sdpa_backends=[flash, efficient, cudnn])."""
    torch._dynamo.reset()
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    fn = torch.compile(attention) if compiled else attention
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    kernels = (lambda: sdpa_kernel(backends)) if fused_only else nullcontext
    result = {"dropout": p, "compile": compiled, "fused_only": fused_only}

    def step():
        with kernels():
            fn(q, k, v, p).sum().backward()

    try:
        step()
    except RuntimeError as exc:  # no fused kernel for this case
        return {**result, "family": None, "error": str(exc).strip().splitlines()[0][:200]}

    for _ in range(2):  # warm up (the step above compiled)
        step()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(10):
        step()
    sync()
    ms = (time.perf_counter() - start) / 10 * 1e3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync()
    if device == "cuda":
        names = sorted({e.key for e in prof.key_averages() if e.self_device_time_total > 0})
    else:
        names = sorted({e.key for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0})
    return {**result, "family": family(names), "step_ms": round(ms, 3), "kernels": names[:12]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="32,12,512,64", help="batch, heads, sequence, head size (BERT-base, 512)")
    args = parser.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    cases = [case(args.device, dtype, p, compiled, shape) for p in (0.0, 0.1) for compiled in (False, True)]
    cases.append(case(args.device, dtype, 0.1, True, shape, fused_only=True))
    print(json.dumps({"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                      "torch": torch.__version__, "shape": shape, "dtype": str(dtype), "cases": cases}))


if __name__ == "__main__":
    main()
