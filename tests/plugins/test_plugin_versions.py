"""Runs of several versions of a plugin in one results folder: statistics count only each
configuration's newest, reports say which versions they show and what they left out."""

import json

from benchsuite.report.analysis import analyze, read_runs_table
from benchsuite.report.publish import write_report
from benchsuite.report.summary import _version_key, current_runs, summary, superseded_runs
from benchsuite.store import Store, runs_table
from benchsuite.testing import synthetic_record

OLD, NEW = {"benchsuite": "3", "dipr": "0.9.0"}, {"benchsuite": "3", "dipr": "0.10.0"}
NONE = {"benchsuite": "3", "none": "0.1.0"}


def mixed_records():
    """none on seeds 0-4; dipr 0.9.0 on seeds 0-4 (test 0.50) and, after an upgrade,
    dipr 0.10.0 on seeds 0-2 only (test 0.90)."""
    records = [synthetic_record("digits-mlp", "none", s, 0.70 + 0.01 * s, versions=NONE) for s in range(5)]
    records += [synthetic_record("digits-mlp", "dipr", s, 0.50 + 0.01 * s, versions=OLD) for s in range(5)]
    records += [synthetic_record("digits-mlp", "dipr", s, 0.90 + 0.01 * s, versions=NEW) for s in range(3)]
    return records


def test_versions_order_by_pep_440_not_by_text():
    assert _version_key(json.dumps(NEW)) > _version_key(json.dumps(OLD))  # 0.10.0 > 0.9.0
    assert _version_key(json.dumps({"x": "1.0.post1"})) > _version_key(json.dumps({"x": "1.0"}))
    assert _version_key(json.dumps({"x": "1.0"})) > _version_key(json.dumps({"x": "1.0rc1"}))
    # a version that is not PEP 440 sorts below those that are, and does not raise
    assert _version_key(json.dumps({"x": "0.1"})) > _version_key(json.dumps({"x": "local-build"}))


def test_a_configuration_is_counted_with_its_newest_versions_only():
    table = runs_table(mixed_records())
    assert table.height == 13 and "versions" in table.columns
    current = current_runs(table)
    assert current.height == 8
    # the table's order is kept (the runs table is sorted by task, method and seed)
    assert current["run_id"].to_list() == [r for r, v in zip(table["run_id"], table["versions"])
                                           if v != json.dumps(OLD, sort_keys=True)]
    dipr = summary(table).filter(summary(table)["method"] == "dipr").row(0, named=True)
    assert dipr["n"] == 3 and abs(dipr["mean"] - 0.91) < 1e-9  # 0.10.0's runs alone, not 8 runs averaged
    [left_out] = superseded_runs(table)
    assert left_out == {"task": "digits-mlp", "method": "dipr", "runs": 5, "versions": OLD, "newer": NEW}
    analysis = analyze(table, resamples=50)
    assert analysis["runs"]["finished"] == 8 and analysis["superseded"] == [left_out]
    [comparison] = [m for m in analysis["tasks"][0]["comparisons"] if m["method"] == "dipr"]
    assert comparison["n_pairs"] == 3


def test_one_version_per_configuration_leaves_everything_in():
    records = [r for r in mixed_records() if r.get("plugin_versions") != OLD]
    table = runs_table(records)
    assert current_runs(table).height == table.height == 8 and superseded_runs(table) == []
    # configurations of different methods may each be at their own versions
    records += [synthetic_record("digits-mlp", "dipr", s, 0.6, versions=OLD, hyperparameters={"dipr": {"lam": 1.0}})
                for s in range(3)]
    assert current_runs(runs_table(records)).height == 11


def test_the_report_names_the_versions_and_the_runs_it_left_out(tmp_path):
    store = Store(tmp_path / "results")
    for record in mixed_records():
        store.put(record)
    folder = write_report(store, tmp_path / "reports", "mixed", plots=False, resamples=50)
    text = (folder / "index.md").read_text()
    assert "Runs: 8 finished, 0 diverged, 0 failed" in text and "5 runs of older plugin versions left out" in text
    assert "Plugin versions: results format 3; dipr 0.10.0; none 0.1.0." in text
    assert ("Left out of every statistic: 5 runs superseded by runs of newer plugin versions of the same task and "
            "configuration") in text
    assert ("5 of dipr on digits-mlp (results format 3, dipr 0.9.0; newer: results format 3, dipr 0.10.0)"
            in text)
    # results.csv keeps every run with its versions, and a report read from it counts the same
    csv_table = read_runs_table(folder / "results.csv")
    assert csv_table.height == 13 and set(csv_table["versions"].unique()) == {json.dumps(v, sort_keys=True)
                                                                               for v in (OLD, NEW, NONE)}
    assert analyze(csv_table, resamples=50)["runs"]["finished"] == 8


def test_results_summary_says_how_many_runs_it_left_out(tmp_path, capsys):
    from benchsuite.cli import main

    store = Store(tmp_path / "results")
    for record in mixed_records():
        store.put(record)
    assert main(["results", "--results", str(store.root), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "left out: 5 runs superseded by newer plugin versions" in out
    [dipr] = [line for line in out.splitlines() if line.startswith("digits-mlp") and " dipr " in line]
    assert dipr.split()[3] == "3" and "0.91 ±" in dipr  # n and mean of dipr 0.10.0's runs alone


def test_prune_moves_the_superseded_runs_out_and_keeps_them(tmp_path, capsys):
    from benchsuite.cli import main

    store = Store(tmp_path)
    for record in mixed_records():
        store.put(record)
    old_ids = {r["run_id"] for r in mixed_records() if r["plugin_versions"] == OLD}
    assert main(["prune", "--results", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5 of dipr on digits-mlp: results format 3, dipr 0.9.0 (newer: results format 3, dipr 0.10.0)" in out
    assert "would move 5 superseded runs" in out and len(list(store.records())) == 13
    with store.claim(sorted(old_ids)[0]):  # a run another process holds stays where it is
        assert main(["prune", "--results", str(tmp_path)]) == 0
    assert "moved 4 superseded runs" in capsys.readouterr().out
    assert main(["prune", "--results", str(tmp_path)]) == 0
    assert "moved 1 superseded runs" in capsys.readouterr().out
    kept = {r["run_id"] for r in store.records()}
    assert len(kept) == 8 and not kept & old_ids
    moved = {json.loads(p.read_text())["run_id"] for p in (tmp_path / "superseded").glob("*.json")}
    assert moved == old_ids  # kept whole, out of runs/
    table = runs_table(store.records())
    assert superseded_runs(table) == [] and current_runs(table).height == 8
    assert main(["prune", "--results", str(tmp_path)]) == 0
    assert "moved 0 superseded runs" in capsys.readouterr().out
    # the same ids stored again and moved again: the earlier copies are not overwritten
    for record in mixed_records():
        if record["run_id"] in old_ids:
            store.put(record)
    assert main(["prune", "--results", str(tmp_path)]) == 0
    assert len(list((tmp_path / "superseded").glob("*.json"))) == 10
