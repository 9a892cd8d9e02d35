"""``benchsuite report`` and ``benchsuite leaderboard``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import benchsuite.cli.defaults as defaults
from benchsuite.cli.common import (
    add_json_option,
    add_out_option,
    add_results_option,
    add_verbosity_options,
    analysis_options,
    deprecation_notice,
    note,
    results_dir,
    statistics_options,
)
from benchsuite.errors import UsageError


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="write the statistics report (Markdown, HTML, CSV, JSON, plots)")
    report.set_defaults(handler=cmd_report)
    add_results_option(report, must_exist=True)
    add_out_option(report, default="reports", metavar="DIR", help="reports folder (default ./reports)")
    report.add_argument("--name", default="latest", help="report name: written to <out>/<name>/")
    report.add_argument("--no-plots", action="store_true", help="skip the figures")
    statistics_options(report)
    add_verbosity_options(report)

    board = sub.add_parser("leaderboard", help="print the cross-task leaderboard (for CI)")
    board.set_defaults(handler=cmd_leaderboard)
    add_results_option(board, must_exist=True)
    board.add_argument("--format", choices=("md", "html", "json"), default="md", metavar="{md,html}",
                       action=_Format, help="output format (default md; --json for JSON)")
    add_json_option(board, help="the leaderboard as JSON: every baseline's rows and every per-task verdict")
    add_out_option(board, "--output", metavar="FILE", help="write to FILE instead of stdout")
    board.add_argument("--reference", default=None, metavar="PATH",
                       help="stored reference runs (a results folder or a report's results.csv) to check against")
    board.add_argument("--fail-on-regression", action="store_true",
                       help="exit 1 when a configuration is significantly worse than in --reference")
    statistics_options(board)
    add_verbosity_options(board)


class _Format(argparse.Action):
    """``--format md|html``; ``--format json``, the old spelling of ``--json``, still works
    for one release, with a notice on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values == "json":
            deprecation_notice(parser, "--format json", "--json")
            namespace.json = True
        else:
            setattr(namespace, self.dest, values)


def cmd_report(args) -> int:
    from benchsuite import api

    folder = api.write_report(results_dir(args), args.out, args.name, plots=not args.no_plots,
                              tasks_dirs=defaults.task_dirs(()), data_dir=defaults.data_dir(None),
                              verify_data=defaults.verify_data(), **analysis_options(args))
    note(args, f"wrote {folder}/index.md, index.html, stats.json, results.csv")
    return 0


def cmd_leaderboard(args) -> int:
    import polars as pl

    from benchsuite import api
    from benchsuite.api.reading import analysis_options as analysis_settings
    from benchsuite.report.analysis import read_runs_table, regressions
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import leaderboard

    settings = analysis_options(args)
    margins = analysis_settings(**settings)["margins"]  # bad settings first, as they are checked
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
    text = leaderboard(analysis, "json" if args.json else args.format)
    if args.out:
        Path(args.out).write_text(text)
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

