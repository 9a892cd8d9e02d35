"""The results store: atomic records, resumability, tables."""

import json

import polars as pl

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
    (tmp_path / "runs" / ".xyz.123.tmp").write_text('{"run_id": "xyz", "sta')
    assert [r["run_id"] for r in store.records()] == ["abc"]
    assert store.clean_partial() == 1
    assert not list((tmp_path / "runs").glob("*.tmp"))


def test_a_torn_record_is_set_aside_and_the_run_counts_as_not_done(tmp_path):
    store = Store(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "torn.json").write_text('{"run_id": "torn", "sta')
    assert not store.is_done("torn")
    assert (tmp_path / "runs" / "torn.corrupt").exists()


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
