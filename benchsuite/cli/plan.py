"""``benchsuite plan``: seeds needed to detect an effect."""

from __future__ import annotations

import json

from benchsuite.cli.common import (
    add_json_option,
    add_results_option,
    add_verbosity_options,
    positive_int,
    probability,
    results_dir,
)


def add_parser(sub) -> None:
    plan = sub.add_parser("plan", help="seeds needed to detect an effect, from the noise of stored runs")
    plan.set_defaults(handler=cmd_plan)
    add_results_option(plan, must_exist=True)
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
    add_json_option(plan)
    add_verbosity_options(plan)


def cmd_plan(args) -> int:
    from benchsuite import api, stats
    from benchsuite.report.plan import plan_lines

    rows = api.plan_seeds(results_dir(args), args.effect, methods=args.methods, configurations=args.configurations,
                          power=args.power, alpha=args.alpha, baseline=args.baseline, task=args.task)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        effect = stats.Margin.parse(args.effect)  # valid: plan_seeds parsed it
        print("\n".join(plan_lines(rows, effect, args.methods, args.configurations)))
    return 0

