"""Resampled splits (``data.vary_split``, ``run --vary split``, a matrix's ``vary``): each run
seed draws its own train/val/test split, shared by every method of that seed; the default
fixed split is unchanged; reports say which the runs did."""

import dataclasses
import hashlib
import json

import polars as pl
import pytest
import torch

from benchsuite.cli import main
from benchsuite.errors import UsageError
from benchsuite.execution.engine import seed_streams
from benchsuite.runs.identity import Method, make_run_spec
from benchsuite.runs.variation import seeds_varied, split_modes
from benchsuite.tasks import datasets, get_task
from benchsuite.tasks.spec import parse_task

FAST = ["--task", "digits-mlp", "--epochs", "1", "--subset", "200", "--quiet"]


def _digest(data) -> str:
    h = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        h.update(split.x.numpy().tobytes())
        h.update(split.y.numpy().tobytes())
    return h.hexdigest()[:16]


# sha256 of every split's inputs and targets, computed with the code before resampled splits
# existed: the default (fixed) split must not move a single bit, or every committed number would
FIXED_DIGESTS = {
    "toy-regression": "9d556b52bf5471de", "boston-mlp": "fa80f10551a00ee7", "digits-mlp": "11643cd114a62393",
    "mnist5k-noisy-mlp": "1bb1f468087de69d", "teacher-student": "2123d8e9c0b64dea", "mnist1d-mlp": "b75f99b41bf127ec",
}


@pytest.mark.parametrize("name", sorted(FIXED_DIGESTS))
def test_a_fixed_split_is_bitwise_what_it_was(name):
    data = get_task(name).data
    assert data.for_seed(3) is data  # a fixed split ignores the run's seed
    assert _digest(datasets.load.__wrapped__(data)) == FIXED_DIGESTS[name]


@pytest.mark.parametrize("name", ["digits-mlp", "mnist5k-noisy-mlp", "teacher-student", "toy-regression"])
def test_each_seed_draws_its_own_split_and_the_same_seed_the_same(name):
    varied = get_task(name).with_varied(["split"]).data
    first, again, other = (datasets.load.__wrapped__(varied.for_seed(s)) for s in (0, 0, 1))
    assert _digest(first) == _digest(again)
    assert not torch.equal(first.test.x, other.test.x)
    assert [len(s) for s in (first.train, first.val, first.test)] == [len(s) for s in (other.train, other.val,
                                                                                        other.test)]
    fixed = datasets.load.__wrapped__(get_task(name).data)
    assert not torch.equal(first.test.x, fixed.test.x)


def test_a_resampled_split_of_a_data_set_partitions_the_same_examples():
    varied = get_task("digits-mlp").with_varied(["split"]).data
    rows = lambda data: sorted(tuple(r) for s in (data.train, data.val, data.test) for r in s.x.tolist())  # noqa: E731
    a, b = (datasets.load.__wrapped__(varied.for_seed(s)) for s in (0, 1))
    assert rows(a) == rows(b)  # the same 1797 images, dealt out otherwise
    assert not {tuple(r) for r in a.train.x.tolist()} & {tuple(r) for r in a.test.x.tolist()}


def test_teacher_student_keeps_its_teacher_and_draws_new_points():
    """The teacher is the task (drawn from the file's split_seed); a resampled split draws new
    inputs and noise from the same distribution: the noise-free targets of the same inputs agree."""
    import numpy as np

    task = get_task("teacher-student")
    varied = task.with_varied(["split"]).data.for_seed(2)
    assert varied.fixed_seed == task.data.split_seed != varied.split_seed
    rng = np.random.default_rng(task.data.split_seed)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(30), (30, 8))
    w2 = rng.normal(0.0, 1.0, 8) * np.sqrt(1.0 / 8) * 2.0
    data = datasets.load.__wrapped__(varied)
    residual = data.test.y.numpy() - np.tanh(data.test.x.numpy() @ w1 * 2.0) @ w2
    assert 0.9 < residual.std() < 1.1  # only the unit noise is left: the same teacher


