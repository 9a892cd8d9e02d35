"""The results store: atomic records, resumability, tables."""

import json
import os
import stat

import polars as pl
import pytest

from benchsuite.errors import UsageError
from benchsuite.store import Store
from benchsuite.testing import run_task, tiny_task_spec


def _record(run_id="abc", status="finished"):
    record = run_task("none", tiny_task_spec(epochs=1)).record
    record.update(run_id=run_id, status=status)
    return record


def test_put_get_roundtrip_and_done_status(tmp_path):
    store = Store(tmp_path)
    record = _record()
    path = store.put(record)
    assert path == tmp_path / "runs" / "abc.json"
    assert store.get("abc")["metrics"] == json.loads(json.dumps(record["metrics"]))
    assert store.is_done("abc")
    store.put(_record("def", "failed"))
    assert not store.is_done("def")
    store.put(_record("ghi", "diverged"))
    assert store.is_done("ghi")
    assert not store.is_done("missing")


def test_writes_leave_no_temporary_files(tmp_path):
    store = Store(tmp_path)
    store.put(_record())
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["abc.json"]


def test_stray_temporary_files_are_ignored_and_cleaned(tmp_path):
    store = Store(tmp_path)
    store.put(_record())
    (tmp_path / "runs" / ".xyz.json.123.ab12cd34.tmp").write_text('{"run_id": "xyz", "sta')
    assert [r["run_id"] for r in store.records()] == ["abc"]
    assert store.clean_partial() == 1
    assert not list((tmp_path / "runs").glob("*.tmp"))


def test_temporary_files_of_a_claimed_run_are_left_alone(tmp_path):
    """Another process writing run xyz holds its claim: its temporary file is not stale."""
    store = Store(tmp_path)
    (tmp_path / "runs").mkdir()
    tmp = tmp_path / "runs" / ".xyz.json.123.ab12cd34.tmp"
    tmp.write_text("{")
    other = Store(tmp_path)
    with other.claim("xyz") as held:
        assert held
        assert store.clean_partial() == 0 and tmp.exists()
        with store.claim("xyz", wait=False) as second:
            assert second is False
    assert store.clean_partial() == 1 and not tmp.exists()


def test_checkpoints_of_stored_runs_are_removed(tmp_path):
    store = Store(tmp_path)
    store.put(_record("abc"))
    store.checkpoint_path("abc").parent.mkdir(parents=True)
    store.checkpoint_path("abc").write_bytes(b"state")
    store.checkpoint_path("live").write_bytes(b"state")  # a run not stored yet keeps its checkpoint
    assert store.clean_partial() == 1
    assert not store.checkpoint_path("abc").exists() and store.checkpoint_path("live").exists()


def test_files_honor_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = Store(tmp_path).put(_record())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_torn_record_is_reported_not_done_and_set_aside_when_rerun(tmp_path):
    messages = []
    store = Store(tmp_path, report=messages.append)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "torn.json").write_text('{"run_id": "torn", "sta')
    assert not store.is_done("torn")
    assert len(messages) == 1 and "torn.json: not valid JSON" in messages[0]
    assert (tmp_path / "runs" / "torn.json").exists()  # reading never modifies the store
    assert store.set_aside("torn") == tmp_path / "runs" / "torn.json.1.corrupt"
    # a second corrupt record for the same run does not overwrite the first
    (tmp_path / "runs" / "torn.json").write_text("[1, 2")
    assert store.set_aside("torn") == tmp_path / "runs" / "torn.json.2.corrupt"
    assert (tmp_path / "runs" / "torn.json.1.corrupt").read_text() == '{"run_id": "torn", "sta'
    assert "moved to torn.json.2.corrupt" in messages[-1]


@pytest.mark.parametrize("content, why", [
    ("[1, 2, 3]", "a JSON list"),
    ('{"status": "finished"}', "no 'run_id'"),
    ('{"title": "my notes"}', "no 'run_id'"),
    ("42", "a JSON int"),
])
def test_valid_json_that_is_not_a_record_is_ignored(tmp_path, content, why):
    messages = []
    store = Store(tmp_path, report=messages.append)
    store.put(_record("good"))
    (tmp_path / "runs" / "notes.json").write_text(content)
    assert [r["run_id"] for r in store.records()] == ["good"]
    assert store.table().height == 1
    assert not store.is_done("notes")
    assert any("notes.json" in m and why in m for m in messages)


