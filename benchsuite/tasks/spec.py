"""Task files: small declarative TOML files, parsed into a validated :class:`TaskSpec`.

A task file has five tables (every key has a default except the ones marked required; the
dataclasses below give each default, and a test keeps this list complete)::

    name = "mnist5k-mlp"                  # required, must match the file name
    description = "..."
    [data]   source (required), split = [train, val, test] fractions, split_seed,
             vary_split (true: each run seed draws its own split, see below; task_split_seed
             is then set at run time, never in a file),
             standardize, val_fraction, augment = "none" | "flip" | "crop-flip" |
             "random-resized-crop", image_size, flatten, label_noise
    [model]  arch (required), sizes, batch_norm, activation, dropout, init, num_classes,
             in_channels, pretrained
    [train]  epochs, batch_size, optimizer, lr, momentum, nesterov, weight_decay, loss,
             schedule = "constant" | "multistep" | "cosine" | "step", milestones, gamma,
             step_size, precision = "fp32" | "bf16" | "fp16", replicas
    [eval]   metric = "accuracy" | "mse", every (epochs between evaluations),
             headline = "selected" | "best10"
    [resources]  gpus, cpus, time_min, mem_gb (cluster hints, not part of a run's identity)

``source`` and ``arch`` name entries of :mod:`benchsuite.tasks.components` (built in, or
registered by a plugin), whose metadata the model and metric are checked against.

The split: by default every run of a task uses one train/val/test split (and, for generated
data, one sample), fixed by ``split_seed``, so a verdict is about that test set. With
``vary_split = true`` (or ``run --vary split``, a matrix's ``vary = ["split"]``) each run seed
draws its own split and sample from a seed derived from (run seed, ``split_seed``)
(:meth:`DataSpec.for_seed`): every method's seed s shares it, so runs still pair by seed,
and verdicts are about the data distribution. Data sets with an official test set (MNIST,
CIFAR, SVHN, TinyImageNet, ImageNet) refuse it: their test set cannot be redrawn.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import benchsuite.tasks.components as components
from benchsuite.errors import UsageError

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("cross_entropy", "mse")
SCHEDULES = ("constant", "multistep", "cosine", "step")
AUGMENTATIONS = ("none", "flip", "crop-flip", "random-resized-crop")
PRECISIONS = ("fp32", "bf16", "fp16")
# Fields added after results were first stored: a run's identity (and its record's task
# spec) leaves them out while they hold their default, so earlier results stay valid.
LATER_FIELDS = {
    "data": {"val_fraction": 0.1, "augment": "none", "image_size": 0, "flatten": False, "label_noise": 0.0,
             "vary_split": False, "task_split_seed": None},
    "model": {"num_classes": 10, "in_channels": 3, "pretrained": ""},
    "train": {"step_size": 30, "precision": "fp32", "replicas": 1},
}
METRICS = {"accuracy": "max", "mse": "min"}
HEADLINES = ("selected", "best10")
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid")
INITS = ("default", "kaiming")
# the built-in architectures' names, for code that reads them here (the registry of every
# architecture and data source, built in or not, is benchsuite.tasks.components)
ARCHS = tuple(a.name for a in components.BUILTIN_ARCHITECTURES)
# what a run's seed can be asked to vary beyond what it always varies (`run --vary`, a matrix's `vary`)
VARIABLE_SOURCES = ("split",)
# the derived split seed's own stream: entropy (run seed, this tag, split_seed) shares nothing
# with the run's other streams (engine.seed_streams spawns children of the run seed alone)
SPLIT_STREAM = 0x73706C6974  # "split"
# DataSpec fields set at run time, never in a task file
RUN_TIME_FIELDS = ("task_split_seed",)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    source: str
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    standardize: bool = False  # scale features by the training split's mean and std
    # data sets with an official test split: the share of the training set held out for
    # validation (``split`` applies to data sets without one)
    val_fraction: float = 0.1
    augment: str = "none"  # none | flip | crop-flip | random-resized-crop
    image_size: int = 0  # folder data sets (TinyImageNet, ImageNet): training crop size
    flatten: bool = False  # images as vectors (MLPs on MNIST)
    # share of training labels replaced by another class drawn uniformly (classification;
    # validation and test labels stay clean)
    label_noise: float = 0.0
    # true: each run seed draws its own split (and generated sample) from a seed derived from
    # the run seed and split_seed; false: split_seed fixes one split for every run
    vary_split: bool = False
    # set by for_seed on a resampled split (never in a task file): the task file's split_seed,
    # for what a resampled split keeps fixed (the teacher network of teacher-student)
    task_split_seed: int | None = None

    def for_seed(self, seed: int) -> DataSpec:
        """The data of the run with seed ``seed``: this spec for a fixed split; for a
        resampled one, a copy whose ``split_seed`` is derived from (``seed``, this
        ``split_seed``) in a stream of its own, the same for every method and replicate of
        that seed, and whose ``task_split_seed`` keeps the task's own. Returns a DataSpec."""
        if not self.vary_split:
            return self
        import numpy as np

        derived = int(np.random.SeedSequence([seed, SPLIT_STREAM, self.split_seed]).generate_state(1)[0])
        return dataclasses.replace(self, split_seed=derived, task_split_seed=self.split_seed)

    @property
    def fixed_seed(self) -> int:
        """The task file's split seed, also on a resampled split: what stays fixed there."""
        return self.split_seed if self.task_split_seed is None else self.task_split_seed


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    arch: str
    sizes: tuple[int, ...] = ()
    batch_norm: bool = False
    activation: str = "relu"
    dropout: float = 0.0
    init: str = "default"  # "default" (PyTorch's) or "kaiming" (He normal, zero biases)
    num_classes: int = 10  # convolutional models
    in_channels: int = 3
    pretrained: str = ""  # a local state-dict file to start from (never downloaded)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    step_size: int = 30  # schedule = "step": lr x gamma every step_size epochs
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    replicas: int = 1  # data-parallel processes (torchrun) sharing each batch


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    metric: str = "accuracy"
    every: int = 1
    # the reported test value: "selected" = the model selected on validation (after
    # finalize); "best10" = mean of the 10 best test values over the evaluated epochs
    headline: str = "selected"

    @property
    def direction(self) -> str:
        """``max`` when a larger metric is better, ``min`` otherwise."""
        return METRICS[self.metric]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    eval: EvalSpec = EvalSpec()
    description: str = ""
    subset: int | None = None  # keep only the first N training examples (smoke runs)
    # cluster resource hints ([resources]: gpus, cpus, time_min, mem_gb): how to run, not what
    # is computed, so never part of a run's identity
    resources: tuple[tuple[str, int], ...] = dataclasses.field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except later additions at their default (see ``LATER_FIELDS``)."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        del out["resources"]
        for table, defaults in LATER_FIELDS.items():
            for key, default in defaults.items():
                if out[table].get(key) == default:
                    del out[table][key]
        return out

    def with_varied(self, sources, where: str = "--vary") -> TaskSpec:
        """The task with each of ``sources`` (names in ``VARIABLE_SOURCES``) varied by the
        run seed; a task that varies one already keeps it. Raises UsageError for an unknown
        name or a task that cannot vary it."""
        spec = self
        for name in sources:
            if name not in VARIABLE_SOURCES:
                raise UsageError(f"{where} {name!r}: unknown source of variation; valid: {', '.join(VARIABLE_SOURCES)}")
            spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, vary_split=True))
        if spec is not self:
            _check(spec, f"{spec.name} ({where} {', '.join(sources)})")
        return spec

    def with_overrides(self, epochs: int | None = None, subset: int | None = None, **train: Any) -> TaskSpec:
        """The task with fewer epochs, a training subset, or other ``[train]`` values."""
        spec = self
        if train:
            table = {**dataclasses.asdict(spec.train), **train}
            replaced = _build(TrainSpec, table, f"{spec.name} [train] override")
            spec = dataclasses.replace(spec, train=replaced)
            _check(spec, f"{spec.name} (with overrides)")
        if epochs is not None:
            if epochs < 1:
                raise UsageError(f"--epochs must be >= 1, got {epochs}")
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs))
        if subset is not None:
            if subset < 1:
                raise UsageError(f"--subset must be >= 1, got {subset}")
            spec = dataclasses.replace(spec, subset=subset)
        return spec


