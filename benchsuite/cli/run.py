"""``benchsuite run``: a task x plugin x seed matrix, locally, distributed or on a cluster."""

from __future__ import annotations

import json
import os
import sys

from benchsuite.cli.common import (
    PROGRESS_HELP,
    add_json_option,
    add_results_option,
    add_verbosity_options,
    check_task_dirs,
    exit_code,
    positive_int,
    preflight,
    results_dir,
    seed_count,
    seed_list,
    tasks_from,
)
from benchsuite.cli.dry_run import dry_run, report_runs, report_runs_exist, tuned_exit_code
from benchsuite.cli.listing import plugin_problems
from benchsuite.cli.run_sequential import record_sequential_plan, sequential_plan, take_looks, with_next_look
from benchsuite.errors import UsageError
from benchsuite.tasks.spec import VARIABLE_SOURCES

VARY_HELP = ("what each seed varies beyond initialization, data order and plugin randomness: `split` draws each "
             "seed's own train/val/test split (and generated data's sample), shared by every method of that seed; "
             "overrides the tasks and a matrix file")


DEFAULT_TUNING_SEEDS = 2  # benchsuite.runs.tuning's, not imported: `benchsuite --help` stays light


def _add_seed_options(group) -> None:
    group.add_argument("--seeds", type=seed_count, default=None, metavar="N|MIN:MAX[:BATCH]",
                       help="run seeds 0..N-1 (default 5, or the matrix file's); MIN:MAX[:BATCH] (e.g. 5:20) runs "
                            "seeds 0..MIN-1, then BATCH (default MIN) more at a time only for the comparisons with "
                            "the baseline still undecided, up to MAX, by a group-sequential rule that keeps the "
                            "false-verdict rate at alpha (docs/statistics.md); a rerun continues where it stopped")
    group.add_argument("--spending", choices=("pocock", "obrien-fleming"), default=None,
                       help="with sequential --seeds: how alpha is spent over the looks (default pocock: nearly "
                            "even; obrien-fleming: little early, most at MAX)")


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="train every (task, method, seed) and store the results")
    run.set_defaults(handler=cmd_run)
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
    what.add_argument("--seed", type=seed_list, default=None, metavar="S[,S...]",
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
    what.add_argument("--epochs", type=positive_int, default=None, help="override the task's epochs (smoke runs)")
    what.add_argument("--subset", type=positive_int, default=None, help="use only the first N training examples")
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
    add_results_option(how)
    how.add_argument("--tasks-dir", action="append", default=[], help="extra folder of task files")
    how.add_argument("--jobs", "-j", type=positive_int, default=1, metavar="N",
                     help="run N runs at a time in worker processes, each with 1/N of the cores' threads")
    how.add_argument("--threads", type=positive_int, default=None, metavar="N",
                     help="torch intra-op threads per run (default: the cores divided by --jobs)")
    how.add_argument("--deterministic", action="store_true",
                     help="deterministic kernels and a fixed thread count: a rerun on the same machine kind "
                          "with the same --threads/--jobs is bitwise identical (see docs/results.md, Reproducibility)")
    cluster.add_argument("--executor", choices=("inline", "slurm", "local", "debug"), default="inline",
                         help="inline: this machine (default, see --jobs); slurm: submit a SLURM job array and return; "
                              "local/debug: submitit's subprocess/in-process modes")
    cluster.add_argument("--partition", default=None, help="SLURM partition")
    cluster.add_argument("--time", type=positive_int, default=None, metavar="MINUTES",
                         help="time limit per job (default: the task's [resources] time_min, else 60)")
    cluster.add_argument("--gpus", type=int, default=None, help="GPUs per job (default: the task's hint, else 0)")
    cluster.add_argument("--cpus", type=positive_int, default=None,
                         help="CPUs per job (default: the task's hint, else 1)")
    cluster.add_argument("--mem", type=positive_int, default=None, metavar="GB", help="memory per job")
    cluster.add_argument("--array-parallelism", type=positive_int, default=None,
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
    add_verbosity_options(output, quiet_help=PROGRESS_HELP)
    add_json_option(output, help="machine-readable output: the runs (with --dry-run: done/pending and estimates)")
    output.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when runs failed or diverged (default: exit 1, see docs/usage.md)")


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
    check_task_dirs(args.tasks_dir)
    _export_run_environment(args)
    options = ExecutionOptions(checkpoint_interval=args.checkpoint_interval, channels_last=args.channels_last,
                               compile=args.compile, deterministic=args.deterministic,
                               threads=args.threads or (_default_threads(args.jobs) if args.deterministic else None))
    available = discover()
    plugin_problems(available)
    sequential = sequential_plan(args, replicas)
    groups, tuning = _selection(args, available)
    for group in groups:
        if args.precision:
            group.tasks = [t.with_overrides(precision=args.precision) for t in group.tasks]
        if replicas > 1:
            group.tasks = [t.with_overrides(replicas=replicas) for t in group.tasks]
        group.tasks = [t.with_varied(args.vary) for t in group.tasks]
    store = Store(results_dir(args))
    plan = matrix.plan(groups, available, tuning, root=store.root)
    specs = plan.runs
    # a trial that a plugin's configure refuses is a lost trial, not bad input: only each
    # study's default configuration is checked before anything trains
    preflight([s.spec(s.trials[0], s.seeds[0], available) for s in plan.studies] or specs, args.device, available)
    if not args.dry_run:
        _require_data(specs, store, args.download, args.force)  # bad input first: nothing written yet
        store.check_writable()

    if args.dry_run:
        return dry_run(args, plan, store, available, sequential)
    record_sequential_plan(sequential, store)

    if plan.studies:  # the trials this command runs are written down before any of them trains
        from benchsuite.runs.tuning import save_studies

        save_studies(plan.studies, store, lambda study: report_runs_exist(study, plan, store, available), available)
        specs = plan.runs = [spec for study in plan.studies for spec in study.trial_specs(available)]
    if args.executor != "inline":
        return _submit(args, with_next_look(sequential, store, specs + report_runs(plan, store, available),
                                             available), store, options)
    outcome = run_all(specs, store, device=args.device, available=available, progress=not args.quiet,
                      options=options, jobs=args.jobs, force=args.force)
    if plan.studies:
        from benchsuite.runs.tuning import record_choices

        record_choices(plan.studies, store, available, lambda study: report_runs_exist(study, plan, store, available))
    report = report_runs(plan, store, available)
    if report:
        print(f"report runs: the chosen trial of each of {len(plan.studies)} studies on its report seeds "
              f"({len(report)} runs)", file=sys.stderr)
        done = run_all(report, store, device=args.device, available=available, progress=not args.quiet,
                       options=options, jobs=args.jobs, force=args.force)
        outcome.executed += done.executed
        outcome.skipped += done.skipped
    specs, report = take_looks(sequential, plan, store, available, (specs, report), args, options, outcome)
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
        return tuned_exit_code(plan, report, store, available, args.allow_failures)
    return exit_code(specs, records, args.allow_failures)


def _export_run_environment(args) -> None:
    """Options that the runs read from the environment (worker processes inherit it)."""
    if args.data_dir:
        os.environ["BENCHSUITE_DATA"] = args.data_dir
    if args.download:
        os.environ["BENCHSUITE_DOWNLOAD"] = "1"
    if args.workers is not None:
        os.environ["BENCHSUITE_WORKERS"] = str(args.workers)


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
    tasks = tasks_from(args.task, args.tasks_dir, args.epochs, args.subset, matrix.parse_train(args.train))
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
        return exit_code(specs, [store.get(spec.run_id) for spec in specs], args.allow_failures)
    return 0


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

