"""One task of a report: each method's chosen configuration against every baseline.

:func:`analyze_task` chooses the configurations (:mod:`benchsuite.report.selection`), tests
each against each baseline (:func:`benchsuite.stats.compare`, one Holm family per task, or
the looks of a sequential plan), mirrors a baseline's row against another, and turns a
verdict that lost seeds would decide into an inconclusive one.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from benchsuite import stats
from benchsuite.report.references import reference_matches
from benchsuite.report.selection import (
    Seeds,
    choose_tuned,
    config_dict,
    group_by_variant,
    select_configuration,
    sensitivity_curves,
)
from benchsuite.report.studies import sensitivity as trial_sensitivity
from benchsuite.runs import sequential as seq
from benchsuite.tasks.spec import METRICS


def _seed_range(seeds: list[int]) -> str:
    if not seeds:
        return "-"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _procedure(choice: dict, k: int, who: str = "") -> tuple[str, int]:
    """How a side's configuration was chosen, and the K its test pays for it."""
    tuned = choice.get("tuning")
    if tuned and tuned["k"] > 1:
        return (f"{who}best of {tuned['k']} trials on validation (tuning seeds "
                f"{_seed_range(tuned['tuning_seeds'])}), tested on report seeds", 1)
    if tuned:
        return ("one configuration (nothing to tune: K = 1)" if not who else ""), 1
    if k > 1:
        return f"{who}best of {k} on validation, tested on the same seeds (p × {k})", k
    return ("one configuration" if not who else ""), 1


def _comparison_inputs(task: str, choice: dict, base: dict, k_method: int, k_base: int, seeds: Seeds):
    """The report-seed runs a method's verdict rests on, K (the configuration pairs it was
    chosen among on those same seeds: 1 for a tuned method, whose trials ran on tuning
    seeds) and how each side was chosen."""
    method_values = dict(seeds.test.get((task, choice["config"]), {}))
    base_values = dict(seeds.test.get((task, base["config"]), {}))
    method_text, k = _procedure(choice, k_method)
    base_text, k_b = _procedure(base, k_base, "baseline ")
    procedure = "; ".join(p for p in (method_text, base_text) if p)
    return method_values, base_values, k * k_b, procedure


def analyze_task(task, part: pl.DataFrame, trial_part: pl.DataFrame, seeds: Seeds, baselines, margins, alpha,
                  references, sequential=None) -> dict:
    first = part if not part.is_empty() else trial_part
    metric = first["metric"][0]
    higher = METRICS.get(metric) == "max"
    configs = [config_dict(r) for r in part.iter_rows(named=True)]
    trials = [config_dict(r) for r in trial_part.iter_rows(named=True)]
    task_name, task_spec = first["task_name"][0], json.loads(first["task_spec"][0])
    by_method, tuned = group_by_variant(task, configs, trials, seeds)
    for c in configs:
        hp = c["hyperparameters"]
        c["paper"] = [r for r in references if reference_matches(r, task_name, c["method"], hp, task_spec)]
    notes = [f"`{c['display']}`: {line}: counted as diverged, left out"
             for c in configs for line in seeds.nonfinite.get((task, c["config"]), [])]
    selected, efforts = choose_tuned(by_method, tuned, higher, notes)
    unlisted = seeds.tuning.unlisted.get(task)
    if unlisted:
        notes.append(f"{unlisted} run(s) on tuning seeds that no tuning journal of this results folder lists (an "
                     "older plugin version's, or copied in) are left out")
    for method, group in by_method.items():
        if method in tuned:
            continue
        choice = select_configuration(group, higher, task, seeds)
        if choice is not None:
            selected[method] = choice
        elif any(c["n"] > 0 for c in group):
            notes.append(f"`{method}`: none of its {len(group)} configurations has a finite validation value, so "
                         "none can be chosen: not tested")
    for choice in selected.values():
        choice["selected"] = True
    first = selected.get(baselines[0])
    margin = margins.get(metric, stats.Margin(0.0))
    result = {
        "task": task, "task_name": task_name, "metric": metric, "direction": "max" if higher else "min",
        "headline": task_spec.get("eval", {}).get("headline", "selected"),
        "margin": str(margin), "margin_absolute": margin.absolute(first["mean"]) if first else None,
        "baseline": first["display"] if first else None,
        "baselines": [{"method": b, "display": selected[b]["display"],
                       "margin_absolute": margin.absolute(selected[b]["mean"])} for b in baselines if b in selected],
        "configs": configs, "comparisons": [], "tuning": efforts,
        "sensitivity": sensitivity_curves(by_method, selected, tuned)
        + [c for e in efforts for c in trial_sensitivity(e)],
        "notes": notes,
    }
    for b in baselines:
        if b not in selected:
            notes.append(f"no finished `{b}` run with finite test and validation values on report seeds of this "
                         "task: nothing to compare with it")
    comparisons = _compare_with_baselines(task, selected, by_method, baselines, higher, margin, seeds, notes)
    originals = [c for c in comparisons if c["mirror_of"] is None]
    if sequential is None:
        stats.decide([c["comparison"] for c in originals], alpha)
    else:
        originals = _sequential_verdicts(originals, sequential, task, higher, seeds, notes)
        comparisons = [c for c in comparisons if (c["mirror_of"] or c) in originals]
    for c in comparisons:
        if c["mirror_of"] is not None:
            if sequential is not None:  # the same seeds as the test it mirrors
                n = c["mirror_of"]["comparison"].n_at_decision
                c.update(method_values=seq.first_seeds(c["method_values"], n),
                         base_values=seq.first_seeds(c["base_values"], n),
                         lost=tuple([s for s in side if s < n] for side in c["lost"]))
                c["comparison"] = stats.compare(c["method_values"], c["base_values"], higher,
                                                c["comparison"].margin, c["comparison"].selected_among)
            _mirror_verdict(c["comparison"], c["mirror_of"]["comparison"])
    for c in comparisons:
        _guard_survivors(c["comparison"], c["choice"]["display"], c["baseline"], *c["lost"])
    result["comparisons"] = [_comparison_row(c, by_method, alpha) for c in comparisons]
    _exact_test_note([("", c["comparison"]) for c in originals], alpha, notes)
    return result


