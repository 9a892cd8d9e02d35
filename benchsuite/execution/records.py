"""A run's record as it starts: what the results folder stores of every run, whatever its outcome."""

from __future__ import annotations

from typing import Any

import torch

from benchsuite.execution.environment import environment
from benchsuite.runs.identity import RunSpec
from benchsuite.store.status import RECORD_FORMAT


def new_record(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    """A run's record before it trains: its identity, configuration and environment."""
    method = spec.method
    return {
        "record_format": RECORD_FORMAT,
        "run_id": spec.run_id,
        "task": spec.task.name,
        "task_spec": spec.task.to_dict(),
        "method": method.name,
        "method_label": method.label,
        "method_full_label": method.full_label,
        "plugins": method.names,
        "hyperparameters": method.hyperparameters,
        "seed": spec.seed,
        "replicate": spec.replicate,
        **({"split_seed": spec.task.data.for_seed(spec.seed).split_seed} if spec.task.data.vary_split else {}),
        "plugin_versions": dict(spec.plugin_versions),
        "environment": environment(device),
        "status": None,
        "metrics": {},
        "curves": [],
        "timings": {},
    }
