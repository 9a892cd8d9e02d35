"""From stored runs to the numbers a report shows.

:func:`summary` (from :mod:`benchsuite.report.summary`) condenses runs per task and configuration
(mean, std, divergences, ...). :func:`analyze` adds the statistics of :mod:`benchsuite.stats`: per task, each method's
configuration chosen on validation is compared with the baseline's; across tasks, scores
normalized to the baseline are ranked and aggregated. Its result is plain data (written as
``stats.json``) that :mod:`benchsuite.report.render` turns into Markdown, HTML and leaderboards
(:mod:`benchsuite.report.publish` writes a report folder).

Vocabulary: a *method* is a plugin combination (``wc``, ``wc+lpwd``); a *configuration* is a
method with its hyperparameter values, plus the tunable training values (learning rate,
weight decay) when a matrix sweeps them. A task run under different recipes (other epochs,
optimizer, data) appears as separate task rows and is never pooled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from benchsuite import stats
from benchsuite.plugins import version_info
from benchsuite.report.studies import TuningRuns, name_studies
from benchsuite.report.studies import effort as studies_effort
from benchsuite.report.studies import sensitivity as trial_sensitivity
from benchsuite.report.summary import (
    BASELINE,
    current_runs,
    name_variants,
    sort_value,
    summary,
    superseded_runs,
    with_config_columns,
)
from benchsuite.runs import sequential as seq
from benchsuite.runs.identity import TUNING_SEED_BASE, seed_role
from benchsuite.runs.variation import seeds_varied
from benchsuite.store.status import STATUS_FINISHED, STATUSES
from benchsuite.tasks.spec import METRICS

DEFAULT_MARGINS = {"accuracy": "0.005", "mse": "2%"}
VERDICTS = ("better", "equivalent", "inconclusive", "worse")


# --- statistics -------------------------------------------------------------------------------

def parse_margins(items: list[str] | None) -> dict[str, stats.Margin]:
    """``["accuracy=0.01", "mse=5%"]`` over the defaults; raises ValueError on bad input."""
    margins = {k: stats.Margin.parse(v) for k, v in DEFAULT_MARGINS.items()}
    for item in items or ():
        metric, sep, value = item.partition("=")
        if not sep or metric.strip() not in METRICS:
            raise ValueError(f"margin {item!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        margins[metric.strip()] = stats.Margin.parse(value)
    return margins


def parse_baselines(baseline: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"none,l2"`` or ``["none", "l2"]`` -> ``["none", "l2"]``; raises ValueError on an
    empty or repeated name."""
    names = [b.strip() for b in (baseline.split(",") if isinstance(baseline, str) else baseline)]
    if not names or not all(names):
        raise ValueError(f"baseline {baseline!r}: expected one method or a comma-separated list (none,l2,wd)")
    repeated = sorted({b for b in names if names.count(b) > 1})
    if repeated:
        raise ValueError(f"baseline {baseline!r}: {', '.join(repeated)} named twice")
    return names


