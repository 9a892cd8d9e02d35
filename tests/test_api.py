"""The Python API (benchsuite.api): docs/python-api.md runs as written; the API gives the
command line's run ids, raises instead of printing, and reads no environment variable."""

import collections.abc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers import claim_of

import benchsuite
from benchsuite import api
from benchsuite.cli import main
from benchsuite.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"
QUICK = {"epochs": 1, "subset": 100, "seeds": 2}


def test_every_python_block_of_the_api_page_runs_in_order(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "python_api_page"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{PAGE}:block {index + 1}", "exec"), namespace)
    out, err = capsys.readouterr()
    assert "9 runs trained, 0 already stored" in out and "3 new runs" in out
    assert "refused: unknown plugin 'no-such-plugin'" in out and "no such results folder" in out
    assert (tmp_path / "reports" / "toy" / "index.md").is_file()
    assert "Traceback" not in err


def test_the_top_package_exposes_the_api_lazily_and_loads_no_torch():
    probe = ("import sys, benchsuite\n"
             "before = 'benchsuite.api' in sys.modules\n"
             "names = [benchsuite.run, benchsuite.open_results, benchsuite.analyze, benchsuite.write_report,\n"
             "         benchsuite.list_tasks, benchsuite.get_task]\n"
             "print(before, 'torch' in sys.modules, 'scipy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "False"]
    assert set(api.__all__) <= set(benchsuite.__all__) and all(hasattr(benchsuite, n) for n in benchsuite.__all__)
    with pytest.raises(AttributeError):
        benchsuite.no_such_name  # noqa: B018


def test_the_api_gives_the_command_lines_run_ids(tmp_path, capsys):
    """A notebook user naming a task and a plugin gets the ids `benchsuite run --task T
    --plugin P --seed S` gives, and so does a run spec written with the plugin's defaults
    left out (or an int where the plugin declares a float)."""
    from benchsuite.runs.identity import Method, make_run_spec

    assert main(["run", "--task", "toy-regression", "--plugin", "l2", "--plugin", "wd", "--seed", "0,3",
                 "--dry-run", "--json", "--results", str(tmp_path)]) == 0
    cli_ids = [run["run_id"] for run in json.loads(capsys.readouterr().out)["runs"]]
    listed = api.run("toy-regression", ["l2", "wd"], seeds=[0, 3], dry_run=True, results=tmp_path)
    assert [spec.run_id for spec in listed.runs] == cli_ids and len(cli_ids) == 6
    task = api.get_task("toy-regression")
    by_hand = {make_run_spec(task, Method.of((name, values)), seed).run_id
               for name, values in (("none", {}), ("l2", {}), ("wd", {})) for seed in (0, 3)}
    assert by_hand == set(cli_ids)
    lam = benchsuite.plugins.discover()["l2"].hyperparameters["lam"].default
    assert make_run_spec(task, Method.of(("l2", {"lam": lam})), 0).run_id in cli_ids
    assert make_run_spec(task, Method.of(("l2", {})), 0).method.label == "l2"  # defaults hidden, as listed
    with pytest.raises(UsageError, match="unknown hyperparameter l2.lamb"):
        make_run_spec(task, Method.of(("l2", {"lamb": 1.0})), 0)
    matrix = tmp_path / "m.toml"
    matrix.write_text('description = "x"\nseeds = 2\n[[runs]]\ntasks = ["toy-regression"]\nplugins = ["l2"]\n'
                      'grid = ["l2.lam=1e-4,1e-3"]\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run", "--json", "--results", str(tmp_path)]) == 0
    from_file = [run["run_id"] for run in json.loads(capsys.readouterr().out)["runs"]]
    assert [s.run_id for s in api.run(matrix=matrix, dry_run=True, results=tmp_path).runs] == from_file
    gridded = api.run("toy-regression", "l2", seeds=2, grid={"l2.lam": [1e-4, 1e-3]}, dry_run=True, results=tmp_path)
    assert [s.run_id for s in gridded.runs] == from_file


def test_run_raises_and_prints_nothing(tmp_path, capsys):
    results = tmp_path / "r"
    with pytest.raises(UsageError, match="unknown plugin 'nosuch'"):
        api.run("toy-regression", "nosuch", results=results)
    with pytest.raises(UsageError, match="unknown task"):
        api.run("no-such-task", "l2", results=results)
    with pytest.raises(UsageError, match="lam"):
        api.run("toy-regression", "l2", hyperparameters={"l2.lam": -1.0}, results=results)
    with pytest.raises(UsageError, match="--tasks-dir"):
        api.run("toy-regression", "l2", tasks_dirs=[tmp_path / "none"], results=results)
    assert not results.exists()  # nothing written before the checks
    notes = []
    result = api.run("digits-mlp", "l2", **QUICK, results=results, notes=notes.append)
    out, err = capsys.readouterr()
    assert out == "" and "[1/4]" not in err  # no progress unless asked for
    assert len(result.executed) == 4 and not result.lost and result.table().height == 4
    assert set(result.records) == {s.run_id for s in result.runs}


def test_open_results_is_the_results_commands_table_and_converts_to_pandas(tmp_path, capsys):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    results = tmp_path / "r"
    api.run("digits-mlp", "wd", **QUICK, results=results)
    table = api.open_results(results)
    assert isinstance(table, pl.DataFrame) and table.height == 4
    assert main(["results", "--results", str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(table.to_dicts()))
    frame = table.to_pandas()
    assert list(frame.columns) == table.columns and len(frame) == 4
    assert sorted(frame["method"].unique()) == ["none", "wd"]
    assert frame.groupby("method")["test"].mean().notna().all()
    with pytest.raises(FileNotFoundError, match="no such results folder"):
        api.open_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert api.open_results(tmp_path / "empty").is_empty()


def test_analyze_and_write_report_are_what_the_report_command_writes(tmp_path):
    results = tmp_path / "r"
    api.run("digits-mlp", "l1", **QUICK, results=results)
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "cli"), "--name", "x",
                 "--no-plots"]) == 0
    folder = api.write_report(results, tmp_path / "api", "x", plots=False)
    assert folder == tmp_path / "api" / "x"
    cli, mine = (json.loads((tmp_path / where / "x" / "stats.json").read_text()) for where in ("cli", "api"))
    cli.pop("generated"), mine.pop("generated")
    assert mine == cli
    analysis = api.analyze(results)
    analysis.pop("generated")
    assert json.loads(json.dumps(analysis, default=str)) == json.loads(json.dumps(cli, default=str))
    assert [c["config"] for c in analysis["tasks"][0]["comparisons"]] == ["l1"]
    with pytest.raises(UsageError, match="--name"):
        api.write_report(results, tmp_path, "../x")
    with pytest.raises(UsageError, match="--margin"):
        api.analyze(results, margins={"nosuch": 1})


class RecordingEnviron(collections.abc.MutableMapping):
    """``os.environ`` that notes every BENCHSUITE_* variable read through it."""

    def __init__(self, real):
        self.real, self.read = real, set()

    def __getitem__(self, key):
        if str(key).startswith("BENCHSUITE"):
            self.read.add(key)
        return self.real[key]

    def __setitem__(self, key, value):
        self.real[key] = value

    def __delitem__(self, key):
        del self.real[key]

    def __iter__(self):
        return iter(self.real)

    def __len__(self):
        return len(self.real)

    def copy(self):
        return dict(self.real)


def test_run_reads_no_environment_variable(tmp_path, monkeypatch, fake_data_dir):
    """The data folder, the task folders and the results folder are arguments: bogus
    variables change nothing, none is even read, and the data options reach the loaders."""
    from benchsuite.tasks import datasets
    from benchsuite.tasks.real_data import DataMissing

    monkeypatch.chdir(tmp_path)
    for name, value in (("BENCHSUITE_DATA", "/nonexistent/data"), ("BENCHSUITE_TASKS", "/nonexistent/tasks"),
                        ("BENCHSUITE_RESULTS", "/nonexistent/results"), ("BENCHSUITE_DOWNLOAD", "1"),
                        ("BENCHSUITE_WORKERS", "-3"), ("BENCHSUITE_VERIFY_DATA", "0")):
        monkeypatch.setenv(name, value)
    recording = RecordingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", recording)
    with pytest.raises(DataMissing) as missing:  # ./data, the default, not $BENCHSUITE_DATA
        api.run("sdd-mlp", "l2", seeds=1, epochs=1, results="r")
    assert "data folder data:" in str(missing.value) and "/nonexistent" not in str(missing.value)
    datasets.load.cache_clear()
    try:
        result = api.run("sdd-mlp", "l2", seeds=1, epochs=1, subset=32, data_dir=fake_data_dir, verify_data=False,
                         results="r")
    finally:
        datasets.load.cache_clear()
    assert [r["status"] for r in result.records.values()] == ["finished", "finished"]
    assert result.results == Path("r") and (tmp_path / "r" / "runs").is_dir()
    assert recording.read == set()


def test_the_command_line_reads_the_variables_and_passes_their_values(tmp_path, monkeypatch, capsys):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny-digits.toml").write_text((ROOT / "tasks" / "digits-mlp.toml").read_text().replace(
        'name = "digits-mlp"', 'name = "tiny-digits"'))
    monkeypatch.setenv("BENCHSUITE_TASKS", str(tasks))
    monkeypatch.setenv("BENCHSUITE_RESULTS", str(tmp_path / "r"))
    assert main(["run", "-p", "l2", "--task", "tiny-digits", "--epochs", "1", "--subset", "100", "--seeds", "1",
                 "--dry-run"]) == 0
    assert "2 runs: 0 done, 2 pending" in capsys.readouterr().out
    with pytest.raises(UsageError, match="unknown task 'tiny-digits'"):
        api.run("tiny-digits", "l2", dry_run=True, results=tmp_path / "r")
    assert api.run("tiny-digits", "l2", dry_run=True, tasks_dirs=[tasks], results=tmp_path / "r").listing.to_run


