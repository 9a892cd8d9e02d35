"""``benchsuite plugins`` and ``benchsuite tasks``: what is installed and what can run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import benchsuite.cli.defaults as defaults
from benchsuite.cli.common import add_json_option, add_verbosity_options, note


def add_parser(sub) -> None:
    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.set_defaults(handler=cmd_plugins)
    add_json_option(plugins)
    add_verbosity_options(plugins)

    tasks = sub.add_parser("tasks", help="list available tasks")
    tasks.set_defaults(handler=cmd_tasks)
    add_json_option(tasks)
    tasks.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    tasks.add_argument("--data-dir", default=None, metavar="DIR",
                       help="folder of the real data sets to check (default $BENCHSUITE_DATA, else ./data)")
    add_verbosity_options(tasks)


def plugin_problems(available) -> None:
    """Broken or conflicting plugins (skipped) and hooks lacking @hookimpl, on stderr."""
    from benchsuite.api.common import plugin_warnings

    for line in plugin_warnings(available):
        print(line, file=sys.stderr)


def cmd_plugins(args) -> int:
    from benchsuite import api

    available = api.list_plugins()
    plugin_problems(available)
    described = [info.describe() for info in sorted(available.values(), key=lambda i: i.name)]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for d in described:
        print(f"{d['name']} {d['version']}  ({d['distribution']})")
        if d["description"]:
            print(f"  {d['description']}")
        print(f"  hooks: {', '.join(d['hooks']) or '-'}")
        for hp in d["hyperparameters"]:
            searched = f", search {hp['search_text']}" if hp["search_text"] else ""
            print(f"  {d['name']}.{hp['name']}: {hp['type']} = {hp['default']!r}, range {hp['range']}{searched}  "
                  f"{hp['help']}")
        if d["citation"]:
            print(f"  cite: {d['citation']}")
    return 0


def _data_needs(source: str, root: Path) -> dict:
    """What a task's data source needs: nothing (offline), or files in the data folder."""
    from benchsuite.tasks import real_data

    if source not in real_data.DATASETS:
        return {"offline": True, "ready": True, "needs": "nothing (offline)"}
    problems = real_data.check(source, root, defaults.verify_data())
    return {"offline": False, "ready": not problems, "data_dir": str(root),
            "needs": f"{source} in {root}" + (": ready" if not problems else f": missing ({len(problems)} problem(s))"),
            "problems": problems}


def cmd_tasks(args) -> int:
    from benchsuite import api
    from benchsuite.tasks import registry

    folders = defaults.task_dirs(args.tasks_dir)
    specs = api.list_tasks(folders)
    paths = registry(folders)
    root = defaults.data_dir(args.data_dir)
    needs = {s.data.source: _data_needs(s.data.source, root) for s in specs}
    if args.json:
        print(json.dumps([{**s.to_dict(), "file": str(paths[s.name]), "data": {**s.to_dict()["data"],
                           **needs[s.data.source]}} for s in specs], indent=2))
        return 0
    for s in specs:
        if s.model.arch == "mlp":
            model = f"mlp {'/'.join(map(str, s.model.sizes))}{' +bn' if s.model.batch_norm else ''}"
        else:
            dropout = f" drop {s.model.dropout:g}" if s.model.dropout else ""
            model = f"{s.model.arch}{' +bn' if s.model.batch_norm else ''}{dropout}"
        train = f"{s.train.optimizer} lr={s.train.lr:g} bs={s.train.batch_size} epochs={s.train.epochs}"
        print(f"{s.name:<24} {model:<28} {train:<36} {s.eval.metric:<8} needs: {needs[s.data.source]['needs']}")
        if s.description:
            print(f"{'':<24} {s.description[:150]}{'...' if len(s.description) > 150 else ''}")
    missing = sorted({src for src, need in needs.items() if not need["ready"]})
    if missing:
        note(args, f"\nData sets not found in {root}: {', '.join(missing)}. Place them there (see "
                   f"`benchsuite run --task <task>` for the exact files and how to get them), or pass --data-dir.")
    return 0

