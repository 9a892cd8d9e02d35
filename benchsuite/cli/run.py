"""``benchsuite run``: a task x plugin x seed matrix, locally, distributed or on a cluster."""

from __future__ import annotations

import json
import os
import sys

import benchsuite.cli.defaults as defaults
from benchsuite.cli.common import (
    PROGRESS_HELP,
    add_data_cache_options,
    add_json_option,
    add_results_option,
    add_verbosity_options,
    exit_code,
    positive_int,
    results_dir,
    seed_count,
    seed_list,
)
from benchsuite.cli.dry_run import dry_run, tuned_exit_code
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
    add_data_cache_options(how)
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
    from benchsuite import api
    from benchsuite.report.summary import RUN_COLUMNS, summary, summary_lines, with_config_columns
    from benchsuite.runs.tuning import read_studies

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join its process group first
        args.device = _start_distributed(args.device, args)
    if args.seed and isinstance(args.seeds, tuple):
        raise UsageError("--seed lists seeds, sequential --seeds MIN:MAX counts them: give one of the two")
    result = api.run(**run_arguments(args), notes=_to_stderr)
    if result.listing is not None:
        return dry_run(args, result)
    if result.submitted is not None:
        return _submitted(args, result)
    table = result.table()
    if args.json:
        print(json.dumps({"executed": len(result.executed), "skipped": len(result.skipped),
                          "results": str(result.results), "runs": table.select(RUN_COLUMNS).to_dicts()}, indent=1))
    else:
        print(f"{len(result.executed)} runs executed, {len(result.skipped)} already done; results in {result.results}")
        journals = read_studies(result.results) if result.studies else None
        print("\n".join(summary_lines(summary(table, with_config_columns(table, journals)))))
    if result.studies:
        return tuned_exit_code(result, args.allow_failures)
    return exit_code(result.runs, [result.records.get(s.run_id) for s in result.runs], args.allow_failures)


def run_arguments(args) -> dict:
    """``benchsuite run``'s options as :func:`benchsuite.api.run`'s arguments, with the
    environment's defaults for those not given (cli.defaults)."""
    data = defaults.data_options(args)
    return {
        "tasks": args.task, "plugins": args.plugin, "results": results_dir(args), "matrix": args.matrix,
        "seeds": args.seed or args.seeds, "spending": args.spending, "hyperparameters": args.set, "grid": args.grid,
        "baseline": not args.no_baseline, "replicate": args.replicate, "tune": args.tune,
        "tune_seeds": args.tune_seeds, "spaces": args.space, "train": args.train, "vary": args.vary,
        "epochs": args.epochs, "subset": args.subset, "tasks_dirs": defaults.task_dirs(args.tasks_dir),
        "device": args.device, "precision": args.precision, "channels_last": args.channels_last,
        "compile": args.compile, "data_dir": data.data_dir, "download": data.download,
        "loader_workers": data.loader_workers, "verify_data": data.verify, "cache_dir": data.cache_dir,
        "checkpoint_interval": args.checkpoint_interval, "jobs": args.jobs, "threads": args.threads,
        "deterministic": args.deterministic, "executor": args.executor, "partition": args.partition,
        "time_min": args.time, "gpus": args.gpus, "cpus": args.cpus, "mem_gb": args.mem,
        "array_parallelism": args.array_parallelism, "slurm_args": args.slurm_arg, "wait": args.wait,
        "force": args.force, "dry_run": args.dry_run, "progress": not args.quiet,
    }


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


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


def _submitted(args, result) -> int:
    outcome = result.submitted
    jobs = sorted({e["job_id"].split("_")[0] for e in outcome["submitted"]})
    print(f"{len(outcome['submitted'])} runs submitted ({args.executor}, job {', '.join(jobs) or '-'}); "
          f"{outcome['skipped_done']} already done, {outcome['skipped_in_flight']} still queued or running; "
          f"results in {result.results}; see `benchsuite collect --results {result.results}`")
    if args.wait or args.executor == "debug":
        return exit_code(result.runs, [result.records.get(s.run_id) for s in result.runs], args.allow_failures)
    return 0
