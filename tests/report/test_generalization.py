"""Verdicts that generalize: the direction of P(better), standardized scores that no near-zero
baseline can inflate, the random-effects estimate for another task with its prediction
interval and the "mixed" reading, fragile verdicts, and several baselines in one report."""

import json

import numpy as np
import pytest
from scipy import stats as st

from benchsuite import stats
from benchsuite.cli import main
from benchsuite.report.analysis import analyze, parse_baselines
from benchsuite.report.markup import verdict_text
from benchsuite.report.render import leaderboard, leaderboard_json
from benchsuite.store import Store, runs_table
from benchsuite.testing import synthetic_record


def _task(task, effect, *, metric="accuracy", base=0.8, sd=0.01, seeds=range(6), method="l2", rng=None,
          noise=0.002, baseline="none"):
    """A method whose value is the baseline's plus ``effect`` (in the metric's units) on
    every seed, up to a small noise."""
    rng = rng if rng is not None else np.random.default_rng(0)
    records = []
    for s in seeds:
        b = base + rng.normal(0, sd)
        records.append(synthetic_record(task, baseline, s, b, metric=metric))
        records.append(synthetic_record(task, method, s, b + effect + rng.normal(0, noise), metric=metric,
                                        hyperparameters={method: {"lam": 0.1}} if method != "none" else {}))
    return records


def _row(result, method, baseline=None):
    board = result["overall_by_baseline"][baseline] if baseline else result["overall"]
    return next(r for r in board["methods"] if r["method"] == method)


# --- 1. P(better) in the metric's direction ------------------------------------------------

def test_probability_of_improvement_follows_each_tasks_direction():
    low, high = [1.0, 2.0], [3.0, 4.0]
    assert stats.probability_of_improvement([high], [low], True) == 1.0
    assert stats.probability_of_improvement([low], [high], False) == 1.0  # lower MSE beats higher
    assert stats.probability_of_improvement([high, low], [low, high], [True, False]) == 1.0
    assert stats.probability_of_improvement([high, high], [low, low], [True, False]) == 0.5
    with pytest.raises(ValueError, match="2 directions for 1 tasks"):
        stats.probability_of_improvement([high], [low], [True, False])


def test_an_mse_task_where_l2_always_wins_has_p_better_one_in_every_aggregate(tmp_path):
    """Lower is better: l2's MSE is below the baseline's on every seed, so P(better than
    none) is 1.0 in the leaderboard's JSON, its Markdown and the report's stats.json."""
    records = _task("mse-task", -0.2, metric="mse", base=1.0, sd=0.05)
    store = Store(tmp_path / "results")
    for r in records:
        store.put(r)
    result = analyze(store.table())
    assert _row(result, "l2")["prob_improvement"]["value"] == 1.0
    board = json.loads(leaderboard_json(result))
    assert next(r for r in board["leaderboard"] if r["method"] == "l2")["prob_improvement"]["value"] == 1.0
    assert "| 1.00 |" in leaderboard(result, "md")
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"),
                 "--name", "r"]) == 0
    written = json.loads((tmp_path / "reports" / "r" / "stats.json").read_text())
    assert next(r for r in written["overall"]["methods"] if r["method"] == "l2")["prob_improvement"]["value"] == 1.0
    # and on a higher-is-better task where l2 always loses it is 0.0
    worse = analyze(runs_table(_task("acc-task", -0.05)))
    assert _row(worse, "l2")["prob_improvement"]["value"] == 0.0


# --- 2. across tasks: random effects, prediction interval, "mixed" --------------------------

