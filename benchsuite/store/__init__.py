"""Results store: one JSON record per run under ``<results>/runs/<run_id>.json``.

Guarantees (see docs/results.md, "Results store: what it guarantees"):

* Records are written to a temporary file in the same folder, flushed to disk, then
  renamed over the final name (``os.replace`` is atomic): a killed process leaves the
  complete old record, the complete new one, or a stray ``.*.tmp`` that readers ignore.
* A run is computed by the process holding its claim: an exclusive lock on
  ``<results>/locks/<run_id>.lock`` (``flock``; the kernel releases it when the holder dies,
  even by kill -9). Two ``benchsuite run`` on one folder never compute the same run twice:
  the second skips a claimed run, and waits for it at the end (running it only if the
  first died without storing it).
* Temporary files and checkpoints are removed only by the holder of their run's claim, so
  a live writer's files are never deleted by another process.
* A record counts only if it is a JSON object with the fields of a record whose ``run_id``
  matches its file name. Anything else in ``runs/`` (torn or foreign JSON, a copy under
  another name, a folder named ``*.json``) is reported on stderr and ignored; reading never
  modifies the store, so read-only commands work on a read-only folder. When a run whose
  file is invalid is run again, the file is first set aside as
  ``<run_id>.json.<n>.corrupt`` (never overwriting an earlier one).
* Every record names its ``record_format`` (:data:`RECORD_FORMAT`; records without one are
  format 1). A record of a newer format is ignored by readers like an invalid file, but never
  set aside or replaced: ``run`` stops before training anything (see :meth:`Store.refuse_newer`).
* A run counts as done when its record says ``finished`` or ``diverged``; ``failed`` runs
  are retried by the next ``benchsuite run``. ``run --force`` reruns done runs too: the
  new record replaces the old one by the same atomic rename, so a forced rerun that is
  killed leaves the old record in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

from benchsuite.errors import UsageError
from benchsuite.store.files import atomic_write, set_aside
from benchsuite.store.status import DONE_STATUSES, RECORD_FORMAT, STATUS_FINISHED, STATUSES

_TMP = re.compile(r"^\.(?P<target>.+?\.(?:json|pt))\.\d+\.[0-9a-f]+\.tmp$|^\.(?P<legacy>.+?\.(?:json|pt))\..+\.tmp$")


def newer_format(record) -> int | None:
    """The record's format where it is newer than this version reads, else None."""
    fmt = record.get("record_format") if isinstance(record, dict) else None
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > RECORD_FORMAT:
        return fmt
    return None


