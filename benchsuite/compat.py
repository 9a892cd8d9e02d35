"""Import paths of release 0.2 that moved in 0.3, kept working for one release.

``import benchsuite.weights`` (or ``from benchsuite.weights import ...``) still works: it
warns with a ``DeprecationWarning`` naming the new path and returns the very module that
lives there (one module object, so a monkeypatch through either name is seen by both).
These names go away in 0.4.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

MOVED = {
    "benchsuite.weights": "benchsuite.toolkit.weights",
    "benchsuite.reparam": "benchsuite.toolkit.reparam",
    "benchsuite.training": "benchsuite.toolkit.training",
    "benchsuite.hookspecs": "benchsuite.plugins.hookspecs",
    "benchsuite.fixtures": "benchsuite.testing.fixtures",
    "benchsuite.engine": "benchsuite.execution.engine",
    "benchsuite.executors": "benchsuite.execution.pool",
    "benchsuite.publish": "benchsuite.report.publish",
    "benchsuite.search": "benchsuite.plugins.search",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        # the import system returns what sys.modules holds under the old name once this returns
        sys.modules[module.__name__] = importlib.import_module(self.new)


class MovedModules(importlib.abc.MetaPathFinder):
    """Answers an old path with the module at its new one, after a DeprecationWarning."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; the old path goes away in benchsuite 0.4",
                      DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
