"""Task files, the registry, offline data sources and models."""

import dataclasses
import importlib
import importlib.metadata
import re
import sys

import pytest
import torch
from helpers import REPO
from torch import nn

from benchsuite import plugins as plugin_registry
from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.tasks import all_tasks, components, datasets, get_task, registry
from benchsuite.tasks.models import build_model
from benchsuite.tasks.spec import parse_task
from benchsuite.testing import run_task

OFFLINE = ["toy-regression", "boston-mlp", "mnist5k-mlp", "digits-mlp"]


def test_registry_lists_the_offline_tasks():
    assert set(OFFLINE) <= set(registry())
    assert {t.name for t in all_tasks()} >= set(OFFLINE)


def test_unknown_task_names_the_available_ones():
    with pytest.raises(UsageError,
                       match=r"unknown task 'mnist' \(did you mean 'mnist-mlp'\?\); available tasks: .*mnist5k-mlp"):
        get_task("mnist")


def test_toy_regression_is_minus_x_squared_on_40_points():
    data = datasets.load(get_task("toy-regression").data)
    assert data.train.x.shape == (40, 1)
    assert torch.allclose(data.train.x.squeeze(1), torch.linspace(-1, 1, 40))
    for split in (data.train, data.val, data.test):
        assert torch.allclose(split.y, -split.x.squeeze(1) ** 2)
        assert split.x.abs().max() <= 1


def test_boston_is_standardized_on_the_training_split():
    task = get_task("boston-mlp")
    data = datasets.load(task.data)
    assert len(data.train) + len(data.val) + len(data.test) == 506
    assert data.train.x.shape[1] == 13
    assert torch.allclose(data.train.x.mean(0), torch.zeros(13), atol=1e-5)
    assert torch.allclose(data.train.x.std(0), torch.ones(13), atol=1e-4)
    assert 5 <= data.train.y.min() and data.train.y.max() <= 50  # median value in $1000s


def test_mnist5k_and_digits_are_scaled_images_with_ten_classes():
    mnist = datasets.load(get_task("mnist5k-mlp").data)
    assert len(mnist.train) + len(mnist.val) + len(mnist.test) == 5000
    assert mnist.train.x.shape[1] == 784 and mnist.train.x.dtype == torch.float32
    assert 0 <= mnist.train.x.min() and mnist.train.x.max() <= 1
    assert set(mnist.train.y.unique().tolist()) == set(range(10))
    digits = datasets.load(get_task("digits-mlp").data)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert digits.train.x.shape[1] == 64 and digits.train.x.max() <= 1


def test_splits_are_disjoint_and_fixed_by_the_split_seed():
    task = get_task("digits-mlp")
    data = datasets.load(task.data)
    rows = lambda s: {tuple(r) for r in s.x.tolist()}  # noqa: E731
    assert not rows(data.train) & rows(data.test)
    assert len(data.val) == round(0.15 * 1797)
    again = datasets.load.__wrapped__(task.data)
    assert torch.equal(again.test.x, data.test.x)


def test_small_data_tier_sizes_and_test_sets_of_at_least_1000():
    sizes = {}
    for name in ("mnist1d-mlp", "mnist5k-noisy-mlp", "teacher-student"):
        task = get_task(name)
        data = datasets.load(task.data)
        sizes[name] = (len(data.train), len(data.val), len(data.test))
        assert len(data.test) >= 1000  # accuracy steps of at most 0.1%
        assert not task.model.batch_norm and task.eval.every == task.train.epochs  # scored at the last epoch
    assert sizes == {"mnist1d-mlp": (1500, 500, 3000), "mnist5k-noisy-mlp": (1000, 1000, 3000),
                     "teacher-student": (200, 200, 5000)}


