"""A compression ratio -> the pruner's final_sparsity, solved on the thinned model's cost."""

import pytest
import torch

from framework.analysis.compression import remaining_cost, sparsity_for_ratio
from framework.analysis.cost import count_params
from framework.errors import ConfigError
from framework.models import Conv1dNet


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_solved_sparsity_is_the_smallest_that_reaches_the_ratio():
    model = Conv1dNet(width=0.25)
    dense = count_params(model)
    sparsity, reached = sparsity_for_ratio(model, {"structure": "filter"}, 4.0, (1, 40), "params", steps=10)
    assert reached >= 4.0 and reached == pytest.approx(
        dense / remaining_cost(model, {"structure": "filter"}, sparsity, (1, 40), "params")
    )
    assert reached < 4.8  # channel granularity, not a much larger cut
    below = dense / remaining_cost(model, {"structure": "filter"}, sparsity - 0.02, (1, 40), "params")
    assert below < 4.0  # a little less sparsity no longer reaches it
    assert sparsity > 1 - 1 / 4.0**0.5 - 0.1  # a conv loses filters and input channels: not 1 - 1/ratio


def test_an_unreachable_ratio_is_one_line():
    with pytest.raises(ConfigError) as error:
        sparsity_for_ratio(Conv1dNet(width=0.25), {"structure": "filter"}, 10_000.0, (1, 40), "macs")
    assert "card.ratio=10000 cannot be reached" in str(error.value) and "\n" not in str(error.value)


def test_a_global_ranking_is_solved_as_the_run_will_prune():
    from framework.pruning.scores.criteria import L1Criterion

    torch.manual_seed(0)
    model = Conv1dNet(width=0.25)
    ranking = {"criterion": L1Criterion(), "scope": "global", "max_layer_sparsity": None}
    layer, _ = sparsity_for_ratio(model, {"structure": "filter"}, 4.0, (1, 40), "params", steps=8)
    sparsity, reached = sparsity_for_ratio(
        model, {"structure": "filter"}, 4.0, (1, 40), "params", steps=8, ranking=ranking
    )
    assert reached >= 4.0
    assert reached == pytest.approx(
        count_params(model) / remaining_cost(model, {"structure": "filter"}, sparsity, (1, 40), "params", ranking)
    )
    # the global ranking spends channels where they are cheap: the layer solution would miss the ratio
    assert sparsity != pytest.approx(layer, abs=0.01)
