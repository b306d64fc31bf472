"""Errors a user can fix: the API raises a PlmError subclass that says what to change; the CLI prints it as
one `error: ...` line on stderr and exits with status 2, without a traceback (unless `plm --debug`); a failed
run leaves no final/ folder.

The CLI cases run `plmkit.cli.main` in this process (the same code path as `python -m plmkit`, without paying
the import of torch and transformers per case); two cases also run a real `python -m plmkit` subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plmkit import load_config
from plmkit.api import pretrain
from plmkit.cli import main
from plmkit.errors import CompatibilityError, ConfigError, DataError, PlmError, TrainingError
from plmkit.training import checkpoint

ROOT = Path(__file__).resolve().parents[3]
MLM = ROOT / "configs" / "debug" / "mlm.yaml"


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _paths(path: Path) -> str:
    return f"data.paths={json.dumps([str(path)])}"


# Each case: tmp_path -> (config file, extra --set overrides, expected error class, regex for the message).
def _missing_file(tmp):
    return MLM, [_paths(tmp / "nope.txt")], DataError, r"nope\.txt'? does not exist.*data\.paths"


def _empty_corpus(tmp):
    f = _write(tmp / "empty.txt", "short\n\n   \n\t\nalso short\n\n\n")
    return MLM, [_paths(f)], DataError, r"no documents left.*data\.min_chars"


def _not_utf8(tmp):
    text = "A first paragraph that is long enough to keep.\n\nA second one, also long enough.\n"
    f = _write(tmp / "latin1.txt", text.encode() + "caf\u00e9 au lait\n".encode("latin-1"))
    return MLM, [_paths(f)], DataError, re.escape(f"{f}:4") + r": not valid UTF-8"


def _jsonl_without_text(tmp):
    f = _write(tmp / "docs.jsonl", '{"text": "A record that holds enough text to be kept."}\n'
                                   '{"body": "The text is under another key here."}\n')
    return MLM, [_paths(f)], DataError, re.escape(f"{f}:2") + r".*no 'text' field.*data\.text_field"


def _unknown_key(tmp):
    f = _write(tmp / "bad.yaml", MLM.read_text(encoding="utf-8") + "\nlog: {to: [jsonl], colour: blue}\n")
    return f, [], ConfigError, r"unknown config key 'log\.colour' \(" + re.escape(str(f))


def _block_size(tmp):
    return (MLM, ["data.block_size=128"], CompatibilityError,
            r"data\.block_size \(128\) exceeds the 64 positions.*model\.max_position_embeddings")


def _block_size_roberta(tmp):
    """RoBERTa numbers positions from pad id + 1: a trained tokenizer's pad id is 0, so 64 positions hold 63 tokens,
    which the early check (before any tokenizer work) knows as the later one does."""
    return (MLM, ["model.arch=roberta", "tokenizer.train.algorithm=bpe", "data.block_size=64"], CompatibilityError,
            r"data\.block_size \(64\) exceeds the 63 positions.*<= 63.*max_position_embeddings to >= 65")


def _span_block(tmp):
    """T5's span corruption reads more packed tokens than data.block_size: the error names both."""
    return (MLM.with_name("span_corruption.yaml"), ["objective.noise_density=0.95"], DataError,
            (r"not enough for one block of 469.*\(the 469 packed tokens that span_corruption turns into "
            r"data\.block_size 32 input tokens\)"))


def _vocab(tmp):
    pattern = r"300 tokens.*embeds only 100.*model\.vocab_size"
    return MLM, ["model.vocab_size=100"], CompatibilityError, pattern


def _existing_run(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "metrics.jsonl").write_text('{"step": 1}\n')
    return MLM, [], PlmError, r"already holds a run \(metrics\.jsonl\).*--resume.*--overwrite"


def _nan_loss(tmp):
    return MLM, ["train.lr=1e30"], TrainingError, r"the loss became (nan|inf).*lower train\.lr"


