"""Equal-budget tuning (`run --tune K`): search spaces, trials drawn reproducibly on tuning
seeds, the choice on validation, report seeds its choice never saw, journals, and what
reports show of it."""

import json
import math
from itertools import product

import numpy as np
import pytest

from benchsuite import Choice, Hyperparameter, IntUniform, LogUniform, Uniform
from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.plugins import discover
from benchsuite.plugins.search import draw, parse_space
from benchsuite.report.analysis import analyze
from benchsuite.runs.identity import TUNING_SEED_BASE
from benchsuite.runs.tuning import choose_trial, read_studies
from benchsuite.stats import expected_best
from benchsuite.store import Store, runs_table
from benchsuite.testing import synthetic_record

AVAILABLE = discover()
TOY = ["--task", "toy-regression", "--epochs", "3", "-q"]


def dry_run(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["run", *args, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# --- search spaces ------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, shown", [
    ("log:1e-6:0.1", LogUniform, "log[1e-06, 0.1]"), ("linear:0:1", Uniform, "linear[0, 1]"),
    ("int:1:8", IntUniform, "int[1, 8]"), ("intlog:1:64", IntUniform, "intlog[1, 64]"),
    ("choices:l1,l2", Choice, "choices[l1, l2]"), ({"log": [1e-5, 0.1]}, LogUniform, "log[1e-05, 0.1]"),
])
def test_a_space_reads_from_text_or_a_toml_table(text, kind, shown):
    space = parse_space(text, "x")
    assert isinstance(space, kind) and space.text() == shown


@pytest.mark.parametrize("text, message", [
    ("log:0:1", "log-scaled range must lie above 0"), ("log:-1:1", "above 0"),
    ("linear:1:1", "low must be below high"), ("linear:2:1", "low must be below high"),
    ("choices:0.1,0.2", "choices of a float"), ("choices:a", "at least two values"),
    ("cubic:1:2", "unknown scale 'cubic'"), ("log:1e-3", "expected SCALE:LOW:HIGH"),
    ("int:1.5:4", "bounds must be integers"), ({"log": [1, 2], "int": [1, 2]}, "one of log"),
])
def test_a_bad_space_is_refused_with_its_name(text, message):
    with pytest.raises(UsageError, match=message):
        parse_space(text, "l2.lam")


def test_a_declared_space_must_fit_its_hyperparameter():
    with pytest.raises(UsageError, match="reaches outside the valid range"):
        Hyperparameter("a", float, 0.5, low=0.0, search=Uniform(-1.0, 1.0))
    with pytest.raises(UsageError, match="default 0.0001 lies outside its search space log"):
        Hyperparameter("lam", float, 1e-4, low=0.0, search=LogUniform(1e-3, 1.0))
    with pytest.raises(UsageError, match="searched with LogUniform or Uniform"):
        Hyperparameter("lam", float, 1.0, search=Choice(1, 2))
    with pytest.raises(UsageError, match="not a valid value"):
        Hyperparameter("norm", str, "l1", choices=("l1", "l2"), search=Choice("l1", "l3"))
    with pytest.raises(UsageError, match="reaches outside"):  # an exclusive bound excludes the space's end
        Hyperparameter("a", float, 0.5, low=0.0, low_inclusive=False, search=Uniform(0.0, 1.0))
    ok = Hyperparameter("n", int, 4, low=1, search=IntUniform(1, 64, log=True))
    assert ok.describe()["search_text"] == "intlog[1, 64]"


