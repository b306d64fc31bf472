"""The static row of `plm compare` (compare(static_vectors=DIR)): a classifier over GloVe vectors trained on the
same examples as the transformer arms, scored with the same metric on the same validation file, in the table,
the Markdown and the runs; reuse; and the errors for tasks and folders it cannot take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from plmkit import api, load_config
from plmkit.compare import compare
from plmkit.embeddings import classify, load_embeddings_config
from plmkit.errors import PlmError

ROOT = Path(__file__).resolve().parents[3]
TRAIN, DEV = 40, 16


@pytest.fixture(scope="module")
def data(task_files, tmp_path_factory) -> tuple[Path, Path]:
    return task_files("classification", tmp_path_factory.mktemp("static-data"), n_train=TRAIN, n_dev=DEV)


@pytest.fixture(scope="module")
def static_dir(data, tmp_path_factory) -> Path:
    """GloVe vectors (dimension 16) trained on the texts of the training file, one paragraph each."""
    folder = tmp_path_factory.mktemp("static-vectors")
    texts = [line.split("\t")[0] for line in data[0].read_text().splitlines()[1:]]
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(texts * 3) + "\n", encoding="utf-8")
    cfg = load_embeddings_config(ROOT / "configs/embeddings/debug-glove.yaml", [
        f"run.output_dir={folder / 'run'}", f"data.paths=[{corpus}]", "data.validation_fraction=0",
        "data.dedup=false", "vocab.min_count=1", "embeddings.epochs=20"])
    return api.train_embeddings(cfg, show_progress=False).output_dir


class Draws:
    """The training examples each arm drew, by (arm, size, seed)."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.seen: dict[tuple, list] = {}
        finetune, warn, draw = api.finetune, api._warn_overlap, classify.draw_examples
        current: dict = {}

        def recording_finetune(cfg, **kwargs):
            current.update(size=kwargs.get("train_limit"), seed=cfg.run.seed)
            return finetune(cfg, **kwargs)

        def recording_warn(train_raw, *args):
            self.seen["pretrained", current["size"], current["seed"]] = [e.text for e in train_raw]
            return warn(train_raw, *args)

        def recording_draw(cfg, task, train_limit):
            train_raw, valid_raw, source = draw(cfg, task, train_limit)
            self.seen["static", train_limit, cfg.run.seed] = [e.text for e in train_raw]
            return train_raw, valid_raw, source

        mp.setattr(api, "finetune", recording_finetune)
        mp.setattr(api, "_warn_overlap", recording_warn)
        mp.setattr(classify, "draw_examples", recording_draw)


@pytest.fixture(scope="module")
def compared(data, static_dir, finetune_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-static") / "out"
    cfg = finetune_cfg("classification", *data, out, "train.epochs=2", "eval.patience=2", "train.head_lr=3e-2")
    with pytest.MonkeyPatch.context() as mp:
        draws = Draws(mp)
        summary = compare(cfg, sizes=(8, 40), seeds=(3, 4), arms=("pretrained",), min_steps=6, out=out,
                          static_vectors=static_dir, show_progress=False)
    return summary, draws.seen, out, cfg


def test_static_row_sits_next_to_the_transformers(compared, static_dir):
    summary, _, out, _ = compared
    assert summary["arms"] == ["pretrained", "static"] and summary["static_vectors"] == str(static_dir)
    assert summary["runs"] == 8 and summary["metric"] == "accuracy"
    for row in summary["table"]:
        assert row["static"]["n"] == 2 and 0 <= row["static"]["mean"] <= 1 and "gain" not in row
    markdown = (out / "compare.md").read_text()
    assert "| labeled examples | epochs | pretrained | static |" in markdown
    assert f"a linear classifier over the mean and max of the static word vectors in `{static_dir}`" in markdown
    assert (out / "compare.png").stat().st_size > 10_000
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["arm"], r["size"], r["seed"]) for r in rows if r["arm"] == "static") == [
        ("static", 8, 3), ("static", 8, 4), ("static", 40, 3), ("static", 40, 4)]


