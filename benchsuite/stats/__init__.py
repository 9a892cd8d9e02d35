"""Statistics for reports: per-task comparisons with the baseline and cross-task aggregates.

Everything here is a plain function of numbers (numpy arrays in, floats and dicts out), so
each statistic can be checked against an independent computation. The report layer
(:mod:`benchsuite.report.analysis`) decides what is compared with what.

Choices, and why (see also docs/statistics.md):

- Per task, seeds pair: seed ``s`` of a method and seed ``s`` of the baseline share the data
  order and the initialization, so the paired t-test on per-seed differences is the
  primary test, with a 95% t-interval for the mean difference. Intervals from the bootstrap
  under-cover badly at n <= 5 and are not used for anything the report prints.
- When a seed is missing on one side (a diverged or failed seed), the seeds both sides
  finished still pair: the paired test runs on them and the report names the seeds left
  out. Only when fewer than 2 seeds pair (seeds run separately) is it Welch's t-test.
- The exact sign-flip test (or, unpaired, the exact permutation test) needs no normality.
  With n pairs its smallest two-sided p is ``2 / 2**n`` (0.0625 at n = 5), so it can never
  be significant at 5% with 5 seeds: the report shows the minimum attainable p next to it.
- Holm's step-down correction over the comparisons of one task (every method against every
  baseline of the report; not all pairs of methods).
- Verdicts, at level ``alpha`` and a per-metric margin of practical equivalence:
  ``equivalent`` when the two one-sided tests (TOST, i.e. the 90% t-interval) place the
  difference inside the margin; otherwise ``better``/``worse`` when the Holm-adjusted t-test
  p is below alpha; otherwise ``inconclusive``. A difference shown to be smaller than the
  margin is not an improvement worth claiming, however consistent it is.
- Across tasks: each task's effect in units of its seed-to-seed standard deviation
  (:func:`standardized_effect`, direction-aware, positive = better); mean ranks with
  Friedman's test (permutation p) and the Iman-Davenport F; Wilcoxon signed-rank tests vs
  the baseline over tasks with Holm; probability of improvement as a point estimate.
- The critical-difference diagram groups methods by pairwise Wilcoxon tests with Holm
  (Benavoli et al., 2016) rather than the Nemenyi mean-rank test, whose verdict on two
  methods changes when other methods join the pool.
- No p-value is exactly 0: identical differences on every seed (no spread, so no t-test)
  fall back to the exact sign-flip (or permutation) test, whose p is at least its minimum
  attainable p; Friedman's p comes from the permutation distribution of the rank sums
  (exact for few tasks), never from F = inf.
- Pooled across tasks (:func:`pooled_improvement`): the mean over these tasks of their
  standardized effects, with a t-interval whose standard error adds the tasks' variances
  (paired where seeds pair, so the baseline's noise enters) and whose degrees of freedom are
  Welch-Satterthwaite's. For another task (:func:`random_effects`): a random-effects estimate
  with Paule-Mandel's tau^2, the modified Hartung-Knapp interval and a prediction interval.
  :func:`across_task_reading` reads both (``mixed`` among its verdicts). Bootstrap intervals
  of pooled IQM and P(better) under-cover at 3-10 seeds (A/A coverage 0.62-0.80 measured), so
  those are point estimates only.
- A configuration chosen among K on validation and tested on the same seeds is tested at
  alpha / K (Bonferroni over the K configurations, valid whatever the selection rule and
  the correlation of validation with test); its interval is the simultaneous 1 - alpha / K
  one. A configuration chosen by tuning (``run --tune``: trials on tuning seeds, the
  chosen one on report seeds its selection never saw) is tested with K = 1.
- Tuning effort: the expected best validation score of n trials drawn from the K observed
  (Dodge et al., 2019), see :func:`expected_best`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as _st

ALPHA = 0.05
EXACT_LIMIT = 2**16  # enumerate every sign flip / permutation up to this many
MONTE_CARLO_RESAMPLES = 100_000
# the sign-flip test is exact up to this many pairs: 2 * 2**18 sorted partial sums, a few
# hundredths of a second (Monte Carlo beyond)
SIGN_FLIP_EXACT_PAIRS = 36
# as many as the other Monte Carlo tests: under 0.5 s for 10 methods x 20 tasks (`python tests/perf/friedman_draws.py`)
FRIEDMAN_RESAMPLES = MONTE_CARLO_RESAMPLES
SMALLEST_P = float(np.finfo(float).tiny)  # floating-point underflow is not evidence of p = 0


def _floor_p(p: float) -> float:
    return max(float(p), SMALLEST_P)


def min_sign_flip_p(n_nonzero: int) -> float:
    """Smallest two-sided p of an exact sign-flip / signed-rank test over ``n`` non-zero
    differences, 2 / 2**n, without overflow at any n."""
    return max(SMALLEST_P, min(1.0, math.ldexp(1.0, 1 - n_nonzero))) if n_nonzero else 1.0


def no_spread(values) -> bool:
    """All values equal, up to floating-point rounding (differences of accuracies that
    are equal on paper differ in the 17th digit; a t-test would read that as certainty)."""
    x = np.asarray(values, dtype=float)
    return bool(np.ptp(x) <= 1e-9 * np.max(np.abs(x))) if len(x) else True


def _finite(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: non-finite values ({array[~np.isfinite(array)][:3].tolist()}); "
                         "leave diverged runs out before testing")
    return array


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
    selected_among: int = 1
    p_raw: float = float("nan")
    p_holm: float = float("nan")
    verdict: str = "inconclusive"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def paired_t(diffs, confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """Two-sided paired t-test on differences: (p, ci_low, ci_high) of the mean at
    ``confidence``. Identical differences (zero spread) have no t statistic: p is the exact
    sign-flip test's (1 when they are all 0) and the interval is undefined (NaN)."""
    d = _finite(diffs, "paired differences")
    if no_spread(d):
        return (1.0 if np.all(d == 0) else sign_flip(d)[0]), math.nan, math.nan
    n = len(d)
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    p = 2 * float(_st.t.sf(abs(mean) / se, n - 1))
    half = float(_st.t.ppf(1 - (1 - confidence) / 2, n - 1)) * se
    return _floor_p(min(1.0, p)), mean - half, mean + half


