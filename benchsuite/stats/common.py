"""What every statistic of the package shares: the significance level, the resample
counts of the Monte Carlo tests, the floor under every p-value, the test for values with no
spread, and Holm's correction for multiple comparisons."""

from __future__ import annotations

import math

import numpy as np

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
