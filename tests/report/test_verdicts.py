"""Verdicts users can trust: edge cases of the analysis, selection among configurations
(tuning itself: tests/runs/test_tuning.py), A/A replicates and seed planning."""

import json
import math

import numpy as np
import pytest

from benchsuite import stats
from benchsuite.cli import main
from benchsuite.execution import engine
from benchsuite.formatting import fmt_p
from benchsuite.report.analysis import analyze, parse_margins
from benchsuite.report.plan import plan, power_paired, seeds_for_power
from benchsuite.report.render import leaderboard
from benchsuite.store import Store, runs_table
from benchsuite.testing import synthetic_record

FAST = ["--task", "digits-mlp", "--epochs", "1", "--subset", "200", "--quiet"]


def _pair(task, seeds, base=0.9, shift=0.02, rng=None, method="l2", hp=None):
    rng = rng or np.random.default_rng(0)
    records = []
    for s in seeds:
        b = base + rng.normal(0, 0.01)
        records.append(synthetic_record(task, "none", s, b))
        records.append(synthetic_record(task, method, s, b + shift + rng.normal(0, 0.002),
                                        hyperparameters=hp or {method: {"lam": 0.1}}))
    return records


def test_a_nan_baseline_run_is_named_and_the_other_pairs_kept():
    records = _pair("t", range(6))
    records[0] = synthetic_record("t", "none", 0, float("nan"))  # finished, but its test value is NaN
    task = analyze(runs_table(records))["tasks"][0]
    assert task["baseline"] == "none" and len(task["comparisons"]) == 1
    comp = task["comparisons"][0]
    assert comp["paired"] and comp["n_pairs"] == 5 and comp["verdict"] == "better"
    assert any("seed 0" in n and "nan" in n and "counted as diverged" in n for n in task["notes"])
    assert next(c for c in task["configs"] if c["method"] == "none")["diverged"] == 1


def test_an_infinite_method_run_is_named():
    records = _pair("t", range(5))
    records[3] = synthetic_record("t", "l2", 1, float("inf"), hyperparameters={"l2": {"lam": 0.1}})
    task = analyze(runs_table(records))["tasks"][0]
    assert any("seed 1" in n and "inf" in n for n in task["notes"])
    assert task["comparisons"][0]["n_pairs"] == 4


def test_a_pooled_difference_inside_the_margin_is_equivalent_not_better():
    """Equivalent on every task (0.0004 better, margin 0.005): the pooled verdict says
    equivalent too, as docs/statistics.md promises of every difference shown inside the margin."""
    rng = np.random.default_rng(4)
    records = []
    for task in ("a", "b", "c"):
        for s in range(10):
            b = 0.9 + rng.normal(0, 0.01)
            records += [synthetic_record(task, "none", s, b),
                        synthetic_record(task, "l2", s, b + 0.0004 + rng.normal(0, 2e-4))]
    result = analyze(runs_table(records))
    assert [c["verdict"] for t in result["tasks"] for c in t["comparisons"]] == ["equivalent"] * 3
    pooled = next(r for r in result["overall"]["methods"] if r["method"] == "l2")["pooled"]
    assert pooled["p_holm"] < 0.05 and pooled["verdict"] == "equivalent"
    table = leaderboard(result, "md")
    assert f"| {fmt_p(pooled['p_holm'])} | equivalent: better by less than the margin |" in table


def test_a_single_configuration_without_validation_values_is_still_tested():
    """Validation only chooses among configurations: one configuration whose runs have no
    validation value is tested on its test values; several such ones cannot be chosen
    among, which a note says (never "no finished run")."""
    base = [0.90, 0.91, 0.89, 0.905, 0.895]
    records = [synthetic_record("t", "none", s, v) for s, v in enumerate(base)]
    for s, v in enumerate(base):
        record = synthetic_record("t", "a", s, v + 0.02)
        record["metrics"] = {"test_accuracy": v + 0.02}  # no val_accuracy
        records.append(record)
    for lam in (0.1, 0.2):
        for s, v in enumerate(base):
            record = synthetic_record("t", "l2", s, v, hyperparameters={"l2": {"lam": lam}})
            record["metrics"] = {"test_accuracy": v}
            records.append(record)
    result = analyze(runs_table(records))
    task = result["tasks"][0]
    assert [(c["method"], c["n_pairs"]) for c in task["comparisons"]] == [("a", 5)]
    assert any(n.startswith("`l2`: none of its 2 configurations has a finite validation value") for n in task["notes"])
    notes = result["overall"]["notes"]
    assert not any("no finished run on any task" in n for n in notes)
    assert any("no configuration could be chosen on any task" in n and n.endswith(": l2") for n in notes)


