"""Atomic file writes: records and checkpoints are never torn."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Write through ``write(file)`` to a temporary file in the same folder, flush it to
    disk, then rename it over ``path`` (``os.replace`` is atomic): a killed process leaves
    the old file or the new one, and at most a stray ``.*.tmp`` that readers ignore."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
