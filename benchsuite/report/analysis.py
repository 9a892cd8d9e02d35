"""From stored runs to the numbers a report shows.

:func:`summary` (from :mod:`benchsuite.report.summary`) condenses runs per task and configuration
(mean, std, divergences, ...). :func:`analyze` adds the statistics of :mod:`benchsuite.stats`: per task, each method's
configuration chosen on validation is compared with the baseline's; across tasks, scores
normalized to the baseline are ranked and aggregated. Its result is plain data (written as
``stats.json``) that :mod:`benchsuite.report.render` turns into Markdown, HTML and leaderboards
(:mod:`benchsuite.report.publish` writes a report folder).

This module holds the entry points (:func:`analyze`, :func:`regressions`, the parsing of
margins and baselines); the work is done in :mod:`benchsuite.report.selection` (which
configuration each method is reported with), :mod:`benchsuite.report.task_analysis` (one task's
comparisons and verdicts), :mod:`benchsuite.report.across_tasks` (ranks, pooled and
random-effects estimates) and :mod:`benchsuite.report.references` (paper reference numbers).

Vocabulary: a *method* is a plugin combination (``wc``, ``wc+lpwd``); a *configuration* is a
method with its hyperparameter values, plus the tunable training values (learning rate,
weight decay) when a matrix sweeps them. A task run under different recipes (other epochs,
optimizer, data) appears as separate task rows and is never pooled.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import polars as pl

from benchsuite import stats
from benchsuite.plugins import version_info
from benchsuite.report.across_tasks import analyze_overall, decide_overall
from benchsuite.report.selection import Seeds
from benchsuite.report.summary import (
    BASELINE,
    current_runs,
    summary,
    superseded_runs,
    with_config_columns,
)
from benchsuite.report.task_analysis import analyze_task
from benchsuite.runs import sequential as seq
from benchsuite.runs.identity import TUNING_SEED_BASE
from benchsuite.runs.variation import seeds_varied
from benchsuite.store.status import STATUS_FINISHED, STATUSES
from benchsuite.tasks.spec import METRICS

DEFAULT_MARGINS = {"accuracy": "0.005", "mse": "2%"}


def parse_margins(items: list[str] | None) -> dict[str, stats.Margin]:
    """``["accuracy=0.01", "mse=5%"]`` over the defaults; raises ValueError on bad input."""
    margins = {k: stats.Margin.parse(v) for k, v in DEFAULT_MARGINS.items()}
    for item in items or ():
        metric, sep, value = item.partition("=")
        if not sep or metric.strip() not in METRICS:
            raise ValueError(f"margin {item!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        margins[metric.strip()] = stats.Margin.parse(value)
    return margins


def parse_baselines(baseline: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"none,l2"`` or ``["none", "l2"]`` -> ``["none", "l2"]``; raises ValueError on an
    empty or repeated name."""
    names = [b.strip() for b in (baseline.split(",") if isinstance(baseline, str) else baseline)]
    if not names or not all(names):
        raise ValueError(f"baseline {baseline!r}: expected one method or a comma-separated list (none,l2,wd)")
    repeated = sorted({b for b in names if names.count(b) > 1})
    if repeated:
        raise ValueError(f"baseline {baseline!r}: {', '.join(repeated)} named twice")
    return names


