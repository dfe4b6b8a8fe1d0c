"""task=train on a causal LM end to end: perplexity into a real MLflow store and falling, AGP over
the decoder layers' matrices (embeddings and lm_head left dense), a Wanda one-shot result
fine-tuned with its zeros held exactly, SIGKILL + resume=auto bit-exact, and the combinations a
language model cannot take refused in one line before any text is read."""

from __future__ import annotations

import json

import pytest
import torch
from cli_in_process import run_main
from kill_points import run_killed_at
from llm_models import tiny_lm
from mlflow.tracking import MlflowClient
from support import cli_dirs, store_overrides

from framework.config import config_problems
from framework.data.text import ByteTokenizer
from framework.errors import SecateursError
from framework.models.causal_lm import save_language_model

# a few KB of text whose words repeat, so that a tiny model learns it in a few steps
TEXT = " ".join(f"the {c} cat sat on mat {i % 7} and saw {i % 5} birds." for i, c in enumerate("abcdefgh" * 40))
TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=4", "model.intermediate_size=64"]


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    """The text, and a tiny llama as a save_pretrained folder (what model=pretrained_lm reads)."""
    root = tmp_path_factory.mktemp("lm_train")
    (root / "text.txt").write_text(TEXT)
    save_language_model(tiny_lm("llama"), root / "model", ByteTokenizer())
    return root


def text_overrides(root, *more):
    return [
        "dataset=text",
        f"dataset.path={root / 'text.txt'}",
        "dataset.block_size=32",
        "loader.batch_size=4",
        "loader.limit_train_batches=4",
        "loader.limit_val_batches=4",
        "optimizer=adamw",
        "optimizer.lr=0.003",
        "lr_scheduler=none",
        "progress=false",
        *more,
    ]


def test_an_lm_train_run_logs_falling_perplexity_and_prunes_only_the_decoder_matrices(
    run_experiment, tracking_overrides, shared_store, language_model, tmp_path
):
    overrides = text_overrides(
        language_model, "model=causal_lm", *TINY, "epochs=2", "pruner=agp", "pruner.final_sparsity=0.5"
    )
    _, context, final = run_experiment([*tracking_overrides, *overrides], run_dir=tmp_path / "run")
    client = MlflowClient(store_overrides(shared_store)[0].split("=", 1)[1])
    run_id = context.mlflow_run_id_file.read_text().strip()
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/perplexity"))
    assert [step for step, _ in history] == [0, 1]
    assert history[1][1] < history[0][1] and history[1][1] == pytest.approx(final["val/perplexity"])
    sparsity = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "sparsity/total"))
    assert [step for step, _ in sparsity] == [0, 1] and sparsity[-1][1] == pytest.approx(0.5, abs=0.01)
    assert client.get_run(run_id).info.status == "FINISHED"
    best = torch.load(context.checkpoints / "best.pt", weights_only=True)
    assert best["epoch"] == 2  # the lower perplexity is the better one (a classifier's top-1 is maximised)
    artifacts = {item.path for item in client.list_artifacts(run_id, "language_model")}
    assert "language_model/model.safetensors" in artifacts

    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(context.language_model)
    for name, weight in saved.named_parameters():
        zeros = float((weight == 0).float().mean())
        if name.startswith("model.layers.") and name.endswith("proj.weight"):
            assert zeros == pytest.approx(0.5, abs=0.01), name
        else:  # embeddings, norms, lm_head: dense
            assert zeros == 0.0, name


def test_finetuning_a_wanda_result_keeps_exactly_its_zeros_and_lowers_perplexity(
    run_experiment, language_model, tmp_path
):
    # the presets of the row and its recovery (conf/experiment/), on the tiny model and text
    output = tmp_path / "outputs"
    oneshot = ["experiment=llm_wanda_50", f"model.name={language_model / 'model'}", "pruner.calibration_batches=2"]
    oneshot_dir = output / "llm" / "llm_wanda_50"  # where the preset's hydra.run.dir puts it
    _, pruned_context, pruned = run_experiment(
        text_overrides(language_model, *oneshot, "tracking=none"), run_dir=oneshot_dir
    )
    finetune = ["experiment=llm_wanda_50_finetune", f"paths.output_dir={output}", "epochs=2", "tracking=none"]
    cfg, context, final = run_experiment(text_overrides(language_model, *finetune), run_dir=tmp_path / "tuned")
    assert cfg.task == "train" and cfg.model.name == str(oneshot_dir)
    assert final["val/perplexity"] < pruned["val/perplexity"]

    from transformers import AutoModelForCausalLM

    before = dict(AutoModelForCausalLM.from_pretrained(pruned_context.language_model).named_parameters())
    after = dict(AutoModelForCausalLM.from_pretrained(context.language_model).named_parameters())
    matrices = [name for name in before if name.startswith("model.layers.") and name.endswith("proj.weight")]
    assert len(matrices) == 2 * 7
    for name in matrices:
        assert torch.equal(before[name] == 0, after[name] == 0), name  # no pruned weight regrew
        assert float((after[name] == 0).float().mean()) == pytest.approx(0.5, abs=0.01), name
        assert not torch.equal(before[name], after[name]), name  # and the kept ones were trained


