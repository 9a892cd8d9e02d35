"""Every performance goal in one table, measured side by side in one run.

    python tests/perf/all.py [--epochs 2] [--repeats 3] [--blocks 20] [--threads 1] [--skip-methods]
        [--skip-suite] [--suite-baseline REV] [--skip-demo]

Rows (each a median of interleaved repeats, on this machine, now):

* one ``benchsuite run --plugin none --no-baseline --task mnist1d-mlp --seed 0`` from the shell
  (a fresh results folder each time): its wall time with the data cache filled by a first
  call (the goal), and that first call's (no goal: a machine pays it once);
* the host's training loop against a hand-written PyTorch loop (``overhead.py``), with and
  without the per-hook timing;
* each bundled method's training-step cost relative to ``none`` on mnist5k-mlp (Adam, batch
  100; ``method_overhead.py``: whole runs interleaved, then, in rows of their own, the two
  runs' steps interleaved in 20-step blocks in one process, ``--blocks``), and for every
  method ``floors.py`` writes by hand (``l1``, ``l2``, ``wd``, ``lpwd``, ``wn``, ``wc``,
  ``pp``, ``partialreg``) in the same interleaved repeats the floor: the hand-written loop
  with the method's math written directly, over the hand loop (no goal, it shows what the
  math costs here; its note gives the host's ratio over it);
* a generated store of 1000 runs, each measure in a fresh interpreter: loading it as every
  read-only command does (``Store.table()``; the goal), and the read-only commands
  (``results``, ``leaderboard``, ``report``) as a whole (no goal: analysis, tests and figures
  come on top), with whether they imported torch and scipy.stats;
* the test suite (``pytest -n auto``, what ``tox -e tests`` runs after its lint) of this
  checkout over the same suite at ``--suite-baseline`` (a revision checked out into a
  temporary worktree and imported from there: the suite as it was when the goal was set), run
  one after the other; the goal is 0.6;
* the README's first command's job (``tox -e demo``'s ``benchsuite run``, into a fresh
  results folder; seconds, goal 600);
* the convolutional loop: on a CUDA machine ``gpu.py`` is the command (it needs minutes and
  is run on its own); without one, the engine against the hand loop on a tiny conv model with
  synthetic data (``gpu.py --cpu-dry-run``), the same comparison at CPU scale.

Prints the date, the machine and one Markdown table with each goal and whether it holds.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floors  # noqa: E402
import gpu  # noqa: E402
import method_overhead  # noqa: E402
import overhead  # noqa: E402

from benchsuite.execution.environment import environment  # noqa: E402

# (method, settings, goal): per training step over `none`'s
METHOD_GOALS = [
    ("l1", (), 1.08), ("l2", (), 1.08), ("wd", (), 1.08), ("lpwd", (), 1.08), ("wn", (), 1.08),
    ("wc", (), 1.25), ("pp", (), 1.15), ("gcsr", (), 1.08), ("gcsr", ("gcsr.mode=always",), 1.25),
    ("partialreg", (), 1.08), ("dipr", (), 1.4),
]
READ_ONLY_GOAL = 1.0
ONE_RUN_GOAL = 3.5  # seconds from the shell
ONE_RUN = ["run", "--plugin", "none", "--no-baseline", "--task", "mnist1d-mlp", "--seed", "0", "-q"]
SUITE_GOAL = 0.6  # this suite's wall time over the baseline revision's
SUITE_BASELINE = "81a413c"  # main when the goal was set (2026-12-07)
DEMO_GOAL = 600.0  # seconds
REPO = Path(__file__).resolve().parents[2]


LOAD_PROBE = """\
import sys
from benchsuite.store import Store
table = Store(sys.argv[1]).table()
print(len(table), "torch" in sys.modules)
"""

COMMAND_PROBE = """\
import contextlib, io, sys
import benchsuite.store as store
import benchsuite.store.folder as folder
tables = []
table_of = store.runs_table

def counted_table(records):  # every read-only command builds its runs table here
    tables.append(1)
    return table_of(records)