def test_a_record_under_another_runs_name_is_not_trusted(tmp_path):
    messages = []
    store = Store(tmp_path, report=messages.append)
    store.put(_record("real"))
    (tmp_path / "runs" / "copy.json").write_bytes((tmp_path / "runs" / "real.json").read_bytes())
    assert not store.is_done("copy")
    assert [r["run_id"] for r in store.records()] == ["real"]  # the seed is not counted twice
    assert any("holds the record of run 'real'" in m for m in messages)


def test_a_folder_named_like_a_record_is_ignored(tmp_path):
    messages = []
    store = Store(tmp_path, report=messages.append)
    store.put(_record("good"))
    (tmp_path / "runs" / "x.json").mkdir()
    assert [r["run_id"] for r in store.records()] == ["good"]
    assert any("x.json: a folder" in m for m in messages)


@pytest.mark.parametrize("change, why", [
    ({"curves": {"epoch": 1}}, "'curves' is not a list of rows with their epoch"),
    ({"curves": [{"train_loss": 1.0}]}, "'curves' is not a list of rows with their epoch"),
    ({"plugin_versions": "0.1.0"}, "'plugin_versions' does not map names to version strings"),
    ({"hyperparameters": {"none": 3}}, "'hyperparameters' is not an object per plugin"),
    ({"timings": [1, 2]}, "'timings' is not an object"),
    ({"record_format": "2"}, "'record_format' is '2', expected a positive integer"),
    ({"record_format": 0}, "'record_format' is 0, expected a positive integer"),
])
def test_a_record_with_a_malformed_part_is_ignored_by_every_reader(tmp_path, change, why):
    """A record otherwise valid, with a part every reader relies on in another shape (a
    foreign tool's file, a later schema): ignored with a warning, never a crash later in
    the summary, the report's plots or the analysis."""
    from benchsuite.cli import main

    messages = []
    store = Store(tmp_path / "results", report=messages.append)
    store.put(_record("good"))
    store.put(_record("odd") | change)
    assert [r["run_id"] for r in store.records()] == ["good"] and not store.is_done("odd")
    assert any("odd.json" in m and why in m for m in messages), messages
    results = str(tmp_path / "results")
    assert main(["results", "--summary", "--results", results]) == 0
    assert main(["leaderboard", "--results", results, "--format", "md"]) == 0
    assert main(["report", "--results", results, "--name", "r", "--out", str(tmp_path / "report")]) == 0


def test_a_record_of_a_newer_format_is_ignored_kept_and_never_run_over(tmp_path, capsys):
    """A store shared with a newer benchsuite: its records are warned about and left out by
    readers, and ``run`` stops before training instead of setting them aside or replacing
    them (which would lose them, or mix two layouts in one store)."""
    from benchsuite.cli import main

    results = tmp_path / "results"
    argv = ["run", "-p", "none", "--seeds", "2", "--task", "digits-mlp", "--epochs", "1", "--subset", "200",
            "--quiet", "--results", str(results)]
    assert main(argv) == 0
    paths = sorted((results / "runs").glob("*.json"))
    assert [json.loads(p.read_text())["record_format"] for p in paths] == [1, 1]
    newer = json.loads(paths[0].read_text()) | {"record_format": 2, "curves": "elsewhere"}
    paths[0].write_text(json.dumps(newer))
    before = {p: p.read_bytes() for p in paths}
    capsys.readouterr()

    assert main(["results", "--results", str(results), "--json"]) == 0
    out, err = capsys.readouterr()
    assert [row["run_id"] for row in json.loads(out)] == [paths[1].stem]
    assert "written by a newer benchsuite (record format 2; this version reads up to 1)" in err
    for extra in ([], ["--dry-run"], ["--force"]):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert "1 record(s) were written by a newer benchsuite" in err and "Nothing was run or changed" in err
    assert {p: p.read_bytes() for p in paths} == before
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted(p.name for p in paths)


def test_a_number_beyond_64_bits_is_not_a_record(tmp_path):
    messages = []
    store = Store(tmp_path, report=messages.append)
    store.put(_record("good"))
    text = (tmp_path / "runs" / "good.json").read_text()
    record = json.loads(text)
    record["run_id"], record["metrics"]["n_params"] = "huge", 10**400
    (tmp_path / "runs" / "huge.json").write_text(json.dumps(record))
    assert [r["run_id"] for r in store.records()] == ["good"] and store.table().height == 1
    assert any("huge.json: not valid JSON" in m and "out of range" in m for m in messages)


