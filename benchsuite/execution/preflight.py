"""The ``configure`` phase ahead of every run: what would fail runs, found before anything trains."""

from __future__ import annotations

import json

from benchsuite import plugins as plugin_registry
from benchsuite.execution.environment import resolve_device
from benchsuite.execution.hooks import Hooks, plugin_manager
from benchsuite.plugins.run import Run


def preflight(specs, device: str = "cpu", available=None) -> list[str]:
    """Problems that would fail runs before training, found without loading data or
    building a model: each distinct task and method of ``specs`` goes through its plugins'
    ``configure`` hooks (and their construction) once, on a fresh plugin instance.

    Returns one line per rejected task and method (method, task, plugin, hook, reason);
    ``benchsuite run`` prints them and exits 2 before anything trains."""
    available = available if available is not None else plugin_registry.discover()
    dev = resolve_device(device)
    problems, seen = [], set()
    for spec in specs:
        key = (json.dumps(spec.task.to_dict(), sort_keys=True, default=str), spec.method.plugins)
        if key in seen:
            continue
        seen.add(key)
        try:
            pm, _ = plugin_manager(spec.method, available)
            Hooks(pm).call("configure", run=Run(spec.task, spec.seed, spec.method, dev, 0))
        except Exception as exc:  # noqa: BLE001 - every reason is reported, none is fatal here
            problems.append(f"{spec.method.label} on {spec.task.name}: {exc}")
    return problems
