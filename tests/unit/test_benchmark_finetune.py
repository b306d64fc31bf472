"""benchmarks/finetune.py without training: dataset specs, --first subsets, argument rules, the config it builds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from plmkit.tasks import tasks
from plmkit.tasks.io import read_tagged_sentences, read_text_examples

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_finetune", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def args(bench, *argv: str):
    return bench.parse_args([*argv, "--model", "some/model"])


def test_specs_name_registered_tasks_and_their_metrics(bench):
    assert set(bench.DATASETS) == {"sst2", "conll2003", "hoc", "ncbi_disease"}
    metrics = {"classification": {"accuracy"}, "multilabel": {"micro_f1", "grouped_micro_f1"}, "ner": {"f1"}}
    for spec in bench.DATASETS.values():
        assert spec.task in tasks
        assert spec.metric in metrics[spec.task]
        assert spec.epochs > 0 and spec.first > 0
    assert bench.DATASETS["sst2"].epochs == 1 and bench.DATASETS["sst2"].first == 8000
    assert bench.DATASETS["conll2003"].epochs == 3 and bench.DATASETS["conll2003"].first == 3000


def test_specs_point_to_existing_files(bench):
    data = bench.default_data_dir()
    if not data.is_dir():
        pytest.skip(f"no shared data folder at {data}")
    for name, spec in bench.DATASETS.items():
        assert (data / name / spec.train).is_file()
        assert (data / name / spec.eval).is_file()


def test_hoc_rows_read_as_grouped_multilabel(bench, tmp_path):
    data = bench.default_data_dir() / "hoc" / "dev.tsv"
    if not data.is_file():
        pytest.skip(f"no {data}")
    first = tmp_path / "dev-first40.tsv"
    assert bench.write_first(data, first, 40, "rows") == 40
    rows = read_text_examples(first, label_column="labels", multilabel=True, group_column="index")
    assert len(rows) == 40
    assert all(r.group and "_s" not in r.group for r in rows)  # `<PMID>_s<N>` -> `<PMID>`
    assert all(set(r.labels) <= {str(k) for k in range(10)} for r in rows)


def test_first_rows_keeps_the_header_and_exactly_n(bench, tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\na\t0\n\nb\t1\nc\t0\nd\t1", encoding="utf-8")
    assert bench.count_examples(src, "rows") == 4
    dst = tmp_path / "first.tsv"
    assert bench.write_first(src, dst, 3, "rows") == 3
    assert [(e.text, e.labels) for e in read_text_examples(dst)] == [("a", ["0"]), ("b", ["1"]), ("c", ["0"])]
    assert bench.write_first(src, dst, 10, "rows") == 4  # fewer when the file has fewer
    assert len(read_text_examples(dst)) == 4


def test_first_sentences_match_the_reader(bench, tmp_path):
    src = tmp_path / "train.txt"
    src.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \t\nPeter NNP B-NP B-PER\n\n\n"
                   "Blackburn NNP B-NP B-PER\n-DOCSTART- -X- O O\nBRUSSELS NNP B-NP B-LOC\n1996-08-22 CD I-NP O",
                   encoding="utf-8")
    everything = read_tagged_sentences(src)
    assert bench.count_examples(src, "sentences") == len(everything) == 4
    dst = tmp_path / "first.txt"
    assert bench.write_first(src, dst, 3, "sentences") == 3
    assert read_tagged_sentences(dst) == everything[:3]


def test_subset_rules(bench):
    sst2 = bench.DATASETS["sst2"]
    assert bench.subset_rule(args(bench, "--task", "sst2"), sst2) == ("first", 8000)
    assert bench.subset_rule(args(bench, "--task", "sst2", "--first", "50"), sst2) == ("first", 50)
    assert bench.subset_rule(args(bench, "--task", "sst2", "--limit", "200"), sst2) == ("random", 200)
    assert bench.subset_rule(args(bench, "--task", "sst2", "--full"), sst2) == ("full", None)


@pytest.mark.parametrize("argv, message", [
    (["--task", "sst3"], "invalid choice: 'sst3'"),
    (["--task", "sst2", "--limit", "5", "--full"], "not allowed with"),
    (["--task", "sst2", "--first", "0"], "--first must be >= 1"),
    (["--task", "sst2", "--epochs", "0"], "--epochs must be > 0"),
])
def test_bad_arguments_exit_with_a_clear_message(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        args(bench, *argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_config_is_the_packaged_defaults_plus_epochs_task_options_and_sets(bench, tmp_path):
    spec = bench.DATASETS["hoc"]
    overrides = bench.config_overrides(spec, model="m", train=tmp_path / "t.tsv", evaluation=tmp_path / "d.tsv",
                                       out=tmp_path / "run", epochs=2, user=["train.lr=1e-4", "task.max_length=64"])
    assert overrides[-2:] == ["train.lr=1e-4", "task.max_length=64"]  # the user's --set come last
    cfg = bench.load_packaged_config(overrides)
    assert (cfg.task.name, cfg.task.group_column, cfg.task.label_column) == ("multilabel", "index", "labels")
    assert cfg.train.epochs == 2 and cfg.train.lr == 1e-4 and cfg.task.max_length == 64
    assert cfg.train.batch_size == 16 and cfg.train.head_lr == 1e-3  # untouched packaged defaults
    assert cfg.task.train == str(tmp_path / "t.tsv") and cfg.run.output_dir == str(tmp_path / "run")


def test_all_prints_one_json_line_with_a_result_per_dataset(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run_one", lambda name, args: {"dataset": name, "score": 0.5})
    monkeypatch.setattr(bench, "environment", lambda model: {"model": model, "commit": "abc1234"})
    bench.main(["--task", "all", "--model", "m"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    output = json.loads(lines[0])
    assert [r["dataset"] for r in output["results"]] == list(bench.DATASETS)
    assert output["benchmark"] == "finetune" and output["commit"] == "abc1234" and "wall_seconds" in output
    bench.main(["--task", "hoc", "--model", "m"])
    single = json.loads(capsys.readouterr().out)
    assert single["dataset"] == "hoc" and single["model"] == "m"
