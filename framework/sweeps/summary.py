"""A finished sweep on one page: a table of every job and accuracy against sparsity (and MACs).

Files written to the summary folder (and logged to the sweep's parent run):

* ``sweep_summary.csv`` and ``sweep_summary.md``: one row per job, its swept values, final
  metrics, objective and status; ``*`` marks the jobs on a Pareto front;
* ``sweep_pareto.png``: val/top1 against sparsity/total (both maximised), and against MACs
  (minimised) when the runs logged a MACs metric, with each front marked;
* ``sweep_pareto.html``: the same as a page that works offline (inline SVG, a few lines of
  JavaScript): hover a point for its job, click a column header to sort the table.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framework.analysis.tables import is_count_metric, markdown_table, metric_text, write_csv_table
from framework.sweeps.objective import describe
from framework.sweeps.pareto import pareto_front
from framework.sweeps.records import FINISHED, JobRecord, shown_overrides

ACCURACY, SPARSITY = "val/top1", "sparsity/total"
SHOWN_METRICS = (ACCURACY, "val/loss", SPARSITY)


@dataclass
class Front:
    """One accuracy trade-off: which metric is on x, which way it is better, who is on the front."""

    x_metric: str
    x_maximized: bool
    points: list[tuple[int, float, float]]  # (job number, x, accuracy) of the finished jobs
    front: list[int] = field(default_factory=list)  # job numbers on the front


@dataclass
class SweepSummary:
    markdown: str
    files: list[Path]
    fronts: list[Front]


def macs_metric(records: Sequence[JobRecord]) -> str | None:
    """The MACs metric the runs logged, if any: the thinned model's (``thin/macs/thinned``) before
    any other (``thin/macs/dense`` is the same for every job)."""
    names = sorted(
        {name for r in records for name in r.metrics if "macs" in name.lower()},
        key=lambda name: ("thinned" not in name, "dense" in name, name),
    )
    return names[0] if names else None


def fronts_of(records: Sequence[JobRecord]) -> list[Front]:
    """Accuracy against sparsity (a dense run has sparsity 0) when any job pruned, and against MACs
    when logged. A sweep of dense runs only has no sparsity to trade: a front along a column of
    zeros would rank jobs by accuracy alone and look like a result."""
    done = [r for r in records if r.status == FINISHED and ACCURACY in r.metrics]
    axes = [(SPARSITY, True)] if any(SPARSITY in r.metrics for r in done) else []
    macs = macs_metric(done)
    if macs:
        axes.append((macs, False))
    fronts = []
    for metric, maximized in axes:
        points = [
            (r.num, float(r.metrics.get(metric, 0.0)), float(r.metrics[ACCURACY]))
            for r in done
            if metric in r.metrics or metric == SPARSITY
        ]
        on_front = pareto_front([(x, acc) for _, x, acc in points], maximize=[maximized, True])
        fronts.append(Front(metric, maximized, points, [points[i][0] for i in on_front]))
    return fronts


def swept_value(record: JobRecord, key: str) -> str:
    from framework.tracking.params import as_typed

    for override in record.overrides:
        if override.split("=", 1)[0].lstrip("+~") == key:
            return as_typed(override).split("=", 1)[1]
    return ""


def table(records: Sequence[JobRecord], swept_keys: Sequence[str], fronts: Sequence[Front], readable: bool = True):
    """``(columns, rows)`` of the summary table; other overrides go to one ``overrides`` column.
    ``readable``: figures as a person reads them (``0.9120``, MACs ``599.68k``); otherwise the
    numbers themselves, for the CSV a program reads."""
    macs = macs_metric(records)
    metrics = [*SHOWN_METRICS, *([macs] if macs else [])]
    on_front = {num for f in fronts for num in f.front}
    columns = ["job", "status", *swept_keys, *metrics, "objective", "pareto", "overrides", "error"]
    rows = []
    for r in records:
        rest = shown_overrides([o for o in r.overrides if o.split("=", 1)[0].lstrip("+~") not in swept_keys])
        rows.append(
            [
                r.num,
                r.status,
                *(swept_value(r, k) for k in swept_keys),
                *(_cell(r.metrics[m], m, readable) if m in r.metrics else "" for m in metrics),
                "" if r.objective is None else describe(r.objective) if readable else r.objective,
                "*" if r.num in on_front else "",
                rest,
                r.error or "",
            ]
        )
    return columns, rows


def _cell(value: float, metric: str, readable: bool) -> str | float:
    return metric_text(value, metric) if readable else value


def write_summary(
    records: Sequence[JobRecord],
    swept_keys: Sequence[str],
    out_dir: str | Path,
    title: str,
    optimizer_result: str | None = None,
) -> SweepSummary:
    """Write the table, plot and page for ``records`` into ``out_dir``; returns the Markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fronts = fronts_of(records)
    columns, rows = table(records, swept_keys, fronts)
    text_columns = {"status", *swept_keys, "pareto", "overrides", "error"}
    finished = sum(r.status == FINISHED for r in records)
    markdown = f"# {title}\n\n{finished} of {len(records)} jobs finished.\n\n"
    markdown += markdown_table(columns, rows, text_columns)
    for f in fronts:
        way = "max" if f.x_maximized else "min"
        markdown += f"\nPareto front of {ACCURACY} (max) and {f.x_metric} ({way}): jobs {', '.join(map(str, f.front)) or 'none'}\n"
    if optimizer_result:
        markdown += f"\n{optimizer_result}\n"
    numbers = table(records, swept_keys, fronts, readable=False)[1]
    files = [write_csv_table(columns, numbers, out_dir / "sweep_summary.csv")]
    (out_dir / "sweep_summary.md").write_text(markdown)
    files.append(out_dir / "sweep_summary.md")
    if any(f.points for f in fronts):
        files.append(plot_fronts(fronts, out_dir / "sweep_pareto.png", title))
    files.append(write_page(fronts, columns, rows, numbers, out_dir / "sweep_pareto.html", title, markdown))
    return SweepSummary(markdown, files, fronts)


