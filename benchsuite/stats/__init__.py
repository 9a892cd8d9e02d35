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

Modules: :mod:`~benchsuite.stats.common` (the level, resample counts, the p floor, Holm),
:mod:`~benchsuite.stats.comparison` (one task: a method against the baseline),
:mod:`~benchsuite.stats.ranks` (Friedman, Wilcoxon over tasks, critical-difference groups),
:mod:`~benchsuite.stats.effects` (standardized effects and their pooled mean over these tasks),
:mod:`~benchsuite.stats.meta` (random effects for another task, the across-task reading),
:mod:`~benchsuite.stats.scores` (point estimates: normalized scores, IQM, P(better), expected
best). Every public name is importable from here: ``from benchsuite import stats; stats.holm(...)``.
"""

from benchsuite.stats.common import (
    ALPHA,
    EXACT_LIMIT,
    FRIEDMAN_RESAMPLES,
    MONTE_CARLO_RESAMPLES,
    SIGN_FLIP_EXACT_PAIRS,
    SMALLEST_P,
    holm,
    min_sign_flip_p,
    no_spread,
)
from benchsuite.stats.comparison import (
    Comparison,
    Margin,
    compare,
    decide,
    fragile,
    lost_against,
    paired_t,
    permutation_unpaired,
    seeds_needed,
    sign_flip,
    tost_paired,
    tost_welch,
    welch_t,
)
from benchsuite.stats.effects import pooled_improvement, standardized_effect, weighting_variances
from benchsuite.stats.meta import across_task_reading, random_effects
from benchsuite.stats.ranks import cd_cliques, friedman, iman_davenport, rank_matrix, wilcoxon
from benchsuite.stats.scores import expected_best, iqm, normalized, probability_of_improvement, stratified_bootstrap

__all__ = [
    "ALPHA", "EXACT_LIMIT", "FRIEDMAN_RESAMPLES", "MONTE_CARLO_RESAMPLES", "SIGN_FLIP_EXACT_PAIRS", "SMALLEST_P",
    "Comparison", "Margin", "across_task_reading", "cd_cliques", "compare", "decide", "expected_best", "fragile",
    "friedman", "holm", "iman_davenport", "iqm", "lost_against", "min_sign_flip_p", "no_spread", "normalized",
    "paired_t", "permutation_unpaired", "pooled_improvement", "probability_of_improvement", "random_effects",
    "rank_matrix", "seeds_needed", "sign_flip", "standardized_effect", "stratified_bootstrap", "tost_paired",
    "tost_welch", "weighting_variances", "welch_t", "wilcoxon",
]
