"""The import paths of release 0.2 that plugins use keep working for one release, with a warning."""

import importlib
import json
import subprocess
import sys

import pytest

from benchsuite.compat import MOVED


def probe_of(old: str) -> str:
    """Python that imports ``old`` and checks it warns and is the module at its new path."""
    return (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    module = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "assert module is new, (module, new)\n"
        "messages = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        f"assert any({old!r} in m and {MOVED[old]!r} in m for m in messages), messages\n"
    )


# Each probe needs an interpreter that has imported no benchsuite module yet. Most old paths
# load torch (seconds), so one process imports torch alone, once, and runs each probe in a
# child forked from it: the child imports benchsuite and the old path afresh.
FORKED_PROBES = """
import json, os, sys, traceback
import torch  # noqa: F401 (loaded once, before any benchsuite module, for every child)

outcomes = {}
for old, probe in json.loads(sys.stdin.read()).items():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 2)
        code = 0
        try:
            exec(compile(probe, "<probe>", "exec"), {"__name__": "__main__"})
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    outcomes[old] = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), error]
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def probed() -> dict:
    """Old path -> (exit code, stderr) of its probe, each in a fresh child process."""
    probes = json.dumps({old: probe_of(old) for old in MOVED})
    done = subprocess.run([sys.executable, "-c", FORKED_PROBES], input=probes, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_is_the_module_at_its_new_path(old, probed):
    code, stderr = probed[old]
    assert code == 0, stderr


def test_a_name_imported_through_an_old_path_is_the_same_object(monkeypatch):
    monkeypatch.delitem(sys.modules, "benchsuite.weights", raising=False)  # warned once per process
    with pytest.warns(DeprecationWarning, match="benchsuite.toolkit.weights"):
        from benchsuite.weights import weight_modules  # noqa: F401 (the old path under test)
    assert weight_modules is importlib.import_module("benchsuite.toolkit.weights").weight_modules


def test_names_that_kept_their_path_need_no_warning(recwarn):
    from benchsuite.store import Store  # noqa: F401
    from benchsuite.testing import check_conformance  # noqa: F401

    assert not [w for w in recwarn if w.category is DeprecationWarning and "moved to" in str(w.message)]


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("benchsuite.no_such_module")


def test_the_warning_names_the_importing_line_and_shows_by_default(tmp_path):
    script = tmp_path / "old_plugin.py"
    script.write_text("import benchsuite.reparam\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert f"{script}:1: DeprecationWarning: benchsuite.reparam moved to benchsuite.toolkit.reparam" in done.stderr
