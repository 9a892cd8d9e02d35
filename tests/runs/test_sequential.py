"""Sequential seeds (`run --seeds MIN:MAX[:BATCH]`): alpha spending, looks, the decision
rule, the runner that adds seeds only to undecided comparisons (and resumes), the plan kept
in the results folder, and a small A/A check of the false-verdict rate."""

import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as st

from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.report.calibration import SequentialDesign, simulate_sequential, standard_error
from benchsuite.runs import sequential
from benchsuite.stats import holm
from benchsuite.store import Store

POCOCK_5_20 = sequential.Plan(5, 20, 5)


# --- spending and looks --------------------------------------------------------------------

@pytest.mark.parametrize("spending", sequential.SPENDING)
@pytest.mark.parametrize("sizes", [[5, 10, 15, 20], [5, 8, 11, 14, 17, 20], [3, 7, 11, 15, 17], [2, 40]])
def test_levels_are_positive_and_add_up_to_alpha(spending, sizes):
    levels = sequential.levels(sizes, 0.05, spending)
    assert len(levels) == len(sizes) and all(a > 0 for a in levels)
    assert math.fsum(levels) == pytest.approx(0.05, abs=1e-12)


@pytest.mark.parametrize("spending", sequential.SPENDING)
def test_spending_grows_from_0_to_alpha(spending):
    ts = np.linspace(0, 1, 101)
    spent = [sequential.spent(t, 0.05, spending) for t in ts]
    assert spent[0] == 0 and spent[-1] == pytest.approx(0.05, abs=1e-12)
    assert all(b > a for a, b in zip(spent, spent[1:]))


def test_spending_functions_match_their_formulas_and_published_values():
    # Pocock type: alpha ln(1 + (e - 1) t); at t = 0.5, 0.05 ln(1.859) = 0.0310
    assert sequential.spent(0.5, 0.05, "pocock") == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2), rel=1e-12)
    assert sequential.spent(0.5, 0.05, "pocock") == pytest.approx(0.0310, abs=5e-5)
    # O'Brien-Fleming type: 2 - 2 Phi(1.95996 / sqrt(t)); 0.0056 at t = 0.5 (Lan & DeMets 1983)
    assert sequential.spent(0.5, 0.05, "obrien-fleming") == pytest.approx(
        2 - 2 * st.norm.cdf(st.norm.ppf(0.975) / math.sqrt(0.5)), rel=1e-9)
    assert sequential.spent(0.5, 0.05, "obrien-fleming") == pytest.approx(0.0056, abs=5e-5)
    assert sequential.spent(0.25, 0.05, "obrien-fleming") == pytest.approx(8.9e-5, abs=1e-6)
    # OBF spends little early, Pocock nearly evenly
    assert POCOCK_5_20.levels()[0] == pytest.approx(0.01787, abs=1e-5)
    assert sequential.Plan(5, 20, 5, "obrien-fleming").levels()[0] < 1e-4
    with pytest.raises(ValueError, match="spending"):
        sequential.spent(0.5, 0.05, "haybittle")


@pytest.mark.parametrize("text, schedule, looks", [
    ("5:20", (5, 20, 5), [5, 10, 15, 20]), ("5:20:5", (5, 20, 5), [5, 10, 15, 20]),
    ("5:22:5", (5, 22, 5), [5, 10, 15, 20, 22]), ("3:10:2", (3, 10, 2), [3, 5, 7, 9, 10]),
    (" 4:6 ", (4, 6, 4), [4, 6]),
])
def test_a_schedule_reads_min_max_and_batch(text, schedule, looks):
    assert sequential.parse_schedule(text) == schedule
    assert sequential.look_sizes(*schedule) == looks


def test_a_plain_count_is_no_schedule():
    assert sequential.parse_schedule("5") is None


