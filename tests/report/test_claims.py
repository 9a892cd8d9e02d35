"""Executable paper claims: the file format, the verdicts, the command and the report section."""

import contextlib
import csv
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, claim_of, claim_text

from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.plugins import discover
from benchsuite.report import claims as verdicts
from benchsuite.report import claims_output
from benchsuite.runs import claims as claim_mod
from benchsuite.testing import synthetic_record

SEED_PLUGINS = ("wc", "partialreg", "lpwd", "gcsr", "dipr")
ROOT = REPO
README_CLAIM = 'claim = "wc-keeps-accuracy-where-l2-degrades"\n'  # the committed claim the README's recipe names

def test_a_claims_file_parses_into_claims():
    (claim,) = claim_mod.parse_claims(claim_text(size="0.01"), "x.claims.toml", "l2")
    assert claim.method == claim_mod.Arm("l2", ("l2.lam=0.001",))
    assert claim.versus == claim_mod.Arm("none")
    assert (claim.seeds, claim.size, claim.bound) == (4, 0.01, None)


@pytest.mark.parametrize("overrides, message", [
    ({"colour": '"red"'}, "unknown key 'colour'"),
    ({"statement": None}, "missing required key 'statement'"),
    ({"direction": '"up"'}, "direction"),
    ({"bound": "1.0"}, "exactly one of `versus`"),
    ({"versus": None}, "exactly one of `versus`"),
    ({"versus": None, "bound": "1.0", "direction": '"higher"'}, "use one of below, above"),
    ({"id": '"wc-x"'}, "starts with its plugin's name"),
    ({"seeds": "1"}, "seeds"),
    ({"tier": '"huge"'}, "tier"),
    ({"tasks": "[]"}, "tasks"),
    ({"method": '"l2"'}, "expected a table"),
    ({"size": "true"}, "finite number"),
])
def test_a_malformed_claim_is_rejected_with_the_file_and_the_claim(overrides, message):
    with pytest.raises(UsageError, match=message) as info:
        claim_mod.parse_claims(claim_text(**overrides), "x.claims.toml", "l2")
    assert "x.claims.toml" in str(info.value)


def test_every_seed_plugin_ships_at_least_two_offline_claims_and_a_paper_claim():
    available = discover()
    found, problems = claim_mod.load_claims(available)
    assert problems == []
    for plugin in SEED_PLUGINS:
        mine = [c for c in found if c.plugin == plugin]
        assert sum(c.tier == "offline" for c in mine) >= 2, plugin
        assert any(c.tier == "paper" for c in mine), plugin


def test_every_bundled_claim_names_runs_the_host_accepts():
    """Tasks exist, hyperparameters are valid, and every run passes the plugins' configure
    checks, so `benchsuite claims` never fails on a shipped claim."""
    from benchsuite.execution.preflight import preflight

    available = discover()
    found, _ = claim_mod.load_claims(available)
    for claim in found:
        specs = claim_mod.run_specs(claim, available)
        first = [group[0] for group in specs.values()]
        assert preflight(first, "cpu", available) == [], claim.id
        if claim.tier == "offline":
            assert claim_mod.data_problems(claim) == [], claim.id


def test_claims_list_json_lists_the_offline_claims_of_every_seed_plugin(capsys):
    assert main(["claims", "--list", "--json", "--tier", "offline"]) == 0
    listed = json.loads(capsys.readouterr().out)
    for plugin in SEED_PLUGINS:
        assert sum(entry["plugin"] == plugin for entry in listed) >= 2
    assert all(entry["runs"] > 0 and entry["command"].startswith("benchsuite claims --claim") for entry in listed)


class FakeStore:
    def __init__(self):
        self.records = {}

    def get(self, run_id):
        return self.records.get(run_id)

    def is_done(self, run_id):
        return run_id in self.records

    def add(self, spec, value, status="finished", metric_name=None):
        record = synthetic_record(spec.task.name, spec.method.names[0], spec.seed, value, status=status)
        record["run_id"] = spec.run_id
        if metric_name:
            record["metrics"][metric_name] = value
        self.records[spec.run_id] = record


def fill(store, claim, tasks, method_values, versus_values=None, metric_name=None):
    specs = claim_mod.run_specs(claim, discover(), [tasks])
    for spec, value in zip(specs[("tiny-claims", "method")], method_values):
        if value is not None:
            store.add(spec, value, metric_name=metric_name)
    for spec, value in zip(specs.get(("tiny-claims", "versus"), ()), versus_values or ()):
        if value is not None:
            store.add(spec, value, metric_name=metric_name)


