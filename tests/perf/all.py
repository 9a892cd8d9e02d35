"""Every performance goal in one table, measured side by side in one run.

    python tests/perf/all.py [--epochs 2] [--repeats 3] [--blocks 20] [--threads 1] [--skip-methods]

Rows (each a median of interleaved repeats, on this machine, now):

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
* the convolutional loop: on a CUDA machine ``gpu.py`` is the command (it needs minutes and
  is run on its own); without one, the engine against the hand loop on a tiny conv model with
  synthetic data (``gpu.py --cpu-dry-run``), the same comparison at CPU scale.

Prints the date, the machine and one Markdown table with each goal and whether it holds.
"""

from __future__ import annotations

import argparse
import datetime
import io
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

# (method, settings, goal): the table; lpwd, wd and wn keep their cost
METHOD_GOALS = [
    ("l1", (), 1.08), ("l2", (), 1.08), ("wd", (), 1.02), ("lpwd", (), 1.10), ("wn", (), 1.05),
    ("wc", (), 1.4), ("pp", (), 1.4), ("gcsr", (), 1.25), ("gcsr", ("gcsr.mode=always",), 1.25),
    ("partialreg", (), 1.15), ("dipr", (), 2.0),
]
READ_ONLY_GOAL = 1.0


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
    parser.add_argument("--blocks", type=int, default=20,
                        help="pairs of 20-step blocks per method for the step-interleaved rows (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = environment(torch.device("cpu"))
    print(f"# benchsuite performance, {datetime.date.today().isoformat()}")
    print(f"{env['cpu']}, {env['cores']} cores, {args.threads} thread(s); torch {torch.__version__}, "
          f"Python {platform.python_version()}; epochs {args.epochs}, repeats {args.repeats}\n", flush=True)
    quiet = lambda line: print(f"  {line}", file=sys.stderr, flush=True)  # noqa: E731
    rows = []
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
    print("| measure | value | goal | holds | note |")
    print("|---|---:|---:|---|---|")
    for name, value, goal, note in rows:
        holds = "-" if value != value or goal is None else ("yes" if value <= goal else "no")
        print(f"| {name} | {value:.3f} | {'-' if goal is None else f'<= {goal:g}'} | {holds} | {note} |")


if __name__ == "__main__":
    main()
