"""What reads a results folder or the installation: the runs table, the analysis, reports, tasks,
plugins, seed plans, pruning, cluster submissions, excerpts."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchsuite.errors import UsageError

if TYPE_CHECKING:
    import polars as pl

    from benchsuite.tasks.spec import TaskSpec

from benchsuite.api.common import RESAMPLES, PathLike, _store, _warnings_as_python, check_task_dirs


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

    check_task_dirs(tasks_dirs)
    return all_tasks(tasks_dirs)


@_warnings_as_python
def get_task(name: str, tasks_dirs: Sequence[PathLike] = ()) -> TaskSpec:
    """The task ``name`` (as :func:`list_tasks` finds it) or the task file at that path.
    Raises UsageError for an unknown name."""
    from benchsuite.tasks import get_task as find

    check_task_dirs(tasks_dirs)
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

