"""``benchsuite plan``: seeds needed to detect an effect."""

from __future__ import annotations

import json

from benchsuite.cli.common import results_dir
from benchsuite.errors import UsageError


def cmd_plan(args) -> int:
    import polars as pl

    from benchsuite import stats
    from benchsuite.report.plan import plan, plan_lines
    from benchsuite.runs.tuning import read_studies
    from benchsuite.store import Store

    try:
        effect = stats.Margin.parse(args.effect)
    except ValueError as exc:
        raise UsageError(f"--effect: {exc}") from None
    if effect.value == 0:
        raise UsageError("--effect must be larger than 0")
    if not 0 < args.power < 1:
        raise UsageError(f"--power must be in (0, 1), got {args.power}")
    store = Store(results_dir(args))
    table = store.table()
    if args.task:
        table = table.filter(pl.col("task") == args.task)
    if table.is_empty():
        raise UsageError(f"no stored runs in {results_dir(args)}"
                         + (f" for task {args.task!r}" if args.task else "")
                         + ": run a pilot first, e.g. `benchsuite run --plugin none --task T --seeds 5`")
    rows = plan(table, effect, methods=args.methods, configurations=args.configurations, power=args.power,
                alpha=args.alpha, baseline=args.baseline, studies=read_studies(store.root))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("\n".join(plan_lines(rows, effect, args.methods, args.configurations)))
    return 0

