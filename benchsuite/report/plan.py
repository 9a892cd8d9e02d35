"""Planning seeds: how many a comparison needs to detect an effect, from the noise of stored runs.

For each task, the standard deviation of the per-seed difference between a method and the
baseline is estimated from stored runs: pooled over every method already compared with the
baseline on paired seeds, or, before any method has run, from the baseline alone as
sqrt(2) times its seed-to-seed deviation (what unpaired noise would give; paired seeds
share initialization and data order, so real differences are usually less noisy). The
seeds needed are those at which the report's own test, the two-sided paired t-test at
alpha / (methods x configurations) (Holm's first step, Bonferroni over configurations
chosen on the same seeds), reaches the requested power. Because a deviation estimated
from a few seeds is itself uncertain, a conservative count uses the upper 80% confidence
bound of the deviation as well.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite import stats
from benchsuite.formatting import fmt
from benchsuite.report.analysis import analyze
from benchsuite.runs.identity import BASELINE

MAX_SEEDS = 10_000


def power_paired(n: int, effect: float, sd: float, level: float) -> float:
    """Power of the two-sided paired t-test at ``level`` with ``n`` pairs, for a true
    mean difference ``effect`` and a per-pair standard deviation ``sd``."""
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else level
    df = n - 1
    critical = scipy.stats.t.ppf(1 - level / 2, df)
    noncentrality = abs(effect) * math.sqrt(n) / sd
    return float(scipy.stats.nct.sf(critical, df, noncentrality) + scipy.stats.nct.cdf(-critical, df, noncentrality))


def seeds_for_power(effect: float, sd: float, level: float, power: float) -> int | None:
    """Smallest n >= 2 whose power reaches ``power`` (None beyond MAX_SEEDS)."""
    if effect == 0:
        return None
    low, high = 2, 2
    while power_paired(high, effect, sd, level) < power:
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while low < high:
        mid = (low + high) // 2
        if power_paired(mid, effect, sd, level) >= power:
            high = mid
        else:
            low = mid + 1
    return low


def detectable_effect(n: int, sd: float, level: float, power: float) -> float | None:
    """Smallest |effect| detected with ``power`` at ``n`` pairs (the minimum detectable effect)."""
    if n < 2 or sd <= 0:
        return None
    low, high = 0.0, sd
    while power_paired(n, high, sd, level) < power:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        if power_paired(n, mid, sd, level) >= power:
            high = mid
        else:
            low = mid
    return high


def noise(task: dict) -> tuple[float | None, int, str]:
    """(sd of a paired difference, its degrees of freedom, where it comes from) for one
    task of an :func:`benchsuite.report.analysis.analyze` result."""
    sum_squares, dof = 0.0, 0
    for comp in task["comparisons"]:
        shared = sorted(set(comp["values_method"]) & set(comp["values_baseline"]))
        if len(shared) >= 2:
            d = np.array([comp["values_method"][s] - comp["values_baseline"][s] for s in shared])
            sum_squares += float(np.sum((d - d.mean()) ** 2))
            dof += len(d) - 1
    if dof:
        return math.sqrt(sum_squares / dof), dof, f"paired differences of {len(task['comparisons'])} method(s)"
    base = next((c for c in task["configs"] if c["selected"] and c["variant"] == task.get("baseline_variant")), None)
    if base is None or base["n"] < 2 or base["std"] is None:
        return None, 0, "no baseline spread"
    return math.sqrt(2) * base["std"], base["n"] - 1, "baseline alone × √2 (no paired method yet)"


def plan(table: pl.DataFrame, effect: stats.Margin, *, methods: int = 1, configurations: int = 1,
         power: float = 0.8, alpha: float = stats.ALPHA, baseline: str = BASELINE,
         studies: list[dict] | None = None) -> list[dict]:
    """Per task: the noise, the seeds it has, the power they give for ``effect``, the
    smallest effect they detect, and the seeds needed (estimate and conservative). Every
    figure comes from report seeds, the runs the report's tests use (never trials)."""
    analysis = analyze(table, baseline=baseline, resamples=100, studies=studies)
    level = alpha / max(1, methods) / max(1, configurations)
    rows = []
    for task in analysis["tasks"]:
        base = next((c for c in task["configs"] if c["selected"] and c["variant"] == baseline), None)
        task["baseline_variant"] = baseline
        row = {"task": task["task"], "metric": task["metric"], "level": level, "power_target": power,
               "n_now": base["n"] if base else 0}
        sd, dof, source = noise(task)
        row.update(sd=sd, sd_df=dof, sd_source=source)
        if sd is None or base is None:
            row["note"] = "needs at least 2 finished baseline seeds"
            rows.append(row)
            continue
        delta = effect.absolute(base["mean"])
        sd_upper = sd * math.sqrt(dof / scipy.stats.chi2.ppf(0.2, dof))
        row.update(
            effect=delta, power_now=power_paired(row["n_now"], delta, sd, level),
            detectable_now=detectable_effect(row["n_now"], sd, level, power),
            seeds_needed=seeds_for_power(delta, sd, level, power),
            seeds_needed_conservative=seeds_for_power(delta, sd_upper, level, power),
            sd_upper80=sd_upper,
            exact_test_floor=stats.seeds_needed(max(1, methods) * max(1, configurations), alpha),
        )
        rows.append(row)
    return rows


def plan_lines(rows: list[dict], effect: stats.Margin, methods: int, configurations: int) -> list[str]:

    head = (f"effect {effect} ({'relative to the baseline mean' if effect.relative else 'absolute'}), "
            f"{methods} method(s) × {configurations} configuration(s) per method: two-sided paired t-test at "
            f"level {rows[0]['level']:.3g}, power {rows[0]['power_target']:g}" if rows else "no runs")
    out = [head]
    table = [("task", "sd(diff)", "from", "seeds now", "power now", "detectable now", "seeds needed",
              "conservative")]
    for r in rows:
        if r.get("note"):
            table.append((r["task"], "-", r["note"], str(r["n_now"]), "-", "-", "-", "-"))
            continue
        table.append((r["task"], fmt(r["sd"], 3), r["sd_source"], str(r["n_now"]), f"{r['power_now']:.2f}",
                      fmt(r["detectable_now"], 3), str(r["seeds_needed"] or f">{MAX_SEEDS}"),
                      str(r["seeds_needed_conservative"] or f">{MAX_SEEDS}")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    floors = [r["exact_test_floor"] for r in rows if "exact_test_floor" in r]
    if floors:
        out.append("conservative: with the upper 80% confidence bound of sd(diff); the exact sign-flip test needs "
                   f"at least {floors[0]} seeds to reach that level at all")
    return out
