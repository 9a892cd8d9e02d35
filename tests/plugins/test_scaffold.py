"""`benchsuite new-plugin`: the package it writes is complete and passes its own tests."""

import os
import subprocess
import sys
import tomllib

import pytest

from benchsuite.cli import main


def install_without_building(package, site):
    """What pip leaves in site-packages for this package (its module and a dist-info with
    the entry point), so the test needs no build backend from the network."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    module = project["entry-points"]["benchsuite"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("[benchsuite]\n" + "".join(f"{k} = {v}\n" for k, v in module.items()))
    for source in package.glob("*.py"):
        (site / source.name).write_text(source.read_text())


def test_a_new_plugin_installs_and_passes_its_own_tests(tmp_path, capsys):
    assert main(["new-plugin", "max_norm", "--out", str(tmp_path)]) == 0
    package = tmp_path / "max_norm"
    assert "pip install -e" in capsys.readouterr().out
    assert sorted(p.name for p in package.iterdir()) == ["README.md", "benchsuite_max_norm.py", "pyproject.toml",
                                                          "tests"]
    readme = (package / "README.md").read_text()
    for section in ("## Method", "## Hyperparameters", "## The paper's setup", "## Choices where the paper is silent"):
        assert section in readme
    site = tmp_path / "site"
    install_without_building(package, site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                           env=env, capture_output=True, text=True, cwd=package)
    assert tests.returncode == 0, tests.stdout[-2000:]
    assert "5 passed" in tests.stdout  # check_conformance("max_norm") found it through its entry point


@pytest.mark.parametrize("name, message", [("Max", "lowercase"), ("1x", "lowercase"), ("class", "lowercase")])
def test_a_bad_plugin_name_is_refused(tmp_path, capsys, name, message):
    assert main(["new-plugin", name, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_an_existing_folder_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    assert main(["new-plugin", "mine", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_fixtures_plugin_is_opt_in_and_costs_no_torch_import(tmp_path):
    """Installing benchsuite registers no pytest plugin: a session that does not ask has no
    benchsuite fixtures; one that asks (-p benchsuite.testing.fixtures) has them, and does not import
    torch (seconds) until a test uses one."""
    (tmp_path / "test_probe.py").write_text(
        "import os, sys\n\n"
        "def test_probe(request):\n"
        "    asked = os.environ['ASKED'] == '1'\n"
        "    assert request.config.pluginmanager.has_plugin('benchsuite.testing.fixtures') is asked\n"
        "    assert 'torch' not in sys.modules and 'benchsuite.testing.helpers' not in sys.modules\n"
    )
    for asked, extra in (("0", []), ("1", ["-p", "benchsuite.testing.fixtures"])):
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(tmp_path)],
                                cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "ASKED": asked})
        assert result.returncode == 0, result.stdout[-2000:]
