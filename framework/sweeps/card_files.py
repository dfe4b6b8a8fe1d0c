"""The report card's files: ``report_card.md`` (the table and what it is), ``report_card.png``
(top-1 against compression ratio and against theoretical speed-up, mean ± std bands) and
``report_card.html`` (the same as a page that opens offline: inline SVG, a few lines of
JavaScript, no CDN).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from framework.sweeps.card import DENSE, CardRow, Published, Spread, bands, toy_line

AXES = (
    ("compression", "compression ratio (dense params ÷ params)"),
    ("speedup", "theoretical speed-up (dense MACs ÷ MACs)"),
)
COLUMNS = (
    "method",
    "ratio asked",
    "runs",
    "compression (params)",
    "speed-up (MACs)",
    "top-1 last epoch %",
    "top-1 val-selected %",
    "eager ms (b1)",
    "deployed ms (b1)",
)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Card:
    title: str
    dataset: str
    ratio_of: str  # params | macs: what the asked ratios count
    rows: list[CardRow]
    published: list[Published] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cell(spread: Spread, scale: float = 1.0, digits: int = 2) -> str:
    if spread.mean is None:
        return "—"
    text = f"{spread.mean * scale:.{digits}f}"
    return text + (f" ± {spread.std * scale:.{digits}f}" if spread.std is not None else "")


def table_rows(card: Card) -> list[list[str]]:
    rows = []
    for row in card.rows:
        f = row.figures
        runs = f"{row.runs}" + (f" ({row.failed} failed)" if row.failed else "")
        rows.append(
            [
                row.method,
                "1" if row.method == DENSE else f"{row.ratio:g}",
                runs,
                _cell(f["compression"]),
                _cell(f["speedup"]),
                _cell(f["top1_last"], 100, 1),
                _cell(f["top1_selected"], 100, 1),
                _cell(f["latency_thinned_ms"], digits=3),
                _cell(f["latency_deployed_ms"], digits=3),
            ]
        )
    for p in card.published:
        pct = lambda v: "—" if v is None else f"{100 * v:.2f}"
        ratio = lambda v: "—" if v is None else f"{v:.2f}"
        label = f"published: {p.label}"
        rows.append([f"{label} (dense)", "1", "—", "1.00", "1.00", "—", pct(p.top1_dense), "—", "—"])
        rows.append([label, "—", "—", ratio(p.compression), ratio(p.speedup), "—", pct(p.top1_pruned), "—", "—"])
    return rows


def markdown_of(card: Card) -> str:
    from framework.analysis.tables import markdown_table

    lines = [
        f"# Report card: {card.title}",
        "",
        f"Dataset: {card.dataset}. {toy_line(card.dataset)}",
        f"Ratios asked for count {card.ratio_of}; each run's measured compression and speed-up are in the table.",
        "Top-1 on the test split: at the last epoch, and at the epoch with the best validation top-1 (validation "
        "carved from the training data) among the epochs at final sparsity; never the test set's best epoch. "
        "Mean ± std over seeds.",
        "",
        markdown_table(list(COLUMNS), table_rows(card), {"method", "ratio asked", "runs"}).rstrip(),
    ]
    for p in card.published:
        lines.append(f"\nPublished ({p.label}): {p.source}" + (f" — {p.note}" if p.note else ""))
    lines += [f"\n{note}" for note in card.notes]
    return "\n".join(lines) + "\n"


def plot_png(card: Card, path: Path) -> Path:
    """Two panels, top-1 (validation-selected) against each x axis; one line and band per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.8))
    FigureCanvasAgg(figure)
    dense = next((r.figures["top1_selected"] for r in card.rows if r.method == DENSE), None)
    for index, (x_figure, label) in enumerate(AXES, start=1):
        axes = figure.add_subplot(1, 2, index)
        if dense is not None and dense.mean is not None:
            axes.axhline(100 * dense.mean, color="black", linestyle="--", linewidth=1, label="dense")
            if dense.std:
                axes.axhspan(100 * (dense.mean - dense.std), 100 * (dense.mean + dense.std), color="black", alpha=0.08)
        for number, band in enumerate(b for b in bands(card.rows, x_figure) if b.method != DENSE):
            colour = COLOURS[number % len(COLOURS)]
            mean = [100 * m for m in band.mean]
            axes.plot(band.x, mean, "-o", color=colour, markersize=4, label=band.method)
            low = [m - 100 * s for m, s in zip(mean, band.std)]
            high = [m + 100 * s for m, s in zip(mean, band.std)]
            axes.fill_between(band.x, low, high, color=colour, alpha=0.15)
        axes.set_xscale("log", base=2)
        axes.set_xlabel(label)
        axes.set_ylabel("top-1 % (val-selected epoch, test split)")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower left", fontsize=8)
    figure.suptitle(f"{card.title} — mean ± std over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


_W, _H, _P = 560, 380, 55


def _svg(card: Card, x_figure: str, label: str) -> str:
    import math

    curves = bands(card.rows, x_figure)
    dense = next((b for b in curves if b.method == DENSE), None)
    others = [b for b in curves if b.method != DENSE]
    xs = [math.log2(max(x, 1e-9)) for b in curves for x in b.x] or [0.0]
    ys = [100 * (m + s * k) for b in curves for m, s in zip(b.mean, b.std) for k in (-1, 1)] or [0.0]
    x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1)
    y_lo, y_hi = min(ys), max(max(ys), min(ys) + 1)
    sx = lambda x: _P + (math.log2(max(x, 1e-9)) - x_lo) / (x_hi - x_lo) * (_W - 2 * _P)
    sy = lambda y: _H - _P - (100 * y - y_lo) / (y_hi - y_lo) * (_H - 2 * _P)
    parts = [
        f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img"><rect width="{_W}" height="{_H}" fill="white" stroke="#ccc"/>'
    ]
    for value, pos in ((2**x_lo, _P), (2**x_hi, _W - _P)):
        parts.append(f'<text x="{pos}" y="{_H - _P + 16}" font-size="11" text-anchor="middle">{value:.3g}</text>')
    for value in (y_lo, y_hi):
        parts.append(
            f'<text x="{_P - 6}" y="{sy(value / 100) + 4:.1f}" font-size="11" text-anchor="end">{value:.1f}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 12}" font-size="12" text-anchor="middle">{html.escape(label)} (log scale)</text>'
    )
    parts.append(
        f'<text x="14" y="{_H / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {_H / 2})">top-1 % (val-selected)</text>'
    )
    if dense is not None:
        y = sy(dense.mean[0])
        parts.append(
            f'<line x1="{_P}" x2="{_W - _P}" y1="{y:.1f}" y2="{y:.1f}" stroke="black" stroke-dasharray="5,4"><title>dense {100 * dense.mean[0]:.2f} %</title></line>'
        )
    for number, band in enumerate(others):
        colour = COLOURS[number % len(COLOURS)]
        upper = [f"{sx(x):.1f},{sy(m + s):.1f}" for x, m, s in zip(band.x, band.mean, band.std)]
        lower = [f"{sx(x):.1f},{sy(m - s):.1f}" for x, m, s in zip(band.x, band.mean, band.std)]
        parts.append(
            f'<polygon class="band" data-method="{html.escape(band.method)}" points="{" ".join(upper + lower[::-1])}" fill="{colour}" fill-opacity="0.15"/>'
        )
        line = " ".join(f"{sx(x):.1f},{sy(m):.1f}" for x, m in zip(band.x, band.mean))
        parts.append(
            f'<polyline class="curve" data-method="{html.escape(band.method)}" points="{line}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        for x, m, s in zip(band.x, band.mean, band.std):
            tip = f"{band.method}: x {x:.2f}, top-1 {100 * m:.2f} ± {100 * s:.2f} %"
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(m):.1f}" r="4" fill="{colour}"><title>{html.escape(tip)}</title></circle>'
            )
        parts.append(
            f'<text x="{_W - _P + 4}" y="{sy(band.mean[-1]) + 4:.1f}" font-size="10" fill="{colour}">{html.escape(band.method)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


_SCRIPT = """
// Click a column header to sort; hover a row to bring its method's curve forward.
document.querySelectorAll('th').forEach((th, column) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
  const up = th.dataset.order !== 'asc'; th.dataset.order = up ? 'asc' : 'desc';
  const key = r => { const t = r.cells[column].textContent, n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
document.querySelectorAll('tr.row').forEach(r => r.addEventListener('mouseenter', () => {
  document.querySelectorAll('.curve, .band').forEach(c => {
    const on = c.dataset.method === r.dataset.method;
    c.style.opacity = on ? 1 : 0.25;
  });
}));
"""


def write_page(card: Card, markdown: str, path: Path) -> Path:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        f'<tr class="row" data-method="{html.escape(row[0])}">'
        + "".join(f"<td>{html.escape(v)}</td>" for v in row)
        + "</tr>"
        for row in table_rows(card)
    )
    intro = [line for line in markdown.splitlines()[1:] if line and not line.startswith("|")]
    plots = "".join(_svg(card, x_figure, label) for x_figure, label in AXES)
    data = json.dumps([dict(zip(COLUMNS, row)) for row in table_rows(card)])
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(card.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; }} th {{ cursor: pointer; background: #f3f3f3; }}
tr.row:hover {{ background: #ffe9a8; }} .plots {{ display: flex; gap: 1.5em; flex-wrap: wrap; }}
</style></head><body>
<h1>Report card: {html.escape(card.title)}</h1>
<p>{"<br>".join(html.escape(line) for line in intro)}</p>
<div class="plots">{plots}</div>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<script>{_SCRIPT}</script>
<!-- data: {html.escape(data)} -->
</body></html>
"""
    path.write_text(page)
    return path


def write_card(card: Card, out_dir: str | Path) -> tuple[str, list[Path]]:
    """The Markdown, PNG and HTML of ``card`` in ``out_dir``; returns the Markdown and the files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown_of(card)
    (out_dir / "report_card.md").write_text(markdown)
    files = [out_dir / "report_card.md", plot_png(card, out_dir / "report_card.png")]
    files.append(write_page(card, markdown, out_dir / "report_card.html"))
    return markdown, files
