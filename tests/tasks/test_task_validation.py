"""Every task-file value is checked when the file is read: types, ranges, choices and shapes
against the data source, each with a message naming the field."""

import subprocess
import sys

import pytest

from benchsuite.errors import UsageError
from benchsuite.tasks import all_tasks, components, real_data
from benchsuite.tasks.spec import parse_task

BASE = {
    "data": 'source = "digits"\nsplit = [0.7, 0.15, 0.15]',
    "model": 'arch = "mlp"\nsizes = [64, 32, 10]',
    "train": 'epochs = 2\noptimizer = "sgd"\nlr = 0.1\nmomentum = 0.9',
    "eval": 'metric = "accuracy"',
}


def _task(**changes) -> str:
    tables = {name: dict(line.split(" = ", 1) for line in body.splitlines()) for name, body in BASE.items()}
    for key, value in changes.items():
        table, field = key.split("__")
        if value is None:
            tables[table].pop(field, None)
        else:
            tables[table][field] = value
    body = "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items())
                     for name, fields in tables.items())
    return f'name = "t"\n{body}\n'


def test_the_base_task_is_valid():
    assert parse_task(_task(), "t.toml").model.sizes == (64, 32, 10)


@pytest.mark.parametrize("changes, message", [
    ({"model__arch": '"resnet7"'}, "model.arch 'resnet7' unknown"),
    ({"model__activation": '"swish"'}, "model.activation 'swish' unknown"),
    ({"model__init": '"xavier"'}, "model.init 'xavier' unknown"),
    ({"data__source": '"nodata"'}, "data.source 'nodata' unknown"),
    ({"model__dropout": "2.0"}, r"model.dropout must be in \[0, 1\), got 2.0"),
    ({"model__dropout": "-0.5"}, r"model.dropout must be in \[0, 1\)"),
    ({"train__momentum": "-5.0"}, "train.momentum and train.weight_decay must be >= 0"),
    ({"train__weight_decay": "-1.0"}, "train.weight_decay must be >= 0"),
    ({"train__lr": "nan"}, "train.lr must be a finite number"),
    ({"train__lr": "inf"}, "train.lr must be a finite number"),
    ({"train__gamma": "nan"}, "train.gamma must be a finite number"),
    ({"train__gamma": "0.0"}, "train.gamma must be > 0"),
    ({"train__milestones": '["a"]'}, "train.milestones must be positive integers"),
    ({"train__milestones": "[5, 2]"}, "train.milestones must be increasing"),
    ({"train__schedule": '"multistep"'}, "needs train.milestones"),
    ({"train__nesterov": "true", "train__momentum": "0.0"}, "nesterov needs"),
    ({"model__sizes": "[64, 0, 10]"}, "model.sizes must be positive integers"),
    ({"model__sizes": "[10]"}, "at least two sizes"),
    ({"model__sizes": "[32, 16, 10]"}, r"model.sizes\[0\] = 32 but data.source 'digits' gives 64 input features"),
    ({"model__sizes": "[64, 16, 3]"}, r"model.sizes\[-1\] = 3 but data.source 'digits' needs 10 output"),
    ({"train__loss": '"mse"'}, "train.loss 'mse' does not go with eval.metric 'accuracy'"),
    ({"train__loss": '"mse"', "eval__metric": '"mse"'}, "is a classification data set"),
    ({"model__arch": '"vgg11"'}, "gives feature vectors"),
    ({"train__epochs": "2.5"}, r"\[train\].epochs: expected int, got float"),
    ({"data__split_seed": "-1"}, "data.split_seed and data.image_size must be >= 0"),
])
def test_bad_values_are_named_when_the_file_is_read(changes, message):
    with pytest.raises(UsageError, match=message):
        parse_task(_task(**changes), "t.toml")


def test_image_sources_are_checked_against_the_models_shape():
    cifar = {"data__source": '"cifar10"', "data__split": None, "model__arch": '"vgg11"', "model__sizes": None}
    assert parse_task(_task(**cifar), "t.toml").model.arch == "vgg11"
    with pytest.raises(UsageError, match="model.num_classes = 100 but data.source 'cifar10' has 10 classes"):
        parse_task(_task(**cifar, model__num_classes="100"), "t.toml")
    with pytest.raises(UsageError, match="model.in_channels = 1 but data.source 'cifar10' has 3 channel"):
        parse_task(_task(**cifar, model__in_channels="1"), "t.toml")
    with pytest.raises(UsageError, match="an mlp needs data.flatten = true"):
        parse_task(_task(data__source='"cifar10"', data__split=None, model__sizes="[3072, 10]"), "t.toml")


