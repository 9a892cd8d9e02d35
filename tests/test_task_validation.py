"""Every task-file value is checked when the file is read: types, ranges, choices and shapes
against the data source, each with a message naming the field."""

import subprocess
import sys

import pytest

from benchsuite.errors import UsageError
from benchsuite.tasks import all_tasks
from benchsuite.tasks.spec import ARCHS, SOURCE_SHAPES, parse_task

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


def test_every_shipped_task_is_valid_and_the_tables_match_the_code():
    from benchsuite.tasks import datasets
    from benchsuite.tasks.models import ARCHITECTURES, _register_vision

    _register_vision()
    assert set(ARCHS) == set(ARCHITECTURES)
    assert set(SOURCE_SHAPES) <= set(datasets.SOURCES)
    assert len(all_tasks()) >= 30


def test_the_shipped_sources_are_known_to_task_files_without_torch():
    """spec.SOURCE_SHAPES lists exactly the sources datasets ships (a fresh process: tests
    register sources of their own), and checking every shipped task file imports no torch."""
    probe = ("import sys; from benchsuite.tasks import all_tasks; all_tasks(); print('torch' in sys.modules); "
             "from benchsuite.tasks import datasets; print(sorted(datasets.SOURCES))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    torch_loaded, shipped = done.stdout.splitlines()
    assert torch_loaded == "False"
    assert shipped == str(sorted(SOURCE_SHAPES))


def test_a_source_registered_at_run_time_is_a_valid_data_source():
    from benchsuite.tasks import datasets

    name = "test-registered-source"
    text = _task(data__source=f'"{name}"')
    with pytest.raises(UsageError, match=f"data.source '{name}' unknown"):
        parse_task(text, "t.toml")
    datasets.source(name)(lambda spec: None)
    try:
        assert parse_task(text, "t.toml").data.source == name
    finally:
        del datasets.SOURCES[name]


def test_training_overrides_are_validated_too():
    spec = parse_task(_task(), "t.toml")
    with pytest.raises(UsageError, match="train.lr must be a finite number"):
        spec.with_overrides(lr=float("nan"))
    with pytest.raises(UsageError, match="train.weight_decay must be >= 0"):
        spec.with_overrides(weight_decay=-1.0)
