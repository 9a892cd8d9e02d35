"""The ``benchsuite`` command line.

Exit codes: 0 when every requested run finished; 1 when some run is lost (failed,
diverged, or, for ``collect``, ended without a record), unless ``--allow-failures``;
2 for bad input (reported before anything trains) and for files that cannot be read or
written (an OS error, reported as one line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from benchsuite import __version__
from benchsuite.errors import UsageError
from benchsuite.store.status import STATUS_FINISHED
from benchsuite.tasks.spec import VARIABLE_SOURCES

DEFAULT_RESULTS = "results"
RESULTS_HELP = f"results folder (default ./{DEFAULT_RESULTS} or $BENCHSUITE_RESULTS)"
PROGRESS_HELP = ("no progress on stderr (default: a live bar on a terminal; elsewhere, e.g. in CI logs, one line "
                 "per finished run with an ETA, the mean seconds per run x the runs left / --jobs, and a line at "
                 "the end of an epoch when 30 s passed without one)")
VARY_HELP = ("what each seed varies beyond initialization, data order and plugin randomness: `split` draws each "
             "seed's own train/val/test split (and generated data's sample), shared by every method of that seed; "
             "overrides the tasks and a matrix file")
SHELLS = ("bash", "zsh", "tcsh")
DEFAULT_TUNING_SEEDS = 2  # benchsuite.runs.tuning's, not imported: `benchsuite --help` stays light


def _results_dir(args) -> Path:
    if args.results is not None and not args.results.strip():
        raise UsageError("--results: empty folder name")
    return Path(args.results or os.environ.get("BENCHSUITE_RESULTS") or DEFAULT_RESULTS)


def _check_task_dirs(folders) -> None:
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"--tasks-dir {folder!r}: no such folder")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed_count(text: str) -> int | tuple[int, int, int]:
    """``N`` (a count) or sequential seeds ``MIN:MAX[:BATCH]`` as (min, max, batch)."""
    from benchsuite.runs.sequential import parse_schedule

    try:
        schedule = parse_schedule(text, "--seeds")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return _positive_int(text) if schedule is None else schedule


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative seeds, got {text!r}")
    return seeds


def _add_seed_options(group) -> None:
    group.add_argument("--seeds", type=_seed_count, default=None, metavar="N|MIN:MAX[:BATCH]",
                       help="run seeds 0..N-1 (default 5, or the matrix file's); MIN:MAX[:BATCH] (e.g. 5:20) runs "
                            "seeds 0..MIN-1, then BATCH (default MIN) more at a time only for the comparisons with "
                            "the baseline still undecided, up to MAX, by a group-sequential rule that keeps the "
                            "false-verdict rate at alpha (README, Statistics); a rerun continues where it stopped")
    group.add_argument("--spending", choices=("pocock", "obrien-fleming"), default=None,
                       help="with sequential --seeds: how alpha is spent over the looks (default pocock: nearly "
                            "even; obrien-fleming: little early, most at MAX)")


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="train every (task, method, seed) and store the results")
    what = run.add_argument_group("what to run")
    how = run.add_argument_group("how to run it")
    cluster = run.add_argument_group("cluster (--executor slurm|local|debug)")
    output = run.add_argument_group("output and exit code")
    what.add_argument("--plugin", "-p", action="append", default=[], metavar="NAME",
                      help="method to benchmark; repeat for several methods, join with + to combine "
                           "plugins in one method (e.g. wc+lpwd)")
    what.add_argument("--task", "-t", action="append", default=[], metavar="NAME",
                      help="task name (see `benchsuite tasks`) or path of a task file; repeatable, comma-separated")
    what.add_argument("--matrix", "-m", default=None, metavar="FILE",
                      help="run the matrix file (tasks/matrices/*.toml) instead of --plugin/--task")
    _add_seed_options(what)
    what.add_argument("--seed", type=_seed_list, default=None, metavar="S[,S...]",
                      help="explicit seeds instead of --seeds")
    what.add_argument("--set", action="append", default=[], metavar="PLUGIN.NAME=VALUE", help="fix a hyperparameter")
    what.add_argument("--grid", action="append", default=[], metavar="PLUGIN.NAME=V1,V2,...",
                      help="sweep a hyperparameter: one method per value")
    what.add_argument("--no-baseline", action="store_true", help="do not add the `none` baseline")
    what.add_argument("--replicate", default="", metavar="NAME",
                      help="salt every random stream of the selected methods with NAME: `--plugin none --replicate "
                           "aa` runs `none@aa` beside `none`, an A/A check (part of the runs' identity)")
    what.add_argument("--tune", type=int, default=None, metavar="K",
                      help="tune every method, the baseline included, with the same K trial configurations per "
                           "task (its default, then quasirandom points of its search space) on tuning seeds, then "
                           "run the trial best on validation on the report seeds (--seeds); reports test those "
                           "alone (default: the matrix file's [tuning] budget, else no tuning)")
    what.add_argument("--tune-seeds", type=int, default=None, metavar="N",
                      help=f"tuning seeds per trial (default: the matrix file's, else {DEFAULT_TUNING_SEEDS})")
    what.add_argument("--space", action="append", default=[], metavar="PLUGIN.NAME=SPACE",
                      help="search this hyperparameter (or train.lr, train.weight_decay, train.momentum: then for "
                           "every method) over SPACE: log:LOW:HIGH, linear:LOW:HIGH, int:LOW:HIGH, intlog:LOW:HIGH "
                           "or choices:A,B,...; replaces the plugin's declared space (repeatable)")
    what.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                      help="override a [train] value of every task, e.g. weight_decay=0 or optimizer=sgd "
                           "(part of the runs' identity; repeatable)")
    what.add_argument("--vary", action="append", default=[], choices=VARIABLE_SOURCES, metavar="SOURCE", help=VARY_HELP)
    what.add_argument("--epochs", type=_positive_int, default=None, help="override the task's epochs (smoke runs)")
    what.add_argument("--subset", type=_positive_int, default=None, help="use only the first N training examples")
    how.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    how.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                     help="override the tasks' training precision (autocast; part of the runs' identity)")
    how.add_argument("--channels-last", action="store_true", help="channels-last memory format for 4-d inputs")
    how.add_argument("--compile", action="store_true", help="compile the forward pass with torch.compile")
    how.add_argument("--data-dir", default=None, metavar="DIR",
                     help="folder of the real data sets (default $BENCHSUITE_DATA, else ./data)")
    how.add_argument("--download", action="store_true",
                     help="let the data sets' own loaders download what is missing (needs network)")
    how.add_argument("--workers", type=int, default=None, metavar="N",
                     help="DataLoader workers for image-folder data sets (default min(8, cores))")
    how.add_argument("--checkpoint-interval", type=float, default=30.0, metavar="SECONDS",
                     help="save a run's state at the end of an epoch when this long passed since the last "
                          "save (0: every epoch; default 30); a killed run resumes from it")
    how.add_argument("--results", default=None, help=RESULTS_HELP)
    how.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    how.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N",
                     help="run N runs at a time in worker processes, each with 1/N of the cores' threads")
    how.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                     help="torch intra-op threads per run (default: the cores divided by --jobs)")
    how.add_argument("--deterministic", action="store_true",
                     help="deterministic kernels and a fixed thread count: a rerun on the same machine kind "
                          "with the same --threads/--jobs is bitwise identical (see README, Reproducibility)")
    cluster.add_argument("--executor", choices=("inline", "slurm", "local", "debug"), default="inline",
                         help="inline: this machine (default, see --jobs); slurm: submit a SLURM job array and return; "
                              "local/debug: submitit's subprocess/in-process modes")
    cluster.add_argument("--partition", default=None, help="SLURM partition")
    cluster.add_argument("--time", type=_positive_int, default=None, metavar="MINUTES",
                         help="time limit per job (default: the task's [resources] time_min, else 60)")
    cluster.add_argument("--gpus", type=int, default=None, help="GPUs per job (default: the task's hint, else 0)")
    cluster.add_argument("--cpus", type=_positive_int, default=None,
                         help="CPUs per job (default: the task's hint, else 1)")
    cluster.add_argument("--mem", type=_positive_int, default=None, metavar="GB", help="memory per job")
    cluster.add_argument("--array-parallelism", type=_positive_int, default=None,
                         help="array tasks running at once (default: 256 on SLURM; local: this machine's "
                              "CPUs divided by the CPUs per run)")
    cluster.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="extra sbatch option, e.g. account=myproject or qos=long (repeatable)")
    cluster.add_argument("--wait", action="store_true", help="with --executor: wait for the jobs to end")
    output.add_argument("--dry-run", action="store_true",
                        help="list the runs, whether each is done and its estimated cost; train nothing")
    what.add_argument("--force", action="store_true",
                      help="rerun runs already stored (finished, diverged or failed) and replace their records, "
                           "e.g. after changing a plugin's code without bumping its version (inline executor only)")
    output.add_argument("--quiet", "-q", action="store_true", help=PROGRESS_HELP)
    output.add_argument("--json", action="store_true",
                        help="machine-readable output: the runs (with --dry-run: done/pending and estimates)")
    output.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when runs failed or diverged (default: exit 1, see README)")


def _add_claims(sub) -> None:
    claims = sub.add_parser("claims", help="test the plugins' paper claims: run what is missing, print verdicts")
    claims.add_argument("--list", action="store_true", help="list the claims (no runs, no verdicts)")
    claims.add_argument("--json", action="store_true", help="machine-readable output")
    claims.add_argument("--plugin", "-p", action="append", default=[], metavar="NAME",
                        help="only this plugin's claims (repeatable)")
    claims.add_argument("--claim", action="append", default=[], metavar="ID", help="only this claim (repeatable)")
    claims.add_argument("--tier", choices=("offline", "paper", "all"), default=None,
                        help="offline: data installed packages ship or generate; paper: the papers' real data "
                             "(default: list and judge every claim, run the offline ones and those named by "
                             "--claim)")
    claims.add_argument("--no-run", action="store_true", help="judge what is stored; run nothing")
    claims.add_argument("--results", default=None, help=RESULTS_HELP)
    claims.add_argument("--out", default=None, metavar="DIR",
                        help="also write DIR/index.md, index.html, claims.json and results.csv (one row per run; "
                             "e.g. reports/claims)")
    claims.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")
    claims.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N", help="runs at a time")
    claims.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    claims.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder of the real data sets (default $BENCHSUITE_DATA, else ./data)")
    claims.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    claims.add_argument("--force", action="store_true",
                        help="rerun the selected claims' runs that are already stored and replace their records")
    claims.add_argument("--quiet", "-q", action="store_true", help=PROGRESS_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchsuite",
        description="Benchmark neural-network regularization methods over tasks and seeds.",
    )
    parser.add_argument("--version", action="version", version=f"benchsuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_run(sub)

    _add_collect(sub)
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
    _statistics_options(report)

    plan = sub.add_parser("plan", help="seeds needed to detect an effect, from the noise of stored runs")
    plan.add_argument("--results", default=None,
                      help=f"results folder with pilot runs (default ./{DEFAULT_RESULTS} or $BENCHSUITE_RESULTS)")
    plan.add_argument("--effect", required=True, metavar="VALUE",
                      help="smallest difference worth detecting: absolute (0.01) or relative to the baseline (1%%)")
    plan.add_argument("--methods", type=_positive_int, default=1, metavar="M",
                      help="methods compared with the baseline per task (Holm over M; default 1)")
    plan.add_argument("--configurations", type=_positive_int, default=1, metavar="K",
                      help="configurations per method chosen on the same seeds (alpha / K; default 1; "
                           "use 1 with --tune, whose report seeds are fresh)")
    plan.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    plan.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")
    plan.add_argument("--baseline", default="none", help="method compared with (default none)")
    plan.add_argument("--task", default=None, help="only this task")
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    _add_claims(sub)

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
    _statistics_options(board)
    completion = sub.add_parser("completion", help="print the shell completion script (see README, Shell completion)")
    completion.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or tcsh")
    return parser


def _add_collect(sub) -> None:
    collect = sub.add_parser("collect", help="report on runs submitted with --executor")
    collect.add_argument("--results", default=None, help=RESULTS_HELP)
    collect.add_argument("--allow-failures", action="store_true",
                         help="exit 0 even when submitted runs failed, diverged or were lost")
    collect.add_argument("--json", action="store_true",
                         help="machine-readable output: each submitted run's state, job and error, and the counts")


# stats.MONTE_CARLO_RESAMPLES (not imported here: scipy is not needed to parse a command line)
RESAMPLES = 100_000


def _statistics_options(parser) -> None:
    parser.add_argument("--baseline", default="none", metavar="METHOD[,METHOD...]",
                        help="method every other is compared with (default none); a comma-separated list "
                             "(none,l2,wd) compares every method with each, all tests in one Holm family per task, "
                             "one leaderboard table per baseline")
    parser.add_argument("--alpha", type=_probability, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                        help="margin of equivalence, absolute (accuracy=0.005) or relative to the baseline "
                             "(mse=2%%); defaults accuracy=0.005, mse=2%%")
    parser.add_argument("--resamples", "--bootstrap", dest="bootstrap", type=_positive_int, default=RESAMPLES,
                        metavar="N", help="Monte Carlo draws of Friedman's permutation test when it is too large to "
                                          f"enumerate (default {RESAMPLES:,}, the draws of the sign-flip and unpaired "
                                          "permutation tests; at least 1,000)")
    parser.add_argument("--resample-seed", "--bootstrap-seed", dest="bootstrap_seed", type=int, default=0,
                        help="seed of those draws (default 0)")
    parser.add_argument("--references", action="append", default=None, metavar="DIR",
                        help="folder of paper reference numbers (*.paper.toml; default tasks/matrices)")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {text!r}") from None
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {value}")
    return value


def _tasks_from(names: list[str], extra_dirs, epochs, subset, train=None):
    from benchsuite.tasks import get_task

    flat = [n.strip() for arg in names for n in arg.split(",") if n.strip()]
    if not flat:
        raise UsageError("no task selected: give at least one --task (see `benchsuite tasks`)")
    return [get_task(n, extra_dirs).with_overrides(epochs=epochs, subset=subset, **(train or {}))
            for n in dict.fromkeys(flat)]


def cmd_run(args) -> int:
    from benchsuite.execution.engine import ExecutionOptions
    from benchsuite.execution.environment import resolve_device
    from benchsuite.execution.pool import run_all
    from benchsuite.plugins import discover
    from benchsuite.report.summary import RUN_COLUMNS, summary, summary_lines, with_config_columns
    from benchsuite.runs import matrix
    from benchsuite.runs.tuning import read_studies
    from benchsuite.store import Store, runs_table

    replicas = int(os.environ.get("WORLD_SIZE", "1"))
    if replicas > 1:
        args.device = _start_distributed(args.device, args)
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {args.device!r}: {exc}") from None
    if not args.checkpoint_interval >= 0 or (args.workers is not None and args.workers < 0):
        raise UsageError("--checkpoint-interval and --workers must be >= 0")
    if args.force and args.executor != "inline":
        raise UsageError("--force reruns runs on this machine only (the inline executor; --jobs N for several "
                         "at a time): submitted jobs skip stored runs")
    _check_task_dirs(args.tasks_dir)
    _export_run_environment(args)
    options = ExecutionOptions(checkpoint_interval=args.checkpoint_interval, channels_last=args.channels_last,
                               compile=args.compile, deterministic=args.deterministic,
                               threads=args.threads or (_default_threads(args.jobs) if args.deterministic else None))
    available = discover()
    _plugin_problems(available)
    sequential = _sequential_plan(args, replicas)
    groups, tuning = _selection(args, available)
    for group in groups:
        if args.precision:
            group.tasks = [t.with_overrides(precision=args.precision) for t in group.tasks]
        if replicas > 1:
            group.tasks = [t.with_overrides(replicas=replicas) for t in group.tasks]
        group.tasks = [t.with_varied(args.vary) for t in group.tasks]
    store = Store(_results_dir(args))
    plan = matrix.plan(groups, available, tuning, root=store.root)
    specs = plan.runs
    # a trial that a plugin's configure refuses is a lost trial, not bad input: only each
    # study's default configuration is checked before anything trains
    _preflight([s.spec(s.trials[0], s.seeds[0], available) for s in plan.studies] or specs, args.device, available)
    if not args.dry_run:
        _require_data(specs, store, args.download, args.force)  # bad input first: nothing written yet
        store.check_writable()

    if args.dry_run:
        return _dry_run(args, plan, store, available, sequential)
    _record_sequential_plan(sequential, store)

    if plan.studies:  # the trials this command runs are written down before any of them trains
        from benchsuite.runs.tuning import save_studies

        save_studies(plan.studies, store, lambda study: _report_runs_exist(study, plan, store, available), available)
        specs = plan.runs = [spec for study in plan.studies for spec in study.trial_specs(available)]
    if args.executor != "inline":
        return _submit(args, _with_next_look(sequential, store, specs + _report_runs(plan, store, available),
                                             available), store, options)
    outcome = run_all(specs, store, device=args.device, available=available, progress=not args.quiet,
                      options=options, jobs=args.jobs, force=args.force)
    if plan.studies:
        from benchsuite.runs.tuning import record_choices

        record_choices(plan.studies, store, available, lambda study: _report_runs_exist(study, plan, store, available))
    report = _report_runs(plan, store, available)
    if report:
        print(f"report runs: the chosen trial of each of {len(plan.studies)} studies on its report seeds "
              f"({len(report)} runs)", file=sys.stderr)
        done = run_all(report, store, device=args.device, available=available, progress=not args.quiet,
                       options=options, jobs=args.jobs, force=args.force)
        outcome.executed += done.executed
        outcome.skipped += done.skipped
    specs, report = _take_looks(sequential, plan, store, available, (specs, report), args, options, outcome)
    records = [store.get(spec.run_id) for spec in specs + report]
    table = runs_table([r for r in records if r is not None])
    if args.json:
        print(json.dumps({"executed": len(outcome.executed), "skipped": len(outcome.skipped),
                          "results": str(store.root), "runs": table.select(RUN_COLUMNS).to_dicts()}, indent=1))
    else:
        print(f"{len(outcome.executed)} runs executed, {len(outcome.skipped)} already done; results in {store.root}")
        journals = read_studies(store.root) if plan.studies else None
        print("\n".join(summary_lines(summary(table, with_config_columns(table, journals)))))
    if plan.studies:
        return _tuned_exit_code(plan, report, store, available, args.allow_failures)
    return _exit_code(specs, records, args.allow_failures)


def _export_run_environment(args) -> None:
    """Options that the runs read from the environment (worker processes inherit it)."""
    if args.data_dir:
        os.environ["BENCHSUITE_DATA"] = args.data_dir
    if args.download:
        os.environ["BENCHSUITE_DOWNLOAD"] = "1"
    if args.workers is not None:
        os.environ["BENCHSUITE_WORKERS"] = str(args.workers)


def _sequential_plan(args, replicas: int):
    """The command's sequential plan (``--seeds MIN:MAX[:BATCH]``, or a matrix file's
    ``seeds = "MIN:MAX"``), or None; ``args.seeds`` becomes the first look's count."""
    from benchsuite.runs import matrix, sequential

    plan = None
    if isinstance(args.seeds, tuple):
        if args.seed:
            raise UsageError("--seed lists seeds, sequential --seeds MIN:MAX counts them: give one of the two")
        plan = sequential.make_plan(args.seeds, args.spending or "pocock")
        args.seeds = plan.min
    elif args.matrix and args.seeds is None:
        plan = matrix.sequential_plan(args.matrix, args.spending)
    if plan is None and args.spending:
        raise UsageError("--spending: how sequential seeds spend alpha; give --seeds MIN:MAX (or a matrix file "
                         "with seeds = \"MIN:MAX\")")
    if plan is not None and (replicas > 1 or args.force):
        raise UsageError("sequential --seeds MIN:MAX decides from stored runs between looks: not under torchrun, "
                         "and not with --force (give a count, --seeds N)")
    return plan


