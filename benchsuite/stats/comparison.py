"""One task: a method against the baseline, on runs keyed by seed.

The paired t-test on the seeds both sides finished (Welch's test when fewer than 2 pair), the
exact sign-flip (or permutation) test beside it, the two one-sided tests of equivalence
within a margin, and the verdict of each comparison after Holm over the task's
(:func:`decide`), with what forbids a verdict (:func:`lost_against`) and what makes one
fragile (:func:`fragile`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite.stats.common import (
    ALPHA,
    EXACT_LIMIT,
    MONTE_CARLO_RESAMPLES,
    SIGN_FLIP_EXACT_PAIRS,
    SMALLEST_P,
    _finite,
    _floor_p,
    holm,
    min_sign_flip_p,
    no_spread,
)


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
    p = 2 * float(scipy.stats.t.sf(abs(mean) / se, n - 1))
    half = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * se
    return _floor_p(min(1.0, p)), mean - half, mean + half


def welch_t(method, baseline, confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """Welch's two-sided t-test: (p, ci_low, ci_high) of mean(method) - mean(baseline).
    Both samples constant: the exact permutation test's p, no interval."""
    a, b = _finite(method, "method values"), _finite(baseline, "baseline values")
    diff = a.mean() - b.mean()
    if no_spread(a) and no_spread(b):
        return (1.0 if diff == 0 else permutation_unpaired(a, b)[0]), math.nan, math.nan
    res = scipy.stats.ttest_ind(a, b, equal_var=False)
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

    res = scipy.stats.permutation_test(
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
    lower = scipy.stats.t.sf((d.mean() + margin) / se, n - 1)  # H0: mean <= -margin
    upper = scipy.stats.t.cdf((d.mean() - margin) / se, n - 1)  # H0: mean >= margin
    return _floor_p(max(lower, upper))


def tost_welch(method, baseline, margin: float) -> float:
    a, b = _finite(method, "method values"), _finite(baseline, "baseline values")
    if margin <= 0:
        return 1.0
    if no_spread(a) and no_spread(b):
        return max(SMALLEST_P, 1.0 / math.comb(len(a) + len(b), len(a))) if abs(a.mean() - b.mean()) < margin else 1.0
    lower = scipy.stats.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    upper = scipy.stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
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
