"""``benchsuite claims``: the papers' claims, run and tested."""

from __future__ import annotations

import json
import sys

import benchsuite.cli.defaults as defaults
from benchsuite.api.common import check_task_dirs
from benchsuite.cli.common import (
    PROGRESS_HELP,
    add_data_cache_options,
    add_json_option,
    add_out_option,
    add_results_option,
    add_verbosity_options,
    check_results_folder,
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
    add_data_cache_options(claims)
    claims.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    claims.add_argument("--force", action="store_true",
                        help="rerun the selected claims' runs that are already stored and replace their records")
    add_verbosity_options(claims, quiet_help=PROGRESS_HELP)


def cmd_claims(args) -> int:
    from benchsuite import api
    from benchsuite.plugins import discover
    from benchsuite.report import claims_output
    from benchsuite.runs import claims as claim_mod

    check_task_dirs(args.tasks_dir)
    tasks_dirs, data = defaults.task_dirs(args.tasks_dir), defaults.data_options(args)
    available = discover()
    plugin_problems(available)
    selected = api.list_claims(args.plugin, args.claim, args.tier or "all")
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
    if args.force and args.no_run:
        raise UsageError("--force reruns runs and --no-run runs nothing: give one or the other")
    if args.no_run:  # then it only reads the folder: a typo must not read as "nothing stored"
        args.reads_results = True
        check_results_folder(args)
    judged = api.judge_claims(
        results_dir(args), plugins=args.plugin, ids=args.claim, tier=args.tier, run_missing=not args.no_run,
        force=args.force, alpha=args.alpha, out=args.out, jobs=args.jobs, device=args.device, tasks_dirs=tasks_dirs,
        data_dir=data.data_dir, download=data.download, loader_workers=data.loader_workers, verify_data=data.verify,
        cache_dir=data.cache_dir, progress=not args.quiet,
        notes=lambda line: print(f"benchsuite claims: {line}", file=sys.stderr))
    if judged.folder is not None and not args.quiet:
        print(f"wrote {args.out}/index.md, index.html, claims.json, results.csv", file=sys.stderr)
    if args.json:
        print(json.dumps(judged.rows, indent=1, allow_nan=False))
    else:
        from benchsuite.report.markup import to_markdown

        print(to_markdown(claims_output.blocks(judged.rows)))
    return 0