def _record_sequential_plan(plan, store) -> None:
    """Write the command's plan into the results folder (or check it against the one there);
    a count of seeds in a folder with a plan is run, with a warning that reports apply the plan."""
    from benchsuite.runs.sequential import read_plan, save_plan

    if plan is not None:
        save_plan(store, plan)
        return
    stored = read_plan(store.root)
    if stored is not None:
        print(f"benchsuite run: warning: {store.root} has sequential seeds {stored.text()}: its reports take "
              f"verdicts at the looks {', '.join(map(str, stored.looks()))} of that plan, whatever seeds this "
              "command adds", file=sys.stderr)


def _note_sequential(plan) -> None:
    if plan is not None:
        print(f"{plan.describe()}; listed: the first look's runs (the later looks' depend on their verdicts)",
              file=sys.stderr)


def _with_next_look(plan, store, specs, available) -> list:
    """``specs`` and, under sequential seeds, the runs the next looks need (a submitting
    executor runs one batch per command: run it again once the jobs end)."""
    return specs + _sequential_needs(plan, store, _known_specs(specs), available)


def _known_specs(specs) -> dict:
    return {spec.run_id: spec for spec in specs}


def _sequential_needs(plan, store, known: dict, available) -> list:
    """The runs the next looks need, from the stored runs: for each comparison still undecided
    (analyzed as ``report`` does, :func:`benchsuite.runs.sequential.decide`), its method's and its
    baseline's seeds below its next look's count that are not stored. Only configurations
    this command runs (``known``: run id -> spec) grow."""
    from benchsuite.report.analysis import analyze
    from benchsuite.report.summary import BASELINE, with_config_columns
    from benchsuite.runs.identity import make_run_spec
    from benchsuite.runs.sequential import next_look_size
    from benchsuite.runs.tuning import read_studies

    if plan is None:
        return []
    table = store.table()
    journals = read_studies(store.root)
    analysis = analyze(table, studies=journals, alpha=plan.alpha, sequential=plan)
    runs = with_config_columns(table, journals) if not table.is_empty() else table
    spec_of = {}
    for task, config, run_id in (runs.select("task", "config", "run_id").iter_rows() if not table.is_empty() else ()):
        if run_id in known:
            spec_of.setdefault((task, config), known[run_id])
    needed = {}
    for task in analysis["tasks"]:
        base = next((c for c in task["configs"] if c["selected"] and c["variant"] == BASELINE), None)
        for comp in task["comparisons"]:
            n = next_look_size(comp["decided"], comp["look"], plan)
            pair = [spec_of.get((task["task"], comp["config"])), spec_of.get((task["task"], base and base["config"]))]
            if n is None or None in pair:
                continue
            for spec in pair:
                for seed in range(n):
                    more = make_run_spec(spec.task, spec.method, seed, available, spec.replicate)
                    if store.get(more.run_id) is None:
                        needed.setdefault(more.run_id, more)
    return list(needed.values())