store.runs_table = folder.runs_table = counted_table
from benchsuite.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
print(code, "torch" in sys.modules, "scipy.stats" in sys.modules, len(tables))
"""


def _fresh(probe: str, *argv: str) -> tuple[float, list[str], str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, done.stdout.split(), done.stderr[-200:] if done.returncode else ""


def read_only_rows(runs: int = 1000, repeats: int = 3) -> list[tuple[str, float, float | None, str]]:
    """On a generated store of ``runs`` runs, each in a fresh interpreter: loading the store
    the way every read-only command does (``Store.table()``: launch, imports, parsing each
    record once; the issue's goal), then each read-only command as a whole (no goal: the
    analysis, its tests and the figures come on top of loading). Medians of ``repeats``
    interleaved rounds: one fresh interpreter's wall time varies by tenths of a second here."""
    from benchsuite.store import Store
    from benchsuite.testing import synthetic_record

    with tempfile.TemporaryDirectory() as folder:
        results = str(Path(folder) / "results")
        store = Store(results)
        for i in range(runs):
            store.put(synthetic_record(f"t{i % 10}", ("none", "l2", "wd")[i % 3], i // 30, 0.5 + i * 1e-4))
        probes = {"load": (LOAD_PROBE, results)}
        for command in (["results", "--summary"], ["leaderboard", "--format", "md"],
                        ["report", "--name", "perf", "--out", str(Path(folder) / "report")]):
            probes[command[0]] = (COMMAND_PROBE, command[0], "--results", results, *command[1:])
        seconds: dict[str, list[float]] = {name: [] for name in probes}
        last: dict[str, tuple[list[str], str]] = {}
        for _ in range(repeats):
            for name, (probe, *argv) in probes.items():
                elapsed, out, error = _fresh(probe, *argv)
                seconds[name].append(elapsed)
                last[name] = (out, error)
    spread = {name: f"min {min(values):.2f}, max {max(values):.2f}" for name, values in seconds.items()}
    out, error = last.pop("load")
    count, torch_loaded = (out + ["?"] * 2)[:2]
    rows = [(f"load a {runs}-run store (s, fresh interpreter, `Store.table()`)", statistics.median(seconds["load"]),
             READ_ONLY_GOAL, f"{spread['load']}; {count} runs, torch imported: {torch_loaded}"
             f"{'; ' + error if error else ''}")]
    for name, (out, error) in last.items():
        code, torch_loaded, scipy_loaded, tables = (out + ["?"] * 4)[:4]
        note = (f"{spread[name]}; exit {code}, torch imported: {torch_loaded}, scipy.stats imported: {scipy_loaded}, "
                f"runs tables built: {tables}{'; ' + error if error else ''}")
        rows.append((f"`benchsuite {name}` on {runs} runs, whole command (s, fresh interpreter)",
                     statistics.median(seconds[name]), None, note))
    return rows


def one_run_rows(repeats: int = 3) -> list[tuple[str, float, float | None, str]]:
    """``benchsuite run`` of one small run from the shell, each call a fresh interpreter and a
    fresh results folder, with a data cache of its own: the first call fills it."""
    command = [str(Path(sys.executable).with_name("benchsuite")), *ONE_RUN]
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BENCHSUITE_CACHE_DIR": str(Path(folder) / "cache")}
        for call in range(repeats + 1):
            start = time.perf_counter()
            done = subprocess.run([*command, "--results", str(Path(folder) / f"r{call}")], env=env,
                                  capture_output=True, text=True)
            seconds.append(time.perf_counter() - start)
            if done.returncode:
                raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-400:]}")
        record = next((Path(folder) / "r1").rglob("*.json"), None)
    warm = seconds[1:]
    return [("one `benchsuite run` (mnist1d-mlp, `none`, 1 seed) from the shell, data cached (s)",
             statistics.median(warm), ONE_RUN_GOAL, f"min {min(warm):.2f}, max {max(warm):.2f}; {repeats} calls"
             f"{'' if record else '; no record found'}"),
            ("the same, the first call on a machine (it fills the data cache) (s)", seconds[0], None, "")]


def _timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} in {cwd} exited {done.returncode}: {done.stdout[-600:]}"
                           f"{done.stderr[-600:]}")
    return time.perf_counter() - start


def suite_row(baseline: str) -> tuple[str, float, float, str]:
    """The whole test suite here over the suite at ``baseline``, one after the other, each
    importing its own checkout (the host and the bundled plugins) through PYTHONPATH."""
    pytest = [sys.executable, "-m", "pytest", "-n", "auto", "-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory() as folder:
        old = Path(folder) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), baseline], cwd=REPO, check=True)
        try:
            times = {}
            for name, root in (("baseline", old), ("now", REPO)):
                paths = [str(root), *(str(p) for p in sorted((root / "plugins").iterdir()) if p.is_dir())]
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths),
                       "BENCHSUITE_CACHE_DIR": str(Path(folder) / f"cache-{name}")}
                times[name] = _timed(pytest, root, env)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO)
    return (f"test suite (`pytest -n auto`) wall time now / at {baseline}", times["now"] / times["baseline"],
            SUITE_GOAL, f"now {times['now']:.0f} s, at {baseline} {times['baseline']:.0f} s")


