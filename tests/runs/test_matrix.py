"""From a command line's selection, or a matrix file, to runs."""

import re
import tomllib

import pytest
from helpers import REPO

from benchsuite.errors import UsageError
from benchsuite.execution.engine import Method
from benchsuite.plugins import discover
from benchsuite.runs.matrix import expand, load_matrix, parse_methods, parse_seeds
from benchsuite.tasks import registry
from benchsuite.testing import tiny_task_spec

AVAILABLE = discover()


def labels(methods):
    return [m.label for m in methods]


def test_each_plugin_is_a_method_and_the_baseline_joins_first():
    methods = parse_methods(["l2", "wd"], AVAILABLE)
    assert labels(methods) == ["none", "l2", "wd"]
    assert [m.full_label for m in methods] == ["none", "l2(lam=0.0001)", "wd(lam=0.01)"]
    assert labels(parse_methods(["l2"], AVAILABLE, baseline=False)) == ["l2"]
    assert labels(parse_methods(["none,l1"], AVAILABLE)) == ["none", "l1"]


def test_plus_combines_plugins_in_the_order_given():
    (_, combined) = parse_methods(["wd+l2"], AVAILABLE)
    assert combined.names == ["wd", "l2"]
    assert combined.label == "wd+l2"
    assert combined.full_label == "wd(lam=0.01)+l2(lam=0.0001)"


def test_set_and_grid_apply_to_methods_containing_the_plugin():
    methods = parse_methods(["l2", "l1"], AVAILABLE, sets=["l1.lam=0.5"], grids=["l2.lam=1e-5,1e-3"])
    assert labels(methods) == ["none", "l2(lam=1e-05)", "l2(lam=0.001)", "l1(lam=0.5)"]


def test_two_grids_make_a_cartesian_product():
    methods = parse_methods(["l2+l1"], AVAILABLE, grids=["l2.lam=1,2", "l1.lam=3,4"], baseline=False)
    assert labels(methods) == [
        "l2(lam=1)+l1(lam=3)", "l2(lam=1)+l1(lam=4)", "l2(lam=2)+l1(lam=3)", "l2(lam=2)+l1(lam=4)",
    ]


@pytest.mark.parametrize(
    "plugins, sets, grids, message",
    [
        ([], [], [], "no method selected"),
        (["l3"], [], [], "unknown plugin 'l3'"),
        (["l2+l2"], [], [], "appears twice"),
        (["l2"], ["l2.mu=1"], [], r"--set: unknown hyperparameter l2.mu; valid for l2: lam"),
        (["l2"], ["l2.lamda=1"], [], r"unknown hyperparameter l2.lamda \(did you mean 'lam'\?\); valid for l2: lam"),
        (["l2x"], [], [], r"unknown plugin 'l2x' \(did you mean 'l2'\?\); installed plugins"),
        (["l2"], ["l1.lam=1"], [], "plugin 'l1' is not selected"),
        (["l2"], ["l2.lam=abc"], [], "not a valid float"),
        (["l2"], ["l2.lam=-1"], [], "out of range"),
        (["l2"], ["lam=1"], [], "expected PLUGIN.NAME=VALUE"),
        (["l2"], [], ["l2.lam="], "no values"),
        (["l2"], ["l2.lam=1"], ["l2.lam=1,2"], "also fixed by --set"),
        (["l2"], ["l2.lam=1", "l2.lam=2"], [], r"--set l2.lam: given twice \(1.0 and 2.0\)"),
        (["none"], ["none.lam=1"], [], r"valid for none: none \(this plugin takes no hyperparameters\)"),
    ],
)
def test_bad_selections_are_rejected_before_training(plugins, sets, grids, message):
    with pytest.raises(UsageError, match=message):
        parse_methods(plugins, AVAILABLE, sets=sets, grids=grids)


def test_seeds():
    assert parse_seeds(3, None) == [0, 1, 2]
    assert parse_seeds(3, [7, 7, 2]) == [7, 2]
    with pytest.raises(UsageError):
        parse_seeds(0, None)


