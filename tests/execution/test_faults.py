"""Faults and bad input as a new user meets them: exit codes, clear messages, broken
plugins skipped, the plugin contract enforced at run time, the numeric environment."""

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest
import torch

from benchsuite import Plugin, hookimpl
from benchsuite import plugins as plugin_registry
from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.execution import engine, environment
from benchsuite.report.plots import slug
from benchsuite.testing import available_with, method_of, run_task, tiny_task_spec

FAST = ["--task", "digits-mlp", "--epochs", "1", "--subset", "100", "--seeds", "1", "--quiet"]


# --- exit codes -------------------------------------------------------------------------------

class Raises(Plugin):
    name = "raises"

    @hookimpl
    def penalty(self, model, run):
        raise ZeroDivisionError("plugin bug")


def test_lost_runs_exit_1_unless_allowed(tmp_path, capsys, monkeypatch):
    with_raises = available_with(Raises)
    monkeypatch.setattr(plugin_registry, "discover", lambda: with_raises)
    assert main(["run", "-p", "raises", *FAST, "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed: digits-mlp raises seed=0" in err and "--allow-failures" in err
    assert main(["run", "-p", "raises", *FAST, "--allow-failures", "--results", str(tmp_path)]) == 0
    assert main(["run", *FAST, "-p", "l2", "--results", str(tmp_path)]) == 0  # all finished


# --- bad input and OS errors: exit 2, one line --------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["run", "-p", "l2", *FAST, "--results", ""], "--results: empty folder name"),
    (["run", "-p", "l2", *FAST, "--tasks-dir", "/no/such/dir"],
     "tasks folder '/no/such/dir' (--tasks-dir): no such folder"),
    (["run", "-p", "l2", *FAST, "--checkpoint-interval", "nan"], "--checkpoint-interval"),
    (["run", "-p", "l2", *FAST, "--train", "weight_decay=-1"], "train.weight_decay must be >= 0"),
    (["run", "-p", "l2", *FAST, "--train", "nosuch=1"], "--train nosuch: unknown [train] key"),
    (["run", "-p", "l2", *FAST, "--seeds", "100000000"], "must be an integer from 1 to 10000"),
])
def test_bad_options_exit_2(tmp_path, capsys, args, message):
    assert main(args + (["--results", str(tmp_path / "r")] if "--results" not in args else [])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "runs").exists()