def test_every_shipped_task_is_valid_and_every_builtin_entry_names_a_function():
    assert len(all_tasks()) >= 30
    for architecture in components.BUILTIN_ARCHITECTURES:
        assert callable(architecture.builder()), architecture.name
    for source in components.BUILTIN_DATA_SOURCES:
        assert callable(source.loader()), source.name


def test_every_source_that_needs_files_says_which_and_how_to_get_them():
    needs_files = {s.name for s in components.BUILTIN_DATA_SOURCES if not s.offline}
    assert needs_files == set(real_data.DATASETS)
    official = {s.name for s in components.BUILTIN_DATA_SOURCES if s.official_test_set}
    assert official == {name for name, info in real_data.DATASETS.items() if name != "sdd"}


def test_shipped_task_files_are_checked_without_torch_or_plugins():
    """The registry's table is read without importing what it names: checking every shipped
    task file imports no torch and never asks the installed plugins (a fresh process)."""
    probe = ("import sys; from benchsuite.tasks import all_tasks, components; all_tasks(); "
             "print('torch' in sys.modules, components.installed.cache_info().currsize)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "0"]


def test_a_source_registered_at_run_time_is_a_valid_data_source():
    name = "test-registered-source"
    text = _task(data__source=f'"{name}"')
    with pytest.raises(UsageError, match=f"data.source '{name}' unknown"):
        parse_task(text, "t.toml")
    source = components.DataSource(name, lambda spec: None)
    components.register(source)
    try:
        assert parse_task(text, "t.toml").data.source == name
    finally:
        components.unregister(source)
    with pytest.raises(UsageError, match=f"data.source '{name}' unknown"):
        parse_task(text, "t.toml")


def test_a_registered_architecture_is_checked_by_its_input_kind():
    vector = components.Architecture("test-vector-model", "some.module:build", "vector")
    image = components.Architecture("test-image-model", "some.module:build", "image")
    components.register(vector, image)
    try:
        assert parse_task(_task(model__arch=f'"{vector.name}"'), "t.toml").model.arch == vector.name
        with pytest.raises(UsageError, match=r"model.sizes\[0\] = 32 but data.source 'digits' gives 64"):
            parse_task(_task(model__arch=f'"{vector.name}"', model__sizes="[32, 10]"), "t.toml")
        with pytest.raises(UsageError, match="model.arch 'test-vector-model' needs at least two sizes"):
            parse_task(_task(model__arch=f'"{vector.name}"', model__sizes="[64]"), "t.toml")
        with pytest.raises(UsageError, match="gives feature vectors"):
            parse_task(_task(model__arch=f'"{image.name}"'), "t.toml")
    finally:
        components.unregister(vector, image)


@pytest.mark.parametrize("entry, message", [
    (components.Architecture("mlp", "x:y", "vector"), "architecture 'mlp' is built in"),
    (components.DataSource("digits", "x:y"), "data source 'digits' is built in"),
])
def test_a_builtin_name_cannot_be_registered_again(entry, message):
    with pytest.raises(UsageError, match=message):
        components.register(entry)


@pytest.mark.parametrize("make, message", [
    (lambda: components.Architecture("a", "no_colon", "vector"), 'expected "module:function" or a function'),
    (lambda: components.Architecture("a", "m:f", "graph"), "input 'graph' unknown; valid: vector, image"),
    (lambda: components.Architecture("", "m:f", "image"), "non-empty string"),
    (lambda: components.DataSource("s", "m:f", features=0, outputs=2), "features must be a positive integer"),
    (lambda: components.DataSource("s", "m:f", outputs=2), "give features .* or channels"),
])
def test_malformed_entries_are_refused_with_what_is_valid(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def test_an_entry_naming_a_missing_function_says_so_when_used():
    with pytest.raises(UsageError, match="no module 'benchsuite_no_such_module'"):
        components.Architecture("a", "benchsuite_no_such_module:build", "image").builder()
    with pytest.raises(UsageError, match="has no function 'no_such_loader'"):
        components.DataSource("s", "benchsuite.tasks.datasets:no_such_loader").loader()


def test_training_overrides_are_validated_too():
    spec = parse_task(_task(), "t.toml")
    with pytest.raises(UsageError, match="train.lr must be a finite number"):
        spec.with_overrides(lr=float("nan"))
    with pytest.raises(UsageError, match="train.weight_decay must be >= 0"):
        spec.with_overrides(weight_decay=-1.0)
