"""The ``benchsuite`` command line.

Exit codes: 0 when every requested run finished; 1 when some run is lost (failed,
diverged, or, for ``collect``, ended without a record), unless ``--allow-failures``;
2 for bad input (reported before anything trains; a results folder that a reading
command is given and that does not exist is bad input) and for files that cannot be read
or written (an OS error, reported as one line). A bare ``benchsuite`` prints the help and
exits 0.

Every command spells its options the same way (``benchsuite.cli.common``): ``--json`` for
machine output, ``-o/--out`` for the file or folder it writes, ``-q/--quiet`` and
``-v/--verbose``, ``--results`` with one help. Old spellings stay for one release, hidden,
with a notice on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

from benchsuite.cli import authoring, claims, collect, listing, plan, report, results, run
from benchsuite.cli.authoring import SHELLS  # noqa: F401 (the completion test names the shells from here)
from benchsuite.cli.common import check_results_folder, results_dir
from benchsuite.errors import UsageError, print_warning, warnings_to
from benchsuite.plugins import version_text

# Command name -> the module that owns it: its ``add_parser(sub)`` adds the parser of each
# of its commands with the function that runs it (the ``handler`` default). A module with
# several commands is listed once per command; the order is that of ``benchsuite --help``.
COMMAND_MODULES = {
    "run": run, "collect": collect, "plugins": listing, "tasks": listing, "results": results, "prune": results,
    "report": report, "leaderboard": report, "plan": plan, "claims": claims, "new-plugin": authoring,
    "excerpt": authoring, "completion": authoring,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchsuite",
        description="Benchmark neural-network regularization methods over tasks and seeds. Every command takes "
                    "-q/--quiet and -v/--verbose, --json where it has machine output, -o/--out for a path it "
                    "writes and --results for the results folder it uses.",
    )
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the package version and the results format version (of stored runs) and exit")
    sub = parser.add_subparsers(dest="command")
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        module.add_parser(sub)
    sub.choices["completion"].set_defaults(build_parser=build_parser)
    return parser


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the command ends as on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `benchsuite`: what it can do, which is not an error
        parser.print_help()
        return 0
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals stay as they are
        previous = None
    try:
        check_results_folder(args)
        if args.verbose and hasattr(args, "results"):
            print(f"benchsuite {args.command}: results folder {results_dir(args)}", file=sys.stderr)
        with warnings_to(print_warning):  # the API's warnings as the command line's lines on stderr
            return args.handler(args)
    except UsageError as exc:
        _traceback_if_verbose(args)
        print(f"benchsuite {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `benchsuite results | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file or folder that cannot be read or written
        _traceback_if_verbose(args)
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


def _traceback_if_verbose(args) -> None:
    if args.verbose:
        traceback.print_exc(file=sys.stderr)


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

