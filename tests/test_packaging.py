"""The distribution installs every package of the tree (a missing entry only shows up in
a non-editable install, where `import gcop` then fails)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, roots = set(config["packages"]), config["package-dir"]
    on_disk = set()
    for top in ("gcop", "gcop.optimizers", "gcop.programs"):
        folder = ROOT / roots[top]
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if top == "gcop" and relative and relative[0] in ("optimizers", "programs"):
                continue  # mapped to their own folders
            on_disk.add(".".join((top, *relative)))
    assert on_disk == listed
