"""benchsuite: a plugin-based benchmark suite for neural-network regularization methods."""

__version__ = "0.2.0"

from benchsuite.hookspecs import hookimpl  # noqa: E402
from benchsuite.plugins import Hyperparameter, Plugin  # noqa: E402
from benchsuite.search import Choice, IntUniform, LogUniform, Uniform  # noqa: E402

__all__ = ["Choice", "Hyperparameter", "IntUniform", "LogUniform", "Plugin", "Uniform", "__version__", "hookimpl"]
