"""The host's own exceptions: bad user input (the command line turns it into a clear
message and exit code 2) and a diverged run (a recorded outcome)."""

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user: unknown plugin, task or hyperparameter, bad value, ..."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a misspelled ``name``, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Diverged(Exception):
    """A non-finite training loss or evaluation: the run is recorded as ``diverged``, not failed."""

    def __init__(self, where: str, epoch: int, step: int):
        super().__init__(f"non-finite {where} at epoch {epoch}, step {step}")
        self.where, self.epoch, self.step = where, epoch, step