def analyze(table: pl.DataFrame, *, baseline: str | list[str] = BASELINE, margins: dict | None = None,
            alpha: float = stats.ALPHA, resamples: int = stats.MONTE_CARLO_RESAMPLES, seed: int = 0,
            references: list[dict] | None = None, studies: list[dict] | None = None,
            sequential: seq.Plan | None = None) -> dict:
    """Every statistic a report shows, as JSON-ready data. ``resamples`` and ``seed`` drive
    the Monte Carlo permutation tests used when exact enumeration is too large.
    ``studies``: the results folder's tuning journals (:func:`benchsuite.runs.tuning.read_studies`).
    ``sequential``: the results folder's sequential plan (:func:`benchsuite.runs.sequential.read_plan`):
    each per-task verdict then comes from its deciding look (:func:`benchsuite.runs.sequential.decide`).

    Runs on report seeds are what every test, mean, std and n rests on; runs on tuning
    seeds (trials) give only their validation values, to choose among them and to show
    the tuning effort (:mod:`benchsuite.report.studies`).

    ``baseline``: one method, or several (``"none,l2,wd"``): every method is then compared
    with each, all those comparisons of a task in one Holm family, and the cross-task
    section is made once per baseline (``overall_by_baseline``; ``overall`` is the first's)
    with Holm over every baseline's rows together."""
    baselines = parse_baselines(baseline)
    baseline = baselines[0]
    margins = margins or parse_margins(None)
    current = current_runs(table)
    out = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": version_info(),  # the package and the results format of the code that wrote this
        "baseline": baseline, "baselines": baselines, "alpha": alpha,
        "margins": {k: str(v) for k, v in margins.items()},
        "permutation": {"resamples": resamples, "seed": seed},
        "runs": {s: int((current["status"] == s).sum()) for s in STATUSES}
        if not current.is_empty() else {},
        # what the seeds varied, so what the verdicts are about (benchsuite.runs.variation)
        "variation": seeds_varied(current),
        # runs of older plugin versions of a configuration that also has newer ones: kept
        # in the store, left out of every statistic (summary.current_runs)
        "superseded": superseded_runs(table),
        "tasks": [], "overall": None,
    }
    if sequential is not None:
        out["sequential"] = sequential.to_dict()
    if table.is_empty():
        return out
    runs = with_config_columns(table, studies)
    report_runs = runs.filter(pl.col("role") == "report")
    tuning_runs = runs.filter(pl.col("role") == "tuning")
    summ = summary(table, report_runs, baseline)
    trial_summ = summary(table, tuning_runs, baseline)
    seeds = _Seeds(studies or [])
    for row in runs.select("task", "config", "seed", "status", "test", "val", "run_id", "train_seconds").iter_rows():
        seeds.add(*row)
    for task in sorted(set(runs["task"])):
        part = summ.filter(pl.col("task") == task) if not summ.is_empty() else summ
        trials = trial_summ.filter(pl.col("task") == task) if not trial_summ.is_empty() else trial_summ
        out["tasks"].append(_analyze_task(task, part, trials, seeds, baselines, margins, alpha, references or [],
                                          sequential))
    # under sequential seeds each comparison stopped at its own look: ranks and run scores
    # compare every method on the seeds all of them have, the first look's
    common = sequential.min if sequential is not None else None
    overall = {b: _analyze_overall(out["tasks"], seeds, b, alpha, resamples, seed, common) for b in baselines}
    _decide_overall([o for o in overall.values() if o], out["tasks"], alpha)
    out["overall"] = overall[baselines[0]]
    if len(baselines) > 1:
        out["overall_by_baseline"] = overall
    return out


class _Seeds:
    """Per (task, configuration), on report seeds: every seed run (any status), the
    finished runs' finite test and validation values by seed, and the finished runs whose
    value was not finite. Runs on tuning seeds (trials) go to ``tuning``
    (:class:`benchsuite.report.studies.TuningRuns`) with their validation value alone (None when
    lost: diverged, failed, no finite validation value) and training seconds; their test
    values are never kept."""

    def __init__(self, journals: list[dict]):
        self.attempted: dict[tuple, set[int]] = {}
        self.test: dict[tuple, dict[int, float]] = {}
        self.val: dict[tuple, dict[int, float]] = {}
        self.nonfinite: dict[tuple, list[str]] = {}
        self.tuning = TuningRuns(journals)

    def add(self, task, config, seed, status, value, val, run_id, train_seconds) -> None:
        key = (task, config)
        if seed_role(seed) == "tuning":
            usable = status == STATUS_FINISHED and val is not None and math.isfinite(val)
            self.tuning.add(run_id, task, config, seed, float(val) if usable else None, train_seconds)
            return
        self.attempted.setdefault(key, set()).add(seed)
        if status != STATUS_FINISHED:
            return
        if value is None or not math.isfinite(value):
            self.nonfinite.setdefault(key, []).append(f"run {run_id} (seed {seed}) finished with test = {value}")
            return
        self.test.setdefault(key, {})[seed] = value
        if val is not None and math.isfinite(val):
            self.val.setdefault(key, {})[seed] = val


def _config_dict(row: dict) -> dict:
    return {
        "config": row["config"], "display": row["display"], "method": row["method"],
        "hyperparameters": json.loads(row["hp_json"]), "full_label": row["hyperparameters"],
        "n": row["n"], "diverged": row["diverged"], "failed": row["failed"],
        "mean": row["mean"], "std": row["std"], "val_mean": row["val_mean"], "last_mean": row["last_mean"],
        "step_ms": row["step_ms"], "train_seconds": row["train_seconds"],
        "plugin_metrics": json.loads(row["plugin_metrics"]), "selected": False, "paper": [],
    }