def test_mnist1d_is_generated_without_touching_the_callers_random_state(monkeypatch):
    import random

    import mnist1d.data
    import numpy as np

    real_args = mnist1d.data.get_dataset_args

    def few_samples():  # the generator's own code, on 200 signals instead of 5000
        args = real_args()
        args.num_samples = 200
        return args

    monkeypatch.setattr(mnist1d.data, "get_dataset_args", few_samples)
    np.random.seed(7)
    random.seed(7)
    data = datasets.load.__wrapped__(get_task("mnist1d-mlp").data)
    assert data.train.x.shape == (60, 40) and len(data.test) == 120
    assert np.random.rand() == np.random.RandomState(7).rand()
    assert random.random() == random.Random(7).random()


def test_label_noise_flips_that_share_of_training_labels_only():
    noisy = get_task("mnist5k-noisy-mlp").data
    clean = datasets.load(dataclasses.replace(noisy, label_noise=0.0))
    data = datasets.load(noisy)
    flipped = int((data.train.y != clean.train.y).sum())
    assert flipped == 400 == 0.4 * len(data.train)  # every chosen label moves to another class
    assert torch.equal(data.val.y, clean.val.y) and torch.equal(data.test.y, clean.test.y)
    assert torch.equal(data.train.x, clean.train.x)


def test_teacher_student_targets_carry_the_teachers_signal_and_unit_noise():
    data = datasets.load(get_task("teacher-student").data)
    assert data.train.x.shape == (200, 30)
    assert 2.0 < data.test.y.var().item() < 10.0  # signal (about 4) plus noise variance 1


@pytest.mark.parametrize(
    "name, sizes, batch_norm",
    [
        ("toy-regression", [1, 50, 50, 1], True),
        ("boston-mlp", [13, 40, 30, 1], True),
        ("mnist5k-mlp", [784, 400, 300, 100, 10], True),
    ],
)
def test_models_have_the_specified_layers(name, sizes, batch_norm):
    model = build_model(get_task(name).model)
    linear = [m for m in model if isinstance(m, nn.Linear)]
    assert [linear[0].in_features] + [m.out_features for m in linear] == sizes
    norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == (len(sizes) - 2 if batch_norm else 0)


