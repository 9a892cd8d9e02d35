"""A run's outcome as its record stores it. No torch here: the read-only commands
(``results``, ``report``, ``leaderboard``) read records through :mod:`benchsuite.store`,
which needs these names and nothing from the engine."""

# The layout of a record (its ``record_format``; records without one are format 1). A change
# that older versions would misread raises it: they then ignore such records and refuse to
# run over them.
RECORD_FORMAT = 1

STATUS_FINISHED, STATUS_DIVERGED, STATUS_FAILED = "finished", "diverged", "failed"
STATUSES = (STATUS_FINISHED, STATUS_DIVERGED, STATUS_FAILED)
DONE_STATUSES = (STATUS_FINISHED, STATUS_DIVERGED)  # never rerun; a failed run is retried
