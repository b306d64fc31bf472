"""What keeps multi-process runs honest without launching processes: resuming with another number of processes is
refused (it would reread data and halve the global batch), the resume command names the launcher, commands that
work in one process refuse a launch, a RANK left in a single process's environment does not silence its output,
objective wrappers expose their layer classes to FSDP, and the objective's metric parts are means over every
process."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from plmkit.api import _check_resumed_world, resume_command
from plmkit.cli import app, emit
from plmkit.errors import ConfigError, PlmError
from plmkit.processes import first_process
from plmkit.training.loop import MeanMetrics, forward_layer_classes


def _checkpoint(run_dir, step: int, processes: int):
    folder = run_dir / "checkpoints" / f"step-{step:06d}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
    for rank in range(processes):
        (folder / f"random_states_{rank}.pkl").write_bytes(b"")
    return folder


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    _checkpoint(tmp_path, 20, 2)
    _check_resumed_world(tmp_path, 2, "pretrain")  # the same number: fine
    with pytest.raises(ConfigError, match=r"step-000020 was written by 2 processes and this run has 1; .* resume with 2 "
                                          r"in all, launched as before \(on one node: torchrun --nproc_per_node 2 -m plmkit pretrain .*config.yaml --resume"):
        _check_resumed_world(tmp_path, 1, "pretrain")
    one = tmp_path / "one"
    _checkpoint(one, 40, 1)
    with pytest.raises(ConfigError, match=r"written by 1 process and this run has 2; .*\(on one node: plm finetune "):
        _check_resumed_world(one, 2, "finetune")
    _check_resumed_world(tmp_path / "fresh", 4, "pretrain")  # no checkpoint: nothing to check


def test_the_resume_command_names_the_launcher(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resume_command("pretrain", tmp_path).startswith("plm pretrain ")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resume_command("pretrain", tmp_path) == \
        f"torchrun --nproc_per_node 4 -m plmkit pretrain {tmp_path / 'config.yaml'} --resume"
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 2 nodes of 8: the launch each node repeats
    assert resume_command("pretrain", tmp_path).startswith("torchrun --nnodes 2 --nproc_per_node 8 ")


@pytest.mark.parametrize("argv", [["compare", "c.yaml"], ["quickstart"], ["evaluate", "m", "--data", "d.tsv"],
                                  ["predict", "m", "--data", "d.tsv", "--output", "p.jsonl"]])
def test_one_process_commands_refuse_a_launch(argv, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, PlmError)
    assert "without torchrun or accelerate launch" in str(result.exception)


def test_a_rank_left_in_a_single_process_environment_does_not_silence_it(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")  # e.g. exported as a node's rank
    assert first_process()
    emit({"ok": 1})
    assert capsys.readouterr().out == '{"ok": 1}\n'
    monkeypatch.setenv("WORLD_SIZE", "2")  # a second process of a launch: silent
    assert not first_process()
    emit({"ok": 1})
    assert capsys.readouterr().out == ""


def test_wrappers_expose_the_layer_classes_fsdp_wraps():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32))
    wrapper = torch.nn.Module()
    wrapper.hf_model = bert
    forward_layer_classes(wrapper)
    assert wrapper._no_split_modules == list(dict.fromkeys(bert._no_split_modules))
    assert "BertLayer" in wrapper._no_split_modules


def test_metric_parts_are_means_over_every_process(monkeypatch):
    from plmkit.training import loop

    other = ({"accuracy": 3.0}, 3)  # another process: three batches whose accuracies sum to 3
    monkeypatch.setattr(loop, "gather_object", lambda parts: [*parts, other])
    metrics = MeanMetrics()
    metrics.add({"accuracy": torch.tensor(0.0)})
    assert metrics.means(world=2) == {"accuracy": 0.75}  # (0 + 3) / (1 + 3), weighted by batches
    empty = MeanMetrics()  # a process with no batches still takes part and gets the others' means
    assert empty.means(world=2) == {"accuracy": 1.0}


def test_metric_parts_are_means_of_every_batch():
    metrics = MeanMetrics()
    metrics.add({"accuracy": torch.tensor(0.5)})
    metrics.add({"accuracy": torch.tensor(1.0)})
    assert metrics.means() == {"accuracy": 0.75} == metrics.means(world=1)
    assert MeanMetrics().means() == {}