def _compare_with_baselines(task, selected: dict, by_method: dict, baselines: list[str], higher: bool,
                            margin: stats.Margin, seeds: Seeds, notes: list[str]) -> list[dict]:
    """Every selected method against every baseline of the report (one Holm family per
    task). A baseline compared with a later one repeats the test already made the other way
    round: that row is its mirror (same p, verdict reversed) and is not tested twice."""
    made: dict[tuple[str, str], dict] = {}
    out = []
    for b in baselines:
        base = selected.get(b)
        if base is None:
            continue
        margin_abs = margin.absolute(base["mean"])
        for method, choice in selected.items():
            if method == b:
                continue
            method_values, base_values, k, procedure = _comparison_inputs(
                task, choice, base, len(by_method[method]), len(by_method[b]), seeds)
            comp = stats.compare(method_values, base_values, higher, margin_abs, selected_among=k)
            if comp is None:
                notes.append(f"`{choice['display']}` against `{b}`: fewer than 2 finished seeds on one side, "
                             "not tested")
                continue
            item = {"choice": choice, "base": base, "baseline": b, "comparison": comp, "procedure": procedure,
                    "method_values": method_values, "base_values": base_values,
                    "lost": _lost_seeds(task, choice, base, method_values, seeds), "mirror_of": made.get((method, b))}
            made[(b, method)] = item
            out.append(item)
    return out


def _sequential_verdicts(items: list[dict], plan: seq.Plan, task, higher: bool, seeds: Seeds,
                         notes: list[str]) -> list[dict]:
    """The task's comparisons with each verdict from its deciding look (or its last look
    taken), on the seeds below that look's count (:func:`benchsuite.runs.sequential.decide`, one
    Holm family per look over every baseline's comparisons): the values, seeds and lost
    seeds beside each test are the look's own. A comparison whose first look is not
    complete is left out, with a note."""
    looked = seq.decide([(c["method_values"], c["base_values"]) for c in items], plan, higher,
                        [c["comparison"].margin for c in items], [c["comparison"].selected_among for c in items],
                        [(seeds.attempted.get((task, c["choice"]["config"]), set()),
                          seeds.attempted.get((task, c["base"]["config"]), set())) for c in items])
    kept = []
    for item, comp in zip(items, looked):
        if comp is None:
            notes.append(f"`{item['choice']['display']}` against `{item['baseline']}`: its first look (seeds "
                         f"0-{plan.min - 1} on both sides) is not complete, or has fewer than 2 finished seeds on a "
                         "side: not tested")
            continue
        n = comp.n_at_decision
        item.update(comparison=comp, method_values=seq.first_seeds(item["method_values"], n),
                    base_values=seq.first_seeds(item["base_values"], n),
                    lost=tuple([s for s in side if s < n] for side in item["lost"]))
        kept.append(item)
    return kept


def _mirror_verdict(mirror: stats.Comparison, original: stats.Comparison) -> None:
    """The verdict of baseline A against baseline B is that of B against A, reversed."""
    # one test, one margin: a relative margin (mse 2%) taken from the other baseline's mean
    # would make the two rows' equivalence tests differ
    mirror.p, mirror.p_holm = original.p, original.p_holm
    mirror.margin, mirror.equivalence_p = original.margin, original.equivalence_p
    mirror.verdict = {"better": "worse", "worse": "better"}.get(original.verdict, original.verdict)
    mirror.notes.append("the same test as its row against the other baseline, the other way round (tested once "
                        "in Holm's family)")