def test_mnist1d_generates_other_examples_for_another_split_seed(monkeypatch):
    import mnist1d.data

    real_args = mnist1d.data.get_dataset_args

    def few_samples():
        args = real_args()
        args.num_samples = 200
        return args

    monkeypatch.setattr(mnist1d.data, "get_dataset_args", few_samples)
    varied = get_task("mnist1d-mlp").with_varied(["split"]).data
    a, b = (datasets.load.__wrapped__(varied.for_seed(s)) for s in (0, 1))
    pool = lambda d: {tuple(r) for s in (d.train, d.val, d.test) for r in s.x.tolist()}  # noqa: E731
    assert not pool(a) & pool(b)  # new signals, not the same ones dealt out otherwise


def test_label_noise_is_redrawn_with_the_split():
    varied = get_task("mnist5k-noisy-mlp").with_varied(["split"]).data.for_seed(1)
    noisy = datasets.load.__wrapped__(varied)
    clean = datasets.load.__wrapped__(dataclasses.replace(varied, label_noise=0.0))
    assert int((noisy.train.y != clean.train.y).sum()) == 400 and torch.equal(noisy.test.y, clean.test.y)


def test_the_derived_split_seed_is_a_stream_of_its_own():
    data = get_task("digits-mlp").with_varied(["split"]).data
    for seed in (0, 1, 7, 1_000_000):
        derived = data.for_seed(seed).split_seed
        assert derived not in set(seed_streams(seed).values()) | {seed, data.split_seed}
        assert 0 <= derived < 2**32  # numpy's global seed (the mnist1d generator) takes 32 bits
    assert len({data.for_seed(s).split_seed for s in range(50)}) == 50
    other_task_seed = dataclasses.replace(data, split_seed=5)
    assert other_task_seed.for_seed(0).split_seed != data.for_seed(0).split_seed


def test_run_ids_differ_between_a_fixed_and_a_resampled_split():
    task = get_task("digits-mlp")
    fixed = make_run_spec(task, Method.of(("none", {})), 0)
    varied = make_run_spec(task.with_varied(["split"]), Method.of(("none", {})), 0)
    assert fixed.run_id != varied.run_id
    assert "vary_split" not in fixed.task.to_dict()["data"]  # fixed runs keep the ids they had
    assert varied.task.to_dict()["data"]["vary_split"] is True
    assert "task_split_seed" not in varied.task.to_dict()["data"]


@pytest.mark.parametrize("data, message", [
    ('vary_split = "yes"', "vary_split: expected bool, got str 'yes'"),
    ('split_seed = "run"', "split_seed: expected int, got str 'run'"),
    ("task_split_seed = 3", "unknown key 'task_split_seed'"),
])
def test_bad_values_in_a_task_file_are_clear_errors(data, message):
    text = f'name = "t"\n[data]\nsource = "digits"\n{data}\n[model]\narch = "mlp"\nsizes = [64, 10]\n'
    with pytest.raises(UsageError, match=message):
        parse_task(text, "t.toml")


def test_a_task_file_may_resample_its_split():
    text = 'name = "t"\n[data]\nsource = "digits"\nvary_split = true\n[model]\narch = "mlp"\nsizes = [64, 10]\n'
    assert parse_task(text, "t.toml").data.vary_split


def test_data_sets_with_an_official_test_set_refuse_a_resampled_split():
    with pytest.raises(UsageError, match="'cifar10' has an official test set"):
        get_task("cifar10-resnet18").with_varied(["split"])
    text = ('name = "t"\n[data]\nsource = "mnist"\nflatten = true\nvary_split = true\n'
            '[model]\narch = "mlp"\nsizes = [784, 10]\n')
    with pytest.raises(UsageError, match="'mnist' has an official test set"):
        parse_task(text, "t.toml")
    with pytest.raises(UsageError, match="unknown source of variation; valid: split"):
        get_task("digits-mlp").with_varied(["data"])


def _records(folder):
    return [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]


def test_run_vary_split_shares_each_seeds_split_among_methods_and_the_report_says_so(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(["run", "-p", "l2", "--seeds", "2", "--vary", "split", *FAST, "--results", str(results)]) == 0
    records = _records(results)
    assert len(records) == 4 and all(r["task_spec"]["data"]["vary_split"] for r in records)
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], set()).add(r["split_seed"])
    assert all(len(seeds) == 1 for seeds in by_seed.values())  # none and l2 of one seed: one split
    assert by_seed[0] != by_seed[1]
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "reports"), "--name", "x",
                 "--no-plots"]) == 0
    text = (tmp_path / "reports" / "x" / "index.md").read_text()
    assert "and the train/val/test split (each seed its own" in text
    assert "verdicts are about the data distribution" in text
    assert "Verdicts are about the data distribution (each seed drew" in text  # the leaderboard's clause
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["variation"]["tasks"] == {"digits-mlp": "resampled"}


