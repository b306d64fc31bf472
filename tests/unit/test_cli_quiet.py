"""--quiet turns off plmkit's progress bars and the ones transformers draws while it loads weights."""

from __future__ import annotations

from transformers.utils import logging as transformers_logging

from plmkit.cli import _progress


def test_quiet_turns_off_transformers_progress_bars():
    transformers_logging.enable_progress_bar()  # an in-process CLI test with -q may have turned them off
    try:
        assert _progress(False) is True and transformers_logging.is_progress_bar_enabled()
        assert _progress(True) is False and not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