def test_expand_orders_task_then_seed_then_method_and_ids_are_unique():
    methods = [Method.of(("none", {})), Method.of(("l2", {"lam": 1e-4}))]
    task_a, task_b = tiny_task_spec(epochs=1), tiny_task_spec(epochs=2)
    specs = expand([task_a, task_b], methods, [0, 1], AVAILABLE)
    assert [(s.task.train.epochs, s.seed, s.method.name) for s in specs][:4] == [
        (1, 0, "none"), (1, 0, "l2"), (1, 1, "none"), (1, 1, "l2"),
    ]
    assert len({s.run_id for s in specs}) == 8


MATRICES = sorted(p for p in (REPO / "tasks" / "matrices").glob("*.toml")
                  if not p.name.endswith(".paper.toml"))


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_matrix_files_name_installed_plugins_and_valid_hyperparameters(path):
    raw = tomllib.loads(path.read_text())
    assert raw.get("description")
    for group in raw["runs"]:
        methods = parse_methods(group["plugins"], AVAILABLE, group.get("set", ()), group.get("grid", ()))
        assert methods


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_matrices_expand_or_say_which_tasks_are_not_available(path):
    named = {t for group in tomllib.loads(path.read_text())["runs"] for t in group["tasks"]}
    missing = sorted(named - set(registry()))
    if missing:
        with pytest.raises(UsageError, match="task not available: " + re.escape(", ".join(missing))):
            load_matrix(str(path), AVAILABLE)
    else:
        assert load_matrix(str(path), AVAILABLE, epochs=1)


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.stem)
def test_committed_matrices_pass_the_plugins_configure_checks(path):
    from benchsuite.execution.preflight import preflight

    specs = load_matrix(str(path), AVAILABLE, epochs=1)
    assert preflight(specs, "cpu", AVAILABLE) == []


def test_a_paper_reference_file_given_as_a_matrix_names_its_matrix():
    path = MATRICES[0].parent / "wc-table2.paper.toml"
    with pytest.raises(UsageError, match=r"reference numbers .* --matrix .*wc-table2\.toml$"):
        load_matrix(str(path), AVAILABLE)


def test_paper_scale_matrices_exist_for_the_tables():
    names = {p.stem for p in MATRICES}
    assert {f"wc-table{i}" for i in range(2, 8)} <= names
    assert {f"partialreg-table{i}" for i in range(2, 7)} <= names
    assert {"lpwd-table1", "lpwd-table3", "lpwd-zeroshot"} <= names
    assert {"gcsr-table2", "gcsr-table3", "gcsr-svhn", "gcsr-offline"} <= names
    assert {"dipr-table2", "dipr-offline"} <= names


def test_offline_matrix_expands_deterministically():
    path = str(MATRICES[0].parent / "wc-offline.toml")
    specs = load_matrix(path, AVAILABLE, epochs=1)
    assert len(specs) == 2 * 4 * 5  # tasks x (none, wc, pp, wn) x seeds
    assert [s.run_id for s in specs] == [s.run_id for s in load_matrix(path, AVAILABLE, epochs=1)]
    assert {s.task.train.epochs for s in specs} == {1}
    assert len(load_matrix(path, AVAILABLE, seeds=2)) == 2 * 4 * 2


@pytest.mark.parametrize(
    "text, message",
    [
        ('seeds = 1\n', "no \\[\\[runs\\]\\] groups"),
        ('[[runs]]\ntasks = ["digits-mlp"]\n', "needs 'tasks' and 'plugins'"),
        ('[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\nsett = []\n', "unknown key 'sett'"),
        ('colour = 1\n', "unknown key 'colour'"),
        ('[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l9"]\n', "unknown plugin 'l9'"),
    ],
)
def test_bad_matrix_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_matrix(str(path), AVAILABLE)


def test_matrix_train_overrides_make_a_grid_of_task_recipes(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('seeds = 1\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\nbaseline = false\n'
                    'train = {optimizer = "sgd", momentum = 0.9, lr = [0.1, 0.01]}\n')
    specs = load_matrix(str(path), AVAILABLE)
    assert [(s.task.train.optimizer, s.task.train.momentum, s.task.train.lr) for s in specs] == [
        ("sgd", 0.9, 0.1), ("sgd", 0.9, 0.01)]
    assert len({s.run_id for s in specs}) == 2
    path.write_text('[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\ntrain = {lr = "fast"}\n')
    with pytest.raises(UsageError, match="lr: expected float, got str"):
        load_matrix(str(path), AVAILABLE)
