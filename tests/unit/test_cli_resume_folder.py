"""--resume with a run's own config.yaml from another folder: relative paths in the config are read from the folder
plm runs in, so the run would start afresh elsewhere. The CLI refuses and names the folder; the resume command a
stopped run prints names it too."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from plmkit.api import resume_command
from plmkit.cli import _check_resumed_from_here, app
from plmkit.errors import PlmError


def _run_folder(launch: Path) -> Path:
    run = launch / "runs" / "ner"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("run:\n  output_dir: runs/ner\n")
    return run


def test_a_runs_config_resumed_from_another_folder_is_refused_naming_the_folder(tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = SimpleNamespace(run=SimpleNamespace(output_dir="runs/ner"))
    with pytest.raises(PlmError, match=rf"is the config of the run in {run}, but its run.output_dir 'runs/ner' is "
                                       rf"read from this folder \({elsewhere}\).*run it from {tmp_path / 'project'} "):
        _check_resumed_from_here(run / "config.yaml", cfg)
    assert not (elsewhere / "runs").exists()
    monkeypatch.chdir(tmp_path / "project")
    _check_resumed_from_here(Path("runs/ner/config.yaml"), cfg)  # from where it started: fine


def test_a_config_that_names_a_run_to_continue_passes(tmp_path, monkeypatch):
    """A project root with its own config.yaml and a checkpoints/ folder of its own, whose run.output_dir names
    the run: resumed from the root, as it should be."""
    root = tmp_path / "project"
    _run_folder(root)
    (root / "checkpoints").mkdir()
    (root / "config.yaml").write_text("run:\n  output_dir: runs/ner\n")
    monkeypatch.chdir(root)
    _check_resumed_from_here(Path("config.yaml"), SimpleNamespace(run=SimpleNamespace(output_dir="runs/ner")))


def test_a_moved_run_folder_is_told_to_set_its_new_place(tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "new")
    monkeypatch.chdir(tmp_path)
    cfg = SimpleNamespace(run=SimpleNamespace(output_dir=str(tmp_path / "old" / "runs" / "ner")))
    with pytest.raises(PlmError, match=rf"holds no run \(was the run folder moved\?\).*--set run.output_dir={run}$"):
        _check_resumed_from_here(run / "config.yaml", cfg)


def test_the_cli_stops_before_it_writes_anything(tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "project")
    (run / "config.yaml").write_text((Path(__file__).parents[2] / "configs" / "debug" / "mlm.yaml").read_text()
                                     .replace("output_dir: runs/debug-mlm", "output_dir: runs/ner"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["pretrain", str(run / "config.yaml"), "--resume"])
    assert isinstance(result.exception, PlmError) and "--resume would start a new run there" in str(result.exception)
    assert not (tmp_path / "runs").exists()


def test_a_relative_run_folders_resume_command_says_where_to_run_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resume_command("finetune", Path("runs/ner"), " --scratch") == \
        f"cd {tmp_path} && plm finetune runs/ner/config.yaml --resume --scratch"
    assert resume_command("pretrain", tmp_path / "run") == f"plm pretrain {tmp_path / 'run' / 'config.yaml'} --resume"
