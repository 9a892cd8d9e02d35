"""Plugin discovery, hyperparameter declarations and the per-run PluginManager.

A plugin is a class (the *factory*) published under the entry-point group ``benchsuite``.
It declares its hyperparameters; the host validates user values against them before any
training starts and builds one instance per run with the validated values::

    class L2(Plugin):
        name = "l2"
        citation = "Krogh & Hertz, 1991"
        hyperparameters = (Hyperparameter("lam", float, 5e-4, low=0.0, search=LogUniform(1e-6, 1e-1),
                                          help="..."),)

        @hookimpl
        def penalty(self, model, run):
            return self.hp["lam"] * sum(w.square().sum() for w in regularized_weights(model))
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pluggy

import benchsuite.plugins.hookspecs as hookspecs
from benchsuite.errors import UsageError, did_you_mean
from benchsuite.plugins.run import Run  # noqa: F401 (re-exported: what every hook receives)
from benchsuite.plugins.search import Choice, IntUniform, LogUniform, Uniform, check_space  # noqa: F401 (re-exported)

ENTRY_POINT_GROUP = hookspecs.PROJECT
# The host's part of every run's identity, and the version of its built-in plugins (none, l1,
# l2, wd): bump it when a change to the host can change a run's numbers (the default optimizer
# and loss, the engine's step, data loading, model building, a built-in plugin), and every
# stored run is run again. Not the package version, which also moves for changes that leave
# every number as it was (commands, reports, helpers for plugins); each record's environment
# stores that one.
RESULTS_VERSION = "0.1.0"
RESULTS_FORMAT = "results format"  # how a generated file names RESULTS_VERSION, e.g. "results format 0.1.0"


def version_text() -> str:
    """``benchsuite 0.3.0 (package), results format 0.1.0``: both versions, each named, as
    ``benchsuite --version`` and every generated report state them."""
    from benchsuite import __version__

    return f"benchsuite {__version__} (package), {RESULTS_FORMAT} {RESULTS_VERSION}"


def version_info() -> dict[str, str]:
    """Both versions for a generated JSON file: ``{"package": ..., "results_format": ...}``."""
    from benchsuite import __version__

    return {"package": __version__, "results_format": RESULTS_VERSION}


def versioned_name(name: str) -> str:
    """How a generated file names an entry of a run's ``plugin_versions``: the host's entry,
    ``benchsuite``, holds the results format (:data:`RESULTS_VERSION`), not the package version."""
    return RESULTS_FORMAT if name == "benchsuite" else name

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One value of a plugin: its type, default, allowed range or choices, and, for a value
    that is tuned, ``search``: the space ``--tune`` draws its trials from (``LogUniform``,
    ``Uniform``, ``IntUniform``, ``Choice``; see :mod:`benchsuite.plugins.search`). The space must
    lie inside the allowed range and hold the default."""

    name: str
    type: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    help: str = ""
    low_inclusive: bool = True
    high_inclusive: bool = True
    search: LogUniform | Uniform | IntUniform | Choice | None = None

    def __post_init__(self):
        if self.type not in _TYPE_NAMES:
            raise TypeError(f"hyperparameter {self.name!r}: type must be one of bool/int/float/str")
        self.validate(self.default, owner="(default)")
        if self.search is not None:
            where = f"hyperparameter {self.name!r}"
            check_space(self.search, where, self.type, self.low, self.high, self.low_inclusive,
                        self.high_inclusive, self.choices)
            if not self.search.contains(self.default):
                raise UsageError(f"{where}: its default {self.default!r} lies outside its search space "
                                 f"{self.search.text()}")

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is None and self.high is None:
            return "any"
        lo = "(-inf" if self.low is None else ("[" if self.low_inclusive else "(") + f"{self.low:g}"
        hi = "inf)" if self.high is None else f"{self.high:g}" + ("]" if self.high_inclusive else ")")
        return f"{lo}, {hi}"

    def parse(self, text: str, owner: str) -> Any:
        """Turn command-line text into a value of this type, then validate it."""
        text = text.strip()
        try:
            if self.type is bool:
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value = lowered in ("true", "1", "yes")
            elif self.type is int:
                value = int(text)
            elif self.type is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise UsageError(
                f"{owner}.{self.name}: {text!r} is not a valid {self.type_name} "
                f"(expected {self.type_name}, {self.range_text()})"
            ) from None
        return self.validate(value, owner)

    def validate(self, value: Any, owner: str) -> Any:
        """Check a (typed) value against type and range; returns it normalized."""
        where = f"{owner}.{self.name}"
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise UsageError(f"{where}: expected {self.type_name}, got {type(value).__name__} {value!r}")
        if self.type is float and not math.isfinite(value):
            raise UsageError(f"{where}: {value!r} is not finite (allowed: {self.range_text()})")
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{where}: {value!r} is not allowed (allowed: {self.range_text()})")
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            raise UsageError(f"{where}: {value!r} is out of range (allowed: {self.range_text()})")
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            raise UsageError(f"{where}: {value!r} is out of range (allowed: {self.range_text()})")
        return value

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type_name,
            "default": self.default,
            "range": self.range_text(),
            "search": self.search.describe() if self.search is not None else None,
            "search_text": self.search.text() if self.search is not None else None,
            "help": self.help,
        }


