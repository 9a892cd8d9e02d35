"""Checkpoint files: written atomically, read back only by the run they belong to, and saved
at the end of epochs no more often than the run's options ask (what they hold is
``TrainState.state_dict``)."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import torch

from benchsuite.errors import warn
from benchsuite.execution.environment import distributed
from benchsuite.execution.state import TrainState
from benchsuite.store.files import atomic_write, set_aside


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a kill leaves the old
    checkpoint or the new one, never a torn file."""
    atomic_write(path, lambda fh: torch.save(state, fh), binary=True)


def load_checkpoint(path: Path | None, run_id: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to ``run_id``; an unreadable one is set aside."""
    if path is None or not path.is_file():
        return None
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start the run afresh
        target = set_aside(path)
        warn(f"{path}: unreadable checkpoint ({type(exc).__name__}); moved to {target.name if target else '-'} "
             "and the run starts from its beginning")
        return None
    return state if isinstance(state, dict) and state.get("run_id") == run_id else None


class Checkpoints:
    """When a run saves its state: at the end of an epoch that is not the last, once at least
    ``interval`` seconds passed since the last save (counted from when this object is made),
    by rank 0 only. A failed write warns once and the run goes on: the record is what
    counts, and an unwritable checkpoint costs only the resume."""

    def __init__(self, path: Path | None, interval: float, run_id: str):
        self.path, self.interval, self.run_id = path, interval, run_id
        self.last_saved = time.perf_counter()
        self.warned = False

    def epoch_ended(self, state: TrainState, last_epoch: bool) -> None:
        due = time.perf_counter() - self.last_saved >= self.interval
        if self.path is None or not due or last_epoch or distributed()[0] != 0:
            return
        checkpoint = state.state_dict(self.run_id)
        try:
            save_checkpoint(self.path, checkpoint)
        except (OSError, RuntimeError) as exc:  # a full disk (torch.save says RuntimeError)
            if not self.warned:
                warn(f"could not write the checkpoint {self.path} "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                     "the run goes on, and a kill before its next checkpoint restarts it from an earlier one")
                self.warned = True
        self.last_saved = time.perf_counter()
