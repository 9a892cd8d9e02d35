"""Executors: how a list of runs gets executed and stored.

``run_all`` runs sequentially in this process. Finished runs found in the store are
skipped, failed ones retried; each record is stored the moment its run ends, so an
interrupted matrix loses at most the run in progress.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from tqdm import tqdm

from benchsuite.engine import ExecutionOptions, RunSpec, execute
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
) -> Outcome:
    """Run every spec not yet done. Each run checkpoints to
    ``<results>/checkpoints/<run_id>.pt`` and resumes from it after a kill; the checkpoint
    is removed once the run's record is stored."""
    options = options or ExecutionOptions()
    store.clean_partial()
    pending = [spec for spec in specs if not store.is_done(spec.run_id)]
    pending_ids = {spec.run_id for spec in pending}
    skipped = [spec.run_id for spec in specs if spec.run_id not in pending_ids]
    executed: list[dict] = []
    # On a terminal: a live bar with the current run's epoch. Elsewhere (CI logs, pipes):
    # one line per finished run instead of carriage-return noise.
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

            checkpoint = store.checkpoint_path(spec.run_id)
            record = execute(spec, device=device, available=available, on_epoch=on_epoch if live else None,
                             options=dataclasses.replace(options, checkpoint=checkpoint))
            store.put(record)
            checkpoint.unlink(missing_ok=True)
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


def _outcome(record: dict) -> str:
    status = record["status"]
    if status == "finished":
        metric = record["task_spec"]["eval"]["metric"]
        return f"test_{metric}={record['metrics'][f'test_{metric}']:.4g} ({record['timings']['total_seconds']:.1f}s)"
    if status == "diverged":
        where = record["diverged"]
        return f"diverged ({where['where']} at epoch {where['epoch']}, step {where['step']})"
    return f"failed ({record.get('error')})"