def _take_looks(plan, run_plan, store, available, lists, args, options, outcome) -> tuple[list, list]:
    """Run the next looks' seeds until every comparison is decided or at its last look:
    after each batch the stored runs are analyzed again. ``lists`` are the command's runs
    and (tuned) report runs; returns them with the runs added (to the report runs when
    tuned), and adds the records computed to ``outcome``."""
    from benchsuite.execution.pool import run_all

    specs, report = lists
    if plan is None:
        return specs, report
    known, added, tried = _known_specs(specs + report), [], set()
    while True:
        todo = _sequential_needs(plan, store, known, available)
        stuck = [spec for spec in todo if spec.run_id in tried]
        if stuck:  # tried, yet not stored: held by another process, or ended without a record
            print(f"sequential seeds: {len(stuck)} run(s) of the next look are not stored yet (another process may "
                  "hold them); run the same command again to take the look", file=sys.stderr)
        if not todo or stuck:
            return (specs, report + added) if run_plan.studies else (specs + added, report)
        print(f"sequential seeds: {len(todo)} more run(s) for the comparisons still undecided (seeds "
              f"{min(s.seed for s in todo)}-{max(s.seed for s in todo)})", file=sys.stderr)
        outcome.executed += run_all(todo, store, device=args.device, available=available,
                                    progress=not args.quiet, options=options, jobs=args.jobs).executed
        tried |= {spec.run_id for spec in todo}
        known.update(_known_specs(todo))
        added += todo