def test_sigkill_then_resume_of_an_lm_train_run_is_bit_exact(language_model, tmp_path):
    common = text_overrides(language_model, "model=causal_lm", *TINY, "epochs=2", "pruner=agp")
    straight = run_main([*common, *cli_dirs(tmp_path / "straight", mlflow=False), "tracking=none"])
    assert straight.returncode == 0, straight.stderr[-2000:]
    args = [*common, *cli_dirs(tmp_path / "crash", mlflow=False), "tracking=none"]
    # killed as the second epoch's evaluation starts: last.pt holds the first epoch
    run_killed_at("framework.training.loop:Trainer.evaluate", 2, lambda: run_main(args))
    resumed = run_main([*args, "resume=auto"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at epoch 1" in resumed.stdout + resumed.stderr
    ends = [torch.load(tmp_path / d / "run/checkpoints/last.pt", weights_only=True) for d in ("straight", "crash")]
    for name, weight in ends[0]["model"].items():
        assert torch.equal(weight, ends[1]["model"][name]), name
    metrics = [
        json.loads((tmp_path / d / "run/metrics.jsonl").read_text().splitlines()[-1]) for d in ("straight", "crash")
    ]
    assert metrics[0] == metrics[1] and metrics[0]["epoch"] == 1


LM_TRAIN = ["model=causal_lm", "dataset=text"]


@pytest.mark.parametrize(
    "more, expected",
    [
        (["pruner=wanda"], "pruner.method=wanda prunes a language model one-shot; allowed: task=oneshot"),
        (["pruner=agp_filter"], "pruner.structure=filter on a language model in task=train; allowed: fine | nm"),
        (["pruner=agp", "pruner/criterion=taylor"], "allowed: pruner/criterion=l1 | l2 | random"),
        (["fold_batchnorm=true"], "fold_batchnorm=True: a language model has no BatchNorm; allowed: false"),
        (["distill=kd"], "distill=kd is not available when training a language model; allowed: distill=none"),
        (["deploy.quantize=int8"], "deploy.quantize=int8: a language model is deployed as its save_pretrained"),
        (["pretrained=/some/file.pt"], "a language model starts from model=pretrained_lm model.name=<folder>"),
        (["dataset=digits"], "a causal language model trains on text; got dataset._target_="),
        (["model=simple_cnn"], "dataset=text feeds language models; got model._target_="),
        (["task=eval", "pretrained=x"], "which task=eval does not take; allowed: task=oneshot | train"),
    ],
)
def test_what_a_language_model_cannot_train_with_is_one_line(compose_config, more, expected):
    problems = config_problems(compose_config([*LM_TRAIN, *more]))
    assert any(expected in problem and "\n" not in problem for problem in problems), problems


def test_gpt2s_fused_matrices_are_refused_for_agp_before_any_text_is_read(run_experiment, tmp_path):
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"\xff\xfe not utf-8")  # reading it would fail with another message
    with pytest.raises(SecateursError) as caught:
        run_experiment(["model=gpt2_tiny", "dataset=text", f"dataset.path={broken}", "pruner=agp", "tracking=none"])
    message = str(caught.value)
    assert "has none (fused Conv1D); allowed: llama | qwen2 | mixtral, or task=oneshot" in message, message


def test_the_command_line_refuses_an_llm_pruner_in_a_training_run_with_exit_2(tmp_path):
    result = run_main(
        ["model=causal_lm", "dataset=text", "pruner=sparsegpt", *cli_dirs(tmp_path, mlflow=False), "tracking=none"]
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "pruner.method=sparsegpt" in line]
    assert len(lines) == 1 and "allowed: task=oneshot (then fine-tune its run folder" in lines[0], result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything ran