def test_random_effects_matches_statsmodels_with_hartung_knapp_and_the_prediction_interval():
    from statsmodels.stats.meta_analysis import combine_effects

    y, v = np.array([0.5, 0.1, 0.3, 0.9]), np.array([0.01, 0.02, 0.015, 0.03])
    out = stats.random_effects(y, v, margin=0.1)
    res = combine_effects(y, v, method_re="iterated", use_t=True)
    se = max(res.sd_eff_w_re_hksj, res.sd_eff_w_re)
    assert out["value"] == pytest.approx(res.mean_effect_re) and out["tau2"] == pytest.approx(res.tau2)
    assert (out["low"], out["high"]) == pytest.approx(tuple(res.mean_effect_re + np.array([-1, 1]) * st.t.ppf(.975, 3)
                                                              * se))
    spread = st.t.ppf(0.975, 2) * np.sqrt(res.tau2 + se**2)
    assert (out["prediction_low"], out["prediction_high"]) == pytest.approx(
        (res.mean_effect_re - spread, res.mean_effect_re + spread))
    assert out["p"] == pytest.approx(2 * st.t.sf(abs(res.mean_effect_re) / se, 3))
    # Paule-Mandel's tau^2 makes the generalized Q equal its degrees of freedom
    w = 1 / (v + out["tau2"])
    mu = np.sum(w * y) / np.sum(w)
    assert np.sum(w * (y - mu) ** 2) == pytest.approx(len(y) - 1, rel=1e-4)
    two = stats.random_effects([0.2, 0.3], [0.01, 0.01])
    assert two["prediction_low"] is None and "at least 3" in two["note"]
    assert stats.random_effects([0.2], [0.01])["low"] is None
    # a task where the method equals the baseline on every seed has nothing to weight it by
    same = stats.random_effects([0.5, 0.1, 0.3, 0.0], [0.01, 0.02, 0.015, 0.0])
    assert same["left_out"] == 1 and same["n_tasks"] == 3 and "left out" in same["note"]
    assert same["value"] == pytest.approx(stats.random_effects([0.5, 0.1, 0.3], [0.01, 0.02, 0.015])["value"])


def test_effects_of_plus_2_minus_2_plus_2_percent_are_mixed_never_plainly_better():
    """Three tasks where the method is 2% better, 2% worse and 2% better than the baseline:
    the pooled score over these tasks is positive, but neither it nor the estimate for
    another task reads better; both read mixed, and the prediction interval spans both
    directions."""
    rng = np.random.default_rng(1)
    records = []
    for task, effect in (("a", 0.016), ("b", -0.016), ("c", 0.016)):  # 2% of a 0.8 baseline
        records += _task(task, effect, rng=rng, seeds=range(8))
    result = analyze(runs_table(records))
    verdicts = [c["verdict"] for t in result["tasks"] for c in t["comparisons"]]
    assert verdicts == ["better", "worse", "better"]
    row = _row(result, "l2")
    assert row["pooled"]["value"] > 0 and row["pooled"]["verdict"] == "mixed"
    across = row["across"]
    assert across["verdict"] == "mixed" and across["tau2"] > 0 and across["i2"] > 0.5
    assert across["prediction_low"] < 0 < across["prediction_high"]
    text = leaderboard(result, "md")
    assert "mixed ▲▼" in text and "prediction interval" in text and "Another task" in text
    assert "better ▲" not in next(line for line in text.splitlines() if "`l2`" in line)


def test_a_method_better_on_every_task_alike_reads_better_across_tasks():
    rng = np.random.default_rng(2)
    records = []
    for task in "abcdef":
        records += _task(task, 0.02, rng=rng, seeds=range(8))
    row = _row(analyze(runs_table(records)), "l2")
    assert row["pooled"]["verdict"] == "better" and row["across"]["verdict"] == "better"
    assert row["across"]["prediction_low"] > 0


