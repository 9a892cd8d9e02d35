"""Install every plugin package under plugins/ into the running environment (editable).

    python tests/plugin_packages.py            # what tox runs before its commands

tox cannot glob its ``deps``, so its environments run this instead of listing each
``plugins/<name>/``: a new plugin folder is installed by the next ``tox`` call, and a plugin
whose installed version differs from its ``pyproject.toml`` (a version bump changes run
identities) is reinstalled. Plugins already installed at their version cost nothing.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plugin_packages(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """Each plugins/<name>/ folder with a pyproject.toml: (project name, version)."""
    found = {}
    for pyproject in sorted((root / "plugins").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        found[pyproject.parent] = (project["name"], project["version"])
    return found


def out_of_date(packages: dict[Path, tuple[str, str]]) -> list[Path]:
    stale = []
    for folder, (name, version) in packages.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            stale.append(folder)
    return stale


def main() -> int:
    stale = out_of_date(plugin_packages())
    if not stale:
        return 0
    print(f"installing {', '.join(p.name for p in stale)} (editable)", file=sys.stderr)
    args = [a for folder in stale for a in ("-e", str(folder))]
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args])


if __name__ == "__main__":
    raise SystemExit(main())