def _comparison_row(item: dict, by_method: dict, alpha: float) -> dict:
    """A comparison as the report's data: what was compared on which seeds, the test, the
    verdict, whether it is fragile, and on which side of 0 an equivalent difference lies
    when it is also significant."""
    ch, base, comp = item["choice"], item["base"], item["comparison"]
    mv, bv = item["method_values"], item["base_values"]
    row = {"config": ch["config"], "display": ch["display"], "method": ch["variant"],
           "baseline": item["baseline"], "baseline_display": base["display"],
           "mirror": item["mirror_of"] is not None,
           **_on_tested_seeds(comp, mv, bv), "diverged": ch["diverged"], "failed": ch["failed"],
           "configs_tried": ch["tuning"]["k"] if ch.get("tuning") else len(by_method[ch["variant"]]),
           "baseline_configs_tried": base["tuning"]["k"] if base.get("tuning") else len(by_method[item["baseline"]]),
           "tuned": bool(ch.get("tuning")), "procedure": item["procedure"],
           "seeds_method": sorted(mv), "seeds_baseline": sorted(bv), "values_method": mv, "values_baseline": bv,
           "lost_method": item["lost"][0], "lost_baseline": item["lost"][1], **comp.to_dict()}
    # under sequential seeds a verdict is decided at its look's share of alpha
    level = getattr(item["mirror_of"]["comparison"] if item["mirror_of"] else comp, "alpha_look", alpha)
    row["fragile"] = stats.fragile(comp.verdict, comp.p_holm, comp.equivalence_p, level)
    # significant and inside the margin: both are true, and the reader sees both
    row["significant_within_margin"] = ("better" if comp.improvement > 0 else "worse") \
        if comp.verdict == "equivalent" and comp.p_holm < level else None
    if item["mirror_of"] and hasattr(item["mirror_of"]["comparison"], "look"):
        original = item["mirror_of"]["comparison"]
        row.update(look=original.look, looks=original.looks, n_at_decision=original.n_at_decision,
                   alpha_look=original.alpha_look, decided=original.decided)
    return row


def _on_tested_seeds(comp: stats.Comparison, method_values: dict, base_values: dict) -> dict:
    """The method's mean and std over the seeds its test used (the pairs, when paired), so
    the numbers beside a test are the test's own."""
    seeds = sorted(set(method_values) & set(base_values)) if comp.paired else sorted(method_values)
    values = np.array([method_values[s] for s in seeds])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n_tested": len(seeds)}


def _exact_test_note(comparisons: list, alpha: float, notes: list[str]) -> None:
    exact_min = [c.exact_min_p * len(comparisons) for _, c, *_ in comparisons]
    if exact_min and min(exact_min) >= alpha:
        needed = stats.seeds_needed(len(comparisons), alpha)
        sizes = sorted({f"{c.n_pairs} paired" if c.paired else f"{c.n_method}/{c.n_baseline} unpaired"
                        for _, c, *_ in comparisons})
        notes.append(
            f"{', '.join(sizes)} seeds: the exact test cannot reach p < {alpha:g}"
            + (f" after Holm over {len(comparisons)} methods" if len(comparisons) > 1 else "")
            + f" (smallest possible p {min(1.0, min(exact_min)):.3g}); it needs at least {needed} paired seeds, "
            "so the verdicts rest on the t-test"
        )


def _lost_seeds(task, choice: dict, base: dict, method_values: dict, seeds: Seeds) -> tuple[list[int], list[int]]:
    """The report seeds one side lost (diverged, failed, or finished without a finite
    value) where the other side finished: the method's among the seeds it ran, the
    baseline's among the seeds the method's values come from."""
    method_key, base_key = (task, choice["config"]), (task, base["config"])
    pool = seeds.attempted.get(method_key, set())
    method_lost = (pool - set(seeds.test.get(method_key, {}))) & set(seeds.test.get(base_key, {}))
    base_lost = (seeds.attempted.get(base_key, set()) - set(seeds.test.get(base_key, {}))) & set(method_values)
    return sorted(method_lost), sorted(base_lost)


def _guard_survivors(comp: stats.Comparison, name: str, baseline: str, method_lost: list[int],
                     base_lost: list[int]) -> None:
    """:func:`stats.lost_against` on one comparison: a verdict it forbids becomes
    inconclusive, with a note naming the lost seeds."""
    if not stats.lost_against(comp.verdict, method_lost, base_lost):
        return
    who = (f"`{name}` lost seed(s) {', '.join(map(str, method_lost))}" if method_lost else "") \
        + (" and " if method_lost and base_lost else "") \
        + (f"`{baseline}` lost seed(s) {', '.join(map(str, base_lost))}" if base_lost else "")
    comp.notes.append(f"{comp.verdict} on the seeds both finished, but {who} (diverged or failed) that the other "
                      "side finished: the survivors alone cannot decide it, so inconclusive")
    comp.verdict = "inconclusive"
