"""Across tasks, on ranks: each task's ranking of the methods, Friedman's test of equal
mean ranks (permutation p, with the chi2 and Iman-Davenport approximations), the
Wilcoxon signed-rank test over tasks, and the groups of a critical-difference diagram."""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite.stats.common import (
    ALPHA,
    EXACT_LIMIT,
    FRIEDMAN_RESAMPLES,
    SMALLEST_P,
    _finite,
    _floor_p,
    holm,
    min_sign_flip_p,
)


def rank_matrix(scores) -> np.ndarray:
    """Ranks per task (row) of a tasks x methods matrix of scores, higher score = rank 1;
    ties share the mean rank."""
    scores = np.asarray(scores, dtype=float)
    return np.vstack([scipy.stats.rankdata(-row) for row in scores])


def friedman(scores, seed: int = 0, resamples: int = FRIEDMAN_RESAMPLES) -> dict:
    """Friedman's test over a tasks x methods matrix (k >= 3 methods, N >= 2 tasks): mean
    ranks, chi2 with its asymptotic p, the Iman-Davenport F with its p, and ``p_perm``,
    the p from the permutation distribution of the statistic (methods' ranks shuffled
    within each task, ties kept): exact by enumeration when (k!)^(N-1) is small, else
    Monte Carlo with ``resamples`` draws (p = (hits + 1) / (draws + 1)). The report uses
    ``p_perm``: the chi2 and F approximations fail with few tasks (2 tasks that rank every
    method identically give F = inf, yet the exact p with 4 methods is 1/24)."""
    scores = np.asarray(scores, dtype=float)
    n_tasks, k = scores.shape
    ranks = rank_matrix(scores)
    out = {"mean_ranks": ranks.mean(axis=0).tolist(), "n_tasks": n_tasks, "k": k}
    if k < 3 or n_tasks < 2:
        out["note"] = "Friedman's test needs at least 3 methods and 2 tasks"
        return out
    if np.all(np.ptp(scores, axis=1) == 0):
        out.update(chi2=0.0, p=1.0, F=0.0, p_F=1.0, p_perm=1.0, perm="exact")
        return out
    chi2, p = scipy.stats.friedmanchisquare(*scores.T)
    f_stat, p_f = iman_davenport(float(chi2), n_tasks, k)
    p_perm, kind = _friedman_permutation_p(ranks, seed, resamples)
    out.update(chi2=float(chi2), p=_floor_p(p), F=f_stat, df=[k - 1, (k - 1) * (n_tasks - 1)], p_F=p_f,
               p_perm=p_perm, perm=kind)
    return out


def _friedman_permutation_p(ranks: np.ndarray, seed: int, resamples: int) -> tuple[float, str]:
    """P(sum of squared rank sums >= observed) when each task's ranks are shuffled; that sum
    is a monotone function of Friedman's chi2 (ties included) under within-task shuffles."""
    n_tasks, k = ranks.shape
    observed = float(np.sum(ranks.sum(axis=0) ** 2))
    tolerance = 1e-9 * max(1.0, observed)
    if math.factorial(k) ** (n_tasks - 1) <= 200_000:
        # the first task's order can stay fixed: relabelling methods leaves the statistic alone
        perms = np.array(list(itertools.permutations(range(k))))
        totals = ranks[0][None, :]
        for row in ranks[1:]:
            totals = (totals[:, None, :] + row[perms][None, :, :]).reshape(-1, k)
        hits = np.count_nonzero(np.sum(totals**2, axis=1) >= observed - tolerance)
        return max(SMALLEST_P, hits / len(totals)), "exact"
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < resamples:
        batch = min(2000, resamples - done)
        shuffled = rng.permuted(np.broadcast_to(ranks, (batch, n_tasks, k)), axis=2)
        hits += int(np.count_nonzero(np.sum(shuffled.sum(axis=1) ** 2, axis=1) >= observed - tolerance))
        done += batch
    return (hits + 1) / (resamples + 1), f"Monte Carlo, {resamples:,} draws"


def iman_davenport(chi2: float, n_tasks: int, k: int) -> tuple[float, float]:
    """Iman and Davenport's F from Friedman's chi2 (less conservative than chi2):
    F = (N - 1) chi2 / (N (k - 1) - chi2) on (k - 1, (k - 1)(N - 1)) degrees of freedom.
    When every task ranks the methods identically F is infinite and its p undefined (NaN):
    use the permutation p."""
    denominator = n_tasks * (k - 1) - chi2
    if denominator <= 1e-12 * n_tasks * k:
        return math.inf, math.nan
    f_stat = (n_tasks - 1) * chi2 / denominator
    return float(f_stat), _floor_p(scipy.stats.f.sf(f_stat, k - 1, (k - 1) * (n_tasks - 1)))


def wilcoxon(diffs) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test over tasks, zeros dropped: (p, min p). Exact
    when small (up to 50 differences without ties, 16 with ties), normal approximation
    with tie correction beyond."""
    d = _finite(diffs, "differences over tasks")
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return 1.0, 1.0
    min_p = min_sign_flip_p(nonzero)
    d = d[d != 0]  # zero_method "wilcox"
    if len(np.unique(np.abs(d))) < len(d) and len(d) <= math.log2(EXACT_LIMIT):
        # with ties scipy's exact test scores each of the 2**n sign patterns by a Python call
        # (half a second at 10 tasks); the same enumeration, scored at once
        res = scipy.stats.permutation_test((d,), _signed_rank_sum, permutation_type="samples", vectorized=True,
                                   n_resamples=np.inf)
    else:
        res = scipy.stats.wilcoxon(d, method="auto")
    return max(float(res.pvalue), min_p), min_p


def _signed_rank_sum(d, axis):
    ranks = scipy.stats.rankdata(np.abs(d), axis=axis)
    return np.sum(np.where(d > 0, ranks, 0), axis=axis)


def cd_cliques(scores, names: list[str], alpha: float = ALPHA) -> dict:
    """Mean ranks and groups of methods with no significant pairwise difference
    (Wilcoxon signed-rank over tasks, Holm over all pairs): the bars of a
    critical-difference diagram."""
    scores = np.asarray(scores, dtype=float)
    k = len(names)
    mean_ranks = rank_matrix(scores).mean(axis=0)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    raw = [wilcoxon(scores[:, i] - scores[:, j])[0] for i, j in pairs]
    adjusted = holm(raw)
    different = {pair: p < alpha for pair, p in zip(pairs, adjusted)}
    order = sorted(range(k), key=lambda i: mean_ranks[i])
    cliques = []
    for start in range(k):
        end = start
        while end + 1 < k and not any(
            different[tuple(sorted((order[a], order[end + 1])))] for a in range(start, end + 1)
        ):
            end += 1
        members = [names[order[i]] for i in range(start, end + 1)]
        if len(members) > 1 and not any(set(members) <= set(c) for c in cliques):
            cliques.append(members)
    return {
        "mean_ranks": {names[i]: float(mean_ranks[i]) for i in range(k)},
        "pairs": [{"a": names[i], "b": names[j], "p": p, "p_holm": q}
                  for (i, j), p, q in zip(pairs, raw, adjusted)],
        "cliques": cliques,
    }