def _build(cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected a table, got {type(table).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in RUN_TIME_FIELDS}
    unknown = set(table) - set(fields)
    if unknown:
        raise UsageError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; valid keys: {', '.join(fields)}"
        )
    values = {}
    for key, value in table.items():
        default = fields[key].default
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if default is not dataclasses.MISSING and default is not None:
            if type(value) is not type(default):
                raise UsageError(
                    f"{where}.{key}: expected {type(default).__name__}, got {type(value).__name__} {value!r}"
                )
        values[key] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}") from None


def parse_task(text: str, source: str) -> TaskSpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    allowed = {"name", "description", "data", "model", "train", "eval", "resources"}
    unknown = set(raw) - allowed
    if unknown:
        raise UsageError(f"{source}: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(sorted(allowed))}")
    for required in ("name", "data", "model"):
        if required not in raw:
            raise UsageError(f"{source}: missing required key {required!r}")
    spec = TaskSpec(
        name=raw["name"],
        description=raw.get("description", ""),
        data=_build(DataSpec, raw["data"], f"{source} [data]"),
        model=_build(ModelSpec, raw["model"], f"{source} [model]"),
        train=_build(TrainSpec, raw.get("train", {}), f"{source} [train]"),
        eval=_build(EvalSpec, raw.get("eval", {}), f"{source} [eval]"),
        resources=_resources(raw.get("resources", {}), source),
    )
    _check(spec, source)
    return spec


