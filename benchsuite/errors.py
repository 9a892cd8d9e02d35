"""The host's own exceptions: bad user input (the command line turns it into a clear
message and exit code 2) and a diverged run (a recorded outcome); and its warnings.

A warning (a corrupt file set aside, an oversubscribed machine, a checkpoint that could not
be written) goes through :func:`warn` to the innermost sink: by default a
``benchsuite: warning: ...`` line on stderr (the command line's form); under the Python API
(:mod:`benchsuite.api`) a :class:`BenchsuiteWarning`, which the caller filters or records
like any Python warning. Worker processes (``jobs``) keep the default.
"""

import contextlib
import difflib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator


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


class BenchsuiteWarning(UserWarning):
    """What a run or a read of a results folder noticed and went on from."""


def print_warning(message: str) -> None:
    print(f"benchsuite: warning: {message}", file=sys.stderr, flush=True)


def python_warning(message: str) -> None:
    warnings.warn(message, BenchsuiteWarning, stacklevel=3)


_SINKS: list[Callable[[str], None]] = [print_warning]


def warn(message: str) -> None:
    """Tell the user ``message`` through the innermost sink (see the module's docstring)."""
    _SINKS[-1](message)


@contextlib.contextmanager
def warnings_to(sink: Callable[[str], None], *, unless_chosen: bool = False) -> Iterator[None]:
    """Send :func:`warn`'s messages to ``sink`` inside the block; ``unless_chosen``: only when
    no caller chose a sink already (the command line's choice wins over the API's)."""
    chosen = unless_chosen and len(_SINKS) > 1
    if not chosen:
        _SINKS.append(sink)
    try:
        yield
    finally:
        if not chosen:
            _SINKS.pop()
