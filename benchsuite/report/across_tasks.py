"""Across tasks: the methods' selected configurations, against one baseline at a time.

Ranks, Friedman's test and the critical-difference groups on each task's means; per method
the IQM of its standardized run scores, P(better than the baseline), the pooled score over
these tasks, the random-effects estimate for another task and the Wilcoxon test over
tasks (:func:`analyze_overall`); Holm over every method and baseline, then each
estimate's verdict (:func:`decide_overall`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from benchsuite import stats
from benchsuite.report.selection import Seeds

VERDICTS = ("better", "equivalent", "inconclusive", "worse")


def _unselected_values(task: str, config: dict, seeds: Seeds) -> dict[int, float]:
    """A configuration's test values by report seed."""
    return dict(seeds.test.get((task, config["config"]), {}))


@dataclasses.dataclass
class _AcrossTasks:
    """Per method, what the tasks contribute to the cross-task aggregates against one baseline."""

    methods: list[str]
    scores: dict[str, dict[str, np.ndarray]]  # standardized scores of runs per task
    raw_means: dict[str, dict[str, float]]  # direction-signed means per task (for ranks)
    verdicts: dict[str, dict[str, int]]
    overhead: dict[str, list[float]]
    runs_lost: dict[str, dict[str, int]]
    parts: dict[str, list[tuple]]  # (method values, baseline values, higher is better, margin, task) per task
    # method -> the most configurations it and its baseline were chosen among on the same seeds
    optimistic: dict[str, tuple[int, int]]
    # method -> which sides lost seeds the other finished in some task ("method", "baseline")
    lost: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    tuning: dict[str, dict[str, dict]] = dataclasses.field(default_factory=dict)  # method -> task -> effort
    unscaled: list[str] = dataclasses.field(default_factory=list)  # tasks whose baseline runs have no spread


def _baseline_scale(values: list[float]) -> float | None:
    """A task's unit for the runs' standardized scores (the IQM in ``stats.json``): the
    baseline's seed-to-seed standard deviation on report seeds, one unit for every run of
    the task (None when its runs have no spread). The effects behind every interval and
    test use both sides' deviations (:func:`benchsuite.stats.standardized_effect`)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 and not stats.no_spread(values) else None


def _collect_across_tasks(usable: list[dict], seeds: Seeds, baseline, common_seeds: int | None = None) -> _AcrossTasks:
    # every method with a run on some task, also one without any finished run there: its
    # lost runs are counted in its row
    methods = sorted({c["variant"] for t in usable for c in t["configs"]} | {e["method"] for t in usable
                                                                            for e in t.get("tuning", ())},
                     key=lambda m: (m != baseline, m))
    got = _AcrossTasks(methods, {m: {} for m in methods}, {m: {} for m in methods},
                       {m: dict.fromkeys(VERDICTS, 0) for m in methods}, {m: [] for m in methods},
                       {m: {"diverged": 0, "failed": 0} for m in methods}, {m: [] for m in methods}, {})
    for t in usable:
        higher = t["direction"] == "max"
        sign = 1.0 if higher else -1.0
        chosen = {c["variant"]: c for c in t["configs"] if c["selected"]}
        base = chosen[baseline]
        mine = [c for c in t["comparisons"] if c["baseline"] == baseline]
        def ranked(values: dict) -> dict:
            return {s: v for s, v in values.items() if common_seeds is None or s < common_seeds}

        base_values = list(ranked(_unselected_values(t["task"], base, seeds)).values())
        base_mean = float(np.mean(base_values)) if base_values else base["mean"]
        scale = _baseline_scale(base_values)
        if scale is None:
            got.unscaled.append(t["task"])
        # each method's values are those its verdict rests on: report seeds alone
        tested = {comp["method"]: ranked(comp["values_method"]) for comp in mine}
        for effort in t.get("tuning", ()):
            got.tuning.setdefault(effort["method"], {})[t["task"]] = effort
        for m, c in chosen.items():
            values = tested.get(m) or ranked(_unselected_values(t["task"], c, seeds))
            if values:
                got.scores[m][t["task"]] = stats.normalized(list(values.values()), base_mean, higher, scale)
                got.raw_means[m][t["task"]] = sign * float(np.mean(list(values.values())))
            if c["step_ms"] and base["step_ms"]:
                got.overhead[m].append(c["step_ms"] / base["step_ms"])
        for c in t["configs"]:
            got.runs_lost[c["variant"]]["diverged"] += c["diverged"]
            got.runs_lost[c["variant"]]["failed"] += c["failed"]
        for comp in mine:
            m = comp["method"]
            got.verdicts[m][comp["verdict"]] += 1
            got.parts[m].append((comp["values_method"], comp["values_baseline"], higher, comp["margin"] or 0.0,
                                 t["task"]))
            got.lost.setdefault(m, set()).update(side for side in ("method", "baseline") if comp[f"lost_{side}"])
            if comp["selected_among"] > 1:
                k_method = 1 if comp["tuned"] else comp["configs_tried"]
                k_base = comp["selected_among"] // max(1, k_method)
                before = got.optimistic.get(m, (1, 1))
                got.optimistic[m] = (max(before[0], k_method), max(before[1], k_base))
    return got


def _chosen_sides(baseline: str, ks: tuple[int, int]) -> str:
    """Which side of a method's comparisons was chosen among how many configurations."""
    sides = []
    if ks[0] > 1:
        sides.append(f"it was chosen among up to {ks[0]} configurations")
    if ks[1] > 1:
        sides.append(f"its baseline `{baseline}` was chosen among up to {ks[1]} configurations")
    return " and ".join(sides)


