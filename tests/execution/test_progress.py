"""Progress on stderr: one line per finished run with an ETA, epoch lines during long runs,
a live bar on a terminal, the pool workers' events relayed; driven by a fake clock."""

import io
import queue

import pytest

from benchsuite.cli import main
from benchsuite.execution import engine, progress
from benchsuite.execution import pool as executors
from benchsuite.execution.pool import relay
from benchsuite.execution.progress import Progress, clock_text
from benchsuite.testing import method_of, tiny_task_spec


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def specs():
    task = tiny_task_spec(epochs=5)
    return [engine.make_run_spec(task, method_of(name), seed) for seed in range(2) for name in ("none", "l2")]


def finished(seconds, value=0.9):
    return {"status": "finished", "task_spec": {"eval": {"metric": "accuracy"}},
            "metrics": {"test_accuracy": value}, "timings": {"total_seconds": seconds}}


def meter(total, clock, jobs=1, done=0, **kwargs):
    stream = io.StringIO()
    return Progress(total, done=done, jobs=jobs, live=False, stream=stream, clock=clock, **kwargs), stream


def test_a_line_per_finished_run_with_the_mean_seconds_times_the_runs_left_as_eta(specs):
    clock = FakeClock()
    progress, stream = meter(4, clock)
    label = f"{specs[0].task.name} none seed=0"
    progress.start(specs[0])
    progress.finish(specs[0], finished(10.0))
    progress.start(specs[1])
    progress.finish(specs[1], finished(20.0, value=0.75))
    lines = stream.getvalue().splitlines()
    assert lines == [f"[1/4] {label} finished test_accuracy=0.9 10.0s, ETA 00:30",  # 10 s x 3 left
                     f"[2/4] {specs[1].task.name} l2 seed=0 finished test_accuracy=0.75 20.0s, ETA 00:30"]  # 15 x 2


def test_eta_divides_by_the_runs_at_a_time_and_counts_runs_found_done(specs):
    progress, stream = meter(10, FakeClock(), jobs=4, done=2)  # two were done before
    progress.finish(specs[0], finished(60.0))
    assert progress.eta() == 60.0 * 7 / 4 and stream.getvalue().startswith("[3/10] ")
    progress.skip(specs[1])  # another process stored it meanwhile: no line, one fewer left
    assert progress.eta() == 60.0 * 6 / 4 and len(stream.getvalue().splitlines()) == 1
    for spec in specs[2:]:
        progress.finish(spec, finished(60.0))
    assert progress.eta() == 60.0 * 4 / 4
    progress.done = 9
    assert progress.eta() == 60.0  # one left: never divided by more runs than are left
    progress.done = 10
    assert progress.eta() == 0.0


def test_diverged_and_failed_runs_say_so_and_seconds_come_from_the_clock_without_timings(specs):
    clock = FakeClock()
    progress, stream = meter(2, clock)
    progress.start(specs[0])
    progress.finish(specs[0], {"status": "diverged", "timings": {"total_seconds": 3.0},
                               "diverged": {"where": "training loss", "epoch": 2, "step": 17}})
    progress.start(specs[1])
    clock.now = 4.5
    progress.finish(specs[1], {"status": "failed", "error": "ValueError: boom", "timings": {}})
    first, second = stream.getvalue().splitlines()
    assert first.endswith("diverged (training loss at epoch 2, step 17) 3.0s, ETA 00:03")
    assert second.endswith("failed (ValueError: boom) 4.5s, ETA 00:00")


def test_an_epoch_line_only_when_30_seconds_passed_since_the_last_line(specs):
    clock = FakeClock()
    progress, stream = meter(4, clock)
    spec = specs[0]
    progress.start(spec)
    for now, epoch in ((10, 1), (31, 2), (40, 3), (62, 4)):
        clock.now = now
        progress.epoch(spec, epoch, 0.5 + epoch / 100)
    clock.now = 70
    progress.finish(spec, finished(70.0))
    progress.start(specs[1])
    clock.now = 90
    progress.epoch(specs[1], 1, 0.6)  # 20 s after the finish line: quiet
    clock.now = 101
    progress.epoch(specs[1], 2, None)  # no validation value yet
    lines = stream.getvalue().splitlines()
    assert lines == [
        f"[0/4] {spec.task.name} none seed=0 epoch 2/5 val_accuracy=0.52, 31s into the run",
        f"[0/4] {spec.task.name} none seed=0 epoch 4/5 val_accuracy=0.54, 62s into the run",
        f"[1/4] {spec.task.name} none seed=0 finished test_accuracy=0.9 70.0s, ETA 03:30",
        f"[1/4] {spec.task.name} l2 seed=0 epoch 2/5 val_accuracy=?, 31s into the run",
    ]