TASK = """
name = "t"
[data]
source = "digits"
[model]
arch = "mlp"
sizes = [64, 10]
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (TASK + "[train]\nepochz = 3\n", "unknown key 'epochz'; valid keys: epochs"),
        (TASK + "[train]\nepochs = 'three'\n", "epochs: expected int, got str"),
        (TASK + "[train]\noptimizer = 'lbfgs'\n", "optimizer 'lbfgs' unknown; valid: sgd, adam, adamw"),
        (TASK.replace('source = "digits"', 'source = "digits"\nsplit = [0.5, 0.6, 0.1]'), "summing to 1"),
        (TASK + "[eval]\nmetric = 'f1'\n", "metric 'f1' unknown"),
        ("name = 't'\n", "missing required key 'data'"),
        ("name = ", "not valid TOML"),
        (TASK.replace('source = "digits"', 'source = "digits"\nlabel_noise = 1.0'), "label_noise must be in"),
        (TASK.replace('source = "digits"', 'source = "boston"\nlabel_noise = 0.1').replace("[64, 10]", "[13, 1]")
         + "[train]\nloss = 'mse'\n[eval]\nmetric = 'mse'\n", "needs a classification task"),
    ],
)
def test_bad_task_files_get_clear_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_task(text, "t.toml")


def test_task_files_in_extra_dirs_and_by_path(tmp_path):
    (tmp_path / "t.toml").write_text(TASK)
    assert get_task("t", [tmp_path]).model.sizes == (64, 10)
    assert get_task(str(tmp_path / "t.toml")).name == "t"
    (tmp_path / "u.toml").write_text(TASK)
    with pytest.raises(UsageError, match="must match the file name"):
        get_task("u", [tmp_path])


def test_overrides_change_the_spec_and_reject_nonsense():
    task = get_task("mnist5k-mlp")
    assert task.with_overrides(epochs=1, subset=50).train.epochs == 1
    assert task.with_overrides(subset=50).subset == 50
    with pytest.raises(UsageError):
        task.with_overrides(epochs=0)


def test_kaiming_init_option():
    torch.manual_seed(0)
    model = build_model(get_task("mnist5k-deep-mlp").model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == 9 and not any(isinstance(m, nn.BatchNorm1d) for m in model)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    assert linears[1].weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    with pytest.raises(UsageError, match="init 'xavier' unknown"):
        build_model(parse_task(TASK.replace('sizes = [64, 10]', 'sizes = [64, 10]\ninit = "xavier"'), "t").model)


def test_shipped_tasks_come_from_the_wheel_or_a_source_checkout_never_from_site_packages(tmp_path, monkeypatch):
    from benchsuite import tasks as task_registry

    site = tmp_path / "site-packages"
    (site / "benchsuite").mkdir(parents=True)
    (site / "tasks").mkdir()  # another distribution's top-level folder
    monkeypatch.setattr(task_registry, "_PACKAGE", site / "benchsuite")
    assert task_registry.builtin_task_dirs() == []
    (site / "benchsuite" / "task_files").mkdir()
    assert task_registry.builtin_task_dirs() == [site / "benchsuite" / "task_files"]
    checkout = tmp_path / "checkout"
    (checkout / "benchsuite").mkdir(parents=True)
    (checkout / "tasks").mkdir()
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(task_registry, "_PACKAGE", checkout / "benchsuite")
    assert task_registry.builtin_task_dirs() == [checkout / "tasks"]


def test_the_task_file_reference_names_every_field_of_every_table():
    import re

    from benchsuite.tasks import spec

    doc = spec.__doc__
    tables = {"data": spec.DataSpec, "model": spec.ModelSpec, "train": spec.TrainSpec, "eval": spec.EvalSpec}
    for table, cls in tables.items():
        section = re.search(rf"\[{table}\](.*?)(?=\n    \[|\Z)", doc, re.S).group(1)
        for field in dataclasses.fields(cls):
            assert re.search(rf"\b{field.name}\b", section), f"[{table}] {field.name} missing from the reference"
    resources = re.search(r"\[resources\](.*)", doc).group(1)
    assert all(key in resources for key in spec.RESOURCE_KEYS)


# --- architectures and data sources from plugins -----------------------------------------------

GUIDE = REPO / "docs" / "hooks.md"


def _guide_blocks(language: str) -> list[str]:
    """The code blocks of the guide's section on adding an architecture or a data source."""
    text = GUIDE.read_text()
    start = text.index("## Adding an architecture or a data source\n")
    following = text.find("\n## ", start + 1)
    return re.findall(rf"```{language}\n(.*?)```", text[start: following if following != -1 else None], re.S)


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(module, source, name="module:Class", ...)``: a plugin module importable and
    its entry points found, as an installed package's are; the registry asks the installed
    plugins again, and once more after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points
    extra, modules = [], []

    def entry_points(**selection):
        found = real(**selection)
        return [*found, *extra] if selection.get("group") == plugin_registry.ENTRY_POINT_GROUP else found

    monkeypatch.setattr(plugin_registry.importlib.metadata, "entry_points", entry_points)

    def install_module(module: str, source: str, **entry_points: str) -> None:
        (tmp_path / f"{module}.py").write_text(source)
        importlib.invalidate_caches()
        modules.append(module)
        extra.extend(importlib.metadata.EntryPoint(name, value, plugin_registry.ENTRY_POINT_GROUP)
                     for name, value in entry_points.items())
        components.forget_installed()

    yield install_module
    components.forget_installed()
    for module in modules:
        sys.modules.pop(module, None)


