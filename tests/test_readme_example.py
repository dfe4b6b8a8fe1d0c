"""The README's library example runs as written and does what its comments say; every other
block marked ``<!-- library-example -->`` in docs/*.md runs too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = re.compile(r"<!-- library-example[^>]*-->\s*```python\n(.*?)```", re.S)


def library_example() -> str:
    match = EXAMPLE.search(README.read_text())
    assert match, "README lost its library example"
    return match.group(1)


DOCS_EXAMPLES = [
    pytest.param(page, block, id=f"{page.name}#{number}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for number, block in enumerate(EXAMPLE.findall(page.read_text()))
]


@pytest.mark.parametrize("page, block", DOCS_EXAMPLES)
def test_docs_library_examples_run(page, block):
    exec(compile(block, str(page), "exec"), {})


def test_readme_library_example_runs_and_prunes_half_the_filters():
    namespace: dict = {}
    exec(compile(library_example(), str(README), "exec"), namespace)
    model, small = namespace["model"], namespace["small"]
    # coupled: each conv's filters with their bias and BatchNorm, and the columns of their reader
    assert sorted(namespace["masks"]) == sorted(
        ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "4.weight", "4.bias", "8.weight"]
    )
    for index, filters in ((0, 16), (3, 32)):
        zero_filters = (model[index].weight.detach().flatten(1).abs().sum(dim=1) == 0).sum()
        assert int(zero_filters) == filters // 2
    assert bool(model[8].weight.ne(0).any(dim=1).all())  # no class removed
    assert (model[8].weight == 0).all(dim=0).sum() == 16  # the columns of block 2's removed filters
    assert "masks" in namespace["state"]
    assert (small[0].out_channels, small[3].out_channels, small[8].in_features) == (8, 16, 16)
    model.eval(), small.eval()
    inputs = namespace["inputs"]
    with torch.no_grad():
        assert torch.allclose(model(inputs), small(inputs), atol=1e-5)
