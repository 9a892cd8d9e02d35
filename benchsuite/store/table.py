"""Records flattened into the runs table: one row per run, the columns every reader uses."""

from __future__ import annotations

import json
import re

import polars as pl


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

