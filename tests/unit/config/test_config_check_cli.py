"""`plm config check PATH`: one YAML config or every one under a folder; a path with nothing to check is an error,
not `{"checked": 0}`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plmkit.cli import app
from plmkit.errors import ConfigError

MLM = Path(__file__).resolve().parents[3] / "configs" / "debug" / "mlm.yaml"


def test_one_file_is_checked():
    result = CliRunner().invoke(app, ["config", "check", str(MLM)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"checked": 1}


def test_one_bad_file_is_its_error(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("train: {max_stpes: 5}\n")
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert isinstance(result.exception, ConfigError) and "unknown config key 'train.max_stpes'" in str(result.exception)


@pytest.mark.parametrize(("make", "message"), [(lambda tmp: tmp / "nowhere", "does not exist"),
                                               (lambda tmp: tmp, "holds no YAML config")])
def test_a_path_with_nothing_to_check_is_an_error(make, message, tmp_path):
    result = CliRunner().invoke(app, ["config", "check", str(make(tmp_path))])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_an_objective_and_arch_that_do_not_fit_are_caught(tmp_path):
    bad = tmp_path / "gpt_mlm.yaml"
    bad.write_text("objective: {name: mlm}\nmodel: {arch: gpt2}\n")
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert "trains a masked_lm model but model.arch is 'gpt2'" in str(result.exception)


def test_a_folder_is_checked_whole_and_every_mistake_listed(tmp_path):
    (tmp_path / "a_good.yaml").write_text(MLM.read_text())
    (tmp_path / "b_typo.yaml").write_text("train: {lrr: 0.1}\n")
    (tmp_path / "c_negative.yaml").write_text("train: {max_steps: -5}\n")
    result = CliRunner().invoke(app, ["config", "check", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)
    assert "2 of 3 configs" in str(result.exception) and "c_negative.yaml" in str(result.exception)
    assert "unknown config key 'train.lrr'" in result.stderr and "train.max_steps must be > 0" in result.stderr
    assert f"ok  {tmp_path / 'a_good.yaml'}" in result.stderr and result.stdout == ""
