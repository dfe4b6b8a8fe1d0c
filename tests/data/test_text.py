"""dataset=text: the embedded corpus, tokenizers, blocks, splits, calibration windows, refusals."""

from __future__ import annotations

import pytest
import torch

from framework.data.corpus import corpus_digest, generate_corpus
from framework.data.text import ByteTokenizer, Text, TokenBlocks, check_tokenizer_fits
from framework.errors import ConfigError, DataError

CORPUS_DIGEST = "ce942df4122780ee2c30d4614efdaa2131167fda9ef10a743188e8c7730f00a6"


def test_the_embedded_corpus_is_the_same_text_on_every_machine():
    text = generate_corpus()
    assert len(text) == 600_000 and text.isascii()
    assert corpus_digest(text) == CORPUS_DIGEST
    assert "Mara" in text and "make" in text  # the village and its sums


def test_byte_tokenizer_and_its_transformers_form_give_the_same_ids(tmp_path):
    text = "Héllo, wörld!\n\n  two  spaces ✓"
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert ids == list(text.encode("utf-8")) and tokenizer.decode(ids) == text
    pretrained = tokenizer.as_pretrained()
    pretrained.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text, add_special_tokens=False)["input_ids"] == ids and len(reloaded) == 256


def test_blocks_predict_the_next_token_and_the_split_holds_the_tail(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefghij" * 30, encoding="utf-8")
    splits = Text(path=str(tmp_path), block_size=16, val_fraction=0.2).load()
    inputs, targets = splits.train[1]
    assert torch.equal(inputs[1:], targets[:-1]) and inputs.dtype == torch.long and len(inputs) == 16
    assert len(splits.train.tokens) == 240 and len(splits.val.tokens) == 60  # 300 bytes, the last 20 % held out
    assert len(splits.train) == (240 - 1) // 16
    windows = splits.train.random_windows(5, seed=3)
    assert windows.shape == (5, 16) and torch.equal(windows, splits.train.random_windows(5, seed=3))
    assert not torch.equal(windows, splits.train.random_windows(5, seed=4))


def test_a_folder_with_train_and_validation_files_is_its_own_split(tmp_path):
    (tmp_path / "train.txt").write_text("x" * 100, encoding="utf-8")
    (tmp_path / "validation.txt").write_text("y" * 40, encoding="utf-8")
    splits = Text(path=str(tmp_path), block_size=8).load()
    assert set(splits.train.tokens.tolist()) == {ord("x")} and set(splits.val.tokens.tolist()) == {ord("y")}


@pytest.mark.parametrize(
    "arguments, error, fragment",
    [
        (dict(block_size=0), ConfigError, "dataset.block_size=0 is invalid"),
        (dict(val_fraction=1.0), ConfigError, "dataset.val_fraction=1.0 is invalid"),
        (dict(path="/no/such/text"), DataError, "dataset.path=/no/such/text does not exist"),
    ],
)
def test_bad_text_settings_are_one_line(arguments, error, fragment):
    with pytest.raises(error) as caught:
        Text(**arguments).check()
    assert fragment in str(caught.value)


def test_text_too_short_for_a_block_and_non_utf8_files_are_one_line(tmp_path):
    (tmp_path / "short.txt").write_text("tiny", encoding="utf-8")
    with pytest.raises(DataError, match="fewer than one block of dataset.block_size=128"):
        Text(path=str(tmp_path / "short.txt")).load()
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 " * 100)
    with pytest.raises(DataError, match="not UTF-8 text"):
        Text(path=str(tmp_path / "latin.txt")).load()


def test_a_tokenizer_that_does_not_fit_the_model_is_refused():
    with pytest.raises(ConfigError, match="has 50257 tokens but the model embeds only vocab_size=256"):
        check_tokenizer_fits("gpt2-folder", 50257, 256, None)
    with pytest.raises(ConfigError, match="dataset.tokenizer=byte does not match the pretrained model"):
        check_tokenizer_fits("byte", 256, 32000, "/models/llama")
    check_tokenizer_fits("byte", 256, 256, None)


def test_empty_blocks_have_no_windows():
    with pytest.raises(DataError, match="a calibration window needs more than 8"):
        TokenBlocks(torch.arange(5, dtype=torch.int32), 8).random_windows(1, seed=0)