def test_hook_register_architectures_and_data_sources_let_task_files_name_them(install, tmp_path, capsys):
    """The guide's plugin, installed: its task file is valid, checked against the source's
    shape, listed by ``benchsuite tasks``, and a run on it finishes."""
    (plugin,) = _guide_blocks("python")
    (task_file,) = _guide_blocks("toml")
    install("benchsuite_blobs", plugin, blobs="benchsuite_blobs:Blobs")
    folder = tmp_path / "my-tasks"
    folder.mkdir()
    (folder / "blobs-two-layer.toml").write_text(task_file)

    task = get_task("blobs-two-layer", [folder])
    assert (task.data.source, task.model.arch, task.model.sizes) == ("blobs", "two-layer", (4, 16, 3))
    with pytest.raises(UsageError, match=r"model.sizes\[0\] = 5 but data.source 'blobs' gives 4 input features"):
        parse_task(task_file.replace("sizes = [4, 16, 3]", "sizes = [5, 16, 3]"), "t.toml")
    with pytest.raises(UsageError, match=r"data.source 'blobs' is a classification data set"):
        parse_task(task_file + "loss = 'mse'\n[eval]\nmetric = 'mse'\n", "t.toml")
    assert "two-layer" in [a.name for a in components.architectures()]
    assert "blobs" in [s.name for s in components.data_sources()]

    assert main(["tasks", "--tasks-dir", str(folder)]) == 0
    assert re.search(r"^blobs-two-layer +two-layer .*needs: nothing \(offline\)", capsys.readouterr().out, re.M)

    result = run_task("none", task)
    assert result.status == "finished", result.record.get("traceback")
    assert result.metrics["test_accuracy"] > 0.8  # three well separated blobs


CLASH = '''
from benchsuite import Plugin, hookimpl
from benchsuite.tasks.components import Architecture, DataSource

class TakesDigits(Plugin):
    name = "takes-digits"

    @hookimpl
    def register_data_sources(self):
        return [DataSource("digits", "benchsuite_clash:load")]

class First(Plugin):
    name = "first"

    @hookimpl
    def register_architectures(self):
        return [Architecture("shared", "benchsuite_clash:build", "image")]

class Second(First):
    name = "second"

class Junk(Plugin):
    name = "junk"

    @hookimpl
    def register_data_sources(self):
        return "not a list of entries"

class Fails(Plugin):
    name = "fails"

    @hookimpl
    def register_architectures(self):
        raise RuntimeError("no models today")

class AsksForARun(Plugin):
    name = "asks-for-a-run"

    @hookimpl
    def register_architectures(self, run):
        return []
'''


@pytest.mark.parametrize("entry_points, message", [
    ({"takes-digits": "TakesDigits"},
     "plugin 'takes-digits' registers data source 'digits', which is already built in"),
    ({"first": "First", "second": "Second"},
     "plugin 'second' registers architecture 'shared', which is already registered by plugin 'first'"),
    ({"junk": "Junk"}, "plugin 'junk': register_data_sources must return a list of .*DataSource entries"),
    ({"fails": "Fails"}, "plugin 'fails': register_architectures failed: RuntimeError: no models today"),
    ({"asks-for-a-run": "AsksForARun"}, "plugin 'asks-for-a-run': cannot ask it .*PluginValidationError"),
])
def test_hook_register_data_sources_and_architectures_that_clash_or_fail_name_the_plugin(install, entry_points,
                                                                                          message):
    install("benchsuite_clash", CLASH, **{name: f"benchsuite_clash:{cls}" for name, cls in entry_points.items()})
    assert components.data_source("digits").load == "benchsuite.tasks.datasets:digits"  # built in: no plugin asked
    with pytest.raises(UsageError, match=message):
        components.architecture("not-built-in")


def test_a_plugins_registrations_are_asked_once_per_process(install):
    source = ("from benchsuite import Plugin, hookimpl\nfrom benchsuite.tasks.components import DataSource\n"
              "CALLS = []\nclass Counted(Plugin):\n    name = 'counted'\n    @hookimpl\n"
              "    def register_data_sources(self):\n        CALLS.append(1)\n"
              "        return [DataSource('counted', 'benchsuite_counted:load')]\n")
    install("benchsuite_counted", source, counted="benchsuite_counted:Counted")
    assert components.data_source("counted").name == "counted"
    assert components.data_source("counted") is not None and components.architecture("nothing") is None
    assert sys.modules["benchsuite_counted"].CALLS == [1]
