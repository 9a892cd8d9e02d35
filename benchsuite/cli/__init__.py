"""The ``benchsuite`` command line.

Exit codes: 0 when every requested run finished; 1 when some run is lost (failed,
diverged, or, for ``collect``, ended without a record), unless ``--allow-failures``;
2 for bad input (reported before anything trains) and for files that cannot be read or
written (an OS error, reported as one line).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from benchsuite import __version__
from benchsuite.cli.authoring import SHELLS, cmd_completion, cmd_excerpt, cmd_new_plugin
from benchsuite.cli.claims import add_claims, cmd_claims
from benchsuite.cli.collect import add_collect, cmd_collect
from benchsuite.cli.common import DEFAULT_RESULTS, RESULTS_HELP, positive_int, probability, statistics_options
from benchsuite.cli.listing import cmd_plugins, cmd_tasks
from benchsuite.cli.plan import cmd_plan
from benchsuite.cli.report import cmd_leaderboard, cmd_report
from benchsuite.cli.results import cmd_prune, cmd_results
from benchsuite.cli.run import add_run, cmd_run
from benchsuite.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchsuite",
        description="Benchmark neural-network regularization methods over tasks and seeds.",
    )
    parser.add_argument("--version", action="version", version=f"benchsuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_run(sub)

    add_collect(sub)
    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    tasks = sub.add_parser("tasks", help="list available tasks")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")
    tasks.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    tasks.add_argument("--data-dir", default=None, metavar="DIR",
                       help="folder of the real data sets to check (default $BENCHSUITE_DATA, else ./data)")

    results = sub.add_parser("results", help="show stored runs as a table")
    results.add_argument("--results", default=None, help=RESULTS_HELP)
    results.add_argument("--task", default=None, help="only this task")
    results.add_argument("--method", default=None, help="only this method (e.g. l2)")
    results.add_argument("--export", default=None, metavar="FILE", help="write the table to FILE (.csv or .parquet)")
    results.add_argument("--summary", action="store_true",
                         help="mean ± std per task, configuration and role of its seeds (report or tuning) "
                              "instead of runs")
    results.add_argument("--metric", choices=("both", "val", "test"), default="both",
                         help="with --summary: which values to show (val: validation alone, e.g. to choose a search "
                              "space without looking at test values; default both)")
    results.add_argument("--json", action="store_true", help="every column of every run as JSON rows")
    results.add_argument("--wide", action="store_true",
                         help="every column (task spec, hyperparameters, timings, ...), not the terminal-wide view")

    prune = sub.add_parser("prune", help="move runs superseded by newer plugin versions out of the results folder's "
                                          "runs/ into superseded/ (kept, not deleted)")
    prune.add_argument("--results", default=None, help=RESULTS_HELP)
    prune.add_argument("--dry-run", action="store_true", help="list what would move, move nothing")

    report = sub.add_parser("report", help="write the statistics report (Markdown, HTML, CSV, JSON, plots)")
    report.add_argument("--results", default=None, help=RESULTS_HELP)
    report.add_argument("--out", default="reports", help="reports folder (default ./reports)")
    report.add_argument("--name", default="latest", help="report name: written to <out>/<name>/")
    report.add_argument("--no-plots", action="store_true", help="skip the figures")
    statistics_options(report)

    plan = sub.add_parser("plan", help="seeds needed to detect an effect, from the noise of stored runs")
    plan.add_argument("--results", default=None,
                      help=f"results folder with pilot runs (default ./{DEFAULT_RESULTS} or $BENCHSUITE_RESULTS)")
    plan.add_argument("--effect", required=True, metavar="VALUE",
                      help="smallest difference worth detecting: absolute (0.01) or relative to the baseline (1%%)")
    plan.add_argument("--methods", type=positive_int, default=1, metavar="M",
                      help="methods compared with the baseline per task (Holm over M; default 1)")
    plan.add_argument("--configurations", type=positive_int, default=1, metavar="K",
                      help="configurations per method chosen on the same seeds (alpha / K; default 1; "
                           "use 1 with --tune, whose report seeds are fresh)")
    plan.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    plan.add_argument("--alpha", type=probability, default=0.05, help="significance level (default 0.05)")
    plan.add_argument("--baseline", default="none", help="method compared with (default none)")
    plan.add_argument("--task", default=None, help="only this task")
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    add_claims(sub)

    new_plugin = sub.add_parser("new-plugin", help="write a complete plugin package to start from")
    new_plugin.add_argument("name", help="the plugin's name: --plugin NAME, hyperparameters NAME.x")
    new_plugin.add_argument("--dir", default=".", help="folder to create NAME/ in (default: the current folder)")

    excerpt = sub.add_parser("excerpt", help="rewrite the report excerpts between markers in Markdown files")
    excerpt.add_argument("files", nargs="+", metavar="FILE", help="Markdown files with benchsuite:verdicts or "
                                                                  "benchsuite:leaderboard blocks")
    excerpt.add_argument("--reports", default="reports", help="reports folder (default ./reports)")
    excerpt.add_argument("--check", action="store_true", help="change nothing; exit 1 when an excerpt is stale")

    board = sub.add_parser("leaderboard", help="print the cross-task leaderboard (for CI)")
    board.add_argument("--results", default=None, help=RESULTS_HELP)
    board.add_argument("--format", choices=("md", "html", "json"), default="md", help="output format (default md)")
    board.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE instead of stdout")
    board.add_argument("--reference", default=None, metavar="PATH",
                       help="stored reference runs (a results folder or a report's results.csv) to check against")
    board.add_argument("--fail-on-regression", action="store_true",
                       help="exit 1 when a configuration is significantly worse than in --reference")
    statistics_options(board)
    completion = sub.add_parser("completion", help="print the shell completion script (see docs/usage.md)")
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or tcsh")
    completion.set_defaults(build_parser=build_parser)
    return parser


COMMANDS = {"plan": cmd_plan, "excerpt": cmd_excerpt, "claims": cmd_claims, "new-plugin": cmd_new_plugin,
            "run": cmd_run, "plugins": cmd_plugins, "tasks": cmd_tasks, "results": cmd_results, "prune": cmd_prune,
            "report": cmd_report, "leaderboard": cmd_leaderboard, "collect": cmd_collect, "completion": cmd_completion}


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the command ends as on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals stay as they are
        previous = None
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"benchsuite {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `benchsuite results | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file or folder that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"benchsuite {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(f"\nbenchsuite {args.command}: {what}. Every record already stored is kept; running the same "
              "command again skips those and resumes the others from their last checkpoint.", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def console_main(argv: list[str] | None = None) -> int:
    """The ``benchsuite`` command: :func:`main`, then a quiet exit. A Ctrl-C that comes
    after the command's work, while the interpreter shuts down (joining worker pools and
    queues), ends the process at once with 130 instead of printing a traceback from an
    exit handler; nothing is left to store by then."""
    code = main(argv)

    def quit_now(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, quit_now)
    except ValueError:  # not the main thread
        pass
    return code