@pytest.mark.parametrize("text, message", [
    ("20:5", "MAX must be larger than MIN"), ("5:5", "MAX must be larger than MIN"),
    ("5:20:0", "BATCH must be at least 1"), ("1:20", "MIN must be at least 2"),
    ("5:x", "expected MIN:MAX or MIN:MAX:BATCH"), ("a:b", "expected MIN:MAX"), ("5:20:5:1", "expected MIN:MAX"),
    ("5:-20", "expected MIN:MAX"), ("5:20000", "at most 10000"), ("five", "expected a positive integer"),
])
def test_bad_seeds_exit_2_with_what_is_wrong(text, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--plugin", "l2", "--task", "toy-regression", "--seeds", text, "--dry-run"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_spending_without_sequential_seeds_is_refused(capsys):
    assert main(["run", "--plugin", "l2", "--task", "toy-regression", "--seeds", "5", "--spending", "pocock",
                 "--dry-run"]) == 2
    assert "--spending" in capsys.readouterr().err


# --- the rule -------------------------------------------------------------------------------

N_STD = np.array([-1.2, -0.4, 0.1, 0.5, 1.0])
N_STD = (N_STD - N_STD.mean()) / N_STD.std(ddof=1)  # mean 0, sd 1: a paired t of mean / (1 / sqrt(n))


def diffs_with_p(p: float) -> np.ndarray:
    """Five per-seed differences whose two-sided paired t-test gives ``p``."""
    return N_STD + st.t.isf(p / 2, 4) / math.sqrt(5)


def sides_from(*diffs) -> tuple[dict, dict]:
    """A method's and the baseline's values by seed whose differences are ``diffs`` (the
    looks' chunks, in order)."""
    d = np.concatenate(diffs)
    base = {s: 10.0 + 0.1 * s for s in range(len(d))}
    return {s: base[s] + float(d[s]) for s in base}, base


def test_a_comparison_decided_at_look_1_keeps_its_verdict_and_an_open_one_gets_the_next_look():
    strong = sides_from(diffs_with_p(1e-4), -diffs_with_p(1e-6))  # its later seeds say the opposite
    late = sides_from(diffs_with_p(0.5), diffs_with_p(1e-6))
    first, second = sequential.decide([strong, late], sequential.Plan(5, 10, 5), True, 0.0)
    assert (first.verdict, first.look, first.n_at_decision, first.decided) == ("better", 1, 5, True)
    assert first.n_pairs == 5 and first.p == pytest.approx(1e-4, rel=1e-6)
    assert (second.verdict, second.look, second.looks, second.n_at_decision) == ("better", 2, 2, 10)
    assert second.alpha_look == pytest.approx(sequential.Plan(5, 10, 5).levels()[1])


def test_a_look_is_taken_only_when_every_open_comparison_has_its_seeds():
    plan = sequential.Plan(5, 10, 5)
    grown = sides_from(diffs_with_p(0.05), diffs_with_p(0.05))  # open at look 1, better on all 10 seeds
    waiting = sides_from(diffs_with_p(0.6))  # seeds 0-4 only: its look 2 is not stored yet
    first, second = sequential.decide([grown, waiting], plan, True, 0.0)
    assert (first.look, first.decided, second.look, second.decided) == (1, False, 1, False)
    assert sequential.next_look_size(first.decided, first.look, plan) == 10
    assert sequential.next_look_size(True, 1, plan) is None and sequential.next_look_size(False, 2, plan) is None
    # seeds run but lost (diverged, failed) count as stored: the look is taken on the others
    attempted = [(set(range(10)), set(range(10)))] * 2
    first, second = sequential.decide([grown, (waiting[0], grown[1])], plan, True, 0.0, attempted=attempted)
    assert (first.look, first.verdict, second.look, second.n_pairs) == (2, "better", 2, 5)


def test_holm_within_a_look_steps_down_at_the_looks_level():
    level = POCOCK_5_20.levels()[0]  # 0.0179
    # 0.015 < level but 2 x 0.015 > level: Bonferroni would keep it, Holm's second step rejects it
    sides = [sides_from(diffs_with_p(0.001)), sides_from(diffs_with_p(0.015)), sides_from(diffs_with_p(0.6))]
    verdicts = sequential.decide(sides, POCOCK_5_20, True, 0.0)
    assert [v.verdict for v in verdicts] == ["better", "inconclusive", "inconclusive"]
    assert [v.p_holm for v in verdicts] == pytest.approx(holm([0.001, 0.015, 0.6]), rel=1e-6)
    two = sequential.decide(sides[:2], POCOCK_5_20, True, 0.0)
    assert [v.verdict for v in two] == ["better", "better"] and two[1].p_holm == pytest.approx(0.015, rel=1e-6)
    assert 2 * 0.015 > level > 0.015


def test_a_comparison_decided_equivalent_stays_in_holms_family_with_p_1():
    plan = sequential.Plan(5, 10, 5)
    base = {s: 10.0 + 0.1 * s for s in range(10)}
    equal = ({s: v + 1e-4 * (s % 3) for s, v in base.items()}, base)  # inside a margin of 0.01 from look 1
    late = sides_from(diffs_with_p(0.5), diffs_with_p(0.004))
    first, second = sequential.decide([equal, late], plan, True, margin=0.01)
    assert (first.verdict, first.look) == ("equivalent", 1)
    assert second.look == 2 and second.p_holm == pytest.approx(min(1.0, 2 * second.p), rel=1e-9)


def test_worse_is_decided_as_better_is_and_untestable_looks_count_as_p_1():
    worse = sides_from(-diffs_with_p(1e-4))
    lonely = ({0: 1.0}, {s: 1.0 for s in range(5)})  # one finished seed: no test at any look
    verdicts = sequential.decide([worse, lonely], POCOCK_5_20, True, 0.0,
                                 attempted=[(set(range(5)), set(range(5)))] * 2)
    assert verdicts[0].verdict == "worse" and verdicts[0].p_holm == pytest.approx(2e-4, rel=1e-6)
    assert verdicts[1] is None


# --- the command ------------------------------------------------------------------------------

MATRIX = """seeds = "5:10"

[[runs]]
tasks = ["toy-regression"]
plugins = ["l2"]
set = ["l2.lam=1"]

[[runs]]
tasks = ["toy-regression"]
plugins = ["none"]
replicate = "aa"
"""


def seeds_by_method(results) -> dict[str, set[int]]:
    out = {}
    for record in Store(results).records():
        replicate = record.get("replicate")
        out.setdefault(record["method"] + (f"@{replicate}" if replicate else ""), set()).add(record["seed"])
    return out


@pytest.fixture(scope="module")
def sequential_folder(tmp_path_factory):
    """A matrix run with seeds = "5:10": l2 at lam = 1 (far worse than the baseline) and an
    A/A replicate of the baseline; both run 5 seeds, then only the undecided one grows."""
    root = tmp_path_factory.mktemp("sequential")
    (root / "m.toml").write_text(MATRIX)
    assert main(["run", "--matrix", str(root / "m.toml"), "--epochs", "3", "-q", "--results", str(root / "r")]) == 0
    return root


def test_only_undecided_comparisons_and_their_baseline_get_more_seeds(sequential_folder):
    seeds = seeds_by_method(sequential_folder / "r")
    assert seeds == {"l2": set(range(5)), "none": set(range(10)), "none@aa": set(range(10))}


def test_the_plan_is_written_and_the_report_applies_it_without_being_told(sequential_folder, capsys):
    plan = json.loads((sequential_folder / "r" / sequential.PLAN_FILE).read_text())
    assert {k: plan[k] for k in sequential.PLAN_KEYS} == {"min": 5, "max": 10, "batch": 5, "spending": "pocock",
                                                          "alpha": 0.05}
    assert main(["report", "--results", str(sequential_folder / "r"), "--out", str(sequential_folder / "rep"),
                 "--name", "x", "--no-plots"]) == 0
    stats = json.loads((sequential_folder / "rep" / "x" / "stats.json").read_text())
    assert stats["sequential"]["looks"] == [5, 10]
    comps = {c["method"]: c for c in stats["tasks"][0]["comparisons"]}
    assert (comps["l2"]["verdict"], comps["l2"]["look"], comps["l2"]["n_at_decision"]) == ("worse", 1, 5)
    assert comps["none@aa"]["look"] == 2 and comps["none@aa"]["seeds_baseline"] == list(range(10))
    assert comps["l2"]["seeds_baseline"] == list(range(5))  # the values beside a test are its look's
    text = (sequential_folder / "rep" / "x" / "index.md").read_text()
    assert "worse ▼ (decided at look 1 of 2, 5 seeds)" in text and "Sequential seeds 5:10:5" in text


def test_a_rerun_resumes_and_never_redoes_a_finished_run(sequential_folder, tmp_path, capsys):
    results = tmp_path / "r"
    shutil.copytree(sequential_folder / "r", results)
    store = Store(results)
    by_seed = {(r["method"], r.get("replicate") or "", r["seed"]): r["run_id"] for r in store.records()}
    # killed in the middle of the second look: three of its runs were never stored
    lost = [by_seed[("none", "aa", 9)], by_seed[("none", "aa", 8)], by_seed[("none", "", 9)]]
    for run_id in lost:
        store.path(run_id).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    capsys.readouterr()
    args = ["run", "--matrix", str(sequential_folder / "m.toml"), "--epochs", "3", "-q", "--results", str(results)]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["executed"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json") if p.name in kept} == kept
    assert seeds_by_method(results) == seeds_by_method(sequential_folder / "r")
    assert main([*args, "--json"]) == 0  # nothing left
    assert json.loads(capsys.readouterr().out)["executed"] == 0


def test_a_changed_or_corrupt_plan_is_refused_with_the_files_name(sequential_folder, tmp_path, capsys):
    results = tmp_path / "r"
    shutil.copytree(sequential_folder / "r", results)
    args = ["run", "--plugin", "l2", "--task", "toy-regression", "--epochs", "3", "-q", "--results", str(results)]
    assert main([*args, "--seeds", "5:20"]) == 2
    err = capsys.readouterr().err
    assert "sequential plan is 5:10:5" in err and "--seeds 5:10:5" in err
    assert main([*args, "--seeds", "5:10", "--spending", "obrien-fleming"]) == 2
    (results / sequential.PLAN_FILE).write_text("{not json")
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep"), "--name", "x",
                 "--no-plots"]) == 2
    assert f"{results / sequential.PLAN_FILE}: not a sequential plan" in capsys.readouterr().err
    (results / sequential.PLAN_FILE).write_text(json.dumps({"plan_format": 1, "min": 5, "max": 3, "batch": 5,
                                                            "spending": "pocock", "alpha": 0.05}))
    with pytest.raises(UsageError, match="not a plan MIN:MAX:BATCH"):
        sequential.read_plan(results)


