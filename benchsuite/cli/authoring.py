"""``new-plugin``, ``excerpt`` and ``completion``: tools for plugin and README authors."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchsuite.errors import UsageError

SHELLS = ("bash", "zsh", "tcsh")


def cmd_new_plugin(args) -> int:
    from benchsuite.plugins.scaffold import create

    folder = create(args.name, Path(args.dir))
    print(f"wrote {folder}/: pyproject.toml, benchsuite_{args.name}.py, README.md, tests/test_{args.name}.py\n"
          f"next: pip install -e {folder} && pytest {folder}/tests  (then `benchsuite plugins` lists it)")
    return 0


def cmd_excerpt(args) -> int:
    from benchsuite.report.excerpts import update_files

    paths = [Path(f) for f in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    try:
        stale = update_files(paths, Path(args.reports), check=args.check)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if stale and args.check else 0


def cmd_completion(args) -> int:
    """Print the completion script of ``args.shell`` for every command and option."""
    import shtab

    parser = args.build_parser()
    files = {"matrix", "export", "output", "reference", "files"}
    folders = {"results", "tasks_dir", "data_dir", "out", "dir", "references", "reports"}
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in commands.choices.values():
        for action in command._actions:
            if action.dest in files:
                action.complete = shtab.FILE
            elif action.dest in folders:
                action.complete = shtab.DIRECTORY
    print(shtab.complete(parser, shell=args.shell))
    return 0

