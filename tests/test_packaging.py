"""Every package directory ships: `pyproject.toml` lists packages explicitly (the `backends/` and
`tools/` folders are mapped under `pipo_agent`), so a new subpackage must be added there too."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"pipo_agent": "pipo_agent", "backends": "pipo_agent.backends", "tools": "pipo_agent.tools"}


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed
