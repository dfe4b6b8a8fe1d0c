"""Every `python run.py ...` command shown in the README and in docs/*.md (and the `run.py ...`
part of every `torchrun ... run.py ...` one) composes and passes the config checks with today's
config (a sweep is checked with the first value of each list)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from framework.config import validate

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def page_commands(page: Path) -> list[str]:
    commands = []
    for line in page.read_text().splitlines():
        line = line.strip()
        for found in re.findall(r"(?:^|`)(python run\.py[^`#\\]*)", line):
            commands.append(found.strip())
        for found in re.findall(r"(?:^|`)(?:OMP_NUM_THREADS=\d+ )?torchrun [^`#\\]*?run\.py([^`#\\]*)", line):
            commands.append(f"python run.py{found}".strip())
    return commands


def overrides_of(command: str) -> list[str]:
    words = shlex.split(command)[2:]
    if "--config-dir" in words or "--help" in words or any("my_net" in w for w in words):
        return []  # the bring-your-own commands need that project: tests/test_bring_your_own.py
    sweep = "-m" in words
    picked = []
    for word in words:
        if word == "-m" or word.startswith("group") or "=" not in word:
            continue
        key, value = word.split("=", 1)
        if sweep and "," in value and not value.startswith(("[", "{")):
            value = value.split(",")[0]
        picked.append(f"{key}={value}")
    return picked


COMMANDS = [
    pytest.param(command, id=f"{page.relative_to(ROOT)}: {command}")
    for page in PAGES
    for command in page_commands(page)
    if overrides_of(command) or command == "python run.py"
]


def test_the_readme_and_docs_show_commands():
    readme = [c for c in page_commands(ROOT / "README.md") if overrides_of(c)]
    assert len(readme) >= 5
    assert len(COMMANDS) >= 30
    assert any("torchrun" in line for line in (ROOT / "docs" / "distributed.md").read_text().splitlines())


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_composes_and_validates(compose_config, command, tmp_path):
    overrides = [o if "dataset.root=" not in o else f"dataset.root={tmp_path}" for o in overrides_of(command)]
    if "dataset=imagefolder" in overrides and not any(o.startswith("dataset.root=") for o in overrides):
        overrides.append(f"dataset.root={tmp_path}")
    validate(compose_config(overrides))
