"""The Python API: what every command calls (docs/python-api.md).

``run`` trains tasks x methods x seeds into a results folder, ``open_results`` reads it as a
table, ``analyze`` computes what a report shows, ``write_report`` writes one, ``list_tasks``
and ``get_task`` read the task files. They raise (:class:`benchsuite.errors.UsageError` for
bad input, ``FileNotFoundError`` for a missing results folder) and never print; ``run``
reports progress only when asked (``progress=True``, ``notes=``). No function here reads an
environment variable: the command line reads ``$BENCHSUITE_DATA`` and the others and passes
their values. Importing this module loads neither torch nor scipy; ``run`` loads torch.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchsuite.errors import UsageError, python_warning, warnings_to

if TYPE_CHECKING:
    import polars as pl

    from benchsuite.tasks.spec import TaskSpec

__all__ = ["Pruned", "RunResult", "analyze", "collect", "get_task", "list_plugins", "list_tasks", "open_results",
           "plan_seeds", "prune", "run", "update_excerpts", "write_report"]

PathLike = str | os.PathLike
RESAMPLES = 100_000  # benchsuite.stats.MONTE_CARLO_RESAMPLES, not imported: scipy loads with it



def _warnings_as_python(function):
    """What the call notices (a corrupt file set aside, an oversubscribed machine) arrives as
    a :class:`benchsuite.errors.BenchsuiteWarning`, not as text on stderr; the command line,
    which prints them, keeps its own choice."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        with warnings_to(python_warning, unless_chosen=True):
            return function(*args, **kwargs)

    return call


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
        verify_data: bool = True, checkpoint_interval: float = 30.0, jobs: int = 1, threads: int | None = None,
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
    data: ``data_dir``, ``download``, ``loader_workers``, ``verify_data``, ``tasks_dirs``;
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
    data = DataOptions(Path(data_dir), download, loader_workers, verify_data)
    how = HowToRun(device=device, checkpoint_interval=checkpoint_interval, channels_last=channels_last,
                   compile=compile, deterministic=deterministic, threads=threads, jobs=jobs, data=data,
                   executor=executor, force=force, progress=progress)
    cluster = {"partition": partition, "time_min": time_min, "gpus": gpus, "cpus": cpus, "mem_gb": mem_gb,
               "array_parallelism": array_parallelism, "slurm_args": slurm_args, "wait": wait}
    return _run(selection, how, Path(results), precision, cluster, dry_run, runs, notes or _quiet)


def _quiet(line: str) -> None:
    """Where notes go when nobody listens."""


def _run(selection, how, results: Path, precision, cluster: dict, dry_run: bool, explicit, notes) -> RunResult:
    from benchsuite import plugins as plugin_registry
    from benchsuite.execution import pipeline
    from benchsuite.execution.environment import distributed
    from benchsuite.runs import matrix
    from benchsuite.runs import selection as chosen
    from benchsuite.store import Store

    options = pipeline.check(how)
    _check_task_dirs(selection.tasks_dirs)
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
    outcome, report = pipeline.run_plan(plan, store, available, how, options, notes)
    specs, report = _take_looks(sequential, plan, store, available, (plan.runs, report), how, options, outcome, notes)
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


def plugin_warnings(available) -> list[str]:
    """Broken or conflicting plugins (left out) and hooks lacking @hookimpl, one line each."""
    broken = getattr(available, "broken", {}).values()
    lines = [f"benchsuite: warning: {plugin.message()}; skipped" for plugin in broken]
    return lines + [f"benchsuite: warning: {warning}" for info in available.values()
                    for warning in info.describe()["warnings"]]


def _check_task_dirs(folders) -> None:
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"tasks folder {str(folder)!r} (--tasks-dir): no such folder")


def _store(results: PathLike):
    """The results folder's store; FileNotFoundError when there is no such folder."""
    from benchsuite.store import Store

    if not Path(results).is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such results folder", str(results))
    return Store(results)


@_warnings_as_python
def open_results(results: PathLike = "results") -> pl.DataFrame:
    """The runs stored in the folder ``results``, one row each, as a polars DataFrame: the
    table ``benchsuite results`` shows (task, method, ``name``: the configuration as reports
    name it, seed, status, metrics, timings, hyperparameters, ...). ``.to_pandas()``
    converts it (``pip install "benchsuite[pandas]"``). Raises FileNotFoundError when the
    folder does not exist; an empty folder gives an empty table."""
    from benchsuite.report.summary import with_names
    from benchsuite.runs.tuning import read_studies

    store = _store(results)
    return with_names(store.table(), read_studies(store.root))


