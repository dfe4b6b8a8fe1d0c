"""Every `python run.py ...` command shown in the README composes and passes the config checks
with today's config (a sweep is checked with the first value of each list)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from framework.config import validate

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    commands = []
    for line in README.read_text().splitlines():
        for found in re.findall(r"(?:^|`)(python run\.py[^`#\\]*)", line.strip()):
            commands.append(found.strip())
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


COMMANDS = [c for c in readme_commands() if overrides_of(c) or c == "python run.py"]


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes_and_validates(compose_config, command, tmp_path):
    overrides = [o if "dataset.root=" not in o else f"dataset.root={tmp_path}" for o in overrides_of(command)]
    if "dataset=imagefolder" in overrides and not any(o.startswith("dataset.root=") for o in overrides):
        overrides.append(f"dataset.root={tmp_path}")
    validate(compose_config(overrides))