def test_verdicts_follow_the_paired_test_with_holm_over_the_claims(tiny_tasks):
    available, store = discover(), FakeStore()
    better = claim_of(id='"l2-better"')
    worse = claim_of(id='"l2-worse"', method='{ plugin = "l2", set = ["l2.lam=0.01"] }')
    noisy = claim_of(id='"l2-noisy"', method='{ plugin = "l2", set = ["l2.lam=0.1"] }')
    base = [0.80, 0.81, 0.79, 0.80]
    fill(store, better, tiny_tasks, [0.90, 0.92, 0.89, 0.91], base)
    fill(store, worse, tiny_tasks, [0.70, 0.72, 0.69, 0.70])
    fill(store, noisy, tiny_tasks, [0.85, 0.75, 0.82, 0.78])
    rows = {r["claim"]: r for r in verdicts.evaluate([better, worse, noisy], store, available, [tiny_tasks])}
    assert rows["l2-better"]["verdict"] == "supported"
    assert rows["l2-worse"]["verdict"] == "contradicted"
    assert rows["l2-noisy"]["verdict"] == "inconclusive"
    assert rows["l2-better"]["effect"] == pytest.approx(0.105)
    assert rows["l2-better"]["ci_low"] < 0.105 < rows["l2-better"]["ci_high"]
    assert rows["l2-worse"]["effect"] < 0
    # Holm over the three comparisons: the smallest p times 3
    raw = sorted(r["p"] for r in rows.values())
    assert min(r["p_holm"] for r in rows.values()) == pytest.approx(min(1.0, 3 * raw[0]))
    assert rows["l2-better"]["exact_min_p"] == pytest.approx(2 / 2**4)
    assert rows["l2-better"]["n"] == 4


def test_survivors_alone_neither_support_nor_contradict_a_claim(tiny_tasks):
    """Significant on the seeds both sides finished, but the favoured side diverged on seeds
    the other finished: inconclusive, with the lost seeds named."""
    available = discover()
    for favoured, method_values, versus_values, called in (
            ("method", [0.90, 0.92, 0.91, 0.93, 0.90, 0.92, None, None], [0.80, 0.81, 0.79, 0.80, 0.81, 0.80, 0.8, 0.8],
             "supported"),
            ("comparison", [0.70, 0.71, 0.72, 0.70, 0.71, 0.70, 0.7, 0.7],
             [0.80, 0.81, 0.79, 0.80, 0.81, 0.80, None, None], "contradicted")):
        store = FakeStore()
        claim = claim_of(seeds="8")
        specs = claim_mod.run_specs(claim, available, [tiny_tasks])
        for side, values in (("method", method_values), ("versus", versus_values)):
            for spec, value in zip(specs[("tiny-claims", side)], values):
                store.add(spec, value, status="finished" if value is not None else "diverged")
        (row,) = verdicts.evaluate([claim], store, available, [tiny_tasks])
        assert row["p_holm"] < 0.001 and row["n"] == 6
        assert row["verdict"] == "inconclusive", favoured
        assert any(n.startswith(f"{called} on the seeds both finished, but the {favoured} lost seed(s) 6, 7")
                   for n in row["notes"]), row["notes"]


def test_a_lower_is_better_claim_turns_the_sign(tiny_tasks):
    store = FakeStore()
    claim = claim_of(direction='"lower"')
    fill(store, claim, tiny_tasks, [0.1, 0.12, 0.11, 0.1], [0.3, 0.31, 0.29, 0.3])
    (row,) = verdicts.evaluate([claim], store, discover(), [tiny_tasks])
    assert row["verdict"] == "supported" and row["effect"] == pytest.approx(0.1925)
    assert row["ci_low"] > 0


def test_missing_diverged_and_unknown_metrics_are_named_not_guessed(tiny_tasks):
    available, store = discover(), FakeStore()
    claim = claim_of()
    (row,) = verdicts.evaluate([claim], store, available, [tiny_tasks])
    assert row["verdict"] == "not run" and "benchsuite claims --claim l2-test" in row["notes"][0]
    fill(store, claim, tiny_tasks, [0.9, None, None, None], [0.8, 0.8, None, None])
    (row,) = verdicts.evaluate([claim], store, available, [tiny_tasks])
    assert row["verdict"] == "incomplete" and any("5 of 8 runs not stored" in n for n in row["notes"])
    odd = claim_of(metric='"l2.nothing"')
    fill(store, odd, tiny_tasks, [0.9] * 4, [0.8] * 4)
    (row,) = verdicts.evaluate([odd], store, available, [tiny_tasks])
    assert row["verdict"] == "incomplete" and any("no finite 'l2.nothing'" in n for n in row["notes"])


