"""The results folder: records, checkpoints and a lock per run (the guarantees are in :mod:`benchsuite.store`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

import benchsuite.store.record as record_checks
from benchsuite.errors import UsageError, warn
from benchsuite.store.files import atomic_write, set_aside
from benchsuite.store.record import _int64, newer_format, record_problem
from benchsuite.store.status import DONE_STATUSES, RECORD_FORMAT
from benchsuite.store.table import runs_table

_TMP = re.compile(r"^\.(?P<target>.+?\.(?:json|pt))\.\d+\.[0-9a-f]+\.tmp$|^\.(?P<legacy>.+?\.(?:json|pt))\..+\.tmp$")


_WARNED: set[str] = set()


def _stderr(message: str) -> None:
    """Once per process: one command reads the store through several Store objects."""
    if message not in _WARNED:
        _WARNED.add(message)
        warn(message)


class Store:
    """``report(message)`` receives each problem found while reading (default: stderr, once
    per file)."""

    def __init__(self, root: str | os.PathLike, report: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.locks = self.root / "locks"
        self.problems: dict[str, str] = {}
        # record files of a newer format met while reading: never set aside nor replaced
        self.newer: dict[str, int] = {}
        self._report = report or _stderr

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def checkpoint_path(self, run_id: str) -> Path:
        """Where a run in progress saves its state (removed when its record is stored)."""
        return self.root / "checkpoints" / f"{run_id}.pt"

    # --- reading (never modifies the store) ------------------------------------------------

    def _problem(self, path: Path, why: str) -> None:
        key = str(path)
        if self.problems.get(key) != why:
            self.problems[key] = why
            self._report(f"{path}: {why}; ignored (the run counts as not done)")

    def read(self, run_id: str) -> tuple[dict | None, str | None]:
        """(record, None) for a valid record, (None, why) for an invalid file, (None, None)
        when there is none."""
        path = self.path(run_id)
        try:
            # through a link too: a pipe would block the read, a device never end it
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                return None, "a folder, not a record"
            if not stat.S_ISREG(info.st_mode):
                return None, "not a regular file"
            if info.st_size > record_checks.MAX_RECORD_BYTES:  # read at call time: tests lower it
                return None, f"{info.st_size / 2**20:.0f} MiB, too large for a record"
            text = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"unreadable ({exc.strerror or exc})"
        try:
            record = json.loads(text, parse_int=_int64)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            return None, f"not valid JSON ({exc})"
        why = record_problem(record, run_id)
        newer = newer_format(record) if why else None
        if newer:
            self.newer[str(path)] = newer
        return (None, why) if why else (record, None)

    def refuse_newer(self) -> None:
        """Raise UsageError when reading met records of a newer format (call after the
        runs' records were read, before anything trains): running over them would set aside
        or replace results a newer benchsuite wrote, and mix two layouts in one store."""
        if self.newer:
            paths = sorted(self.newer)
            raise UsageError(
                f"results folder {self.root}: {len(paths)} record(s) were written by a newer benchsuite "
                f"(record format {max(self.newer.values())}; this version writes {RECORD_FORMAT}), e.g. "
                f"{paths[0]}; upgrade benchsuite, or choose another --results. Nothing was run or changed.")

    def get(self, run_id: str) -> dict | None:
        record, why = self.read(run_id)
        if why:
            self._problem(self.path(run_id), why)
        return record

    def is_done(self, run_id: str) -> bool:
        record = self.get(run_id)
        return record is not None and record.get("status") in DONE_STATUSES

    def version(self, run_id: str) -> tuple[int, int] | None:
        """Which write of the run's record file is there now (its inode and modification
        time; every ``put`` renames a new file over it, so both change), or None when there
        is none. ``run --force`` notes it when it lists the runs and replaces a done record
        only if it is still the one it saw: a record another process stored meanwhile is
        kept."""
        try:
            info = self.path(run_id).stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns

    def records(self) -> Iterator[dict]:
        if not self.runs.is_dir():
            return
        for path in sorted(self.runs.glob("*.json")):
            record = self.get(path.stem)
            if record is not None:
                yield record

    def table(self) -> pl.DataFrame:
        """One row per run: identity, status, headline metrics, size and time."""
        return runs_table(self.records())

    # --- writing ---------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise UsageError (before anything trains) when records, checkpoints or claims
        cannot be written."""
        for folder in (self.runs, self.root / "checkpoints", self.locks):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                # a name of this process and thread: writers starting together on one folder
                # (the ranks of a distributed run) must not remove each other's test file
                probe = folder / f".write-test.{os.getpid()}.{threading.get_ident()}"
                atomic_write(probe, lambda fh: fh.write("")).unlink()
            except OSError as exc:
                raise UsageError(f"results folder {self.root}: cannot write to {folder} "
                                 f"({exc.strerror or exc}); choose another --results") from None

    def put(self, record: dict) -> Path:
        return atomic_write(self.path(record["run_id"]),
                            lambda fh: json.dump(record, fh, indent=1, allow_nan=True, default=str))

    @contextlib.contextmanager
    def claim(self, run_id: str, wait: bool = True):
        """Hold run ``run_id``'s exclusive claim; yields True, or False (at once) when
        ``wait`` is False and another process holds it. Released when the block ends or
        the process dies."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{run_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    yield False
                    return
                raise
            yield True
        finally:
            os.close(fd)  # releases the lock

    def set_aside(self, run_id: str) -> Path | None:
        """Move an invalid file at the run's record path to ``<run_id>.json.<n>.corrupt``
        (the first free n: an earlier one is never overwritten). Call while holding the
        run's claim. Returns the new path, or None when there was nothing to move."""
        path = self.path(run_id)
        record, why = self.read(run_id)
        if record is not None or why is None or str(path) in self.newer:
            return None
        target = set_aside(path)
        if target is None:
            return None
        self._report(f"{path}: {why}; moved to {target.name} and the run is run again")
        return target

    def move_superseded(self, run_id: str) -> Path | None:
        """Move run ``run_id``'s record to ``<results>/superseded/<run_id>.json`` (kept, out
        of ``runs/``; ``<run_id>.<n>.json``, the first free n, when a record of that id was
        moved before). Only under the run's claim, taken without waiting: a run another
        process holds is left where it is (None), as is a run with no record."""
        with self.claim(run_id, wait=False) as held:
            if not held or not self.path(run_id).is_file():
                return None
            folder = self.root / "superseded"
            folder.mkdir(parents=True, exist_ok=True)
            target, n = folder / f"{run_id}.json", 1
            while target.exists():
                target, n = folder / f"{run_id}.{n}.json", n + 1
            os.replace(self.path(run_id), target)
            return target

    def clean_run(self, run_id: str) -> int:
        """Remove temporary files of run ``run_id`` (and its checkpoint when its record is
        done). Call while holding the run's claim: only its holder writes them, so any left
        are a killed writer's."""
        removed = 0
        for folder, name in ((self.runs, f"{run_id}.json"), (self.root / "checkpoints", f"{run_id}.pt")):
            if folder.is_dir():
                for path in folder.glob(f".{name}.*.tmp"):
                    path.unlink(missing_ok=True)
                    removed += 1
        if self.is_done(run_id):
            checkpoint = self.checkpoint_path(run_id)
            if checkpoint.exists():
                checkpoint.unlink(missing_ok=True)
                removed += 1
        return removed

    def clean_partial(self) -> int:
        """Remove what killed writers left: temporary files, and checkpoints of runs whose
        record is stored. Only files of runs whose claim is free (no live process is
        writing them) are touched. Returns how many files were removed."""
        run_ids = set()
        for folder in (self.runs, self.root / "checkpoints"):
            if not folder.is_dir():
                continue
            for path in folder.glob(".*.tmp"):
                match = _TMP.match(path.name)
                target = match and (match["target"] or match["legacy"])
                if target:
                    run_ids.add(target.rsplit(".", 1)[0])
        if (self.root / "checkpoints").is_dir():
            run_ids.update(p.stem for p in (self.root / "checkpoints").glob("*.pt") if self.is_done(p.stem))
        removed = 0
        for run_id in sorted(run_ids):
            with self.claim(run_id, wait=False) as held:
                if held:
                    removed += self.clean_run(run_id)
        return removed