def test_a_pipe_or_device_named_like_a_record_is_skipped_without_reading_it(tmp_path):
    """A FIFO would block the read forever, /dev/zero never end it: neither is opened."""
    messages = []
    store = Store(tmp_path, report=messages.append)
    store.put(_record("good"))
    os.mkfifo(tmp_path / "runs" / "pipe.json")
    (tmp_path / "runs" / "zeros.json").symlink_to("/dev/zero")
    assert [r["run_id"] for r in store.records()] == ["good"]
    assert not store.is_done("pipe") and not store.is_done("zeros")
    assert sum("not a regular file" in m for m in messages) == 2


def test_a_file_too_large_for_a_record_is_not_read(tmp_path, monkeypatch):
    import benchsuite.store

    monkeypatch.setattr(benchsuite.store.record, "MAX_RECORD_BYTES", 1000)
    messages = []
    store = Store(tmp_path, report=messages.append)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "big.json").write_bytes(b" " * 2000)
    assert list(store.records()) == [] and any("too large for a record" in m for m in messages)


def test_a_finished_record_without_its_metric_is_not_done(tmp_path):
    store = Store(tmp_path, report=lambda m: None)
    store.put(_record("abc") | {"metrics": {}})
    assert not store.is_done("abc")


def test_an_unwritable_results_folder_is_refused_before_training(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UsageError, match="cannot write"):
        Store(tmp_path / "afile" / "results").check_writable()
    Store(tmp_path / "ok").check_writable()
    assert not [p for p in (tmp_path / "ok").rglob("*") if p.is_file()]  # the probe files are gone


def test_table_has_one_row_per_run_with_headline_metrics(tmp_path):
    store = Store(tmp_path)
    store.put(_record("a"))
    store.put(_record("b", "failed") | {"metrics": {}, "error": "RuntimeError: x"})
    table = store.table().sort("run_id")
    assert table.height == 2
    assert table["status"].to_list() == ["finished", "failed"]
    assert table["metric"].to_list() == ["accuracy", "accuracy"]
    assert 0 <= table["test"][0] <= 1 and table["test"][1] is None
    assert table["error"][1] == "RuntimeError: x"
    assert table["step_ms"][0] > 0
    record = store.get("a")
    assert table["test_last"][0] == record["curves"][-1]["test_accuracy"]
    assert table["test_last"][1] is None  # failed runs have no last-epoch score
    assert table.schema["seed"] == pl.Int64


def test_results_reads_a_thousand_runs_without_torch_scipy_or_the_engine(tmp_path):
    """The read-only `results` command imports the store and the summary only: on 1000
    runs it answers in well under a second of its own time (the interpreter aside)."""
    import subprocess
    import sys

    from benchsuite.testing import synthetic_record

    store = Store(tmp_path / "r")
    for i in range(1000):
        store.put(synthetic_record(f"t{i % 10}", ("none", "l2", "wd")[i % 3], i // 30, 0.5 + i * 1e-4))
    probe = (
        "import sys, time, io, contextlib\n"
        "from benchsuite.cli import main\n"
        "start = time.perf_counter()\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    assert main(['results', '--results', {str(tmp_path / 'r')!r}, '--summary']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'scipy', 'benchsuite.execution.engine') if m in sys.modules)\n"
        "print(time.perf_counter() - start, heavy)\n"
        "print(out.getvalue().count('accuracy ↑'))\n"
    )
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    seconds, loaded = lines[0].split(" ", 1)
    assert loaded == "[]"
    assert int(lines[1]) == 30  # 10 tasks x 3 methods
    assert float(seconds) < 3.0  # about 0.5 s on a 2-core machine; generous for loaded CI workers


def test_writers_checking_one_folder_at_once_do_not_trip_over_each_other(tmp_path):
    """The ranks of a distributed run check the results folder together: each write test
    has its own file, so one writer never removes another's before that one's unlink."""
    import threading

    from benchsuite.store import Store

    errors = []

    def check():
        try:
            for _ in range(200):
                Store(tmp_path / "results").check_writable()
        except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path):
    """ENOSPC comes without a file name; the error names the record being written, and no
    temporary file is left."""
    import errno

    from benchsuite.store.files import atomic_write

    def full(fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "runs" / "abc.json", full)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "runs" / "abc.json")
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_bad_file_is_warned_about_once_per_process(tmp_path, capsys):
    """One command reads the store through several Store objects (checks, the run, the
    summary): each bad file's warning is printed once, and a new problem of the same file
    again."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "torn.json").write_text('{"run_id": "torn", "sta')
    for _ in range(3):
        assert list(Store(tmp_path).records()) == []
    assert capsys.readouterr().err.count("torn.json: not valid JSON") == 1
    (tmp_path / "runs" / "torn.json").write_text("[1]")
    assert list(Store(tmp_path).records()) == []
    assert capsys.readouterr().err.count("torn.json: not a record (a JSON list)") == 1
