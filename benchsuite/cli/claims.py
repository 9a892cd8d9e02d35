"""``benchsuite claims``: the papers' claims, run and tested."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import benchsuite.cli.defaults as defaults
from benchsuite.cli.common import (
    PROGRESS_HELP,
    add_json_option,
    add_out_option,
    add_results_option,
    add_verbosity_options,
    check_results_folder,
    check_task_dirs,
    positive_int,
    probability,
    results_dir,
)
from benchsuite.cli.listing import plugin_problems
from benchsuite.errors import UsageError


def add_parser(sub) -> None:
    claims = sub.add_parser("claims", help="test the plugins' paper claims: run what is missing, print verdicts")
    claims.set_defaults(handler=cmd_claims)
    claims.add_argument("--list", action="store_true", help="list the claims (no runs, no verdicts)")
    add_json_option(claims)
    claims.add_argument("--plugin", "-p", action="append", default=[], metavar="NAME",
                        help="only this plugin's claims (repeatable)")
    claims.add_argument("--claim", action="append", default=[], metavar="ID", help="only this claim (repeatable)")
    claims.add_argument("--tier", choices=("offline", "paper", "all"), default=None,
                        help="offline: data installed packages ship or generate; paper: the papers' real data "
                             "(default: list and judge every claim, run the offline ones and those named by "
                             "--claim)")
    claims.add_argument("--no-run", action="store_true", help="judge what is stored; run nothing")
    add_results_option(claims)
    add_out_option(claims, metavar="DIR", help="also write DIR/index.md, index.html, claims.json and results.csv (one "
                                               "row per run; e.g. reports/claims)")
    claims.add_argument("--alpha", type=probability, default=0.05, help="significance level (default 0.05)")
    claims.add_argument("--jobs", "-j", type=positive_int, default=1, metavar="N", help="runs at a time")
    claims.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    claims.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder of the real data sets (default $BENCHSUITE_DATA, else ./data)")
    claims.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    claims.add_argument("--force", action="store_true",
                        help="rerun the selected claims' runs that are already stored and replace their records")
    add_verbosity_options(claims, quiet_help=PROGRESS_HELP)


def cmd_claims(args) -> int:
    from benchsuite.plugins import discover
    from benchsuite.report import claims as verdicts
    from benchsuite.report import claims_output
    from benchsuite.runs import claims as claim_mod

    check_task_dirs(args.tasks_dir)
    tasks_dirs, data = defaults.task_dirs(args.tasks_dir), defaults.data_options(args)
    available = discover()
    plugin_problems(available)
    found, problems = claim_mod.load_claims(available, args.plugin or None)
    for problem in problems:
        print(f"benchsuite claims: warning: {problem}; its claims are left out", file=sys.stderr)
    selected = claim_mod.select(found, args.claim or None, args.tier or "all")
    if args.list:
        listed = []
        for claim in selected:
            entry = claim.to_dict()
            try:
                entry["runs"] = sum(len(v) for v in claim_mod.run_specs(claim, available, tasks_dirs).values())
            except UsageError as exc:
                entry["runs"], entry["problem"] = 0, str(exc)
            entry["command"] = claim_mod.command(claim)
            listed.append(entry)
        if args.json:
            print(json.dumps(listed, indent=1))
        else:
            for claim, entry in zip(selected, listed):
                compared = f"vs {claim.versus.describe()}" if claim.versus else f"bound {claim.bound:g}"
                print(f"{claim.id}  [{claim.tier}]  {', '.join(claim.tasks)}  {entry['runs']} runs\n"
                      f"  {claim.statement} ({claim.source})\n"
                      f"  {claim.method.describe()} {compared}, {claim.metric} {claim.direction}"
                      + (f"\n  invalid: {entry['problem']}" if "problem" in entry else ""))
        return 0
    from benchsuite.store import Store

    if args.force and args.no_run:
        raise UsageError("--force reruns runs and --no-run runs nothing: give one or the other")
    if args.no_run:  # then it only reads the folder: a typo must not read as "nothing stored"
        args.reads_results = True
        check_results_folder(args)
    store = Store(results_dir(args))
    if not args.no_run:
        _run_claims(args, selected, available, store.root, tasks_dirs, data)
    rows = verdicts.evaluate(selected, store, available, tasks_dirs, alpha=args.alpha, data=data)
    if args.out:
        claims_output.write(rows, Path(args.out), verdicts.run_rows(selected, store, available, tasks_dirs))
        if not args.quiet:
            print(f"wrote {args.out}/index.md, index.html, claims.json, results.csv", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1, allow_nan=False))
    else:
        from benchsuite.report.markup import to_markdown

        print(to_markdown(claims_output.blocks(rows)))
    return 0


def _run_claims(args, selected, available, results, tasks_dirs, data) -> None:
    """Run the missing runs of the offline claims (and of paper claims asked for by
    --claim or --tier paper whose data is present) through :func:`benchsuite.api.run`."""
    from benchsuite import api
    from benchsuite.runs import claims as claim_mod

    specs = {}
    for claim in selected:
        if claim.tier == "paper" and not (args.claim or args.tier == "paper"):
            continue
        try:
            needs = claim_mod.data_problems(claim, tasks_dirs, data)
            groups = claim_mod.run_specs(claim, available, tasks_dirs).values()
        except UsageError as exc:
            print(f"benchsuite claims: {claim.id} not run: {exc}", file=sys.stderr)
            continue
        if needs:
            print(f"benchsuite claims: {claim.id} not run: needs {'; '.join(needs)}", file=sys.stderr)
            continue
        for group in groups:
            specs.update({spec.run_id: spec for spec in group})
    api.run(runs=list(specs.values()), results=results, device=args.device, jobs=args.jobs, force=args.force,
            data_dir=data.data_dir, download=data.download, loader_workers=data.loader_workers,
            verify_data=data.verify, progress=not args.quiet,
            notes=lambda line: print(f"claims: {line}", file=sys.stderr))
