"""User-facing errors: anything the user can fix by changing a file, a flag or a config key.

The CLI prints a `PlmError` as one line on stderr and exits with status 2 (a traceback only with `--debug`).
Every message says what is wrong and what to change.
"""


class PlmError(Exception):
    """An error the user can fix; the message says how."""


class ConfigError(PlmError):
    """A config key is unknown, has the wrong type or is out of range."""


class DataError(PlmError):
    """An input file is missing, empty, not UTF-8 or malformed (the message names the file and line)."""


class CompatibilityError(PlmError):
    """The tokenizer, the model and the data settings disagree (vocab size, special tokens, positions)."""


class TrainingError(PlmError):
    """Training cannot go on (for instance the loss became NaN)."""


class Interrupted(PlmError):
    """Training stopped on a signal (Ctrl-C, a scheduler's SIGTERM) after writing a checkpoint; `exit_code` is the
    shell's for that signal (130 for SIGINT, 143 for SIGTERM). `completed` is the run's result when the signal came
    during its last step: the run finished, and only its caller's next run is called off."""

    def __init__(self, message: str, exit_code: int = 130, completed: object = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.completed = completed
