"""pytest fixtures for plugin tests. A project asks for them, e.g. in its pyproject.toml::

    [tool.pytest.ini_options]
    addopts = "-p benchsuite.testing.fixtures"

(or ``pytest_plugins = ["benchsuite.testing.fixtures"]`` in its root ``conftest.py``). Installing
benchsuite registers no pytest plugin: other projects' test sessions never see these names.

Loading this module costs nothing noticeable: torch, the engine and the plugins are
imported only when a test asks for a fixture (the helpers live in
:mod:`benchsuite.testing`, which imports without pytest).

``tiny_task``: a small classification task on generated data (four Gaussian blobs, MLP
8/16/16/4 with batch norm, milliseconds per step). ``run_steps(plugins, hp=None, epochs=1,
seed=0, task=None, available=None)`` trains the given plugins (a name, ``"a+b"`` or a list)
on it, or on ``task``, and returns a :class:`benchsuite.testing.StepsResult`
(``.status``, ``.metrics``, ``.record``, ``.method``).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_task():
    """A tiny generated classification task (:func:`benchsuite.testing.tiny_task_spec`)."""
    from benchsuite.testing import tiny_task_spec

    return tiny_task_spec()


@pytest.fixture
def run_steps(tiny_task):
    """``run_steps(plugins, hp=None, epochs=1, seed=0, task=None, available=None)``: train
    on the tiny task (or ``task``) and return the StepsResult."""
    from benchsuite.testing import run_task

    def _run(plugins, hp=None, epochs: int = 1, seed: int = 0, task=None, available=None):
        spec = (task or tiny_task).with_overrides(epochs=epochs)
        return run_task(plugins, spec, hp=hp, seed=seed, available=available)

    return _run