def _optimistic_note(baseline: str, ks: tuple[int, int]) -> str:
    """Why a method's pooled score has no interval."""
    return _chosen_sides(baseline, ks) + " on the same seeds: no valid pooled interval"


def _method_row(m: str, got: _AcrossTasks, task_names: list[str], in_every: list[str], mean_ranks: list[float],
                baseline, alpha) -> dict:
    """One method's cross-task row against ``baseline``: rank, IQM, mean score,
    P(improvement), and (unless a side was chosen on its test seeds) the pooled interval
    over these tasks, the random-effects estimate for another task and the Wilcoxon test,
    all before Holm (:func:`decide_overall`)."""
    own = [name for name in task_names if name in got.scores[m]]
    overhead = got.overhead[m]
    ks = got.optimistic.get(m, (1, 1))
    row = {"iqm": None, "mean_score": None, "prob_improvement": None, "wilcoxon": None, "pooled": None,
           "across": None, "baseline": baseline, "selected_among": ks[0] * ks[1],
           "chosen_among": {"method": ks[0], "baseline": ks[1]}, "tuning": _tuning_row(got.tuning.get(m)),
           "method": m, "tasks": len(own), "verdicts": got.verdicts[m], **got.runs_lost[m],
           "lost_sides": sorted(got.lost.get(m, set())),
           "mean_rank": mean_ranks[in_every.index(m)] if m in in_every else None,
           "overhead": float(np.exp(np.mean(np.log(overhead)))) if overhead else None}
    if not own:
        return row
    row["iqm"] = {"value": stats.iqm(np.concatenate([got.scores[m][name] for name in own]))}
    row["mean_score"] = float(np.mean([got.scores[m][name].mean() for name in own]))
    parts = got.parts[m]
    if m == baseline or not parts:
        return row
    row["prob_improvement"] = {"value": stats.probability_of_improvement(
        [list(p[0].values()) for p in parts], [list(p[1].values()) for p in parts], [p[2] for p in parts])}
    pooled = stats.pooled_improvement(parts, 1 - alpha)
    for part, (*_, task) in zip(pooled.get("per_task") or [], parts):
        part["task"] = task
    row["pooled"] = pooled
    if m in got.optimistic:
        pooled.update(low=None, high=None, p=None, equivalence_p=None, note=_optimistic_note(baseline, ks))
        return row
    per_task = pooled.get("per_task") or []
    if per_task:
        row["across"] = stats.random_effects([t["effect"] for t in per_task], stats.weighting_variances(per_task),
                                             1 - alpha, pooled["margin"])
        p_value, min_p = stats.wilcoxon([t["effect"] for t in per_task])
        row["wilcoxon"] = {"p": p_value, "min_p": min_p, "n_tasks": len(per_task)}
    return row


