"""How the CLI ends a run that was stopped: a signal during training (Interrupted: the checkpoint line, the
signal's exit status) and a Ctrl-C anywhere else (typer's exit 130, with a line saying so)."""

from __future__ import annotations

import pytest

from plmkit import cli
from plmkit.errors import Interrupted


def _raising(error):
    def app():
        raise error
    return app


@pytest.mark.parametrize(("error", "status", "line"), [
    (Interrupted("stopped by SIGTERM at step 9 of 100; checkpoint c written", exit_code=143), 143,
     "stopped by SIGTERM at step 9 of 100; checkpoint c written"),
    (SystemExit(130), 130, "interrupted (what the command had finished writing stays)"),
])
def test_a_stopped_command_exits_with_the_signals_status_and_one_line(error, status, line, monkeypatch, capsys):
    monkeypatch.setattr(cli, "app", _raising(error))
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == status
    assert capsys.readouterr().err.strip() == line


def test_other_exits_pass_unchanged(monkeypatch, capsys):
    monkeypatch.setattr(cli, "app", _raising(SystemExit(0)))
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 0 and capsys.readouterr().err == ""


def test_a_ctrl_c_outside_training_goes_through_typer_to_the_line(monkeypatch, capsys):
    """Typer turns KeyboardInterrupt into its Exit(130) (silently): main must still say what happened."""
    import typer

    stopped = typer.Typer()

    @stopped.command()
    def work() -> None:
        raise KeyboardInterrupt

    @stopped.command()
    def other() -> None:  # two commands: typer then wants the command's name, as plm's app does
        pass

    monkeypatch.setattr(cli, "app", stopped)
    monkeypatch.setattr("sys.argv", ["plm", "work"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 130
    assert capsys.readouterr().err.strip().endswith("interrupted (what the command had finished writing stays)")
