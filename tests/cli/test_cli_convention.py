"""One command-line convention across every command: --json for machine output, -o/--out
for a path written, -q/--quiet and -v/--verbose, --results with one help; a bare
``benchsuite`` is help, a missing results folder is bad input, old spellings still work for
one release with a notice, and every generated file names both versions."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from benchsuite import __version__
from benchsuite.cli import COMMAND_MODULES, build_parser, main
from benchsuite.cli.common import RESULTS_HELP
from benchsuite.plugins import RESULTS_VERSION, version_text
from benchsuite.store import Store
from benchsuite.testing import synthetic_record

READ_COMMANDS = {"results": [], "prune": [], "report": [], "leaderboard": [], "plan": ["--effect", "1%"],
                 "collect": []}
OLD_SPELLINGS = {"--output", "--export", "--dir", "--format json"}
LABELLED = f"benchsuite {__version__} (package), results format {RESULTS_VERSION}"


def _commands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _visible(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if a.option_strings and a.help != argparse.SUPPRESS]


def test_the_command_table_names_every_command_in_help_order():
    assert list(_commands()) == list(COMMAND_MODULES)
    for name, command in _commands().items():
        assert command.get_default("handler").__module__ == COMMAND_MODULES[name].__name__, name


@pytest.mark.parametrize("name", list(COMMAND_MODULES))
def test_every_command_help_follows_the_convention(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    command = _commands()[name]
    options = {o: a for a in _visible(command) for o in a.option_strings}
    # machine output: --json, never a format choice
    assert not re.search(r"[{,]json[,}]", text)
    if any(a.dest == "json" for a in command._actions):
        assert options["--json"].dest == "json" and "--json" in text
    # written paths: -o/--out, the old spellings hidden
    assert not {"--output", "--export", "--dir"} & set(options)
    if "out" in {a.dest for a in _visible(command)}:
        assert options["--out"] is options["-o"] and options["--out"].metavar in ("FILE", "DIR")
        assert f"-o {options['--out'].metavar}, --out {options['--out'].metavar}" in text
    # every command prints: quiet and verbose everywhere, one or the other
    assert options["-q"] is options["--quiet"] and options["-v"] is options["--verbose"]
    assert "[-q | -v]" in " ".join(text.split())
    # the results folder: one option, one help; the read-only commands check it exists
    if "--results" in options:
        assert options["--results"].help == RESULTS_HELP
    assert bool(command.get_default("reads_results")) == (name in READ_COMMANDS)
    if name in READ_COMMANDS:
        assert "--results" in options


def test_a_bare_benchsuite_prints_the_help_and_exits_0(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: benchsuite") and all(name in out for name in COMMAND_MODULES)
    done = subprocess.run([sys.executable, "-m", "benchsuite"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: benchsuite") and done.stderr == ""


def test_version_names_the_package_and_the_results_format(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == version_text() == LABELLED


@pytest.mark.parametrize("name", sorted(READ_COMMANDS))
def test_a_missing_results_folder_exits_2_naming_it(name, tmp_path, capsys):
    missing = tmp_path / "no-such-results"
    assert main([name, "--results", str(missing), *READ_COMMANDS[name]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"benchsuite {name}: error: no results folder at {missing}" in err
    assert not missing.exists()


def _results(tmp_path):
    store = Store(tmp_path / "results")
    versions = {"benchsuite": RESULTS_VERSION, "none": RESULTS_VERSION}
    for seed in range(3):
        store.put(synthetic_record("digits-mlp", "none", seed, 0.70 + 0.01 * seed, versions=versions))
        store.put(synthetic_record("digits-mlp", "l2", seed, 0.75 + 0.01 * seed,
                                   versions={**versions, "l2": RESULTS_VERSION}))
    return store.root


def test_old_spellings_still_work_hidden_with_a_notice(tmp_path, capsys):
    results = str(_results(tmp_path))
    assert main(["results", "--results", results, "--export", str(tmp_path / "runs.csv")]) == 0
    assert (tmp_path / "runs.csv").read_text().count("\n") == 7
    assert "warning: --export is deprecated" in capsys.readouterr().err
    assert main(["leaderboard", "--results", results, "--format", "json", "--resamples", "1000"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["leaderboard"]
    assert captured.err.count("\n") == 1
    assert "--format json is deprecated and goes in the next release; use --json" in captured.err
    assert main(["leaderboard", "--results", results, "--output", str(tmp_path / "board.md"),
                 "--resamples", "1000"]) == 0
    assert "## Leaderboard" in (tmp_path / "board.md").read_text()
    assert "warning: --output is deprecated and goes in the next release; use -o/--out" in capsys.readouterr().err
    assert main(["new-plugin", "mine", "--dir", str(tmp_path / "plugins"), "-q"]) == 0
    assert (tmp_path / "plugins" / "mine" / "pyproject.toml").is_file()
    captured = capsys.readouterr()
    assert "--dir is deprecated" in captured.err and captured.out == ""  # -q: no note on what was written
    for name in ("results", "leaderboard", "new-plugin"):
        assert not any(old in _commands()[name].format_help() for old in ("--export", "--output", "--dir"))


def test_quiet_and_verbose(tmp_path, capsys):
    results = str(_results(tmp_path))
    args = ["report", "--results", results, "-o", str(tmp_path / "reports"), "--no-plots", "--resamples", "1000"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    assert main(args + ["-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["results", "--results", results, "-v"]) == 0
    assert f"benchsuite results: results folder {results}\n" in capsys.readouterr().err
    assert main(["results", "--results", results, "-o", str(tmp_path / "runs.xlsx"), "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("error: --out '" + str(tmp_path / "runs.xlsx")
                                               + "': use a .csv or .parquet file name\n")
    with pytest.raises(SystemExit) as exc:
        main(["results", "-q", "-v"])
    assert exc.value.code == 2


def test_every_generated_file_names_both_versions_labelled(tmp_path, capsys):
    from benchsuite.report import claims_output as claim_mod

    results = str(_results(tmp_path))
    assert main(["report", "--results", results, "-o", str(tmp_path / "reports"), "--name", "v", "--no-plots",
                 "--resamples", "1000", "-q"]) == 0
    folder = tmp_path / "reports" / "v"
    for page in ("index.md", "index.html"):
        text = (folder / page).read_text()
        assert f"by `benchsuite report`; {LABELLED}." in text
        assert f"Plugin versions: results format {RESULTS_VERSION}; l2 {RESULTS_VERSION}; none" in text
        assert f"benchsuite {RESULTS_VERSION};" not in text  # the results format is never called the package
    versions = {"package": __version__, "results_format": RESULTS_VERSION}
    assert json.loads((folder / "stats.json").read_text())["versions"] == versions
    assert main(["leaderboard", "--results", results, "--json", "--resamples", "1000"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == versions
    for fmt in ("md", "html"):
        assert main(["leaderboard", "--results", results, "--format", fmt, "-o", str(tmp_path / f"board.{fmt}"),
                     "--resamples", "1000"]) == 0
        assert f"; {LABELLED}." in (tmp_path / f"board.{fmt}").read_text()
    claim_mod.write([], tmp_path / "claims", [])
    assert f"Written by {LABELLED}." in (tmp_path / "claims" / "index.md").read_text()


def test_claims_that_only_read_a_missing_folder_exit_2(tmp_path, capsys):
    assert main(["claims", "--no-run", "--results", str(tmp_path / "missing")]) == 2
    assert "no results folder at" in capsys.readouterr().err
