"""Records with chosen numbers, for testing reports, statistics and simulations without training."""

from __future__ import annotations

import hashlib
import json

from benchsuite.store.status import STATUS_FAILED, STATUS_FINISHED


def synthetic_record(task: str, method: str, seed: int, test: float | None, *, val: float | None = None,
                     status: str = STATUS_FINISHED, metric: str = "accuracy", hyperparameters: dict | None = None,
                     train: dict | None = None, curves: list[dict] | None = None, step_ms: float = 1.0,
                     label: str | None = None, headline: str = "selected", versions: dict | None = None) -> dict:
    """A results-store record with chosen numbers, for testing reports and statistics
    without training: ``test``/``val`` are the headline metric's values, ``train``
    overrides task-spec training values (e.g. ``{"lr": 0.1}`` for a swept learning rate),
    ``versions`` the plugin versions that made the run (part of its id, as in real runs)."""
    hyperparameters = hyperparameters or ({} if method == "none" else {p: {} for p in method.split("+")})
    full = "+".join(f"{p}(" + ",".join(f"{k}={v}" for k, v in hyperparameters.get(p, {}).items()) + ")"
                    if hyperparameters.get(p) else p for p in method.split("+"))
    spec = {"name": task, "train": {"epochs": 3, "lr": 0.01, "optimizer": "adam", **(train or {})},
            "eval": {"metric": metric, "headline": headline}}
    metrics = {} if status != STATUS_FINISHED else {
        f"test_{metric}": test, f"val_{metric}": test if val is None else val,
        f"test_{metric}_best10_mean": test, "best_epoch": 2,
    }
    if curves is None and status == STATUS_FINISHED:
        curves = [{"epoch": e, "train_loss": 1.0 / e, f"test_{metric}": test} for e in (1, 2, 3)]
    run_id = "-".join(map(str, (task, full, json_dumps(spec), seed) + ((json_dumps(versions),) if versions else ())))
    return {
        "run_id": hashlib.sha1(run_id.encode()).hexdigest()[:20], "task": task, "task_spec": spec, "method": method,
        "method_label": label or full, "method_full_label": full, "hyperparameters": hyperparameters,
        "seed": seed, "status": status, "metrics": metrics, "curves": curves or [],
        "timings": {"train_seconds": step_ms * 100 / 1000, "steps": 100, "total_seconds": 1.0},
        "error": "Traceback: synthetic failure" if status == STATUS_FAILED else None,
        **({"plugin_versions": versions} if versions else {}),
    }


def json_dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
