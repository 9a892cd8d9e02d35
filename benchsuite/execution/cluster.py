"""Running a matrix on a cluster through submitit: SLURM job arrays, or submitit's ``local``
(subprocesses) and ``debug`` (in this process) modes, which run the same code paths.

Submission is fire-and-forget: every pending run becomes one array task, grouped by the
resources its task file asks for (``[resources]``, overridden by the command line). In
``local`` mode, which starts every job it is given at once (it has no queue), each group's
runs are dealt out to at most ``array_parallelism`` jobs instead, each running its share in
turn, so that no more runs of a group than that train at once on the machine (a matrix whose
tasks ask for the same resources is one group). Each
job stores its record in the shared results folder as the run ends; ``benchsuite collect``
reports what finished, what is still queued or running, and why a job failed. A job that is
preempted or reaches its time limit is requeued by submitit with the same call, which
resumes the run from its checkpoint. Runs already done, or queued or running in an earlier
submission, are never submitted again.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

from benchsuite.errors import UsageError
from benchsuite.execution.options import ExecutionOptions
from benchsuite.runs.identity import RunSpec
from benchsuite.store import Store
from benchsuite.store.status import DONE_STATUSES, STATUS_FINISHED, STATUSES

MODES = ("slurm", "local", "debug")
SLURM_ARRAY_PARALLELISM = 256
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where and with what resources jobs run; ``None`` leaves a value to the task's
    ``[resources]`` hint, else to the cluster's default."""

    mode: str = "slurm"
    partition: str | None = None
    time_min: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: int | None = None
    array_parallelism: int | None = None  # None: 256 on SLURM; local: this machine's CPUs / CPUs per run
    slurm_args: tuple[tuple[str, str], ...] = ()


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError("the cluster executor needs submitit: pip install 'benchsuite[cluster]'") from None
    return submitit


def _job_class():
    submitit = _submitit()

    class RunJob(submitit.helpers.Checkpointable):
        """One run as a job. On preemption or timeout, submitit requeues this same call,
        and the run resumes from its checkpoint; a run found done is not redone."""

        def __call__(self, spec: RunSpec, root: str, device: str, options: ExecutionOptions,
                     threads: int = 1) -> dict:
            import torch

            from benchsuite.execution.pool import _run_in_worker

            torch.set_num_threads(threads)  # the job's CPUs, so results do not depend on the node's size
            store = Store(root)
            if store.is_done(spec.run_id):
                return {"run_id": spec.run_id, "status": store.get(spec.run_id)["status"]}
            _, summary = _run_in_worker(spec, root, device, options, wait=True)
            return summary

    class RunsJob(RunJob):
        """Several runs, one after the other, as one job (``local`` mode); a run found done
        is not redone, so a job started again picks up where the last one ended."""

        def __call__(self, specs: list[RunSpec], root: str, device: str, options: ExecutionOptions,
                     threads: int = 1) -> list[dict]:
            return [super(RunsJob, self).__call__(spec, root, device, options, threads) for spec in specs]

    return RunJob, RunsJob


def _resources(spec: RunSpec, cluster: ClusterOptions) -> tuple:
    hints = dict(spec.task.resources)
    return (
        cluster.gpus if cluster.gpus is not None else hints.get("gpus", 0),
        cluster.cpus if cluster.cpus is not None else hints.get("cpus", 1),
        cluster.time_min if cluster.time_min is not None else hints.get("time_min", 60),
        cluster.mem_gb if cluster.mem_gb is not None else hints.get("mem_gb", 8),
    )


def array_parallelism(cluster: ClusterOptions, cpus: int) -> int:
    """Runs (array tasks, or local jobs) at once: as given, else 256 on SLURM, and in
    ``local`` mode this machine's CPUs over each run's ``cpus`` (at least 1)."""
    if cluster.array_parallelism:
        return cluster.array_parallelism
    return max(1, (os.cpu_count() or 1) // cpus) if cluster.mode == "local" else SLURM_ARRAY_PARALLELISM


def dealt_out(runs: list, jobs: int) -> list[list]:
    """``runs`` dealt out in turn to at most ``jobs`` lists (for a matrix in task order,
    each job gets a mix of the tasks, so the jobs end at about the same time)."""
    return [runs[i::jobs] for i in range(min(jobs, len(runs)))]


def jobs_file(store: Store) -> Path:
    return store.root / "submitit" / "jobs.jsonl"


def submitted(store: Store) -> list[dict]:
    path = jobs_file(store)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def submitted_job(entry: dict):
    submitit = _submitit()
    cls = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}.get(entry["mode"])
    return cls(Path(entry["folder"]), entry["job_id"]) if cls else None


def _local_state(entry: dict) -> str:
    """submitit's local jobs are processes of this machine, named by their pid: a job whose
    process still runs the submitit worker is running."""
    import os

    job = submitted_job(entry)
    if job.paths.result_pickle.exists():
        return "DONE"
    pid = int(entry["job_id"].split("_")[0])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
            return "RUNNING"
        except OSError:
            return "DONE"
    return "RUNNING" if b"submitit" in cmdline else "DONE"


def job_state(entry: dict) -> str:
    if entry["mode"] == "local":
        return _local_state(entry)
    job = submitted_job(entry)
    if job is None:
        return "UNKNOWN"
    try:
        if job.done():
            return "DONE"
        return job.state
    except Exception:  # the scheduler does not know the job any more
        return "UNKNOWN"


