"""The Python API: what every command calls (docs/python-api.md).

``run`` trains tasks x methods x seeds into a results folder, ``open_results`` reads it as a
table, ``analyze`` computes what a report shows, ``write_report`` writes one, ``list_tasks``
and ``get_task`` read the task files. They raise (:class:`benchsuite.errors.UsageError` for
bad input, ``FileNotFoundError`` for a missing results folder) and never print; ``run``
reports progress only when asked (``progress=True``, ``notes=``). No function here reads an
environment variable: the command line reads ``$BENCHSUITE_DATA`` and the others and passes
their values. Importing this module loads neither torch nor scipy; ``run`` loads torch.
"""

from benchsuite.api.claims import ClaimsResult, judge_claims, list_claims
from benchsuite.api.reading import (
    Pruned,
    analyze,
    collect,
    get_task,
    list_plugins,
    list_tasks,
    open_results,
    plan_seeds,
    prune,
    update_excerpts,
    write_report,
)
from benchsuite.api.running import RunResult, run

__all__ = ["ClaimsResult", "Pruned", "RunResult", "analyze", "collect", "get_task",
           "list_claims", "list_plugins", "list_tasks", "open_results", "plan_seeds", "prune", "run", "judge_claims",
           "update_excerpts", "write_report"]
