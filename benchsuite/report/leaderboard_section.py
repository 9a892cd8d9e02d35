"""The leaderboard section of a report: per baseline, the methods ranked across tasks with
their pooled and across-task estimates, Friedman's test and notes; the A/A check, the
per-task verdict matrix and the count of fragile verdicts (:func:`leaderboard_blocks`).
"""

from __future__ import annotations

import math

from benchsuite.formatting import fmt, fmt_p
from benchsuite.report.markup import VERDICT_MARK, Block, Code, verdict_text

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