def test_across_task_reading_rules():
    read = stats.across_task_reading
    none = {"better": 0, "worse": 0}
    assert read(p_holm=0.001, value=1.0, equivalence_p=None, task_verdicts={"better": 2, "worse": 1}) == "mixed"
    assert read(p_holm=0.001, value=1.0, equivalence_p=None, task_verdicts=none) == "better"
    # significant on average, but the tasks disagree and a new task may be worse by more than the margin
    assert read(p_holm=0.001, value=1.0, equivalence_p=None, task_verdicts=none, prediction=(-0.5, 2.5),
                margin=0.1, tau2=0.2, heterogeneity_p=0.01) == "mixed"
    # the same prediction interval, wide only because there are few tasks: the estimate decides
    assert read(p_holm=0.001, value=1.0, equivalence_p=None, task_verdicts=none, prediction=(-0.5, 2.5),
                margin=0.1, tau2=0.0, heterogeneity_p=0.9) == "better"
    assert read(p_holm=0.001, value=1.0, equivalence_p=None, task_verdicts=none, prediction=(-0.5, 2.5),
                margin=0.1, tau2=0.2, heterogeneity_p=0.4) == "better"
    # the tasks disagree beyond the margin on both sides of an estimate that is not significant
    assert read(p_holm=0.5, value=0.1, equivalence_p=None, task_verdicts=none, prediction=(-1, 1), margin=0.1,
                tau2=0.3, heterogeneity_p=0.02) == "mixed"
    assert read(p_holm=0.5, value=0.1, equivalence_p=None, task_verdicts=none, prediction=(-1, 1), margin=0.1,
                tau2=0.0, heterogeneity_p=0.9) == "inconclusive"
    assert read(p_holm=0.001, value=-0.01, equivalence_p=0.01, task_verdicts=none) == "equivalent"


def test_two_paired_seeds_still_give_an_effect():
    """With 2 pairs the sides' correlation is +-1 whatever the data: it does not shrink the
    degrees of freedom to nothing (Hedges' correction would be 0 and the effect vanish)."""
    effect = stats.standardized_effect({0: 0.90, 1: 0.92}, {0: 0.85, 1: 0.86}, True)
    assert effect["effect"] > 0 and effect["variance"] > 0 and effect["correction"] == pytest.approx(1 - 3 / 7)


# --- 3. a bounded per-task scale -----------------------------------------------------------

def test_a_task_whose_baseline_mse_is_1e4_no_longer_decides_the_pooled_verdict_alone():
    """Two accuracy tasks where l2 is better by 1% (two seed-to-seed deviations) and one
    regression task whose baseline MSE is 1e-4, where l2's MSE is higher by 1e-5, a third
    of that task's seed-to-seed deviation and not significant there: relative to the
    baseline's mean that is -10%, which made the old pooled score negative on its own; in
    units of each task's seed-to-seed spread the pooled verdict follows the tasks as a
    whole."""
    rng = np.random.default_rng(7)
    records = []
    for task in ("acc-1", "acc-2"):
        records += _task(task, 0.008, sd=0.004, noise=0.002, rng=rng, seeds=range(10))
    records += _task("reg", 1e-5, metric="mse", base=1e-4, sd=3e-5, noise=2e-5, rng=rng, seeds=range(10))
    result = analyze(runs_table(records))
    assert [c["verdict"] for t in result["tasks"] for c in t["comparisons"]] == ["better", "better", "inconclusive"]
    relative = [(1 if t["direction"] == "max" else -1) * c["diff"] / abs(np.mean(list(c["values_baseline"].values())))
                for t in result["tasks"] for c in t["comparisons"]]
    assert np.mean(relative) < 0  # on the old scale the regression task alone made it worse
    row = _row(result, "l2")
    effects = [t["effect"] for t in row["pooled"]["per_task"]]
    assert effects[2] < 0 < row["pooled"]["value"] and row["pooled"]["verdict"] == "better"
    assert abs(effects[2]) < min(effects[:2])


# --- 5. fragile verdicts -------------------------------------------------------------------

@pytest.mark.parametrize(("verdict", "p_holm", "equivalence_p", "expected"), [
    ("better", 0.03, 1.0, True), ("better", 0.001, 1.0, False), ("worse", 0.025, 1.0, True),
    ("inconclusive", 0.07, 0.5, True), ("inconclusive", 0.2, 0.5, False), ("inconclusive", 0.5, 0.09, True),
    ("equivalent", 0.5, 0.04, True), ("equivalent", 0.5, 0.001, False), ("better", 0.02, 1.0, False),
])
def test_a_verdict_within_a_factor_of_2_of_alpha_is_fragile(verdict, p_holm, equivalence_p, expected):
    assert stats.fragile(verdict, p_holm, equivalence_p, 0.05) is expected


