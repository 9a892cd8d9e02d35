"""Results store: one JSON record per run under ``<results>/runs/<run_id>.json``.

:mod:`~benchsuite.store.folder` (the locked folder), :mod:`~benchsuite.store.record` (what
counts as a record), :mod:`~benchsuite.store.table` (records as the runs table),
:mod:`~benchsuite.store.files` (atomic writes).

Guarantees (see docs/results.md, "Results store: what it guarantees"):

* Records are written to a temporary file in the same folder, flushed to disk, then
  renamed over the final name (``os.replace`` is atomic): a killed process leaves the
  complete old record, the complete new one, or a stray ``.*.tmp`` that readers ignore.
* A run is computed by the process holding its claim: an exclusive lock on
  ``<results>/locks/<run_id>.lock`` (``flock``; the kernel releases it when the holder dies,
  even by kill -9). Two ``benchsuite run`` on one folder never compute the same run twice:
  the second skips a claimed run, and waits for it at the end (running it only if the
  first died without storing it).
* Temporary files and checkpoints are removed only by the holder of their run's claim, so
  a live writer's files are never deleted by another process.
* A record counts only if it is a JSON object with the fields of a record whose ``run_id``
  matches its file name. Anything else in ``runs/`` (torn or foreign JSON, a copy under
  another name, a folder named ``*.json``) is reported on stderr and ignored; reading never
  modifies the store, so read-only commands work on a read-only folder. When a run whose
  file is invalid is run again, the file is first set aside as
  ``<run_id>.json.<n>.corrupt`` (never overwriting an earlier one).
* Every record names its ``record_format`` (:data:`RECORD_FORMAT`; records without one are
  format 1). A record of a newer format is ignored by readers like an invalid file, but never
  set aside or replaced: ``run`` stops before training anything (see :meth:`Store.refuse_newer`).
* A run counts as done when its record says ``finished`` or ``diverged``; ``failed`` runs
  are retried by the next ``benchsuite run``. ``run --force`` reruns done runs too: the
  new record replaces the old one by the same atomic rename, so a forced rerun that is
  killed leaves the old record in place.
"""

from benchsuite.store.folder import Store
from benchsuite.store.record import MAX_RECORD_BYTES, newer_format, record_problem
from benchsuite.store.table import RUNS_SCHEMA, environment_label, runs_table, table_row

__all__ = ["MAX_RECORD_BYTES", "RUNS_SCHEMA", "Store", "environment_label", "newer_format", "record_problem",
           "runs_table", "table_row"]