def test_a_pooled_score_over_some_of_the_tasks_says_over_how_many():
    records = _pair("a", range(5)) + _pair("b", range(5))
    records += [synthetic_record("a", "l1", s, 0.9 + 0.001 * s, hyperparameters={"l1": {"lam": 0.1}})
                for s in range(5)]
    table = leaderboard(analyze(runs_table(records)), "md")
    row = next(line for line in table.splitlines() if "`l1`" in line)
    assert "(1 of 2 tasks)" in row
    assert "of 2 tasks" not in next(line for line in table.splitlines() if "`l2`" in line)


@pytest.mark.parametrize("lost_side, shift, called", [("method", 0.02, "better"), ("none", -0.02, "worse")])
def test_survivors_alone_do_not_decide_a_verdict(lost_side, shift, called):
    """A side that diverged on seeds the other finished: its survivors may be its best
    seeds, so the paired test on them cannot call the method better (or worse when the
    baseline lost them); the verdict is inconclusive, with a note naming the lost seeds."""
    rng = np.random.default_rng(5)
    records = []
    for s in range(8):
        b = 0.9 + rng.normal(0, 0.01)
        lost = s >= 6
        records.append(synthetic_record("t", "none", s, None if lost and lost_side == "none" else b,
                                        status="diverged" if lost and lost_side == "none" else "finished"))
        records.append(synthetic_record("t", "l2", s, None if lost and lost_side == "method" else
                                        b + shift + rng.normal(0, 0.002),
                                        status="diverged" if lost and lost_side == "method" else "finished",
                                        hyperparameters={"l2": {"lam": 0.1}}))
    result = analyze(runs_table(records))
    (comp,) = result["tasks"][0]["comparisons"]
    assert comp["p_holm"] < 0.001 and comp["n_pairs"] == 6
    assert comp["verdict"] == "inconclusive"
    assert any(n.startswith(f"{called} on the seeds both finished") and "lost seed(s) 6, 7" in n for n in comp["notes"])
    assert (comp["lost_method"], comp["lost_baseline"]) == (([6, 7], []) if lost_side == "method" else ([], [6, 7]))
    pooled = next(r for r in result["overall"]["methods"] if r["method"] == "l2")["pooled"]
    assert pooled["p_holm"] < 0.05 and pooled["verdict"] == "inconclusive"
    assert pooled["note"].startswith(f"{called} on the seeds both sides finished")
    # the same numbers without the lost seeds on record: decided as before
    kept = [r for r in records if r["status"] == "finished"]
    assert analyze(runs_table(kept))["tasks"][0]["comparisons"][0]["verdict"] == called


def test_configurations_whose_labels_print_alike_stay_apart():
    """Labels print 6 significant digits: lam=0.1 and lam=0.1000001 both read l2(lam=0.1).
    They are two configurations (n = 5 each, their own means), named apart in full."""
    base = [0.90, 0.91, 0.89, 0.905, 0.895]
    records = [synthetic_record("t", "none", s, v) for s, v in enumerate(base)]
    for lam, shift in ((0.1, 0.02), (0.1000001, -0.05)):
        records += [synthetic_record("t", "l2", s, v + shift, hyperparameters={"l2": {"lam": lam}}, label="l2(lam=0.1)")
                    for s, v in enumerate(base)]
    configs = {c["config"]: c for c in analyze(runs_table(records))["tasks"][0]["configs"]}
    assert configs["l2(lam=0.1) [l2.lam=0.1]"]["n"] == 5
    assert configs["l2(lam=0.1) [l2.lam=0.1]"]["mean"] == pytest.approx(0.92)
    assert configs["l2(lam=0.1) [l2.lam=0.1000001]"]["n"] == 5
    assert configs["l2(lam=0.1) [l2.lam=0.1000001]"]["mean"] == pytest.approx(0.85)


def test_identical_means_share_a_rank():
    rng = np.random.default_rng(1)
    records = []
    for task in ("a", "b", "c"):
        for s in range(4):
            b = 0.9 + rng.normal(0, 0.01)
            value = b + 0.01 + rng.normal(0, 0.003)
            records.append(synthetic_record(task, "none", s, b))
            for m in ("l1", "l2"):  # bit-identical values
                records.append(synthetic_record(task, m, s, value, hyperparameters={m: {"lam": 0.1}}))
    overall = analyze(runs_table(records))["overall"]
    ranks = {r["method"]: r["mean_rank"] for r in overall["methods"]}
    assert ranks["l1"] == ranks["l2"] == 1.5 and ranks["none"] == 3


def _tuned(seeds, k=3, rng=None):
    """l2 over k strengths on ``seeds`` (a grid on the seeds it is tested on); lam=1 is best
    on validation."""
    rng = rng or np.random.default_rng(2)
    records = []
    for s in seeds:
        b = 0.9 + rng.normal(0, 0.01)
        records.append(synthetic_record("t", "none", s, b, val=b))
        for lam in range(k):
            v = b + 0.02 + rng.normal(0, 0.002)
            records.append(synthetic_record("t", "l2", s, v, val=v + (0.05 if lam == 1 else 0),
                                            hyperparameters={"l2": {"lam": float(lam)}}))
    return records