def _selection(args, available):
    """The command's groups of runs and its tuning settings (None: no tuning)."""
    from benchsuite.runs import matrix
    from benchsuite.runs.tuning import parse_space_args, settings

    spaces = parse_space_args(args.space)
    if args.matrix:
        given = [opt for opt, value in (("--plugin", args.plugin), ("--task", args.task), ("--set", args.set),
                                        ("--grid", args.grid), ("--seed", args.seed)) if value]
        if given:
            raise UsageError(f"--matrix takes its methods, tasks and seeds from the file; drop {', '.join(given)}")
        if args.replicate:
            raise UsageError("--matrix takes replicates from the file (a group's `replicate`); drop --replicate")
        groups, table = matrix.load_groups(args.matrix, available, args.tasks_dir, args.epochs, args.subset,
                                           args.seeds, train_overrides=matrix.parse_train(args.train),
                                           tuned=args.tune is not None)
        if table is None and args.tune is None:
            _no_tuning_options(args)
            return groups, None
        table = table or {}
        budget = args.tune if args.tune is not None else table.get("budget")
        seeds = args.tune_seeds if args.tune_seeds is not None else table.get("seeds")
        where = "--tune" if args.tune is not None else f"{args.matrix} [tuning]"
        return groups, settings(budget, seeds, table.get("spaces", {}), where=where, command=spaces)
    methods = matrix.parse_methods(args.plugin, available, args.set, args.grid, baseline=not args.no_baseline)
    tasks = _tasks_from(args.task, args.tasks_dir, args.epochs, args.subset, matrix.parse_train(args.train))
    seeds = matrix.parse_seeds(args.seeds if args.seeds is not None else 5, args.seed)
    grids = matrix.assigned_names(args.grid, "--grid")
    trained = {f"train.{key}" for key in matrix.parse_train(args.train)}  # fixed by --train, not searched
    group = matrix.Group(tasks, methods, seeds, args.replicate, matrix.assigned_names(args.set) | grids | trained,
                         grids)
    if args.tune is None:
        _no_tuning_options(args)
        return [group], None
    return [group], settings(args.tune, args.tune_seeds, command=spaces)