def plot_fronts(fronts: Sequence[Front], path: Path, title: str) -> Path:
    """One panel per front: every finished job, the front's jobs joined and ringed in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5 * len(fronts), 4.8))
    FigureCanvasAgg(figure)
    for index, f in enumerate(fronts, start=1):
        axes = figure.add_subplot(1, len(fronts), index)
        axes.scatter([x for _, x, _ in f.points], [a for _, _, a in f.points], color="tab:blue", label="job")
        for (x, acc), label in _labels(f.points).items():
            axes.annotate(label, (x, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
        best = sorted((p for p in f.points if p[0] in f.front), key=lambda p: p[1])
        if best:
            axes.plot(
                [x for _, x, _ in best],
                [a for _, _, a in best],
                "-o",
                color="tab:red",
                markerfacecolor="none",
                markersize=11,
                label="Pareto front",
            )
        way = "higher" if f.x_maximized else "lower"
        axes.set_xlabel(f"{f.x_metric} ({way} is better)")
        axes.set_ylabel(f"{ACCURACY} (higher is better)")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _labels(points: Sequence[tuple[int, float, float]]) -> dict[tuple[float, float], str]:
    """One label per place: jobs that ended at the same point read ``2,3`` instead of overprinting."""
    by_place: dict[tuple[float, float], list[str]] = {}
    for num, x, acc in points:
        by_place.setdefault((x, acc), []).append(str(num))
    return {place: ",".join(nums) for place, nums in by_place.items()}


# -- the offline HTML page ----------------------------------------------------------------------


_WIDTH, _HEIGHT, _PAD = 520, 360, 50


def _axis(values: Sequence[float]) -> tuple[float, float, list[float]]:
    """``(low, high, labelled values)`` of an axis. Jobs that all ended at one value get that one
    label, in the middle of a small margin: a made-up end (``0.92 + 1``) would read as a result."""
    low, high = min(values, default=0.0), max(values, default=0.0)
    if high > low:
        return low, high, [low, high]
    margin = max(abs(low) * 0.05, 0.01)
    return low - margin, low + margin, [low]


def _tick(value: float, metric: str) -> str:
    return metric_text(value, metric) if is_count_metric(metric) else f"{value:.3g}"


def _svg(f: Front, details: dict[int, str]) -> str:
    x_lo, x_hi, x_ticks = _axis([x for _, x, _ in f.points])
    y_lo, y_hi, y_ticks = _axis([a for _, _, a in f.points])

    def sx(x: float) -> float:
        return _PAD + (x - x_lo) / (x_hi - x_lo) * (_WIDTH - 2 * _PAD)

    def sy(y: float) -> float:
        return _HEIGHT - _PAD - (y - y_lo) / (y_hi - y_lo) * (_HEIGHT - 2 * _PAD)

    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img">',
        f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="white" stroke="#ccc"/>',
    ]
    for value in x_ticks:
        parts.append(
            f'<text x="{sx(value):.1f}" y="{_HEIGHT - _PAD + 16}" font-size="11" text-anchor="middle">'
            f"{_tick(value, f.x_metric)}</text>"
        )
    for value in y_ticks:
        parts.append(
            f'<text x="{_PAD - 6}" y="{sy(value) + 4:.1f}" font-size="11" text-anchor="end">{_tick(value, ACCURACY)}</text>'
        )
    way = "higher" if f.x_maximized else "lower"
    parts.append(
        f'<text x="{_WIDTH / 2}" y="{_HEIGHT - 10}" font-size="12" text-anchor="middle">'
        f"{html.escape(f.x_metric)} ({way} is better)</text>"
    )
    parts.append(
        f'<text x="14" y="{_HEIGHT / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {_HEIGHT / 2})">{ACCURACY} (higher is better)</text>'
    )
    best = sorted((p for p in f.points if p[0] in f.front), key=lambda p: p[1])
    if len(best) > 1:
        path = " ".join(f"{sx(x):.1f},{sy(a):.1f}" for _, x, a in best)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-width="1.5"/>')
    for num, x, acc in f.points:
        on = num in f.front
        parts.append(
            f'<circle class="job" data-job="{num}" cx="{sx(x):.1f}" cy="{sy(acc):.1f}" r="{7 if on else 5}" '
            f'fill="{"#d62728" if on else "#1f77b4"}" fill-opacity="0.8">'
            f"<title>{html.escape(details.get(num, str(num)))}</title></circle>"
        )
    for (x, acc), label in _labels(f.points).items():
        parts.append(f'<text x="{sx(x) + 8:.1f}" y="{sy(acc) - 6:.1f}" font-size="10">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


_SCRIPT = """
// Sort the table by a clicked column (numbers as numbers); highlight a job's row from the plot.
document.querySelectorAll('th').forEach((th, column) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const rows = Array.from(body.rows);
  const ascending = th.dataset.order !== 'asc';
  th.dataset.order = ascending ? 'asc' : 'desc';
  const key = r => {
    const cell = r.cells[column]; const t = cell.dataset.value ?? cell.textContent; const n = parseFloat(t);
    return isNaN(n) ? t : n;
  };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (ascending ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
document.querySelectorAll('circle.job').forEach(c => c.addEventListener('mouseenter', () => {
  document.querySelectorAll('tr.job').forEach(r => r.classList.toggle('hit', r.dataset.job === c.dataset.job));
}));
"""


def _td(shown, number) -> str:
    value = f' data-value="{number!r}"' if isinstance(number, float) else ""
    return f"<td{value}>{html.escape(str(shown))}</td>"


def write_page(fronts: Sequence[Front], columns, rows, numbers, path: Path, title: str, markdown: str) -> Path:
    """The page; ``numbers`` are the rows' raw values, by which a column sorts (``1.20M`` after ``599.68k``)."""
    details = {row[0]: "job " + ", ".join(f"{c}={v}" for c, v in zip(columns[1:], row[1:]) if v != "") for row in rows}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        f'<tr class="job" data-job="{row[0]}">' + "".join(_td(v, n) for v, n in zip(row, raw)) + "</tr>"
        for row, raw in zip(rows, numbers)
    )
    notes = [line for line in markdown.splitlines() if line.startswith(("Pareto", "Best", "Optuna", "-"))]
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; }}
th {{ cursor: pointer; background: #f3f3f3; }}
tr.hit {{ background: #ffe9a8; }}
.plots {{ display: flex; gap: 1.5em; flex-wrap: wrap; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div class="plots">{"".join(_svg(f, details) for f in fronts)}</div>
<p>{"<br>".join(html.escape(n) for n in notes)}</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<script>{_SCRIPT}</script>
<!-- data: {html.escape(json.dumps([dict(zip(map(str, columns), map(str, row))) for row in rows]))} -->
</body></html>
"""
    path.write_text(page)
    return path