def test_a_bound_claim_is_checked_on_every_run(tiny_tasks):
    available, store = discover(), FakeStore()
    claim = claim_of(versus=None, bound="0.5", direction='"below"', metric='"l2.max_w"')
    fill(store, claim, tiny_tasks, [0.3, 0.4, 0.2, 0.45], metric_name="l2.max_w")
    (row,) = verdicts.evaluate([claim], store, available, [tiny_tasks])
    assert row["verdict"] == "supported" and row["p"] is None and row["effect"] == 0.45
    store.records.clear()
    fill(store, claim, tiny_tasks, [0.3, 0.5, 0.2, 0.45], metric_name="l2.max_w")
    (row,) = verdicts.evaluate([claim], store, available, [tiny_tasks])
    assert row["verdict"] == "contradicted" and any("seed(s) 1" in n for n in row["notes"])


def test_claims_command_runs_what_is_missing_resumes_and_writes_the_report(tiny_tasks, tmp_path, monkeypatch,
                                                                           capsys):
    claim = claim_of()
    monkeypatch.setattr(claim_mod, "load_claims", lambda available, plugins=None: ([claim], []))
    monkeypatch.setattr(claim_mod, "claims_without_importing", lambda: [claim])
    results, out = tmp_path / "results", tmp_path / "reports" / "claims"
    args = ["claims", "--results", str(results), "--out", str(out), "-q"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "8 of 8 runs to do" in first.err and "l2-test" in first.out
    rows = json.loads((out / "claims.json").read_text())
    assert rows[0]["n"] == 4 and rows[0]["verdict"] in ("supported", "contradicted", "inconclusive")
    assert "## Claims" in (out / "index.md").read_text() and "Claims" in (out / "index.html").read_text()
    from benchsuite.plugins import discover

    installed = discover()["l2"].version
    assert rows[0]["versions"]["l2"] == installed
    assert re.search(rf"Plugin versions: [^\n]*\bl2 {re.escape(installed)}[;.]", (out / "index.md").read_text())
    with (out / "results.csv").open(newline="") as handle:
        runs = list(csv.DictReader(handle))
    assert list(runs[0]) == list(verdicts.RUN_COLUMNS)
    assert [(r["arm"], r["seed"]) for r in runs] == [(arm, str(s)) for arm in ("method", "versus") for s in range(4)]
    assert {r["configuration"] for r in runs if r["arm"] == "method"} == {"l2(lam=0.001)"}
    assert "## Per-seed data" in (out / "index.md").read_text() and "ttest_rel" in (out / "index.html").read_text()
    assert main(args + ["--json"]) == 0  # everything stored: nothing runs again
    again = capsys.readouterr()
    assert "runs to do" not in again.err
    assert json.loads(again.out)[0]["effect"] == rows[0]["effect"]
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "r"), "--name", "x", "--no-plots"]) == 0
    report = (tmp_path / "r" / "x" / "index.md").read_text()
    assert "## Claims" in report and "`l2-test`" in report  # the report judges the claims with runs there
    stats = json.loads((tmp_path / "r" / "x" / "stats.json").read_text())
    assert stats["claims"][0]["effect"] == rows[0]["effect"]


