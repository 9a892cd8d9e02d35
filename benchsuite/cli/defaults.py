"""The environment variables the commands read, as the defaults of options not given. Only
the command line reads them; the Python API takes every value as an argument.

``$BENCHSUITE_DATA``: the data folder (``--data-dir``; else ./data). ``$BENCHSUITE_TASKS``:
extra folders of task files (``os.pathsep``-separated), searched before ``--tasks-dir``.
``$BENCHSUITE_VERIFY_DATA=0``: skip the data sets' checksums (re-encoded copies).
``$BENCHSUITE_DOWNLOAD=1``: as ``--download``. ``$BENCHSUITE_WORKERS``: as ``--workers``.
``$BENCHSUITE_CACHE_DIR``: the data cache folder (``--cache-dir``; else
``$XDG_CACHE_HOME/benchsuite``, else ``~/.cache/benchsuite``).
(``$BENCHSUITE_RESULTS``, the results folder, is read by ``common.results_dir``.)
"""

from __future__ import annotations

import os
from pathlib import Path

from benchsuite.errors import UsageError


def data_dir(given: str | None) -> Path:
    return Path(given or os.environ.get("BENCHSUITE_DATA") or "data")


def task_dirs(given) -> list[str]:
    """``$BENCHSUITE_TASKS``'s folders that exist, then ``given`` (``--tasks-dir``, each
    checked; a later task file wins)."""
    found = [p for p in os.environ.get("BENCHSUITE_TASKS", "").split(os.pathsep) if p and Path(p).is_dir()]
    return found + list(given or ())


def verify_data() -> bool:
    return os.environ.get("BENCHSUITE_VERIFY_DATA", "1") != "0"


def download(given: bool) -> bool:
    return bool(given) or os.environ.get("BENCHSUITE_DOWNLOAD") == "1"


def loader_workers(given: int | None) -> int | None:
    if given is not None:
        return given
    text = os.environ.get("BENCHSUITE_WORKERS")
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"$BENCHSUITE_WORKERS {text!r}: expected a number of DataLoader workers") from None


def cache_dir(given: str | None, disabled: bool = False) -> Path | None:
    """The data cache folder: None with ``--no-data-cache``; else ``given`` (``--cache-dir``),
    ``$BENCHSUITE_CACHE_DIR``, ``$XDG_CACHE_HOME/benchsuite`` (an absolute path, as the XDG
    specification asks), ``~/.cache/benchsuite``; None when there is no home folder either."""
    if disabled:
        return None
    if given or os.environ.get("BENCHSUITE_CACHE_DIR"):
        return Path(given or os.environ["BENCHSUITE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "benchsuite"
    try:
        return Path.home() / ".cache" / "benchsuite"
    except RuntimeError:  # no $HOME and no password entry: nowhere to keep it
        return None


def data_options(args):
    """The data options of a command with ``--data-dir`` (and, for ``run``, ``--download``
    and ``--workers``; ``--cache-dir`` and ``--no-data-cache`` where the command loads data)."""
    from benchsuite.tasks.data_options import DataOptions

    return DataOptions(data_dir(getattr(args, "data_dir", None)), download(getattr(args, "download", False)),
                       loader_workers(getattr(args, "workers", None)), verify_data(),
                       cache_dir(getattr(args, "cache_dir", None), getattr(args, "no_data_cache", False)))