def test_claims_hand_their_runs_to_api_run(tiny_tasks, tmp_path, monkeypatch):  # noqa: F811
    """``benchsuite claims`` runs its missing runs through api.run (explicit runs), with the
    command's data folder and settings: one run sequence for both commands."""
    from benchsuite.runs import claims as claim_mod

    claim = claim_of()
    monkeypatch.setattr(claim_mod, "load_claims", lambda available, plugins=None: ([claim], []))
    monkeypatch.setattr(claim_mod, "claims_without_importing", lambda: [claim])
    calls = []
    import benchsuite.api.claims as api_claims

    monkeypatch.setattr(api_claims, "run",
                        lambda **kwargs: calls.append(kwargs) or api.RunResult(Path(kwargs["results"])))
    assert main(["claims", "--results", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d"), "-q", "--json"]) == 0
    (call,) = calls
    assert len(call["runs"]) == 8 and call["data_dir"] == tmp_path / "d" and call["progress"] is False
    assert call["results"] == tmp_path / "r" and call["force"] is False


def test_the_commands_other_reads_are_api_calls_too(tmp_path):
    results = tmp_path / "results"
    api.run("toy-regression", "l2", seeds=2, epochs=1, results=results)
    assert "none" in api.list_plugins() and hasattr(api.list_plugins(), "broken")
    rows = api.plan_seeds(results, "5%")
    assert rows and all(row["task"] == "toy-regression" for row in rows)
    with pytest.raises(UsageError, match="larger than 0"):
        api.plan_seeds(results, "0")
    with pytest.raises(FileNotFoundError):
        api.plan_seeds(tmp_path / "nowhere", "5%")
    pruned = api.prune(results, dry_run=True)
    assert (pruned.run_ids, pruned.moved, pruned.folder) == ([], [], results / "superseded")
    assert api.collect(results) == []  # nothing submitted to a cluster
    with pytest.raises(UsageError, match="no such file"):
        api.update_excerpts([tmp_path / "missing.md"])
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    assert api.update_excerpts([page], check=True) == []


def test_what_the_api_notices_is_a_python_warning_and_the_command_line_prints_it(tmp_path, capfd):
    from benchsuite.errors import BenchsuiteWarning

    results = tmp_path / "results"
    api.run("toy-regression", "none", seeds=1, epochs=1, results=results, baseline=False)
    (results / "runs" / "torn.json").write_text("{not json")
    capfd.readouterr()
    with pytest.warns(BenchsuiteWarning, match="torn.json: not valid JSON"):
        assert len(api.open_results(results)) == 1
    assert capfd.readouterr().err == ""
    (results / "runs" / "torn2.json").write_text("[]")  # each problem is told once per process
    assert main(["results", "--results", str(results)]) == 0
    err = capfd.readouterr().err
    assert "benchsuite: warning:" in err and "torn2.json" in err


def test_claims_are_listed_and_judged_through_the_api(tmp_path):
    claims = api.list_claims(plugins=["wc"], tier="offline")
    assert claims and {claim.tier for claim in claims} == {"offline"}
    with pytest.raises(FileNotFoundError):
        api.judge_claims(tmp_path / "missing", plugins=["wc"], run_missing=False)
    (tmp_path / "empty").mkdir()
    judged = api.judge_claims(tmp_path / "empty", plugins=["wc"], tier="offline", run_missing=False,
                              out=tmp_path / "claims")
    assert len(judged.rows) >= len(claims) and judged.run is None and judged.runs == []
    assert {row["verdict"] for row in judged.rows} == {"not run"}
    assert (judged.folder / "claims.json").is_file()