def _no_tuning_options(args) -> None:
    used = [opt for opt, value in (("--tune-seeds", args.tune_seeds), ("--space", args.space)) if value]
    if used:
        raise UsageError(f"{', '.join(used)}: how methods are tuned; give --tune K (or a matrix with [tuning])")


def _report_runs(plan, store, available) -> list:
    """The report runs of every study whose trials are stored: its chosen trial on its
    report seeds."""
    if not plan.studies:
        return []
    from benchsuite.runs.tuning import report_specs

    return report_specs(plan.studies, store, plan.report_seeds, available)


def _report_runs_exist(study, plan, store, available) -> bool:
    seeds = plan.report_seeds[study.key]
    return any(store.get(study.spec(t, s, available).run_id) is not None for t in study.trials for s in seeds)


def _tuned_exit_code(plan, report, store, available, allow_failures: bool) -> int:
    """Lost trials are outcomes of the search (each counts against its method's budget):
    only lost report runs, and studies none of whose trials can be chosen, make exit 1."""
    from benchsuite.runs.tuning import decision

    records = [store.get(s.run_id) for s in plan.runs]
    lost = sum(1 for r in records if r is not None and r.get("status") != STATUS_FINISHED)
    if lost:
        print(f"{lost} of {len(plan.runs)} tuning run(s) lost (diverged or failed): each counts against its method's "
              "budget and its trial is never chosen (the report lists them)", file=sys.stderr)
    states = {s.key: decision(s, store, available)[0] for s in plan.studies}
    empty = [f"{s.method.name} on {s.task.name}" for s in plan.studies if states[s.key] == "lost"]
    if empty:
        print(f"{len(empty)} stud(ies) with no trial that finished every tuning seed, so no report runs: "
              + "; ".join(empty[:5]), file=sys.stderr)
    waiting = [f"{s.method.name} on {s.task.name}" for s in plan.studies if states[s.key] == "undecided"]
    if waiting:  # a trial run another process holds, or one that ended without a record
        print(f"{len(waiting)} stud(ies) with trial runs not stored yet, so nothing chosen: "
              + "; ".join(waiting[:5]) + "; run the same command again", file=sys.stderr)
    code = _exit_code(report, [store.get(spec.run_id) for spec in report], allow_failures)
    return 1 if (empty or waiting) and not allow_failures else code


def _dry_run(args, plan, store, available, sequential=None) -> int:
    """List the runs, which are done, and each pending run's estimated time; train nothing.
    Under tuning: every trial run, then each study's report runs (pending its choice when
    its trials are not all stored yet). Under sequential seeds: the first look's runs."""
    _note_sequential(sequential)
    from benchsuite.execution.pool import estimate_seconds
    from benchsuite.runs.tuning import decision

    specs = list(plan.runs)  # a study's report runs are listed once every trial of it is stored
    roles = {spec.run_id: ("tuning" if plan.studies else "report") for spec in specs}
    trials, undecided = {}, []
    for study in plan.studies:
        for trial in study.trials:
            for seed in study.seeds:
                trials[study.spec(trial, seed, available).run_id] = trial["index"]
        state, picked = decision(study, store, available)
        seeds = plan.report_seeds[study.key]
        if state == "undecided":
            undecided += [(study, seed) for seed in seeds]
            continue
        if picked is None:  # every trial lost: no report run will be made
            continue
        for seed in seeds:
            spec = study.spec(picked, seed, available)
            if spec.run_id not in roles:
                roles[spec.run_id] = "report"
                specs.append(spec)
    estimates = estimate_seconds(specs, store)
    done = {spec.run_id: store.is_done(spec.run_id) for spec in specs}
    store.refuse_newer()  # as the run itself would
    to_run = [s for s in specs if args.force or not done[s.run_id]]  # --force: the done ones too
    known = [estimates[s.run_id] for s in to_run if estimates[s.run_id] is not None]
    n_done = sum(done.values())
    if args.json:
        runs = [{"run_id": s.run_id, "done": done[s.run_id], "task": s.task.name,
                 "method": s.method.label + (f"@{s.replicate}" if s.replicate else ""),
                 "seed": s.seed, "role": roles[s.run_id], "trial": trials.get(s.run_id),
                 "rerun": args.force and done[s.run_id],
                 "estimated_seconds": estimates[s.run_id] if args.force or not done[s.run_id] else None}
                for s in specs]
        runs += [{"run_id": None, "done": False, "task": study.task.name, "method": _study_label(study), "seed": seed,
                  "role": "report", "trial": None, "chosen": "the best trial on validation, once every trial is "
                  "stored", "estimated_seconds": None} for study, seed in undecided]
        print(json.dumps({
            "runs": runs, "done": n_done, "pending": len(specs) - n_done + len(undecided), "to_run": len(to_run),
            "force": args.force, "estimated_seconds": sum(known), "without_estimate": len(to_run) - len(known),
            "jobs": args.jobs, "tuning": _studies_json(plan, store, available) if plan.studies else None,
        }, indent=1))
        return 0
    for spec in specs:
        state = ("rerun  " if args.force else "done   ") if done[spec.run_id] else "pending"
        cost = f"  ~{_duration(estimates[spec.run_id])}" if args.force or not done[spec.run_id] else ""
        role = f"  [{roles[spec.run_id]}{' trial ' + str(trials[spec.run_id]) if spec.run_id in trials else ''}]" \
            if plan.studies else ""
        salt = f"@{spec.replicate}" if spec.replicate else ""
        print(f"{spec.run_id}  {state}  {spec.task.name}  {spec.method.label}{salt}  seed={spec.seed}{cost}{role}")
    for study, seed in undecided:
        print(f"{'-' * 20}  pending  {study.task.name}  {_study_label(study)}  seed={seed}  [report: the trial best on "
              "validation, chosen once every trial is stored]")
    line = f"{len(specs) + len(undecided)} runs: {n_done} done, {len(specs) - n_done + len(undecided)} pending"
    if args.force and n_done:
        line += f" (--force: the {n_done} done run(s) run again too)"
    if known:
        line += (f"; estimated {_duration(sum(known))} of compute for {len(known)} of them"
                 + (f" (~{_duration(sum(known) / args.jobs)} with --jobs {args.jobs})" if args.jobs > 1 else ""))
    if len(known) < len(to_run):
        line += f"; {len(to_run) - len(known)} without an estimate (no stored run of their task)"
    print(line)
    for study in plan.studies:
        for note in study.notes:
            print(f"note: {note}")
    return 0


