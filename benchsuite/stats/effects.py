"""Standardized effects: one task's improvement in units of its seed-to-seed standard
deviation (:func:`standardized_effect`), and their mean over a fixed set of tasks with a
t-interval whose degrees of freedom are Welch-Satterthwaite's (:func:`pooled_improvement`)."""

from __future__ import annotations

import math

import numpy as np
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite.stats.common import ALPHA, _floor_p, no_spread


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
    half = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, df)) * se
    equivalence_p = max(scipy.stats.t.sf((value + margin) / se, df), scipy.stats.t.sf((margin - value) / se, df)) \
        if margin > 0 else 1.0
    out.update(low=value - half, high=value + half, se=se, df=float(df),
               p=_floor_p(2 * scipy.stats.t.sf(abs(value) / se, df)), equivalence_p=_floor_p(float(equivalence_p)))
    return out


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
