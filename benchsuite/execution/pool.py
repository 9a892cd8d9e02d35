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

``force`` reruns done runs too (``run --force``): each new record replaces the stored one
by the store's atomic rename, so a killed forced rerun leaves the old record, and a record
another process stored after the runs were listed is kept, not computed again.

Progress goes to stderr through :class:`benchsuite.execution.progress.Progress`. Pool workers
send their runs' starts and epochs to it through a queue. Within :func:`keep_workers` (one
command: a tuned matrix's trials and report runs, each sequential look) the workers live
from one ``run_all`` to the next.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Sequence

import torch

from benchsuite.errors import warn
from benchsuite.execution.engine import execute
from benchsuite.execution.environment import available_cores, distributed
from benchsuite.execution.options import ExecutionOptions
from benchsuite.execution.progress import Progress
from benchsuite.runs.identity import RunSpec, spec_names
from benchsuite.store import Store
from benchsuite.store.status import DONE_STATUSES


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
    force: bool = False,
) -> Outcome:
    """Run every spec not yet done (with ``force``, every spec). Each run checkpoints to
    ``<results>/checkpoints/<run_id>.pt`` and resumes from it after a kill; the checkpoint
    is removed once the run's record is stored. A forced run starts from scratch."""
    options = options or ExecutionOptions()
    store.clean_partial()
    # force: note which write of each record was listed; only that one is replaced
    seen = {spec.run_id: store.version(spec.run_id) for spec in specs} if force else {}
    pending_ids = {spec.run_id for spec in specs if not store.is_done(spec.run_id) or force}
    store.refuse_newer()
    if distributed()[1] > 1:  # every rank walks the same list: the one rank 0 read
        pending_ids = from_rank_zero(pending_ids, device)
    pending = [spec for spec in specs if spec.run_id in pending_ids]
    skipped = [spec.run_id for spec in specs if spec.run_id not in pending_ids]
    pool = jobs > 1 and len(pending) > 1
    if jobs > 1 and not options.threads:
        # a lone pending run trains here, with the threads a worker would have had: its
        # numbers must not depend on how many runs were left (a resumed matrix)
        options = dataclasses.replace(options, threads=threads_per_worker(jobs))
    meter = Progress(len(specs), done=len(skipped), jobs=jobs if pool else 1,
                     enabled=progress and distributed()[0] == 0, names=spec_names(specs))
    try:
        if pool:
            executed, found = _run_pool(pending, store, device, options, jobs, meter, force, seen)
        else:
            executed, found = _run_here(pending, store, device, options, available, meter, force, seen)
    finally:
        meter.close()
    return Outcome(executed, skipped + found)


def _run_here(pending, store, device, options, available, meter, force, seen) -> tuple[list[dict], list[str]]:
    """The pending runs one after the other in this process: first those no other process
    claims, then (waiting for their claims) the others."""
    executed: list[dict] = []
    found: list[str] = []
    busy: list[RunSpec] = []
    for wait, todo in ((False, pending), (True, busy)):
        for spec in list(todo):
            state, record = execute_and_store(
                spec, store, device, options, available, _epoch_reporter(meter, spec) if meter.enabled else None,
                wait=wait, force=force, seen=seen.get(spec.run_id), on_start=lambda spec=spec: meter.start(spec))
            if state != BUSY and distributed()[1] > 1:
                torch.distributed.barrier()
            _sort_outcome(state, spec, record, busy, found, executed, meter)
        if not wait and busy:
            meter.note(f"{len(busy)} run(s) are being computed by another process on {store.root}; "
                       "waiting for them")
    return executed, found


def _sort_outcome(state, spec: RunSpec, record, busy: list, found: list, executed: list, meter: Progress) -> None:
    """One run's outcome into its list: computed by another process (retried), already
    stored, or executed now; the progress meter hears of the last two."""
    if state == BUSY:
        busy.append(spec)
    elif state == DONE:
        found.append(spec.run_id)
        meter.skip(spec)
    else:
        executed.append(record)
        meter.finish(spec, record)


def _epoch_reporter(meter: Progress, spec: RunSpec):
    key = f"val_{spec.task.eval.metric}"

    def on_epoch(row: dict) -> None:
        meter.epoch(spec, row["epoch"], row.get(key))

    return on_epoch