def _study_label(study) -> str:
    return study.method.name + (f"@{study.replicate}" if study.replicate else "")


def _studies_json(plan, store, available) -> list[dict]:
    """Each study of a tuned plan: its task, method, dimensions, trials and the chosen one."""
    from benchsuite.runs.tuning import decision

    out = []
    for study in plan.studies:
        state, picked = decision(study, store, available)
        out.append({
            "task": study.task.name, "method": study.method.name, "replicate": study.replicate, "study": study.key,
            "budget": study.budget,
            "k": len(study.trials), "tuning_seeds": study.seeds, "report_seeds": plan.report_seeds[study.key],
            "space": {name: space.text() for name, space in sorted(study.dims.items())},
            "trials": [{"index": t["index"], "label": study.trial_method(t).full_label, "origin": t["origin"],
                        "hyperparameters": t["hyperparameters"], "train": t["train"]} for t in study.trials],
            "decision": state, "chosen": None if picked is None else picked["index"], "notes": study.notes,
        })
    return out


def _preflight(specs, device: str, available) -> None:
    """Exit 2 before anything trains when a plugin's ``configure`` rejects a task."""
    from benchsuite.execution.preflight import preflight

    problems = preflight(specs, device, available)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise UsageError("these runs would fail before training, nothing was run:\n  " + "\n  ".join(shown))


def _exit_code(specs, records, allow_failures: bool) -> int:
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


def _default_threads(jobs: int) -> int:
    from benchsuite.execution.pool import threads_per_worker

    return threads_per_worker(jobs)


def _start_distributed(device: str, args) -> str:
    """Under torchrun: join the process group (NCCL on GPUs, gloo on CPUs); each rank takes
    the GPU of its local rank."""
    import torch

    if args.jobs > 1 or args.executor != "inline":
        raise UsageError("under torchrun every process trains the same run: drop --jobs and --executor")
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return device


def _submit(args, specs, store, options) -> int:
    from benchsuite.execution import cluster

    slurm_args = []
    for item in args.slurm_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-arg {item!r}: expected KEY=VALUE")
        slurm_args.append((key.strip(), value.strip()))
    if args.gpus is not None and args.gpus < 0:
        raise UsageError("--gpus must be >= 0")
    settings = cluster.ClusterOptions(mode=args.executor, partition=args.partition, time_min=args.time,
                                      gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem,
                                      array_parallelism=args.array_parallelism, slurm_args=tuple(slurm_args))
    outcome = cluster.submit(specs, store, settings, device=args.device, options=options,
                             wait=args.wait or args.executor == "debug")
    jobs = sorted({e["job_id"].split("_")[0] for e in outcome["submitted"]})
    print(f"{len(outcome['submitted'])} runs submitted ({args.executor}, job {', '.join(jobs) or '-'}); "
          f"{outcome['skipped_done']} already done, {outcome['skipped_in_flight']} still queued or running; "
          f"results in {store.root}; see `benchsuite collect --results {store.root}`")
    if args.wait or args.executor == "debug":
        return _exit_code(specs, [store.get(spec.run_id) for spec in specs], args.allow_failures)
    return 0


def cmd_collect(args) -> int:
    from benchsuite.execution import cluster
    from benchsuite.store import Store

    store = Store(_results_dir(args))
    counts: dict[str, int] = {}
    if args.json:
        runs = _collected(store)
        for run in runs:
            counts[run["state"]] = counts.get(run["state"], 0) + 1
        print(json.dumps({"results": str(store.root), "submitted": len(runs), "counts": dict(sorted(counts.items())),
                          "lost": cluster.lost_count(counts), "runs": runs}, indent=1))
    else:
        print("\n".join(cluster.collect(store, counts)))
    lost = cluster.lost_count(counts)
    if lost and not args.allow_failures:
        print(f"exit code 1: {lost} submitted run(s) failed, diverged or were lost; pass --allow-failures "
              "to exit 0", file=sys.stderr)
        return 1
    return 0