CASES = {
    "missing-data-file": _missing_file,
    "empty-corpus": _empty_corpus,
    "not-utf8": _not_utf8,
    "jsonl-without-text-field": _jsonl_without_text,
    "unknown-config-key": _unknown_key,
    "block-size-above-positions": _block_size,
    "block-size-above-roberta-positions": _block_size_roberta,
    "span-corruption-block": _span_block,
    "vocab-mismatch": _vocab,
    "existing-run-dir": _existing_run,
    "nan-loss": _nan_loss,
}


def _setup(case, tmp_path, shared_cache):
    config, extra, error, pattern = CASES[case](tmp_path)
    sets = [f"run.output_dir={tmp_path / 'run'}", f"data.cache_dir={shared_cache}", *extra]
    if not any(s.startswith("data.paths=") for s in sets):
        sets.append(_paths(ROOT / "tests" / "fixtures" / "tiny.txt"))
    return config, sets, error, pattern


@pytest.mark.parametrize("case", list(CASES))
def test_api_raises_a_plm_error(case, tmp_path, shared_cache):
    config, sets, error, pattern = _setup(case, tmp_path, shared_cache)
    with pytest.raises(error, match=pattern) as caught:
        pretrain(load_config(config, sets), show_progress=False)
    assert isinstance(caught.value, PlmError)
    assert not (tmp_path / "run" / "final").exists()
    assert not (tmp_path / "run" / ".final.tmp").exists()


def _main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.delenv("PLMKIT_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["plm", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def _assert_one_error_line(err: str, pattern: str) -> None:
    assert "Traceback" not in err
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert re.search(pattern, errors[0]), errors[0]


@pytest.mark.parametrize("case", list(CASES))
def test_cli_prints_one_line_and_exits_2(case, tmp_path, shared_cache, monkeypatch, capsys):
    config, sets, _, pattern = _setup(case, tmp_path, shared_cache)
    args = ["pretrain", str(config), "-q"] + [a for s in sets for a in ("--set", s)]
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 2
    assert out == ""  # no result JSON for a failed run
    _assert_one_error_line(err, pattern)
    assert not (tmp_path / "run" / "final").exists()


def test_existing_run_dir_is_accepted_with_overwrite(tmp_path, shared_cache, debug_cfg):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 7}\n')
    (run / "notes.txt").write_text("mine")
    result = pretrain(debug_cfg("mlm", run, "train.max_steps=2"), overwrite=True, show_progress=False)
    assert result.metrics["steps"] == 2 and (run / "final").is_dir()
    assert (run / "notes.txt").read_text() == "mine"  # --overwrite deletes only what a run writes


def _subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("PLMKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "plmkit", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_subprocess_error_is_one_line_with_status_2(tmp_path, shared_cache):
    config, sets, _, pattern = _setup("missing-data-file", tmp_path, shared_cache)
    proc = _subprocess("pretrain", str(config), "-q", *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    _assert_one_error_line(proc.stderr, pattern)


def test_subprocess_debug_shows_the_traceback(tmp_path, shared_cache):
    config, sets, _, _ = _setup("missing-data-file", tmp_path, shared_cache)
    proc = _subprocess("--debug", "pretrain", str(config), "-q", *[a for s in sets for a in ("--set", s)],
                       cwd=tmp_path)
    assert proc.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in proc.stderr
    assert "plmkit.errors.DataError" in proc.stderr and "does not exist" in proc.stderr


def test_a_loss_gone_bad_between_reads_names_its_first_step_and_saves_nothing(tmp_path, shared_cache):
    """The loop reads the loss only at logged or saved steps (a read waits for the device). The first step with a
    non-finite loss is kept on the device meanwhile: step 1's loss comes before any update, step 2's after an
    update at LR 1e30, and the read at step 3 (a checkpoint step) names step 2 and writes no checkpoint."""
    sets = [f"run.output_dir={tmp_path / 'run'}", f"data.cache_dir={shared_cache}",
            _paths(ROOT / "tests" / "fixtures" / "tiny.txt"), "train.lr=1e30", "train.warmup_steps=0",
            "train.max_steps=8", "train.log_every=5", "train.save_every=3", "train.eval_every=0"]
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at step 2: "):
        pretrain(load_config(MLM, sets), show_progress=False)
    assert checkpoint.latest(tmp_path / "run") is None
