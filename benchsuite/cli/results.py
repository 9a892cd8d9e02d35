"""``benchsuite results`` and ``benchsuite prune``: the stored runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchsuite.cli.common import (
    add_json_option,
    add_out_option,
    add_results_option,
    add_verbosity_options,
    note,
    results_dir,
)
from benchsuite.errors import UsageError


def add_parser(sub) -> None:
    results = sub.add_parser("results", help="show stored runs as a table")
    results.set_defaults(handler=cmd_results)
    add_results_option(results, must_exist=True)
    results.add_argument("--task", default=None, help="only this task")
    results.add_argument("--method", default=None, help="only this method (e.g. l2)")
    add_out_option(results, "--export", metavar="FILE", help="write the table to FILE (.csv or .parquet)")
    results.add_argument("--summary", action="store_true",
                         help="mean ± std per task, configuration and role of its seeds (report or tuning) "
                              "instead of runs")
    results.add_argument("--metric", choices=("both", "val", "test"), default="both",
                         help="with --summary: which values to show (val: validation alone, e.g. to choose a search "
                              "space without looking at test values; default both)")
    add_json_option(results, help="every column of every run as JSON rows")
    results.add_argument("--wide", action="store_true",
                         help="every column (task spec, hyperparameters, timings, ...), not the terminal-wide view")
    add_verbosity_options(results)

    prune = sub.add_parser("prune", help="move runs superseded by newer plugin versions out of the results folder's "
                                          "runs/ into superseded/ (kept, not deleted)")
    prune.set_defaults(handler=cmd_prune)
    add_results_option(prune, must_exist=True)
    prune.add_argument("--dry-run", action="store_true", help="list what would move, move nothing")
    add_verbosity_options(prune)


def _filtered_table(args):
    import polars as pl

    from benchsuite import api

    table = api.open_results(results_dir(args))
    if args.task:
        table = table.filter(pl.col("task") == args.task)
    if getattr(args, "method", None):
        table = table.filter(pl.col("method") == args.method)
    return table


def cmd_prune(args) -> int:
    """Every statistic already leaves superseded runs out; this tidies the folder, so that
    ``results`` and ``results.csv`` show only the runs the statistics count."""
    from benchsuite import api
    from benchsuite.report.summary import versions_text

    pruned = api.prune(results_dir(args), dry_run=args.dry_run)
    for row in pruned.groups:
        print(f"{row['runs']} of {row['method']} on {row['task']}: {versions_text(row['versions'])} "
              f"(newer: {versions_text(row['newer'])})")
    if args.dry_run:
        print(f"would move {len(pruned.run_ids)} superseded runs to {pruned.folder}/ (--dry-run: moved none)")
        return 0
    busy = len(pruned.run_ids) - len(pruned.moved)
    print(f"moved {len(pruned.moved)} superseded runs to {pruned.folder}/"
          + (f"; {busy} left in place (held by a running process, or gone)" if busy else ""))
    return 0


def cmd_results(args) -> int:
    import polars as pl

    from benchsuite.report.summary import run_lines, summary, summary_lines, superseded_runs

    table = _filtered_table(args)
    if args.out:
        path = Path(args.out)
        if path.suffix == ".csv":
            table.write_csv(path)
        elif path.suffix == ".parquet":
            table.write_parquet(path)
        else:
            raise UsageError(f"--out {args.out!r}: use a .csv or .parquet file name")
        note(args, f"wrote {len(table)} runs to {path}")
        return 0
    if args.summary:
        from benchsuite.report.summary import with_config_columns
        from benchsuite.runs.tuning import read_studies

        journals = read_studies(results_dir(args))  # the task labels the report gives
        print("\n".join(summary_lines(summary(table, with_config_columns(table, journals)), args.metric)))
        left_out = superseded_runs(table)
        if left_out:
            print(f"left out: {sum(row['runs'] for row in left_out)} runs superseded by newer plugin versions "
                  "of their configuration (`benchsuite report` lists them, `benchsuite prune` moves them out)")
        return 0
    if args.json:
        print(json.dumps(table.to_dicts(), indent=1))
        return 0
    if args.wide:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
            print(table.drop("run_id", "method", "error") if not table.is_empty() else "no runs")
        return 0
    print("\n".join(run_lines(table, shutil.get_terminal_size((80, 24)).columns)))
    return 0