def demo_row() -> tuple[str, float, float, str]:
    """The job of the README's first command (``tox -e demo``'s ``benchsuite run``), into a
    fresh results folder and a fresh data cache."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BENCHSUITE_CACHE_DIR": str(Path(folder) / "cache")}
        seconds = _timed([str(Path(sys.executable).with_name("benchsuite")), "run", "--matrix",
                          "tasks/matrices/small-data.toml", "--results", str(Path(folder) / "results"), "--jobs", "2",
                          "-q"], REPO, env)
    return ("the README's first command's `benchsuite run` (small-data tier, `--jobs 2`) (s)", seconds, DEMO_GOAL,
            "after the install; a fresh results folder and data cache")


def conv_row(steps: int) -> tuple[str, float, float, str]:
    out = io.StringIO()
    if torch.cuda.is_available():
        return ("conv loop: run `python tests/perf/gpu.py` (a CUDA GPU is present)", float("nan"), 1.5, "not run here")
    gpu.main(["--cpu-dry-run", "--no-sync-check", "--configs", "fp32", "--methods", "none",
              "--tasks", "cifar10-resnet18", "--steps", str(steps), "--budget", "300"], out=out)
    text = out.getvalue()
    rates = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 2 and cells[0] in ("hand-written loop", "none"):
            try:
                rates[cells[0]] = float(cells[2].replace(",", ""))
            except ValueError:
                pass
    ratio = rates["hand-written loop"] / rates["none"] if len(rates) == 2 else float("nan")
    return ("tiny conv model, CPU, synthetic data: hand loop images/s / engine's", ratio, 1.5,
            "no GPU here: tests/perf/gpu.py is the GPU command")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-methods", action="store_true", help="only the host loop, read-only and conv rows")
    parser.add_argument("--skip-suite", action="store_true", help="leave out the test suite row (minutes)")
    parser.add_argument("--suite-baseline", default=SUITE_BASELINE, help="the revision the suite is compared with")
    parser.add_argument("--skip-demo", action="store_true", help="leave out the README's first command (minutes)")
    parser.add_argument("--blocks", type=int, default=20,
                        help="pairs of 20-step blocks per method for the step-interleaved rows (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = environment(torch.device("cpu"))
    print(f"# benchsuite performance, {datetime.date.today().isoformat()}")
    print(f"{env['cpu']}, {env['cores']} cores, {args.threads} thread(s); torch {torch.__version__}, "
          f"Python {platform.python_version()}; epochs {args.epochs}, repeats {args.repeats}; load average at the "
          f"start {os.getloadavg()[0]:.2f}"
          f"{' (above the cores: other processes competed for them)' if os.getloadavg()[0] > env['cores'] else ''}\n",
          flush=True)
    quiet = lambda line: print(f"  {line}", file=sys.stderr, flush=True)  # noqa: E731
    rows = [*one_run_rows()]
    loop = overhead.measure(epochs=2 * args.epochs, repeats=args.repeats, report=quiet)
    rows.append(("host loop / hand-written loop (mnist5k-mlp, `none`)", loop["host/hand"], overhead.GOAL, ""))
    rows.append(("the same without per-hook timing", loop["host without hook timing/hand"], overhead.GOAL, ""))
    if not args.skip_methods:
        for plugin, settings, goal in METHOD_GOALS:
            if plugin in floors.METHODS and not settings:
                result = floors.measure(plugin, epochs=args.epochs, repeats=args.repeats, report=quiet)
                rows.append((f"`{plugin}` step / `none` step", result["host"], goal,
                             f"min {result['host_min']:.2f}, max {result['host_max']:.2f}"))
                rows.append((f"`{plugin}`'s math in the hand-written loop / that loop (floor)", result["floor"], None,
                             f"min {result['floor_min']:.2f}, max {result['floor_max']:.2f}; "
                             f"host / floor {result['host'] / result['floor']:.3f}"))
                continue
            result = method_overhead.measure(plugin, settings, epochs=args.epochs, repeats=args.repeats, report=quiet)
            rows.append((f"`{result['label']}` step / `none` step", result["ratio"], goal,
                         f"min {result['min']:.2f}, max {result['max']:.2f}"))
        if args.blocks:
            for plugin, settings, goal in METHOD_GOALS:
                result = method_overhead.measure_blocks(plugin, settings, blocks=args.blocks, report=quiet)
                rows.append((f"`{result['label']}` step / `none` step, steps interleaved in blocks", result["ratio"],
                             goal, f"min {result['min']:.2f}, max {result['max']:.2f}; {args.blocks} pairs of "
                                   "20-step blocks"))
    rows.extend(read_only_rows())
    rows.append(conv_row(steps=10))
    if not args.skip_demo:
        rows.append(demo_row())
    if not args.skip_suite:
        rows.append(suite_row(args.suite_baseline))
    print("| measure | value | goal | holds | note |")
    print("|---|---:|---:|---|---|")
    for name, value, goal, note in rows:
        holds = "-" if value != value or goal is None else ("yes" if value <= goal else "no")
        print(f"| {name} | {value:.3f} | {'-' if goal is None else f'<= {goal:g}'} | {holds} | {note} |")


if __name__ == "__main__":
    main()
