"""``new-plugin``, ``excerpt`` and ``completion``: tools for plugin and README authors."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchsuite.cli.common import add_out_option, add_verbosity_options, note

SHELLS = ("bash", "zsh", "tcsh")


def add_parser(sub) -> None:
    new_plugin = sub.add_parser("new-plugin", help="write a complete plugin package to start from")
    new_plugin.set_defaults(handler=cmd_new_plugin)
    new_plugin.add_argument("name", help="the plugin's name: --plugin NAME, hyperparameters NAME.x")
    add_out_option(new_plugin, "--dir", default=".", metavar="DIR",
                   help="folder to create NAME/ in (default: the current folder)")
    add_verbosity_options(new_plugin)

    excerpt = sub.add_parser("excerpt", help="rewrite the report excerpts between markers in Markdown files")
    excerpt.set_defaults(handler=cmd_excerpt)
    excerpt.add_argument("files", nargs="+", metavar="FILE", help="Markdown files with benchsuite:verdicts or "
                                                                  "benchsuite:leaderboard blocks")
    excerpt.add_argument("--reports", default="reports", help="reports folder (default ./reports)")
    excerpt.add_argument("--check", action="store_true", help="change nothing; exit 1 when an excerpt is stale")
    add_verbosity_options(excerpt, quiet_help="no line per file rewritten (with --check the stale files are "
                                              "still listed)")

    completion = sub.add_parser("completion", help="print the shell completion script (see docs/usage.md)")
    completion.set_defaults(handler=cmd_completion)
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or tcsh")
    add_verbosity_options(completion)


def cmd_new_plugin(args) -> int:
    from benchsuite.plugins.scaffold import create

    folder = create(args.name, Path(args.out))
    note(args, f"wrote {folder}/: pyproject.toml, benchsuite_{args.name}.py, README.md, tests/test_{args.name}.py\n"
               f"next: pip install -e {folder} && pytest {folder}/tests  (then `benchsuite plugins` lists it)")
    return 0


def cmd_excerpt(args) -> int:
    from benchsuite import api

    stale = api.update_excerpts(args.files, args.reports, check=args.check)
    for path in stale:
        if args.check:
            print(f"stale: {path}")
        else:
            note(args, f"updated: {path}")
    return 1 if stale and args.check else 0


def cmd_completion(args) -> int:
    """Print the completion script of ``args.shell`` for every command and option: a
    path option completes files or folders as its metavar (FILE, DIR) or its name says."""
    import shtab

    parser = args.build_parser()
    files = {"matrix", "reference", "files"}
    folders = {"results", "tasks_dir", "data_dir", "references", "reports"}
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in commands.choices.values():
        for action in command._actions:
            if action.metavar == "FILE" or action.dest in files:
                action.complete = shtab.FILE
            elif action.metavar == "DIR" or action.dest in folders:
                action.complete = shtab.DIRECTORY
    print(shtab.complete(parser, shell=args.shell))
    return 0

