"""Presets state only what differs from the option they build on, and compose to exactly what
tests/composed_configs.json records (the presets as they were before they inherited)."""

from __future__ import annotations

import json

import pytest

from composed_configs import CONF, RECORD, cases, composed, expected, flat

RECORDED = json.loads(RECORD.read_text())
CASES = cases()


def test_every_option_of_every_group_is_recorded():
    assert sorted(CASES) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_composed_config_is_the_recorded_one(name):
    assert flat(composed(CASES[name])) == expected(RECORDED, name)
