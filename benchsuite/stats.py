"""Statistics for reports: per-task comparisons with the baseline and cross-task aggregates.

Everything here is a plain function of numbers (numpy arrays in, floats and dicts out), so
each statistic can be checked against an independent computation. The report layer
(:mod:`benchsuite.report`) decides what is compared with what.

Choices, and why (see also the "Statistics" section of the README):

- Per task, seeds pair: seed ``s`` of a method and seed ``s`` of the baseline share the data
  order and the initialization, so the paired t-test on per-seed differences is the
  primary test, with a 95% t-interval for the mean difference. Intervals from the bootstrap
  under-cover badly at n <= 5 and are kept for pooled cross-task aggregates only.
- When the finished seeds of the two sides differ (a diverged or failed seed, seeds run
  separately), they do not pair: Welch's t-test, and the report says so.
- The exact sign-flip test (or, unpaired, the exact permutation test) needs no normality.
  With n pairs its smallest two-sided p is ``2 / 2**n`` (0.0625 at n = 5), so it can never
  be significant at 5% with 5 seeds: the report shows the minimum attainable p next to it.
- Holm's step-down correction over the methods compared with the baseline on one task
  (only "vs baseline" comparisons, not all pairs).
- Verdicts, at level ``alpha`` and a per-metric margin of practical equivalence:
  ``equivalent`` when the two one-sided tests (TOST, i.e. the 90% t-interval) place the
  difference inside the margin; otherwise ``better``/``worse`` when the Holm-adjusted t-test
  p is below alpha; otherwise ``inconclusive``. A difference shown to be smaller than the
  margin is not an improvement worth claiming, however consistent it is.
- Across tasks: scores normalized to the baseline, direction-aware (positive = better);
  mean ranks with Friedman's test and the Iman-Davenport F; Wilcoxon signed-rank tests vs the
  baseline over tasks with Holm; IQM and probability of improvement with stratified
  bootstrap intervals (resampling seeds within each task; seeded, so reproducible).
- The critical-difference diagram groups methods by pairwise Wilcoxon tests with Holm
  (Benavoli et al., 2016) rather than the Nemenyi mean-rank test, whose verdict on two
  methods changes when other methods join the pool.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as _st

ALPHA = 0.05
EXACT_LIMIT = 2**16  # enumerate every sign flip / permutation up to this many
MONTE_CARLO_RESAMPLES = 100_000


# --- multiple comparisons ---------------------------------------------------------------

def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


# --- one task: a method against the baseline ---------------------------------------------

@dataclass
class Margin:
    """Margin of practical equivalence: an absolute value, or a fraction of |baseline mean|."""

    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str | float) -> Margin:
        text = str(text).strip()
        try:
            if text.endswith("%"):
                value, relative = float(text[:-1]) / 100, True
            else:
                value, relative = float(text), False
        except ValueError:
            raise ValueError(f"margin {text!r}: expected a number (absolute) or a percentage like '2%'") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"margin {text!r}: must be a finite non-negative number")
        return cls(value, relative)

    def absolute(self, baseline_mean: float) -> float:
        return self.value * abs(baseline_mean) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


@dataclass
class Comparison:
    """A method against the baseline on one task. ``diff`` is method minus baseline in the
    metric's units; ``improvement`` is the same with the sign that makes better positive."""

    paired: bool
    test: str
    n_method: int
    n_baseline: int
    n_pairs: int
    diff: float
    improvement: float
    ci_low: float
    ci_high: float
    p: float
    exact_test: str
    exact_p: float
    exact_min_p: float
    margin: float
    equivalence_p: float
    p_holm: float = float("nan")
    verdict: str = "inconclusive"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def paired_t(diffs) -> tuple[float, float, float]:
    """Two-sided paired t-test on differences: (p, ci_low, ci_high) of the mean, 95%.
    Identical differences (zero spread) give p = 1 when they are all 0, else p = 0 and a
    zero-width interval: the seeds agree exactly."""
    d = np.asarray(diffs, dtype=float)
    if np.ptp(d) == 0:
        return (1.0 if d[0] == 0 else 0.0), float(d[0]), float(d[0])
    res = _st.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(1 - ALPHA)
    return float(res.pvalue), float(ci.low), float(ci.high)


