"""tests/perf/all.py's read-only rows: what they measure, on a small store."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "perf" / "all.py"


def load_script():
    sys.path.insert(0, str(SCRIPT.parent))  # all.py imports its sibling scripts
    try:
        spec = importlib.util.spec_from_file_location("perf_all", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_read_only_rows_load_without_torch_and_build_one_runs_table_per_command():
    rows = load_script().read_only_rows(runs=12)
    names = [name for name, *_ in rows]
    assert names[0].startswith("load a 12-run store") and len(rows) == 4
    load_seconds, load_goal, load_note = rows[0][1:]
    assert load_goal == 1.0 and 0 < load_seconds < 60 and load_note == "12 runs, torch imported: False"
    for command, (name, seconds, goal, note) in zip(("results", "leaderboard", "report"), rows[1:]):
        assert f"`benchsuite {command}`" in name and goal is None and seconds > 0
        # each command exits 0, never imports torch, and builds its runs table once
        assert note.startswith("exit 0, torch imported: False,") and note.endswith("runs tables built: 1"), note