def test_best_of_k_on_the_same_seeds_is_tested_at_alpha_over_k():
    comp = analyze(runs_table(_tuned(range(5))))["tasks"][0]["comparisons"][0]
    assert comp["display"] == "l2(lam=1)" and comp["selected_among"] == 3 and comp["configs_tried"] == 3
    assert comp["p"] == pytest.approx(min(1.0, 3 * comp["p_raw"]))
    assert "p × 3" in comp["procedure"]


def test_a_method_tuned_on_the_test_seeds_gets_no_pooled_interval():
    records = _tuned(range(5))
    rng = np.random.default_rng(5)
    for s in range(5):
        records.append(synthetic_record("t", "wd", s, 0.9 + rng.normal(0, 0.01), hyperparameters={"wd": {"lam": 1.0}}))
    overall = analyze(runs_table(records))["overall"]
    rows = {r["method"]: r for r in overall["methods"]}
    assert rows["l2"]["pooled"]["low"] is None and "no valid pooled interval" in rows["l2"]["pooled"]["note"]
    assert rows["wd"]["pooled"]["low"] is not None and rows["wd"]["pooled"]["p_holm"] is not None
    assert any("optimistic" in n and "l2" in n for n in overall["notes"])


def test_replicate_salts_every_stream_and_the_identity_only_when_set(tiny_task):
    method = engine.Method.of(("none", {}))
    plain = engine.make_run_spec(tiny_task, method, 0)
    salted = engine.make_run_spec(tiny_task, method, 0, replicate="aa")
    assert plain.run_id != salted.run_id
    assert engine.make_run_spec(tiny_task, method, 0, replicate="").run_id == plain.run_id
    a, b = engine.seed_streams(0), engine.seed_streams(0, "aa")
    assert a == engine.seed_streams(0, "") and all(a[k] != b[k] for k in a)
    with pytest.raises(ValueError, match="replicate"):
        engine.make_run_spec(tiny_task, method, 0, replicate="no spaces")


def test_aa_check_from_the_command_line(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(["run", "-p", "none", "--replicate", "aa", "--seeds", "3", *FAST, "--results", str(results)]) == 0
    table = Store(results).table()
    assert sorted(set(table["method"])) == ["none", "none@aa"]
    by_method = {m: table.filter(table["method"] == m).sort("seed")["test_loss"].to_list() for m in ("none", "none@aa")}
    assert by_method["none"] != by_method["none@aa"]  # nothing random in common
    out = ["--out", str(tmp_path / "rep"), "--name", "aa", "--no-plots"]
    assert main(["report", "--results", str(results), *out]) == 0
    text = (tmp_path / "rep" / "aa" / "index.md").read_text()
    assert "A/A check: `none@aa`" in text and "false positive" in text
    assert main(["run", "-p", "none", "--replicate", "a b", *FAST, "--results", str(results)]) == 2


def test_plan_reaches_its_power_in_simulation():
    rng = np.random.default_rng(3)
    records = []
    for s in range(8):
        b = 0.9 + rng.normal(0, 0.01)
        records.append(synthetic_record("t", "none", s, b))
        records.append(synthetic_record("t", "l2", s, b + rng.normal(0, 0.004), hyperparameters={"l2": {"lam": 1}}))
    row = plan(runs_table(records), stats.Margin.parse("0.005"), methods=3, power=0.8)[0]
    assert row["sd_source"].startswith("paired differences") and row["level"] == pytest.approx(0.05 / 3)
    n = row["seeds_needed"]
    assert power_paired(n, 0.005, row["sd"], row["level"]) >= 0.8 > power_paired(n - 1, 0.005, row["sd"], row["level"])
    assert row["seeds_needed_conservative"] >= n
    # simulate the paired t-test at that n with the estimated noise: the power holds
    sims = rng.normal(0.005, row["sd"], size=(4000, n))
    p = [stats.paired_t(d)[0] for d in sims[:1500]]
    assert np.mean(np.array(p) < row["level"]) == pytest.approx(0.8, abs=0.05)
    assert seeds_for_power(0.0, 1.0, 0.05, 0.8) is None


def test_plan_command(tmp_path, capsys):
    store = Store(tmp_path / "res")
    for r in _pair("t", range(5)):
        store.put(r)
    assert main(["plan", "--results", str(tmp_path / "res"), "--effect", "1%", "--methods", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["task"] == "t" and rows[0]["seeds_needed"] >= 2 and math.isclose(rows[0]["level"], 0.025)
    assert main(["plan", "--results", str(tmp_path / "res"), "--effect", "0.01"]) == 0
    assert "seeds needed" in capsys.readouterr().out
    assert main(["plan", "--results", str(tmp_path / "empty"), "--effect", "1%"]) == 2
    assert main(["plan", "--results", str(tmp_path / "res"), "--effect", "abc"]) == 2


def test_margins_still_parse():
    assert parse_margins(["accuracy=0"])["accuracy"].value == 0
