"""Where a run's real data sets are and how they are read, and where generated data is
cached: values the caller passes down (``benchsuite run --data-dir``, ``--cache-dir``,
``benchsuite.run(data_dir=..., cache_dir=...)``), never read from the environment below the
command line. Not part of a run's identity: the same run reads the same data from any folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """``data_dir``: the folder of the real data sets (see :mod:`benchsuite.tasks.real_data`).
    ``download``: let a data set's own loader fetch what is missing (needs network).
    ``loader_workers``: DataLoader workers of image-folder data sets (None: min(8, cores)).
    ``verify``: check files against their published checksums (False for re-encoded copies).
    ``cache_dir``: the folder of the on-disk cache of generated and preprocessed data
    (:mod:`benchsuite.tasks.data_cache`; the command line's default is the user's cache
    folder, ``~/.cache/benchsuite``); None: no disk cache, every process makes its data.
    It never changes a number: a cached source reads back the same tensors, bit for bit.

    Frozen and picklable: it travels to pool workers and cluster jobs inside the run's
    execution options, and keys the per-process data cache."""

    data_dir: Path = Path("data")
    download: bool = False
    loader_workers: int | None = None
    verify: bool = True
    cache_dir: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def workers(self) -> int:
        """DataLoader workers to use: as given, else min(8, cores)."""
        return self.loader_workers if self.loader_workers is not None else min(8, os.cpu_count() or 1)
