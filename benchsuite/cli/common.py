"""What several commands share: the results folder, number parsing, statistics options."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchsuite.api.common import RESAMPLES  # light: no scipy to parse a command line
from benchsuite.errors import UsageError
from benchsuite.store.status import STATUS_FINISHED

DEFAULT_RESULTS = "results"


RESULTS_HELP = f"results folder (default ./{DEFAULT_RESULTS} or $BENCHSUITE_RESULTS)"


PROGRESS_HELP = ("no progress on stderr (default: a live bar on a terminal; elsewhere, e.g. in CI logs, one line "
                 "per finished run with an ETA, the mean seconds per run x the runs left / --jobs, and a line at "
                 "the end of an epoch when 30 s passed without one)")
QUIET_HELP = "print only the output asked for, warnings and errors: no notes on what was written or what to do next"
VERBOSE_HELP = "also print on stderr the results folder used and, with an error, its Python traceback"
JSON_HELP = "machine-readable output"


def results_dir(args) -> Path:
    if args.results is not None and not args.results.strip():
        raise UsageError("--results: empty folder name")
    return Path(args.results or os.environ.get("BENCHSUITE_RESULTS") or DEFAULT_RESULTS)


# --- the options every command spells the same way ------------------------------------------

def add_results_option(parser, *, must_exist: bool = False) -> None:
    """``--results`` with one help everywhere. ``must_exist``: the command only reads the
    folder, so a missing one is bad input (:func:`check_results_folder`), not an empty folder."""
    parser.add_argument("--results", default=None, help=RESULTS_HELP)
    if must_exist:
        parser.set_defaults(reads_results=True)


def check_results_folder(args) -> None:
    """Exit 2 (one line naming the folder) when a command that only reads a results folder
    is given one that does not exist: a typo in --results must not read as "no runs"."""
    if getattr(args, "reads_results", False):
        folder = results_dir(args)
        if not folder.is_dir():
            raise UsageError(f"no results folder at {folder} (give --results DIR or set $BENCHSUITE_RESULTS)")


def add_data_cache_options(parser) -> None:
    """``--cache-dir DIR`` and ``--no-data-cache`` (read by ``defaults.data_options``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="folder of the cache of generated data (MNIST-1D, digits, mnist5k), shared by every "
                            "process; default $BENCHSUITE_CACHE_DIR, else $XDG_CACHE_HOME/benchsuite, else "
                            "~/.cache/benchsuite")
    group.add_argument("--no-data-cache", action="store_true",
                       help="generate the data in every process, reading and writing no data cache")


def add_json_option(parser, help: str = JSON_HELP) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_out_option(parser, *old_spellings: str, metavar: str, help: str, default=None) -> None:
    """``-o/--out``: the file or folder a command writes. ``old_spellings`` keep working for
    one release, hidden from --help, with a notice on stderr (:class:`DeprecatedOption`)."""
    parser.add_argument("-o", "--out", default=default, metavar=metavar, help=help)
    for spelling in old_spellings:
        parser.add_argument(spelling, dest="out", metavar=metavar, action=DeprecatedOption, replacement="-o/--out")


def add_verbosity_options(parser, quiet_help: str = QUIET_HELP) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, one or the other."""
    either = parser.add_mutually_exclusive_group()
    either.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    either.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)


def deprecation_notice(parser, old: str, new: str) -> None:
    print(f"{parser.prog}: warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


class DeprecatedOption(argparse.Action):
    """An old spelling of an option: hidden from --help, it stores its value where the new
    spelling (``replacement``) does and says on stderr that it is deprecated."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None):
        deprecation_notice(parser, option_string, self.replacement)
        setattr(namespace, self.dest, values)


def note(args, text: str, stream=None) -> None:
    """A line saying what a command did (what it wrote), which ``-q`` silences."""
    if not getattr(args, "quiet", False):
        print(text, file=stream if stream is not None else sys.stdout)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed_count(text: str) -> int | tuple[int, int, int]:
    """``N`` (a count) or sequential seeds ``MIN:MAX[:BATCH]`` as (min, max, batch)."""
    from benchsuite.runs.sequential import parse_schedule

    try:
        schedule = parse_schedule(text, "--seeds")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return positive_int(text) if schedule is None else schedule


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative seeds, got {text!r}")
    return seeds




def statistics_options(parser) -> None:
    parser.add_argument("--baseline", default="none", metavar="METHOD[,METHOD...]",
                        help="method every other is compared with (default none); a comma-separated list "
                             "(none,l2,wd) compares every method with each, all tests in one Holm family per task, "
                             "one leaderboard table per baseline")
    parser.add_argument("--alpha", type=probability, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                        help="margin of equivalence, absolute (accuracy=0.005) or relative to the baseline "
                             "(mse=2%%); defaults accuracy=0.005, mse=2%%")
    parser.add_argument("--resamples", "--bootstrap", dest="bootstrap", type=positive_int, default=RESAMPLES,
                        metavar="N", help="Monte Carlo draws of Friedman's permutation test when it is too large to "
                                          f"enumerate (default {RESAMPLES:,}, the draws of the sign-flip and unpaired "
                                          "permutation tests; at least 1,000)")
    parser.add_argument("--resample-seed", "--bootstrap-seed", dest="bootstrap_seed", type=int, default=0,
                        help="seed of those draws (default 0)")
    parser.add_argument("--references", action="append", default=None, metavar="DIR",
                        help="folder of paper reference numbers (*.paper.toml; default tasks/matrices)")


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {text!r}") from None
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {value}")
    return value


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def analysis_options(args) -> dict:
    """The statistics options of ``report`` and ``leaderboard`` as the API's settings."""
    return {"baseline": args.baseline, "alpha": args.alpha, "margins": args.margin, "resamples": args.bootstrap,
            "resample_seed": args.bootstrap_seed, "references": args.references}


def exit_code(specs, records, allow_failures: bool) -> int:
    """0 when every run finished; else 1 (with what was lost on stderr) unless allowed."""
    lost = {}
    for spec, record in zip(specs, records):
        status = record["status"] if record is not None else "not stored"
        if status != STATUS_FINISHED:
            lost.setdefault(status, []).append(f"{spec.task.name} {spec.method.label} seed={spec.seed}")
    if not lost:
        return 0
    for status, names in sorted(lost.items()):
        shown = "; ".join(names[:5]) + (f"; ... ({len(names) - 5} more)" if len(names) > 5 else "")
        print(f"{len(names)} run(s) {status}: {shown}", file=sys.stderr)
    if allow_failures:
        return 0
    print("exit code 1: some runs were lost (see `benchsuite results`); pass --allow-failures to exit 0",
          file=sys.stderr)
    return 1