def threads_per_worker(jobs: int) -> int:
    """Threads per worker so that ``jobs`` workers together never use more than the cores."""
    return max(1, available_cores() // jobs)


_EVENTS = None  # in a pool worker: the queue to the parent's Progress (None: progress is off)
_EVENT_EVERY = 1.0  # seconds: at most one epoch event per run this often (a few bytes each)


def _init_worker(threads: int, parent: int, events=None, event_every: float = 1.0) -> None:
    import threading

    import torch

    global _EVENTS, _EVENT_EVERY
    if events is not None:
        events.cancel_join_thread()  # exiting never waits for the parent to read progress events
    _EVENTS, _EVENT_EVERY = events, event_every
    # torch's own setting: OMP_NUM_THREADS is read as the OpenMP runtime loads, which torch's
    # import did before this runs, so setting it here would change only what the record says
    torch.set_num_threads(threads)
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
                      on_epoch=None, wait: bool = True, force: bool = False, seen=None,
                      on_start=None) -> tuple[str, dict | None]:
    """Claim the run, execute it with its checkpoint file, store the record, drop the
    checkpoint. Returns ``(RAN, record)``; ``(DONE, record)`` when its record is done (or
    another process stored it first); ``(BUSY, None)`` when another process holds its
    claim and ``wait`` is False. With ``force`` a done record is replaced if it is still
    the write ``seen`` (``Store.version`` when the runs were listed). ``on_start()`` is
    called when training starts. Under torchrun every rank trains and rank 0 stores
    (holding the claim)."""
    rank, world = distributed()
    leader = rank == 0
    # under torchrun every rank trains a run together or none does: rank 0 holds the claim,
    # reads the store and tells the others, so a run stored meanwhile is trained by no rank
    with store.claim(spec.run_id, wait=wait or world > 1) if leader else contextlib.nullcontext(True) as held:
        if not held:
            return BUSY, None
        existing, done = _stored(spec, store, force, seen) if leader else (None, False)
        if world > 1:
            done = from_rank_zero(done, device)
        if done:
            return DONE, existing if leader else store.get(spec.run_id)
        if leader:
            store.set_aside(spec.run_id)
        if on_start is not None:
            on_start()
        record = _execute(spec, store, device, options, available, on_epoch)
        if leader:
            store.put(record)  # atomic: until this rename the old record (if any) stays
            store.checkpoint_path(spec.run_id).unlink(missing_ok=True)
    return RAN, record


def _stored(spec: RunSpec, store: Store, force: bool, seen) -> tuple[dict | None, bool]:
    """Under the run's claim: its stored record and whether that counts as done. A forced
    run replaces the done record that was listed, not one stored since, and starts from
    scratch: a checkpoint left by a killed run may hold state of the code before a change."""
    store.clean_run(spec.run_id)
    existing = store.get(spec.run_id)
    done = existing is not None and existing["status"] in DONE_STATUSES
    if force and done and store.version(spec.run_id) == seen:
        done = False
    if force and not done:
        store.checkpoint_path(spec.run_id).unlink(missing_ok=True)
    return existing, done


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
                   wait: bool = True, force: bool = False, seen=None) -> tuple[str, dict | None]:
    """One run in a pool worker or a cluster job. Returns its state and the record's
    summary (the record itself is in the store). In a pool worker with progress on, the
    run's start and epochs go to the parent's ``Progress``."""
    on_start = on_epoch = None
    events = _EVENTS
    if events is not None:
        key = f"val_{spec.task.eval.metric}"
        sent = [-float("inf")]

        def on_start() -> None:
            events.put(("start", spec.run_id, None, None))

        def on_epoch(row: dict) -> None:
            if time.monotonic() - sent[0] >= _EVENT_EVERY:  # fast epochs: not a flood the parent must read
                sent[0] = time.monotonic()
                events.put(("epoch", spec.run_id, row["epoch"], row.get(key)))

    state, record = execute_and_store(spec, Store(root), device, options, on_epoch=on_epoch, wait=wait,
                                      force=force, seen=seen, on_start=on_start)
    return state, _summary(record) if record is not None else None


