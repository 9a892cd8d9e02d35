"""How a run executes, as opposed to what it computes (its identity, ``benchsuite.runs.identity``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchsuite.tasks.data_options import DataOptions


@dataclasses.dataclass(frozen=True)
class ExecutionOptions:
    """How a run executes, not what it computes (so not part of its identity).

    ``checkpoint``: file to save the run's state to at the end of epochs (atomically) and to
    resume from when it exists; saved when at least ``checkpoint_interval`` seconds passed
    since the last save (0: every epoch). ``channels_last``: 4-d inputs and the model in
    channels-last memory format. ``compile``: the forward pass through ``torch.compile``.
    ``data``: where the real data sets are read from (pool workers and cluster jobs get it
    with these options).
    """

    checkpoint: Path | None = None
    checkpoint_interval: float = 30.0
    channels_last: bool = False
    compile: bool = False
    # deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic) and
    # ``threads`` intra-op threads: a rerun on the same machine kind is bitwise identical
    deterministic: bool = False
    threads: int | None = None
    # seconds and calls per plugin and hook in the record's timings (two clock reads per
    # call; tests/perf/overhead.py measures the loop with and without them)
    hook_timing: bool = True
    data: DataOptions = DataOptions()