def test_static_runs_record_their_vectors_and_scores(compared, static_dir):
    _, _, out, _ = compared
    run = out / "static" / "n8-s3"
    saved = (run / "config.yaml").read_text()
    assert f"from: {static_dir}" in saved
    results = json.loads((run / "results.json").read_text())
    # 8 examples, batch 8, 2 configured epochs < 6 updates: 6 epochs of one update, as for the transformers
    assert results["steps"] == 6 and results["vocab_coverage"] == 1.0 and results["features"] == 32
    assert {"best_eval_accuracy", "best_eval_loss", "best_eval_macro_f1", "eval_accuracy"} <= set(results)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["step"] == 6


def test_the_static_arm_draws_the_transformers_examples(compared):
    _, seen, _, _ = compared
    for size in (8, 40):
        for seed in (3, 4):
            assert seen["static", size, seed] == seen["pretrained", size, seed]
            assert len(seen["static", size, seed]) == size
    assert seen["static", 8, 3] != seen["static", 8, 4]


def test_static_classifier_learns_the_rule(compared):
    summary, _, _, _ = compared
    full = next(row for row in summary["table"] if row["size"] == 40)
    assert full["static"]["mean"] >= 0.75  # `whitespace` in the sentence <=> yes: one word's vector decides


def test_finished_static_runs_are_reused(compared, static_dir):
    summary, _, out, cfg = compared
    again = compare(cfg, sizes=(8, 40), seeds=(3, 4), arms=("pretrained",), min_steps=6, out=out,
                    static_vectors=static_dir, show_progress=False)
    assert again["reused"] == 8 and again["table"] == summary["table"]


def test_a_failed_static_run_leaves_no_results_that_a_rerun_could_reuse(compared, static_dir, tmp_path):
    """Its config.yaml (the new vectors) is written first: an older results.json beside it would be reused."""
    from plmkit.embeddings.classify import train_static_classifier
    from plmkit.errors import DataError

    _, _, out, _cfg = compared
    run_dir = tmp_path / "n8-s3"
    shutil.copytree(out / "static" / "n8-s3", run_dir)
    assert (run_dir / "results.json").is_file()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vectors.txt").write_text("")
    run_cfg = load_config(run_dir / "config.yaml", [f"run.output_dir={run_dir}"])
    with pytest.raises(DataError, match="not a word2vec text file"):
        train_static_classifier(run_cfg, broken, train_limit=8)
    assert not (run_dir / "results.json").exists() and not (run_dir / "metrics.jsonl").exists()


def test_static_arm_errors(data, static_dir, finetune_cfg, task_files, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "out")
    with pytest.raises(PlmError, match=r"unknown arm\(s\) \['static'\]; .* pass static_vectors"):
        compare(cfg, arms=("pretrained", "static"), show_progress=False)
    with pytest.raises(PlmError, match="--static-vectors .*: no vectors.txt there"):
        compare(cfg, static_vectors=tmp_path, show_progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vectors.txt").write_text("")
    with pytest.raises(PlmError, match="broken/vectors.txt: not a word2vec text file"):  # before any run
        compare(cfg, static_vectors=broken, show_progress=False)
    with pytest.raises(PlmError, match=r"seeds must be .* distinct numbers in \[0, 2\*\*32 - 1\]; got \[-1\]"):
        compare(cfg, seeds=[-1], static_vectors=static_dir, show_progress=False)
    ner = finetune_cfg("ner", *task_files("ner", tmp_path / "ner"), tmp_path / "ner-out")
    with pytest.raises(PlmError, match="handles classification and multilabel tasks, not 'ner'"):
        compare(ner, static_vectors=static_dir, show_progress=False)
    assert not (tmp_path / "out-compare").exists() and not (tmp_path / "ner-out-compare").exists()


def test_multilabel_and_loss_selection(task_files, finetune_cfg, static_dir, tmp_path):
    train, dev = task_files("multilabel", tmp_path / "ml", n_train=TRAIN, n_dev=DEV)
    cfg = finetune_cfg("multilabel", train, dev, tmp_path / "run", "train.head_lr=3e-2", "eval.select_best_by=loss")
    metrics = classify.train_static_classifier(cfg, static_dir, train_limit=24)
    assert 0 <= metrics["best_eval_micro_f1"] <= 1 and "eval_threshold" in metrics
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["best_eval_loss"] == min(r["eval_loss"] for r in rows) and len(rows) == 2  # 2 epochs
    assert metrics["steps"] == 2 * 3  # 24 examples, batch 8