def _select(configs: list[dict], higher_is_better: bool, task: str, seeds: _Seeds) -> dict | None:
    """The configuration an untuned method is reported with: chosen on validation, never
    on test, over the seeds every configuration of the method was run with. Configurations
    where every such seed finished come first, so one lucky seed among diverged ones does
    not win (and a configuration that lost a seed loses a tie to a complete one); then the
    best validation mean; an exact tie goes to the earlier configuration in the report's
    order (:func:`benchsuite.report.summary.summary`: hyperparameter values plugin by plugin and
    name by name, numbers from small to large). Means are exactly rounded sums
    (``math.fsum``), so the order the runs were read in cannot make or break a tie."""
    common = set.intersection(*(seeds.attempted.get((task, c["config"]), set()) for c in configs)) \
        if len(configs) > 1 else set()

    def val_on_common(c):
        values = seeds.val.get((task, c["config"]), {})
        chosen = [v for s, v in values.items() if s in common] if common else list(values.values())
        return math.fsum(chosen) / len(chosen) if chosen else None

    def lost_on_common(c):
        done = set(seeds.test.get((task, c["config"]), {}))
        wanted = common or seeds.attempted.get((task, c["config"]), set())
        return len(wanted - done) > 0

    candidates = [(c, val_on_common(c)) for c in configs]
    if len(configs) == 1:  # nothing to choose, so no validation value is needed
        candidates = [(c, 0.0 if v is None else v) for c, v in candidates if c["n"] > 0]
    candidates = [(c, v) for c, v in candidates if c["n"] > 0 and v is not None]
    if not candidates:
        return None
    sign = -1.0 if higher_is_better else 1.0
    choice, _ = min(candidates, key=lambda cv: (lost_on_common(cv[0]), sign * cv[1]))
    return choice


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


def _comparison_inputs(task: str, choice: dict, base: dict, k_method: int, k_base: int, seeds: _Seeds):
    """The report-seed runs a method's verdict rests on, K (the configuration pairs it was
    chosen among on those same seeds: 1 for a tuned method, whose trials ran on tuning
    seeds) and how each side was chosen."""
    method_values = dict(seeds.test.get((task, choice["config"]), {}))
    base_values = dict(seeds.test.get((task, base["config"]), {}))
    method_text, k = _procedure(choice, k_method)
    base_text, k_b = _procedure(base, k_base, "baseline ")
    procedure = "; ".join(p for p in (method_text, base_text) if p)
    return method_values, base_values, k * k_b, procedure


def _variants(task: str, configs: list[dict], trials: list[dict], seeds: _Seeds) -> tuple[dict, dict]:
    """Report configurations by variant, and the tuned studies by variant. A report
    configuration that is a study's trial takes the study's variant; the others are named
    among themselves (:func:`benchsuite.report.summary.name_variants`)."""
    studies = seeds.tuning.studies(task, {c["config"]: c for c in trials})
    name_studies(studies)
    variant_of = {t["config"]: study["variant"] for study in studies for t in study["trials"] if t["config"]}
    untuned = [c for c in configs if c["config"] not in variant_of]
    name_variants(untuned)
    for c in configs:
        if c["config"] in variant_of:
            c["variant"] = variant_of[c["config"]]
    by_method: dict[str, list[dict]] = {}
    for c in configs:
        by_method.setdefault(c["variant"], []).append(c)
    return by_method, {study["variant"]: study for study in studies}


def _choose_tuned(by_method, tuned, higher, notes) -> tuple[dict, list]:
    """The report configuration of each tuned variant (its chosen trial on report seeds:
    its other report-seed configurations are left out, with a note) and each study's
    tuning effort."""
    selected, efforts = {}, []
    for variant, study in tuned.items():
        effort = studies_effort(study, higher)
        efforts.append(effort)
        reports = by_method.get(variant, [])
        if not effort["decided"]:
            notes.append(f"`{variant}`: {effort['not_run']} of its {effort['k']} trials have no run on every tuning "
                         "seed yet, so none is chosen and nothing is tested (run the same command again)")
            continue
        chosen = effort["chosen_config"]
        others = [c["display"] for c in reports if c["config"] != chosen]
        if others:
            notes.append(f"`{variant}` is tuned, so it is reported with its chosen trial alone; its other "
                         f"report-seed runs are left out: {', '.join(others)}")
        report = next((c for c in reports if c["config"] == chosen and c["n"] > 0), None)
        if chosen is None:
            notes.append(f"`{variant}`: none of its {effort['k']} trials finished every tuning seed, so none can be "
                         "chosen: not tested")
        elif report is None:
            notes.append(f"`{variant}`: its chosen trial `{effort['chosen_display']}` has no finished run on report "
                         "seeds yet: not tested (run the same command again)")
        else:
            report["tuning"] = {k: effort[k] for k in ("k", "tuning_seeds", "lost", "seconds", "chosen")}
            selected[variant] = report
    return selected, efforts


