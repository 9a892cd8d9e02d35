"""``list_claims`` and ``judge_claims``: the plugins' paper claims, run and tested (``benchsuite claims``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from benchsuite.api.common import PathLike, _quiet, _store, _warnings_as_python, check_task_dirs
from benchsuite.api.running import RunResult, run
from benchsuite.errors import UsageError, warn


@dataclasses.dataclass
class ClaimsResult:
    """What :func:`judge_claims` found: the ``claims`` it judged, one verdict ``row`` per claim
    and task (verdict, n, effect, interval, p, ...), ``runs`` (the per-seed rows behind each
    p), ``not_run`` (claim id -> why its runs were not started), the ``run`` it made (None
    with ``run=False`` or nothing to run) and ``folder`` (the report written, if any)."""

    claims: list
    rows: list[dict]
    runs: list[dict]
    not_run: dict[str, str]
    run: RunResult | None = None
    folder: Path | None = None


@_warnings_as_python
def list_claims(plugins: Sequence[str] = (), ids: Sequence[str] = (), tier: str = "all") -> list:
    """The installed plugins' claims (:class:`benchsuite.runs.claims.Claim`), of ``plugins``
    (default all), with ``ids`` (default all) and of ``tier`` (``offline``, ``paper`` or
    ``all``). A claims file that cannot be read is a :class:`~benchsuite.errors.BenchsuiteWarning`
    and its claims are left out."""
    from benchsuite.plugins import discover
    from benchsuite.runs import claims as claim_mod

    found, problems = claim_mod.load_claims(discover(), list(plugins) or None)
    for problem in problems:
        warn(f"{problem}; its claims are left out")
    return claim_mod.select(found, list(ids) or None, tier)


@_warnings_as_python
def judge_claims(results: PathLike = "results", *, plugins: Sequence[str] = (), ids: Sequence[str] = (),
                tier: str | None = None, run_missing: bool = True, force: bool = False, alpha: float = 0.05,
                out: PathLike | None = None, jobs: int = 1, device: str = "cpu", tasks_dirs: Sequence[PathLike] = (),
                data_dir: PathLike = "data", download: bool = False, loader_workers: int | None = None,
                verify_data: bool = True, cache_dir: PathLike | None = None, progress: bool = False,
                notes: Callable[[str], None] | None = None) -> ClaimsResult:
    """Judge the selected claims (:func:`list_claims`'s ``plugins``, ``ids``, ``tier``) on the
    runs stored in ``results``, first running what is missing (``run_missing``; ``force``:
    rerun stored ones too) through :func:`benchsuite.run`: the offline claims, and the paper
    claims named by ``ids`` or ``tier="paper"`` whose data is in ``data_dir``. Verdicts:
    the paired test of each claim's comparison, Holm over every comparison judged here, at
    ``alpha``. ``out``: also write the claims report folder (index.md, index.html,
    claims.json, results.csv). ``cache_dir``: the data cache, as for :func:`benchsuite.run`."""
    from benchsuite.plugins import discover
    from benchsuite.report import claims as verdicts
    from benchsuite.report import claims_output
    from benchsuite.runs import claims as claim_mod
    from benchsuite.store import Store
    from benchsuite.tasks.data_options import DataOptions

    if force and not run_missing:
        raise UsageError("force reruns runs and run_missing=False runs nothing: give one or the other")
    check_task_dirs(tasks_dirs)
    notes = notes or _quiet
    data = DataOptions(Path(data_dir), download, loader_workers, verify_data, cache_dir)
    available = discover()
    selected = list_claims(plugins, ids, tier or "all")
    specs, not_run = {}, {}
    for claim in selected if run_missing else ():
        if claim.tier == "paper" and not (ids or tier == "paper"):
            continue
        try:
            needs = claim_mod.data_problems(claim, tasks_dirs, data)
            groups = claim_mod.run_specs(claim, available, tasks_dirs).values()
        except UsageError as exc:
            not_run[claim.id] = str(exc)
            continue
        if needs:
            not_run[claim.id] = f"needs {'; '.join(needs)}"
            continue
        for group in groups:
            specs.update({spec.run_id: spec for spec in group})
    for claim_id, why in not_run.items():
        notes(f"{claim_id} not run: {why}")
    made = None
    if specs:
        made = run(runs=list(specs.values()), results=results, device=device, jobs=jobs, force=force,
                   data_dir=data_dir, download=download, loader_workers=loader_workers, verify_data=verify_data,
                   cache_dir=cache_dir, progress=progress, notes=notes)
    store = Store(results) if run_missing else _store(results)  # only reading: the folder must exist
    rows = verdicts.evaluate(selected, store, available, tasks_dirs, alpha=alpha, data=data)
    runs = verdicts.run_rows(selected, store, available, tasks_dirs)
    folder = claims_output.write(rows, Path(out), runs) if out is not None else None
    return ClaimsResult(selected, rows, runs, not_run, made, folder)
