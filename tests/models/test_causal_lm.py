"""model=causal_lm from a config (four families) and pretrained_lm from a folder or the hub cache."""

from __future__ import annotations

import json

import pytest
import torch

from framework.errors import ConfigError
from framework.models.causal_lm import causal_lm, pretrained_causal_lm


@pytest.mark.parametrize(
    "architecture, sizes, config_keys",
    [
        ("llama", dict(num_kv_heads=2), dict(num_key_value_heads=2, head_dim=8)),
        ("qwen2", dict(num_kv_heads=1), dict(num_key_value_heads=1)),
        ("gpt2", dict(intermediate_size=48), dict(n_inner=48, n_head=4)),
        (
            "mixtral",
            dict(num_kv_heads=2, num_experts=3, experts_per_token=2),
            dict(num_local_experts=3, num_experts_per_tok=2),
        ),
    ],
)
def test_each_family_is_built_from_the_same_size_names(architecture, sizes, config_keys):
    model = causal_lm(architecture, hidden_size=32, num_layers=1, num_heads=4, max_positions=32, **sizes)
    assert model.config.model_type == architecture and model.config.vocab_size == 256
    assert {key: getattr(model.config, key) for key in config_keys} == config_keys
    assert model(torch.zeros(1, 5, dtype=torch.long)).logits.shape == (1, 5, 256)


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (dict(architecture="bert"), "model.architecture='bert' is invalid; allowed: llama | qwen2 | mixtral | gpt2"),
        (dict(num_heads=3), "model.hidden_size=128 is not a multiple of model.num_heads=3"),
        (dict(num_kv_heads=3), "model.num_kv_heads=3 does not divide model.num_heads=4"),
        (dict(architecture="gpt2", num_kv_heads=2), "model.num_kv_heads=2 does not apply to model.architecture=gpt2"),
        (
            dict(architecture="mixtral", num_experts=2, experts_per_token=3),
            "allowed: 1 <= experts_per_token <= num_experts",
        ),
        (dict(num_layers=0), "model.num_layers=0 is invalid"),
    ],
)
def test_bad_sizes_are_one_line(arguments, fragment):
    with pytest.raises(ConfigError) as caught:
        causal_lm(**arguments)
    assert fragment in str(caught.value)


def test_a_saved_folder_loads_with_the_same_logits(tmp_path):
    model = causal_lm("llama", hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2).eval()
    model.save_pretrained(tmp_path)
    loaded = pretrained_causal_lm(str(tmp_path))
    tokens = torch.arange(10).unsqueeze(0)
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits)


def test_a_folder_that_is_not_a_causal_lm_and_a_missing_model_are_one_line(tmp_path, monkeypatch):
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ConfigError, match=r"is not a causal language model \(model_type='bert'"):
        pretrained_causal_lm(str(encoder))
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]})
    )
    with pytest.raises(ConfigError, match="is not a causal language model"):
        pretrained_causal_lm(str(classifier))
    with pytest.raises(ConfigError, match="has no config.json"):
        pretrained_causal_lm(str(tmp_path))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as caught:
        pretrained_causal_lm("someone/not-cached")
    message = str(caught.value)
    assert "model.name=someone/not-cached is not a folder, and not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set, so nothing is downloaded" in message and "\n" not in message


def test_a_model_in_the_hub_cache_loads_offline(tmp_path, monkeypatch):
    # the cache layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<commit>/...}
    repo = tmp_path / "cache" / "models--someone--tiny-lm"
    snapshot = repo / "snapshots" / ("0" * 40)
    causal_lm("gpt2", hidden_size=32, num_layers=1, num_heads=4).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    assert pretrained_causal_lm("someone/tiny-lm").config.model_type == "gpt2"