def analysis_options(baseline: str | Sequence[str] = "none", alpha: float = 0.05,
                     margins: Mapping[str, Any] | Sequence[str] | None = None, resamples: int = RESAMPLES,
                     resample_seed: int = 0, references: PathLike | Sequence[PathLike] | None = None) -> dict:
    """The checked statistics settings :func:`analyze` and :func:`write_report` take
    (UsageError on a bad margin, baseline list or references folder)."""
    from benchsuite.report.analysis import parse_baselines, parse_margins
    from benchsuite.report.references import load_references
    from benchsuite.runs.selection import assignments
    from benchsuite.tasks import builtin_task_dirs

    try:
        parsed_margins = parse_margins(assignments(margins))
    except ValueError as exc:
        raise UsageError(f"margins (--margin): {exc}") from None
    if isinstance(references, (str, os.PathLike)):
        references = [references]
    folders = list(references) if references is not None else [
        d / "matrices" for d in builtin_task_dirs() if (d / "matrices").is_dir()][:1]
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"references folder {str(folder)!r} (--references): no such folder")
    try:
        reference_rows = load_references(folders)
    except (OSError, ValueError) as exc:
        raise UsageError(f"paper reference file: {exc}") from None
    try:
        baselines = parse_baselines(baseline)
    except ValueError as exc:
        raise UsageError(f"baseline (--baseline): {exc}") from None
    if not 0 < alpha <= 0.5:
        raise UsageError(f"alpha must be a number in (0, 0.5], got {alpha!r}")
    return {"baseline": baselines, "alpha": alpha, "margins": parsed_margins, "resamples": resamples,
            "seed": resample_seed, "references": reference_rows}


@_warnings_as_python
def analyze(results: PathLike | pl.DataFrame = "results", **settings) -> dict:
    """Every statistic a report shows, as JSON-ready data (a report's ``stats.json``):
    per task each configuration's scores and each comparison with the baseline (paired
    difference, interval, p values, Holm, verdict), then the cross-task leaderboard.

    ``results``: a results folder (its tuning journals and sequential plan apply), or a
    table from :func:`open_results` (filtered, say). ``settings``: ``baseline`` (a method,
    or several: ``"none,l2"``), ``alpha``, ``margins`` (``{"accuracy": 0.005, "mse":
    "2%"}``), ``resamples``, ``resample_seed``, ``references`` (folders of paper numbers);
    see :func:`analysis_options`. Raises FileNotFoundError for a missing folder,
    UsageError for a bad setting."""
    from benchsuite.report.analysis import analyze as analyze_table

    options = analysis_options(**settings)
    if not isinstance(results, (str, os.PathLike)):
        return analyze_table(results, **options)
    from benchsuite.runs.sequential import read_plan
    from benchsuite.runs.tuning import read_studies

    store = _store(results)
    return analyze_table(store.table(), studies=read_studies(store.root), sequential=read_plan(store.root), **options)


@_warnings_as_python
def write_report(results: PathLike = "results", out: PathLike = "reports", name: str = "latest", *,
                 plots: bool = True, tasks_dirs: Sequence[PathLike] = (), data_dir: PathLike = "data",
                 verify_data: bool = True, **settings) -> Path:
    """Write the report of the folder ``results`` to ``<out>/<name>/``: index.md,
    index.html, stats.json (:func:`analyze`'s data), results.csv, plots/*.png (unless
    ``plots=False``) and tuning.json for a tuned folder; returns that folder. Installed
    plugins' claims with runs there get a Claims section (``tasks_dirs``: extra task
    folders their tasks may come from; ``data_dir`` and ``verify_data``: where a paper
    claim's data is looked for, and whether its checksums are checked). ``settings`` as
    for :func:`analyze`. Raises FileNotFoundError for a missing results folder, UsageError
    for a bad name or setting."""
    from benchsuite.report.publish import write_report as publish
    from benchsuite.tasks.data_options import DataOptions

    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"report name {name!r} (--name): use a plain folder name")
    options = analysis_options(**settings)
    store = _store(results)
    return publish(store, Path(out), name, plots=plots, task_dirs=list(tasks_dirs),
                   data=DataOptions(Path(data_dir), verify=verify_data), **options)


