"""What to expect on another task: a random-effects combination of the tasks' standardized
effects (:func:`random_effects`), and the verdict read from a pooled or across-task
estimate (:func:`across_task_reading`)."""

from __future__ import annotations

import math

import numpy as np
import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite.stats.common import ALPHA, _floor_p


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
    half = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, df)) * se
    q = float(res.q)
    out.update(value=value, low=value - half, high=value + half, se=se, df=float(df),
               p=_floor_p(2 * scipy.stats.t.sf(abs(value) / se, df)), tau2=tau2, q=q,
               heterogeneity_p=_floor_p(float(scipy.stats.chi2.sf(q, k - 1))),
               i2=float(max(0.0, res.i2)) if math.isfinite(res.i2) else 0.0,
               weights=(np.asarray(res.weights_rel_re, dtype=float)).tolist())
    if margin > 0:
        t = scipy.stats.t
        out["equivalence_p"] = _floor_p(max(t.sf((value + margin) / se, df), t.sf((margin - value) / se, df)))
    if k >= 3:
        spread = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, k - 2)) * math.sqrt(tau2 + se**2)
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
