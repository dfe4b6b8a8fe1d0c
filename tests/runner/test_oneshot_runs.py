"""task=oneshot end to end: a causal LM calibrated, pruned and measured into a real MLflow store,
its save_pretrained folder loaded back, SIGKILL during calibration (an exact kill point) + resume=auto exact, and bad
input refused in one line before any text is read."""

from __future__ import annotations

import json

import pytest
import torch
from cli_in_process import run_main
from kill_points import run_killed_at
from llm_models import tiny_lm
from mlflow.tracking import MlflowClient
from support import cli_dirs, run_cli, store_overrides
from test_reliability import runs_of

from framework.data.text import ByteTokenizer
from framework.errors import SecateursError
from framework.models.causal_lm import save_language_model
from framework.pruning.nm import check_nm_pattern

# a text of its own (a few KB), so that a run reads little; its words repeat, so a model can learn it
TEXT = " ".join(f"the {c} cat sat on mat {i % 7} and saw {i % 5} birds." for i, c in enumerate("abcdefgh" * 40))


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    """A tiny llama (2 layers of width 32) and its text, as files: what model=pretrained_lm reads."""
    root = tmp_path_factory.mktemp("lm")
    (root / "text.txt").write_text(TEXT)
    save_language_model(tiny_lm("llama", num_layers=3), root / "model", ByteTokenizer())
    return root


def lm_overrides(root, *more):
    return [
        "task=oneshot",
        "model=pretrained_lm",
        f"model.name={root / 'model'}",
        "dataset=text",
        f"dataset.path={root / 'text.txt'}",
        "dataset.block_size=32",
        "loader.batch_size=4",
        "loader.limit_val_batches=4",
        "pruner.calibration_batches=2",
        *more,
    ]


def test_a_oneshot_run_logs_perplexity_before_and_after_to_mlflow(
    run_experiment, tracking_overrides, shared_store, language_model, tmp_path
):
    overrides = [*lm_overrides(language_model, "pruner=sparsegpt", "pruner.structure=nm", "pruner.n=2", "pruner.m=4")]
    _, context, final = run_experiment([*tracking_overrides, *overrides], run_dir=tmp_path / "run")
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = context.mlflow_run_id_file.read_text().strip()
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/perplexity"))
    assert [step for step, _ in history] == [0, 1]
    assert history[1][1] == pytest.approx(final["val/perplexity"]) and history[0][1] != history[1][1]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["pruner.method"] == "sparsegpt"
    assert final["sparsity/pruned_matrices"] == pytest.approx(0.5)
    artifacts = {item.path for item in client.list_artifacts(run_id, "language_model")}
    assert "language_model/model.safetensors" in artifacts

    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(context.language_model)
    matrices = [name for name, _ in pruned.named_parameters() if name.endswith("proj.weight")]
    assert len(matrices) == 3 * 7
    check_nm_pattern(pruned, matrices, 2, 4)  # every pruned matrix holds 2 of every 4 inputs
    first = json.loads(context.metrics_file.read_text().splitlines()[0])
    assert first["epoch"] == 0 and first["val/perplexity"] == pytest.approx(history[0][1])


def test_heads_are_thinned_and_the_config_describes_the_smaller_model(run_experiment, language_model, tmp_path):
    overrides = lm_overrides(language_model, "pruner=llm_heads", "tracking=none")
    _, context, final = run_experiment(overrides, run_dir=tmp_path / "heads")
    config = json.loads((context.language_model / "config.json").read_text())
    assert config["num_key_value_heads"] == 1 and config["num_attention_heads"] == 2
    dense = json.loads(context.metrics_file.read_text().splitlines()[0])
    assert final["params/total"] < dense["params/total"]


def test_sigkill_during_calibration_then_resume_equals_an_uninterrupted_run(tmp_path):
    root = tmp_path / "lm"
    root.mkdir()
    (root / "text.txt").write_text(TEXT)
    save_language_model(tiny_lm("llama", num_layers=4), root / "model", ByteTokenizer())
    common = lm_overrides(root, "pruner=sparsegpt", "pruner.calibration_batches=4")
    straight = run_main([*common, *cli_dirs(tmp_path / "straight", mlflow=False), "tracking=none"])
    assert straight.returncode == 0, straight.stderr[-2000:]

    crash_dir = tmp_path / "crash"
    args = [*common, *cli_dirs(crash_dir), "tracking.experiment=crash"]
    # killed (tests/kill_points.py: exactly there, whatever the machine's load) as the third decoder
    # layer starts gathering its calibration statistics: two layers pruned and checkpointed
    run_killed_at("framework.pruning.llm.layerwise:Statistics", 3, lambda: run_main(args))
    checkpoint = crash_dir / "run" / "checkpoints" / "last.pt"
    assert torch.load(checkpoint, weights_only=True)["layers_done"] == 2
    resumed = run_main([*args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed one-shot pruning at decoder layer 2" in resumed.stdout + resumed.stderr

    ends = [
        torch.load(d / "run" / "checkpoints" / "last.pt", weights_only=True) for d in (tmp_path / "straight", crash_dir)
    ]
    assert ends[0]["masks"].keys() == ends[1]["masks"].keys()
    for name, mask in ends[0]["masks"].items():
        assert torch.equal(mask, ends[1]["masks"][name]), name
    for name, weight in ends[0]["model"].items():
        assert torch.equal(weight, ends[1]["model"][name]), name
    metrics = [
        json.loads((d / "run" / "metrics.jsonl").read_text().splitlines()[-1])
        for d in (tmp_path / "straight", crash_dir)
    ]
    assert metrics[0] == metrics[1] and metrics[0]["epoch"] == 1
    _, runs = runs_of(crash_dir, "crash")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


@pytest.mark.parametrize(
    "more, expected",
    [
        (
            ["pruner=wanda", "pruner.final_sparsity=1.0"],
            "pruner.final_sparsity=1.0 is invalid; allowed: a number in [0, 1)",
        ),
        (["pruner=wanda", "pruner.calibration_batches=0"], "pruner.method=wanda ranks with calibration data"),
        (
            ["pruner=wanda", "pruner.structure=nm", "pruner.n=2", "pruner.m=5", "pruner.final_sparsity=0.6"],
            "2:5 cannot block model.layers.0.self_attn.q_proj: its input width 32 is not a multiple of m=5",
        ),
        (["pruner=llm_heads", "pruner.final_sparsity=0.9"], "would remove all 2 key/value head groups of every layer"),
        (["pruner=wanda", "dataset.tokenizer=byte"], "dataset.tokenizer=byte does not match the pretrained model"),
        (["pruner=level"], "task=oneshot needs a language-model pruner; got pruner.method=level"),
        (["pruner=wanda", "dataset.tokenizer=byte", "model.name=MODEL_WITHOUT_CONFIG"], "model.name="),
    ],
)
def test_bad_input_is_one_line_before_any_text_is_read(run_experiment, language_model, tmp_path, more, expected):
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"\xff\xfe not utf-8")  # reading it would fail with another message
    more = [m.replace("MODEL_WITHOUT_CONFIG", str(tmp_path)) for m in more]
    with pytest.raises(SecateursError) as caught:
        run_experiment([*lm_overrides(language_model, "tracking=none", *more), f"dataset.path={broken}"])
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


def test_the_command_line_refuses_an_llm_pruner_outside_task_oneshot_with_exit_2(tmp_path):
    result = run_cli(["pruner=wanda", *cli_dirs(tmp_path, mlflow=False), "tracking=none"])
    assert result.returncode == 2
    assert "pruner.method=wanda prunes a language model one-shot; allowed: task=oneshot" in result.stderr