@_warnings_as_python
def list_tasks(tasks_dirs: Sequence[PathLike] = ()) -> list[TaskSpec]:
    """Every task: the shipped task files, then those in ``tasks_dirs`` (a later file of the
    same name wins). Raises UsageError for a folder that does not exist."""
    from benchsuite.tasks import all_tasks

    _check_task_dirs(tasks_dirs)
    return all_tasks(tasks_dirs)


@_warnings_as_python
def get_task(name: str, tasks_dirs: Sequence[PathLike] = ()) -> TaskSpec:
    """The task ``name`` (as :func:`list_tasks` finds it) or the task file at that path.
    Raises UsageError for an unknown name."""
    from benchsuite.tasks import get_task as find

    _check_task_dirs(tasks_dirs)
    return find(name, tasks_dirs)


def list_plugins() -> dict:
    """The installed plugins: a dict of name -> :class:`benchsuite.plugins.PluginInfo`
    (``.describe()``: hooks, hyperparameters, warnings); its ``broken`` attribute holds the
    plugins that failed to load or share a name (``.message()``), left out rather than raised."""
    from benchsuite.plugins import discover

    return discover()


@_warnings_as_python
def plan_seeds(results: PathLike = "results", effect: str | float = "1%", *, methods: int = 1,
               configurations: int = 1, power: float = 0.8, alpha: float = 0.05, baseline: str = "none",
               task: str | None = None) -> list[dict]:
    """Per task, the seeds a comparison needs to detect ``effect`` (absolute, ``0.01``, or
    relative to the baseline, ``"1%"``) with ``power``, from the noise of the runs stored in
    ``results`` (what ``benchsuite plan`` prints). Raises UsageError for a zero effect, a
    power outside (0, 1) or a folder without runs (of ``task``)."""
    import polars as pl

    from benchsuite import stats
    from benchsuite.report.plan import plan
    from benchsuite.runs.tuning import read_studies

    try:
        margin = stats.Margin.parse(str(effect))
    except ValueError as exc:
        raise UsageError(f"effect: {exc}") from None
    if margin.value == 0:
        raise UsageError("effect must be larger than 0")
    if not 0 < power < 1:
        raise UsageError(f"power must be in (0, 1), got {power}")
    store = _store(results)
    table = store.table()
    if task:
        table = table.filter(pl.col("task") == task)
    if table.is_empty():
        raise UsageError(f"no stored runs in {results}" + (f" for task {task!r}" if task else "")
                         + ": run a pilot first, e.g. `benchsuite run --plugin none --task T --seeds 5`")
    return plan(table, margin, methods=methods, configurations=configurations, power=power, alpha=alpha,
                baseline=baseline, studies=read_studies(store.root))


@dataclasses.dataclass
class Pruned:
    """What :func:`prune` found: ``groups`` of superseded runs (task, method, runs, versions,
    newer), their ``run_ids``, the ids ``moved`` to ``<results>/superseded/`` and that folder."""

    groups: list[dict]
    run_ids: list[str]
    moved: list[str]
    folder: Path


@_warnings_as_python
def prune(results: PathLike = "results", *, dry_run: bool = False) -> Pruned:
    """Move the runs superseded by newer plugin versions of their configuration out of
    ``<results>/runs/`` into ``<results>/superseded/`` (kept, not deleted; every statistic
    already leaves them out). ``dry_run``: move nothing, say what would move."""
    from benchsuite.report.summary import superseded_run_ids, superseded_runs

    store = _store(results)
    table = store.table()
    groups, run_ids = superseded_runs(table), superseded_run_ids(table)
    moved = [] if dry_run else [run_id for run_id in run_ids if store.move_superseded(run_id) is not None]
    return Pruned(groups, run_ids, moved, store.root / "superseded")


@_warnings_as_python
def collect(results: PathLike = "results") -> list[dict]:
    """The runs submitted to a cluster (``run(executor=...)``) into ``results``: each one's
    latest job and state (finished, diverged, failed, queued, running, or lost when its job
    ended without a record) and the error of a run that did not finish."""
    from benchsuite.execution import cluster

    return cluster.collected(_store(results))


@_warnings_as_python
def update_excerpts(files: Sequence[PathLike], reports: PathLike = "reports", *, check: bool = False) -> list[Path]:
    """Rewrite the report excerpts between ``<!-- benchsuite:... -->`` markers in Markdown
    ``files`` from the reports in ``reports``; the files that were stale (``check``: change
    nothing, only list them). Raises UsageError for a missing file or a malformed marker."""
    from benchsuite.report.excerpts import update_files

    paths = [Path(f) for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    try:
        return update_files(paths, Path(reports), check=check)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
