"""One name per configuration: the dry run, the progress lines, results.csv and the report's
tables name a configuration alike, a grid member at the plugin's default value included."""

import json

import polars as pl

import benchsuite
from benchsuite.cli import main

GRID = ["--plugin", "l2", "--task", "toy-regression", "--grid", "l2.lam=0.0005,0.01", "--epochs", "2"]


def test_a_grid_member_at_the_default_has_one_name_everywhere(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", *GRID, "--seed", "0,1", "--results", str(results), "--dry-run", "--json"]) == 0
    listed = {run["method"] for run in json.loads(capsys.readouterr().out)["runs"]}
    assert listed == {"none", "l2(lam=0.0005)", "l2(lam=0.01)"}  # 0.0005 is l2's default

    assert main(["run", *GRID, "--seed", "0,1", "--results", str(results)]) == 0
    progress = capsys.readouterr().err
    assert "toy-regression l2(lam=0.0005) seed=0" in progress and " l2 seed=" not in progress

    folder = benchsuite.write_report(results, tmp_path / "reports", "grid", plots=False)
    named = pl.read_csv(folder / "results.csv", infer_schema_length=0)
    assert set(named["name"]) == listed
    stats = json.loads((folder / "stats.json").read_text())
    shown = {c["display"] for task in stats["tasks"] for c in task["configs"]}
    assert shown == listed
    assert set(benchsuite.open_results(results)["name"]) == listed
    assert main(["results", "--results", str(results), "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == listed
    assert main(["results", "--results", str(results)]) == 0
    assert "l2(lam=0.0005)" in capsys.readouterr().out


def test_a_method_alone_is_named_by_its_plugins(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--plugin", "l2", "--task", "toy-regression", "--seed", "0", "--epochs", "1",
                 "--results", str(results), "--dry-run", "--json"]) == 0
    assert {run["method"] for run in json.loads(capsys.readouterr().out)["runs"]} == {"none", "l2"}