def welch_t(method, baseline, confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """Welch's two-sided t-test: (p, ci_low, ci_high) of mean(method) - mean(baseline).
    Both samples constant: the exact permutation test's p, no interval."""
    a, b = _finite(method, "method values"), _finite(baseline, "baseline values")
    diff = a.mean() - b.mean()
    if no_spread(a) and no_spread(b):
        return (1.0 if diff == 0 else permutation_unpaired(a, b)[0]), math.nan, math.nan
    res = _st.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return _floor_p(res.pvalue), float(ci.low), float(ci.high)


def sign_flip(diffs, seed: int = 0) -> tuple[float, float]:
    """Two-sided sign-flip test of mean(diffs) = 0: (p, minimum attainable p); exact up to
    ``SIGN_FLIP_EXACT_PAIRS`` pairs (all 2**n sign patterns, counted by meeting in the
    middle), Monte Carlo beyond (p = (hits + 1) / (draws + 1))."""
    d = _finite(diffs, "paired differences")
    nonzero = int(np.count_nonzero(d))
    min_p = min_sign_flip_p(nonzero)
    if nonzero == 0:
        return 1.0, 1.0
    observed = abs(d.mean())
    tolerance = 1e-9 * max(observed, float(np.max(np.abs(d))))
    if len(d) <= SIGN_FLIP_EXACT_PAIRS:
        p = _sign_flip_exact(d, len(d) * (observed - tolerance))
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        for start in range(0, MONTE_CARLO_RESAMPLES, 10_000):
            count = min(10_000, MONTE_CARLO_RESAMPLES - start)
            signs = rng.choice((-1.0, 1.0), size=(count, len(d)))
            hits += int(np.count_nonzero(np.abs(signs @ d) / len(d) >= observed - tolerance))
        p = (hits + 1) / (MONTE_CARLO_RESAMPLES + 1)
    return max(p, min_p), min_p


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """The 2**len(values) sums of +-values."""
    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate([sums + v, sums - v])
    return sums


def _sign_flip_exact(d: np.ndarray, threshold: float) -> float:
    """The share of the 2**n sign patterns s with |s . d| >= threshold, counted exactly
    without listing them: every sum is a sum over the first half of d plus one over the
    second, so for each first-half sum a binary search over the sorted second-half sums
    counts its partners at or beyond +-threshold (2 * 2**(n/2) sums, not 2**n)."""
    if threshold <= 0:
        return 1.0
    half = len(d) // 2
    left, right = np.sort(_signed_sums(d[:half])), np.sort(_signed_sums(d[half:]))  # sorted queries search faster
    at_or_above = len(right) - np.searchsorted(right, threshold - left, side="left")
    at_or_below = np.searchsorted(right, -threshold - left, side="right")
    return math.ldexp(float(np.sum(at_or_above) + np.sum(at_or_below)), -len(d))


def permutation_unpaired(method, baseline, seed: int = 0) -> tuple[float, float]:
    """Exact permutation test of equal means for unpaired samples; two-sided p is twice
    the smaller tail. Returns (p, minimum attainable p = 2 / C(n1 + n2, n1))."""
    a, b = _finite(method, "method values"), _finite(baseline, "baseline values")
    arrangements = math.comb(len(a) + len(b), len(a))
    min_p = max(SMALLEST_P, min(1.0, 2.0 / arrangements))

    def mean_diff(x, y, axis):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = _st.permutation_test(
        (a, b), mean_diff, permutation_type="independent", vectorized=True,
        n_resamples=np.inf if arrangements <= EXACT_LIMIT else MONTE_CARLO_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    return max(float(res.pvalue), min_p), min_p


def tost_paired(diffs, margin: float) -> float:
    """Two one-sided paired t-tests of |mean diff| < margin; the larger p (equivalence
    is shown at level alpha when it is below alpha). Identical differences: the exact
    one-sided sign-flip p, 1 / 2**n, when they lie inside the margin."""
    d = _finite(diffs, "paired differences")
    if margin <= 0:
        return 1.0
    if no_spread(d):
        return max(SMALLEST_P, math.ldexp(1.0, -len(d))) if np.all(np.abs(d) < margin) else 1.0
    n = len(d)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    lower = _st.t.sf((d.mean() + margin) / se, n - 1)  # H0: mean <= -margin
    upper = _st.t.cdf((d.mean() - margin) / se, n - 1)  # H0: mean >= margin
    return _floor_p(max(lower, upper))


def tost_welch(method, baseline, margin: float) -> float:
    a, b = _finite(method, "method values"), _finite(baseline, "baseline values")
    if margin <= 0:
        return 1.0
    if no_spread(a) and no_spread(b):
        return max(SMALLEST_P, 1.0 / math.comb(len(a) + len(b), len(a))) if abs(a.mean() - b.mean()) < margin else 1.0
    lower = _st.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    upper = _st.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    return _floor_p(max(lower, upper))


def compare(method: dict[int, float], baseline: dict[int, float], higher_is_better: bool,
            margin: float, selected_among: int = 1) -> Comparison | None:
    """Compare finished runs keyed by seed; ``None`` when fewer than 2 runs on a side.

    Seeds present on both sides pair (paired t-test on them, the others left out and
    named in a note) when there are at least 2 pairs; otherwise Welch's test on all runs.
    ``selected_among`` is K when this configuration (with the baseline's) was chosen among
    K combinations on the same seeds: p, exact p and equivalence p are multiplied by K
    (Bonferroni) and the interval is the simultaneous 1 - alpha / K one."""
    if len(method) < 2 or len(baseline) < 2:
        return None
    k = max(1, int(selected_among))
    confidence = 1 - ALPHA / k
    sign = 1.0 if higher_is_better else -1.0
    notes = []
    shared = sorted(set(method) & set(baseline))
    if len(shared) >= 2:
        d = np.array([method[s] - baseline[s] for s in shared])
        p, low, high = paired_t(d, confidence)
        exact_p, min_p = sign_flip(d)
        unpaired = sorted(set(method) ^ set(baseline))
        if unpaired:
            notes.append(f"paired on the {len(shared)} seeds both sides finished; seed(s) "
                         f"{', '.join(map(str, unpaired))} have no pair and are left out")
        if no_spread(d):
            notes.append("every seed gives the same difference: no t-test, p from the exact sign-flip test, "
                         "no interval")
        comp = Comparison(
            paired=True, test="paired t", n_method=len(method), n_baseline=len(baseline), n_pairs=len(shared),
            diff=float(d.mean()), improvement=float(sign * d.mean()), ci_low=low, ci_high=high, p=p,
            exact_test="sign-flip", exact_p=exact_p, exact_min_p=min_p, margin=margin,
            equivalence_p=tost_paired(d, margin), notes=notes,
        )
    else:
        a, b = np.array(list(method.values())), np.array(list(baseline.values()))
        p, low, high = welch_t(a, b, confidence)
        exact_p, min_p = permutation_unpaired(a, b)
        notes.append(f"seeds do not pair ({len(method)} vs {len(baseline)} finished, "
                     f"{len(shared)} shared): unpaired Welch test")
        comp = Comparison(
            paired=False, test="Welch t", n_method=len(a), n_baseline=len(b), n_pairs=len(shared),
            diff=float(a.mean() - b.mean()), improvement=float(sign * (a.mean() - b.mean())),
            ci_low=low, ci_high=high, p=p, exact_test="permutation", exact_p=exact_p, exact_min_p=min_p,
            margin=margin, equivalence_p=tost_welch(a, b, margin), notes=notes,
        )
    comp.selected_among = k
    comp.p_raw = comp.p
    if k > 1:
        comp.p = min(1.0, k * comp.p)
        comp.exact_p = min(1.0, k * comp.exact_p)
        comp.exact_min_p = min(1.0, k * comp.exact_min_p)
        comp.equivalence_p = min(1.0, k * comp.equivalence_p)
        comp.notes.append(f"chosen among {k} configuration pairs (the method's choices times the baseline's) on "
                          f"the same seeds: p, exact p and equivalence p multiplied by {k} (Bonferroni), "
                          f"{100 * confidence:.4g}% interval; `--tune K` chooses on tuning seeds instead and tests "
                          "the choice alone on fresh report seeds")
    return comp


def lost_against(verdict: str, method_lost, baseline_lost):
    """The lost seeds that forbid ``verdict`` (``better``, ``equivalent``, ``worse``), or an
    empty value. A test on the seeds both sides finished cannot decide in the favour of a
    side that lost seeds (diverged, failed) the other finished: its survivors may be its
    best seeds. So a method that lost such seeds is not better or equivalent, and one whose
    baseline lost them is not worse. The per-task, pooled and claim verdicts all use this."""
    return {"better": method_lost, "equivalent": [*method_lost, *baseline_lost],
            "worse": baseline_lost}.get(verdict) or []


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
    while min_sign_flip_p(n) * max(1, n_methods) >= alpha:
        n += 1
    return n


# --- across tasks ------------------------------------------------------------------------

def normalized(values, baseline_mean: float, higher_is_better: bool, scale: float | None = None):
    """Direction-aware improvement over the baseline mean, positive = better (higher
    accuracy or lower loss), in units of ``scale`` (the baseline's seed-to-seed standard
    deviation in reports: +1 is one such deviation better); without one, relative to the
    baseline's magnitude (+0.01 is 1% better)."""
    sign = 1.0 if higher_is_better else -1.0
    scale = scale if scale else (abs(baseline_mean) or 1.0)
    return sign * (np.asarray(values, dtype=float) - baseline_mean) / scale


def rank_matrix(scores) -> np.ndarray:
    """Ranks per task (row) of a tasks x methods matrix of scores, higher score = rank 1;
    ties share the mean rank."""
    scores = np.asarray(scores, dtype=float)
    return np.vstack([_st.rankdata(-row) for row in scores])


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
    chi2, p = _st.friedmanchisquare(*scores.T)
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
    return float(f_stat), _floor_p(_st.f.sf(f_stat, k - 1, (k - 1) * (n_tasks - 1)))


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
        res = _st.permutation_test((d,), _signed_rank_sum, permutation_type="samples", vectorized=True,
                                   n_resamples=np.inf)
    else:
        res = _st.wilcoxon(d, method="auto")
    return max(float(res.pvalue), min_p), min_p


def _signed_rank_sum(d, axis):
    ranks = _st.rankdata(np.abs(d), axis=axis)
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


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return float(_st.trim_mean(np.asarray(values, dtype=float), 0.25))


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


def standardized_effect(method: dict[int, float], baseline: dict[int, float], higher_is_better: bool,
                        margin: float = 0.0) -> dict:
    """One task's improvement over the baseline in units of the two sides' seed-to-seed
    standard deviation: ``effect = sign * (mean method - mean baseline) / S`` with ``S =
    sqrt((s_method**2 + s_baseline**2) / 2)`` (Cohen's d_av, Lakens 2013), positive = better.
    A task whose baseline is near zero (an MSE of 1e-4) counts no more than any other: what
    matters is how large the difference is against the noise of seeds, not against the
    baseline's magnitude. Both sides' deviations enter because a regularizer can change the
    spread: against the baseline's alone (Glass's delta), a method far noisier than a very
    stable baseline would get an enormous effect for a difference its own noise leaves
    insignificant.

    The difference of means is paired on the seeds both sides finished (at least 2), else
    the two sides' means (Welch); divided by ``S`` and multiplied by Hedges' small-sample
    correction ``J = 1 - 3 / (4 df - 1)`` (``S`` from few seeds is too small on average, so
    ``d / S`` overstates the effect), it estimates the effect in units of the true
    seed-to-seed deviation. ``df = n_m + n_b - 2``, divided by ``1 + rho**2`` when seeds
    pair, ``rho**2`` the two sides' squared correlation over the shared seeds (adjusted for
    its upward bias at few seeds, 0 below 3 pairs): sides that share each seed's effect move
    together, and the average of two correlated variances has that many fewer independent
    degrees of freedom; at least 2. Its variance has two ``components``, each with
    its degrees of freedom: that of the difference of means in units of ``S`` (0 when the
    values have no spread, :func:`no_spread`), and ``effect**2 / (2 df)``, the uncertainty
    of ``S`` itself (Hedges & Olkin, 1985). The second is 0 when the effect is, so the test
    of a zero effect is the difference of means' alone (for normal runs it is independent
    of the standard deviations); it grows with the effect, so intervals cover the effect in
    true units. When
    neither side's runs have any spread there is no standardized effect (``effect`` None).

    Returns ``effect``, ``variance`` (the components' sum), ``components`` (list of
    (variance, df), the unit's last), ``difference_variance`` (the components but the unit's),
    ``scale_coefficient`` (1 / (2 df): the unit's variance
    is that times the squared effect), ``margin`` (``margin`` / S, times J), ``scale`` (S),
    ``correction`` (J), ``difference_spread`` (False when the difference of means has no
    spread), ``note``."""
    sign = 1.0 if higher_is_better else -1.0
    a_all = np.array(list(method.values()), dtype=float)
    b_all = np.array(list(baseline.values()), dtype=float)
    out = {"effect": None, "variance": None, "components": [], "margin": None, "scale": None,
           "correction": None, "difference_spread": False, "note": None}
    if len(a_all) < 2 or len(b_all) < 2:
        out["note"] = "fewer than 2 finished runs on one side"
        return out
    if no_spread(a_all) and no_spread(b_all):
        out["note"] = "no seed-to-seed spread on either side: no standardized effect"
        return out

    def variance(x):
        return 0.0 if no_spread(x) else float(x.var(ddof=1))

    scale = math.sqrt((variance(a_all) + variance(b_all)) / 2)
    shared = sorted(set(method) & set(baseline))
    df = len(a_all) + len(b_all) - 2
    if len(shared) >= 2:
        d = np.array([method[s] - baseline[s] for s in shared], dtype=float) / scale
        diff = float(d.mean())
        components = [(_spread(d), len(d) - 1)]
        # paired sides move together (a seed's effect is shared), so their two variances
        # carry fewer independent degrees of freedom: Var((s_m^2 + s_b^2) / 2) grows by
        # 1 + rho^2. The sample r^2 overstates rho^2 at few seeds (E r^2 = 1 / (n - 1) when
        # rho = 0): the adjusted 1 - (1 - r^2)(n - 1)/(n - 2) estimates it, 0 below 3 pairs
        a_shared, b_shared = np.array([method[s] for s in shared]), np.array([baseline[s] for s in shared])
        n = len(shared)
        r2 = 0.0 if n < 3 or no_spread(a_shared) or no_spread(b_shared) \
            else float(np.corrcoef(a_shared, b_shared)[0, 1]) ** 2
        rho2 = max(0.0, 1 - (1 - r2) * (n - 1) / (n - 2)) if n >= 3 else 0.0
        df = df / (1 + rho2)
    else:
        a, b = a_all / scale, b_all / scale
        diff = float(a.mean() - b.mean())
        components = [(_spread(a), len(a) - 1), (_spread(b), len(b) - 1)]
    df = max(2.0, df)
    correction = 1 - 3 / (4 * df - 1)
    effect = correction * sign * diff
    difference = [(correction**2 * v, d) for v, d in components]
    components = difference + [(effect**2 / (2 * df), df)]
    out.update(effect=effect, variance=math.fsum(v for v, _ in components), components=components,
               difference_variance=math.fsum(v for v, _ in difference), margin=correction * float(margin) / scale,
               scale=scale, correction=correction, difference_spread=any(v > 0 for v, _ in difference),
               scale_coefficient=1 / (2 * df))
    return out


def weighting_variances(per_task: list[dict]) -> list[float]:
    """The variances that weigh tasks' standardized effects against each other: each task's
    difference-of-means variance plus its unit's uncertainty evaluated at the unweighted mean
    effect over the tasks, not at its own. With its own effect in it, a task whose estimate
    came out smaller would get a larger weight, and the combined estimate would lean toward
    0 (measured: 70% coverage of a true effect of one seed deviation over 10 tasks, 95% with
    the mean effect); the mean effect is the usual remedy in meta-analyses of standardized
    mean differences."""
    mean = float(np.mean([t["effect"] for t in per_task])) if per_task else 0.0
    return [t["difference_variance"] + t["scale_coefficient"] * mean**2 for t in per_task]


def pooled_improvement(parts, confidence: float = 1 - ALPHA) -> dict:
    """Over these tasks (the tasks fixed, their seeds random): the mean of the tasks'
    standardized effects (:func:`standardized_effect`), with a t-interval that carries the
    baseline's uncertainty as well as the method's, and that of each task's unit.

    ``parts`` is one ``(method, baseline, higher_is_better[, margin])`` per task, each side
    a dict seed -> finished value, ``margin`` the task's equivalence margin in the metric's
    units (0 when absent). The pooled standard error adds the tasks' variance components
    (tasks are fixed, their seeds independent) and the degrees of freedom are
    Welch-Satterthwaite's over them. The pooled margin is the mean of the tasks'
    standardized margins, and ``equivalence_p`` the two one-sided tests' p of the pooled
    score lying within it. Returns ``value``, ``low``, ``high``, ``p`` (two-sided, of value
    = 0), ``se``, ``df``, ``margin``, ``equivalence_p``, ``n_tasks``, ``per_task`` (each
    task's effect, its standard error and its margin); ``low``/``high``/``p``/``equivalence_p``
    are None, with a ``note``, when no interval exists (a task with fewer than 2 runs on a
    side or no spread on either side, or differences with no spread in any task)."""
    effects = []
    for method, baseline, higher, *rest in parts:
        effect = standardized_effect(method, baseline, higher, float(rest[0] if rest else 0.0))
        if effect["effect"] is None:
            return {"value": None, "low": None, "high": None, "p": None, "n_tasks": len(parts),
                    "note": f"a task has {effect['note']}"}
        effects.append(effect)
    n_tasks = len(effects)
    if n_tasks == 0:
        return {"value": None, "low": None, "high": None, "p": None, "n_tasks": 0, "note": "no task"}
    value = float(np.mean([e["effect"] for e in effects]))
    components = [c for e in effects for c in e["components"]]
    variance = math.fsum(v for v, _ in components) / n_tasks**2
    margin = float(np.mean([e["margin"] for e in effects]))
    out = {"value": value, "low": None, "high": None, "p": None, "n_tasks": n_tasks, "margin": margin,
           "equivalence_p": None,
           "per_task": [{"effect": e["effect"], "se": math.sqrt(e["variance"]), "margin": e["margin"],
                         "difference_variance": e["difference_variance"],
                         "scale_coefficient": e["scale_coefficient"]} for e in effects]}
    if not any(e["difference_spread"] for e in effects) or not math.isfinite(variance) or variance <= 0:
        out["note"] = "no spread in any task"
        return out
    df = _satterthwaite(components)
    se = math.sqrt(variance)
    half = float(_st.t.ppf(1 - (1 - confidence) / 2, df)) * se
    equivalence_p = max(_st.t.sf((value + margin) / se, df), _st.t.sf((margin - value) / se, df)) \
        if margin > 0 else 1.0
    out.update(low=value - half, high=value + half, se=se, df=float(df),
               p=_floor_p(2 * _st.t.sf(abs(value) / se, df)), equivalence_p=_floor_p(float(equivalence_p)))
    return out


def random_effects(effects, variances, confidence: float = 1 - ALPHA, margin: float = 0.0) -> dict:
    """What to expect on another task like these: a random-effects combination of per-task
    effects (each with its variance), the tasks a sample from a population of tasks.

    statsmodels' ``combine_effects`` estimates the between-task variance tau^2 by Paule and
    Mandel's method and the mean effect with inverse-variance weights ``1 / (v_i + tau^2)``.
    The interval is Hartung-Knapp-Sidik-Jonkman's (t with k - 1 degrees of freedom), in its
    modified form that is never narrower than the plain random-effects interval (Roever et
    al., 2015): with few tasks the normal interval is far too narrow. The prediction interval
    for the effect on a new task is ``mean +- t(k - 2) * sqrt(tau^2 + se^2)`` (Higgins,
    Thompson & Spiegelhalter, 2009), which needs k >= 3 tasks. ``equivalence_p`` is the two
    one-sided tests' p of the mean effect lying within ``margin`` (same t).

    A task where the method equals the baseline on every seed (effect 0, no variance) has
    nothing to weight it by: it is left out and counted in ``left_out``.

    Returns ``value``, ``low``, ``high``, ``se``, ``df``, ``p``, ``tau2``, ``i2``, ``q`` and
    ``heterogeneity_p`` (Cochran's Q, fixed-effect weights, and its chi2 p on k - 1 degrees
    of freedom), ``prediction_low``, ``prediction_high``, ``equivalence_p``, ``margin``,
    ``n_tasks``, ``weights``, ``left_out``; intervals None, with a ``note``, when they do not
    exist."""
    y = np.asarray(effects, dtype=float)
    v = np.asarray(variances, dtype=float)
    # a task where the method equals the baseline on every seed has an effect of exactly 0
    # and no variance to weight it by: it is left out, and counted
    exact = (v == 0) & (y == 0)
    y, v = y[~exact], v[~exact]
    k = len(y)
    out = {"value": None, "low": None, "high": None, "se": None, "df": None, "p": None, "tau2": None, "i2": None,
           "q": None, "heterogeneity_p": None, "prediction_low": None, "prediction_high": None,
           "equivalence_p": None, "margin": float(margin), "n_tasks": k, "weights": None, "note": None,
           "left_out": int(exact.sum())}
    if k == 0:
        out["note"] = "no task"
        return out
    if k < 2:
        out.update(value=float(y[0]), note="one task: nothing to say about another task")
        return out
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        out.update(value=float(y.mean()), note="a task's effect has no variance (no spread): no random-effects "
                                               "estimate")
        return out
    from statsmodels.stats.meta_analysis import combine_effects  # a second or so to import: only when used

    with np.errstate(divide="ignore", invalid="ignore"):  # I^2 = 1 - 1/H^2 divides by 0 when the tasks agree exactly
        res = combine_effects(y, v, method_re="iterated", use_t=True)
    value = float(res.mean_effect_re)
    se = max(float(res.sd_eff_w_re_hksj), float(res.sd_eff_w_re))
    tau2 = max(0.0, float(res.tau2))
    df = k - 1
    half = float(_st.t.ppf(1 - (1 - confidence) / 2, df)) * se
    q = float(res.q)
    out.update(value=value, low=value - half, high=value + half, se=se, df=float(df),
               p=_floor_p(2 * _st.t.sf(abs(value) / se, df)), tau2=tau2, q=q,
               heterogeneity_p=_floor_p(float(_st.chi2.sf(q, k - 1))),
               i2=float(max(0.0, res.i2)) if math.isfinite(res.i2) else 0.0,
               weights=(np.asarray(res.weights_rel_re, dtype=float)).tolist())
    if margin > 0:
        out["equivalence_p"] = _floor_p(max(_st.t.sf((value + margin) / se, df), _st.t.sf((margin - value) / se, df)))
    if k >= 3:
        spread = float(_st.t.ppf(1 - (1 - confidence) / 2, k - 2)) * math.sqrt(tau2 + se**2)
        out.update(prediction_low=value - spread, prediction_high=value + spread)
    else:
        out["note"] = "two tasks: no prediction interval (it needs at least 3)"
    if exact.any():
        out["note"] = ((out["note"] + "; ") if out["note"] else "") + (
            f"{int(exact.sum())} task(s) where every seed gives the method the baseline's value left out")
    return out


def across_task_reading(*, p_holm, value, equivalence_p, task_verdicts: dict, alpha: float = ALPHA,
                        prediction=None, margin: float = 0.0, tau2: float | None = None,
                        heterogeneity_p: float | None = None) -> str:
    """The verdict of a pooled or across-task estimate, in this order: ``mixed`` when the
    per-task verdicts include both better and worse, or when the tasks disagree (tau^2 > 0
    and Cochran's Q test of equal effects at p < 0.10, the usual level for so few studies)
    and the prediction interval for a new task reaches beyond the margin on the other side
    of the estimate (on both sides when the estimate is not significant); ``equivalent``
    when the two one-sided tests put the mean inside the margin (as per task: a difference
    shown smaller than the margin is no improvement, however consistent); ``better``/
    ``worse`` when the (Holm-adjusted) p is below alpha; else ``inconclusive``. A prediction
    interval that is wide only because there are few tasks (no sign that they disagree)
    leaves the verdict to the estimate. A mixed method is never read as plainly better."""
    if task_verdicts.get("better") and task_verdicts.get("worse"):
        return "mixed"
    low, high = prediction if prediction else (None, None)
    disagree = low is not None and (tau2 or 0.0) > 0 and heterogeneity_p is not None and heterogeneity_p < 0.10
    significant = p_holm is not None and p_holm < alpha
    if disagree and ((low < -margin and high > margin) if not significant
                     else (low < -margin if value > 0 else high > margin)):
        return "mixed"
    if equivalence_p is not None and equivalence_p < alpha:
        return "equivalent"
    if significant:
        return "better" if value > 0 else "worse"
    return "inconclusive"


def fragile(verdict: str, p_holm, equivalence_p, alpha: float = ALPHA) -> bool:
    """A verdict whose deciding p lies within a factor of 2 of alpha (alpha / 2 <= p < 2
    alpha): the p of the verdict reached (Holm-adjusted for better/worse, the equivalence p
    for equivalent), or for an inconclusive one either p that nearly decided it. Another
    machine's or another batch of seeds' noise can flip it; more seeds resolve it."""
    def near(p):
        return p is not None and math.isfinite(p) and alpha / 2 <= p < 2 * alpha

    if verdict in ("better", "worse"):
        return near(p_holm)
    if verdict == "equivalent":
        return near(equivalence_p)
    if verdict == "mixed":  # read from the tasks' disagreement, not from one p
        return False
    return near(p_holm) or near(equivalence_p)


def _satterthwaite(components: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance components, each with its
    own degrees of freedom; computed on components scaled by the largest, so that tiny
    variances (an MSE near 1e-6, squared) do not underflow to 0."""
    top = max(v for v, _ in components)
    scaled = [(v / top, d) for v, d in components if v > 0]
    return math.fsum(v for v, _ in scaled) ** 2 / math.fsum(v**2 / d for v, d in scaled)


def _spread(values: np.ndarray) -> float:
    """The variance of a mean of ``values``: var / n, 0 for values identical up to rounding."""
    return 0.0 if no_spread(values) else float(values.var(ddof=1)) / len(values)


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
