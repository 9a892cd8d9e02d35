"""What the API's functions share: path arguments, the results folder, warnings as Python warnings."""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from benchsuite.errors import UsageError, python_warning, warnings_to

if TYPE_CHECKING:

    pass




PathLike = str | os.PathLike


RESAMPLES = 100_000  # benchsuite.stats.MONTE_CARLO_RESAMPLES, not imported: scipy loads with it


def _warnings_as_python(function):
    """What the call notices (a corrupt file set aside, an oversubscribed machine) arrives as
    a :class:`benchsuite.errors.BenchsuiteWarning`, not as text on stderr; the command line,
    which prints them, keeps its own choice."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        with warnings_to(python_warning, unless_chosen=True):
            return function(*args, **kwargs)

    return call


def _quiet(line: str) -> None:
    """Where notes go when nobody listens."""


def plugin_warnings(available) -> list[str]:
    """Broken or conflicting plugins (left out) and hooks lacking @hookimpl, one line each."""
    broken = getattr(available, "broken", {}).values()
    lines = [f"benchsuite: warning: {plugin.message()}; skipped" for plugin in broken]
    return lines + [f"benchsuite: warning: {warning}" for info in available.values()
                    for warning in info.describe()["warnings"]]


def check_task_dirs(folders) -> None:
    """UsageError for an extra task folder that does not exist."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"tasks folder {str(folder)!r} (--tasks-dir): no such folder")


def _store(results: PathLike):
    """The results folder's store; FileNotFoundError when there is no such folder."""
    from benchsuite.store import Store

    if not Path(results).is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such results folder", str(results))
    return Store(results)

