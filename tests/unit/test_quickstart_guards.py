"""plm quickstart keeps what is not its own: a run of anything else in --out is refused (a typo in --out must not
delete hours of training) unless --overwrite; an earlier quickstart's run is replaced as before."""

from __future__ import annotations

import pytest

from plmkit.errors import PlmError
from plmkit.quickstart import _refuse_another_run, run_quickstart


def _run_folder(folder, name: str):
    (folder / "checkpoints" / "step-000070").mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"step": 70}\n')
    (folder / "config.yaml").write_text(f"run: {{name: {name}}}\n")
    return folder


def test_a_run_that_no_quickstart_made_is_kept(tmp_path):
    other = _run_folder(tmp_path / "mine", "my-long-run")
    with pytest.raises(PlmError, match="holds a run that no quickstart made .* pass another --out, or --overwrite"):
        run_quickstart(other, max_steps=1, finetune=False, show_progress=False)
    assert (other / "checkpoints" / "step-000070").is_dir()  # nothing written, nothing deleted
    assert not (other / "data").exists()
    _refuse_another_run(other, overwrite=True)  # asked for: allowed


def test_an_earlier_quickstart_or_an_empty_folder_is_fine(tmp_path):
    _refuse_another_run(_run_folder(tmp_path / "qs", "quickstart"), overwrite=False)
    _refuse_another_run(tmp_path / "new", overwrite=False)