def _collected(store) -> list[dict]:
    """Each submitted run's latest job and its state as ``cluster.collect`` prints it (the
    record's status, else the job's: queued, running, or lost when it ended without a
    record), with the error of a run that did not finish."""
    from benchsuite.execution import cluster
    from benchsuite.store.status import DONE_STATUSES, STATUSES

    latest = {entry["run_id"]: entry for entry in cluster.submitted(store)}
    runs = []
    for run_id, entry in latest.items():
        record = store.get(run_id)
        if record is not None and record.get("status") in STATUSES:
            state = record["status"]
        else:
            state = cluster.job_state(entry)
            if state not in cluster.ACTIVE_STATES:
                state = "lost" if state in ("DONE", "COMPLETED") else state.lower()
        error = None
        if state not in DONE_STATUSES and state.upper() not in cluster.ACTIVE_STATES:
            error = (record or {}).get("error") or _job_error(cluster, entry)
        runs.append({"run_id": run_id, "state": state, "task": entry["task"], "method": entry["method"],
                     "seed": entry["seed"], "job_id": entry["job_id"], "mode": entry["mode"],
                     "submitted": entry.get("submitted"), "error": error})
    return runs


def _job_error(cluster, entry) -> str | None:
    """The last line of a job's error output (None when there is none)."""
    try:
        job = cluster.submitted_job(entry)
        lines = (job.stderr() or "").strip().splitlines() if job is not None else []
    except Exception:  # noqa: BLE001 - a job the scheduler or its folder no longer has
        return None
    return lines[-1][:300] if lines else None


def _require_data(specs, store, download: bool, force: bool = False) -> None:
    """Stop before anything trains when a data set of a run to do is missing or corrupt
    (and --download cannot fetch it)."""
    from benchsuite.tasks import real_data

    root = real_data.data_dir()
    sources = sorted({s.task.data.source for s in specs if force or not store.is_done(s.run_id)})
    for source in sources:
        if source not in real_data.DATASETS:
            continue
        info = real_data.DATASETS[source]
        problems = real_data.check(source, root)
        if problems and not (download and info.downloadable):
            raise real_data.DataMissing(info, root, problems)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def _plugin_problems(available) -> None:
    """Broken or conflicting plugins (skipped) and hooks lacking @hookimpl, on stderr."""
    for broken in getattr(available, "broken", {}).values():
        print(f"benchsuite: warning: {broken.message()}; skipped", file=sys.stderr)
    for info in available.values():
        for warning in info.describe()["warnings"]:
            print(f"benchsuite: warning: {warning}", file=sys.stderr)


def cmd_plugins(args) -> int:
    from benchsuite.plugins import discover

    available = discover()
    _plugin_problems(available)
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
    problems = real_data.check(source, root)
    return {"offline": False, "ready": not problems, "data_dir": str(root),
            "needs": f"{source} in {root}" + (": ready" if not problems else f": missing ({len(problems)} problem(s))"),
            "problems": problems}


def cmd_tasks(args) -> int:
    from benchsuite.tasks import all_tasks, real_data, registry

    _check_task_dirs(args.tasks_dir)
    paths = registry(args.tasks_dir)
    specs = all_tasks(args.tasks_dir)
    root = real_data.data_dir(args.data_dir)
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
        print(f"\nData sets not found in {root}: {', '.join(missing)}. Place them there (see "
              f"`benchsuite run --task <task>` for the exact files and how to get them), or pass --data-dir.")
    return 0


def _filtered_table(args):
    import polars as pl

    from benchsuite.store import Store

    table = Store(_results_dir(args)).table()
    if args.task:
        table = table.filter(pl.col("task") == args.task)
    if getattr(args, "method", None):
        table = table.filter(pl.col("method") == args.method)
    return table


def cmd_prune(args) -> int:
    """Every statistic already leaves superseded runs out; this tidies the folder, so that
    ``results`` and ``results.csv`` show only the runs the statistics count."""
    from benchsuite.report.summary import superseded_run_ids, superseded_runs, versions_text
    from benchsuite.store import Store, runs_table

    store = Store(_results_dir(args))
    table = runs_table(store.records())
    groups, run_ids = superseded_runs(table), superseded_run_ids(table)
    for row in groups:
        print(f"{row['runs']} of {row['method']} on {row['task']}: {versions_text(row['versions'])} "
              f"(newer: {versions_text(row['newer'])})")
    if args.dry_run:
        print(f"would move {len(run_ids)} superseded runs to {store.root / 'superseded'}/ (--dry-run: moved none)")
        return 0
    moved = [run_id for run_id in run_ids if store.move_superseded(run_id) is not None]
    busy = len(run_ids) - len(moved)
    print(f"moved {len(moved)} superseded runs to {store.root / 'superseded'}/"
          + (f"; {busy} left in place (held by a running process, or gone)" if busy else ""))
    return 0


def cmd_results(args) -> int:
    import polars as pl

    from benchsuite.report.summary import run_lines, summary, summary_lines, superseded_runs

    table = _filtered_table(args)
    if args.export:
        path = Path(args.export)
        if path.suffix == ".csv":
            table.write_csv(path)
        elif path.suffix == ".parquet":
            table.write_parquet(path)
        else:
            raise UsageError(f"--export {args.export!r}: use a .csv or .parquet file name")
        print(f"wrote {len(table)} runs to {path}")
        return 0
    if args.summary:
        from benchsuite.report.summary import with_config_columns
        from benchsuite.runs.tuning import read_studies

        journals = read_studies(_results_dir(args))  # the task labels the report gives
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


def _analysis_options(args) -> dict:
    from benchsuite.report.analysis import load_references, parse_baselines, parse_margins
    from benchsuite.tasks import builtin_task_dirs

    try:
        margins = parse_margins(args.margin)
    except ValueError as exc:
        raise UsageError(f"--margin: {exc}") from None
    folders = args.references if args.references is not None else [
        d / "matrices" for d in builtin_task_dirs() if (d / "matrices").is_dir()][:1]
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"--references {folder!r}: no such folder")
    try:
        references = load_references(folders)
    except (OSError, ValueError) as exc:
        raise UsageError(f"paper reference file: {exc}") from None
    try:
        baselines = parse_baselines(args.baseline)
    except ValueError as exc:
        raise UsageError(f"--baseline: {exc}") from None
    return {"baseline": baselines, "alpha": args.alpha, "margins": margins, "resamples": args.bootstrap,
            "seed": args.bootstrap_seed, "references": references}


