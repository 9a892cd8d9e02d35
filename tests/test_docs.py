"""The hook guide stays true: its example runs, and every hook has docs and a test."""

import re
from pathlib import Path

import pytest

from benchsuite.plugins import hook_names, hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "hooks.md"


def _section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    following = text.find("\n## ", start + 1)
    return text[start: following if following != -1 else None]


def _run_guide_example() -> dict:
    """Execute the guide's one complete example; its namespace (``MaxNorm`` and the rest)."""
    (block,) = re.findall(r"```python\n(.*?)```", _section(GUIDE.read_text(), "A complete example"), re.S)
    namespace = {"__name__": "hooks_example"}
    exec(compile(block, str(GUIDE), "exec"), namespace)
    return namespace


def test_complete_example_in_the_guide_runs(capsys):
    _run_guide_example()
    assert capsys.readouterr().out.startswith("finished ")


def test_the_guides_max_norm_bounds_every_conv_filter():
    """The example's constraint is per output unit for conv weights too (4-d: one norm per
    filter over in_channels x kh x kw), not per slice of one dimension."""
    import torch
    from torch import nn

    plugin = _run_guide_example()["MaxNorm"](max_norm=1.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
        plugin.post_step(model=model, optimizer=None, run=None)
    conv, linear = model[0].weight, model[2].weight
    assert conv.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    assert linear.norm(dim=1).max() <= 1.0 + 1e-5
    assert conv.flatten(1).norm(dim=1).min() > 0.99  # scaled to the bound, not below it


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_docs_and_a_test(hook):
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert len(doc.strip().splitlines()) >= 3 and "Returns" in doc, f"hookspec {hook} lacks documentation"
    assert f"## `{hook}`" in GUIDE.read_text(), f"docs/hooks.md has no section for {hook}"
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"def test_hook_{hook}(_\w*)?\(", tests), f"no test_hook_{hook}* test in tests/"


def test_hook_order_in_guide_matches_the_specs():
    spec_order = hookspecs.__doc__[hookspecs.__doc__.index("setup, once per run"):]
    guide_order = _section(GUIDE.read_text(), "Step order")
    numbered = lambda text: re.findall(r"^\s*(\d+)\. (\w+)", text, re.M)  # noqa: E731
    assert numbered(spec_order) == numbered(guide_order)


def test_the_guides_claims_example_parses():
    from benchsuite.runs.claims import parse_claims

    (block,) = re.findall(r"```toml\n(.*?)```", _section(GUIDE.read_text(), "Claims: what your paper says, as tests"),
                          re.S)
    claims = parse_claims(block, "docs/hooks.md", "maxnorm")
    assert [c.direction for c in claims] == ["below", "higher"]
    assert claims[1].train == (("lr", 0.1), ("optimizer", "sgd"))
    # valid for the guide's own example plugin: its tasks exist and every `set` names one of
    # its hyperparameters (a misnamed one would make the claim "invalid")
    import benchsuite.plugins
    from benchsuite.plugins import PluginInfo
    from benchsuite.runs.claims import run_specs

    example = _run_guide_example()["MaxNorm"]
    available = {**benchsuite.plugins.discover(),
                 "maxnorm": PluginInfo(name="maxnorm", factory=example, version="0", distribution="x")}
    for claim in claims:
        specs = run_specs(claim, available)
        assert all(len(runs) == claim.seeds for runs in specs.values()), claim.id


def test_tox_installs_every_plugin_folder():
    """tox runs tests/plugin_packages.py before its commands, which finds every plugins/*/
    package (so both README commands install it and the conformance suite checks it), and
    reinstalls one whose installed version is not its pyproject's."""
    import importlib.util

    assert "python {toxinidir}/tests/plugin_packages.py" in (ROOT / "tox.ini").read_text()
    spec = importlib.util.spec_from_file_location("plugin_packages", ROOT / "tests" / "plugin_packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.plugin_packages()
    assert {p.name for p in found} == {p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml")}
    assert module.out_of_date(found) == []  # this environment has each at its version
    renamed = {folder: (name, version + ".bumped") for folder, (name, version) in found.items()}
    assert module.out_of_date(renamed) == sorted(renamed)


DOCS = ROOT / "docs"
USAGE = DOCS / "usage.md"
# the pages a user reads for commands and options: the README's quick start and the topic pages
USER_PAGES = [ROOT / "README.md", USAGE, DOCS / "statistics.md", DOCS / "results.md", DOCS / "tasks.md",
              DOCS / "cluster.md"]


def test_the_usage_page_names_every_key_a_matrix_file_accepts():
    from benchsuite.runs.matrix import GROUP_KEYS, MATRIX_KEYS

    text = USAGE.read_text()
    start = text.index("Matrix files (`tasks/matrices/*.toml`)")
    paragraph = " ".join(text[start: text.index("\n\n", start)].split())
    missing = sorted(key for key in MATRIX_KEYS | GROUP_KEYS if f"`{key}`" not in paragraph)
    assert not missing, f"docs/usage.md's matrix-file paragraph does not name {missing}"
    assert "Any other key is an error" in paragraph


def test_the_docs_name_every_command_and_the_options_of_run_collect_and_claims():
    """docs/usage.md lists every command; every option of run, collect and claims is named
    on the user's pages (usage.md points to the page that describes the ones it does not)."""
    import argparse

    from benchsuite.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert [name for name in commands if f"benchsuite {name}" not in USAGE.read_text()] == []
    text = "\n".join(page.read_text() for page in USER_PAGES)
    for name in ("run", "collect", "claims"):
        options = [max(a.option_strings, key=len) for a in commands[name]._actions
                   if a.dest != "help" and a.option_strings and a.help != argparse.SUPPRESS]
        assert [o for o in options if not re.search(rf"{o}\b(?!-)", text)] == [], f"benchsuite {name}"


def test_the_documented_exit_codes_are_those_main_returns():
    table = _section(USAGE.read_text(), "Exit codes")
    assert re.findall(r"^\| (\d) \|", table, re.M) == ["0", "1", "2"]


def test_the_docs_count_the_random_streams_seed_streams_makes():
    from benchsuite.execution.engine import seed_streams

    words = {3: "three", 4: "four", 5: "five", 6: "six"}
    count = words[len(seed_streams(0))]
    assert f"drive {count} independent random streams" in (DOCS / "results.md").read_text()


def test_every_relative_link_of_the_readme_and_the_docs_finds_its_page_and_heading():
    """Links between the README and docs/ point to pages that exist and, with a #fragment, to a
    heading (GitHub's anchor: lowercase, punctuation dropped, spaces to hyphens) or an explicit
    anchor there. docs/python-api.md is linked before it exists."""
    pending = {DOCS / "python-api.md"}

    def anchors(page: Path) -> set[str]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        headings = re.findall(r"^#+ (.+)$", text, re.M)
        found = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
        return found | set(re.findall(r'<a id="([^"]+)"', text))

    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if linked in pending:
                continue
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{page.name}: {target}")
    assert broken == []
