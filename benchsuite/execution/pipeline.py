"""The steps of a run command that check, list, train or submit (``benchsuite.run`` puts them
in order; the sequential looks, which need the report's analysis, are its own).

Nothing here prints: lines worth telling go to a ``notes`` callable, and the progress meter
of :func:`benchsuite.execution.pool.run_all` is on only when asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from benchsuite.errors import UsageError
from benchsuite.execution.options import ExecutionOptions
from benchsuite.store.status import STATUS_FINISHED
from benchsuite.tasks.data_options import DataOptions

EXECUTORS = ("inline", "slurm", "local", "debug")


@dataclasses.dataclass(frozen=True)
class HowToRun:
    """How a command's runs execute (none of it is part of a run's identity): see
    :func:`benchsuite.api.run` for each value."""

    device: str = "cpu"
    checkpoint_interval: float = 30.0
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    threads: int | None = None
    jobs: int = 1
    data: DataOptions = DataOptions()
    executor: str = "inline"
    force: bool = False
    progress: bool = False


def check(how: HowToRun) -> ExecutionOptions:
    """The execution options of ``how``, or UsageError before anything trains."""
    from benchsuite.execution import pool
    from benchsuite.execution.environment import resolve_device

    try:
        resolve_device(how.device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {how.device!r}: {exc}") from None
    workers = how.data.loader_workers
    if not how.checkpoint_interval >= 0 or (workers is not None and workers < 0):
        raise UsageError("--checkpoint-interval and --workers must be >= 0")
    if how.executor not in EXECUTORS:
        raise UsageError(f"--executor {how.executor!r}: use one of {', '.join(EXECUTORS)}")
    if how.force and how.executor != "inline":
        raise UsageError("--force reruns runs on this machine only (the inline executor; --jobs N for several "
                         "at a time): submitted jobs skip stored runs")
    threads = how.threads or (pool.threads_per_worker(how.jobs) if how.deterministic else None)
    return ExecutionOptions(checkpoint_interval=how.checkpoint_interval, channels_last=how.channels_last,
                            compile=how.compile, deterministic=how.deterministic, threads=threads, data=how.data)


def preflight(specs, device: str, available) -> None:
    """UsageError before anything trains when a plugin's ``configure`` rejects a task."""
    from benchsuite.execution.preflight import preflight as problems_of

    problems = problems_of(specs, device, available)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise UsageError("these runs would fail before training, nothing was run:\n  " + "\n  ".join(shown))


def require_data(specs, store, data: DataOptions, force: bool = False) -> None:
    """Stop before anything trains when a data set of a run to do is missing or corrupt
    (and ``data.download`` cannot fetch it)."""
    from benchsuite.tasks import real_data

    sources = sorted({s.task.data.source for s in specs if force or not store.is_done(s.run_id)})
    for source in sources:
        if source not in real_data.DATASETS:
            continue
        info = real_data.DATASETS[source]
        problems = real_data.check(source, data.data_dir, data.verify)
        if problems and not (data.download and info.downloadable):
            raise real_data.DataMissing(info, data.data_dir, problems)


def report_runs(plan, store, available) -> list:
    """The report runs of every study whose trials are stored: its chosen trial on its
    report seeds."""
    if not plan.studies:
        return []
    from benchsuite.runs.tuning import report_specs

    return report_specs(plan.studies, store, plan.report_seeds, available)


def report_runs_exist(study, plan, store, available) -> bool:
    seeds = plan.report_seeds[study.key]
    return any(store.get(study.spec(t, s, available).run_id) is not None for t in study.trials for s in seeds)


def record_sequential_plan(plan, store, notes: Callable[[str], None]) -> None:
    """Write the command's sequential plan into the results folder (or check it against the
    one there); a count of seeds in a folder with a plan is run, with a warning that reports
    apply the plan."""
    from benchsuite.runs.sequential import read_plan, save_plan

    if plan is not None:
        save_plan(store, plan)
        return
    stored = read_plan(store.root)
    if stored is not None:
        notes(f"benchsuite run: warning: {store.root} has sequential seeds {stored.text()}: its reports take "
              f"verdicts at the looks {', '.join(map(str, stored.looks()))} of that plan, whatever seeds this "
              "command adds")


def start_studies(plan, store, available) -> None:
    """Write down the trials of every study before any of them trains; ``plan.runs``
    becomes every study's trial runs."""
    from benchsuite.runs.tuning import save_studies

    save_studies(plan.studies, store, lambda study: report_runs_exist(study, plan, store, available), available)
    plan.runs = [spec for study in plan.studies for spec in study.trial_specs(available)]


def run_specs(specs, store, available, how: HowToRun, options: ExecutionOptions):
    """:func:`benchsuite.execution.pool.run_all` with the command's settings."""
    from benchsuite.execution.pool import run_all

    return run_all(specs, store, device=how.device, available=available, progress=how.progress, options=options,
                   jobs=how.jobs, force=how.force)