def test_disabled_progress_prints_nothing(specs):
    clock = FakeClock()
    progress, stream = meter(2, clock, enabled=False)
    progress.start(specs[0])
    clock.now = 100
    progress.epoch(specs[0], 1, 0.5)
    progress.note("a note")
    progress.finish(specs[0], finished(100.0))
    progress.close()
    assert stream.getvalue() == "" and progress.done == 1


def test_events_of_a_run_not_running_here_are_ignored(specs):
    clock = FakeClock()
    progress, stream = meter(2, clock)
    clock.now = 100
    progress.epoch(specs[0], 1, 0.5)  # never started (or already finished): a late event
    assert stream.getvalue() == ""


def test_relay_passes_the_workers_starts_and_epochs_on(specs):
    clock = FakeClock()
    progress, stream = meter(4, clock, jobs=2)
    events = queue.Queue()
    events.put(("start", specs[0].run_id, None, None))
    events.put(("start", "some-other-run", None, None))  # not one of these runs: ignored
    relay(events, {spec.run_id: spec for spec in specs}, progress)
    assert events.empty() and list(progress.running) == [specs[0].run_id] and stream.getvalue() == ""
    clock.now = 45  # the run started when its start was relayed
    events.put(("epoch", specs[0].run_id, 3, 0.8))
    relay(events, {spec.run_id: spec for spec in specs}, progress)
    assert stream.getvalue() == f"[0/4] {specs[0].task.name} none seed=0 epoch 3/5 val_accuracy=0.8, 45s into the run\n"
    relay(None, {}, progress)  # progress off: no queue


def test_on_a_terminal_a_bar_and_only_the_runs_that_did_not_finish_as_lines(specs):
    stream = io.StringIO()
    progress = Progress(2, live=True, stream=stream, clock=FakeClock())
    progress.start(specs[0])
    progress.epoch(specs[0], 1, 0.5)
    progress.finish(specs[0], finished(1.0))
    progress.start(specs[1])
    progress.finish(specs[1], {"status": "failed", "error": "RuntimeError: x", "timings": {"total_seconds": 1.0}})
    progress.close()
    text = stream.getvalue()
    assert "2/2" in text and "epoch 1/5 val_accuracy=0.5" in text  # the bar, with the epoch
    assert "failed (RuntimeError: x)" in text and "finished test_accuracy" not in text


@pytest.mark.parametrize("seconds, shown", [(0, "00:00"), (59.6, "01:00"), (754, "12:34"), (3600, "1:00:00"),
                                            (36_061, "10:01:01"), (-3, "00:00")])
def test_clock_text(seconds, shown):
    assert clock_text(seconds) == shown


FAST = ["--task", "digits-mlp", "--epochs", "2", "--subset", "200", "--seeds", "1"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_run_prints_progress_lines_in_logs_and_quiet_silences_them(tmp_path, capsys, monkeypatch, jobs):
    """Under capsys stderr is no terminal, as in CI logs: plain lines, with --jobs too, and
    an epoch line whenever the interval passed (0 here), relayed from the workers."""
    monkeypatch.setattr(progress, "EPOCH_EVERY", 0.0)
    monkeypatch.setattr(executors, "threads_per_worker", lambda jobs: 1)
    assert main(["run", "-p", "l2", *FAST, "--jobs", jobs, "--results", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.splitlines()
    done = [line for line in err if " finished test_accuracy=" in line]
    assert sorted(line[:5] for line in done) == ["[1/2]", "[2/2]"]
    assert all(", ETA " in line and "s, ETA" in line for line in done) and done[-1].endswith("ETA 00:00")
    epochs = [line for line in err if " epoch " in line and "s into the run" in line]
    assert {line.split(" epoch ")[1][:3] for line in epochs} == {"1/2", "2/2"}
    assert len(epochs) == 4  # two epochs of each of the two runs
    assert main(["run", "-p", "l2", *FAST, "--jobs", jobs, "-q", "--results", str(tmp_path / "b")]) == 0
    assert "[1/2]" not in capsys.readouterr().err