def test_the_report_marks_fragile_verdicts():
    rng = np.random.default_rng(11)
    for _attempt in range(200):  # a borderline effect: find data whose Holm p lands in [alpha / 2, 2 alpha)
        result = analyze(runs_table(_task("t", 0.004, rng=rng, noise=0.006, seeds=range(5))))
        (comp,) = result["tasks"][0]["comparisons"]
        if 0.025 <= comp["p_holm"] < 0.1:
            break
    assert comp["fragile"] and "(fragile)" in verdict_text(comp)
    from benchsuite.report.leaderboard_section import fragile_counts
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import report_blocks
    text = to_markdown(report_blocks(result, "r"))
    assert "Fragile: a verdict whose p lies within a factor of 2" in text
    assert fragile_counts(result) == {"verdicts": 1, "fragile": 1, "by_verdict": {comp["verdict"]: 1}}
    assert "Fragile per-task verdicts (a p within a factor of 2 of α = 0.05): 1 of 1" in text


# --- 7. several baselines in one report ----------------------------------------------------

def _three_way(rng):
    records = []
    for task in ("a", "b", "c"):
        for s in range(6):
            b = 0.8 + rng.normal(0, 0.01)
            records.append(synthetic_record(task, "none", s, b))
            records.append(synthetic_record(task, "l2", s, b + 0.02 + rng.normal(0, 0.002),
                                            hyperparameters={"l2": {"lam": 0.1}}))
            records.append(synthetic_record(task, "wd", s, b + 0.021 + rng.normal(0, 0.002),
                                            hyperparameters={"wd": {"lam": 0.1}}))
            records.append(synthetic_record(task, "wc", s, b + 0.03 + rng.normal(0, 0.002),
                                            hyperparameters={"wc": {"lam": 0.1}}))
    return records


def test_several_baselines_share_one_holm_family_and_get_a_table_each():
    result = analyze(runs_table(_three_way(np.random.default_rng(3))), baseline="none,l2")
    assert result["baselines"] == ["none", "l2"] and set(result["overall_by_baseline"]) == {"none", "l2"}
    task = result["tasks"][0]
    pairs = {(c["baseline"], c["method"]): c for c in task["comparisons"]}
    assert set(pairs) == {("none", "l2"), ("none", "wd"), ("none", "wc"), ("l2", "none"), ("l2", "wd"),
                          ("l2", "wc")}
    # one family of the 5 distinct tests (none against l2 is l2 against none, reversed)
    originals = [c for c in task["comparisons"] if not c["mirror"]]
    assert len(originals) == 5
    assert [c["p_holm"] for c in originals] == pytest.approx(stats.holm([c["p"] for c in originals]))
    mirror = pairs[("l2", "none")]
    assert mirror["mirror"] and mirror["p_holm"] == pairs[("none", "l2")]["p_holm"]
    assert mirror["verdict"] == "worse" and pairs[("none", "l2")]["verdict"] == "better"
    assert pairs[("l2", "wc")]["verdict"] == "better"
    # one leaderboard table per baseline; Holm over both baselines' pooled tests together
    text = leaderboard(result, "md")
    assert "### Against none" in text and "### Against l2" in text and "P(better than l2)" in text
    pooled = [r["pooled"] for b in ("none", "l2") for r in result["overall_by_baseline"][b]["methods"]
              if r["pooled"] and r["pooled"].get("p") is not None]
    assert len(pooled) == 6
    assert [p["p_holm"] for p in pooled] == pytest.approx(stats.holm([p["p"] for p in pooled]))


def test_a_baseline_list_on_the_command_line(tmp_path, capsys):
    store = Store(tmp_path / "results")
    for r in _three_way(np.random.default_rng(4)):
        store.put(r)
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"),
                 "--name", "r", "--baseline", "none,l2,wd"]) == 0
    text = (tmp_path / "reports" / "r" / "index.md").read_text()
    assert text.count("### Against ") >= 3 + 3  # per task and in the leaderboard
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"),
                 "--name", "r", "--baseline", "none,,l2"]) == 2
    assert "--baseline" in capsys.readouterr().err
    with pytest.raises(ValueError, match="named twice"):
        parse_baselines("none,l2,none")