def run_plan(plan, store, available, how: HowToRun, options: ExecutionOptions, notes: Callable[[str], None]):
    """Run the plan's runs; under tuning, write each decided study's choice and run it on
    its report seeds. Returns the pool's outcome (of both) and the report runs."""
    outcome = run_specs(plan.runs, store, available, how, options)
    if plan.studies:
        from benchsuite.runs.tuning import record_choices

        record_choices(plan.studies, store, available, lambda study: report_runs_exist(study, plan, store, available))
    report = report_runs(plan, store, available)
    if report:
        notes(f"report runs: the chosen trial of each of {len(plan.studies)} studies on its report seeds "
              f"({len(report)} runs)")
        done = run_specs(report, store, available, how, options)
        outcome.executed += done.executed
        outcome.skipped += done.skipped
    return outcome, report


def decisions(plan, store, available) -> dict[str, str]:
    """Each study's state: "chosen", "lost" (no trial finished every tuning seed) or
    "undecided" (a trial run is not stored yet)."""
    from benchsuite.runs.tuning import decision

    return {study.key: decision(study, store, available)[0] for study in plan.studies}


def cluster_options(executor: str, slurm_args, **resources):
    """The cluster settings: ``slurm_args`` as ``KEY=VALUE`` texts or a mapping."""
    from benchsuite.execution import cluster

    pairs = []
    for item in ([f"{k}={v}" for k, v in slurm_args.items()] if hasattr(slurm_args, "items") else slurm_args):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-arg {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    if resources.get("gpus") is not None and resources["gpus"] < 0:
        raise UsageError("--gpus must be >= 0")
    return cluster.ClusterOptions(mode=executor, slurm_args=tuple(pairs), **resources)


def submit(specs, store, settings, how: HowToRun, options: ExecutionOptions, wait: bool) -> dict:
    from benchsuite.execution import cluster

    return cluster.submit(specs, store, settings, device=how.device, options=options, wait=wait)


@dataclasses.dataclass
class Listing:
    """A dry run: every run (trials, then the report runs of decided studies), its role and
    trial, whether it is done, its estimated seconds; the report runs of undecided studies
    as (study, seed); ``studies``: each study's dimensions, trials and choice."""

    runs: list
    roles: dict[str, str]
    trials: dict[str, int]
    done: dict[str, bool]
    estimates: dict[str, float | None]
    undecided: list[tuple]
    to_run: list
    studies: list[dict] | None


def listing(plan, store, available, force: bool) -> Listing:
    """List the runs, which are done, and each pending run's estimated time; train nothing.
    Under tuning: every trial run, then each study's report runs (pending its choice when
    its trials are not all stored yet)."""
    from benchsuite.execution.progress import estimate_seconds
    from benchsuite.runs.tuning import decision

    specs = list(plan.runs)  # a study's report runs are listed once every trial of it is stored
    roles = {spec.run_id: ("tuning" if plan.studies else "report") for spec in specs}
    trials, undecided = {}, []
    for study in plan.studies:
        for trial in study.trials:
            for seed in study.seeds:
                trials[study.spec(trial, seed, available).run_id] = trial["index"]
        state, picked = decision(study, store, available)
        seeds = plan.report_seeds[study.key]
        if state == "undecided":
            undecided += [(study, seed) for seed in seeds]
            continue
        if picked is None:  # every trial lost: no report run will be made
            continue
        for seed in seeds:
            spec = study.spec(picked, seed, available)
            if spec.run_id not in roles:
                roles[spec.run_id] = "report"
                specs.append(spec)
    estimates = estimate_seconds(specs, store)
    done = {spec.run_id: store.is_done(spec.run_id) for spec in specs}
    store.refuse_newer()  # as the run itself would
    to_run = [s for s in specs if force or not done[s.run_id]]  # force: the done ones too
    studies = studies_summary(plan, store, available) if plan.studies else None
    return Listing(specs, roles, trials, done, estimates, undecided, to_run, studies)


def studies_summary(plan, store, available) -> list[dict]:
    """Each study of a tuned plan: its task, method, dimensions, trials and the chosen one."""
    from benchsuite.runs.tuning import decision

    out = []
    for study in plan.studies:
        state, picked = decision(study, store, available)
        out.append({
            "task": study.task.name, "method": study.method.name, "replicate": study.replicate, "study": study.key,
            "budget": study.budget,
            "k": len(study.trials), "tuning_seeds": study.seeds, "report_seeds": plan.report_seeds[study.key],
            "space": {name: space.text() for name, space in sorted(study.dims.items())},
            "trials": [{"index": t["index"], "label": study.trial_method(t).full_label, "origin": t["origin"],
                        "hyperparameters": t["hyperparameters"], "train": t["train"]} for t in study.trials],
            "decision": state, "chosen": None if picked is None else picked["index"], "notes": study.notes,
        })
    return out


def lost(specs: Sequence, records: dict) -> list[tuple]:
    """(spec, status) of each run that did not finish: its status, or "not stored"."""
    out = []
    for spec in specs:
        record = records.get(spec.run_id)
        status = record["status"] if record is not None else "not stored"
        if status != STATUS_FINISHED:
            out.append((spec, status))
    return out