def welch_t(method, baseline) -> tuple[float, float, float]:
    """Welch's two-sided t-test: (p, ci_low, ci_high) of mean(method) - mean(baseline), 95%."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    diff = a.mean() - b.mean()
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return (1.0 if diff == 0 else 0.0), float(diff), float(diff)
    res = _st.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(1 - ALPHA)
    return float(res.pvalue), float(ci.low), float(ci.high)


def sign_flip(diffs, seed: int = 0) -> tuple[float, float]:
    """Exact two-sided sign-flip test of mean(diffs) = 0: (p, minimum attainable p)."""
    d = np.asarray(diffs, dtype=float)
    nonzero = int(np.count_nonzero(d))
    min_p = min(1.0, 2.0 / 2**nonzero) if nonzero else 1.0
    if nonzero == 0:
        return 1.0, 1.0
    exact = 2 ** len(d) <= EXACT_LIMIT
    res = _st.permutation_test(
        (d,), np.mean, permutation_type="samples", vectorized=True,
        n_resamples=np.inf if exact else MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(seed),
    )
    return float(res.pvalue), min_p


def permutation_unpaired(method, baseline, seed: int = 0) -> tuple[float, float]:
    """Exact permutation test of equal means for unpaired samples; two-sided p is twice
    the smaller tail. Returns (p, minimum attainable p = 2 / C(n1 + n2, n1))."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    arrangements = math.comb(len(a) + len(b), len(a))
    min_p = min(1.0, 2.0 / arrangements)

    def mean_diff(x, y, axis):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = _st.permutation_test(
        (a, b), mean_diff, permutation_type="independent", vectorized=True,
        n_resamples=np.inf if arrangements <= EXACT_LIMIT else MONTE_CARLO_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue), min_p


def tost_paired(diffs, margin: float) -> float:
    """Two one-sided paired t-tests of |mean diff| < margin; the larger p (equivalence
    is shown at level alpha when it is below alpha)."""
    d = np.asarray(diffs, dtype=float)
    if margin <= 0:
        return 1.0
    if np.ptp(d) == 0:
        return 0.0 if abs(d[0]) < margin else 1.0
    lower = _st.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = _st.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(lower, upper))


def tost_welch(method, baseline, margin: float) -> float:
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if margin <= 0:
        return 1.0
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 0.0 if abs(a[0] - b[0]) < margin else 1.0
    lower = _st.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    upper = _st.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    return float(max(lower, upper))


def compare(method: dict[int, float], baseline: dict[int, float], higher_is_better: bool,
            margin: float) -> Comparison | None:
    """Compare finished runs keyed by seed; ``None`` when either side has fewer than 2."""
    if len(method) < 2 or len(baseline) < 2:
        return None
    sign = 1.0 if higher_is_better else -1.0
    notes = []
    if set(method) == set(baseline):
        seeds = sorted(method)
        d = np.array([method[s] - baseline[s] for s in seeds])
        p, low, high = paired_t(d)
        exact_p, min_p = sign_flip(d)
        comp = Comparison(
            paired=True, test="paired t", n_method=len(method), n_baseline=len(baseline), n_pairs=len(seeds),
            diff=float(d.mean()), improvement=float(sign * d.mean()), ci_low=low, ci_high=high, p=p,
            exact_test="sign-flip", exact_p=exact_p, exact_min_p=min_p, margin=margin,
            equivalence_p=tost_paired(d, margin), notes=notes,
        )
    else:
        a, b = np.array(list(method.values())), np.array(list(baseline.values()))
        p, low, high = welch_t(a, b)
        exact_p, min_p = permutation_unpaired(a, b)
        notes.append(f"seeds do not pair ({len(method)} vs {len(baseline)} finished, "
                     f"{len(set(method) & set(baseline))} shared): unpaired Welch test")
        comp = Comparison(
            paired=False, test="Welch t", n_method=len(a), n_baseline=len(b), n_pairs=0,
            diff=float(a.mean() - b.mean()), improvement=float(sign * (a.mean() - b.mean())),
            ci_low=low, ci_high=high, p=p, exact_test="permutation", exact_p=exact_p, exact_min_p=min_p,
            margin=margin, equivalence_p=tost_welch(a, b, margin), notes=notes,
        )
    return comp


