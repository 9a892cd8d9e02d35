"""``benchsuite report`` and ``benchsuite leaderboard``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import benchsuite.cli.defaults as defaults
from benchsuite.cli.common import analysis_options, results_dir
from benchsuite.errors import UsageError


def cmd_report(args) -> int:
    from benchsuite import api

    folder = api.write_report(results_dir(args), args.out, args.name, plots=not args.no_plots,
                              tasks_dirs=defaults.task_dirs(()), data_dir=defaults.data_dir(None),
                              verify_data=defaults.verify_data(), **analysis_options(args))
    print(f"wrote {folder}/index.md, index.html, stats.json, results.csv")
    return 0


def cmd_leaderboard(args) -> int:
    import polars as pl

    from benchsuite import api
    from benchsuite.report.analysis import read_runs_table, regressions
    from benchsuite.report.render import leaderboard, to_markdown

    settings = analysis_options(args)
    margins = api.analysis_options(**settings)["margins"]  # bad settings first, as they are checked
    if args.fail_on_regression and not args.reference:
        raise UsageError("--fail-on-regression needs --reference (the stored runs to compare with)")
    reference = None
    if args.reference:
        try:
            reference = read_runs_table(Path(args.reference))
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise UsageError(f"--reference {args.reference!r}: {exc}") from None
    results = results_dir(args)
    analysis = api.analyze(results, **settings)
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
    checked = regressions(api.open_results(results), reference, margins=margins, alpha=args.alpha)
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