def analyze(table: pl.DataFrame, *, baseline: str | list[str] = BASELINE, margins: dict | None = None,
            alpha: float = stats.ALPHA, resamples: int = stats.MONTE_CARLO_RESAMPLES, seed: int = 0,
            references: list[dict] | None = None, studies: list[dict] | None = None,
            sequential: seq.Plan | None = None) -> dict:
    """Every statistic a report shows, as JSON-ready data. ``resamples`` and ``seed`` drive
    the Monte Carlo permutation tests used when exact enumeration is too large.
    ``studies``: the results folder's tuning journals (:func:`benchsuite.runs.tuning.read_studies`).
    ``sequential``: the results folder's sequential plan (:func:`benchsuite.runs.sequential.read_plan`):
    each per-task verdict then comes from its deciding look (:func:`benchsuite.runs.sequential.decide`).

    Runs on report seeds are what every test, mean, std and n rests on; runs on tuning
    seeds (trials) give only their validation values, to choose among them and to show
    the tuning effort (:mod:`benchsuite.report.studies`).

    ``baseline``: one method, or several (``"none,l2,wd"``): every method is then compared
    with each, all those comparisons of a task in one Holm family, and the cross-task
    section is made once per baseline (``overall_by_baseline``; ``overall`` is the first's)
    with Holm over every baseline's rows together."""
    baselines = parse_baselines(baseline)
    baseline = baselines[0]
    margins = margins or parse_margins(None)
    current = current_runs(table)
    out = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": version_info(),  # the package and the results format of the code that wrote this
        "baseline": baseline, "baselines": baselines, "alpha": alpha,
        "margins": {k: str(v) for k, v in margins.items()},
        "permutation": {"resamples": resamples, "seed": seed},
        "runs": {s: int((current["status"] == s).sum()) for s in STATUSES}
        if not current.is_empty() else {},
        # what the seeds varied, so what the verdicts are about (benchsuite.runs.variation)
        "variation": seeds_varied(current),
        # runs of older plugin versions of a configuration that also has newer ones: kept
        # in the store, left out of every statistic (summary.current_runs)
        "superseded": superseded_runs(table),
        "tasks": [], "overall": None,
    }
    if sequential is not None:
        out["sequential"] = sequential.to_dict()
    if table.is_empty():
        return out
    runs = with_config_columns(table, studies)
    report_runs = runs.filter(pl.col("role") == "report")
    tuning_runs = runs.filter(pl.col("role") == "tuning")
    summ = summary(table, report_runs, baseline)
    trial_summ = summary(table, tuning_runs, baseline)
    seeds = Seeds(studies or [])
    for row in runs.select("task", "config", "seed", "status", "test", "val", "run_id", "train_seconds").iter_rows():
        seeds.add(*row)
    for task in sorted(set(runs["task"])):
        part = summ.filter(pl.col("task") == task) if not summ.is_empty() else summ
        trials = trial_summ.filter(pl.col("task") == task) if not trial_summ.is_empty() else trial_summ
        out["tasks"].append(analyze_task(task, part, trials, seeds, baselines, margins, alpha, references or [],
                                          sequential))
    # under sequential seeds each comparison stopped at its own look: ranks and run scores
    # compare every method on the seeds all of them have, the first look's
    common = sequential.min if sequential is not None else None
    overall = {b: analyze_overall(out["tasks"], seeds, b, alpha, resamples, seed, common) for b in baselines}
    decide_overall([o for o in overall.values() if o], out["tasks"], alpha)
    out["overall"] = overall[baselines[0]]
    if len(baselines) > 1:
        out["overall_by_baseline"] = overall
    return out


# --- regression against a stored reference ------------------------------------------------

def regressions(current: pl.DataFrame, reference: pl.DataFrame, *, margins: dict | None = None,
                alpha: float = stats.ALPHA) -> list[dict]:
    """Each configuration present in both tables (same task recipe, same hyperparameters),
    compared with its reference runs; Holm over all of them. Returns every comparison with
    ``regression`` true where the current runs are significantly worse beyond the margin."""
    margins = margins or parse_margins(None)

    def seeds(table):
        out: dict[tuple, dict[int, float]] = {}
        meta = {}
        # report seeds alone: a trial's test value is never compared, not even with itself
        report = (pl.col("status") == STATUS_FINISHED) & (pl.col("seed") < TUNING_SEED_BASE)
        for row in table.filter(report).iter_rows(named=True):
            if row["test"] is None or not math.isfinite(row["test"]):
                continue
            key = (row["task"], row["task_spec"], row["method_full_label"])
            out.setdefault(key, {})[row["seed"]] = row["test"]
            meta[key] = row["metric"]
        return out, meta

    now, meta = seeds(current)
    before, _ = seeds(reference)
    results = []
    for key in sorted(set(now) & set(before)):
        metric = meta[key]
        higher = METRICS.get(metric) == "max"
        ref_mean = float(np.mean(list(before[key].values())))
        margin = margins.get(metric, stats.Margin(0.0)).absolute(ref_mean)
        comp = stats.compare(now[key], before[key], higher, margin)
        if comp is None:
            continue
        results.append({"task": key[0], "configuration": key[2], "metric": metric, "comparison": comp})
    stats.decide([r["comparison"] for r in results], alpha)
    for r in results:
        comp = r.pop("comparison")
        r.update(comp.to_dict())
        r["regression"] = comp.verdict == "worse"
    return results


def read_runs_table(path: Path) -> pl.DataFrame:
    """A runs table from a results folder or a ``results.csv`` written by a report."""
    from benchsuite.store import RUNS_SCHEMA, Store

    path = Path(path)
    if path.is_dir():
        if (path / "results.csv").is_file() and not (path / "runs").is_dir():
            path = path / "results.csv"
        else:
            return Store(path).table()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results folder or results.csv there")
    return pl.read_csv(path, schema_overrides=RUNS_SCHEMA)
