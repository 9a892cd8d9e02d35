"""benchsuite: a plugin-based benchmark suite for neural-network regularization methods.

The Python API (``docs/python-api.md``): ``benchsuite.run``, ``benchsuite.open_results``,
``benchsuite.analyze``, ``benchsuite.write_report``, ``benchsuite.list_tasks`` and
``benchsuite.get_task`` (from :mod:`benchsuite.api`, loaded on first use); a plugin author's
names: ``Plugin``, ``Hyperparameter``, ``hookimpl`` and the search spaces. Importing this
package loads no torch.
"""

__version__ = "0.3.0"

from benchsuite import compat  # noqa: E402
from benchsuite.plugins import Hyperparameter, Plugin  # noqa: E402
from benchsuite.plugins.hookspecs import hookimpl  # noqa: E402
from benchsuite.plugins.search import Choice, IntUniform, LogUniform, Uniform  # noqa: E402

compat.install()

_API = ("Pruned", "RunResult", "analyze", "collect", "get_task", "list_plugins", "list_tasks", "open_results",
        "plan_seeds", "prune", "run", "update_excerpts", "write_report", "ClaimsResult", "list_claims",
        "judge_claims")

__all__ = ["Choice", "Hyperparameter", "IntUniform", "LogUniform", "Plugin", "Uniform", "__version__", "hookimpl",
           *_API]


def __getattr__(name: str):
    """The API's names, imported when first asked for (``benchsuite.run``): ``import
    benchsuite`` stays light."""
    if name in _API:
        from benchsuite import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
