"""--quiet turns off plmkit's progress bars, the ones transformers draws while it loads weights, and its warnings."""

from __future__ import annotations

from transformers.utils import logging as transformers_logging

from plmkit.cli import _progress


def test_quiet_turns_off_transformers_progress_bars_and_warnings():
    transformers_logging.enable_progress_bar()  # an in-process CLI test with -q may have turned them off
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    try:
        assert _progress(False) is True and transformers_logging.is_progress_bar_enabled()
        assert transformers_logging.get_verbosity() == transformers_logging.WARNING
        assert _progress(True) is False and not transformers_logging.is_progress_bar_enabled()
        assert transformers_logging.get_verbosity() == transformers_logging.ERROR
    finally:
        transformers_logging.enable_progress_bar()
        transformers_logging.set_verbosity(verbosity)
