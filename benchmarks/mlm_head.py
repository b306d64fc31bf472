"""Masked-LM training step with the LM head on every position (transformers' own forward) vs only on the predicted
positions (plmkit's SparseMaskedLM), and with the last layer too at the predicted positions only
(objective.sparse_last_layer, the default); same model, same batches, taking turns, in one process.

    python benchmarks/mlm_head.py                      # the quickstart's model size on the CPU
    python benchmarks/mlm_head.py --hidden 256 --steps 20 --device cuda
Prints one JSON line: seconds per step for each, the ratios to the full head, and the largest loss differences.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch

from plmkit.config import ModelConfig, TokenizerConfig, TokenizerTrainConfig
from plmkit.models import build_model
from plmkit.objectives.mlm import MaskedLM, MLMConfig, SparseMaskedLM
from plmkit.quickstart import stdlib_paragraphs
from plmkit.tokenization import train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    docs = stdlib_paragraphs()[:4000]
    tok_cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="wordpiece", vocab_size=args.vocab))
    with tempfile.TemporaryDirectory() as folder:  # no fixed path: two runs at once, or another user's, do not clash
        tokenizer = train_tokenizer(docs, tok_cfg, "bert", folder, show_progress=False)
    ids = tokenizer("\n".join(docs), add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bert", hidden_size=args.hidden, num_layers=args.layers,
                                    num_heads=max(1, args.hidden // 64), max_position_embeddings=args.block,
                                    dropout=0.0), tokenizer, "masked_lm").to(args.device)
    objective = MaskedLM(MLMConfig(), tokenizer, seed=0)
    sparse = SparseMaskedLM(model, sparse_last_layer=False)
    sparse_layer = SparseMaskedLM(model)
    per_batch = args.batch * args.block
    ids = ids * -(-per_batch * args.steps // len(ids))  # repeat the text when the run needs more tokens than it has
    batches = []
    for step in range(args.steps):
        chunk = ids[step * per_batch:(step + 1) * per_batch]
        examples = [{"input_ids": torch.tensor(chunk[i * args.block:(i + 1) * args.block]), "index": i}
                    for i in range(args.batch)]
        batches.append({k: v.to(args.device) for k, v in objective.collate(examples).items()})

    def full_step(batch):
        out = model(**batch)
        return out.loss * (batch["labels"] != -100).sum()

    def sparse_step(batch):
        return sparse(**batch)[0]

    def sparse_layer_step(batch):
        return sparse_layer(**batch)[0]

    steps = {"full": full_step, "sparse": sparse_step, "sparse_layer": sparse_layer_step}
    timings, losses = {name: [] for name in steps}, {name: [] for name in steps}
    for fn in steps.values():  # warm-up
        fn(batches[0]).backward()
    for batch in batches:  # take turns, so drift in machine load hits all alike
        for name, fn in steps.items():
            model.zero_grad(set_to_none=True)
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = fn(batch)
            loss.backward()
            if args.device == "cuda":
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
            losses[name].append(loss.item())
    full, sparse_s, layer_s = (sorted(t)[len(t) // 2] for t in timings.values())
    result = {"device": args.device, "threads": torch.get_num_threads(), "hidden": args.hidden,
              "layers": args.layers, "vocab": len(tokenizer), "batch": args.batch, "block": args.block,
              "steps": args.steps, "full_head_s_per_step": round(full, 4), "sparse_head_s_per_step": round(sparse_s, 4),
              "sparse_last_layer_s_per_step": round(layer_s, 4),
              "speedup": round(full / sparse_s, 3), "speedup_with_last_layer": round(full / layer_s, 3),
              "max_rel_loss_diff": max(abs(a - b) / abs(a) for a, b in zip(losses["full"], losses["sparse"])),
              "max_rel_loss_diff_last_layer": max(abs(a - b) / abs(a)
                                                  for a, b in zip(losses["full"], losses["sparse_layer"]))}
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
