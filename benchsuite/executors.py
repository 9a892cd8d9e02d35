"""Executors: how a list of runs gets executed and stored.

``run_all`` runs in this process, or with ``jobs > 1`` in a local pool of worker processes
(each limited to its share of the cores' threads, so workers do not oversubscribe them).
Finished runs found in the store are skipped, failed ones retried; each record is stored
the moment its run ends (by the process that ran it), and a run in progress checkpoints, so
an interrupted matrix loses nothing that finished and resumes what was running.

A run is computed only under its claim in the store (``Store.claim``): a run another
process is computing is skipped at first and waited for at the end, then run here only if
that process died without storing it. So several ``benchsuite run`` on one results folder
share the work and never compute a run twice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence

import torch
from tqdm import tqdm

from benchsuite.engine import ExecutionOptions, RunSpec, execute
from benchsuite.environment import available_cores, distributed
from benchsuite.status import DONE_STATUSES, STATUS_DIVERGED, STATUS_FINISHED
from benchsuite.store import Store


@dataclasses.dataclass
class Outcome:
    executed: list[dict]  # records (or their summaries) of the runs this process computed
    skipped: list[str]  # run ids already done, including those another process stored meanwhile


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
    pending_ids = {spec.run_id for spec in specs if not store.is_done(spec.run_id)}
    if distributed()[1] > 1:  # every rank walks the same list: the one rank 0 read
        pending_ids = from_rank_zero(pending_ids, device)
    pending = [spec for spec in specs if spec.run_id in pending_ids]
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
        # first pass: runs no other process claims; second pass: wait for those claimed
        busy: list[RunSpec] = []
        for wait, todo in ((False, pending), (True, busy)):
            for spec in list(todo):
                name = f"{spec.task.name} {spec.method.label} seed={spec.seed}"
                bar.set_description(name)

                def on_epoch(row, spec=spec):
                    key = f"val_{spec.task.eval.metric}"
                    value = row.get(key, float("nan"))
                    bar.set_postfix_str(f"epoch {row['epoch']}/{spec.task.train.epochs} {key}={value:.4g}")

                state, record = execute_and_store(spec, store, device, options, available,
                                                  on_epoch if live else None, wait=wait)
                if state == BUSY:
                    busy.append(spec)
                    continue
                if distributed()[1] > 1:
                    torch.distributed.barrier()
                bar.update(1)
                if state == DONE:
                    skipped.append(spec.run_id)
                    continue
                executed.append(record)
                if progress:
                    line = f"[{len(skipped) + len(executed)}/{len(specs)}] {name}: {_outcome(record)}"
                    if live:
                        if record["status"] != STATUS_FINISHED:
                            bar.write(line)
                    else:
                        print(line, file=sys.stderr, flush=True)
            if not wait and busy and progress:
                print(f"{len(busy)} run(s) are being computed by another process on {store.root}; "
                      "waiting for them", file=sys.stderr, flush=True)
    finally:
        bar.close()
    return Outcome(executed, skipped)


def estimate_seconds(specs: Sequence[RunSpec], store: Store) -> dict[str, float | None]:
    """Each run's expected wall time from stored runs: seconds per epoch of finished runs of
    the same task and method (else of the same task, any method) times its epochs."""
    per_epoch: dict[tuple[str, str], list[float]] = {}
    for record in store.records():
        timings, epochs = record.get("timings") or {}, len(record.get("curves") or ())
        if record.get("status") == STATUS_FINISHED and epochs and timings.get("total_seconds"):
            value = timings["total_seconds"] / epochs
            per_epoch.setdefault((record["task"], record["method"]), []).append(value)
            per_epoch.setdefault((record["task"], "*"), []).append(value)
    estimates = {}
    for spec in specs:
        samples = per_epoch.get((spec.task.name, spec.method.name)) or per_epoch.get((spec.task.name, "*"))
        estimates[spec.run_id] = sum(samples) / len(samples) * spec.task.train.epochs if samples else None
    return estimates


def threads_per_worker(jobs: int) -> int:
    """Threads per worker so that ``jobs`` workers together never use more than the cores."""
    return max(1, available_cores() // jobs)


def _init_worker(threads: int, parent: int) -> None:
    import threading

    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _die_with(parent)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def _die_with(parent: int) -> None:
    """Linux: have the kernel kill this worker when its parent dies (even by kill -9)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    """Everywhere: exit as soon as the parent is gone (this worker is then re-parented)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


RAN, DONE, BUSY = "ran", "done", "busy"


def execute_and_store(spec: RunSpec, store: Store, device: str, options: ExecutionOptions, available=None,
                      on_epoch=None, wait: bool = True) -> tuple[str, dict | None]:
    """Claim the run, execute it with its checkpoint file, store the record, drop the
    checkpoint. Returns ``(RAN, record)``; ``(DONE, record)`` when another process stored it
    first; ``(BUSY, None)`` when another process holds its claim and ``wait`` is False.
    Under torchrun every rank trains and rank 0 stores (holding the claim)."""
    rank, world = distributed()
    leader = rank == 0
    # under torchrun every rank trains a run together or none does: rank 0 holds the claim,
    # reads the store and tells the others, so a run stored meanwhile is trained by no rank
    with store.claim(spec.run_id, wait=wait or world > 1) if leader else contextlib.nullcontext(True) as held:
        if not held:
            return BUSY, None
        existing = None
        if leader:
            store.clean_run(spec.run_id)
            existing = store.get(spec.run_id)
        done = existing is not None and existing["status"] in DONE_STATUSES
        if world > 1:
            done = from_rank_zero(done, device)
        if done:
            return DONE, existing if leader else store.get(spec.run_id)
        if leader:
            store.set_aside(spec.run_id)
        record = _execute(spec, store, device, options, available, on_epoch)
        if leader:
            store.put(record)
            store.checkpoint_path(spec.run_id).unlink(missing_ok=True)
    return RAN, record


def from_rank_zero(value, device: str):
    """``value`` as rank 0 has it, on every rank of a torchrun job (a broadcast)."""
    box = [value]
    on = torch.device(device) if torch.distributed.get_backend() == "nccl" else None
    torch.distributed.broadcast_object_list(box, src=0, device=on)
    return box[0]


def _execute(spec, store, device, options, available, on_epoch) -> dict:
    return execute(spec, device=device, available=available, on_epoch=on_epoch,
                   options=dataclasses.replace(options, checkpoint=store.checkpoint_path(spec.run_id)))


def _summary(record: dict) -> dict:
    return {k: record.get(k) for k in ("run_id", "status", "metrics", "timings", "task_spec", "error", "diverged")}


def _run_in_worker(spec: RunSpec, root: str, device: str, options: ExecutionOptions,
                   wait: bool = True) -> tuple[str, dict | None]:
    """One run in a pool worker or a cluster job. Returns its state and the record's
    summary (the record itself is in the store)."""
    state, record = execute_and_store(spec, Store(root), device, options, wait=wait)
    return state, _summary(record) if record is not None else None


def _run_pool(pending, skipped, total, store, device, options, jobs, progress) -> Outcome:
    """Pending runs over ``jobs`` worker processes (spawned: a clean interpreter each, no
    inherited thread pools; each dies with this process)."""
    executed: list[dict] = []
    context = multiprocessing.get_context("spawn")
    threads = options.threads or threads_per_worker(jobs)
    if threads * jobs > available_cores():
        print(f"benchsuite: warning: {jobs} workers x {threads} threads exceed the {available_cores()} cores: "
              "runs will compete for them (slower, with inflated step times)", file=sys.stderr, flush=True)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(threads, os.getpid())) as pool:
        busy: list[RunSpec] = []
        for wait, todo in ((False, pending), (True, busy)):
            futures = {pool.submit(_run_in_worker, spec, str(store.root), device, options, wait): spec
                       for spec in list(todo)}
            for future in concurrent.futures.as_completed(futures):
                spec = futures[future]
                state, summary = future.result()
                if state == BUSY:
                    busy.append(spec)
                    continue
                if state == DONE:
                    skipped.append(spec.run_id)
                    continue
                executed.append(summary)
                if progress:
                    name = f"{spec.task.name} {spec.method.label} seed={spec.seed}"
                    print(f"[{len(skipped) + len(executed)}/{total}] {name}: {_outcome(summary)}",
                          file=sys.stderr, flush=True)
    return Outcome(executed, skipped)


def _outcome(record: dict) -> str:
    status = record["status"]
    if status == STATUS_FINISHED:
        metric = record["task_spec"]["eval"]["metric"]
        return f"test_{metric}={record['metrics'][f'test_{metric}']:.4g} ({record['timings']['total_seconds']:.1f}s)"
    if status == STATUS_DIVERGED:
        where = record["diverged"]
        return f"diverged ({where['where']} at epoch {where['epoch']}, step {where['step']})"
    return f"failed ({record.get('error')})"