def test_a_matrix_states_sequential_seeds_and_refuses_them_with_group_seeds(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('seeds = "5:20:3"\n[sequential]\nspending = "obrien-fleming"\nalpha = 0.1\n'
                      '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n')
    from benchsuite.runs.matrix import sequential_plan

    assert sequential_plan(str(matrix)) == sequential.Plan(5, 20, 3, "obrien-fleming", 0.1)
    assert sequential_plan(str(matrix), "pocock").spending == "pocock"  # --spending wins
    capsys.readouterr()
    assert main(["run", "--matrix", str(matrix), "--dry-run", "--json"]) == 0
    assert sorted({r["seed"] for r in json.loads(capsys.readouterr().out)["runs"]}) == [0, 1, 2, 3, 4]
    matrix.write_text('seeds = "5:20"\n[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\nseeds = 3\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2
    assert "drop this group's seeds" in capsys.readouterr().err
    matrix.write_text('seeds = 5\n[sequential]\nalpha = 0.1\n[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2
    assert "needs sequential seeds" in capsys.readouterr().err


def test_sequential_seeds_grow_the_report_runs_of_a_tuned_study(tmp_path):
    (tmp_path / "m.toml").write_text(MATRIX + "\n[tuning]\nbudget = 1\n")
    results = tmp_path / "r"
    assert main(["run", "--matrix", str(tmp_path / "m.toml"), "--epochs", "3", "-q", "--results", str(results)]) == 0
    report = {m: {s for s in found if s < 1000} for m, found in seeds_by_method(results).items()}
    # every study tuned with K = 1 (l2's lam is fixed, the baseline has nothing to search): its
    # chosen trial is what runs on report seeds, and grows as the plain runs do
    assert report == {"l2": set(range(5)), "none": set(range(10)), "none@aa": set(range(10))}
    assert any(s >= 1000 for s in seeds_by_method(results)["l2"])  # the trial's tuning seeds


# --- calibration ------------------------------------------------------------------------------

def test_a_and_a_false_verdict_rate_of_the_rule_is_at_most_alpha():
    """A fast A/A check (the full tables: tests/perf/calibration.py --sequential)."""
    result = simulate_sequential(SequentialDesign(seeds="5:20", methods=2), experiments=500, seed=1)
    assert result["fwer"] <= 0.05 + 3 * standard_error(0.05, 500)
    assert result["runs_mean"] > 0.9 * 60  # under A/A nearly every comparison runs to MAX
