"""Executors: how a list of runs gets executed and stored.

``run_all`` runs in this process, or with ``jobs > 1`` in a local pool of worker processes
(each limited to its share of the cores' threads, so workers do not oversubscribe them).
Finished runs found in the store are skipped, failed ones retried; each record is stored
the moment its run ends (by the process that ran it), and a run in progress checkpoints, so
an interrupted matrix loses nothing that finished and resumes what was running.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Sequence

import torch
from tqdm import tqdm

from benchsuite.engine import ExecutionOptions, RunSpec, distributed, execute
from benchsuite.store import Store


@dataclasses.dataclass
class Outcome:
    executed: list[dict]
    skipped: list[str]


def run_all(
    specs: Sequence[RunSpec],
    store: Store,
    device: str = "cpu",
    available=None,
    progress: bool = True,
    options: ExecutionOptions | None = None,
    jobs: int = 1,
) -> Outcome:
    """Run every spec not yet done. Each run checkpoints to
    ``<results>/checkpoints/<run_id>.pt`` and resumes from it after a kill; the checkpoint
    is removed once the run's record is stored."""
    options = options or ExecutionOptions()
    store.clean_partial()
    pending = [spec for spec in specs if not store.is_done(spec.run_id)]
    pending_ids = {spec.run_id for spec in pending}
    skipped = [spec.run_id for spec in specs if spec.run_id not in pending_ids]
    if jobs > 1 and len(pending) > 1:
        return _run_pool(pending, skipped, len(specs), store, device, options, jobs, progress)
    executed: list[dict] = []
    # On a terminal: a live bar with the current run's epoch. Elsewhere (CI logs, pipes):
    # one line per finished run instead of carriage-return noise.
    progress = progress and distributed()[0] == 0
    live = progress and sys.stderr.isatty()
    bar = tqdm(total=len(specs), initial=len(skipped), unit="run", disable=not live,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for spec in pending:
            name = f"{spec.task.name} {spec.method.label} seed={spec.seed}"
            bar.set_description(name)

            def on_epoch(row, spec=spec):
                key = f"val_{spec.task.eval.metric}"
                value = row.get(key, float("nan"))
                bar.set_postfix_str(f"epoch {row['epoch']}/{spec.task.train.epochs} {key}={value:.4g}")

            record = execute_and_store(spec, store, device, options, available, on_epoch if live else None)
            if distributed()[1] > 1:
                torch.distributed.barrier()
            executed.append(record)
            bar.update(1)
            if progress:
                line = f"[{len(skipped) + len(executed)}/{len(specs)}] {name}: {_outcome(record)}"
                if live:
                    if record["status"] != "finished":
                        bar.write(line)
                else:
                    print(line, file=sys.stderr, flush=True)
    finally:
        bar.close()
    return Outcome(executed, skipped)


def estimate_seconds(specs: Sequence[RunSpec], store: Store) -> dict[str, float | None]:
    """Each run's expected wall time from stored runs: seconds per epoch of finished runs of
    the same task and method (else of the same task, any method) times its epochs."""
    per_epoch: dict[tuple[str, str], list[float]] = {}
    for record in store.records():
        timings, epochs = record.get("timings") or {}, len(record.get("curves") or ())
        if record.get("status") == "finished" and epochs and timings.get("total_seconds"):
            value = timings["total_seconds"] / epochs
            per_epoch.setdefault((record["task"], record["method"]), []).append(value)
            per_epoch.setdefault((record["task"], "*"), []).append(value)
    estimates = {}
    for spec in specs:
        samples = per_epoch.get((spec.task.name, spec.method.name)) or per_epoch.get((spec.task.name, "*"))
        estimates[spec.run_id] = sum(samples) / len(samples) * spec.task.train.epochs if samples else None
    return estimates


def threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def execute_and_store(spec: RunSpec, store: Store, device: str, options: ExecutionOptions, available=None,
                      on_epoch=None) -> dict:
    """Execute one run with its checkpoint file, store the record, drop the checkpoint
    (under torchrun every rank trains and rank 0 stores)."""
    checkpoint = store.checkpoint_path(spec.run_id)
    record = execute(spec, device=device, available=available, on_epoch=on_epoch,
                     options=dataclasses.replace(options, checkpoint=checkpoint))
    if distributed()[0] == 0:
        store.put(record)
        checkpoint.unlink(missing_ok=True)
    return record


def _run_in_worker(spec: RunSpec, root: str, device: str, options: ExecutionOptions) -> dict:
    """One run in a pool worker or a cluster job. Returns the record's summary (the record
    itself is in the store)."""
    record = execute_and_store(spec, Store(root), device, options)
    return {k: record.get(k) for k in ("run_id", "status", "metrics", "timings", "task_spec", "error", "diverged")}


def _run_pool(pending, skipped, total, store, device, options, jobs, progress) -> Outcome:
    """Pending runs over ``jobs`` worker processes (spawned: a clean interpreter each, no
    inherited thread pools)."""
    executed: list[dict] = []
    context = multiprocessing.get_context("spawn")
    threads = threads_per_worker(jobs)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(threads,)) as pool:
        futures = {pool.submit(_run_in_worker, spec, str(store.root), device, options): spec for spec in pending}
        for future in concurrent.futures.as_completed(futures):
            spec = futures[future]
            summary = future.result()
            executed.append(summary)
            if progress:
                name = f"{spec.task.name} {spec.method.label} seed={spec.seed}"
                print(f"[{len(skipped) + len(executed)}/{total}] {name}: {_outcome(summary)}", file=sys.stderr,
                      flush=True)
    return Outcome(executed, skipped)


def _outcome(record: dict) -> str:
    status = record["status"]
    if status == "finished":
        metric = record["task_spec"]["eval"]["metric"]
        return f"test_{metric}={record['metrics'][f'test_{metric}']:.4g} ({record['timings']['total_seconds']:.1f}s)"
    if status == "diverged":
        where = record["diverged"]
        return f"diverged ({where['where']} at epoch {where['epoch']}, step {where['step']})"
    return f"failed ({record.get('error')})"
