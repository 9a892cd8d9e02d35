"""What a run command selects, before anything is planned: tasks x methods x seeds from the
command line or a matrix file, hyperparameters set or gridded, tuning, sequential seeds.

:class:`Selection` holds ``benchsuite run``'s "what to run" options (and
``benchsuite.run``'s, normalized: mappings become the command line's text forms, so both are
checked by the same code with the same messages); :func:`groups` turns it into the groups of
runs and the tuning settings :func:`benchsuite.runs.matrix.plan` takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchsuite.errors import UsageError

DEFAULT_SEEDS = 5


@dataclasses.dataclass
class Selection:
    """``seeds``: a count (None: 5, or the matrix file's); ``seed_list``: explicit seeds
    instead; ``schedule``: sequential seeds (min, max, batch) instead. ``hyperparameters``,
    ``grid`` and ``spaces``: ``plugin.name=...`` texts as ``--set``, ``--grid`` and ``--space``
    take them; ``train``: ``[train]`` overrides, ``KEY=VALUE`` texts or a mapping."""

    tasks: list[str] = dataclasses.field(default_factory=list)
    plugins: list[str] = dataclasses.field(default_factory=list)
    matrix: str | None = None
    seeds: int | None = None
    seed_list: list[int] | None = None
    schedule: tuple[int, int, int] | None = None
    spending: str | None = None
    hyperparameters: list[str] = dataclasses.field(default_factory=list)
    grid: list[str] = dataclasses.field(default_factory=list)
    baseline: bool = True
    replicate: str = ""
    tune: int | None = None
    tune_seeds: int | None = None
    spaces: list[str] = dataclasses.field(default_factory=list)
    train: Mapping[str, Any] | list[str] = dataclasses.field(default_factory=list)
    vary: list[str] = dataclasses.field(default_factory=list)
    epochs: int | None = None
    subset: int | None = None
    tasks_dirs: list[str | Path] = dataclasses.field(default_factory=list)


def names(value: str | Sequence[str] | None) -> list[str]:
    """One name or several as a list (a lone string is one name, not its letters)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def assignments(value: Mapping[str, Any] | Sequence[str] | None, many: bool = False) -> list[str]:
    """``{"l2.lam": 1e-4}`` (with ``many``: ``{"l2.lam": [1e-5, 1e-4]}``) as the command
    line's ``l2.lam=0.0001`` texts; texts pass through unchanged."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Mapping):
        return list(value)
    if many:
        return [f"{key}={','.join(value_text(v) for v in values)}" for key, values in value.items()]
    return [f"{key}={value_text(v)}" for key, v in value.items()]


def value_text(value: Any) -> str:
    """A value as command-line text that parses back to it (``True`` as ``true``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def train_values(value: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``[train]`` overrides: ``--train KEY=VALUE`` texts, or a mapping (keys checked alike)."""
    from benchsuite.runs import matrix

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return matrix.parse_train([value] if isinstance(value, str) else value)
    checked = matrix.parse_train([f"{key}=0" for key in value])  # the keys, with parse_train's messages
    return {key: value[key] for key in checked}


def seed_options(seeds) -> dict[str, Any]:
    """``seeds`` as :class:`Selection` fields: a count, ``"MIN:MAX[:BATCH]"`` or a
    (min, max, batch) tuple (sequential), or a list of explicit seeds."""
    if seeds is None or isinstance(seeds, bool):
        return {"seeds": seeds}
    if isinstance(seeds, int):
        return {"seeds": seeds}
    if isinstance(seeds, str):
        from benchsuite.runs.sequential import parse_schedule  # with the statistics (scipy): only for text

        try:
            schedule = parse_schedule(seeds, "--seeds")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if schedule is None and not seeds.strip().isdigit():
            raise UsageError(f"seeds {seeds!r}: a count (5), sequential seeds (\"MIN:MAX\" or \"MIN:MAX:BATCH\") "
                             "or a list of seeds")
        return {"schedule": schedule} if schedule is not None else {"seeds": int(seeds)}
    if isinstance(seeds, tuple) and len(seeds) == 3:
        return {"schedule": tuple(seeds)}
    return {"seed_list": list(seeds)}


def sequential_plan(selection: Selection, replicas: int, force: bool):
    """The selection's sequential plan (sequential ``seeds``, or a matrix file's ``seeds =
    "MIN:MAX"``), or None; its ``seeds`` becomes the first look's count."""
    from benchsuite.runs import matrix, sequential

    plan = None
    if selection.schedule is not None:
        if selection.seed_list:
            raise UsageError("--seed lists seeds, sequential --seeds MIN:MAX counts them: give one of the two")
        plan = sequential.make_plan(selection.schedule, selection.spending or "pocock")
        selection.seeds = plan.min
    elif selection.matrix and selection.seeds is None:
        plan = matrix.sequential_plan(selection.matrix, selection.spending)
    if plan is None and selection.spending:
        raise UsageError("--spending: how sequential seeds spend alpha; give --seeds MIN:MAX (or a matrix file "
                         "with seeds = \"MIN:MAX\")")
    if plan is not None and (replicas > 1 or force):
        raise UsageError("sequential --seeds MIN:MAX decides from stored runs between looks: not under torchrun, "
                         "and not with --force (give a count, --seeds N)")
    return plan


def groups(selection: Selection, available):
    """The selection's groups of runs and its tuning settings (None: no tuning)."""
    from benchsuite.runs import matrix
    from benchsuite.runs.tuning import parse_space_args, settings

    spaces = parse_space_args(selection.spaces)
    if selection.matrix:
        given = [opt for opt, value in (("--plugin", selection.plugins), ("--task", selection.tasks),
                                        ("--set", selection.hyperparameters), ("--grid", selection.grid),
                                        ("--seed", selection.seed_list)) if value]
        if given:
            raise UsageError(f"--matrix takes its methods, tasks and seeds from the file; drop {', '.join(given)}")
        if selection.replicate:
            raise UsageError("--matrix takes replicates from the file (a group's `replicate`); drop --replicate")
        train = train_values(selection.train)
        found, table = matrix.load_groups(selection.matrix, available, selection.tasks_dirs, selection.epochs,
                                          selection.subset, selection.seeds, train_overrides=train,
                                          tuned=selection.tune is not None)
        if table is None and selection.tune is None:
            _no_tuning_options(selection)
            return found, None
        table = table or {}
        budget = selection.tune if selection.tune is not None else table.get("budget")
        seeds = selection.tune_seeds if selection.tune_seeds is not None else table.get("seeds")
        where = "--tune" if selection.tune is not None else f"{selection.matrix} [tuning]"
        return found, settings(budget, seeds, table.get("spaces", {}), where=where, command=spaces)
    methods = matrix.parse_methods(selection.plugins, available, selection.hyperparameters, selection.grid,
                                   baseline=selection.baseline)
    train = train_values(selection.train)
    tasks = tasks_from(selection.tasks, selection.tasks_dirs, selection.epochs, selection.subset, train)
    seeds = matrix.parse_seeds(selection.seeds if selection.seeds is not None else DEFAULT_SEEDS,
                               selection.seed_list)
    grids = matrix.assigned_names(selection.grid, "--grid")
    trained = {f"train.{key}" for key in train}  # fixed by --train, not searched
    group = matrix.Group(tasks, methods, seeds, selection.replicate,
                         matrix.assigned_names(selection.hyperparameters) | grids | trained, grids)
    if selection.tune is None:
        _no_tuning_options(selection)
        return [group], None
    return [group], settings(selection.tune, selection.tune_seeds, command=spaces)


def _no_tuning_options(selection: Selection) -> None:
    used = [opt for opt, value in (("--tune-seeds", selection.tune_seeds), ("--space", selection.spaces)) if value]
    if used:
        raise UsageError(f"{', '.join(used)}: how methods are tuned; give --tune K (or a matrix with [tuning])")


def tasks_from(task_names: list[str], extra_dirs, epochs, subset, train=None):
    """The named tasks (comma-separated names allowed), each once, with the overrides."""
    from benchsuite.tasks import get_task

    flat = [n.strip() for arg in task_names for n in arg.split(",") if n.strip()]
    if not flat:
        raise UsageError("no task selected: give at least one --task (see `benchsuite tasks`)")
    return [get_task(n, extra_dirs).with_overrides(epochs=epochs, subset=subset, **(train or {}))
            for n in dict.fromkeys(flat)]
