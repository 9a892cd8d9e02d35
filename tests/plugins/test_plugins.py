"""Discovery, plugin descriptions, hyperparameter declarations and the plugin manager."""

import pytest

from benchsuite import Hyperparameter, Plugin, hookimpl
from benchsuite.errors import UsageError
from benchsuite.execution.hooks import plugin_manager
from benchsuite.plugins import discover, hook_names, resolve
from benchsuite.runs.identity import Method
from benchsuite.testing import available_with


def test_builtin_baselines_are_discovered_through_entry_points():
    found = discover()
    assert {"none", "l1", "l2", "wd"} <= set(found)
    l2 = found["l2"].describe()
    assert l2["version"] and l2["distribution"] == "benchsuite"
    assert l2["hooks"] == ["penalty"]
    assert l2["hyperparameters"] == [
        {"name": "lam", "type": "float", "default": 1e-4, "range": "[0, inf)",
         "search": {"scale": "log", "low": 1e-5, "high": 1.0}, "search_text": "log[1e-05, 1]",
         "help": "penalty factor lam in lam * sum(w^2)"}
    ]
    assert "Krogh" in l2["citation"]
    assert found["none"].describe()["hooks"] == []


def test_hook_names_follow_the_contract():
    assert hook_names() == [
        "configure", "reparametrize", "configure_optimizer", "loss", "pre_step", "penalty",
        "modify_grad", "post_step", "on_epoch_end", "metrics", "finalize",
        "register_architectures", "register_data_sources",
    ]


def test_plugin_manager_holds_only_selected_methods_in_order():
    class A(Plugin):
        name = "a"

        @hookimpl
        def penalty(self, model, run):
            return None

    class B(A):
        name = "b"

    available = available_with(A, B)
    pm, _ = plugin_manager(Method.of(("b", {}), ("a", {})), available)
    names = [name for name, _ in pm.list_name_plugin()]
    assert names == ["default:DefaultOptimizer", "default:DefaultLoss", "b", "a"]
    # pluggy calls the last registered first
    assert [i.plugin_name for i in reversed(pm.hook.penalty.get_hookimpls())] == ["a", "b"]


def test_unknown_plugin_names_the_installed_ones():
    with pytest.raises(UsageError, match=r"unknown plugin 'l3'; installed plugins: .*l1, l2"):
        resolve(["l3"], discover())


@pytest.mark.parametrize(
    "hp, text, expected",
    [
        (Hyperparameter("x", float, 0.1, low=0.0), "1e-3", 1e-3),
        (Hyperparameter("n", int, 1, low=1, high=10), "10", 10),
        (Hyperparameter("flag", bool, False), "true", True),
        (Hyperparameter("flag", bool, True), "0", False),
        (Hyperparameter("mode", str, "a", choices=("a", "b")), "b", "b"),
    ],
)
def test_hyperparameter_parse_accepts_valid_text(hp, text, expected):
    assert hp.parse(text, "p") == expected


@pytest.mark.parametrize(
    "hp, text, message",
    [
        (Hyperparameter("x", float, 0.1, low=0.0), "abc",
         r"p.x: 'abc' is not a valid float \(expected float, \[0, inf\)\)"),
        (Hyperparameter("x", float, 0.1, low=0.0), "-1", r"p.x: -1.0 is out of range \(allowed: \[0, inf\)\)"),
        (Hyperparameter("x", float, 0.1, low=0.0), "nan", r"not finite"),
        (Hyperparameter("n", int, 1, low=1, high=10), "11", r"out of range \(allowed: \[1, 10\]\)"),
        (Hyperparameter("n", int, 1), "1.5", r"not a valid int"),
        (Hyperparameter("x", float, 0.5, low=0.0, low_inclusive=False), "0", r"allowed: \(0, inf\)"),
        (Hyperparameter("flag", bool, False), "maybe", r"not a valid bool"),
        (Hyperparameter("mode", str, "a", choices=("a", "b")), "c", r"allowed: one of a, b"),
    ],
)
def test_hyperparameter_parse_rejects_bad_text_naming_the_valid_values(hp, text, message):
    with pytest.raises(UsageError, match=message):
        hp.parse(text, "p")


def test_hyperparameter_default_must_be_valid():
    with pytest.raises(UsageError):
        Hyperparameter("x", float, -1.0, low=0.0)
    with pytest.raises(TypeError):
        Hyperparameter("x", list, [])


def test_plugin_constructor_validates_values():
    class P(Plugin):
        name = "p"
        hyperparameters = (Hyperparameter("lam", float, 0.1, low=0.0),)

    assert P().hp == {"lam": 0.1}
    assert P(lam=2).hp == {"lam": 2.0}
    with pytest.raises(UsageError, match="unknown hyperparameter p.mu; valid for p: lam"):
        P(mu=1.0)
    with pytest.raises(UsageError, match="expected float, got str"):
        P(lam="big")


def test_the_testing_helpers_reject_hyperparameters_as_the_command_line_does(run_steps):
    """``method_of`` / ``run_steps``: a misspelled plugin name in ``hp`` or an unknown
    hyperparameter is a UsageError naming what is valid, not a run with defaults."""
    from benchsuite.testing import method_of

    with pytest.raises(UsageError, match="hyperparameters given for l3, which the method l2 does not have"):
        run_steps("l2", hp={"l3": {"lam": 0.1}})
    with pytest.raises(UsageError, match="unknown hyperparameter l2.mu; valid for l2: lam"):
        method_of("l2", {"l2": {"mu": 0.1}})
    with pytest.raises(UsageError, match="out of range"):
        method_of("l2", {"l2": {"lam": -1.0}})
    assert method_of("l1+l2", {"l2": {"lam": 0.5}}).hyperparameters["l2"]["lam"] == 0.5
