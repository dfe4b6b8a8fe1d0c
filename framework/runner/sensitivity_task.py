"""``task=sensitivity``: the analysis of :mod:`framework.analysis.sensitivity` as a run.

:func:`framework.runner.recipe.analyse_sensitivity` builds the parts (data, model with its
pretrained weights, the configured pruner, the trackers) and hands them here. Files, under
``<run dir>/sensitivity/``:

* ``rows.csv``: one line per (unit, level) as soon as it is evaluated; rerunning with the same
  ``hydra.run.dir`` continues from it (``analysis.json`` records the settings, and a rerun with
  other settings in the same folder is refused with one line);
* ``sensitivity.csv``, ``sensitivity.md``, ``sensitivity.png``: the ordered rows, the top-1 table
  (units × levels) and the curves;
* with ``sensitivity.budget``: ``derived.md`` (levels, measured removal, the training command)
  and ``<run dir>/conf/pruner/derived/<name>.yaml``, a pruner option that ``--config-dir <run
  dir>/conf pruner=derived/<name>`` selects.

The trackers (:mod:`framework.tracking.tracker`) log real steps: step 0 is the dense model
(``sensitivity/dense_top1``, and with a budget the derived levels' measured removal
``derived/<what>_removed``), step ``i`` is the ``i``-th level of ``sensitivity.levels``
(``sensitivity/level`` holds the level itself, ``sensitivity/<unit>/top1`` each unit's top-1 at
it), so a unit's curve is its metric over the steps. Their files are the folders
``sensitivity/`` and ``conf/``.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.analysis import sensitivity as sens
from framework.analysis.sensitivity_latency import LATENCY_MS, derive_latency_levels, unit_widths
from framework.run_context import RunContext
from framework.runner.parts import Parts, resolved
from framework.runner.run_files import sensitivity_files
from framework.runner.sensitivity_files import read_settings, trusted_rows
from framework.runner.summary import where_everything_is

log = logging.getLogger(__name__)


def _settings(cfg: DictConfig) -> dict[str, Any]:
    """What the rows depend on: a rerun in the same folder must match it to continue."""
    used = resolved(cfg)
    return {key: used.get(key) for key in ("model", "dataset", "pruner", "fold_batchnorm", "pretrained", "seed")}


def _check_same_settings(folder: Path, settings: dict[str, Any]) -> None:
    record = folder / "analysis.json"
    earlier = read_settings(record)
    if earlier is not None:
        changed = [
            f"{k}: {earlier.get(k)!r} -> {settings.get(k)!r}" for k in settings if earlier.get(k) != settings.get(k)
        ]
        if changed:
            raise sens.SensitivityError(
                f"{folder} holds an analysis with other settings ({'; '.join(changed)[:300]}); "
                "allowed: the same settings to continue it, or another hydra.run.dir"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(settings, indent=1, sort_keys=True, default=str) + "\n")


_NOT_CARRIED = (
    "task=",
    "sensitivity.",
    "pruner=",
    "pruner.",
    "hydra.",
    "pretrained=",
    "schedule=",
    "schedule.",
    "epochs=",
    "+pruner.",
)


def training_command(context: RunContext, name: str, pretrained: str | None) -> str:
    """``python run.py`` with the derived pruner, the same model/data/folding, from the checkpoint."""
    kept = [o for o in context.overrides if not o.lstrip("~+").startswith(_NOT_CARRIED)]
    parts = ["python", "run.py", "--config-dir", str(context.derived_conf), f"pruner=derived/{name}"]
    if pretrained:
        parts.append(f"pretrained={Path(pretrained).resolve()}")
    return " ".join(shlex.quote(p) for p in parts + kept)


def write_derived(cfg: DictConfig, context: RunContext, derived: sens.Derived) -> tuple[Path, str]:
    """The derived pruner option and the command that trains with it."""
    node = sens.derived_config(resolved(cfg.pruner), derived)
    path = context.derived_conf / "pruner" / "derived" / f"{cfg.sensitivity.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# @package pruner\n"
        f"# Derived by task=sensitivity ({derived.method}) for sensitivity.budget_kind={derived.budget_kind} "
        f"budget={derived.budget}.\n"
    )
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(node)))
    return path, training_command(context, cfg.sensitivity.name, cfg.pretrained)


def derived_markdown(derived: sens.Derived, command: str) -> str:
    lines = [
        f"Derived levels: {derived.method}, budget {derived.budget_kind} = {derived.budget}",
        "",
        "| unit | level |",
        "|---|---:|",
        *[f"| {unit} | {level:g} |" for unit, level in derived.unit_levels.items()],
        "",
        "Measured with every unit pruned at once (one-shot masks): "
        + ", ".join(f"{key} removed {value:.4f}" for key, value in derived.measured.items()),
        f"Sum of the units' one-at-a-time top-1 drops (an estimate): {derived.predicted_top1_drop:.4f}",
        *(
            [
                f"Latency predicted by the table with every unit pruned at once: {derived.predicted_ms:.4g} ms "
                f"(dense: {derived.dense_ms:.4g} ms)"
            ]
            if derived.predicted_ms is not None and derived.dense_ms is not None
            else []
        ),
        "",
        "Train with it:",
        "",
        "    " + command,
    ]
    return "\n".join(lines) + "\n"


def analyse(cfg: DictConfig, parts: Parts, val_loader) -> dict[str, float]:
    """Run (or continue) the analysis, write its files and log them; returns headline figures."""
    context, trackers = parts.context, parts.trackers
    _check_same_settings(context.sensitivity, _settings(cfg))  # before a tracker records a run
    trackers.start(0)
    try:
        result, rows, levels = _analysis(cfg, parts, val_loader)
        trackers.log_metrics(result, 0)
        for step, level in enumerate(levels, start=1):
            at_level = {f"sensitivity/{r.unit}/top1": r.top1 for r in rows if round(r.level, 6) == round(level, 6)}
            trackers.log_metrics({"sensitivity/level": level, **at_level}, step)
        trackers.log_files(sensitivity_files(context))
    except BaseException as error:
        trackers.fail(error)
        raise
    trackers.finish()
    log.info(where_everything_is(context, [], trackers.where()))
    return result


def _derive(cfg: DictConfig, parts: Parts, analysis: sens.Analysis, rows, levels) -> sens.Derived:
    """The levels for ``sensitivity.budget``: by the latency table's prediction for ``latency_ms``."""
    settings = cfg.sensitivity
    if settings.budget_kind != LATENCY_MS:
        return sens.derive_levels(
            rows, analysis.units, settings.budget_kind, settings.budget, analysis.cost_of, analysis.totals
        )
    table = parts.latency_table
    assert table is not None  # built with the parts for budget_kind=latency_ms
    widths = unit_widths(analysis, analysis.units, levels)
    return derive_latency_levels(
        rows, analysis.units, float(settings.budget), table, widths, analysis.cost_of, analysis.totals
    )


