"""Point estimates that summarize runs: scores normalized to the baseline, the
interquartile mean, the probability of improvement, a stratified bootstrap, and the
expected best of n tuning trials. None of them is tested; bootstrap intervals
under-cover at few seeds, so the report prints these as point estimates only."""

from __future__ import annotations

import math

import numpy as np
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it


def normalized(values, baseline_mean: float, higher_is_better: bool, scale: float | None = None):
    """Direction-aware improvement over the baseline mean, positive = better (higher
    accuracy or lower loss), in units of ``scale`` (the baseline's seed-to-seed standard
    deviation in reports: +1 is one such deviation better); without one, relative to the
    baseline's magnitude (+0.01 is 1% better)."""
    sign = 1.0 if higher_is_better else -1.0
    scale = scale if scale else (abs(baseline_mean) or 1.0)
    return sign * (np.asarray(values, dtype=float) - baseline_mean) / scale


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return float(scipy.stats.trim_mean(np.asarray(values, dtype=float), 0.25))


def probability_of_improvement(x_by_task, y_by_task, higher_is_better=True) -> float:
    """P(X better than Y) + P(tie) / 2 within each task, averaged over tasks: the chance that
    a run of X beats a run of Y (Mann-Whitney's U / (n_x n_y)). ``higher_is_better`` is one
    bool for every task or one per task: on a lower-is-better metric (MSE) a run beats
    another when its value is lower. 1.0 = every run of X beats every run of Y."""
    directions = list(higher_is_better) if isinstance(higher_is_better, (list, tuple)) \
        else [bool(higher_is_better)] * len(x_by_task)
    if len(directions) != len(x_by_task):
        raise ValueError(f"{len(directions)} directions for {len(x_by_task)} tasks")
    values = []
    for x, y, higher in zip(x_by_task, y_by_task, directions):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        sign = 1.0 if higher else -1.0
        greater = (sign * x[:, None] > sign * y[None, :]).mean()
        ties = (x[:, None] == y[None, :]).mean()
        values.append(greater + 0.5 * ties)
    return float(np.mean(values))


def stratified_bootstrap(groups, statistic, resamples: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """Point estimate and percentile interval of ``statistic(groups)`` where each resample
    draws, within every stratum (task), as many runs as it has, with replacement.
    ``groups`` is a list of strata; each stratum is a tuple of arrays resampled separately
    (e.g. a method's and the baseline's runs on that task)."""
    rng = np.random.default_rng(seed)
    point = statistic(groups)
    draws = np.empty(resamples)
    for i in range(resamples):
        resampled = [tuple(a[rng.integers(0, len(a), len(a))] for a in stratum) for stratum in groups]
        draws[i] = statistic(resampled)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(point), float(low), float(high)


def expected_best(scores, higher_is_better: bool = True) -> list[dict]:
    """The expected best of ``n`` trials drawn with replacement from the K observed, for
    n = 1..K (Dodge et al., 2019, "Show Your Work"): with the scores sorted from worst to
    best, ``v_1 .. v_K``, ``E[best of n] = sum_i v_i ((i/K)^n - ((i-1)/K)^n)``.

    A lost trial (None or not finite: diverged, failed) is a draw worse than any other:
    the expectation is over the draws that hold at least one usable trial, and
    ``p_none`` is the chance that all n are lost ((L/K)^n). The estimator is biased at
    small K (Tang et al., 2020); reports show it with the observed trials."""
    usable = [float(v) for v in scores if v is not None and math.isfinite(v)]
    k, lost = len(scores), len(scores) - len(usable)
    if k == 0:
        return []
    ordered = sorted(usable, reverse=not higher_is_better)  # worst first
    out = []
    for n in range(1, k + 1):
        p_none = (lost / k) ** n
        if not usable:
            out.append({"n": n, "value": None, "p_none": p_none})
            continue
        ranks = np.arange(lost + 1, k + 1)  # the usable trials' ranks, after the lost ones
        weights = (ranks / k) ** n - ((ranks - 1) / k) ** n
        value = float(np.dot(weights, ordered) / (1.0 - p_none))
        out.append({"n": n, "value": value, "p_none": p_none})
    return out
