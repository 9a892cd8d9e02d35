"""The command line: end to end, bad input (exit code 2), kill and resume."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers import REPO, wait_for

from benchsuite import Plugin, hookimpl
from benchsuite import plugins as plugin_registry
from benchsuite.cli import main
from benchsuite.testing import available_with

FAST = ["--task", "digits-mlp", "--epochs", "1", "--subset", "200", "--quiet"]


def run_cli(*args, results=None):
    argv = list(args) + (["--results", str(results)] if results is not None else [])
    return main(argv)


def test_run_summary_and_results(tmp_path, capsys):
    assert run_cli("run", "-p", "l2", "-p", "wd", "--seeds", "2", *FAST, results=tmp_path) == 0
    out = capsys.readouterr().out
    assert "6 runs executed, 0 already done" in out
    lines = [line for line in out.splitlines() if line.startswith("digits-mlp")]
    assert [line.split()[1] for line in lines] == ["none", "l2", "wd"]
    assert all(" 2  " in line and "±" in line for line in lines)

    assert run_cli("run", "-p", "l2", "-p", "wd", "--seeds", "2", *FAST, results=tmp_path) == 0
    assert "0 runs executed, 6 already done" in capsys.readouterr().out

    assert run_cli("results", "--out", str(tmp_path / "r.parquet"), results=tmp_path) == 0
    table = pl.read_parquet(tmp_path / "r.parquet")
    assert table.height == 6 and set(table["method"]) == {"none", "l2", "wd"}
    assert run_cli("results", "--out", str(tmp_path / "r.csv"), "--method", "l2", results=tmp_path) == 0
    assert pl.read_csv(tmp_path / "r.csv").height == 2


def test_report_writes_markdown_summary(tmp_path, capsys):
    run_cli("run", "-p", "l1", "--seeds", "2", *FAST, results=tmp_path / "res")
    assert main(["report", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "reports"), "--name", "x"]) == 0
    text = (tmp_path / "reports" / "x" / "index.md").read_text()
    assert "## digits-mlp" in text and "| `l1` | ✓ | 2 |" in text and "| `none` | ✓ | 2 |" in text
    assert "| `l1` | 2/2 |" in text  # the comparison with the baseline, two paired seeds
    assert pl.read_csv(tmp_path / "reports" / "x" / "results.csv").height == 4


def test_dry_run_lists_runs_and_trains_nothing(tmp_path, capsys):
    assert run_cli("run", "-p", "l2", "--seeds", "3", "--dry-run", *FAST, results=tmp_path) == 0
    out = capsys.readouterr().out
    assert "6 runs: 0 done, 6 pending" in out and "6 without an estimate" in out
    assert not (tmp_path / "runs").exists()


def test_dry_run_estimates_cost_from_stored_runs_of_the_task(tmp_path, capsys):
    assert run_cli("run", "-p", "l2", "--seeds", "1", *FAST, results=tmp_path) == 0
    capsys.readouterr()
    assert run_cli("run", "-p", "l2", "-p", "l1", "--seeds", "3", "--jobs", "2", "--dry-run", *FAST,
                   results=tmp_path) == 0
    out = capsys.readouterr().out
    pending = [line for line in out.splitlines() if " pending " in line]
    assert len(pending) == 7 and all("~" in line for line in pending)
    assert "9 runs: 2 done, 7 pending; estimated" in out and "with --jobs 2" in out


def test_failing_plugin_in_a_matrix_is_recorded_and_the_matrix_goes_on(tmp_path, capsys, monkeypatch):
    class Raises(Plugin):
        name = "raises"

        @hookimpl
        def penalty(self, model, run):
            raise ZeroDivisionError("plugin bug")

    with_raises = available_with(Raises)
    monkeypatch.setattr(plugin_registry, "discover", lambda: with_raises)
    assert run_cli("run", "-p", "raises", "-p", "l2", "--seeds", "1", *FAST, results=tmp_path) == 1  # a run lost
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    by_method = {r["method"]: r for r in records}
    assert by_method["raises"]["status"] == "failed"
    assert "ZeroDivisionError: plugin bug" in by_method["raises"]["traceback"]
    assert by_method["l2"]["status"] == by_method["none"]["status"] == "finished"


class NeedsRegression(Plugin):
    """Rejects classification tasks in configure, the way a real plugin rejects a task."""

    name = "needs-regression"

    @hookimpl
    def configure(self, run):
        if run.task.train.loss != "mse":
            raise ValueError(f"needs a regression task, {run.task.name!r} is not; choose one with loss = \"mse\"")


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_plugin_rejecting_a_task_exits_2_before_anything_trains(tmp_path, capsys, monkeypatch, dry_run):
    with_plugin = available_with(NeedsRegression)
    monkeypatch.setattr(plugin_registry, "discover", lambda: with_plugin)
    args = ["run", "-p", "needs-regression", "-p", "l2", "-t", "digits-mlp,toy-regression", "--seeds", "2",
            "--epochs", "1", "--quiet"] + (["--dry-run"] if dry_run else [])
    assert run_cli(*args, results=tmp_path) == 2
    err = capsys.readouterr().err
    # one line per rejected task and method, naming the plugin, the hook and the fix
    assert err.count("needs-regression on digits-mlp: plugin 'needs-regression', hook configure:") == 1
    assert "toy-regression:" not in err and 'choose one with loss = "mse"' in err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_preflight_checks_each_task_and_method_once_and_passes_what_it_accepts():
    from benchsuite.execution.engine import make_run_spec
    from benchsuite.execution.preflight import preflight
    from benchsuite.testing import method_of, tiny_task_spec

    calls = []

    class Counts(Plugin):
        name = "counts"

        @hookimpl
        def configure(self, run):
            calls.append((run.task.name, run.seed))

    available = available_with(Counts)
    task = tiny_task_spec()
    specs = [make_run_spec(task, method_of("counts", available=available), seed, available) for seed in range(3)]
    assert preflight(specs, "cpu", available) == [] and len(calls) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "-p", "nope", "-t", "digits-mlp"], "unknown plugin 'nope' (did you mean 'none'?); installed plugins:"),
        (["run", "-p", "l2", "-t", "nope"], "unknown task 'nope'; available tasks:"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--set", "l2.mu=1"],
         "--set: unknown hyperparameter l2.mu; valid for l2: lam"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--set", "l2.lam=big"], "'big' is not a valid float"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--set", "l2.lam=-3"], "out of range (allowed: [0, inf))"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--grid", "l2.lam=1,x"], "'x' is not a valid float"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--set", "wd.lam=1"], "plugin 'wd' is not selected"),
        (["run", "-t", "digits-mlp"], "no method selected"),
        (["run", "-p", "l2"], "no task selected"),
        (["run", "-p", "l2", "-t", "digits-mlp", "--device", "tpu"], "--device 'tpu'"),
        (["results", "--out", "out.xlsx"], "--out 'out.xlsx': use a .csv or .parquet file name"),
        (["report", "--name", "../x"], "use a plain folder name"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, args, message):
    assert run_cli(*args, results=tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("args", [["run", "-p", "l2", "--seeds", "0"], ["run", "--epochs", "x"], ["frobnicate"]])
def test_argument_errors_exit_2(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_plugins_and_tasks_listings(capsys):
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["wd"]["hooks"] == ["configure", "modify_grad"]
    assert listed["l1"]["hyperparameters"][0]["range"] == "[0, inf)"
    assert main(["plugins"]) == 0
    assert "l2.lam: float = 0.0001, range [0, inf)" in capsys.readouterr().out
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("toy-regression", "boston-mlp", "mnist5k-mlp", "digits-mlp"))
    assert main(["tasks", "--json"]) == 0
    assert {t["name"] for t in json.loads(capsys.readouterr().out)} >= {"digits-mlp"}


def _count_done(runs: Path) -> int:
    return len(list(runs.glob("*.json"))) if runs.is_dir() else 0


def test_killed_run_resumes_without_redoing_or_corrupting_finished_runs(tmp_path, capsys):
    """SIGKILL the CLI mid-matrix, rerun: finished records are untouched, the rest done. The
    kill lands as the second record appears; the rerun runs in this process."""
    run = ["run", "-p", "l2", "-p", "l1", "--seeds", "4", "--task", "digits-mlp", "--epochs", "3", "--quiet",
           "--results", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", *run], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    runs = tmp_path / "runs"
    try:
        wait_for(lambda: _count_done(runs) >= 2, proc, "second stored record")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs.glob("*.json")}
    assert 2 <= len(before) < 12, "the kill should land mid-matrix"
    for _, blob in before.values():
        assert json.loads(blob)["status"] == "finished"

    capsys.readouterr()
    assert main(run) == 0, capsys.readouterr().err
    assert f"{12 - len(before)} runs executed, {len(before)} already done" in capsys.readouterr().out
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs.glob("*.json")}
    assert len(after) == 12
    for name, state in before.items():
        assert after[name] == state  # never rewritten
    assert not list(runs.glob("*.tmp"))


def test_matrix_run_and_its_errors(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('seeds = 2\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\n')
    assert run_cli("run", "--matrix", str(matrix), "--epochs", "1", "--subset", "100", "--quiet",
                   results=tmp_path / "r") == 0
    assert "4 runs executed" in capsys.readouterr().out
    table2 = REPO / "tasks" / "matrices" / "wc-table2.toml"
    assert run_cli("run", "--matrix", str(table2), "--data-dir", str(tmp_path / "none"), results=tmp_path / "r") == 2
    assert "CIFAR-10 is missing or corrupt" in capsys.readouterr().err
    assert run_cli("run", "--matrix", str(matrix), "-p", "l1", results=tmp_path / "r") == 2
    assert "drop --plugin" in capsys.readouterr().err


def test_report_labels_name_the_grid_axis_and_show_plugin_metrics(tmp_path, capsys):
    results, reports = tmp_path / "res", tmp_path / "reports"
    run_cli("run", "-p", "l2", "--grid", "l2.lam=1e-4,1e-2", "--seeds", "1", *FAST, results=results)
    run_cli("run", "-p", "l1", "--seeds", "1", *FAST, results=results)
    assert main(["report", "--results", str(results), "--out", str(reports), "--name", "g"]) == 0
    text = (reports / "g" / "index.md").read_text()
    assert "| `l2(lam=0.0001)` |  | 1 |" in text or "| `l2(lam=0.0001)` | ✓ | 1 |" in text
    assert "| `l2(lam=0.01)` |" in text
    assert "| `l1` | ✓ | 1 |" in text  # a single configuration: its name, values in the Methods table
    assert "| digits-mlp | `l1` | `l1(lam=1e-05)` |" in text


def test_runs_of_different_task_recipes_are_never_averaged_together(tmp_path, capsys):
    results = tmp_path / "res"
    run_cli("run", "-p", "l2", "--seeds", "1", *FAST, results=results)
    run_cli("run", "-p", "l2", "--seeds", "1", "--task", "digits-mlp", "--epochs", "2", "--subset", "200",
            "--quiet", results=results)
    capsys.readouterr()
    assert main(["results", "--results", str(results), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp [train.epochs=1]" in out and "digits-mlp [train.epochs=2]" in out


def test_every_option_of_every_command_has_help():
    import argparse

    from benchsuite.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"benchsuite {name} {action.option_strings[0]} has no help"


def test_results_fit_an_80_column_terminal_and_json_and_wide_keep_every_column(tmp_path, capsys, monkeypatch):
    from benchsuite.store import Store
    from benchsuite.testing import synthetic_record

    store = Store(tmp_path)
    hp = {"partialreg": {"variant": "igl", "lam": 0.0001, "ratio_of_zeros": 0.125, "threshold": 0.001}}
    other = {"partialreg": {"variant": "sgl", "lam": 0.001, "ratio_of_zeros": 0.25, "threshold": 0.01}}
    for seed in range(3):  # two configurations that differ in every value: long names
        store.put(synthetic_record("mnist5k-noisy-mlp", "partialreg", seed, 0.71, hyperparameters=hp))
        store.put(synthetic_record("mnist5k-noisy-mlp", "partialreg", seed, 0.70, hyperparameters=other))
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["results", "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[0].split()[:4] == ["task", "method", "seed", "status"]
    assert max(len(line) for line in lines) <= 80 and "…" in lines[1]
    assert main(["results", "--results", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and rows[0]["name"].startswith("partialreg(lam=") and rows[0]["test"] in (0.7, 0.71)
    assert {json.dumps(json.loads(row["hyperparameters"]), sort_keys=True) for row in rows} == {
        json.dumps(hp, sort_keys=True), json.dumps(other, sort_keys=True)}
    assert main(["results", "--results", str(tmp_path), "--wide"]) == 0
    assert "shape: (6, 23)" in capsys.readouterr().out  # every column but run_id, method and error


def test_run_and_its_dry_run_speak_json(tmp_path, capsys):
    args = ["run", "--plugin", "l2", "--task", "toy-regression", "--epochs", "2", "--seeds", "2",
            "--results", str(tmp_path), "-q", "--json"]
    assert main(args + ["--dry-run"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert (planned["pending"], planned["done"], len(planned["runs"])) == (4, 0, 4)
    assert {r["method"] for r in planned["runs"]} == {"none", "l2"} and not any(r["done"] for r in planned["runs"])
    assert main(args) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran["executed"] == 4 and {r["status"] for r in ran["runs"]} == {"finished"}
    assert main(args + ["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 4


def test_collect_json_gives_what_the_text_form_prints(tmp_path, capsys, monkeypatch):
    """Four submitted runs (one submitted twice): finished and failed ones by their records,
    a running job, and a job that ended without a record (lost, with its last error line)."""
    from types import SimpleNamespace

    from benchsuite.execution import cluster
    from benchsuite.store import Store
    from benchsuite.testing import synthetic_record

    store = Store(tmp_path)
    finished = synthetic_record("digits-mlp", "l2", 0, 0.9)
    failed = {**synthetic_record("digits-mlp", "l2", 1, None, status="failed"), "error": "ValueError: boom"}
    for record in (finished, failed):
        store.put(record)
    entries = [{"run_id": run_id, "job_id": job, "mode": "slurm", "folder": str(tmp_path), "task": "digits-mlp",
                "method": "l2", "seed": seed, "submitted": "2025-01-01T00:00:00+00:00"}
               for run_id, job, seed in ((finished["run_id"], "7_0", 0), (failed["run_id"], "7_1", 1),
                                         ("lostrun", "7_2", 2), ("lostrun", "8_0", 2), ("busyrun", "8_1", 3))]
    cluster.jobs_file(store).parent.mkdir(parents=True)
    cluster.jobs_file(store).write_text("".join(json.dumps(e) + "\n" for e in entries))
    states = {"7_2": "RUNNING", "8_0": "COMPLETED", "8_1": "RUNNING"}
    monkeypatch.setattr(cluster, "job_state", lambda entry: states.get(entry["job_id"], "COMPLETED"))
    job = SimpleNamespace(stderr=lambda: "start\nKilled (out of memory)\n")
    monkeypatch.setattr(cluster, "submitted_job", lambda entry: job)

    assert main(["collect", "--results", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert main(["collect", "--results", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["submitted"], out["lost"]) == (4, 2) and out["results"] == str(tmp_path)
    assert out["counts"] == {"RUNNING": 1, "failed": 1, "finished": 1, "lost": 1}
    assert f"4 submitted runs: {', '.join(f'{n} {s}' for s, n in out['counts'].items())}" in text
    runs = {r["run_id"]: r for r in out["runs"]}
    assert runs["lostrun"]["job_id"] == "8_0"  # the latest submission
    assert (runs[failed["run_id"]]["error"], runs["lostrun"]["error"]) == ("ValueError: boom", "Killed (out of memory)")
    assert runs[finished["run_id"]]["error"] is None and runs["busyrun"]["error"] is None
    for run in out["runs"]:  # every run's line in the text form says the same
        line = (f"{run['run_id']}  {run['state']:<10} {run['task']}  {run['method']}  seed={run['seed']}  "
                f"job {run['job_id']}")
        assert line + (f"\n    {run['error']}" if run["error"] else "\n") in text + "\n"
    assert main(["collect", "--results", str(tmp_path), "--json", "--allow-failures"]) == 0


def test_completion_scripts_know_every_command_and_bash_completes_them(capsys):
    import argparse
    import shutil

    from benchsuite.cli import SHELLS, build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    scripts = {}
    for shell in SHELLS:
        assert main(["completion", shell]) == 0
        scripts[shell] = capsys.readouterr().out
        assert all(name in scripts[shell] for name in commands), shell
    assert {"run", "collect", "completion"} <= set(commands) and all("--force" in scripts[s] for s in ("bash", "zsh"))
    # the convention's spellings, not the old ones (hidden, deprecated)
    assert all("--out" in scripts[s] and "--export" not in scripts[s] and "--output" not in scripts[s]
               for s in ("bash", "zsh"))
    assert "complete benchsuite" in scripts["tcsh"]  # tcsh: commands and file arguments only
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the bash completion"
    probe = 'COMP_WORDS=(benchsuite {words}); COMP_CWORD={n}; _shtab_benchsuite; echo "${{COMPREPLY[*]}}"'
    script = scripts["bash"] + "\n" + "\n".join(probe.format(words=w, n=len(w.split()))
                                                for w in ("r", "co", "run --fo", "collect --j", "results --o",
                                                          "leaderboard --js"))
    done = subprocess.run([bash, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:6] == ["run results report", "collect completion", "--force", "--json", "--out",
                                           "--json"]
    with pytest.raises(SystemExit) as exc:
        main(["completion", "fish"])
    assert exc.value.code == 2


def test_the_data_cache_folder_is_the_option_else_the_variables_else_the_users_cache(monkeypatch, tmp_path):
    from benchsuite.cli import build_parser, defaults
    from benchsuite.cli.run import run_arguments

    for name in ("BENCHSUITE_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert defaults.cache_dir(None) == tmp_path / "home" / ".cache" / "benchsuite"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG specification asks
    assert defaults.cache_dir(None) == tmp_path / "home" / ".cache" / "benchsuite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_dir(None) == tmp_path / "xdg" / "benchsuite"
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path / "env"))
    assert defaults.cache_dir(None) == tmp_path / "env"
    assert defaults.cache_dir(str(tmp_path / "given")) == tmp_path / "given"
    parser = build_parser()
    assert run_arguments(parser.parse_args(["run", "--cache-dir", str(tmp_path / "o")]))["cache_dir"] == tmp_path / "o"
    assert run_arguments(parser.parse_args(["run"]))["cache_dir"] == tmp_path / "env"
    assert run_arguments(parser.parse_args(["run", "--no-data-cache"]))["cache_dir"] is None
    assert defaults.data_options(parser.parse_args(["claims", "--no-data-cache"])).cache_dir is None
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--no-data-cache", "--cache-dir", "x"])
