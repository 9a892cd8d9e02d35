"""Atomic file writes: records and checkpoints are never torn."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: readers ignore it, and the name says
    which file (so which run) it belongs to."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Write through ``write(file)`` to a temporary file in the same folder, flush it to
    disk, then rename it over ``path`` (``os.replace`` is atomic): a killed process leaves
    the old file or the new one, and at most a stray ``.*.tmp`` that readers ignore.

    The file is created with mode 0666 minus the umask (as ``open`` would), so a group
    sharing a results folder can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a full disk says so without naming the file being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def set_aside(path: Path) -> Path | None:
    """Move ``path`` (a file or folder) to ``<name>.<n>.corrupt`` beside it, n the first
    free number: an earlier file set aside is never overwritten, also when two processes
    set aside at once. Returns the new path, or None when ``path`` is gone."""
    for n in range(1, 10_000):
        target = path.with_name(f"{path.name}.{n}.corrupt")
        try:
            if path.is_dir():
                if target.exists():
                    continue
                path.rename(target)
            else:
                os.link(path, target)  # fails if target exists: never overwrites
                path.unlink()
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        return target
    raise OSError(f"{path}: 9999 files already set aside beside it")
