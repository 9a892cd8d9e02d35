"""A stored record's checks: its format, fields and size (what counts as a record)."""

from __future__ import annotations

from benchsuite.store.status import RECORD_FORMAT, STATUS_FINISHED, STATUSES
from benchsuite.store.table import table_row


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

