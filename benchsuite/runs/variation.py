"""What the seeds of stored runs varied, and so what their verdicts are about.

A run's seed always drives its initialization, data order, dropout and augmentation draws
and its plugins' randomness (:func:`benchsuite.execution.engine.seed_streams`). The train/val/test
split (and, for generated data, the sample) is fixed by the task's ``data.split_seed``
unless the task varies it (``data.vary_split``, ``run --vary split``): then each seed draws
its own, and a verdict is about the data distribution rather than one test set. This module
reads that from the stored runs' task specs; reports print its sentence near the top. No
torch, no scipy: it reads the runs table only.
"""

from __future__ import annotations

import json

import polars as pl

from benchsuite.runs.identity import TUNING_SEED_BASE

ALWAYS_VARIED = "initialization, data order, dropout and augmentation draws, plugin randomness"
FIXED, RESAMPLED, BOTH = "fixed", "resampled", "both"


def split_modes(table: pl.DataFrame) -> dict[str, str]:
    """Per task (by name): ``fixed`` when its report-seed runs all used the task's one split,
    ``resampled`` when each seed drew its own (``vary_split``), ``both`` when its runs hold
    both kinds (two configurations of the task). Tuning-seed runs count only for a task
    without report-seed runs. Returns an empty dict for an empty table."""
    if table.is_empty():
        return {}
    report = table.filter(pl.col("seed") < TUNING_SEED_BASE)
    rows = set(table.select("task", "task_spec").unique().rows())
    reported = set(report.select("task", "task_spec").unique().rows())
    kinds: dict[str, set[str]] = {}
    for task, spec in sorted(rows):
        if any(name == task for name, _ in reported) and (task, spec) not in reported:
            continue
        resampled = bool(json.loads(spec).get("data", {}).get("vary_split", False))
        kinds.setdefault(task, set()).add(RESAMPLED if resampled else FIXED)
    return {task: BOTH if len(found) > 1 else found.pop() for task, found in kinds.items()}


def seeds_varied(table: pl.DataFrame) -> dict | None:
    """What the stored runs' seeds varied: ``{"tasks": {task: mode}, "text": ..., "short":
    ...}``, where ``text`` is the report's sentence (the sources of variation and what the
    verdicts are about, per task when tasks differ) and ``short`` the leaderboard's clause.
    Returns None for an empty table."""
    modes = split_modes(table)
    if not modes:
        return None
    kinds = set(modes.values())
    if kinds == {FIXED}:
        text = (f"Seeds varied: {ALWAYS_VARIED}; the train/val/test split was fixed (one test set per task, "
                "and one sample of generated data): verdicts are about these test sets.")
        short = "Verdicts are about each task's one fixed test set (seeds did not resample the split)."
    elif kinds == {RESAMPLED}:
        text = (f"Seeds varied: {ALWAYS_VARIED}, and the train/val/test split (each seed its own, shared by every "
                "method; generated data drawn anew): verdicts are about the data distribution.")
        short = "Verdicts are about the data distribution (each seed drew its own train/val/test split)."
    else:
        named = {kind: ", ".join(t for t, m in modes.items() if m == kind) for kind in (FIXED, RESAMPLED, BOTH)}
        parts = [f"resampled per seed on {named[RESAMPLED]} (verdicts about the data distribution)"
                 if named[RESAMPLED] else "",
                 f"fixed on {named[FIXED]} (verdicts about its test set)" if named[FIXED] else "",
                 f"both on {named[BOTH]} (fixed-split and resampled-split runs are separate configurations)"
                 if named[BOTH] else ""]
        text = f"Seeds varied: {ALWAYS_VARIED}; the train/val/test split was " + "; ".join(p for p in parts if p) + "."
        varied = ", ".join(t for t, m in modes.items() if m != FIXED)
        short = f"Verdicts are about the data distribution where seeds resampled the split ({varied}) and about " \
                "one fixed test set elsewhere."
    return {"tasks": modes, "text": text, "short": short}