class Plugin:
    """Base class for plugin factories: stores validated hyperparameters in ``self.hp``."""

    name: str = ""
    citation: str = ""
    description: str = ""
    hyperparameters: Sequence[Hyperparameter] = ()
    # final metrics (names as returned by ``metrics``) that reports show next to the task
    # metric; a name ending in ``*`` (``rate_l*``) stands for the indexed values ``rate_l0``,
    # ``rate_l1``, ... shown as one list
    report_metrics: Sequence[str] = ()
    # True for a method that is itself the run's weight decay (decoupled or per-layer decay):
    # the host sets the task's train.weight_decay to 0 for its runs (part of their identity),
    # so decay is never applied twice
    replaces_weight_decay: bool = False

    def __init__(self, **values: Any):
        declared = {h.name: h for h in self.hyperparameters}
        unknown = set(values) - set(declared)
        if unknown:
            raise UsageError(unknown_hyperparameter_message(self.name, sorted(unknown)[0], declared))
        self.hp = self.resolve({
            name: h.validate(values[name], self.name) if name in values else h.default
            for name, h in declared.items()
        })

    @classmethod
    def resolve(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Complete hyperparameter values (defaults filled in) into the values the run
        really uses, before the run's identity and label are made: e.g. expand a preset
        into the values it stands for. Raise UsageError for contradictory values."""
        return values


def unknown_hyperparameter_message(plugin: str, name: str, declared: dict) -> str:
    valid = ", ".join(sorted(declared)) or "none (this plugin takes no hyperparameters)"
    return f"unknown hyperparameter {plugin}.{name}{did_you_mean(name, declared)}; valid for {plugin}: {valid}"


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What discovery knows about one installed plugin."""

    name: str
    factory: type
    version: str
    distribution: str

    @property
    def hyperparameters(self) -> dict[str, Hyperparameter]:
        return {h.name: h for h in getattr(self.factory, "hyperparameters", ())}

    @property
    def hooks(self) -> list[str]:
        return implemented_hooks(self.factory)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "description": getattr(self.factory, "description", "") or _first_line(self.factory.__doc__),
            "hooks": self.hooks,
            "hyperparameters": [h.describe() for h in self.hyperparameters.values()],
            "citation": getattr(self.factory, "citation", ""),
            "warnings": plugin_warnings(self),
        }

    def make(self, values: dict[str, Any]):
        return self.factory(**values)

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, then the plugin's own ``resolve`` (if it has one)."""
        full = {name: h.default for name, h in self.hyperparameters.items()}
        full.update(values)
        resolver = getattr(self.factory, "resolve", None)
        return resolver(full) if resolver is not None else full


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def hook_names() -> list[str]:
    """Names of every hook in the contract, in the order of ``hookspecs``."""
    return [
        name
        for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")
    ]


