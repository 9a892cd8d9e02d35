"""Test helpers for plugin authors: the tiny task, runs, preflight and the conformance check.

Imports without pytest. The fixtures ``tiny_task`` and ``run_steps`` live in
:mod:`benchsuite.testing.fixtures`, a pytest plugin a project turns on (``addopts = "-p
benchsuite.testing.fixtures"`` under ``[tool.pytest.ini_options]``, as ``benchsuite new-plugin``
writes it); then::

    def test_my_penalty(run_steps):
        result = run_steps("myplugin", hp={"myplugin": {"lam": 0.1}}, epochs=1)
        assert result.status == "finished"

    def test_conforms():
        from benchsuite.testing import check_conformance
        check_conformance("myplugin")

``run_steps`` returns a :class:`StepsResult`: ``.status``, ``.metrics`` (the record's final
metrics), ``.record`` (the whole run record) and ``.method``. Without pytest:
:func:`run_task` (one run of plugins on a task, nothing stored), :func:`tiny_task_spec`,
:func:`available_with` (the installed plugins plus classes not installed, for testing a
plugin before packaging it), :func:`method_of`, :func:`build_for` (model, optimizer, run
and ``hooks``: ``hooks.call(name, **kwargs)`` calls a hook the way its spec declares: a
hook that collects every result returns ``(plugin, result)`` pairs, a first-result hook the
first result other than None, ``finalize`` the model its chain returns),
:func:`build_training` (the run set up as the engine sets it up, for driving
:func:`benchsuite.execution.engine.train_step` one batch at a time),
:func:`preflight_problems` and :func:`check_conformance`. A plugin's description comes from
its class docstring's first line (or a ``description`` attribute). A run's identity
includes the plugin's version: bump it after changing the plugin's code, or results stored
under the old version count as done.
"""

from __future__ import annotations

import importlib

# name -> module: loaded on first use, so that ``-p benchsuite.testing.fixtures`` (which
# imports this package first) costs no torch import in a session that never asks for them
_PUBLIC = {
    **dict.fromkeys(("TINY_SOURCE", "StepsResult", "ConformanceError", "available_with", "build_for",
                     "build_training", "check_conformance", "method_of", "preflight_problems", "run_task",
                     "tiny_task_spec", "training_batches"), "benchsuite.testing.helpers"),
    **dict.fromkeys(("json_dumps", "synthetic_record"), "benchsuite.store.synthetic"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