RESOURCE_KEYS = ("gpus", "cpus", "time_min", "mem_gb")


def _resources(table: Any, source: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(table, dict):
        raise UsageError(f"{source} [resources]: expected a table")
    for key, value in table.items():
        if key not in RESOURCE_KEYS:
            raise UsageError(f"{source} [resources]: unknown key {key!r}; valid keys: {', '.join(RESOURCE_KEYS)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{source} [resources].{key}: expected a non-negative integer, got {value!r}")
    return tuple(sorted(table.items()))


def _check(spec: TaskSpec, source: str) -> None:
    def bad(message):
        raise UsageError(f"{source}: {message}")

    if spec.train.optimizer not in OPTIMIZERS:
        bad(f"optimizer {spec.train.optimizer!r} unknown; valid: {', '.join(OPTIMIZERS)}")
    if spec.train.loss not in LOSSES:
        bad(f"loss {spec.train.loss!r} unknown; valid: {', '.join(LOSSES)}")
    if spec.train.schedule not in SCHEDULES:
        bad(f"schedule {spec.train.schedule!r} unknown; valid: {', '.join(SCHEDULES)}")
    if spec.eval.metric not in METRICS:
        bad(f"metric {spec.eval.metric!r} unknown; valid: {', '.join(METRICS)}")
    if len(spec.data.split) != 3 or abs(sum(spec.data.split) - 1.0) > 1e-9 or min(spec.data.split) <= 0:
        bad(f"data.split must be three positive fractions summing to 1, got {list(spec.data.split)}")
    if spec.train.epochs < 1 or spec.train.batch_size < 1 or spec.train.lr <= 0:
        bad("train.epochs and train.batch_size must be >= 1 and train.lr > 0")
    if spec.eval.every < 1:
        bad("eval.every must be >= 1")
    if spec.data.augment not in AUGMENTATIONS:
        bad(f"data.augment {spec.data.augment!r} unknown; valid: {', '.join(AUGMENTATIONS)}")
    if not 0 < spec.data.val_fraction < 1:
        bad(f"data.val_fraction must be in (0, 1), got {spec.data.val_fraction}")
    if spec.train.precision not in PRECISIONS:
        bad(f"train.precision {spec.train.precision!r} unknown; valid: {', '.join(PRECISIONS)}")
    if spec.train.step_size < 1:
        bad("train.step_size must be >= 1")
    if spec.eval.headline not in HEADLINES:
        bad(f"eval.headline {spec.eval.headline!r} unknown; valid: {', '.join(HEADLINES)}")
    _check_values(spec, bad)


def _check_values(spec: TaskSpec, bad) -> None:
    """Ranges, choices and shapes of every other field (types are checked by ``_build``)."""
    data, model, train = spec.data, spec.model, spec.train
    if not isinstance(spec.name, str) or not spec.name or not isinstance(spec.description, str):
        bad("name must be a non-empty string and description a string")
    for table, values in (("train", dataclasses.asdict(train)), ("data", dataclasses.asdict(data)),
                          ("model", dataclasses.asdict(model))):
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                bad(f"{table}.{key} must be a finite number, got {value}")
    if train.momentum < 0 or train.weight_decay < 0:
        bad(f"train.momentum and train.weight_decay must be >= 0, got {train.momentum} and {train.weight_decay}")
    if train.nesterov and (train.optimizer != "sgd" or train.momentum <= 0):
        bad("train.nesterov needs optimizer = \"sgd\" and momentum > 0")
    if train.gamma <= 0:
        bad(f"train.gamma must be > 0, got {train.gamma}")
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in train.milestones):
        bad(f"train.milestones must be positive integers (epochs), got {list(train.milestones)}")
    if list(train.milestones) != sorted(set(train.milestones)):
        bad(f"train.milestones must be increasing, got {list(train.milestones)}")
    if train.schedule == "multistep" and not train.milestones:
        bad("train.schedule = \"multistep\" needs train.milestones")
    if train.replicas < 1:
        bad("train.replicas must be >= 1")
    if not 0 <= data.label_noise < 1:
        bad(f"data.label_noise must be in [0, 1), got {data.label_noise}")
    if data.label_noise > 0 and spec.eval.metric != "accuracy":
        bad("data.label_noise flips class labels: it needs a classification task (eval.metric = \"accuracy\")")
    if data.split_seed < 0 or data.image_size < 0:
        bad("data.split_seed and data.image_size must be >= 0")
    architecture = components.architecture(model.arch)
    if architecture is None:
        bad(f"model.arch {model.arch!r} unknown; valid: {', '.join(a.name for a in components.architectures())}")
    if model.activation not in ACTIVATIONS:
        bad(f"model.activation {model.activation!r} unknown; valid: {', '.join(ACTIVATIONS)}")
    if model.init not in INITS:
        bad(f"model.init {model.init!r} unknown; valid: {', '.join(INITS)}")
    if not 0 <= model.dropout < 1:
        bad(f"model.dropout must be in [0, 1), got {model.dropout}")
    if model.num_classes < 1 or model.in_channels < 1:
        bad("model.num_classes and model.in_channels must be >= 1")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in model.sizes):
        bad(f"model.sizes must be positive integers, got {list(model.sizes)}")
    if architecture.input == "vector" and len(model.sizes) < 2:
        bad(f"model.sizes: {_model_phrase(architecture)} needs at least two sizes (input, output), "
            f"got {list(model.sizes)}")
    if (train.loss == "mse") != (spec.eval.metric == "mse"):
        bad(f"train.loss {train.loss!r} does not go with eval.metric {spec.eval.metric!r}: use loss = \"mse\" "
            "with metric = \"mse\" (regression), loss = \"cross_entropy\" with metric = \"accuracy\"")
    _check_source(spec, architecture, bad)


