"""The README's library example runs as written and does what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def library_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- library-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its library example"
    return match.group(1)


def test_readme_library_example_runs_and_prunes_half_the_filters():
    namespace: dict = {}
    exec(compile(library_example(), str(README), "exec"), namespace)
    pruner, model = namespace["pruner"], namespace["model"]
    assert sorted(namespace["masks"]) == ["0.weight", "3.weight"]
    assert pruner.sparsity()["total"] == 0.5
    for index, filters in ((0, 16), (3, 32)):
        zero_filters = (model[index].weight.detach().flatten(1).abs().sum(dim=1) == 0).sum()
        assert int(zero_filters) == filters // 2
    assert torch.count_nonzero(model[8].weight) == model[8].weight.numel()  # excluded
    assert "masks" in namespace["state"]