def _analyze_task(task, part: pl.DataFrame, trial_part: pl.DataFrame, seeds: _Seeds, baselines, margins, alpha,
                  references, sequential=None) -> dict:
    first = part if not part.is_empty() else trial_part
    metric = first["metric"][0]
    higher = METRICS.get(metric) == "max"
    configs = [_config_dict(r) for r in part.iter_rows(named=True)]
    trials = [_config_dict(r) for r in trial_part.iter_rows(named=True)]
    task_name, task_spec = first["task_name"][0], json.loads(first["task_spec"][0])
    by_method, tuned = _variants(task, configs, trials, seeds)
    for c in configs:
        hp = c["hyperparameters"]
        c["paper"] = [r for r in references if _reference_matches(r, task_name, c["method"], hp, task_spec)]
    notes = [f"`{c['display']}`: {line}: counted as diverged, left out"
             for c in configs for line in seeds.nonfinite.get((task, c["config"]), [])]
    selected, efforts = _choose_tuned(by_method, tuned, higher, notes)
    unlisted = seeds.tuning.unlisted.get(task)
    if unlisted:
        notes.append(f"{unlisted} run(s) on tuning seeds that no tuning journal of this results folder lists (an "
                     "older plugin version's, or copied in) are left out")
    for method, group in by_method.items():
        if method in tuned:
            continue
        choice = _select(group, higher, task, seeds)
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
        "sensitivity": _sensitivity(by_method, selected, tuned) + [c for e in efforts for c in trial_sensitivity(e)],
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
                            margin: stats.Margin, seeds: _Seeds, notes: list[str]) -> list[dict]:
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