def in_flight(store: Store) -> set[str]:
    """Run ids whose latest submitted job is still queued or running."""
    latest = {}
    for entry in submitted(store):
        latest[entry["run_id"]] = entry
    return {run_id for run_id, entry in latest.items()
            if not store.is_done(run_id) and job_state(entry) in ACTIVE_STATES}


def submit(specs: Sequence[RunSpec], store: Store, cluster: ClusterOptions, device: str = "cpu",
           options: ExecutionOptions | None = None, wait: bool = False) -> dict:
    """Submit every pending run; with ``wait``, block until the jobs end. Returns counts and
    the submitted entries."""
    submitit = _submitit()
    if cluster.mode not in MODES:
        raise UsageError(f"--executor {cluster.mode!r}: use one of {', '.join(MODES)}")
    options = options or ExecutionOptions()
    store.clean_partial()
    busy = in_flight(store)
    pending = [s for s in specs if not store.is_done(s.run_id) and s.run_id not in busy]
    store.refuse_newer()
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in pending:
        groups.setdefault(_resources(spec, cluster), []).append(spec)
    folder = store.root / "submitit"
    folder.mkdir(parents=True, exist_ok=True)
    entries, jobs = [], []
    run_job, runs_job = _job_class()
    for (gpus, cpus, time_min, mem_gb), group in groups.items():
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster=cluster.mode)  # never auto-detected
        except RuntimeError as exc:
            raise UsageError(f"--executor {cluster.mode}: {exc}") from None
        parallel = array_parallelism(cluster, cpus)
        parameters = {"timeout_min": time_min, "cpus_per_task": cpus, "mem_gb": mem_gb, "name": "benchsuite",
                      "slurm_array_parallelism": parallel}
        if gpus:
            parameters["gpus_per_node"] = gpus
        if cluster.partition:
            parameters["slurm_partition"] = cluster.partition
        if cluster.slurm_args:
            parameters["slurm_additional_parameters"] = dict(cluster.slurm_args)
        executor.update_parameters(**parameters)
        if cluster.mode == "local":  # at most array_parallelism processes, each running its share
            shares = dealt_out(group, parallel)
            n = len(shares)
            share_jobs = executor.map_array(runs_job(), shares, [str(store.root)] * n, [device] * n,
                                            [options] * n, [cpus] * n)
            placed = [(spec, job) for share, job in zip(shares, share_jobs) for spec in share]
        else:
            n = len(group)
            placed = list(zip(group, executor.map_array(run_job(), group, [str(store.root)] * n, [device] * n,
                                                        [options] * n, [cpus] * n)))
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        for spec, job in placed:
            entries.append({"run_id": spec.run_id, "job_id": str(job.job_id), "mode": cluster.mode,
                            "folder": str(folder), "task": spec.task.name, "method": spec.method.label,
                            "seed": spec.seed, "submitted": now})
            jobs.append(job)
    with open(jobs_file(store), "a") as fh:
        for entry in entries:
            fh.write(json.dumps(entry) + "\n")
    if wait:
        for job in jobs:
            try:
                job.result()
            except Exception:  # the run's failure is in its record; a job crash shows in collect
                pass
    return {"submitted": entries, "skipped_done": len(specs) - len(pending) - len(busy & {s.run_id for s in specs}),
            "skipped_in_flight": len(busy & {s.run_id for s in specs})}


def lost_count(counts: dict[str, int]) -> int:
    """Submitted runs that ended without a finished record (failed, diverged, lost, ...)."""
    return sum(n for state, n in counts.items() if state != STATUS_FINISHED and state.upper() not in ACTIVE_STATES)


def collect_lines(runs: list[dict]) -> list[str]:
    """One line per submitted run (:func:`collected`): its state, task, method, seed and job,
    and under a run that did not finish the end of its error; then the counts per state."""
    lines, counts = [], {}
    for run in runs:
        counts[run["state"]] = counts.get(run["state"], 0) + 1
        line = (f"{run['run_id']}  {run['state']:<10} {run['task']}  {run['method']}  seed={run['seed']}  "
                f"job {run['job_id']}")
        lines.append(line + (f"\n    {run['error']}" if run["error"] else ""))
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "nothing submitted"
    return lines + [f"{len(runs)} submitted runs: {summary}"]


def collected(store: Store) -> list[dict]:
    """Each submitted run's latest job and its state as :func:`collect` prints it (the
    record's status, else the job's: queued, running, or lost when it ended without a
    record), with the error of a run that did not finish."""
    latest = {entry["run_id"]: entry for entry in submitted(store)}
    runs = []
    for run_id, entry in latest.items():
        record = store.get(run_id)
        if record is not None and record.get("status") in STATUSES:
            state = record["status"]
        else:
            state = job_state(entry)
            if state not in ACTIVE_STATES:
                state = "lost" if state in ("DONE", "COMPLETED") else state.lower()
        error = None
        if state not in DONE_STATUSES and state.upper() not in ACTIVE_STATES:
            error = (record or {}).get("error") or _job_error(entry)
        runs.append({"run_id": run_id, "state": state, "task": entry["task"], "method": entry["method"],
                     "seed": entry["seed"], "job_id": entry["job_id"], "mode": entry["mode"],
                     "submitted": entry.get("submitted"), "error": error})
    return runs


def _job_error(entry) -> str | None:
    """The last line of a job's error output (None when there is none)."""
    try:
        job = submitted_job(entry)
        lines = (job.stderr() or "").strip().splitlines() if job is not None else []
    except Exception:  # noqa: BLE001 - a job the scheduler or its folder no longer has
        return None
    return lines[-1][:300] if lines else None