def decide(comparisons: list[Comparison], alpha: float = ALPHA) -> None:
    """Holm over the comparisons of one task, then each verdict (in place)."""
    for comp, adjusted in zip(comparisons, holm([c.p for c in comparisons])):
        comp.p_holm = adjusted
        if comp.equivalence_p < alpha:
            comp.verdict = "equivalent"
        elif adjusted < alpha:
            comp.verdict = "better" if comp.improvement > 0 else "worse"
        else:
            comp.verdict = "inconclusive"


def seeds_needed(n_methods: int, alpha: float = ALPHA) -> int:
    """Paired seeds the exact sign-flip test needs to be able to reach significance after
    Holm over ``n_methods`` comparisons (2 / 2**n * m < alpha)."""
    n = 1
    while 2.0 / 2**n * max(1, n_methods) >= alpha:
        n += 1
    return n


# --- across tasks ------------------------------------------------------------------------

def normalized(values, baseline_mean: float, higher_is_better: bool):
    """Direction-aware improvement over the baseline mean, relative to its magnitude:
    0 is the baseline, +0.01 is 1% better (higher accuracy or lower loss)."""
    sign = 1.0 if higher_is_better else -1.0
    scale = abs(baseline_mean) or 1.0
    return sign * (np.asarray(values, dtype=float) - baseline_mean) / scale


def rank_matrix(scores) -> np.ndarray:
    """Ranks per task (row) of a tasks x methods matrix of scores, higher score = rank 1;
    ties share the mean rank."""
    scores = np.asarray(scores, dtype=float)
    return np.vstack([_st.rankdata(-row) for row in scores])


def friedman(scores) -> dict:
    """Friedman's test over a tasks x methods matrix (k >= 3 methods, N >= 2 tasks), with
    the Iman-Davenport F correction: mean ranks, chi2, its p, F, its p."""
    scores = np.asarray(scores, dtype=float)
    n_tasks, k = scores.shape
    ranks = rank_matrix(scores)
    out = {"mean_ranks": ranks.mean(axis=0).tolist(), "n_tasks": n_tasks, "k": k}
    if k < 3 or n_tasks < 2:
        out["note"] = "Friedman's test needs at least 3 methods and 2 tasks"
        return out
    if np.all(np.ptp(scores, axis=1) == 0):
        out.update(chi2=0.0, p=1.0, F=0.0, p_F=1.0)
        return out
    chi2, p = _st.friedmanchisquare(*scores.T)
    f_stat, p_f = iman_davenport(float(chi2), n_tasks, k)
    out.update(chi2=float(chi2), p=float(p), F=f_stat, df=[k - 1, (k - 1) * (n_tasks - 1)], p_F=p_f)
    return out


def iman_davenport(chi2: float, n_tasks: int, k: int) -> tuple[float, float]:
    """Iman and Davenport's F from Friedman's chi2 (less conservative than chi2):
    F = (N - 1) chi2 / (N (k - 1) - chi2) on (k - 1, (k - 1)(N - 1)) degrees of freedom."""
    denominator = n_tasks * (k - 1) - chi2
    if denominator <= 0:  # every task ranks the methods identically
        return math.inf, 0.0
    f_stat = (n_tasks - 1) * chi2 / denominator
    return float(f_stat), float(_st.f.sf(f_stat, k - 1, (k - 1) * (n_tasks - 1)))


def wilcoxon(diffs) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test over tasks (exact when small): (p, min p)."""
    d = np.asarray(diffs, dtype=float)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return 1.0, 1.0
    min_p = min(1.0, 2.0 / 2**nonzero)
    res = _st.wilcoxon(d, zero_method="wilcox", method="auto")
    return float(res.pvalue), min_p


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


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return float(_st.trim_mean(np.asarray(values, dtype=float), 0.25))


def probability_of_improvement(x_by_task, y_by_task) -> float:
    """P(X > Y) + P(X = Y) / 2 within each task, averaged over tasks (higher = X better)."""
    values = []
    for x, y in zip(x_by_task, y_by_task):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        greater = (x[:, None] > y[None, :]).mean()
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