def test_no_grid_advice_for_a_method_with_one_configuration_against_a_swept_baseline():
    """With `--baseline l2` where l2 was chosen among 3 values on the same seeds, none (one
    configuration) is not said to have been chosen among 3: its note names the baseline."""
    rng = np.random.default_rng(5)
    records = []
    for task in ("a", "b"):
        for s in range(6):
            b = 0.8 + rng.normal(0, 0.01)
            records.append(synthetic_record(task, "none", s, b))
            for lam in (0.01, 0.1, 1.0):
                records.append(synthetic_record(task, "l2", s, b + 0.01 + rng.normal(0, 0.002),
                                                val=b + lam / 100, hyperparameters={"l2": {"lam": lam}}))
    result = analyze(runs_table(records), baseline="l2")
    note = _row(result, "none")["pooled"]["note"]
    assert "its baseline `l2` was chosen among up to 3" in note and "it was chosen" not in note
    row = next(line for line in leaderboard(result, "md").splitlines() if "| `none` |" in line)
    assert "untuned (baseline: grid of 3)" in row and "confirm" not in row
    comp = next(c for c in result["tasks"][0]["comparisons"] if c["method"] == "none")
    assert comp["procedure"] == "one configuration; baseline best of 3 on validation, tested on the same seeds (p × 3)"
    assert any("chosen among 3 configuration pairs (the method's choices times the baseline's)" in n
               for n in comp["notes"])


def test_significant_inside_the_margin_reads_as_both():
    rng = np.random.default_rng(6)
    result = analyze(runs_table(_task("t", -0.002, rng=rng, noise=0.0003, seeds=range(10))))
    (comp,) = result["tasks"][0]["comparisons"]
    assert comp["verdict"] == "equivalent" and comp["p_holm"] < 0.05
    assert comp["significant_within_margin"] == "worse"
    assert verdict_text(comp) == "equivalent: worse by less than the margin"


def test_sequential_looks_with_several_baselines():
    """Under sequential seeds the comparisons against every baseline share each look's Holm
    family; a mirrored row carries the look and the seeds of the test it mirrors."""
    from benchsuite.runs import sequential as seq

    rng = np.random.default_rng(8)
    records = []
    for s in range(20):
        b = 0.8 + rng.normal(0, 0.01)
        records.append(synthetic_record("t", "none", s, b))
        records.append(synthetic_record("t", "l2", s, b + 0.03 + rng.normal(0, 0.002),
                                        hyperparameters={"l2": {"lam": 0.1}}))
        records.append(synthetic_record("t", "wd", s, b + 0.0305 + rng.normal(0, 0.004),
                                        hyperparameters={"wd": {"lam": 0.1}}))
    plan = seq.make_plan((5, 20, 5))
    result = analyze(runs_table(records), baseline="none,l2", sequential=plan)
    pairs = {(c["baseline"], c["method"]): c for c in result["tasks"][0]["comparisons"]}
    assert pairs[("none", "l2")]["verdict"] == "better" and pairs[("none", "l2")]["look"] == 1
    mirror = pairs[("l2", "none")]
    assert mirror["mirror"] and mirror["look"] == 1 and mirror["n_tested"] == 5 and mirror["verdict"] == "worse"
    # l2 and wd differ by far less than the margin: equivalent or still open, never decided on all 20 seeds at once
    assert pairs[("l2", "wd")]["looks"] == 4 and pairs[("l2", "wd")]["verdict"] in ("equivalent", "inconclusive")
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import report_blocks
    text = to_markdown(report_blocks(result, "r"))
    assert "### Against none" in text and "### Against l2" in text
    assert text.count("(decided at look 1 of 4, 5 seeds)") >= 2  # l2 against none, and its mirror