def _tuning_row(efforts: dict[str, dict] | None) -> dict | None:
    """A method's tuning across tasks: K per task, trials lost, tuning seconds, and the
    values it chose at an edge of what it tried."""
    if not efforts:
        return None
    return {"k": {task: e["k"] for task, e in efforts.items()},
            "lost": sum(e["lost"] for e in efforts.values()),
            "seconds": math.fsum(e["seconds"] for e in efforts.values()),
            "edges": [f"{task}: {edge['hyperparameter']} = {edge['value']:g}, the {edge['side']} tried"
                      for task, e in efforts.items() for edge in e["edges"]]}


def _budget_notes(tasks: list[dict]) -> list[str]:
    """Tasks where the tuned methods (those with something to tune) were not tried equally
    often: K differs after a changed space or budget, or a space of few values ran out."""
    notes = []
    for t in tasks:
        ks = {e["method"]: e["k"] for e in t.get("tuning", ()) if e["k"] > 1}
        if len(set(ks.values())) > 1:
            notes.append(f"{t['task']}: the tuned methods did not all get the same number of trials ("
                         + ", ".join(f"{m} K = {k}" for m, k in sorted(ks.items())) + "): not an equal-budget "
                         "comparison (each study's Tuning section says what changed)")
    return notes


def analyze_overall(tasks: list[dict], seeds: Seeds, baseline, alpha, resamples, seed,
                     common_seeds: int | None = None) -> dict | None:
    """Across tasks, for the method configurations selected per task, against ``baseline``.

    Ranks use each task's raw means (direction-aware), so equal means tie exactly. Two
    estimates rest on the same runs as the per-task verdicts, both on the standardized
    scale (:func:`benchsuite.stats.standardized_effect`): the pooled score over these tasks
    and the random-effects estimate for another task like them
    (:func:`benchsuite.stats.random_effects`); with the Wilcoxon test over tasks they are
    decided, Holm over methods, in :func:`decide_overall`. A method chosen among several
    configurations on the same seeds somewhere (or whose baseline was) has an optimistic
    score, so it gets no pooled interval or test and is left out of Friedman's test and the
    CD groups (tune it with `--tune K` to include it). ``common_seeds``: rank and score
    every method on seeds below it (sequential seeds: the first look's, which all have)."""
    usable = [t for t in tasks if any(c["variant"] == baseline and c["selected"] for c in t["configs"])]
    if len(usable) < 1:
        return None
    got = _collect_across_tasks(usable, seeds, baseline, common_seeds)
    methods, optimistic = got.methods, got.optimistic
    task_names = [t["task"] for t in usable]
    complete_tasks = [name for name in task_names if all(name in got.scores[m] for m in methods)]
    in_every = [m for m in methods if all(name in got.raw_means[m] for name in task_names)]
    notes = []
    never = [m for m in methods if not got.raw_means[m]]
    finished = {c["variant"] for t in usable for c in t["configs"] if c["n"] > 0}
    if [m for m in never if m not in finished]:
        notes.append(f"no finished run on any task: {', '.join(m for m in never if m not in finished)} (diverged "
                     "and failed runs are counted in the leaderboard's row; no score, rank or test)")
    if [m for m in never if m in finished]:
        notes.append("finished runs, but no configuration could be chosen on any task (no finite validation "
                     f"value; see the tasks' notes): {', '.join(m for m in never if m in finished)}")
    left = [m for m in methods if m not in in_every and m not in never]
    if left:
        notes.append(f"no finished run on every task, so left out of ranks and the Friedman test: {', '.join(left)}")
    if optimistic:
        notes.append("chosen, or compared with a baseline chosen, among several configurations on the same seeds in "
                     "some task, so their scores are optimistic: no pooled interval or test, left out of Friedman's "
                     "test and the CD groups (tune with `--tune K` to choose on tuning seeds and test on fresh report "
                     "seeds): " + ", ".join(f"{m} ({_chosen_sides(baseline, ks)})"
                                            for m, ks in sorted(optimistic.items())))
    if got.unscaled:
        notes.append(f"the baseline's runs have no seed-to-seed spread on {', '.join(got.unscaled)}: the runs' "
                     "scores there (IQM) are relative to the baseline's mean")
    notes += _budget_notes(usable)

    # ranks over every method run on every task; Friedman and CD groups without the optimistic ones
    def means_of(chosen):
        return np.array([[got.raw_means[m][name] for m in chosen] for name in task_names]) \
            if chosen else np.empty((0, 0))

    mean_ranks = stats.rank_matrix(means_of(in_every)).mean(axis=0).tolist() if in_every else []
    testable = [m for m in in_every if m not in optimistic]
    friedman = stats.friedman(means_of(testable), seed=seed, resamples=max(resamples, 1000)) if testable else {}
    if friedman:
        friedman["methods"] = testable
    cd = stats.cd_cliques(means_of(testable), testable, alpha) \
        if len(testable) >= 2 and len(task_names) >= 2 else None

    rows = [_method_row(m, got, task_names, in_every, mean_ranks, baseline, alpha) for m in methods]
    rows.sort(key=lambda r: (r["mean_rank"] is None, r["mean_rank"] or 0,
                            -(r["iqm"]["value"] if r["iqm"] else -math.inf)))
    return {"baseline": baseline, "tasks": task_names, "complete_tasks": complete_tasks, "methods": rows,
            "ranked": in_every, "friedman": friedman, "cd": cd, "notes": notes}