def _model_phrase(architecture: components.Architecture) -> str:
    return "an mlp" if architecture.name == "mlp" else f"model.arch {architecture.name!r}"


def _check_source(spec: TaskSpec, architecture: components.Architecture, bad) -> None:
    """The data source exists, and what it yields fits the model and the metric (when it
    declares its shape)."""
    data, model = spec.data, spec.model
    source = components.data_source(data.source)
    if source is None:
        known = sorted(s.name for s in components.data_sources())
        bad(f"data.source {data.source!r} unknown; valid: {', '.join(known)}")
    if data.vary_split and source.official_test_set:
        bad(f"data.vary_split: data.source {data.source!r} has an official test set, which a resampled split "
            "cannot redraw; leave vary_split out for this task (its verdicts are about that test set)")
    if not source.declares_shape:
        return
    features, channels, outputs = source.features, source.channels, source.outputs
    regression = outputs == 1
    if regression != (spec.eval.metric == "mse"):
        kind = "a regression" if regression else "a classification"
        bad(f"data.source {data.source!r} is {kind} data set; use eval.metric = "
            f"{'mse' if regression else 'accuracy'!r} and the matching loss")
    if architecture.input == "vector":
        if channels is not None and not data.flatten:
            bad(f"data.source {data.source!r} gives images: {_model_phrase(architecture)} needs data.flatten = true")
        if features is None:
            bad(f"data.source {data.source!r} has images of varying size: use a convolutional model.arch")
        if model.sizes[0] != features:
            bad(f"model.sizes[0] = {model.sizes[0]} but data.source {data.source!r} gives {features} input features")
        if model.sizes[-1] != outputs:
            bad(f"model.sizes[-1] = {model.sizes[-1]} but data.source {data.source!r} needs {outputs} output(s)")
    else:
        if channels is None:
            bad(f"data.source {data.source!r} gives feature vectors: use model.arch = \"mlp\"")
        if data.flatten:
            bad(f"data.flatten = true gives vectors: model.arch {model.arch!r} needs images")
        if model.in_channels != channels:
            bad(f"model.in_channels = {model.in_channels} but data.source {data.source!r} has {channels} channel(s)")
        if model.num_classes != outputs:
            bad(f"model.num_classes = {model.num_classes} but data.source {data.source!r} has {outputs} classes")


def load_task_file(path: Path) -> TaskSpec:
    spec = parse_task(path.read_text(), str(path))
    if spec.name != path.stem:
        raise UsageError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec
