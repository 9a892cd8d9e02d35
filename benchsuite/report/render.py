"""Reports and leaderboards from an :func:`benchsuite.report.analysis.analyze` result.

A report is first built as a list of blocks (headings, paragraphs, tables, figures), then
written as Markdown or as one self-contained HTML file (figures embedded, every string
escaped: method labels and plugin metrics come from plugins and users). This module only
renders; :mod:`benchsuite.report.publish` writes a report folder.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from benchsuite.formatting import fmt, fmt_list, fmt_p
from benchsuite.plugins import version_info, version_text, versioned_name
from benchsuite.store.status import STATUS_FINISHED

VERDICT_MARK = {"better": "better ▲", "worse": "worse ▼", "equivalent": "equivalent =",
                "inconclusive": "inconclusive ?", "mixed": "mixed ▲▼"}


def verdict_text(item: dict | None) -> str:
    """A verdict as the reader sees it: a significant difference inside the margin reads as
    both ("equivalent: worse by less than the margin"), and a verdict whose p lies within a
    factor of 2 of its threshold is marked fragile (another machine's noise may flip it)."""
    if not item or not item.get("verdict"):
        return "-"
    text = VERDICT_MARK[item["verdict"]]
    if item.get("significant_within_margin"):
        text = f"equivalent: {item['significant_within_margin']} by less than the margin"
    return text + (" (fragile)" if item.get("fragile") else "")


@dataclass
class Code:
    """A cell or paragraph piece shown as code (method labels, hyperparameters)."""

    text: str


@dataclass
class Block:
    kind: str  # h1, h2, h3, p, table, figure, list
    text: str | list = ""
    header: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    align: str = ""  # one char per column: l or r
    anchor: str = ""


def _pm(mean, std) -> str:
    return f"{fmt(mean)} ± {fmt(std)}"


def _paper(ref: dict) -> str:
    spread = f" ± {ref['spread']:g}" if ref.get("spread") is not None else ""
    shown_kind = ref.get("spread") is not None and ref.get("spread_kind") not in (None, "std")
    kind = f" ({ref['spread_kind']})" if shown_kind else ""
    return f"paper: {ref['mean']:g}{spread}{kind}"


def _paper_cell(config: dict, metric: str) -> str:
    refs = [r for r in config["paper"] if r.get("metric", metric) == metric]
    return "; ".join(_paper(r) for r in refs) or "-"


def _ours_in_paper_units(config: dict, metric: str) -> str:
    refs = [r for r in config["paper"] if r.get("metric", metric) == metric]
    if not refs or config["mean"] is None:
        return ""
    scale = refs[0].get("scale", 1)
    return f"{config['mean'] * scale:.4g} ± {(config['std'] or 0) * scale:.2g}"


# --- the report ------------------------------------------------------------------------------

def report_blocks(analysis: dict, title: str, plots: dict | None = None) -> list[Block]:
    plots = plots or {}
    alpha = analysis["alpha"]
    margins = ", ".join(f"{k} ±{v}" for k, v in analysis["margins"].items())
    runs = analysis.get("runs", {})
    blocks = [
        Block("h1", title),
        Block("p", f"Generated {analysis['generated']} by `benchsuite report`; {version_text()}. Runs: "
                   f"{runs.get('finished', 0)} finished, {runs.get('diverged', 0)} diverged, "
                   f"{runs.get('failed', 0)} failed (diverged and failed runs are counted in every table, "
                   f"never averaged)." + (f" {sum(row['runs'] for row in analysis['superseded'])} runs of older "
                                          f"plugin versions left out (listed below)."
                                          if analysis.get("superseded") else "")),
        Block("p", [
            "Each method is reported with its configuration chosen on the validation split (never on test); "
            "its test metric is compared with the baseline ", Code(analysis["baseline"]),
            f"'s, paired by seed (95% t-interval, paired t-test on the seeds both sides finished, Holm over the "
            f"task's comparisons with every baseline; Welch's test when fewer than 2 seeds pair). A configuration "
            f"chosen among K on the same seeds it is tested on is tested at α/K (p × K, simultaneous interval); one "
            f"tuned with `benchsuite run --tune K` (K trials on tuning seeds, the best on validation then run on the "
            f"report seeds) is tested on the report seeds alone, which its choice never saw, with no penalty. "
            f"Means, stds and n next to a test come from the seeds that test used. Verdict at α = {alpha:g}: "
            f"equivalent when the 90% interval (two one-sided tests) lies within the margin ({margins}); else "
            f"better/worse when the Holm-adjusted p < {alpha:g}; else inconclusive. Every seed giving the same "
            f"difference has no t-test: its p is the exact sign-flip test's, which cannot go below 2/2^n "
            f"(0.0625 with 5 seeds). Families: Holm controls false verdicts within each task; over T tasks up to "
            f"T × α false verdicts can be expected.",
        ]),
    ]
    if analysis.get("sequential"):
        blocks.append(Block("p", _sequential_sentence(analysis["sequential"])))
    if analysis.get("variation"):  # what the seeds varied, so what the verdicts are about (benchsuite.runs.variation)
        blocks.append(Block("p", analysis["variation"]["text"]))
    overall = analysis.get("overall")
    if overall:
        blocks += leaderboard_blocks(analysis, plots, level="h2")
    for task in analysis["tasks"]:
        blocks += _task_blocks(task, plots.get(("task", task["task"]), []), alpha)
    blocks += _methods_blocks(analysis)
    return blocks


LEADERBOARD_READING = (
    "How to read it. Every effect is a difference of means in units of the task's seed-to-seed standard deviation "
    "(the root mean square of the method's and the baseline's; +1: better by one such deviation, higher accuracy or "
    "lower loss), so a task whose baseline is near zero counts no more than another. Intervals are 95% and "
    "unadjusted; p-values are Holm-adjusted over every method and baseline. "
    "**These tasks**: the mean over these tasks of each task's effect, with its interval and p (paired by seed): "
    "what the method did here. **Another task**: a random-effects estimate that treats these tasks as a sample of "
    "tasks (Paule-Mandel between-task variance τ², Hartung-Knapp interval, I² the share of the spread that is "
    "between tasks), and the 95% prediction interval for the effect on one new task like these: what to expect "
    "elsewhere. A verdict reads *mixed* when the per-task verdicts include both better and worse, or when the tasks "
    "disagree (τ² > 0 and Cochran's Q test of equal effects at p < 0.10) and the prediction interval reaches beyond "
    "the margin on the other side of the estimate (on both sides when it is not significant); a prediction interval "
    "that is wide only because there are few tasks leaves the verdict to the estimate. *Equivalent*: the estimate "
    "lies inside the margin (with the direction when it is also significant); *fragile*: its p is within a factor "
    "of 2 of α. P(better than {baseline}): the chance that a run of the method beats a run of the baseline on the "
    "same task (lower is better for a loss), averaged over tasks. Mean ranks use each task's means. Verdict counts "
    "are the per-task tests below. K: trial configurations per task (`--tune`; 1: nothing to tune); lost: trials "
    "that diverged or failed; edge: a chosen value at the edge of what was tried.")


def leaderboard_blocks(analysis: dict, plots: dict | None = None, level: str = "h2") -> list[Block]:
    plots = plots or {}
    overall = analysis.get("overall")
    if not overall:
        return [Block(level, "Leaderboard"), Block("p", "No task has a finished baseline run: nothing to rank.")]
    by_baseline = analysis.get("overall_by_baseline") or {analysis["baseline"]: overall}
    blocks = [Block(level, "Leaderboard")]
    if len(by_baseline) > 1:
        blocks.append(Block("p", f"Against each of {len(by_baseline)} baselines ({', '.join(by_baseline)}), one "
                                 "table each; every test of the report is in one Holm family per kind (per task, "
                                 "pooled, across tasks)."))
    blocks.append(Block("p", LEADERBOARD_READING.format(baseline=" / ".join(by_baseline))
                        + (f" {analysis['variation']['short']}" if analysis.get("variation") else "")))
    for baseline, board in by_baseline.items():
        if board is None:
            blocks.append(Block("p", f"Against `{baseline}`: no task has a finished `{baseline}` run."))
            continue
        blocks += _board_blocks(board, baseline, len(by_baseline) > 1)
    blocks += _aa_blocks(analysis)
    blocks += _verdict_matrix(analysis)
    blocks += _fragile_blocks(analysis)
    for name in plots.get("overall", []):
        blocks.append(Block("figure", name))
    return blocks


def fragile_counts(analysis: dict) -> dict:
    """How many of the report's distinct per-task verdicts (a mirrored row counted once) are
    fragile, by verdict."""
    comps = [c for t in analysis["tasks"] for c in t["comparisons"] if not c.get("mirror")]
    fragile = [c for c in comps if c.get("fragile")]
    return {"verdicts": len(comps), "fragile": len(fragile),
            "by_verdict": {v: sum(c["verdict"] == v for c in fragile) for v in VERDICT_MARK
                           if any(c["verdict"] == v for c in fragile)}}


def _fragile_blocks(analysis: dict) -> list[Block]:
    counts = fragile_counts(analysis)
    if not counts["verdicts"]:
        return []
    detail = ", ".join(f"{n} {v}" for v, n in counts["by_verdict"].items())
    level = "the level of the look that decided it" if analysis.get("sequential") else f"α = {analysis['alpha']:g}"
    return [Block("p", f"Fragile per-task verdicts (a p within a factor of 2 of {level}): "
                       f"{counts['fragile']} of {counts['verdicts']}" + (f" ({detail})" if detail else "") + "."
                       + (" The same matrix on another machine may flip these; more seeds resolve them "
                          "(`run --seeds MIN:MAX`)." if counts["fragile"] else ""))]


def _board_blocks(board: dict, baseline: str, titled: bool) -> list[Block]:
    """One baseline's leaderboard table, its Friedman test and notes."""
    blocks = [Block("h3", f"Against {baseline}")] if titled else []
    blocks.append(Block("p", f"Across {len(board['tasks'])} task(s): {', '.join(board['tasks'])}."))
    rows = []
    for i, m in enumerate(board["methods"], 1):
        poi, wil, pooled, across = m["prob_improvement"], m["wilcoxon"], m.get("pooled"), m.get("across")
        v = m["verdicts"]
        rows.append([
            str(i), Code(m["method"]), _k_cell(m), fmt(m["mean_rank"], 3),
            _pooled_cell(pooled, len(board["tasks"])), _pooled_p_cell(pooled), verdict_text(pooled),
            _across_cell(across), _prediction_cell(across), _heterogeneity_cell(across), verdict_text(across),
            f"{poi['value']:.2f}" if poi else "-", fmt_p(wil.get("p_holm")) if wil else "-",
            f"{v['better']}/{v['equivalent']}/{v['inconclusive']}/{v['worse']}",
            f"{m['diverged']}/{m['failed']}", f"×{m['overhead']:.2f}" if m["overhead"] else "-",
        ])
    blocks.append(Block(
        "table", header=["#", "method", "K", "mean rank", "these tasks [95% CI]", "p (Holm)", "verdict",
                         "another task [95% CI]", "prediction interval", "τ² (I²)", "verdict",
                         f"P(better than {baseline})", "Wilcoxon p (Holm)", "better/equiv./inconcl./worse",
                         "diverged/failed", "step time"],
        rows=rows, align="rllrrrlrrrlrrrrr"))
    fr = board.get("friedman") or {}
    if "chi2" in fr and "p_perm" not in fr:  # a stats.json written before permutation p-values
        blocks.append(Block("p", f"Friedman test over {fr['n_tasks']} tasks and {fr['k']} methods: "
                                 f"χ² = {fr['chi2']:.3f}, p = {fmt_p(fr['p'])}."))
    elif "chi2" in fr:
        blocks.append(Block("p", f"Friedman test over {fr['n_tasks']} tasks and {fr['k']} methods: "
                                 f"χ² = {fr['chi2']:.3f}, permutation p = {fmt_p(fr['p_perm'])} ({fr['perm']}; "
                                 f"the χ² approximation gives {fmt_p(fr['p'])}, Iman-Davenport "
                                 f"F({fr['df'][0]}, {fr['df'][1]}) = {fmt(fr['F'])}"
                                 + (f", p = {fmt_p(fr['p_F'])}" if fr["p_F"] is not None and math.isfinite(fr["p_F"])
                                    else "") + ")."))
    elif fr.get("note"):
        blocks.append(Block("p", fr["note"] + "."))
    notes = list(board.get("notes") or [])
    fragile = [m["method"] for m in board["methods"]
               if any((m.get(k) or {}).get("fragile") for k in ("pooled", "across"))]
    if fragile:
        notes.append(f"fragile (p within a factor of 2 of α): {', '.join(fragile)}; more seeds "
                     "(`run --seeds MIN:MAX`) are what resolve it")
    if notes:
        blocks.append(Block("list", notes))
    return blocks


def _across_cell(across: dict | None) -> str:
    if not across or across.get("value") is None:
        return "-"
    if across.get("low") is None:
        return f"{across['value']:+.3f} (no interval: {across.get('note') or 'see notes'})"
    return f"{across['value']:+.3f} [{across['low']:+.3f}, {across['high']:+.3f}], p {fmt_p(across.get('p_holm'))}"


def _prediction_cell(across: dict | None) -> str:
    if not across or across.get("prediction_low") is None:
        return "-" if not across or across.get("value") is None else "(needs 3 tasks)"
    return f"[{across['prediction_low']:+.3f}, {across['prediction_high']:+.3f}]"


def _heterogeneity_cell(across: dict | None) -> str:
    if not across or across.get("tau2") is None:
        return "-"
    return f"{across['tau2']:.3g} ({100 * across['i2']:.0f}%)"


def _k_cell(row: dict) -> str:
    """A leaderboard row's tuning: K per task (a range when it differs), lost trials, and
    how many of its choices lie at an edge of what was tried."""
    tuning = row.get("tuning")
    if not tuning:
        among = row.get("chosen_among") or {"method": row.get("selected_among", 1), "baseline": 1}
        text = f"grid of {among['method']}, same seeds" if among["method"] > 1 else "untuned"
        return text + (f" (baseline: grid of {among['baseline']})" if among["baseline"] > 1 else "")
    ks = sorted(set(tuning["k"].values()))
    text = str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"
    if tuning["lost"]:
        text += f", {tuning['lost']} lost"
    if tuning["edges"]:
        text += f", {len(tuning['edges'])} at an edge"
    return text


def _aa_blocks(analysis: dict) -> list[Block]:
    """A/A check: replicates of the baseline (``none@NAME``, from ``--replicate``) differ
    from it only in their random streams, so any better/worse verdict is a false positive."""
    baseline = analysis["baseline"]
    out = []
    for row in (analysis.get("overall") or {}).get("methods", []):
        if not row["method"].startswith(baseline + "@"):
            continue
        v = row["verdicts"]
        tested = sum(v.values())
        false = v["better"] + v["worse"]
        pooled = row.get("pooled") or {}
        out.append(Block("p", [
            "A/A check: ", Code(row["method"]), " is ", Code(baseline),
            f" rerun with random streams that share nothing with it, so every verdict other than inconclusive or "
            f"equivalent is a false positive. Here: {false} of {tested} task verdict(s) (about "
            f"{analysis['alpha'] * tested:.2g} expected at α = {analysis['alpha']:g}); pooled score "
            f"{_pooled_cell(pooled)}" + (f", pooled verdict {pooled['verdict']}" if pooled.get("verdict") else "")
            + ".",
        ]))
    return out


def _pooled_p_cell(pooled: dict | None) -> str:
    """The pooled p after Holm (the verdict beside it says when it is inside the margin)."""
    return fmt_p(pooled.get("p_holm")) if pooled else "-"


def _pooled_cell(pooled: dict | None, of_tasks: int | None = None) -> str:
    """The pooled score and interval; over fewer tasks than the leaderboard's, it says over
    how many."""
    if not pooled or pooled.get("value") is None:
        return "-"
    over = f" ({pooled['n_tasks']} of {of_tasks} tasks)" \
        if of_tasks and pooled.get("n_tasks") and pooled["n_tasks"] < of_tasks else ""
    if pooled.get("low") is None:
        return f"{pooled['value']:+.4f}{over} (no interval: {pooled.get('note', 'see notes')})"
    return f"{pooled['value']:+.4f} [{pooled['low']:+.4f}, {pooled['high']:+.4f}]{over}"


def _verdict_matrix(analysis: dict) -> list[Block]:
    """Methods by tasks: each cell the verdict against the (first) baseline and the
    difference to it."""
    baseline = analysis["baseline"]
    tasks = [t for t in analysis["tasks"] if any(c.get("baseline", baseline) == baseline for c in t["comparisons"])]
    if not tasks:
        return []
    methods = list(dict.fromkeys(c["method"] for t in tasks for c in t["comparisons"]
                                 if c.get("baseline", baseline) == baseline))
    rows = []
    for m in methods:
        row = [Code(m)]
        for t in tasks:
            comp = next((c for c in t["comparisons"] if c["method"] == m and c.get("baseline", baseline) == baseline),
                        None)
            row.append(f"{verdict_text(comp)} ({comp['diff']:+.3g})" if comp else "-")
        rows.append(row)
    return [
        Block("p", f"Per task: verdict against `{baseline}` (difference of means in the metric's units)."),
        Block("table", header=["method"] + [t["task"] for t in tasks], rows=rows, align="l" + "l" * len(tasks)),
    ]


def _baselines_text(task: dict) -> str:
    listed = task.get("baselines")
    if not listed or len(listed) == 1:
        return "Baseline: " + (task["baseline"] or "none finished") + "."
    return "Baselines: " + ", ".join(f"{b['display']} (margin {fmt(b['margin_absolute'])})" for b in listed) + "."


def _task_blocks(task: dict, figures: list[str], alpha: float) -> list[Block]:
    metric = task["metric"]
    better = "higher is better" if task["direction"] == "max" else "lower is better"
    headline = ("mean of the 10 best test values during training" if task["headline"] == "best10"
                else "the model selected on validation")
    blocks = [
        Block("h2", task["task"], anchor=task["task"]),
        Block("p", f"Metric: test {metric} ({better}), {headline}. Margin of equivalence: ±{task['margin']}"
                   + (f" (= {fmt(task['margin_absolute'])})" if task["margin_absolute"] is not None else "")
                   + ". " + _baselines_text(task)),
    ]
    baselines = [b["method"] for b in task.get("baselines") or []] or [None]
    for baseline in baselines:
        mine = [c for c in task["comparisons"] if c.get("baseline") == baseline or baseline is None]
        if not mine:
            continue
        rows = []
        for c in mine:
            rows.append([
                Code(c["display"]), _n_cell(c), _pm(c["mean"], c["std"]),
                f"{fmt(c['diff'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]", c["test"],
                fmt_p(c["p"]), fmt_p(c["p_holm"]),
                f"{fmt_p(c['exact_p'])} (min {fmt_p(c['exact_min_p'])})", fmt_p(c["equivalence_p"]),
                verdict_text(c) + _look_text(c), f"{c['diverged']}/{c['failed']}", c.get("procedure", ""),
            ])
        title = "Against the baseline" if len(baselines) == 1 else f"Against {baseline}"
        blocks.append(Block("h3", title))
        blocks.append(Block("table", header=[
            "method", "n (method/baseline)", "mean ± std (tested seeds)", "difference [95% CI]", "test", "p",
            "p (Holm)", "exact p (min attainable)", "equivalence p", "verdict", "diverged/failed", "selection"],
            rows=rows, align="lrrrlrrrrlrl"))
        notes = [f"{c['display']}: {n}" for c in mine for n in c["notes"]]
        if notes:
            blocks.append(Block("list", list(dict.fromkeys(notes))))
    if any(c.get("fragile") for c in task["comparisons"]):
        blocks.append(Block("p", f"Fragile: a verdict whose p lies within a factor of 2 of α = {alpha:g} (a p between "
                                 f"{alpha / 2:g} and {2 * alpha:g}); another machine or batch of seeds may flip it."))
    if task["notes"]:
        blocks.append(Block("list", list(task["notes"])))
    blocks += _tuning_blocks(task)
    extra = list(dict.fromkeys(k for c in task["configs"] for k in c["plugin_metrics"]))
    has_paper = any(c["paper"] for c in task["configs"])
    rows = []
    for c in task["configs"]:
        row = [Code(c["display"]), "✓" if c["selected"] else "", str(c["n"]), _pm(c["mean"], c["std"]),
               fmt(c["val_mean"]), fmt(c["last_mean"]), str(c["diverged"]), str(c["failed"]),
               fmt(c["step_ms"], 3), fmt(c["train_seconds"], 3)]
        if has_paper:
            ours = _ours_in_paper_units(c, metric)
            row.append(_paper_cell(c, metric) + (f" (ours: {ours})" if ours else ""))
        row += [fmt_list(c["plugin_metrics"].get(name)) for name in extra]
        rows.append(row)
    blocks.append(Block("h3", "Configurations on report seeds"))
    blocks.append(Block("table", header=["method", "chosen", "n", "mean ± std", "val mean", "last epoch", "diverged",
                                         "failed", "ms/step", "train s"] + (["paper"] if has_paper else []) + extra,
                        rows=rows, align="lcrrrrrrrr" + ("l" if has_paper else "") + "r" * len(extra)))
    other = [(c, r) for c in task["configs"] for r in c["paper"] if r.get("metric", metric) != metric]
    if other:
        blocks.append(Block("list", [f"{c['display']}: {r['metric']} {_paper(r)} ({r.get('table', '')}, "
                                     f"{r.get('label', '')})" for c, r in other]))
    for name in figures:
        blocks.append(Block("figure", name))
    return blocks


def _sequential_sentence(plan: dict) -> str:
    """The group-sequential rule of a results folder run with ``--seeds MIN:MAX:BATCH``."""
    return (f"Sequential seeds {plan['min']}:{plan['max']}:{plan['batch']}: verdicts are taken at looks of "
            f"{', '.join(map(str, plan['looks']))} seeds, each at the level its {plan['spending']} alpha-spending "
            f"function gives it ({', '.join(f'{a:.3g}' for a in plan['levels'])}, adding up to α = "
            f"{plan['alpha']:g}), with Holm over the task's comparisons not yet decided better or worse; a decided "
            f"comparison keeps its verdict and got no more seeds (see the README, Statistics).")


def _look_text(c: dict) -> str:
    """Where a sequential verdict was reached: `` (look k of L, n seeds)``; empty without looks."""
    if not c.get("looks"):
        return ""
    if c["decided"]:
        return f" (decided at look {c['look']} of {c['looks']}, {c['n_at_decision']} seeds)"
    if c["look"] == c["looks"]:
        return f" (undecided at the last look, {c['n_at_decision']} seeds)"
    return f" (open after look {c['look']} of {c['looks']}, {c['n_at_decision']} seeds: run the same command again)"


def _expected_columns(k: int) -> list[int]:
    """The numbers of trials shown: every n up to 10, else 1, 2, 4, 8, ... and K."""
    return list(range(1, k + 1)) if k <= 10 else sorted({1, k} | {2**i for i in range(1, k.bit_length()) if 2**i < k})


def _tuning_blocks(task: dict) -> list[Block]:
    """A task's tuning: each method's K, lost trials, choice, expected best against the
    number of trials, tuning seconds and edges; every trial's validation mean; the changes
    its journal records."""
    efforts = task.get("tuning") or []
    if not efforts:
        return []
    rows, changes = [], []
    for e in efforts:
        chosen = next((t for t in e["trials"] if t["chosen"]), None)
        rows.append([Code(e["method"]), str(e["k"]), f"{len(e['tuning_seeds'])}", str(e["lost"]),
                     Code(chosen["display"]) if chosen else "none", fmt(chosen["val_mean"]) if chosen else "-",
                     fmt(e["expected_best"][0]["value"]) if e["decided"] and e["expected_best"] else "-",
                     fmt(e["expected_best"][-1]["value"]) if e["decided"] and e["expected_best"] else "-",
                     fmt(e["seconds"], 3),
                     "; ".join(f"{x['hyperparameter']} {x['side']} ({x['value']:g})" for x in e["edges"]) or "-",
                     ", ".join(f"{name} {text}" for name, text in sorted(e["space"].items())) or "-"])
        for change in e["changes"]:
            after = " after report-seed runs existed" if change.get("report_runs_existed") else ""
            what = ("its journal was unreadable, set aside and started anew (its earlier changes are in the file "
                    "set aside)" if change["change"] == "recreated"
                    else f"{change['change']} changed from {change.get('from')} to {change.get('to')}")
            changes.append(f"`{e['method']}`: {what}{after} ({change.get('time', '?')})")
        if e["not_run"]:
            changes.append(f"`{e['method']}`: {e['not_run']} of its {e['k']} trials have no run on every tuning seed "
                           "yet: undecided")
    blocks = [
        Block("h3", "Tuning"),
        Block("p", "Each method's trials ran on the tuning seeds; the trial with the best mean validation value "
                   "(ties: the earlier trial, the default first) is the one tested above, on the report seeds. "
                   "No test value of a trial is used. Expected best: the expected best validation value of n "
                   "trials drawn from the K observed (Dodge et al. 2019; biased at small K), shown for n = 1 and "
                   "n = K; tuning s: training seconds of every trial run."),
        Block("table", header=["method", "K", "tuning seeds", "lost trials", "chosen", "chosen val",
                               "expected best, n = 1", "n = K", "tuning s", "chosen at an edge", "space"],
              rows=rows, align="lrrrlrrrrll"),
    ]
    widest = max(e["k"] for e in efforts)
    columns = _expected_columns(widest)
    curve_rows = [[Code(e["method"])] + [fmt(next((p["value"] for p in e["expected_best"] if p["n"] == n), None))
                                         if n <= e["k"] else "" for n in columns] for e in efforts
                  if e["k"] > 1 and e["decided"]]
    if curve_rows:
        blocks += [Block("p", "Expected best validation value against the number of trials n:"),
                   Block("table", header=["method"] + [f"n = {n}" for n in columns], rows=curve_rows,
                         align="l" + "r" * len(columns))]
    trial_rows = [[Code(e["method"]), str(t["trial"]), Code(t["display"]), fmt(t["val_mean"]),
                   ", ".join(map(str, t["lost_seeds"])) or "-", "✓" if t["chosen"] else "", fmt(t["train_seconds"], 3)]
                  for e in efforts for t in e["trials"]]
    blocks += [Block("p", "Every trial (validation mean over the tuning seeds; lost: the tuning seeds it diverged or "
                          "failed on):"),
               Block("table", header=["method", "trial", "configuration", "val mean", "lost seeds", "chosen",
                                      "train s"], rows=trial_rows, align="lrlrlcr")]
    if changes:
        blocks.append(Block("list", changes))
    return blocks


def _n_cell(c: dict) -> str:
    """Seeds of a comparison: the pairs its paired test used, and the seeds each side
    finished when some had no pair."""
    both = f"{c['n_method']}/{c['n_baseline']}"
    if not c["paired"]:
        return both + " unpaired"
    same = c["n_pairs"] == c["n_method"] == c["n_baseline"]
    return both if same else f"{c['n_pairs']} pairs (of {both})"


def _methods_blocks(analysis: dict) -> list[Block]:
    rows = [[t["task"], Code(c["display"]), Code(c["full_label"])] for t in analysis["tasks"] for c in t["configs"]]
    return [Block("h2", "Methods"),
            Block("p", "A label names the hyperparameters that vary among the configurations of the same "
                       "plugins on a task; every value:"),
            Block("table", header=["task", "method", "hyperparameters"], rows=rows, align="lll")]


# --- Markdown ---------------------------------------------------------------------------------

def _md_inline(piece) -> str:
    if isinstance(piece, Code):
        return "`" + piece.text.replace("`", "'") + "`"
    return str(piece)


def _md_cell(piece) -> str:
    return _md_inline(piece).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], figure_dir: str = "plots") -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            pieces = b.text if isinstance(b.text, list) else [b.text]
            out += ["".join(_md_inline(p) for p in pieces), ""]
        elif b.kind == "list":
            out += [f"- {_md_inline(item)}" for item in b.text] + [""]
        elif b.kind == "table":
            align = {"l": "---", "r": "---:", "c": ":---:"}
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join(align.get(a, "---") for a in b.align.ljust(len(b.header), "l")) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif b.kind == "figure":
            out += [f"![{b.text}]({figure_dir}/{b.text})", ""]
    return "\n".join(out)


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.85rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;white-space:nowrap}th{background:#f4f4f6;cursor:pointer}
td.r{text-align:right;font-variant-numeric:tabular-nums}td.c{text-align:center}
code{background:#f1f1f4;padding:0 .2rem;border-radius:3px;font-size:.85em}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.equivalent{color:#555}
.inconclusive{color:#9a6700}
"""

# Click a column header to sort; numbers sort numerically. Marks the page when it has run,
# which the browser test checks.
SCRIPT = """
(function(){
  function key(cell){var t=cell.textContent.trim();var n=parseFloat(t.replace(/^[^0-9+\\-.]*/,''));
    return isNaN(n)?t.toLowerCase():n;}
  document.querySelectorAll('table').forEach(function(table){
    var head=table.querySelector('tr');if(!head){return;}
    Array.prototype.forEach.call(head.children,function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
          if(typeof x!==typeof y){x=String(x);y=String(y);}return x<y?-dir:x>y?dir:0;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  document.documentElement.setAttribute('data-ready','1');
})();
"""


def _html_inline(piece) -> str:
    if isinstance(piece, Code):
        return f"<code>{html.escape(piece.text)}</code>"
    text = html.escape(str(piece))
    for verdict in VERDICT_MARK.values():
        if text.startswith(verdict):
            return f'<span class="{verdict.split()[0]}">{text}</span>'
    return text


def to_html(blocks: list[Block], title: str, figure_dir: Path | None = None) -> str:
    """One self-contained page: figures inlined as data URIs, no external resource."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            anchor = f' id="{html.escape(_anchor(b.anchor), quote=True)}"' if b.anchor else ""
            out.append(f"<{b.kind}{anchor}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            pieces = b.text if isinstance(b.text, list) else [b.text]
            out.append("<p>" + "".join(_html_inline(p) for p in pieces) + "</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.text) + "</ul>")
        elif b.kind == "table":
            aligns = b.align.ljust(len(b.header), "l")
            out.append("<table><thead><tr>" + "".join(f"<th>{_html_inline(h)}</th>" for h in b.header)
                       + "</tr></thead><tbody>")
            for row in b.rows:
                cells = "".join(f'<td class="{aligns[i]}">{_html_inline(c)}</td>' for i, c in enumerate(row))
                out.append(f"<tr>{cells}</tr>")
            out.append("</tbody></table>")
        elif b.kind == "figure" and figure_dir is not None:
            data = base64.b64encode((figure_dir / b.text).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b.text, quote=True)}" '
                       f'src="data:image/png;base64,{data}"></figure>')
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)


# --- files --------------------------------------------------------------------------------------

def leaderboard_json(analysis: dict) -> str:
    """The leaderboard as JSON: ``leaderboard`` is the (first) baseline's rows,
    ``leaderboards`` every baseline's, ``verdicts`` every per-task comparison."""
    overall = analysis.get("overall") or {}
    by_baseline = analysis.get("overall_by_baseline") or {analysis["baseline"]: overall}
    return json.dumps({
        "generated": analysis["generated"], "versions": version_info(), "baseline": analysis["baseline"],
        "baselines": analysis.get("baselines", [analysis["baseline"]]), "alpha": analysis["alpha"],
        "leaderboard": overall.get("methods", []), "friedman": overall.get("friedman"),
        "leaderboards": {b: (board or {}).get("methods", []) for b, board in by_baseline.items()},
        "variation": analysis.get("variation"),
        "verdicts": [{"task": t["task"], "metric": t["metric"], "method": c["method"], "display": c["display"],
                      "baseline": c.get("baseline", analysis["baseline"]), "verdict": c["verdict"],
                      "fragile": c.get("fragile", False), "diff": c["diff"], "p_holm": c["p_holm"]}
                     for t in analysis["tasks"] for c in t["comparisons"]],
    }, indent=1, allow_nan=False, default=_json_default)


def _json_default(value):
    return str(value)


def strict_json_values(value):
    """NaN and infinities as null so stats.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json_values(v) for v in value]
    return value


def make_plots(analysis: dict, table: pl.DataFrame, records: dict[str, dict], folder: Path,
               journals: list[dict] | None = None) -> dict:
    """Every figure of the report, written under ``folder``; returns where each goes.
    ``journals``: the tuning journals the analysis was given (the same task labels)."""
    from benchsuite.report import plots
    from benchsuite.report.summary import with_config_columns

    placed: dict = {"overall": []}
    overall = analysis.get("overall")
    if overall and overall.get("cd") and len(overall["cd"]["mean_ranks"]) >= 2:
        placed["overall"].append(plots.cd_diagram(overall["cd"], folder))
    if overall:
        name = plots.overhead(overall["methods"], folder)
        if name:
            placed["overall"].append(name)
        for baseline, board in (analysis.get("overall_by_baseline") or {analysis["baseline"]: overall}).items():
            name = plots.forest(board["methods"], baseline, folder) if board else None
            if name:
                placed["overall"].append(name)
    if table.is_empty():
        return placed
    runs = with_config_columns(table, journals).filter(
        (pl.col("status") == STATUS_FINISHED) & (pl.col("role") == "report"))
    curves: dict[tuple, list[list[dict]]] = {}
    for task, config, run_id in runs.sort("seed").select("task", "config", "run_id").iter_rows():
        record = records.get(run_id)
        if record and record.get("curves"):
            curves.setdefault((task, config), []).append(record["curves"])
    for task in analysis["tasks"]:
        figures = []
        chosen = [c for c in task["configs"] if c["selected"]]
        by_label = {c["display"]: curves[(task["task"], c["config"])] for c in chosen
                    if (task["task"], c["config"]) in curves}
        if by_label:
            figures.append(plots.learning_curves(task["task"], task["metric"], by_label, folder))
        tuning_figure = plots.expected_best(task["task"], task["metric"], task.get("tuning", []), folder,
                                             higher=task["direction"] == "max")
        if tuning_figure:
            figures.append(tuning_figure)
        for curve in task["sensitivity"]:
            figures.append(plots.sensitivity(task["task"], task["metric"], curve, folder))
        for c in chosen:
            runs_of = curves.get((task["task"], c["config"]), [])
            if runs_of and plots.has_percentiles(runs_of[0]):
                figures.append(plots.weight_percentiles(task["task"], c["display"], runs_of[0], folder))
        placed[("task", task["task"])] = figures
    return placed


def environment_blocks(table: pl.DataFrame, superseded: list[dict]) -> list[Block]:
    """Which numeric environments and plugin versions produced the runs the statistics
    count, a warning for each task whose runs come from more than one environment (their
    differences may be the machines', not the methods'), and the runs left out because
    newer plugin versions of their configuration superseded them (``analysis["superseded"]``)."""
    from benchsuite.report.summary import current_runs, versions_text

    if table.is_empty() or "environment" not in table.columns:
        return []
    current = current_runs(table)
    counts = current.group_by("environment").len().sort("len", descending=True)
    listed = "; ".join(f"{env} ({n} runs)" for env, n in counts.iter_rows())
    blocks = [Block("p", f"Environments: {listed}.")]
    mixed = current.group_by("task").agg(pl.col("environment").n_unique().alias("n")).filter(pl.col("n") > 1)
    if mixed.height:
        blocks.append(Block("p", "Warning: runs of " + ", ".join(sorted(mixed["task"].to_list())) + " come from "
                                 "several environments; the same run gives other numbers on another machine or "
                                 "thread count, so these comparisons mix machine and method differences."))
    if "versions" in current.columns:
        per_plugin: dict[str, dict[str, int]] = {}
        for versions, n in current.group_by("versions").len().iter_rows():
            for plugin, version in json.loads(versions or "{}").items():
                per_plugin.setdefault(plugin, {}).setdefault(str(version), 0)
                per_plugin[plugin][str(version)] += n
        if per_plugin:
            listed = "; ".join(
                f"{versioned_name(plugin)} "
                + ", ".join(f"{v} ({n} runs)" if len(found) > 1 else v for v, n in sorted(found.items()))
                for plugin, found in sorted(per_plugin.items()))
            blocks.append(Block("p", f"Plugin versions: {listed}."))
        if superseded:
            items = "; ".join(f"{row['runs']} of {row['method']} on {row['task']} ({versions_text(row['versions'])}; "
                              f"newer: {versions_text(row['newer'])})" for row in superseded)
            total = sum(row["runs"] for row in superseded)
            blocks.append(Block("p", f"Left out of every statistic: {total} runs superseded by runs of newer plugin "
                                     f"versions of the same task and configuration (they stay in the results folder "
                                     f"and in results.csv until `benchsuite prune` moves them out): {items}."))
    return blocks


def leaderboard(analysis: dict, fmt_name: str, title: str = "benchsuite leaderboard") -> str:
    if fmt_name == "json":
        return leaderboard_json(strict_json_values(analysis))
    blocks = [Block("h1", title), Block("p", f"Generated {analysis['generated']}; {version_text()}.")]
    blocks += leaderboard_blocks(analysis, level="h2")
    if fmt_name == "md":
        return to_markdown(blocks)
    return to_html(blocks, title)