def test_paper_claims_without_data_are_listed_with_their_command_and_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHSUITE_DATA", str(tmp_path / "nodata"))
    assert main(["claims", "--plugin", "wc", "--tier", "paper", "--results", str(tmp_path / "r"), "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)
    assert row["verdict"] == "not run"
    assert "--claim wc-improves-resnet50-cifar100 --data-dir DIR" in row["command"]
    assert any(n.startswith("needs data: cifar100") for n in row["notes"])
    assert "not run: needs cifar100" in captured.err


def test_claims_command_rejects_unknown_plugins_and_claims(capsys):
    assert main(["claims", "--plugin", "nosuch"]) == 2
    assert "no such installed plugin" in capsys.readouterr().err
    assert main(["claims", "--claim", "nosuch", "--list"]) == 2
    assert "no such claim" in capsys.readouterr().err


def test_a_broken_claims_file_is_a_warning_and_the_others_still_load(tmp_path, monkeypatch):
    available = discover()
    broken = tmp_path / "broken.claims.toml"
    broken.write_text("[[claim]]\nid = 3\n")
    real = claim_mod.claims_file
    monkeypatch.setattr(claim_mod, "claims_file",
                        lambda factory: broken if factory is available["wc"].factory else real(factory))
    found, problems = claim_mod.load_claims(available)
    assert len(problems) == 1 and "broken.claims.toml" in problems[0]
    assert any(c.plugin == "gcsr" for c in found) and not any(c.plugin == "wc" for c in found)


def test_claims_excerpt_renders_one_plugins_verdicts(tmp_path):
    from benchsuite.report.excerpts import update

    folder = tmp_path / "claims"
    folder.mkdir()
    row = {"claim": "wc-x", "plugin": "wc", "task": "t", "verdict": "supported", "n": 10, "effect": 0.02,
           "ci_low": 0.01, "ci_high": 0.03, "p": 0.001, "p_holm": 0.004, "exact_p": 0.002, "exact_min_p": 0.002,
           "statement": "s", "source": "Table 1", "alpha": 0.05, "notes": [], "method": "wc", "versus": "none",
           "bound": None, "metric": "test", "direction": "higher"}
    (folder / "claims.json").write_text(json.dumps([row, {**row, "claim": "gcsr-y", "plugin": "gcsr"}]))
    text = "<!-- benchsuite:claims report=claims plugin=wc -->\nold\n<!-- /benchsuite:claims -->\n"
    new = update(text, tmp_path)
    assert "`wc-x`" in new and "gcsr-y" not in new and "supported" in new and "0.0040" in new
    assert not math.isnan(row["effect"])


def test_a_claim_on_a_task_this_installation_lacks_is_invalid_and_the_others_go_on(tiny_tasks, tmp_path, monkeypatch,
                                                                                  capsys):
    good, bad = claim_of(), claim_of(id='"l2-elsewhere"', tasks='["no-such-task"]')
    monkeypatch.setattr(claim_mod, "load_claims", lambda available, plugins=None: ([good, bad], []))
    monkeypatch.setattr(claim_mod, "claims_without_importing", lambda: [good, bad])
    assert main(["claims", "--results", str(tmp_path / "r"), "--json", "-q"]) == 0
    captured = capsys.readouterr()
    rows = {r["claim"]: r for r in json.loads(captured.out)}
    invalid = rows["l2-elsewhere"]
    assert invalid["verdict"] == "invalid" and "unknown task 'no-such-task'" in invalid["notes"][0]
    assert rows["l2-test"]["n"] == 4
    assert "l2-elsewhere not run: unknown task" in captured.err
    assert main(["claims", "--list"]) == 0
    assert "invalid: " in capsys.readouterr().out


def test_a_report_loads_the_plugins_only_when_a_stored_run_may_belong_to_a_claim(tmp_path):
    """The claims files are read beside the plugin modules without importing them: a store
    with no run of a claim's plugin on a claim's task is reported without loading any
    plugin (so without torch); a run of gcsr on its claim's task makes the report load them."""
    from benchsuite.store import Store

    store = Store(tmp_path / "results")
    for seed in range(2):
        store.put(synthetic_record("toy-task", "l2", seed, 0.5))
        store.put(synthetic_record("toy-task", "gcsr", seed, 0.5))
    probe = ("import sys, io, contextlib\nfrom benchsuite.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    code = main(['report', '--results', {str(tmp_path / 'results')!r}, '--out', "
             f"{str(tmp_path / 'out')!r}, '--name', 'r', '--no-plots'])\n"
             "print(code, 'torch' in sys.modules, 'benchsuite_gcsr' in sys.modules)")

    def report() -> list[str]:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert report() == ["0", "False", "False"]
    store.put(synthetic_record("mnist1d-mlp", "gcsr", 0, 0.5))  # gcsr's claims are on mnist1d-mlp
    assert report() == ["0", "True", "True"]


def readme_recipe() -> str:
    """The README's code that recomputes a claim's p from reports/claims/results.csv."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## What the papers claim, tested\n"):]
    section = section[:section.index("\n## ")]
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "reports/claims/results.csv" in b]
    assert block.count(README_CLAIM) == 1
    return block


def run_recipe(block: str, folder: Path, monkeypatch) -> dict[tuple[str, str], float]:
    """Run the recipe from ``folder`` (which holds reports/claims/); what it prints, by (claim, task)."""
    monkeypatch.chdir(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_recipe"})
    return {(claim, task): float(p) for claim, task, p in (line.split() for line in printed.getvalue().splitlines())}


def printed_p(index_md: str, claim: str, task: str) -> str:
    """The p (Holm) cell of ``claim`` on ``task`` in a claims report's verdict table."""
    for line in index_md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] == f"`{claim}`" and cells[1] == task:
            return cells[5]
    raise AssertionError(f"{claim} on {task} not in the verdict table")


def test_the_readme_recipe_recomputes_the_p_a_claims_report_prints(tiny_tasks, tmp_path, monkeypatch):
    """The recipe, run on a claims report made here (three comparisons under Holm, a seed
    lost on one side, a bound claim beside them), prints the p the report's table shows."""
    from benchsuite.formatting import fmt_p

    available, store = discover(), FakeStore()
    better = claim_of(id='"l2-better"', seeds="5")
    close = claim_of(id='"l2-close"', method='{ plugin = "l2", set = ["l2.lam=0.01"] }', seeds="5")
    lossy = claim_of(id='"l2-lossy"', method='{ plugin = "l2", set = ["l2.lam=0.1"] }', seeds="5")
    bound = claim_of(id='"l2-bound"', versus=None, bound="0.5", direction='"below"', metric='"l2.max_w"')
    base = [0.80, 0.81, 0.79, 0.80, 0.82]
    fill(store, better, tiny_tasks, [0.90, 0.92, 0.89, 0.91, 0.90], base)
    fill(store, close, tiny_tasks, [0.81, 0.83, 0.78, 0.82, 0.85])
    fill(store, bound, tiny_tasks, [0.3, 0.4, 0.2, 0.45], metric_name="l2.max_w")
    specs = claim_mod.run_specs(lossy, available, [tiny_tasks])
    for spec, value in zip(specs[("tiny-claims", "method")], [0.84, 0.86, 0.81, 0.85, None]):
        store.add(spec, value, status="finished" if value is not None else "diverged")
    chosen = [better, close, lossy, bound]
    rows = verdicts.evaluate(chosen, store, available, [tiny_tasks])
    folder = tmp_path / "reports" / "claims"
    claims_output.write(rows, folder, verdicts.run_rows(chosen, store, available, [tiny_tasks]))
    index = (folder / "index.md").read_text()
    block = readme_recipe()
    for row in rows:
        if row["p"] is None:
            continue
        printed = run_recipe(block.replace(README_CLAIM, f'claim = "{row["claim"]}"\n'), tmp_path, monkeypatch)
        assert list(printed) == [(row["claim"], "tiny-claims")]
        p = printed[(row["claim"], "tiny-claims")]
        assert fmt_p(p) == printed_p(index, row["claim"], "tiny-claims"), row["claim"]
        assert p == pytest.approx(row["p_holm"], rel=1e-9)
    lossy_row = next(r for r in rows if r["claim"] == "l2-lossy")
    assert lossy_row["n"] == 4 and lossy_row["p_holm"] < 1.0  # the lost seed left out, and Holm changed p
    assert lossy_row["p_holm"] > lossy_row["p"]
    with (folder / "results.csv").open(newline="") as handle:
        lost = [r for r in csv.DictReader(handle) if r["claim"] == "l2-lossy" and r["seed"] == "4"]
    assert [(r["arm"], r["status"], r["value"]) for r in lost] == [("method", "diverged", ""), ("versus", "finished",
                                                                                               "0.82")]


def test_the_readme_recipe_recomputes_the_committed_claims_p(monkeypatch):
    """On the committed reports/claims/results.csv, the README's recipe prints the p the
    committed report shows for the claim it names."""
    from benchsuite.formatting import fmt_p

    folder = ROOT / "reports" / "claims"
    printed = run_recipe(readme_recipe(), ROOT, monkeypatch)
    rows = {(r["claim"], r["task"]): r for r in json.loads((folder / "claims.json").read_text())}
    assert printed and all(claim == README_CLAIM.split('"')[1] for claim, _ in printed)
    for (claim, task), p in printed.items():
        assert fmt_p(p) == printed_p((folder / "index.md").read_text(), claim, task)
        assert p == pytest.approx(rows[(claim, task)]["p_holm"], rel=1e-9)
