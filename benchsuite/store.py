"""Results store: one JSON record per run under ``<results>/runs/<run_id>.json``.

Records are written to a temporary file in the same folder, flushed to disk, then
renamed over the final name (``os.replace`` is atomic), so a killed process leaves
either the complete old record, the complete new one, or a stray ``*.tmp`` that is
ignored and cleaned. A run counts as done only when its record says ``finished`` or
``diverged``; ``failed`` runs are retried by the next ``benchsuite run``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from benchsuite.engine import DONE_STATUSES
from benchsuite.files import atomic_write


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def checkpoint_path(self, run_id: str) -> Path:
        """Where a run in progress saves its state (removed when its record is stored)."""
        return self.root / "checkpoints" / f"{run_id}.pt"

    def get(self, run_id: str) -> dict | None:
        path = self.path(run_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Only a file written by something else can be torn (our writes are atomic):
            # keep it aside for inspection and treat the run as not done.
            path.replace(path.with_suffix(".corrupt"))
            return None

    def is_done(self, run_id: str) -> bool:
        record = self.get(run_id)
        return record is not None and record.get("status") in DONE_STATUSES

    def put(self, record: dict) -> Path:
        return atomic_write(self.path(record["run_id"]),
                            lambda fh: json.dump(record, fh, indent=1, allow_nan=True, default=str))

    def clean_partial(self) -> int:
        """Remove temporary files left by a killed writer; returns how many."""
        stray = list(self.runs.glob(".*.tmp")) if self.runs.is_dir() else []
        if (self.root / "checkpoints").is_dir():
            stray += list((self.root / "checkpoints").glob(".*.tmp"))
        for path in stray:
            path.unlink(missing_ok=True)
        return len(stray)

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


def _row(record: dict) -> dict:
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
    "error": pl.Utf8,
}


def runs_table(records) -> pl.DataFrame:
    table = pl.DataFrame([_row(r) for r in records], schema=RUNS_SCHEMA, orient="row")
    return table.sort("task", "method_label", "seed")
