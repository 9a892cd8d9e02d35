"""Fault injection on one results folder: kill -9 at random moments, two concurrent
writers, corrupt and foreign records; then rerun and verify.

    python tests/perf/faults.py [--kills 10] [--seed 0] [--seeds 3] [--epochs 3]

The matrix (``-p l2 -p wd --task digits-mlp``, ``--seeds`` seeds, ``--epochs`` epochs,
checkpoints every epoch, one thread per process) is first run uninterrupted into a
reference folder. Then, ``--kills`` times: one or two ``benchsuite run`` are started on
the faulty folder, one of them (or both) is killed with SIGKILL after a random delay, and
at random a corrupt record (torn JSON, a JSON list, a record copied under another run's
name, a foreign ``notes.json``, a folder named ``x.json``) is dropped into ``runs/``.
Finally two writers run to completion side by side. It checks that both exit 0, that
every run is stored exactly once (one valid record per run id, none computed twice by the
final writers), that every record equals the uninterrupted run's (status, metrics and
curves without wall times), and that no temporary file or checkpoint is left. Exit 0 when
all holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(results: Path, seeds: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "benchsuite", "run", "-p", "l2", "-p", "wd", "--task", "digits-mlp",
            "--seeds", str(seeds), "--epochs", str(epochs), "--checkpoint-interval", "0", "--threads", "1",
            "-q", "--results", str(results)]


def comparable(record: dict) -> tuple:
    curves = [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]
    return record["status"], json.dumps(record["metrics"], sort_keys=True), json.dumps(curves, sort_keys=True)


def valid_records(results: Path) -> dict[str, dict]:
    from benchsuite.store import Store

    return {r["run_id"]: r for r in Store(results, report=lambda message: None).records()}


def inject(results: Path, rng: random.Random, reference_ids: list[str]) -> str:
    runs = results / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    kind = rng.choice(["torn", "list", "copy", "notes", "folder"])
    target = runs / f"{rng.choice(reference_ids)}.json"
    if kind == "torn":
        target.write_text('{"run_id": "' + target.stem + '", "status": "fin')
    elif kind == "list":
        target.write_text("[1, 2, 3]")
    elif kind == "copy":
        stored = [p for p in runs.glob("*.json") if p.is_file() and p != target]
        if not stored:
            return "nothing to copy yet"
        shutil.copyfile(rng.choice(stored), target)
    elif kind == "notes":
        (runs / "notes.json").write_text('{"title": "my notes"}')
        return "notes.json"
    else:
        (runs / "x.json").mkdir(exist_ok=True)
        return "folder x.json"
    return f"{kind} record at {target.name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", default=None, help="folder to keep the results in (default: a temporary one)")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    root = Path(opts.keep or tempfile.mkdtemp(prefix="benchsuite-faults-"))
    reference, faulty = root / "reference", root / "faulty"

    start = time.perf_counter()
    subprocess.run(command(reference, opts.seeds, opts.epochs), env=ENV, check=True, stdout=subprocess.DEVNULL)
    whole = time.perf_counter() - start
    expected = valid_records(reference)
    print(f"reference: {len(expected)} runs in {whole:.1f} s")

    for kill in range(1, opts.kills + 1):
        writers = [subprocess.Popen(command(faulty, opts.seeds, opts.epochs), env=ENV, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(rng.choice([1, 2]))]
        delay = rng.uniform(0.5, max(1.0, whole))
        time.sleep(delay)
        victims = writers if rng.random() < 0.5 else writers[:1]
        for proc in victims:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the writer and any worker it has
            except ProcessLookupError:
                pass
        for proc in writers:
            if proc not in victims:
                proc.wait()
        for proc in victims:
            proc.wait()
        note = inject(faulty, rng, sorted(expected)) if rng.random() < 0.6 else "nothing injected"
        stored = len(valid_records(faulty))
        print(f"kill {kill}: {len(writers)} writer(s), {len(victims)} killed after {delay:.2f} s; "
              f"{stored}/{len(expected)} runs stored; {note}")

    pending = len(expected) - len(valid_records(faulty))
    finals = [subprocess.Popen(command(faulty, opts.seeds, opts.epochs), env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate() for proc in finals]
    problems = []
    for proc, (_, err) in zip(finals, outputs):
        if proc.returncode != 0:
            problems.append(f"a final writer exited {proc.returncode}: {err.strip()[-500:]}")
    executed = sum(int(m.group(1)) for out, _ in outputs for m in [re.search(r"(\d+) runs executed", out)] if m)
    if executed != pending:
        problems.append(f"the final writers computed {executed} runs for {pending} pending: some twice")
    got = valid_records(faulty)
    if set(got) != set(expected):
        problems.append(f"stored runs differ: missing {sorted(set(expected) - set(got))}, "
                        f"extra {sorted(set(got) - set(expected))}")
    for run_id in sorted(set(got) & set(expected)):
        if comparable(got[run_id]) != comparable(expected[run_id]):
            problems.append(f"{run_id}: differs from the uninterrupted run")
    files = [p.stem for p in (faulty / "runs").glob("*.json") if p.is_file()]
    left = list((faulty / "runs").glob(".*.tmp")) + list((faulty / "checkpoints").glob("*"))
    if left:
        problems.append(f"left behind: {[p.name for p in left]}")
    corrupt = sorted(p.name for p in (faulty / "runs").glob("*.corrupt"))
    print(f"final: {executed} runs computed by two writers for {pending} pending; {len(got)} valid records "
          f"of {len(expected)}; {len(files)} *.json files; set aside: {', '.join(corrupt) or 'none'}")
    for problem in problems:
        print(f"FAIL: {problem}")
    print("OK: every finished run stored exactly once and equal to an uninterrupted run" if not problems else
          f"{len(problems)} problem(s); results kept in {root}")
    if not problems and not opts.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
