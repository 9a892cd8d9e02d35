"""Progress of a list of runs on stderr, and how long runs are expected to take.

On a terminal :class:`Progress` draws a live bar; elsewhere (CI logs, pipes) it prints one
line per finished run with an ETA, and a line at the end of an epoch of a long run.
:func:`estimate_seconds` gives each run's expected time from the runs a results folder
holds (``run --dry-run``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from tqdm import tqdm

from benchsuite.runs.identity import RunSpec
from benchsuite.store import Store
from benchsuite.store.status import STATUS_DIVERGED, STATUS_FINISHED

EPOCH_EVERY = 30.0  # seconds: an epoch ending this long after the last progress line prints one


def run_label(spec: RunSpec, names: dict[str, str] | None = None) -> str:
    """Task, configuration name (``names``: :func:`benchsuite.runs.identity.spec_names` of the
    runs listed together) and seed."""
    name = (names or {}).get(spec.run_id) or spec.method.label + (f"@{spec.replicate}" if spec.replicate else "")
    return f"{spec.task.name} {name} seed={spec.seed}"


def clock_text(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    hours, rest = divmod(max(0, round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Progress of a list of runs, on ``stream`` (stderr).

    On a terminal: a live bar (runs done, the current run and its last epoch; runs that
    did not finish are printed above it). Elsewhere (CI logs, pipes): one line per run
    this process computed, ``[k/n] <run> <status> <seconds>s, ETA mm:ss``, and, while runs
    are long, a line when one of them ends an epoch ``epoch_every`` seconds or more after
    the last line. The ETA is the mean seconds of the runs computed here times the runs
    left, divided by the runs at a time (``jobs``, at most the runs left). ``enabled``
    False prints nothing (``--quiet``); ``names``: each run's configuration name
    (:func:`benchsuite.runs.identity.spec_names`); ``clock`` and ``live`` are for tests."""

    def __init__(self, total: int, done: int = 0, jobs: int = 1, enabled: bool = True, live: bool | None = None,
                 stream=None, clock=time.monotonic, epoch_every: float | None = None,
                 names: dict[str, str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.names = names or {}  # run id -> configuration name
        self.enabled = enabled
        self.live = enabled and (self.stream.isatty() if live is None else live)
        self.total, self.done, self.jobs = total, done, jobs
        self.clock = clock
        self.epoch_every = EPOCH_EVERY if epoch_every is None else epoch_every
        self.seconds: list[float] = []  # of the runs computed here
        self.running: dict[str, float] = {}  # run id -> when it started
        self.last_line = clock()
        self.bar = (tqdm(total=total, initial=done, unit="run", file=self.stream, dynamic_ncols=True,
                         desc=f"{jobs} at a time" if jobs > 1 else None) if self.live else None)

    def _line(self, text: str) -> None:
        self.last_line = self.clock()
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            self._line(text)

    def start(self, spec: RunSpec) -> None:
        self.running[spec.run_id] = self.clock()
        if self.bar is not None and self.jobs == 1:
            self.bar.set_description(run_label(spec, self.names))

    def epoch(self, spec: RunSpec, epoch: int, value) -> None:
        """An epoch of a running run ended; ``value`` is its validation metric."""
        if not self.enabled or spec.run_id not in self.running:
            return
        shown = (f"epoch {epoch}/{spec.task.train.epochs} val_{spec.task.eval.metric}="
                 + (f"{value:.4g}" if isinstance(value, (int, float)) else "?"))
        if self.bar is not None:
            self.bar.set_postfix_str(shown if self.jobs == 1 else f"{run_label(spec, self.names)} {shown}")
            return
        now = self.clock()
        if now - self.last_line >= self.epoch_every:
            into = now - self.running[spec.run_id]
            self._line(f"[{self.done}/{self.total}] {run_label(spec, self.names)} {shown}, {into:.0f}s into the run")

    def skip(self, spec: RunSpec) -> None:
        """A run found done (another process stored it meanwhile)."""
        self.running.pop(spec.run_id, None)
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def finish(self, spec: RunSpec, record: dict) -> None:
        """A run computed here ended; ``record`` is its record or its summary."""
        started = self.running.pop(spec.run_id, None)
        seconds = (record.get("timings") or {}).get("total_seconds")
        if seconds is None:
            seconds = self.clock() - started if started is not None else 0.0
        self.seconds.append(seconds)
        self.done += 1
        if not self.enabled:
            return
        eta = self.eta()
        line = (f"[{self.done}/{self.total}] {run_label(spec, self.names)} {status_text(record)} {seconds:.1f}s, "
                f"ETA {clock_text(eta) if eta is not None else '?'}")
        if self.bar is not None:
            self.bar.update(1)
            if record["status"] != STATUS_FINISHED:
                self._line(line)
        else:
            self._line(line)

    def eta(self) -> float | None:
        """Seconds until the last run ends: mean seconds per run x runs left / runs at a time."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if not self.seconds:
            return None
        return sum(self.seconds) / len(self.seconds) * left / min(self.jobs, left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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



def status_text(record: dict) -> str:
    """A record's (or summary's) outcome in a few words: ``finished test_accuracy=0.9``,
    ``diverged (...)``, ``failed (...)``."""
    status = record["status"]
    if status == STATUS_FINISHED:
        metric = record["task_spec"]["eval"]["metric"]
        return f"finished test_{metric}={record['metrics'][f'test_{metric}']:.4g}"
    if status == STATUS_DIVERGED:
        where = record["diverged"]
        return f"diverged ({where['where']} at epoch {where['epoch']}, step {where['step']})"
    return f"failed ({record.get('error')})"
