"""``run``: tasks x methods x seeds into a results folder, the steps of ``benchsuite run`` in order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


from benchsuite.api.common import PathLike, _quiet, _warnings_as_python, check_task_dirs, plugin_warnings


@dataclasses.dataclass
class RunResult:
    """What :func:`run` did.

    ``runs``: every run the call stands for, in order (under tuning, every trial run; the
    sequential looks' runs join them, or ``report_runs`` when tuned); ``report_runs``: under
    tuning, each study's chosen trial on the report seeds; ``records``: run id -> its stored
    record (None: not stored); ``executed``: the records (or, from worker processes, their
    summaries) of the runs this call trained; ``skipped``: the run ids found already done;
    ``studies`` and ``decisions``: the tuning studies and each one's state ("chosen",
    "lost", "undecided") by key; ``sequential``: the sequential plan, if any;
    ``submitted``: with a cluster executor, the submission (entries, runs skipped);
    ``listing``: with ``dry_run``, the runs planned (:class:`benchsuite.execution.pipeline.Listing`).
    """

    results: Path
    runs: list = dataclasses.field(default_factory=list)
    report_runs: list = dataclasses.field(default_factory=list)
    records: dict[str, dict | None] = dataclasses.field(default_factory=dict)
    executed: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    studies: list = dataclasses.field(default_factory=list)
    decisions: dict[str, str] = dataclasses.field(default_factory=dict)
    sequential: Any = None
    submitted: dict | None = None
    listing: Any = None

    @property
    def lost(self) -> list[tuple]:
        """(run, status) of each run that did not finish ("failed", "diverged", "not
        stored"); under tuning, of the report runs (a lost trial counts against its
        method's budget instead)."""
        from benchsuite.execution.pipeline import lost

        return lost(self.report_runs if self.studies else self.runs, self.records)

    def table(self) -> pl.DataFrame:
        """The stored records of this call's runs, one row each (as :func:`open_results`)."""
        from benchsuite.report.summary import with_names
        from benchsuite.store import runs_table

        return with_names(runs_table([r for r in self.records.values() if r is not None]))


@_warnings_as_python
def run(tasks: str | Sequence[str] = (), plugins: str | Sequence[str] = (), *, results: PathLike = "results",
        matrix: PathLike | None = None, seeds: int | str | Sequence[int] | None = None, spending: str | None = None,
        hyperparameters: Mapping[str, Any] | Sequence[str] | None = None,
        grid: Mapping[str, Sequence[Any]] | Sequence[str] | None = None, baseline: bool = True,
        replicate: str = "", tune: int | None = None, tune_seeds: int | None = None,
        spaces: Mapping[str, str] | Sequence[str] | None = None, train: Mapping[str, Any] | Sequence[str] | None = None,
        vary: Sequence[str] = (), epochs: int | None = None, subset: int | None = None,
        runs: Sequence | None = None, tasks_dirs: Sequence[PathLike] = (),
        device: str = "cpu", precision: str | None = None, channels_last: bool = False, compile: bool = False,
        data_dir: PathLike = "data", download: bool = False, loader_workers: int | None = None,
        verify_data: bool = True, cache_dir: PathLike | None = None, checkpoint_interval: float = 30.0,
        jobs: int = 1, threads: int | None = None,
        deterministic: bool = False, executor: str = "inline", partition: str | None = None,
        time_min: int | None = None, gpus: int | None = None, cpus: int | None = None, mem_gb: int | None = None,
        array_parallelism: int | None = None, slurm_args: Mapping[str, str] | Sequence[str] = (),
        wait: bool = False, force: bool = False, dry_run: bool = False, progress: bool = False,
        notes: Callable[[str], None] | None = None) -> RunResult:
    """Train every (task, method, seed) not stored yet into ``results``; what ``benchsuite
    run`` does, with the same checks, run ids and records.

    What: ``tasks`` (names or task-file paths) x ``plugins`` (``"wc+lpwd"`` combines) x
    ``seeds`` (a count N for seeds 0..N-1, default 5; ``"MIN:MAX[:BATCH]"`` for sequential
    seeds with ``spending``; or a list of seeds), the baseline ``none`` joining unless
    ``baseline=False``; or a ``matrix`` file instead of tasks and plugins; or ``runs``,
    explicit :class:`~benchsuite.runs.identity.RunSpec` objects (a claim's runs).
    ``hyperparameters`` ``{"l2.lam": 1e-3}``, ``grid`` ``{"l2.lam": [1e-4, 1e-3]}`` (or the
    command line's ``"l2.lam=1e-3"`` texts), ``train`` overrides of the tasks' ``[train]``
    values, ``tune`` K trials per method (``tune_seeds``, ``spaces``), ``replicate`` (A/A
    salt), ``vary`` (``["split"]``), ``epochs`` and ``subset`` (smoke runs), ``precision``.
    How: ``device``, ``jobs`` worker processes, ``threads``, ``deterministic``,
    ``channels_last``, ``compile``, ``checkpoint_interval``, ``force`` (rerun stored runs);
    data: ``data_dir``, ``download``, ``loader_workers``, ``verify_data``, ``tasks_dirs``,
    ``cache_dir``: the folder of the on-disk cache of generated data (MNIST-1D, digits,
    mnist5k; :mod:`benchsuite.tasks.data_cache`), which pool workers and later processes
    read instead of generating again. Its default, None, caches nothing on disk (data is
    still made once per process): the API writes only where it is told, and finding the
    command line's folder (``$BENCHSUITE_CACHE_DIR``, ``$XDG_CACHE_HOME``) would mean
    reading the environment; pass ``Path.home() / ".cache/benchsuite"`` to share the
    command line's default. The cache never changes a number;
    ``executor`` "slurm", "local" or "debug" submits through submitit (``partition``,
    ``time_min``, ``gpus``, ``cpus``, ``mem_gb``, ``array_parallelism``, ``slurm_args``,
    ``wait``). ``dry_run``: plan and list, train nothing. ``progress``: the progress meter on
    stderr; ``notes(line)`` receives each line worth telling (report runs started, a
    sequential look taken, warnings). Under torchrun (an initialized process group) every
    process trains each run together.

    Raises UsageError (bad input, a plugin rejecting a task, a missing data set, an
    unwritable folder) before anything trains. Runs that fail or diverge are results:
    see :attr:`RunResult.lost`.
    """
    from benchsuite.execution.pipeline import HowToRun
    from benchsuite.runs import selection as chosen
    from benchsuite.tasks.data_options import DataOptions

    selection = chosen.Selection(
        tasks=chosen.names(tasks), plugins=chosen.names(plugins), matrix=str(matrix) if matrix else None,
        spending=spending, hyperparameters=chosen.assignments(hyperparameters),
        grid=chosen.assignments(grid, many=True), baseline=baseline, replicate=replicate, tune=tune,
        tune_seeds=tune_seeds, spaces=chosen.assignments(spaces), train=train or [], vary=list(vary),
        epochs=epochs, subset=subset, tasks_dirs=list(tasks_dirs), **chosen.seed_options(seeds))
    data = DataOptions(Path(data_dir), download, loader_workers, verify_data, cache_dir)
    how = HowToRun(device=device, checkpoint_interval=checkpoint_interval, channels_last=channels_last,
                   compile=compile, deterministic=deterministic, threads=threads, jobs=jobs, data=data,
                   executor=executor, force=force, progress=progress)
    cluster = {"partition": partition, "time_min": time_min, "gpus": gpus, "cpus": cpus, "mem_gb": mem_gb,
               "array_parallelism": array_parallelism, "slurm_args": slurm_args, "wait": wait}
    return _run(selection, how, Path(results), precision, cluster, dry_run, runs, notes or _quiet)


def _run(selection, how, results: Path, precision, cluster: dict, dry_run: bool, explicit, notes) -> RunResult:
    from benchsuite import plugins as plugin_registry
    from benchsuite.execution import pipeline
    from benchsuite.execution.environment import distributed
    from benchsuite.runs import matrix
    from benchsuite.runs import selection as chosen
    from benchsuite.store import Store

    options = pipeline.check(how)
    check_task_dirs(selection.tasks_dirs)
    available = plugin_registry.discover()
    if explicit is not None:  # the caller made the runs from the plugins it found: its warnings are said
        return _run_explicit(list(explicit), Store(results), available, how, options, notes)
    for line in plugin_warnings(available):
        notes(line)
    replicas = distributed()[1]
    sequential = chosen.sequential_plan(selection, replicas, how.force)
    groups, tuning = chosen.groups(selection, available)
    for group in groups:
        if precision:
            group.tasks = [t.with_overrides(precision=precision) for t in group.tasks]
        if replicas > 1:
            group.tasks = [t.with_overrides(replicas=replicas) for t in group.tasks]
        group.tasks = [t.with_varied(selection.vary) for t in group.tasks]
    store = Store(results)
    plan = matrix.plan(groups, available, tuning, root=store.root)
    # a trial that a plugin's configure refuses is a lost trial, not bad input: only each
    # study's default configuration is checked before anything trains
    pipeline.preflight([s.spec(s.trials[0], s.seeds[0], available) for s in plan.studies] or plan.runs,
                       how.device, available)
    if dry_run:
        listing = pipeline.listing(plan, store, available, how.force)
        return RunResult(store.root, listing.runs, studies=plan.studies, sequential=sequential, listing=listing)
    pipeline.require_data(plan.runs, store, how.data, how.force)  # bad input first: nothing written yet
    store.check_writable()
    pipeline.record_sequential_plan(sequential, store, notes)
    if plan.studies:  # the trials this call runs are written down before any of them trains
        pipeline.start_studies(plan, store, available)
    if how.executor != "inline":
        return _submit(plan, store, available, how, options, cluster, sequential)
    from benchsuite.execution.pool import keep_workers

    with keep_workers():  # --jobs workers start once: trials, report runs and sequential looks share them
        outcome, report = pipeline.run_plan(plan, store, available, how, options, notes)
        specs, report = _take_looks(sequential, plan, store, available, (plan.runs, report), how, options, outcome,
                                    notes)
    return RunResult(store.root, specs, report, {s.run_id: store.get(s.run_id) for s in specs + report},
                     outcome.executed, outcome.skipped, plan.studies, pipeline.decisions(plan, store, available),
                     sequential)


def _run_explicit(specs: list, store, available, how, options, notes) -> RunResult:
    """Given runs (a claim's): those not stored yet (with ``force``, all of them)."""
    from benchsuite.execution import pipeline

    pending = [s for s in specs if how.force or not store.is_done(s.run_id)]
    result = RunResult(store.root, specs, skipped=[s.run_id for s in specs if s not in pending])
    if pending:
        pipeline.preflight(pending, how.device, available)
        store.check_writable()
        notes(f"{len(pending)} of {len(specs)} runs to do; results in {store.root}")
        outcome = pipeline.run_specs(pending, store, available, how, options)
        result.executed, result.skipped = outcome.executed, result.skipped + outcome.skipped
    result.records = {s.run_id: store.get(s.run_id) for s in specs}
    return result


def _submit(plan, store, available, how, options, cluster: dict, sequential) -> RunResult:
    from benchsuite.execution import pipeline
    from benchsuite.report.looks import with_next_look

    wait = cluster.pop("wait") or how.executor == "debug"
    settings = pipeline.cluster_options(how.executor, cluster.pop("slurm_args"), **cluster)
    specs = with_next_look(sequential, store, plan.runs + pipeline.report_runs(plan, store, available), available)
    submitted = pipeline.submit(specs, store, settings, how, options, wait)
    records = {s.run_id: store.get(s.run_id) for s in specs} if wait else {}
    return RunResult(store.root, specs, records=records, sequential=sequential, submitted=submitted)


def _take_looks(sequential, plan, store, available, lists, how, options, outcome, notes) -> tuple[list, list]:
    """Run the next looks' seeds until every comparison is decided or at its last look:
    after each batch the stored runs are analyzed again. ``lists`` are the call's runs and
    (tuned) report runs; returns them with the runs added (to the report runs when tuned),
    and adds the records computed to ``outcome``."""
    from benchsuite.execution import pipeline
    from benchsuite.report.looks import next_look_runs

    specs, report = lists
    if sequential is None:
        return specs, report
    known, added, tried = {s.run_id: s for s in specs + report}, [], set()
    while True:
        todo = next_look_runs(sequential, store, known, available)
        stuck = [spec for spec in todo if spec.run_id in tried]
        if stuck:  # tried, yet not stored: held by another process, or ended without a record
            notes(f"sequential seeds: {len(stuck)} run(s) of the next look are not stored yet (another process may "
                  "hold them); run the same command again to take the look")
        if not todo or stuck:
            return (specs, report + added) if plan.studies else (specs + added, report)
        notes(f"sequential seeds: {len(todo)} more run(s) for the comparisons still undecided (seeds "
              f"{min(s.seed for s in todo)}-{max(s.seed for s in todo)})")
        outcome.executed += pipeline.run_specs(todo, store, available, how, options).executed
        tried |= {spec.run_id for spec in todo}
        known.update({spec.run_id: spec for spec in todo})
        added += todo