_KEPT: dict | None = None  # inside keep_workers(): its live pool, if one was started (else None)


@contextlib.contextmanager
def keep_workers():
    """Within this block, the worker processes ``run_all`` starts live on from one call to the
    next (a tuned matrix's trials, then its report runs, then each sequential look) rather
    than each call spawning its own: a worker's start (a fresh interpreter importing torch)
    is paid once per command. A call that needs other workers (another count or thread
    budget, progress on or off) replaces them. The workers end with the block."""
    global _KEPT
    outer, _KEPT = _KEPT, {}
    try:
        yield
    finally:
        kept, _KEPT = _KEPT, outer
        if kept.get("pool") is not None:
            kept["pool"].shutdown(wait=True)


def _worker_pool(jobs: int, threads: int, progress: bool, event_every: float):
    """A pool of ``jobs`` spawned workers with ``threads`` threads each and, with
    ``progress``, the queue their events come back on; inside :func:`keep_workers` the
    one kept alive when it has those settings. Returns (pool, events, kept)."""
    key = (jobs, threads, progress, event_every)
    if _KEPT is not None and _KEPT.get("key") == key:
        return _KEPT["pool"], _KEPT["events"], True
    if _KEPT and _KEPT.get("pool") is not None:
        _KEPT.pop("pool").shutdown(wait=True)
    context = multiprocessing.get_context("spawn")
    events = context.Queue() if progress else None
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                                  initargs=(threads, os.getpid(), events, event_every))
    if _KEPT is not None:
        _KEPT.update(key=key, pool=pool, events=events)
    return pool, events, _KEPT is not None


def _run_pool(pending, store, device, options, jobs, meter, force, seen) -> tuple[list[dict], list[str]]:
    """Pending runs over ``jobs`` worker processes (spawned: a clean interpreter each, no
    inherited thread pools; each dies with this process)."""
    executed: list[dict] = []
    found: list[str] = []
    threads = options.threads or threads_per_worker(jobs)
    if threads * jobs > available_cores():
        warn(f"{jobs} workers x {threads} threads exceed the {available_cores()} cores: runs will compete for "
             "them (slower, with inflated step times)")
    pool, events, kept = _worker_pool(jobs, threads, meter.enabled, min(_EVENT_EVERY, meter.epoch_every))
    by_id = {spec.run_id: spec for spec in pending}
    try:
        busy: list[RunSpec] = []
        for wait, todo in ((False, pending), (True, busy)):
            futures = {pool.submit(_run_in_worker, spec, str(store.root), device, options, wait, force,
                                   seen.get(spec.run_id)): spec for spec in list(todo)}
            waiting = set(futures)
            while waiting:
                ended, waiting = concurrent.futures.wait(waiting, timeout=1.0,
                                                         return_when=concurrent.futures.FIRST_COMPLETED)
                relay(events, by_id, meter)
                for future in ended:
                    spec = futures[future]
                    state, summary = future.result()
                    _sort_outcome(state, spec, summary, busy, found, executed, meter)
            if not wait and busy:
                meter.note(f"{len(busy)} run(s) are being computed by another process on {store.root}; "
                           "waiting for them")
    except BaseException:
        _stop(pool)
        if kept:
            _KEPT.clear()  # a stopped pool is not reused: the next call starts new workers
        raise
    relay(events, by_id, meter)
    if not kept:
        pool.shutdown(wait=True)
    return executed, found


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Interrupted (Ctrl-C, SIGTERM) or failed: drop the queued runs and end the workers'
    runs now instead of letting the pool finish them; a run in flight resumes from its
    checkpoint next time."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()


def relay(events, by_id: dict[str, RunSpec], meter: Progress) -> None:
    """Pass the workers' events waiting in ``events`` (starts and epochs of their runs) to
    ``meter``."""
    while events is not None:
        try:
            kind, run_id, epoch, value = events.get_nowait()
        except queue.Empty:
            return
        spec = by_id.get(run_id)
        if spec is None:
            continue
        if kind == "start":
            meter.start(spec)
        else:
            meter.epoch(spec, epoch, value)