def record_problem(record, run_id: str | None = None) -> str | None:
    """Why ``record`` is not a usable record (of run ``run_id``), or None."""
    if not isinstance(record, dict):
        return f"not a record (a JSON {type(record).__name__})"
    fmt = record.get("record_format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        return f"not a record ('record_format' is {fmt!r}, expected a positive integer)"
    if newer_format(record):
        return (f"written by a newer benchsuite (record format {fmt}; this version reads up to "
                f"{RECORD_FORMAT}): upgrade benchsuite to use it")
    required = {"run_id": str, "status": str, "task": str, "task_spec": dict, "method": str,
                "method_label": str, "seed": int}
    for key, kind in required.items():
        if key not in record:
            return f"not a record (no {key!r})"
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            return f"not a record ({key!r} is {type(record[key]).__name__}, expected {kind.__name__})"
    if run_id is not None and record["run_id"] != run_id:
        return f"holds the record of run {record['run_id']!r}, not of {run_id!r} (copied or renamed?)"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    try:
        metric = record["task_spec"]["eval"]["metric"]
    except (KeyError, TypeError):
        return "not a record (task_spec has no eval.metric)"
    metrics = record.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        return "not a record ('metrics' is not an object)"
    if record["status"] == STATUS_FINISHED:
        value = (metrics or {}).get(f"test_{metric}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"a finished record without its test_{metric}"
    shape = _shape_problem(record)
    if shape:
        return f"not a record ({shape})"
    try:
        table_row(record)
    except Exception as exc:  # noqa: BLE001 - any malformed field
        return f"not a record ({type(exc).__name__}: {exc})"
    return None


MAX_RECORD_BYTES = 256 * 2**20  # a record is kilobytes; a 1000-epoch run with many diagnostics a few MB


def _shape_problem(record: dict) -> str | None:
    """The optional parts every reader relies on, where present: curves (a list of rows,
    each with its epoch), plugin versions (names to version strings), hyperparameters (per
    plugin, an object), timings and environment (objects)."""
    curves = record.get("curves")
    if curves is not None and not (isinstance(curves, list) and all(
            isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in curves)):
        return "'curves' is not a list of rows with their epoch"
    versions = record.get("plugin_versions")
    if versions is not None and not (isinstance(versions, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in versions.items())):
        return "'plugin_versions' does not map names to version strings"
    hyperparameters = record.get("hyperparameters")
    if hyperparameters is not None and not (isinstance(hyperparameters, dict) and all(
            isinstance(v, dict) for v in hyperparameters.values())):
        return "'hyperparameters' is not an object per plugin"
    for key in ("timings", "environment"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            return f"{key!r} is not an object"
    return None


def _int64(text: str) -> int:
    """A JSON integer as the runs table can hold it (64 bits)."""
    value = int(text)
    if not -2**63 <= value < 2**63:
        raise ValueError(f"the integer {text[:12]}... ({len(text)} digits) is out of range")
    return value


_WARNED: set[str] = set()


def _stderr(message: str) -> None:
    """Once per process: one command reads the store through several Store objects."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"benchsuite: warning: {message}", file=sys.stderr, flush=True)


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
            if info.st_size > MAX_RECORD_BYTES:
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


def environment_label(env: dict | None) -> str:
    """One line naming a record's numeric environment (what results.csv and reports show)."""
    env = env or {}
    parts = [env.get("cpu") or env.get("platform", "unknown machine"), f"torch {env.get('torch', '?')}"]
    if env.get("blas"):
        parts.append(f"BLAS {env['blas']}")
    parts.append(f"{env.get('threads', '?')} threads")
    if env.get("gpu") or env.get("device_name"):
        parts.append(f"GPU {env.get('gpu') or env.get('device_name')} (CUDA {env.get('cuda', '?')}, "
                     f"cuDNN {env.get('cudnn', '?')})")
    if env.get("deterministic"):
        parts.append("deterministic")
    return ", ".join(parts)


def table_row(record: dict) -> dict:
    spec = record["task_spec"]
    metric = spec["eval"]["metric"]
    metrics = record.get("metrics") or {}
    timings = record.get("timings") or {}
    steps = timings.get("steps") or 0
    # a replicate is reported as a method of its own: `none@aa` beside `none`
    salt = f"@{record['replicate']}" if record.get("replicate") else ""
    return {
        "run_id": record["run_id"],
        "task": record["task"],
        "task_spec": json.dumps(spec, sort_keys=True),
        "method": record["method"] + salt,
        "method_label": record["method_label"] + salt,
        "method_full_label": record.get("method_full_label", record["method_label"]) + salt,
        "hyperparameters": json.dumps(record.get("hyperparameters", {}), sort_keys=True),
        "seed": record["seed"],
        "status": record["status"],
        "metric": metric,
        "test": metrics.get(f"test_{metric}" if spec["eval"].get("headline", "selected") == "selected"
                            else f"test_{metric}_best10_mean"),
        "val": metrics.get(f"val_{metric}"),
        "test_last": _last_test(record, metric),
        "test_loss": metrics.get("test_loss"),
        "val_loss": metrics.get("val_loss"),
        "best_epoch": metrics.get("best_epoch"),
        "epochs": len(record.get("curves", ())),
        "n_params": metrics.get("n_params"),
        "seconds": timings.get("total_seconds"),
        "step_ms": 1000 * timings["train_seconds"] / steps if steps else None,
        "train_seconds": timings.get("train_seconds"),
        "report": json.dumps(_report_values(record.get("report_metrics", ()), metrics)),
        "error": record.get("error"),
        "environment": environment_label(record.get("environment")),
        "versions": json.dumps(record.get("plugin_versions") or {}, sort_keys=True),
    }


def _last_test(record: dict, metric: str):
    """The test metric at the last evaluated epoch (no selection), for finished runs."""
    if record.get("status") != "finished":
        return None
    values = [row[f"test_{metric}"] for row in record.get("curves", ()) if f"test_{metric}" in row]
    return values[-1] if values else None


def _report_values(names, metrics: dict) -> dict:
    """The plugin metrics a record asks reports to show; ``x_l*`` (any name ending in
    ``*``) becomes the list of ``x_l0``, ``x_l1``, ... in numeric order, shown as ``x``."""
    values = {}
    for name in names:
        if name.endswith("*"):
            prefix = name[:-1]
            indexed = sorted((int(k[len(prefix):]), v) for k, v in metrics.items()
                             if k.startswith(prefix) and k[len(prefix):].isdigit())
            if indexed:
                shown = re.sub(r"_[a-z]?$", "", prefix)
                if shown in names:  # e.g. sparsity_l* beside an overall sparsity
                    shown += " per layer"
                values[shown] = [v for _, v in indexed]
        elif name in metrics:
            values[name] = metrics[name]
    return values


RUNS_SCHEMA = {
    "run_id": pl.Utf8, "task": pl.Utf8, "task_spec": pl.Utf8, "method": pl.Utf8,
    "method_label": pl.Utf8, "method_full_label": pl.Utf8,
    "hyperparameters": pl.Utf8,
    "seed": pl.Int64, "status": pl.Utf8, "metric": pl.Utf8, "test": pl.Float64, "test_last": pl.Float64,
    "val": pl.Float64, "test_loss": pl.Float64, "val_loss": pl.Float64,
    "best_epoch": pl.Int64, "epochs": pl.Int64, "n_params": pl.Int64,
    "seconds": pl.Float64, "step_ms": pl.Float64, "train_seconds": pl.Float64, "report": pl.Utf8,
    "error": pl.Utf8, "environment": pl.Utf8, "versions": pl.Utf8,
}


def runs_table(records) -> pl.DataFrame:
    table = pl.DataFrame([table_row(r) for r in records], schema=RUNS_SCHEMA, orient="row")
    return table.sort("task", "method_label", "seed")
