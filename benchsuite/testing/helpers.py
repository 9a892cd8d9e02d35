"""The test helpers behind :mod:`benchsuite.testing` (which imports them on first use)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from benchsuite import plugins as plugin_registry
from benchsuite.errors import UsageError
from benchsuite.execution import engine
from benchsuite.execution.preflight import preflight
from benchsuite.store.status import STATUS_FINISHED
from benchsuite.tasks import datasets
from benchsuite.tasks.spec import DataSpec, EvalSpec, ModelSpec, TaskSpec, TrainSpec

TINY_SOURCE = "benchsuite-tiny"


def tiny_blobs(spec: DataSpec) -> datasets.TaskData:
    """Four Gaussian blobs in 8 dimensions: 128 train, 64 val, 64 test points."""
    gen = torch.Generator().manual_seed(spec.split_seed)
    centers = torch.randn(4, 8, generator=gen) * 2

    def draw(n):
        y = torch.arange(n) % 4
        return datasets.Split(centers[y] + torch.randn(n, 8, generator=gen), y)

    return datasets.TaskData(draw(128), draw(64), draw(64))


def tiny_task_spec(epochs: int = 2, **train: Any) -> TaskSpec:
    """A 8/16/16/4 MLP with batch norm on four blobs; ``train`` overrides TrainSpec."""
    return TaskSpec(
        name="tiny",
        description="four Gaussian blobs, MLP 8/16/16/4 with batch norm",
        data=DataSpec(source=TINY_SOURCE),
        model=ModelSpec(arch="mlp", sizes=(8, 16, 16, 4), batch_norm=True),
        train=TrainSpec(**{"epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 1e-2, **train}),
        eval=EvalSpec(metric="accuracy"),
    )


@dataclasses.dataclass
class StepsResult:
    record: dict
    method: engine.Method

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def metrics(self) -> dict:
        return self.record["metrics"]


def available_with(*factories: type, available=None) -> dict[str, plugin_registry.PluginInfo]:
    """The installed plugins plus ``factories`` (plugin classes not packaged yet), for
    passing as ``available=`` to the engine: test a plugin before it is installable."""
    available = available if available is not None else plugin_registry.discover()
    found = plugin_registry.Discovered(available, broken=getattr(available, "broken", {}))
    for factory in factories:
        found[factory.name] = plugin_registry.PluginInfo(factory.name, factory, "0", "unpackaged")
    return found


def method_of(plugins: str | list[str], hp: dict[str, dict[str, Any]] | None = None, available=None) -> engine.Method:
    """A Method of installed plugins with defaults filled in and ``hp`` applied. Raises
    UsageError, as the command line does, for hyperparameters of a plugin the method does
    not have, an unknown name, or a value of the wrong type or range."""
    available = available if available is not None else plugin_registry.discover()
    names = plugins.split("+") if isinstance(plugins, str) else list(plugins)
    hp = hp or {}
    strangers = sorted(set(hp) - set(names))
    if strangers:  # a misspelled plugin name would otherwise run with defaults, silently
        raise UsageError(f"hyperparameters given for {', '.join(strangers)}, which the method "
                         f"{'+'.join(names)} does not have")
    items = []
    for info in plugin_registry.resolve(names, available):
        given = {}
        for name, value in hp.get(info.name, {}).items():
            if name not in info.hyperparameters:
                raise UsageError(plugin_registry.unknown_hyperparameter_message(info.name, name, info.hyperparameters))
            given[name] = info.hyperparameters[name].validate(value, info.name)
        items.append((info.name, info.resolve(given)))
    defaults = {info.name: info.resolve({}) for info in plugin_registry.resolve(names, available)}
    return engine.Method.of(*items, defaults=defaults)


def run_task(plugins, task: TaskSpec, hp=None, seed: int = 0, available=None) -> StepsResult:
    """Execute one run of ``plugins`` on ``task`` (nothing stored) and return it."""
    available = available if available is not None else plugin_registry.discover()
    method = method_of(plugins, hp, available)
    spec = engine.make_run_spec(task, method, seed, available)
    return StepsResult(engine.execute(spec, available=available), method)


def preflight_problems(plugins, task: TaskSpec, hp=None, available=None) -> list[str]:
    """What ``benchsuite run`` would reject before training (exit 2) for ``plugins`` on
    ``task``: the lines :func:`benchsuite.execution.preflight.preflight` reports, empty when accepted."""
    available = available if available is not None else plugin_registry.discover()
    spec = engine.make_run_spec(task, method_of(plugins, hp, available), 0, available)
    return preflight([spec], "cpu", available)


def build_training(plugins, hp=None, task: TaskSpec | None = None, seed: int = 0, available=None,
                   device: str | torch.device = "cpu") -> engine.Training:
    """A run of ``plugins`` set up exactly as the engine sets it up (data loaded, model
    built, phases 1-3 done) on ``device``, ready for :func:`benchsuite.execution.engine.train_step`:
    ``.model``, ``.run``, ``.hooks``, ``.state.optimizer``, ``.epoch_batches()``."""
    task = task or tiny_task_spec()
    available = available if available is not None else plugin_registry.discover()
    # the task as given: make_run_spec would drop a weight decay that a method replaces,
    # and a plugin's tests may want to see its configure reject that task
    spec = engine.RunSpec(task, method_of(plugins, hp, available), seed, plugin_versions=())
    return engine.setup(spec, torch.device(device), available)


def training_batches(training: engine.Training, count: int):
    """The (inputs, targets) of ``training``'s first ``count`` steps, over as many epochs as
    they take (each epoch in the next order of the data stream), for driving
    :func:`benchsuite.execution.engine.train_step` by hand."""
    done = 0
    while done < count:
        training.state.epoch = training.run.epoch = training.state.epoch + 1
        for inputs, targets in training.epoch_batches():
            if done == count:
                return
            yield inputs, targets
            done += 1


def build_for(plugins, hp=None, task: TaskSpec | None = None, seed: int = 0, available=None):
    """Model after ``reparametrize``, optimizer, run context and hooks: the objects a
    plugin sees, for unit tests of single hooks. Returns (model, optimizer, run, hooks)."""
    training = build_training(plugins, hp, task, seed, available)
    return training.model, training.state.optimizer, training.run, training.hooks


class ConformanceError(AssertionError):
    pass


def check_conformance(plugin: str, hp: dict[str, dict[str, Any]] | None = None, available=None) -> dict:
    """Run ``plugin`` through the contract every method must keep; raises
    ConformanceError naming the broken rule. Returns the run record.

    * it is discoverable and describes itself (hyperparameters with valid defaults);
    * every penalty it returns is a finite 0-dim tensor on the model's device that
      carries a gradient;
    * a short training run finishes with a finite loss and changes the parameters;
    * after ``finalize`` the model is plain (no parametrizations left) and the host's
      evaluation of it is finite.
    """
    available = available if available is not None else plugin_registry.discover()
    if plugin not in available:
        raise ConformanceError(f"{plugin!r} is not installed under the entry-point group 'benchsuite'")
    info = available[plugin]
    for warning in info.describe()["warnings"]:
        warnings.warn(warning, stacklevel=2)
    for h in info.hyperparameters.values():
        h.validate(h.default, plugin)

    model, optimizer, run, hooks = build_for(plugin, hp, available=available)
    for name, term in hooks.call("penalty", model=model, run=run):
        if not isinstance(term, torch.Tensor) or term.dim() != 0:
            raise ConformanceError(f"{name}.penalty must return a 0-dim tensor or None, got {term!r}")
        if not torch.isfinite(term):
            raise ConformanceError(f"{name}.penalty returned a non-finite value {term.item()}")
        if not term.requires_grad:
            raise ConformanceError(f"{name}.penalty returned a tensor without grad (detached?)")

    result = run_task(plugin, tiny_task_spec(epochs=2), hp=hp, available=available)
    record = result.record
    if record["status"] != STATUS_FINISHED:
        raise ConformanceError(
            f"{plugin}: tiny run ended {record['status']}: {record.get('error')}\n{record.get('traceback', '')}"
        )
    if not record["metrics"].get("plain_model"):
        raise ConformanceError(f"{plugin}: the model after finalize still has parametrizations")
    curves = record["curves"]
    if any(not torch.isfinite(torch.tensor(row["train_loss"])) for row in curves):
        raise ConformanceError(f"{plugin}: non-finite training loss")

    # parameters change: one step of the engine's own training step, on the run's first batch
    training = build_training(plugin, hp, available=available)
    snapshot = {name: p.detach().clone() for name, p in training.model.named_parameters()}
    training.state.epoch = training.run.epoch = 1
    inputs, targets = next(iter(training.epoch_batches()))
    engine.train_step(training, inputs, targets, engine.EpochSums.zeros(training.run.device))
    model = training.model
    changed = any(not torch.equal(snapshot[name], p) for name, p in model.named_parameters() if name in snapshot)
    if not changed:
        raise ConformanceError(f"{plugin}: a training step left every parameter unchanged")
    return record
