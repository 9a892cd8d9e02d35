"""A run's plugins and the calling of their hooks: one implementation at a time, in pluggy's
order, the way each hook's spec declares (every result, the first result, or a chain: see
``benchsuite.plugins.hookspecs``), timed, with errors that name the plugin and the hook."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from benchsuite import plugins as plugin_registry
from benchsuite.default_plugins import DefaultLoss, DefaultOptimizer
from benchsuite.errors import Diverged
from benchsuite.execution.environment import distributed, lost_a_peer
from benchsuite.plugins import hookspecs
from benchsuite.runs.identity import Method


def plugin_manager(method: Method, available) -> tuple[Any, list]:
    """The run's pluggy manager: the host's default plugins, then ``method``'s plugins in
    order; and the selected plugins' infos."""
    infos = plugin_registry.resolve(method.names, available)
    methods = [(info, method.hyperparameters[info.name]) for info in infos]
    return plugin_registry.make_plugin_manager(methods, defaults=[DefaultOptimizer(), DefaultLoss()]), infos


class PluginError(Exception):
    """A plugin broke the hook contract or raised in a hook: names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, message: str):
        super().__init__(f"plugin {plugin!r}, hook {hook}: {message}")
        self.plugin, self.hook, self.message = plugin, hook, message

    def __reduce__(self):  # the combined classes below are not importable: pickle as PluginError
        return PluginError, (self.plugin, self.hook, self.message)


_ERROR_CLASSES: dict[type, type] = {}


def _plugin_error_like(exc: Exception) -> type:
    """PluginError that is also an instance of the plugin's own exception class, so code
    (and plugin tests) catching ``ValueError`` from a hook still do, and the message names
    the plugin and the hook. Classes that cannot be combined fall back to PluginError."""
    kind = type(exc)
    if kind not in _ERROR_CLASSES:
        try:
            _ERROR_CLASSES[kind] = type(f"PluginError[{kind.__name__}]", (PluginError, kind), {})
        except TypeError:
            _ERROR_CLASSES[kind] = PluginError
    return _ERROR_CLASSES[kind]


def _call(impl, hook_name: str, kwargs: dict):
    try:
        return impl.function(*[kwargs[arg] for arg in impl.argnames])
    except (PluginError, Diverged):
        raise
    except Exception as exc:
        if distributed()[1] > 1 and lost_a_peer(exc):
            raise
        message = f"{type(exc).__name__}: {exc}"
        try:
            error = _plugin_error_like(exc)(impl.plugin_name, hook_name, message)
        except TypeError:  # an exception class whose constructor wants other arguments
            error = PluginError(impl.plugin_name, hook_name, message)
        raise error from exc


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype})"
    return f"{type(value).__name__} {value!r}"[:200]


def check_penalty(plugin: str, term) -> None:
    """The penalty contract: a 0-dim floating tensor that is part of the autograd graph
    (a detached term would silently do nothing; a detached zero is allowed)."""
    if not isinstance(term, torch.Tensor) or term.dim() != 0 or not term.is_floating_point():
        raise PluginError(plugin, "penalty", f"must return a 0-dim floating tensor or None, got {_describe(term)}")
    if not term.requires_grad and torch.is_grad_enabled() and term.item() != 0:
        raise PluginError(plugin, "penalty", "returned a tensor detached from the autograd graph (no grad): "
                                             "it would not regularize anything; compute it from the model's "
                                             "parameters without .detach(), .item() or torch.no_grad()")


class Hooks:
    """Calls a run's hook implementations one by one, in pluggy's order, timing each.

    :meth:`call` calls a hook the way its spec declares (``hookspecs.calling``). The
    implementation list of each hook is fixed once the run's plugins are registered, so it
    is resolved once, as is each hook's calling mode.
    """

    def __init__(self, pm, timed: bool = True):
        self.timed = timed
        self.names = {id(plugin): name for name, plugin in pm.list_name_plugin()}
        self.impls: dict[str, list] = {}
        self.calling: dict[str, hookspecs.Calling] = {}
        for hook_name in plugin_registry.hook_names():
            impls = list(reversed(getattr(pm.hook, hook_name).get_hookimpls()))
            for impl in impls:
                if impl.hookwrapper or impl.wrapper:
                    raise TypeError(f"{impl.plugin_name}: hook wrappers are not supported ({hook_name})")
            self.impls[hook_name] = impls
            self.calling[hook_name] = hookspecs.calling(hook_name)
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[tuple[str, str], int] = {}

    def call(self, hook_name: str, **kwargs) -> Any:
        """Call the hook ``hook_name`` with ``kwargs``, as its spec declares:

        * ``EACH``: every implementation; returns ``[(plugin name, result), ...]`` of the
          results other than ``None``, in calling order;
        * ``FIRST``: implementations until one returns something other than ``None``, which
          is returned (``None`` when none did);
        * ``CHAIN``: every implementation, each receiving as the spec's chained argument
          what the one before returned (``None``: unchanged); returns the last value.
        """
        calling = self.calling[hook_name]
        if calling.mode == hookspecs.FIRST:
            return self._first(hook_name, kwargs)
        if calling.mode == hookspecs.CHAIN:
            return self._chain(hook_name, calling.passes, kwargs)
        return self._each(hook_name, kwargs)

    def each(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        """Deprecated, goes away in benchsuite 0.4: :meth:`call` calls a hook as its spec
        declares. Every implementation's ``(plugin name, result)``, whatever the spec says."""
        warnings.warn("Hooks.each(name, ...) goes away in benchsuite 0.4: Hooks.call(name, ...) calls a hook "
                      "the way its spec declares", DeprecationWarning, stacklevel=2)
        return self._each(hook_name, kwargs)

    def first(self, hook_name: str, **kwargs) -> Any:
        """Deprecated, goes away in benchsuite 0.4: :meth:`call` calls a hook as its spec
        declares. The first result other than ``None``, whatever the spec says."""
        warnings.warn("Hooks.first(name, ...) goes away in benchsuite 0.4: Hooks.call(name, ...) calls a hook "
                      "the way its spec declares", DeprecationWarning, stacklevel=2)
        return self._first(hook_name, kwargs)

    def _each(self, hook_name: str, kwargs: dict) -> list[tuple[str, Any]]:
        results = []
        for impl in self.impls[hook_name]:
            result = self._call(impl, hook_name, kwargs)
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def _first(self, hook_name: str, kwargs: dict) -> Any:
        for impl in self.impls[hook_name]:
            result = self._call(impl, hook_name, kwargs)
            if result is not None:
                return result
        return None

    def _chain(self, hook_name: str, passed: str, kwargs: dict) -> Any:
        value = kwargs[passed]
        for impl in self.impls[hook_name]:
            returned = self._call(impl, hook_name, {**kwargs, passed: value})
            if returned is not None:
                value = returned
        return value

    def _call(self, impl, hook_name: str, kwargs: dict):
        if not self.timed:
            return _call(impl, hook_name, kwargs)
        start = time.perf_counter()
        try:
            return _call(impl, hook_name, kwargs)
        finally:
            self._account(impl.plugin_name, hook_name, time.perf_counter() - start)

    def _account(self, plugin: str, hook: str, seconds: float) -> None:
        key = (plugin, hook)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1

    def timings(self) -> list[dict[str, Any]]:
        return [
            {"plugin": plugin, "hook": hook, "calls": self.calls[(plugin, hook)], "seconds": seconds}
            for (plugin, hook), seconds in sorted(self.seconds.items())
        ]


def metric_values(results: list[tuple[str, Any]]) -> dict[str, float]:
    """The ``metrics`` hook's results, flattened to ``plugin.name``: numbers only."""
    flat = {}
    for plugin, values in results:
        if not isinstance(values, dict):
            raise PluginError(plugin, "metrics", f"must return a dict of numbers, got {_describe(values)}")
        for key, value in values.items():
            number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if not isinstance(number, (int, float)) or not isinstance(key, str):
                raise PluginError(plugin, "metrics", f"value {key!r} must be a number or a one-element tensor, "
                                                     f"got {_describe(value)}")
            flat[f"{plugin}.{key}"] = float(number)
    return flat
