"""The report card's computation: selection on validation, rows of mean ± std, bands, files."""

from __future__ import annotations

import statistics

import pytest

from framework.sweeps.card import (
    DENSE,
    SELECTED_EPOCH,
    TOP1_LAST,
    TOP1_SELECTED,
    CardRun,
    Published,
    bands,
    card_rows,
    selected_accuracy,
    toy_line,
)
from framework.sweeps.card_files import Card, write_card


def test_selection_takes_the_best_validation_epoch_at_final_sparsity_never_the_best_test_epoch():
    epochs = [
        {"epoch": 0, "val/top1": 0.99, "test/top1": 0.98, "sparsity/total": 0.0},  # dense: not eligible
        {"epoch": 1, "val/top1": 0.80, "test/top1": 0.95, "sparsity/total": 0.75},  # best test epoch
        {"epoch": 2, "val/top1": 0.90, "test/top1": 0.85, "sparsity/total": 0.75},  # best validation
        {"epoch": 3, "val/top1": 0.90, "test/top1": 0.86, "sparsity/total": 0.75},  # tie: the first wins
        {"epoch": 4, "val/top1": 0.88, "test/top1": 0.87, "sparsity/total": 0.75},
    ]
    assert selected_accuracy(epochs) == {TOP1_LAST: 0.87, TOP1_SELECTED: 0.85, SELECTED_EPOCH: 2.0}
    dense = [
        {"val/top1": 0.5, "test/top1": 0.4},
        {"val/top1": 0.6, "test/top1": 0.3},
        {"val/top1": 0.55, "test/top1": 0.7},
    ]
    assert selected_accuracy(dense) == {TOP1_LAST: 0.7, TOP1_SELECTED: 0.3, SELECTED_EPOCH: 1.0}
    # without a test split the validation split is all there is: both figures are its own
    assert selected_accuracy([{"val/top1": 0.5}, {"val/top1": 0.4}])[TOP1_SELECTED] == 0.5
    assert selected_accuracy([]) == {}


def pruned(method, ratio, seed, top1, params_left, macs_left, finished=True, int8=False):
    metrics = {
        TOP1_LAST: top1 - 0.01,
        TOP1_SELECTED: top1,
        "thin/params/dense": 1000.0,
        "thin/params/thinned": params_left,
        "thin/macs/dense": 8000.0,
        "thin/macs/thinned": macs_left,
        "deploy/latency_ms_b1/thinned_fp32": 0.2,
        "deploy/latency_ms_b1/fused_onnx_fp32": 0.1,
    }
    if int8:
        metrics["deploy/latency_ms_b1/int8_onnx"] = 0.05
    return CardRun(f"{method}-{ratio}-{seed}", method, ratio, seed, finished, metrics)


def test_rows_are_mean_and_std_over_seeds_from_the_child_metrics():
    runs = [
        CardRun(f"d{s}", DENSE, 1, s, True, {TOP1_LAST: 0.9 + s / 100, TOP1_SELECTED: 0.91 + s / 100}) for s in range(3)
    ]
    runs += [pruned("l1", 4, s, 0.8 + s / 50, 250.0 + s, 2000.0, int8=True) for s in range(3)]
    runs += [pruned("l1", 2, s, 0.85, 500.0, 4000.0) for s in range(2)]
    runs += [pruned("random", 2, 0, 0.7, 500.0, 4000.0), pruned("random", 2, 1, 0.0, 1.0, 1.0, finished=False)]
    rows = card_rows(runs)
    assert [(r.method, r.ratio, r.runs, r.failed) for r in rows] == [
        (DENSE, 1, 3, 0),
        ("l1", 2, 2, 0),
        ("l1", 4, 3, 0),
        ("random", 2, 1, 1),
    ]
    l1_4 = rows[2].figures
    assert l1_4["top1_selected"].mean == pytest.approx(statistics.fmean([0.8, 0.82, 0.84]))
    assert l1_4["top1_selected"].std == pytest.approx(statistics.stdev([0.8, 0.82, 0.84]))
    assert l1_4["compression"].mean == pytest.approx(statistics.fmean([1000 / 250, 1000 / 251, 1000 / 252]))
    assert l1_4["speedup"].mean == 4.0 and l1_4["speedup"].std == 0.0
    assert l1_4["latency_deployed_ms"].mean == pytest.approx(
        0.05
    )  # the int8 model is the deployed one when there is one
    assert rows[1].figures["latency_deployed_ms"].mean == pytest.approx(0.1)
    assert rows[0].figures["compression"].mean == 1.0 and rows[0].figures["speedup"].mean == 1.0
    assert rows[3].figures["top1_selected"].std is None  # one finished seed: no std, never a 0 that reads as certain
    curves = {b.method: b for b in bands(rows, "speedup")}
    assert curves["l1"].x == [2.0, 4.0] and curves["l1"].mean[1] == pytest.approx(0.82)


def test_toy_line_names_the_toy_pairs():
    assert toy_line("mnist1d").startswith("Toy pair: yes") and toy_line("digits").startswith("Toy pair: yes")
    assert toy_line("cifar10").startswith("Toy pair: no")


def test_card_files_markdown_png_and_an_offline_page(tmp_path):
    runs = [CardRun(f"d{s}", DENSE, 1, s, True, {TOP1_LAST: 0.9, TOP1_SELECTED: 0.9 + s / 100}) for s in range(2)]
    runs += [
        pruned(m, r, s, 0.8 - r / 100, 1000 / r, 8000 / r) for m in ("l1", "random") for r in (2, 8) for s in range(2)
    ]
    published = [Published("Distiller ResNet-20", "distiller docs", 0.9178, 0.9134, None, 1.35)]
    card = Card("test card", "mnist1d", "params", card_rows(runs), published, ["a note"])
    markdown, files = write_card(card, tmp_path)
    assert [f.name for f in files] == ["report_card.md", "report_card.png", "report_card.html"]
    assert (tmp_path / "report_card.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = markdown.splitlines()
    assert "Toy pair: yes" in markdown and "never the test set's best epoch" in markdown
    l1_8 = next(line for line in lines if line.startswith("| l1 | 8 |"))
    assert "| 8.00 ± 0.00 | 8.00 ± 0.00 |" in l1_8 and "| 71.0 ± 0.0 | 72.0 ± 0.0 |" in l1_8
    assert any(line.startswith("| published: Distiller ResNet-20 |") and "91.34" in line for line in lines)
    page = (tmp_path / "report_card.html").read_text()
    assert "<svg" in page and "<polygon" in page and "http" not in page  # nothing to fetch to open it
