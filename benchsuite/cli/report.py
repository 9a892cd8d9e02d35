"""``benchsuite report`` and ``benchsuite leaderboard``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchsuite.cli.common import analysis_options, results_dir
from benchsuite.errors import UsageError


def cmd_report(args) -> int:
    from benchsuite.report.publish import write_report
    from benchsuite.store import Store

    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UsageError(f"--name {args.name!r}: use a plain folder name")
    options = analysis_options(args)
    folder = write_report(Store(results_dir(args)), Path(args.out), args.name, plots=not args.no_plots, **options)
    print(f"wrote {folder}/index.md, index.html, stats.json, results.csv")
    return 0


def cmd_leaderboard(args) -> int:
    import polars as pl

    from benchsuite.report.analysis import analyze, read_runs_table, regressions
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import leaderboard
    from benchsuite.runs.sequential import read_plan
    from benchsuite.runs.tuning import read_studies
    from benchsuite.store import Store

    options = analysis_options(args)
    if args.fail_on_regression and not args.reference:
        raise UsageError("--fail-on-regression needs --reference (the stored runs to compare with)")
    reference = None
    if args.reference:
        try:
            reference = read_runs_table(Path(args.reference))
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise UsageError(f"--reference {args.reference!r}: {exc}") from None
    store = Store(results_dir(args))
    table = store.table()
    analysis = analyze(table, studies=read_studies(store.root), sequential=read_plan(store.root), **options)
    text = leaderboard(analysis, args.format)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a") as fh:
            fh.write(leaderboard(analysis, "md") + "\n")
    if reference is None:
        return 0
    checked = regressions(table, reference, margins=options["margins"], alpha=args.alpha)
    worse = [r for r in checked if r["regression"]]
    lines = [f"regression check: {len(checked)} configuration(s) compared with {args.reference}, "
             f"{len(worse)} significantly worse"]
    for r in worse:
        lines.append(f"  WORSE {r['task']}  {r['configuration']}: {r['diff']:+.4g} "
                     f"[{r['ci_low']:+.4g}, {r['ci_high']:+.4g}], p (Holm) {r['p_holm']:.3g}")
    print("\n".join(lines), file=sys.stderr)
    if summary_path:
        with open(summary_path, "a") as fh:
            fh.write(to_markdown([]) + "\n".join(f"- {line.strip()}" for line in lines) + "\n")
    return 1 if worse and args.fail_on_regression else 0