def test_a_matrix_vary_key_gives_the_runs_of_run_vary_split(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('seeds = 2\nvary = ["split"]\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\n')
    common = ["--epochs", "1", "--subset", "200", "--dry-run", "--json", "--results", str(tmp_path / "r")]

    def ids(*args):
        assert main(["run", *args, *common]) == 0
        return sorted(r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"])

    from_file = ids("--matrix", str(matrix))
    from_command = ids("-p", "l2", "--seeds", "2", "--task", "digits-mlp", "--vary", "split")
    fixed = ids("-p", "l2", "--seeds", "2", "--task", "digits-mlp")
    assert from_file == from_command and not set(from_file) & set(fixed) and len(fixed) == 4
    matrix.write_text('seeds = 2\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\nvary = ["split"]\n')
    assert ids("--matrix", str(matrix)) == from_command  # a group's own key
    matrix.write_text('seeds = 2\n[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\n')
    assert ids("--matrix", str(matrix), "--vary", "split") == from_command  # the command overrides the file


@pytest.mark.parametrize("text, message", [
    ('vary = "split"\n', 'vary must be a list of strings, e.g. vary = ["split"]'),
    ('vary = ["data"]\n', "vary 'data': unknown source of variation; valid: split"),
])
def test_bad_matrix_vary_values_exit_2(tmp_path, capsys, text, message):
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'seeds = 2\n{text}[[runs]]\ntasks = ["digits-mlp"]\nplugins = ["l2"]\n')
    assert main(["run", "--matrix", str(matrix), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_vary_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "-p", "l2", "--task", "digits-mlp", "--vary", "data"])
    assert exc.value.code == 2 and "invalid choice: 'data'" in capsys.readouterr().err


def _table(specs: dict[str, list[bool]]) -> pl.DataFrame:
    rows = [{"task": task, "task_spec": json.dumps({"data": {"source": "x", **({"vary_split": True} if v else {})}}),
             "seed": seed} for task, kinds in specs.items() for v in kinds for seed in (0, 1)]
    return pl.DataFrame(rows)


def test_the_report_sentence_says_what_the_seeds_varied():
    fixed = seeds_varied(_table({"a": [False], "b": [False]}))
    assert "the train/val/test split was fixed (one test set per task" in fixed["text"]
    assert "verdicts are about these test sets" in fixed["text"] and "data distribution" not in fixed["text"]
    resampled = seeds_varied(_table({"a": [True], "b": [True]}))
    assert resampled["text"].startswith("Seeds varied: initialization, data order")
    assert "and the train/val/test split" in resampled["text"] and "data distribution" in resampled["text"]
    mixed = seeds_varied(_table({"a": [True], "b": [False], "c": [False, True]}))
    assert "resampled per seed on a (verdicts about the data distribution)" in mixed["text"]
    assert "fixed on b (verdicts about its test set)" in mixed["text"] and "both on c" in mixed["text"]
    assert split_modes(_table({"a": [True], "c": [False, True]})) == {"a": "resampled", "c": "both"}
    assert seeds_varied(pl.DataFrame()) is None


def test_tuning_runs_count_only_for_a_task_without_report_runs():
    table = pl.concat([_table({"a": [False]}),
                       _table({"a": [True]}).with_columns(pl.col("seed") + 1_000_000)])
    assert split_modes(table) == {"a": "fixed"}
    assert split_modes(table.filter(pl.col("seed") >= 1_000_000)) == {"a": "resampled"}


def test_the_rendered_report_carries_the_sentence_near_the_top():
    from benchsuite.report.analysis import analyze
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import report_blocks

    analysis = analyze(pl.DataFrame())
    assert "Seeds varied" not in to_markdown(report_blocks(analysis, "t"))  # older stats.json: no sentence
    analysis["variation"] = seeds_varied(_table({"a": [False]}))
    blocks = report_blocks(analysis, "t")
    assert blocks[3].text == analysis["variation"]["text"]