def _sequential_verdicts(items: list[dict], plan: seq.Plan, task, higher: bool, seeds: _Seeds,
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


def _lost_seeds(task, choice: dict, base: dict, method_values: dict, seeds: _Seeds) -> tuple[list[int], list[int]]:
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


def _sensitivity(by_method: dict[str, list[dict]], selected: dict, tuned: dict) -> list[dict]:
    """For each untuned method with several configurations on report seeds: the metric
    against each swept value, the other values held at the selected configuration's (a
    tuned method's curves are its trials', :func:`benchsuite.report.studies.sensitivity`)."""
    curves = []
    for method, group in by_method.items():
        if len(group) < 2 or method not in selected or method in tuned:
            continue
        chosen = selected[method]["hyperparameters"]
        axes = sorted({(p, k) for c in group for p, hps in c["hyperparameters"].items() for k in hps
                       if len({json.dumps(g["hyperparameters"].get(p, {}).get(k)) for g in group}) > 1})
        for plugin, key in axes:
            def others_match(c, plugin=plugin, key=key, chosen=chosen):
                hp = c["hyperparameters"]
                return all(hp.get(p, {}).get(k) == chosen.get(p, {}).get(k)
                           for p, k in {(p, k) for p, hps in chosen.items() for k in hps} if (p, k) != (plugin, key))
            points = [c for c in group if others_match(c)]
            if len(points) < 2:
                continue
            points.sort(key=lambda c: sort_value(c["hyperparameters"][plugin][key]))
            curves.append({
                "method": method, "hyperparameter": f"{plugin}.{key}",
                "fixed": selected[method]["display"],
                "points": [{"value": c["hyperparameters"][plugin][key], "display": c["display"], "n": c["n"],
                            "diverged": c["diverged"], "failed": c["failed"], "mean": c["mean"], "std": c["std"],
                            "val_mean": c["val_mean"], "selected": c["selected"]} for c in points],
            })
    return curves


def _unselected_values(task: str, config: dict, seeds: _Seeds) -> dict[int, float]:
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


def _collect_across_tasks(usable: list[dict], seeds: _Seeds, baseline, common_seeds: int | None = None) -> _AcrossTasks:
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
    all before Holm (:func:`_decide_overall`)."""
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


def _analyze_overall(tasks: list[dict], seeds: _Seeds, baseline, alpha, resamples, seed,
                     common_seeds: int | None = None) -> dict | None:
    """Across tasks, for the method configurations selected per task, against ``baseline``.

    Ranks use each task's raw means (direction-aware), so equal means tie exactly. Two
    estimates rest on the same runs as the per-task verdicts, both on the standardized
    scale (:func:`benchsuite.stats.standardized_effect`): the pooled score over these tasks
    and the random-effects estimate for another task like them
    (:func:`benchsuite.stats.random_effects`); with the Wilcoxon test over tasks they are
    decided, Holm over methods, in :func:`_decide_overall`. A method chosen among several
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


def _decide_overall(overalls: list[dict], tasks: list[dict], alpha: float) -> None:
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


# --- paper reference numbers ------------------------------------------------------------

def _parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(b, str) and str(a).lower() == b.lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


def _reference_matches(ref: dict, task_name: str, method: str, hp: dict, spec: dict) -> bool:
    if ref["task"] != task_name or ref["method"] != method:
        return False
    for item in ref.get("set", ()):
        key, _, value = item.partition("=")
        plugin, _, name = key.strip().partition(".")
        if plugin not in hp or name not in hp[plugin] or not _same(hp[plugin][name], _parse_value(value)):
            return False
    train = spec.get("train", {})
    return all(k in train and _same(train[k], v) for k, v in ref.get("train", {}).items())


def load_references(folders) -> list[dict]:
    """Every row of the ``*.paper.toml`` files in ``folders``, each with its file's
    ``paper`` and ``table``."""
    import tomllib

    rows = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.paper.toml")):
            data = tomllib.loads(path.read_text())
            for row in data.get("rows", ()):
                rows.append({**row, "paper": data.get("paper"), "table": data.get("table"), "file": path.name})
    return rows


# --- regression against a stored reference ------------------------------------------------

def regressions(current: pl.DataFrame, reference: pl.DataFrame, *, margins: dict | None = None,
                alpha: float = stats.ALPHA) -> list[dict]:
    """Each configuration present in both tables (same task recipe, same hyperparameters),
    compared with its reference runs; Holm over all of them. Returns every comparison with
    ``regression`` true where the current runs are significantly worse beyond the margin."""
    margins = margins or parse_margins(None)

    def seeds(table):
        out: dict[tuple, dict[int, float]] = {}
        meta = {}
        # report seeds alone: a trial's test value is never compared, not even with itself
        report = (pl.col("status") == STATUS_FINISHED) & (pl.col("seed") < TUNING_SEED_BASE)
        for row in table.filter(report).iter_rows(named=True):
            if row["test"] is None or not math.isfinite(row["test"]):
                continue
            key = (row["task"], row["task_spec"], row["method_full_label"])
            out.setdefault(key, {})[row["seed"]] = row["test"]
            meta[key] = row["metric"]
        return out, meta

    now, meta = seeds(current)
    before, _ = seeds(reference)
    results = []
    for key in sorted(set(now) & set(before)):
        metric = meta[key]
        higher = METRICS.get(metric) == "max"
        ref_mean = float(np.mean(list(before[key].values())))
        margin = margins.get(metric, stats.Margin(0.0)).absolute(ref_mean)
        comp = stats.compare(now[key], before[key], higher, margin)
        if comp is None:
            continue
        results.append({"task": key[0], "configuration": key[2], "metric": metric, "comparison": comp})
    stats.decide([r["comparison"] for r in results], alpha)
    for r in results:
        comp = r.pop("comparison")
        r.update(comp.to_dict())
        r["regression"] = comp.verdict == "worse"
    return results


def read_runs_table(path: Path) -> pl.DataFrame:
    """A runs table from a results folder or a ``results.csv`` written by a report."""
    from benchsuite.store import RUNS_SCHEMA, Store

    path = Path(path)
    if path.is_dir():
        if (path / "results.csv").is_file() and not (path / "runs").is_dir():
            path = path / "results.csv"
        else:
            return Store(path).table()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results folder or results.csv there")
    return pl.read_csv(path, schema_overrides=RUNS_SCHEMA)
