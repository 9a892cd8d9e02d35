"""One task's section of a report (:func:`task_blocks`): its comparisons with each baseline
(tests, verdicts, sequential looks), its notes, its tuning studies, and every configuration
run on report seeds, with paper reference numbers where a ``*.paper.toml`` gives them.
"""

from __future__ import annotations

from benchsuite.formatting import fmt, fmt_list, fmt_p
from benchsuite.report.markup import Block, Code, verdict_text


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


def _baselines_text(task: dict) -> str:
    listed = task.get("baselines")
    if not listed or len(listed) == 1:
        return "Baseline: " + (task["baseline"] or "none finished") + "."
    return "Baselines: " + ", ".join(f"{b['display']} (margin {fmt(b['margin_absolute'])})" for b in listed) + "."


def task_blocks(task: dict, figures: list[str], alpha: float) -> list[Block]:
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