def decide_overall(overalls: list[dict], tasks: list[dict], alpha: float) -> None:
    """Holm over every method row of every baseline, separately for the pooled score, the
    random-effects estimate and the Wilcoxon test; then each row's readings
    (:func:`benchsuite.stats.across_task_reading`) and fragility (in place)."""
    rows = [r for o in overalls for r in o["methods"]]
    wilcoxon_rows = [r for r in rows if r["wilcoxon"] is not None]
    for row, adjusted in zip(wilcoxon_rows, stats.holm([r["wilcoxon"]["p"] for r in wilcoxon_rows])):
        row["wilcoxon"]["p_holm"] = adjusted
    for key in ("pooled", "across"):
        tested = [r for r in rows if r[key] is not None and r[key].get("p") is not None]
        for row, adjusted in zip(tested, stats.holm([r[key]["p"] for r in tested])):
            estimate = row[key]
            estimate["p_holm"] = adjusted
            estimate["verdict"] = stats.across_task_reading(
                p_holm=adjusted, value=estimate["value"], equivalence_p=estimate.get("equivalence_p"),
                task_verdicts=row["verdicts"], alpha=alpha, margin=estimate.get("margin") or 0.0,
                prediction=(estimate.get("prediction_low"), estimate.get("prediction_high")) if key == "across"
                else None, tau2=estimate.get("tau2"), heterogeneity_p=estimate.get("heterogeneity_p"))
            _guard_pooled(row, estimate)
            estimate["fragile"] = stats.fragile(estimate["verdict"], adjusted, estimate.get("equivalence_p"), alpha)
            estimate["significant_within_margin"] = ("better" if estimate["value"] > 0 else "worse") \
                if estimate["verdict"] == "equivalent" and adjusted < alpha else None
    for o in overalls:
        tested = any(r["wilcoxon"] is not None for r in o["methods"])
        if tested and stats.min_sign_flip_p(len(o["tasks"])) * len(wilcoxon_rows) >= alpha:
            o["notes"].append(
                f"{len(o['tasks'])} task(s): the Wilcoxon test over tasks cannot reach p < {alpha:g} after Holm over "
                f"{len(wilcoxon_rows)} methods (minimum p "
                f"{min(1.0, stats.min_sign_flip_p(len(o['tasks'])) * len(wilcoxon_rows)):.3g})")


def _guard_pooled(row: dict, estimate: dict) -> None:
    """As per task: survivors alone do not decide in the favour of the side that lost seeds."""
    sides = set(row["lost_sides"])
    lost = stats.lost_against(estimate["verdict"], ["method"] if "method" in sides else [],
                              ["baseline"] if "baseline" in sides else [])
    if lost:
        estimate["note"] = (f"{estimate['verdict']} on the seeds both sides finished, but in some task the "
                            f"{' and the '.join(sorted(lost))} lost seeds (diverged or failed) the other side "
                            "finished: inconclusive")
        estimate["verdict"] = "inconclusive"
