"""A run's outcome as its record stores it. No torch here: the read-only commands
(``results``, ``report``, ``leaderboard``) read records through :mod:`benchsuite.store`,
which needs these names and nothing from the engine."""

STATUS_FINISHED, STATUS_DIVERGED, STATUS_FAILED = "finished", "diverged", "failed"
STATUSES = (STATUS_FINISHED, STATUS_DIVERGED, STATUS_FAILED)
DONE_STATUSES = (STATUS_FINISHED, STATUS_DIVERGED)  # never rerun; a failed run is retried