def test_os_errors_are_one_line_messages(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["run", "-p", "l2", *FAST, "--results", str(afile)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["run", "-p", "l2", *FAST, "--results", str(tmp_path / ("x" * 300))]) == 2
    assert "name too long" in capsys.readouterr().err.lower()
    assert main(["results", "--results", str(tmp_path), "--out", str(tmp_path / "nodir" / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchsuite results: error:") and "Traceback" not in err
    assert main(["leaderboard", "--results", str(tmp_path), "-o", str(tmp_path / "nodir" / "x.md")]) == 2
    assert "benchsuite leaderboard: error:" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path), "--out", str(afile), "--no-plots"]) == 2
    assert "benchsuite report: error:" in capsys.readouterr().err


# --- matrix files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("runs = [1, 2]", "runs must be [[runs]] tables"),
    ('[runs]\ntasks = ["digits-mlp"]\nplugins = ["l2"]', "write each group as [[runs]]"),
    ('seeds = "3"\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]', "a count is a number (seeds = 5)"),
    ('seeds = 2.5\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]', "seeds must be an integer"),
    ('seeds = 100000000\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]', "from 1 to 10000"),
    ('[[runs]]\ntasks = "digits-mlp"\nplugins = ["l2"]', "tasks must be a list of strings, e.g."),
    ('[[runs]]\ntasks = ["digits-mlp"]\nplugins = "l2"', "plugins must be a list of strings"),
    ('[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\nbaseline = "false"', "baseline must be true or false"),
])
def test_bad_matrix_files_exit_2_with_a_message(tmp_path, capsys, body, message):
    matrix = tmp_path / "m.toml"
    matrix.write_text(body + "\n")
    assert main(["run", "--matrix", str(matrix), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_a_matrix_folder_is_refused(tmp_path, capsys):
    assert main(["run", "--matrix", str(tmp_path), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "a folder; give a matrix file" in capsys.readouterr().err


# --- weight decay replaced by a method, --train overrides ------------------------------------------

def test_wd_on_a_task_with_weight_decay_runs_with_it_zeroed(tmp_path, capsys):
    args = ["run", "-p", "wd", *FAST, "--train", "weight_decay=1e-3", "--results", str(tmp_path)]
    assert main(args) == 0
    records = {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "runs").glob("*.json")))}
    assert records["wd"]["task_spec"]["train"]["weight_decay"] == 0.0 and records["wd"]["status"] == "finished"
    assert records["none"]["task_spec"]["train"]["weight_decay"] == 1e-3


def test_train_overrides_are_part_of_the_identity():
    task = tiny_task_spec()
    plain = engine.make_run_spec(task, method_of("l2"), 0)
    other = engine.make_run_spec(task.with_overrides(momentum=0.5), method_of("l2"), 0)
    assert plain.run_id != other.run_id


# --- broken plugins ------------------------------------------------------------------------------

def test_broken_plugins_are_reported_and_skipped(tmp_path, monkeypatch, capsys):
    (tmp_path / "bs_bad_default.py").write_text(
        "from benchsuite import Hyperparameter, Plugin\n"
        "class Bad(Plugin):\n    name = 'baddefault'\n    hyperparameters = (Hyperparameter('k', int, 2.5),)\n")
    (tmp_path / "bs_dups.py").write_text(
        "from benchsuite import Plugin\nclass A(Plugin):\n    name = 'dup'\nclass B(Plugin):\n    name = 'dup'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def entry_points(group):
        extra = [importlib.metadata.EntryPoint(name, value, group) for name, value in (
            ("ghost", "no_such_module_xyz:Ghost"), ("baddefault", "bs_bad_default:Bad"),
            ("dup", "bs_dups:A"), ("dup", "bs_dups:B"))]
        return list(real(group=group)) + extra

    monkeypatch.setattr(plugin_registry.importlib.metadata, "entry_points", entry_points)
    found = plugin_registry.discover()
    assert {"l2", "wd"} <= set(found) and not {"ghost", "baddefault", "dup"} & set(found)
    assert "ModuleNotFoundError" in found.broken["ghost"].reason
    assert "k" in found.broken["baddefault"].reason and "2.5" in found.broken["baddefault"].reason
    assert "two installed plugins are named 'dup'" in found.broken["dup"].reason
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "plugin 'ghost'" in captured.err and "skipped" in captured.err and "l2" in captured.out
    assert main(["run", "-p", "l2", *FAST, "--dry-run", "--results", str(tmp_path / "r")]) == 0
    assert main(["run", "-p", "ghost", *FAST, "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "plugin 'ghost' (unknown distribution) is broken: loading no_such_module_xyz:Ghost failed" in \
        capsys.readouterr().err


def test_hook_methods_without_hookimpl_are_warned_about():
    class Unmarked(Plugin):
        name = "unmarked"

        def penalty(self, model, run):
            return None

    info = available_with(Unmarked)["unmarked"]
    assert info.hooks == []
    assert "penalty named like hooks lack @hookimpl" in info.describe()["warnings"][0]
    from benchsuite.testing import check_conformance

    with pytest.warns(UserWarning, match="lack @hookimpl"):
        check_conformance("unmarked", available=available_with(Unmarked))


# --- the penalty and metrics contract at run time --------------------------------------------------

def _penalty_plugin(value):
    class P(Plugin):
        name = "bad"

        @hookimpl
        def penalty(self, model, run):
            return value(model)

    return P


@pytest.mark.parametrize("value, message", [
    (lambda model: 0.5, "must return a 0-dim floating tensor or None, got float 0.5"),
    (lambda model: torch.ones(3, requires_grad=True), "got a tensor of shape (3,)"),
    (lambda model: sum(p.sum() for p in model.parameters()).detach() + 1, "detached from the autograd graph"),
])
def test_penalty_contract_is_enforced_naming_plugin_and_hook(value, message):
    factory = _penalty_plugin(value)
    record = run_task("bad", tiny_task_spec(epochs=1), available=available_with(factory)).record
    assert record["status"] == "failed"
    assert record["error"].startswith("PluginError: plugin 'bad', hook penalty:") and message in record["error"]


def test_metrics_must_be_numbers_and_errors_name_the_plugin():
    class M(Plugin):
        name = "m"

        @hookimpl
        def metrics(self, model, run):
            return {"x": "high"}

    class Boom(Plugin):
        name = "boom"

        @hookimpl
        def post_step(self, model, optimizer, run):
            raise KeyError("k")

    record = run_task("m", tiny_task_spec(epochs=1), available=available_with(M)).record
    assert "plugin 'm', hook metrics: value 'x' must be a number" in record["error"]
    record = run_task("boom", tiny_task_spec(epochs=1), available=available_with(Boom)).record
    assert "plugin 'boom', hook post_step: KeyError" in record["error"]


# --- numeric environment, determinism, oversubscription ----------------------------------------------

def test_records_and_tables_carry_the_numeric_environment(tmp_path):
    from benchsuite.store import Store

    record = run_task("none", tiny_task_spec(epochs=1)).record
    env = record["environment"]
    for key in ("cpu", "blas", "threads", "cores", "deterministic", "torch", "cuda", "cudnn", "parallel_backend"):
        assert key in env
    store = Store(tmp_path)
    store.put(record)
    label = store.table()["environment"][0]
    assert env["cpu"] in label and f"{env['threads']} threads" in label


def test_deterministic_rerun_is_bitwise_identical():
    spec = engine.make_run_spec(tiny_task_spec(epochs=2, optimizer="sgd", lr=0.1, momentum=0.9),
                                method_of("l2"), 0)
    options = engine.ExecutionOptions(deterministic=True, threads=1)
    threads = torch.get_num_threads()
    try:
        first, second = engine.execute(spec, options=options), engine.execute(spec, options=options)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert first["environment"]["deterministic"] and first["environment"]["threads"] == 1
    drop = ("seconds",)
    curves = [[{k: v for k, v in row.items() if k not in drop} for row in r["curves"]] for r in (first, second)]
    assert json.dumps(curves[0]) == json.dumps(curves[1])
    assert json.dumps(first["metrics"]) == json.dumps(second["metrics"])


def test_oversubscription_is_detected():
    assert environment.oversubscription({"cores": 2, "threads": 4, "load": 0.0}) == "4 torch threads on 2 cores"
    assert "exceeds its 2 cores" in environment.oversubscription({"cores": 2, "threads": 1, "load": 6.0})
    assert environment.oversubscription({"cores": 2, "threads": 2, "load": 1.0}) is None


def test_figure_names_never_collide():
    long_a, long_b = "t" * 130 + "a", "t" * 130 + "b"
    assert slug("curves", long_a) != slug("curves", long_b)
    assert slug("curves", "tâche") != slug("curves", "tåche")
    assert slug("curves", "digits-mlp") == "curves-digits-mlp"  # plain names unchanged


def test_usage_error_for_unknown_names_still_exit_2(capsys):
    with pytest.raises(UsageError):
        plugin_registry.resolve(["nope"], plugin_registry.discover())
    assert sys.platform  # the module imports on every platform
