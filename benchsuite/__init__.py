"""benchsuite: a plugin-based benchmark suite for neural-network regularization methods.

The Python API (``docs/python-api.md``): ``benchsuite.run``, ``benchsuite.open_results``,
``benchsuite.analyze``, ``benchsuite.write_report``, ``benchsuite.list_tasks`` and
``benchsuite.get_task``; a plugin author's names: ``Plugin``, ``Hyperparameter``,
``hookimpl`` and the search spaces. Importing this package loads no torch.
"""

__version__ = "0.3.0"

from benchsuite import compat  # noqa: E402
from benchsuite.plugins import Hyperparameter, Plugin  # noqa: E402
from benchsuite.plugins.hookspecs import hookimpl  # noqa: E402
from benchsuite.plugins.search import Choice, IntUniform, LogUniform, Uniform  # noqa: E402

compat.install()

__all__ = ["Choice", "Hyperparameter", "IntUniform", "LogUniform", "Plugin", "Uniform", "__version__", "hookimpl"]