def implemented_hooks(factory: type) -> list[str]:
    return [
        name
        for name in hook_names()
        if hasattr(getattr(factory, name, None), f"{hookspecs.PROJECT}_impl")
    ]


def unmarked_hooks(factory: type) -> list[str]:
    """Methods named like a hook but lacking ``@hookimpl``: pluggy never calls them."""
    return [
        name
        for name in hook_names()
        if callable(getattr(factory, name, None))
        and not hasattr(getattr(factory, name), f"{hookspecs.PROJECT}_impl")
    ]


def plugin_warnings(info: PluginInfo) -> list[str]:
    unmarked = unmarked_hooks(info.factory)
    if not unmarked:
        return []
    return [f"plugin {info.name!r} ({info.distribution or 'not installed'}): method(s) {', '.join(unmarked)} "
            "named like hooks lack @hookimpl and are never called"]


@dataclasses.dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin that cannot be used, and why."""

    name: str
    distribution: str
    reason: str

    def message(self) -> str:
        return f"plugin {self.name!r} ({self.distribution or 'unknown distribution'}) is broken: {self.reason}"


class Discovered(dict):
    """The usable plugins by name; ``broken`` holds those that failed to load or conflict."""

    def __init__(self, *args, broken: dict[str, BrokenPlugin] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.broken: dict[str, BrokenPlugin] = dict(broken or {})


def discover() -> Discovered:
    """Every plugin installed under the entry-point group, by name. A plugin that fails to
    load (missing module, invalid declaration, not a class) or shares its name with another
    installed plugin is left out and listed in ``.broken``: only runs selecting it fail."""
    found: dict[str, PluginInfo] = {}
    broken: dict[str, BrokenPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        distribution = dist.metadata["Name"] if dist is not None else ""
        try:
            factory = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a third-party package
            broken[ep.name] = BrokenPlugin(ep.name, distribution,
                                           f"loading {ep.value} failed: {type(exc).__name__}: {exc}")
            continue
        if not inspect.isclass(factory):
            broken[ep.name] = BrokenPlugin(ep.name, distribution,
                                           f"entry point {ep.value} must name a plugin class, got {factory!r}")
            continue
        info = PluginInfo(
            name=ep.name,
            factory=factory,
            version=RESULTS_VERSION if distribution == "benchsuite" else dist.version if dist is not None else "0",
            distribution=distribution,
        )
        if ep.name in broken and broken[ep.name].reason.startswith("two installed plugins"):
            continue
        if ep.name in found and found[ep.name].factory is not factory:
            first = found.pop(ep.name)
            broken[ep.name] = BrokenPlugin(
                ep.name, f"{first.distribution}, {info.distribution}",
                f"two installed plugins are named {ep.name!r} ({first.distribution} and {info.distribution}); "
                "uninstall one")
            continue
        found[ep.name] = info
    return Discovered(found, broken=broken)


def resolve(names: Iterable[str], available: dict[str, PluginInfo]) -> list[PluginInfo]:
    infos = []
    broken = getattr(available, "broken", {})
    for name in names:
        if name in broken and name not in available:
            raise UsageError(broken[name].message())
        if name not in available:
            raise UsageError(f"unknown plugin {name!r}{did_you_mean(name, available)}; "
                             f"installed plugins: {', '.join(sorted(available))}")
        infos.append(available[name])
    return infos


def make_plugin_manager(methods: Sequence[tuple[PluginInfo, dict[str, Any]]],
                        defaults: Sequence[object] = ()) -> pluggy.PluginManager:
    """A fresh manager with ``defaults`` (the host's built-in plugin instances, registered
    first) and one instance of each selected method, in order."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in defaults:
        pm.register(plugin, name=f"default:{type(plugin).__name__}")
    for info, values in methods:
        pm.register(info.make(values), name=info.name)
    pm.check_pending()
    return pm