def test_a_plugin_whose_space_is_bad_fails_to_load_naming_plugin_and_hyperparameter(tmp_path, monkeypatch):
    import importlib.metadata

    from benchsuite import plugins as plugin_registry

    (tmp_path / "bs_bad_space.py").write_text(
        "from benchsuite import Hyperparameter, LogUniform, Plugin\n"
        "class Bad(Plugin):\n    name = 'badspace'\n"
        "    hyperparameters = (Hyperparameter('lam', float, 1e-4, low=0.0, search=LogUniform(1e-2, 1.0)),)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points
    monkeypatch.setattr(plugin_registry.importlib.metadata, "entry_points", lambda group: [
        *real(group=group), importlib.metadata.EntryPoint("badspace", "bs_bad_space:Bad", group)])
    found = plugin_registry.discover()
    assert "badspace" not in found and "l2" in found
    message = found.broken["badspace"].message()
    assert "'badspace'" in message and "'lam'" in message and "outside its search space log[0.01, 1]" in message


def test_halton_draws_are_reproducible_and_a_larger_budget_extends_them():
    dims = {"l2.lam": LogUniform(1e-6, 1e-1), "x.n": IntUniform(1, 8), "x.c": Choice("a", "b")}
    four = draw(dims, seed=11, start=0, count=4)
    eight = draw(dims, seed=11, start=0, count=8)
    assert eight[:4] == four == draw(dims, seed=11, start=0, count=4)
    assert draw(dims, seed=11, start=4, count=4) == eight[4:]
    assert draw(dims, seed=12, start=0, count=4) != four
    for point in eight:
        assert 1e-6 <= point["l2.lam"] <= 1e-1 and float(f"{point['l2.lam']:.3g}") == point["l2.lam"]
        assert point["x.n"] in range(1, 9) and point["x.c"] in ("a", "b")


def test_halton_spreads_any_number_of_trials_over_a_log_range():
    """Every prefix is balanced: with n trials no gap (in log scale, ends included) exceeds
    2/n, which i.i.d. draws break most of the time."""
    for seed in range(5):
        points = [p["lam"] for p in draw({"lam": LogUniform(1e-6, 1.0)}, seed=seed, start=0, count=16)]
        for n in range(2, 17):
            position = sorted((math.log10(v) + 6) / 6 for v in points[:n])
            gaps = np.diff([0.0, *position, 1.0])
            assert gaps.max() <= 2 / n + 0.01, (seed, n, gaps.max())
    rng = np.random.default_rng(0)
    iid = [np.diff([0.0, *sorted(rng.uniform(size=8)), 1.0]).max() > 2 / 8 for _ in range(200)]
    assert np.mean(iid) > 0.5


def test_every_bundled_method_declares_a_space_for_what_its_paper_tunes():
    searched = {name: {h.name for h in info.hyperparameters.values() if h.search is not None}
                for name, info in AVAILABLE.items() if info.distribution in ("benchsuite",) or
                name in ("wc", "pp", "wn", "gcsr", "partialreg", "lpwd", "dipr")}
    assert searched["none"] == set() and searched["wn"] == set()  # nothing to tune
    for name in ("l1", "l2", "wd", "gcsr", "partialreg", "lpwd", "dipr"):
        assert "lam" in searched[name], name
    assert "a" in searched["wc"] and "alpha" in searched["pp"]
    for info in AVAILABLE.values():
        for h in info.hyperparameters.values():
            assert h.search is None or h.search.contains(h.default), (info.name, h.name)


def test_plugins_lists_each_space(capsys):
    assert main(["plugins"]) == 0
    assert "l2.lam: float = 0.0001, range [0, inf), search log[" in capsys.readouterr().out
    assert main(["plugins", "--json"]) == 0
    l2 = next(p for p in json.loads(capsys.readouterr().out) if p["name"] == "l2")
    assert l2["hyperparameters"][0]["search"]["scale"] == "log"


# --- choosing -------------------------------------------------------------------------------

def test_the_best_mean_validation_is_chosen_ties_go_to_the_earlier_trial_and_lost_trials_never():
    seeds = [TUNING_SEED_BASE, TUNING_SEED_BASE + 1]
    a, b = seeds
    assert choose_trial([{a: 0.5, b: 0.7}, {a: 0.8, b: 0.6}, {a: 0.6, b: 0.6}], seeds, True) == 1
    assert choose_trial([{a: 0.6, b: 0.6}, {a: 0.7, b: 0.5}], seeds, True) == 0  # tie: the earlier
    assert choose_trial([{a: 0.1, b: 0.1}, {a: 0.9, b: None}], seeds, True) == 0  # lost a seed: never chosen
    assert choose_trial([{a: 0.1, b: 0.1}, {a: 0.9}], seeds, True) == 0  # a seed not run counts as lost
    assert choose_trial([{a: 0.1, b: 0.3}, {a: 0.2, b: 0.1}], seeds, False) == 1  # lower is better
    assert choose_trial([{a: None, b: 0.1}, {a: float("nan"), b: 0.2}], seeds, True) is None


def test_an_exact_tie_goes_to_the_earlier_trial_whatever_the_order_of_its_seeds():
    """(0.1 + 0.2) + 0.3 and (0.3 + 0.2) + 0.1 differ in the last bit; the means are exact
    sums, so these trials tie and the earlier wins, for either direction, and a trial that
    lost a seed loses the tie (it is never chosen)."""
    seeds = [TUNING_SEED_BASE + i for i in range(3)]
    ascending, descending = dict(zip(seeds, (0.1, 0.2, 0.3))), dict(zip(seeds, (0.3, 0.2, 0.1)))
    for higher in (True, False):
        assert choose_trial([ascending, descending], seeds, higher) == 0
        assert choose_trial([descending, ascending], seeds, higher) == 0
        lost = dict(zip(seeds, (0.1, 0.3, None)))  # mean 0.2 on the seeds it finished
        assert choose_trial([lost, descending, ascending], seeds, higher) == 1


def test_a_tuning_studys_tie_goes_to_the_earlier_trial_in_the_report_too():
    """Without journals a study's trials come in the report's order (numbers from small to
    large): lam=1 and lam=2 tie exactly on validation, lam=0.5 lost a tuning seed, lam=3 is
    worse; the report chooses lam=1 and tests it on the report seeds."""
    seeds = [TUNING_SEED_BASE + i for i in range(3)]
    records = []
    for i, s in enumerate(seeds):
        records.append(synthetic_record("t", "none", s, 0.5, val=0.5))
        for lam, val in ((0.5, (0.1, 0.3, None)[i]), (1.0, (0.3, 0.2, 0.1)[i]), (2.0, (0.1, 0.2, 0.3)[i]),
                         (3.0, 0.05)):
            records.append(synthetic_record("t", "l2", s, 0.5, val=val, hyperparameters={"l2": {"lam": lam}},
                                            status="finished" if val is not None else "diverged"))
    for s in range(3):
        records.append(synthetic_record("t", "none", s, 0.5, val=0.5))
        records.append(synthetic_record("t", "l2", s, 0.6, val=0.6, hyperparameters={"l2": {"lam": 1.0}}))
    for order in (records, records[::-1]):
        task = analyze(runs_table(order))["tasks"][0]
        effort = next(e for e in task["tuning"] if e["method"] == "l2")
        assert [t["display"] for t in effort["trials"]] == ["l2(lam=0.5)", "l2(lam=1)", "l2(lam=2)", "l2(lam=3)"]
        assert [t["chosen"] for t in effort["trials"]] == [False, True, False, False]
        assert effort["trials"][0]["lost_seeds"] == [seeds[2]]
        assert task["comparisons"][0]["config"] == "l2(lam=1.0)"


def test_expected_best_matches_brute_force_enumeration():
    scores = [0.61, 0.58, 0.7, None, 0.64]
    k = len(scores)
    for higher in (True, False):
        curve = expected_best(scores, higher)
        for n in range(1, k + 1):
            best = []
            for draws in product(range(k), repeat=n):
                got = [scores[i] for i in draws if scores[i] is not None]
                if got:
                    best.append(max(got) if higher else min(got))
            assert curve[n - 1]["value"] == pytest.approx(np.mean(best))
            assert curve[n - 1]["p_none"] == pytest.approx((1 / k) ** n)
    assert expected_best([0.5], True) == [{"n": 1, "value": 0.5, "p_none": 0.0}]


# --- the command line ------------------------------------------------------------------------

def test_dry_run_lists_every_trial_on_tuning_seeds_the_same_every_time(tmp_path, capsys):
    args = ["--plugin", "gcsr", "--task", "toy-regression", "--tune", "6", "--seeds", "2",
            "--results", str(tmp_path / "r")]
    first, second = dry_run(capsys, *args), dry_run(capsys, *args)
    assert first == second and not (tmp_path / "r").exists()  # a dry run writes nothing
    trials = [r for r in first["runs"] if r["role"] == "tuning"]
    gcsr = [r for r in trials if r["method"].startswith("gcsr")]
    assert len({r["method"] for r in gcsr}) == 6 and len(gcsr) == 12  # 6 configurations x 2 tuning seeds
    assert {r["seed"] for r in trials} == {TUNING_SEED_BASE, TUNING_SEED_BASE + 1}
    report = [r for r in first["runs"] if r["role"] == "report"]
    assert {r["seed"] for r in report} == {0, 1} and all(r["run_id"] is None for r in report)
    study = next(s for s in first["tuning"] if s["method"] == "gcsr")
    assert study["k"] == 6 and study["space"] == {"gcsr.lam": "log[1e-06, 1]"}
    assert study["trials"][0]["origin"] == "default" and study["trials"][0]["hyperparameters"]["gcsr"]["lam"] == 1e-4
    none = next(s for s in first["tuning"] if s["method"] == "none")
    assert none["k"] == 1 and none["space"] == {}


def test_a_tuned_run_reports_on_fresh_seeds_with_a_pooled_interval(tmp_path, capsys):
    results = str(tmp_path / "r")
    assert main(["run", "--plugin", "l2", *TOY, "--tune", "3", "--seeds", "3", "--results", results]) == 0
    capsys.readouterr()
    table = Store(results).table()
    report = table.filter(table["seed"] < TUNING_SEED_BASE)
    trials = table.filter(table["seed"] >= TUNING_SEED_BASE)
    assert sorted(set(report["seed"])) == [0, 1, 2] and report["method_label"].n_unique() == 2  # chosen l2, none
    assert trials.filter(trials["method"] == "l2")["method_label"].n_unique() == 3
    assert main(["leaderboard", "--results", results, "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)["leaderboard"]}
    assert rows["l2"]["pooled"]["low"] is not None and rows["l2"]["pooled"]["p_holm"] is not None
    assert rows["l2"]["tuning"]["k"] == {"toy-regression": 3} and rows["none"]["tuning"]["k"] == {"toy-regression": 1}
    comp = analyze(table, studies=read_studies(tmp_path / "r"))["tasks"][0]["comparisons"][0]
    assert comp["selected_among"] == 1 and comp["seeds_method"] == [0, 1, 2] and comp["tuned"]
    assert "best of 3 trials on validation" in comp["procedure"]


def test_a_larger_budget_trains_only_the_new_trials(tmp_path, capsys):
    results = tmp_path / "r"
    base = ["run", "--plugin", "l2", *TOY, "--seeds", "2", "--tune-seeds", "1", "--results", str(results),
            "--no-baseline"]
    assert main([*base, "--tune", "4"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    journal = read_studies(results)[0]
    assert main([*base, "--tune", "8"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing redone
    extended = read_studies(results)[0]
    assert extended["trials"][:4] == journal["trials"] and len(extended["trials"]) == 8
    new_trial_runs = {extended["run_ids"][str(i)][str(TUNING_SEED_BASE)] + ".json" for i in range(4, 8)}
    new_tuning = {n for n in set(after) - set(before)
                  if json.loads((results / "runs" / n).read_text())["seed"] >= TUNING_SEED_BASE}
    assert new_tuning == new_trial_runs
    assert extended["events"][-1]["change"] == "budget" and extended["events"][-1]["report_runs_existed"] is True
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep"), "--name", "x",
                 "--no-plots"]) == 0
    text = (tmp_path / "rep" / "x" / "index.md").read_text()
    assert "budget changed from 4 to 8 after report-seed runs existed" in text
    capsys.readouterr()
    assert main([*base, "--tune", "2", "--dry-run", "--json"]) == 0  # a smaller budget keeps every trial
    assert len([r for r in json.loads(capsys.readouterr().out)["runs"] if r["role"] == "tuning"]) == 8


def test_stored_trials_are_reused_even_when_a_new_draw_would_differ(tmp_path, capsys):
    """The journal, not the sequence, says which trials a study ran: e.g. after a scipy
    release that scrambles differently."""
    results = tmp_path / "r"
    args = ["--plugin", "l2", *TOY, "--tune", "3", "--seeds", "2", "--results", str(results), "--no-baseline"]
    assert main(["run", *args]) == 0
    path = next((results / "tuning").glob("*.json"))
    journal = json.loads(path.read_text())
    journal["trials"][2]["hyperparameters"]["l2"]["lam"] = 0.0123
    path.write_text(json.dumps(journal))
    listed = dry_run(capsys, *args)
    assert {r["method"] for r in listed["runs"] if r["role"] == "tuning"} >= {"l2(lam=0.0123)"}


def test_a_corrupt_journal_is_set_aside_and_its_trials_drawn_again(tmp_path, capsys):
    results = tmp_path / "r"
    args = ["run", "--plugin", "l2", *TOY, "--tune", "2", "--seeds", "2", "--tune-seeds", "1", "--no-baseline",
            "--results", str(results)]
    assert main(args) == 0
    path = next((results / "tuning").glob("*.json"))
    path.write_text("{not json")
    (results / "tuning" / "foreign.json").write_text(json.dumps({"trials": "no"}))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "not valid JSON" in err or "unreadable" in err
    assert path.is_file() and list((results / "tuning").glob("*.corrupt"))
    assert len(read_studies(results)) == 1  # the foreign file is reported and skipped, never trusted


@pytest.mark.parametrize("args, message", [
    (["--tune", "0"], "budget K must be an integer from 1"),
    (["--tune", "2", "--space", "l2.lam=linear:1:0.5"], "low must be below high"),
    (["--tune", "2", "--space", "l2.lam=log:0:1"], "above 0"),
    (["--tune", "2", "--space", "l2.lam=choices:0.1,0.2"], "choices of a float"),
    (["--tune", "2", "--space", "l2.lamb=log:1e-3:1"], "unknown hyperparameter l2.lamb"),
    (["--tune", "2", "--space", "l2.lam=log:1e-3:1", "--set", "l2.lam=0.1"], "both fixed"),
    (["--tune", "2", "--space", "train.epochs=int:1:9"], "train.epochs cannot be tuned"),
    (["--tune", "2", "--space", "wc.a=log:0.3:1"], "plugin 'wc' is not selected"),
    (["--tune", "2", "--grid", "l2.lam=0.1,0.2"], "under tuning a value with a search space is searched"),
    (["--space", "l2.lam=log:1e-3:1"], "give --tune K"),
    (["--tune", "2", "--seed", "1000000"], "tuning seeds"),
])
def test_bad_tuning_input_exits_2_before_anything_trains(tmp_path, capsys, args, message):
    results = tmp_path / "r"
    assert main(["run", "--plugin", "l2", *TOY, *args, "--results", str(results)]) == 2
    assert message in capsys.readouterr().err
    assert not (results / "runs").exists()


def test_a_matrix_tunes_every_group_with_its_spaces(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('seeds = 2\n[tuning]\nbudget = 3\nseeds = 1\nspaces = {"l2.lam" = "log:1e-4:1e-2"}\n'
                      '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n'
                      '[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\nspaces = {"l2.lam" = {log = [0.1, 1.0]}}\n')
    listed = dry_run(capsys, "--matrix", str(matrix), "--epochs", "1", "--results", str(tmp_path / "r"))
    spaces = {(s["task"], s["method"]): s["space"] for s in listed["tuning"]}
    assert spaces[("toy-regression", "l2")] == {"l2.lam": "log[0.0001, 0.01]"}
    assert spaces[("digits-mlp", "l2")] == {"l2.lam": "log[0.1, 1]"}
    assert all(s["k"] == 3 for s in listed["tuning"] if s["method"] == "l2")
    matrix.write_text('[tuning]\nbudget = 3\nspaces = {"l2.mu" = "log:1e-4:1e-2"}\n'
                      '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2
    assert "unknown hyperparameter l2.mu" in capsys.readouterr().err


def test_a_failing_trial_counts_against_the_budget_and_is_never_chosen(tmp_path, capsys):
    """wc's bound a*pi/2 below the initial weights fails at initialization: a lost trial."""
    results = str(tmp_path / "r")
    args = ["run", "--plugin", "wc", "--task", "digits-mlp", "--epochs", "1", "--subset", "200", "-q", "--tune", "3",
            "--seeds", "2", "--tune-seeds", "1", "--results", results, "--space", "wc.a=log:0.01:0.05",
            "--no-baseline"]
    code = main(args)
    captured = capsys.readouterr()
    table = Store(results).table()
    trials = table.filter(table["seed"] >= TUNING_SEED_BASE)
    assert trials.filter(trials["status"] == "failed").height == 2  # the two drawn (a < 0.05) fail
    assert "2 of 3 tuning run(s) lost" in captured.err
    assert code == 0  # the default (a = 0.5) finished and was chosen
    report = table.filter(table["seed"] < TUNING_SEED_BASE)
    assert set(report["method_label"]) == {"wc"} and report.height == 2
    analysis = analyze(table, studies=read_studies(tmp_path / "r"))
    effort = analysis["tasks"][0]["tuning"][0]
    assert effort["k"] == 3 and effort["lost"] == 2 and effort["chosen"] == 0
    assert [p["n"] for p in effort["expected_best"]] == [1, 2, 3] and effort["expected_best"][0]["p_none"] > 0.6


def test_a_study_none_of_whose_trials_finished_exits_1(tmp_path, capsys):
    args = ["run", "--plugin", "wc", "--task", "digits-mlp", "--epochs", "1", "--subset", "200", "-q", "--tune", "2",
            "--seeds", "2", "--tune-seeds", "1", "--results", str(tmp_path / "r"), "--set", "wc.a=0.01",
            "--space", "wc.b=log:0.5:2", "--no-baseline"]
    assert main(args) == 1
    assert "no trial that finished every tuning seed" in capsys.readouterr().err
    assert main([*args, "--allow-failures"]) == 0


# --- the report never uses a trial's test value ------------------------------------------

def _tuned_store(trial_test: float, rng_seed: int = 4) -> list[dict]:
    rng = np.random.default_rng(rng_seed)
    records = []
    for s in [0, 1, 2, 3, TUNING_SEED_BASE, TUNING_SEED_BASE + 1]:
        tuning = s >= TUNING_SEED_BASE
        b = 0.9 + rng.normal(0, 0.01)
        records.append(synthetic_record("t", "none", s, trial_test if tuning else b, val=b))
        for lam in (1.0, 2.0, 3.0):
            if not tuning and lam != 2.0:
                continue
            v = b + 0.02 - 0.02 * (lam - 2) ** 2 + rng.normal(0, 0.003)  # lam = 2 is best
            records.append(synthetic_record("t", "l2", s, trial_test if tuning else v, val=v,
                                            hyperparameters={"l2": {"lam": lam}}))
    return records


def test_no_number_next_to_a_test_comes_from_a_trial():
    plain = analyze(runs_table(_tuned_store(0.5)))
    poisoned = analyze(runs_table(_tuned_store(-1e9)))
    for key in ("comparisons", "configs"):
        assert json.dumps(plain["tasks"][0][key]) == json.dumps(poisoned["tasks"][0][key])
    assert json.dumps(plain["overall"]["methods"]) == json.dumps(poisoned["overall"]["methods"])
    assert "-1000000000" not in json.dumps(poisoned["tasks"]) and "-1e+09" not in json.dumps(poisoned["tasks"])
    comp = plain["tasks"][0]["comparisons"][0]
    assert comp["config"] == "l2(lam=2.0)" and comp["seeds_method"] == [0, 1, 2, 3] and comp["selected_among"] == 1
    effort = next(e for e in plain["tasks"][0]["tuning"] if e["method"] == "l2")
    assert effort["k"] == 3 and [t["trial"] for t in effort["trials"] if t["chosen"]] == [1]


def test_a_chosen_value_at_the_edge_of_what_was_tried_is_flagged():
    records = []
    for s in (0, 1, TUNING_SEED_BASE, TUNING_SEED_BASE + 1):
        records.append(synthetic_record("t", "none", s, 0.9, val=0.9))
        for lam in (1.0, 2.0, 3.0) if s >= TUNING_SEED_BASE else (3.0,):
            records.append(synthetic_record("t", "l2", s, 0.9 + 0.01 * lam, val=0.9 + 0.01 * lam,
                                            hyperparameters={"l2": {"lam": lam}}))
    analysis = analyze(runs_table(records))
    effort = next(e for e in analysis["tasks"][0]["tuning"] if e["method"] == "l2")
    assert effort["edges"] == [{"hyperparameter": "l2.lam", "value": 3.0, "side": "highest", "tried": [1.0, 3.0]}]
    row = next(r for r in analysis["overall"]["methods"] if r["method"] == "l2")
    assert row["tuning"]["edges"] == ["t: l2.lam = 3, the highest tried"]


def test_results_summary_keeps_roles_apart_and_can_hide_test_values(tmp_path, capsys):
    store = Store(tmp_path / "r")
    for record in _tuned_store(0.123456):
        store.put(record)
    assert main(["results", "--results", str(tmp_path / "r"), "--summary"]) == 0
    out = capsys.readouterr().out
    tuning_rows = [line for line in out.splitlines() if line.startswith("t ") and " tuning " in line]
    assert len(tuning_rows) == 4 and all("0.1235" not in line for line in tuning_rows)
    report_l2 = next(line for line in out.splitlines() if " report " in line and line.split()[1].startswith("l2"))
    assert report_l2.split()[3] == "4"  # n: the report seeds alone
    assert main(["results", "--results", str(tmp_path / "r"), "--summary", "--metric", "val"]) == 0
    assert "test mean" not in capsys.readouterr().out


# --- the report chooses what the command chose -----------------------------------------------

def _report_choices(results) -> dict:
    analysis = analyze(Store(results).table(), studies=read_studies(results))
    return {(t["task"], e["method"]): e for t in analysis["tasks"] for e in t["tuning"]}


def _command_choices(results, capsys, *args) -> dict:
    listed = dry_run(capsys, *args, "--results", str(results))
    return {(s["task"], s["method"], s["study"]): s["chosen"] for s in listed["tuning"]}


def test_the_report_chooses_the_trial_the_command_chose_study_by_study(tmp_path, capsys):
    """Two studies of one method at two fixed learning rates: each chooses among its own
    trials, the trial the command chose, and a fixed training value no study searches is
    part of the task's recipe (its own task, with its own baseline)."""
    results = tmp_path / "r"
    base = ["--plugin", "l2", *TOY, "--tune", "3", "--seeds", "2", "--tune-seeds", "1"]
    assert main(["run", *base, "--results", str(results)]) == 0
    assert main(["run", *base, "--train", "lr=0.003", "--results", str(results)]) == 0
    capsys.readouterr()
    efforts = _report_choices(results)
    assert sorted(efforts) == [("toy-regression [train.lr=0.003]", "l2"), ("toy-regression [train.lr=0.003]", "none"),
                               ("toy-regression [train.lr=0.01]", "l2"), ("toy-regression [train.lr=0.01]", "none")]
    assert [e["k"] for (_task, method), e in sorted(efforts.items()) if method == "l2"] == [3, 3]
    commanded = {**_command_choices(results, capsys, *base),
                 **_command_choices(results, capsys, *base, "--train", "lr=0.003")}
    for e in efforts.values():
        assert commanded[next(k for k in commanded if k[2] == e["study"])] == e["chosen"]
    analysis = analyze(Store(results).table(), studies=read_studies(results))
    assert [[c["method"] for c in t["comparisons"]] for t in analysis["tasks"]] == [["l2"], ["l2"]]
    plain = analyze(Store(results).table())  # without journals: the learning rate is a swept value, as before
    assert len(plain["tasks"]) == 1


def test_runs_no_journal_lists_are_left_out_and_a_missing_trial_run_leaves_the_study_undecided(tmp_path, capsys):
    results = tmp_path / "r"
    args = ["--plugin", "l2", *TOY, "--tune", "3", "--seeds", "2", "--tune-seeds", "1", "--no-baseline"]
    assert main(["run", *args, "--results", str(results)]) == 0
    store = Store(results)
    journal = read_studies(results)[0]
    stray = store.get(journal["run_ids"]["1"][str(TUNING_SEED_BASE)])
    stray = {**stray, "run_id": "f" * 20, "hyperparameters": {"l2": {"lam": 0.5}}, "method_label": "l2(lam=0.5)",
             "method_full_label": "l2(lam=0.5)", "metrics": {**stray["metrics"], "val_mse": 1e-9}}
    store.put(stray)  # a run on a tuning seed that no journal lists: an older version's, say
    before = _report_choices(results)[("toy-regression", "l2")]
    assert before["k"] == 3 and before["decided"]
    notes = analyze(store.table(), studies=read_studies(results))["tasks"][0]["notes"]
    assert any("no tuning journal of this results folder lists" in n for n in notes)
    (results / "runs" / (journal["run_ids"]["2"][str(TUNING_SEED_BASE)] + ".json")).unlink()
    after = _report_choices(results)[("toy-regression", "l2")]
    assert not after["decided"] and after["chosen"] is None and after["not_run"] == 1
    analysis = analyze(store.table(), studies=read_studies(results))
    assert analysis["tasks"][0]["comparisons"] == [] or all(c["method"] != "l2" for c in analysis["tasks"][0]
                                                             ["comparisons"])
    listed = dry_run(capsys, *args, "--results", str(results))
    report = [r for r in listed["runs"] if r["role"] == "report"]
    assert report and all(r["run_id"] is None for r in report)  # no choice while a trial is missing


def test_a_changed_space_is_recorded_and_unequal_budgets_are_named(tmp_path, capsys):
    results = tmp_path / "r"
    base = ["run", "--plugin", "l2", "--plugin", "l1", *TOY, "--tune", "3", "--seeds", "2", "--tune-seeds", "1",
            "--results", str(results)]
    assert main(base) == 0
    assert main([*base, "--space", "l2.lam=log:1e-3:1e-1"]) == 0
    journal = next(j for j in read_studies(results) if j["method"] == "l2")
    assert journal["events"][-1]["change"] == "space" and journal["events"][-1]["report_runs_existed"]
    assert journal["space"] == {"l2.lam": "log[0.001, 0.1]"}
    analysis = analyze(Store(results).table(), studies=read_studies(results))
    assert any("did not all get the same number of trials" in n and "l2 K = 5" in n and "l1 K = 3" in n
               for n in analysis["overall"]["notes"])


def test_a_study_two_groups_share_runs_on_every_report_seed_either_names(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('[tuning]\nbudget = 2\nseeds = 1\n'
                      '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\nseeds = 2\n'
                      '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l1"]\nseeds = 4\n')
    listed = dry_run(capsys, "--matrix", str(matrix), "--epochs", "3", "--results", str(tmp_path / "r"))
    none = next(s for s in listed["tuning"] if s["method"] == "none")
    assert none["report_seeds"] == [0, 1, 2, 3]
    matrix.write_text(matrix.read_text() + '[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n'
                      'spaces = {"l2.lam" = "log:1e-3:1e-1"}\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2
    assert "another space than in an earlier group" in capsys.readouterr().err
    matrix.write_text(matrix.read_text().replace('plugins = ["l1"]\n', 'plugins = ["l1"]\nspaces = {"l2.lam" = '
                                                 '"log:1e-3:1e-1"}\n'))
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2
    assert "plugin 'l2' is not selected in this group" in capsys.readouterr().err


def test_the_command_line_space_wins_over_a_matrix_groups_and_needs_no_tuning_table(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\nspaces = {"l2.lam" = "log:1e-3:1e-1"}\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run"]) == 2  # spaces without any tuning
    assert "add a [tuning] table" in capsys.readouterr().err
    listed = dry_run(capsys, "--matrix", str(matrix), "--tune", "2", "--space", "l2.lam=log:0.2:0.5",
                     "--results", str(tmp_path / "r"))
    assert next(s for s in listed["tuning"] if s["method"] == "l2")["space"] == {"l2.lam": "log[0.2, 0.5]"}


def test_a_training_value_is_either_fixed_or_searched_and_momentum_only_where_it_acts(tmp_path, capsys):
    args = ["run", "--plugin", "l2", *TOY, "--tune", "2", "--results", str(tmp_path / "r")]
    assert main([*args, "--train", "lr=0.05", "--space", "train.lr=log:1e-3:1e-1", "--dry-run"]) == 2
    assert "both fixed" in capsys.readouterr().err
    listed = dry_run(capsys, "--plugin", "l2", *TOY, "--tune", "2", "--space", "train.momentum=linear:0:0.9",
                     "--results", str(tmp_path / "r"))
    l2 = next(s for s in listed["tuning"] if s["method"] == "l2")
    assert l2["space"] == {"l2.lam": "log[1e-05, 1]"} and any("momentum is not searched" in n for n in l2["notes"])
    listed = dry_run(capsys, "--plugin", "wd", *TOY, "--tune", "3", "--space", "train.weight_decay=log:1e-5:1e-2",
                     "--results", str(tmp_path / "r"))
    spaces = {s["method"]: s["space"] for s in listed["tuning"]}
    assert "train.weight_decay" in spaces["none"] and "train.weight_decay" not in spaces["wd"]  # wd is the decay


def test_a_bad_replicate_name_with_tuning_exits_2(tmp_path, capsys):
    assert main(["run", "--plugin", "none", *TOY, "--tune", "2", "--replicate", "a b",
                 "--results", str(tmp_path / "r")]) == 2
    assert "replicate" in capsys.readouterr().err


def test_a_tuned_aa_replicate_from_the_command_line(tmp_path, capsys):
    """`none` against a salted copy of itself, both tuned: every verdict but equivalent or
    inconclusive would be a false positive, and the report says so."""
    results = tmp_path / "r"
    assert main(["run", "--plugin", "none", "--replicate", "aa", *TOY, "--tune", "2", "--seeds", "3",
                 "--tune-seeds", "1", "--results", str(results)]) == 0
    table = Store(results).table()
    assert sorted(set(table["method"])) == ["none", "none@aa"]
    analysis = analyze(table, studies=read_studies(results))
    comp = analysis["tasks"][0]["comparisons"][0]
    assert comp["method"] == "none@aa" and comp["seeds_method"] == [0, 1, 2]
    assert {e["method"] for e in analysis["tasks"][0]["tuning"]} == {"none", "none@aa"}


@pytest.mark.parametrize("mutate", [
    lambda j: j.pop("seeds"), lambda j: j["trials"][0].update(hyperparameters={"l2": 5}),
    lambda j: j.update(sequences=[{}]), lambda j: j.update(run_ids={"0": 5}), lambda j: j.update(events=[{}]),
    lambda j: j.update(budget="x"), lambda j: j.update(run_ids={"9": {}}),
])
def test_a_malformed_journal_is_set_aside_not_trusted(tmp_path, capsys, mutate):
    results = tmp_path / "r"
    args = ["run", "--plugin", "l2", *TOY, "--tune", "2", "--seeds", "2", "--tune-seeds", "1", "--no-baseline",
            "--results", str(results)]
    assert main(args) == 0
    path = next((results / "tuning").glob("*.json"))
    journal = json.loads(path.read_text())
    mutate(journal)
    path.write_text(json.dumps(journal))
    for command in (["leaderboard", "--results", str(results)], ["run", *args[1:], "--dry-run"]):
        assert main(command) == 0
    assert main(args) == 0
    assert "not a tuning journal" in capsys.readouterr().err
    rebuilt = read_studies(results)[0]
    assert rebuilt["events"][0]["change"] == "recreated" and rebuilt["events"][0]["report_runs_existed"] is True


def test_mean_std_and_n_beside_a_test_come_from_the_seeds_it_used():
    records = [synthetic_record("t", "none", s, 0.9 + 0.01 * s) for s in (0, 1)]
    records += [synthetic_record("t", "l2", s, value, hyperparameters={"l2": {"lam": 1.0}})
                for s, value in ((0, 0.95), (1, 0.97), (2, 0.5), (3, 0.5))]
    comp = analyze(runs_table(records))["tasks"][0]["comparisons"][0]
    assert comp["n_pairs"] == 2 and comp["n_tested"] == 2
    assert comp["mean"] == pytest.approx(0.96) and comp["std"] == pytest.approx(np.std([0.95, 0.97], ddof=1))


def test_regression_checks_compare_report_seeds_only():
    from benchsuite.report.analysis import regressions

    rows = _tuned_store(0.5)
    worse = [{**r, "metrics": {**r["metrics"], "test_accuracy": 0.0}} if r["seed"] >= TUNING_SEED_BASE else r
             for r in rows]
    checked = regressions(runs_table(worse), runs_table(rows))
    assert checked and all(not c["regression"] for c in checked)
    assert all(c["configuration"] in ("none", "l2(lam=2.0)") for c in checked)


def test_studies_are_named_by_their_text_values_and_by_numbers_only_where_those_tie():
    from benchsuite.report.studies import name_studies

    def study(**fixed):
        return {"method": "lpwd", "fixed": {"lpwd": fixed, "train": {"lr": 0.001}}}

    studies = [study(variant="wd", lam=0.01, zero_shot=False), study(variant="lpwd", lam=0.01, zero_shot=False),
               study(variant="lpwd", lam=0.0, zero_shot=True), study(variant="lpwd", lam=0.5, zero_shot=True)]
    name_studies(studies)
    assert [s["variant"] for s in studies] == [
        "lpwd(variant=wd,zero_shot=False)", "lpwd(variant=lpwd,zero_shot=False)",
        "lpwd(lam=0,variant=lpwd,zero_shot=True)", "lpwd(lam=0.5,variant=lpwd,zero_shot=True)"]


def test_the_light_modules_copies_of_tuning_constants_agree():
    from benchsuite.cli import run as run_command
    from benchsuite.runs import identity, tuning

    assert run_command.DEFAULT_TUNING_SEEDS == tuning.DEFAULT_TUNING_SEEDS
    assert {f"train.{k}" for k in tuning.TRAIN_DIMENSIONS} == set(identity.TUNABLE_TRAIN)


# --- task labels with journals -------------------------------------------------------------

def _tasks_and_tests(results) -> dict:
    analysis = analyze(Store(results).table(), studies=read_studies(results))
    return {t["task"]: sorted(c["method"] for c in t["comparisons"]) for t in analysis["tasks"]}


def test_a_method_that_is_the_decay_stays_on_its_baselines_task(tmp_path, capsys):
    """wd runs with train.weight_decay = 0 where the task asks for 0.001: a value of its
    configuration, not another task."""
    results = tmp_path / "r"
    assert main(["run", "--plugin", "wd", *TOY, "--tune", "2", "--seeds", "2", "--tune-seeds", "1",
                 "--train", "weight_decay=0.001", "--results", str(results)]) == 0
    assert _tasks_and_tests(results) == {"toy-regression": ["wd"]}


def test_a_searched_and_a_fixed_learning_rate_are_two_tasks_each_with_its_baseline(tmp_path, capsys):
    results = tmp_path / "r"
    base = ["run", "--plugin", "l2", *TOY, "--tune", "2", "--seeds", "2", "--tune-seeds", "1", "--results",
            str(results)]
    assert main([*base, "--space", "train.lr=log:1e-3:1e-2"]) == 0
    assert main([*base, "--train", "lr=0.003"]) == 0
    assert _tasks_and_tests(results) == {"toy-regression [train.lr=0.003]": ["l2"],
                                         "toy-regression [train.lr=tuned]": ["l2"]}
    capsys.readouterr()
    assert main(["results", "--results", str(results), "--summary"]) == 0  # the labels the report gives
    out = capsys.readouterr().out
    assert "toy-regression [train.lr=0.003]" in out and "toy-regression [train.lr=tuned]" in out


def test_a_plain_baseline_run_joins_the_tuned_study_it_matches(tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--plugin", "none", *TOY, "--seeds", "2", "--results", str(results)]) == 0
    assert main(["run", "--plugin", "l2", *TOY, "--tune", "2", "--seeds", "2", "--tune-seeds", "1", "--no-baseline",
                 "--results", str(results)]) == 0
    assert _tasks_and_tests(results) == {"toy-regression": ["l2"]}


def test_a_changed_choice_is_written_down_and_named(tmp_path, capsys):
    """A trial's run that failed and finished when run again (here: its record edited) can
    change the choice after report runs exist: the journal and the report say so."""
    results = tmp_path / "r"
    args = ["run", "--plugin", "l2", *TOY, "--tune", "3", "--seeds", "2", "--tune-seeds", "1", "--no-baseline",
            "--results", str(results)]
    assert main(args) == 0
    journal = read_studies(results)[0]
    first = journal["chosen"]
    other = next(i for i in range(3) if i != first)
    path = results / "runs" / (journal["run_ids"][str(other)][str(TUNING_SEED_BASE)] + ".json")
    record = json.loads(path.read_text())
    record["metrics"]["val_mse"] = 0.0
    path.write_text(json.dumps(record))
    assert main(args) == 0
    journal = read_studies(results)[0]
    assert journal["chosen"] == other
    change = journal["events"][-1]
    assert change["change"] == "chosen trial" and (change["from"], change["to"]) == (first, other)
    assert change["report_runs_existed"] is True
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep"), "--name", "x",
                 "--no-plots"]) == 0
    assert f"chosen trial changed from {first} to {other} after report-seed runs existed" in \
        (tmp_path / "rep" / "x" / "index.md").read_text()


def test_a_study_whose_trials_are_all_lost_lists_no_report_run(tmp_path, capsys):
    args = ["--plugin", "wc", "--task", "digits-mlp", "--epochs", "1", "--subset", "200", "-q", "--tune", "2",
            "--seeds", "2", "--tune-seeds", "1", "--results", str(tmp_path / "r"), "--set", "wc.a=0.01",
            "--space", "wc.b=log:0.5:2", "--no-baseline"]
    assert main(["run", *args]) == 1
    listed = dry_run(capsys, *args)
    assert [r for r in listed["runs"] if r["role"] == "report"] == []
    assert listed["tuning"][0]["decision"] == "lost"