def cmd_report(args) -> int:
    from benchsuite.report.publish import write_report
    from benchsuite.store import Store

    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UsageError(f"--name {args.name!r}: use a plain folder name")
    options = _analysis_options(args)
    folder = write_report(Store(_results_dir(args)), Path(args.out), args.name, plots=not args.no_plots, **options)
    print(f"wrote {folder}/index.md, index.html, stats.json, results.csv")
    return 0


def cmd_leaderboard(args) -> int:
    import polars as pl

    from benchsuite.report.analysis import analyze, read_runs_table, regressions
    from benchsuite.report.render import leaderboard, to_markdown
    from benchsuite.runs.sequential import read_plan
    from benchsuite.runs.tuning import read_studies
    from benchsuite.store import Store

    options = _analysis_options(args)
    if args.fail_on_regression and not args.reference:
        raise UsageError("--fail-on-regression needs --reference (the stored runs to compare with)")
    reference = None
    if args.reference:
        try:
            reference = read_runs_table(Path(args.reference))
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise UsageError(f"--reference {args.reference!r}: {exc}") from None
    store = Store(_results_dir(args))
    table = store.table()
    analysis = analyze(table, studies=read_studies(store.root), sequential=read_plan(store.root), **options)
    text = leaderboard(analysis, args.format)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a") as fh:
            fh.write(leaderboard(analysis, "md") + "\n")
    if reference is None:
        return 0
    checked = regressions(table, reference, margins=options["margins"], alpha=args.alpha)
    worse = [r for r in checked if r["regression"]]
    lines = [f"regression check: {len(checked)} configuration(s) compared with {args.reference}, "
             f"{len(worse)} significantly worse"]
    for r in worse:
        lines.append(f"  WORSE {r['task']}  {r['configuration']}: {r['diff']:+.4g} "
                     f"[{r['ci_low']:+.4g}, {r['ci_high']:+.4g}], p (Holm) {r['p_holm']:.3g}")
    print("\n".join(lines), file=sys.stderr)
    if summary_path:
        with open(summary_path, "a") as fh:
            fh.write(to_markdown([]) + "\n".join(f"- {line.strip()}" for line in lines) + "\n")
    return 1 if worse and args.fail_on_regression else 0


def cmd_plan(args) -> int:
    import polars as pl

    from benchsuite import stats
    from benchsuite.report.plan import plan, plan_lines
    from benchsuite.runs.tuning import read_studies
    from benchsuite.store import Store

    try:
        effect = stats.Margin.parse(args.effect)
    except ValueError as exc:
        raise UsageError(f"--effect: {exc}") from None
    if effect.value == 0:
        raise UsageError("--effect must be larger than 0")
    if not 0 < args.power < 1:
        raise UsageError(f"--power must be in (0, 1), got {args.power}")
    store = Store(_results_dir(args))
    table = store.table()
    if args.task:
        table = table.filter(pl.col("task") == args.task)
    if table.is_empty():
        raise UsageError(f"no stored runs in {_results_dir(args)}"
                         + (f" for task {args.task!r}" if args.task else "")
                         + ": run a pilot first, e.g. `benchsuite run --plugin none --task T --seeds 5`")
    rows = plan(table, effect, methods=args.methods, configurations=args.configurations, power=args.power,
                alpha=args.alpha, baseline=args.baseline, studies=read_studies(store.root))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("\n".join(plan_lines(rows, effect, args.methods, args.configurations)))
    return 0


def cmd_claims(args) -> int:
    from benchsuite.plugins import discover
    from benchsuite.report import claims as claim_mod

    _check_task_dirs(args.tasks_dir)
    if args.data_dir:
        os.environ["BENCHSUITE_DATA"] = args.data_dir
    available = discover()
    _plugin_problems(available)
    found, problems = claim_mod.load_claims(available, args.plugin or None)
    for problem in problems:
        print(f"benchsuite claims: warning: {problem}; its claims are left out", file=sys.stderr)
    selected = claim_mod.select(found, args.claim or None, args.tier or "all")
    if args.list:
        listed = []
        for claim in selected:
            entry = claim.to_dict()
            try:
                entry["runs"] = sum(len(v) for v in claim_mod.run_specs(claim, available, args.tasks_dir).values())
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
    store = Store(_results_dir(args))
    if not args.no_run:
        _run_claims(args, selected, available, store)
    rows = claim_mod.evaluate(selected, store, available, args.tasks_dir, alpha=args.alpha)
    if args.out:
        claim_mod.write(rows, Path(args.out), claim_mod.run_rows(selected, store, available, args.tasks_dir))
        print(f"wrote {args.out}/index.md, index.html, claims.json, results.csv", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1, allow_nan=False))
    else:
        from benchsuite.report.render import to_markdown

        print(to_markdown(claim_mod.blocks(rows)))
    return 0


def _run_claims(args, selected, available, store) -> None:
    """Run the missing runs of the offline claims (and of paper claims asked for by
    --claim or --tier paper whose data is present), like ``benchsuite run``."""
    from benchsuite.execution.engine import ExecutionOptions
    from benchsuite.execution.environment import resolve_device
    from benchsuite.execution.pool import run_all
    from benchsuite.report import claims as claim_mod

    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {args.device!r}: {exc}") from None
    specs = {}
    for claim in selected:
        if claim.tier == "paper" and not (args.claim or args.tier == "paper"):
            continue
        try:
            needs = claim_mod.data_problems(claim, args.tasks_dir)
            groups = claim_mod.run_specs(claim, available, args.tasks_dir).values()
        except UsageError as exc:
            print(f"benchsuite claims: {claim.id} not run: {exc}", file=sys.stderr)
            continue
        if needs:
            print(f"benchsuite claims: {claim.id} not run: needs {'; '.join(needs)}", file=sys.stderr)
            continue
        for group in groups:
            specs.update({spec.run_id: spec for spec in group})
    pending = [s for s in specs.values() if args.force or not store.is_done(s.run_id)]
    if not pending:
        return
    _preflight(pending, args.device, available)
    store.check_writable()
    print(f"claims: {len(pending)} of {len(specs)} runs to do; results in {store.root}", file=sys.stderr)
    run_all(pending, store, device=args.device, available=available, progress=not args.quiet,
            options=ExecutionOptions(), jobs=args.jobs, force=args.force)


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

    parser = build_parser()
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