def _analysis(cfg: DictConfig, parts: Parts, val_loader) -> tuple[dict[str, float], list[sens.Row], list[float]]:
    """The rows (continued from ``rows.csv``), the tables, curves and derived levels written."""
    context = parts.context
    folder = context.sensitivity
    analysis = sens.Analysis(parts.model, parts.pruner, val_loader, parts.device, parts.input_shape)
    levels = [float(level) for level in cfg.sensitivity.levels]
    rows_path = folder / "rows.csv"
    rows = trusted_rows(rows_path, [unit.name for unit in analysis.units])
    if rows:
        log.info("sensitivity: continuing %s (%d rows done)", rows_path, len(rows))
    writer = sens.RowWriter(rows_path)
    try:
        if not any(r.unit == sens.DENSE for r in rows):
            dense = analysis.dense_row()
            writer(dense)
            rows.append(dense)
        done = {(r.unit, round(r.level, 6)) for r in rows}

        def keep(row: sens.Row) -> None:
            writer(row)
            rows.append(row)

        sens.run_rows(
            analysis,
            levels,
            done,
            keep,
            workers=cfg.sensitivity.workers,
            progress=cfg.progress,
        )
    finally:
        writer.close()
    rows = sens.ordered(
        [r for r in rows if r.unit == sens.DENSE or round(r.level, 6) in {round(v, 6) for v in levels}], analysis.units
    )
    sens.write_csv(rows, folder / "sensitivity.csv")
    (folder / "sensitivity.md").write_text(sens.markdown(rows, analysis.units, levels))
    title = f"{cfg.model._target_.rsplit('.', 1)[-1]}, {cfg.pruner.structure}, fold_batchnorm={cfg.fold_batchnorm}"
    sens.plot(rows, analysis.units, folder / "sensitivity.png", title)
    dense = next(r for r in rows if r.unit == sens.DENSE)
    result = {"sensitivity/dense_top1": dense.top1}
    if cfg.sensitivity.budget is not None:
        derived = _derive(cfg, parts, analysis, rows, levels)
        path, command = write_derived(cfg, context, derived)
        (folder / "derived.md").write_text(derived_markdown(derived, command))
        (folder / "derived_command.txt").write_text(command + "\n")
        log.info("sensitivity: derived levels in %s; train with:\n  %s", path, command)
        result.update({f"derived/{key}_removed": value for key, value in derived.measured.items()})
        if derived.predicted_ms is not None and derived.dense_ms is not None:
            result.update({"derived/predicted_ms": derived.predicted_ms, "derived/dense_ms": derived.dense_ms})
    log.info("sensitivity: %d units x %d levels in %s", len(analysis.units), len(levels), folder)
    return result, rows, levels
