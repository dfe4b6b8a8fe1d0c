"""Text for causal language models: tokenizers, token blocks, the ``dataset=text`` source.

A text source reads local text (a file, a folder of ``*.txt``, or the embedded corpus of
:mod:`framework.data.corpus`), tokenizes it once, and cuts each split's token stream into
fixed-length blocks. A sample is ``(input_ids, targets)``: ``block_size`` tokens and the same
tokens shifted by one, so the loss of a block is the mean next-token cross-entropy and
perplexity is ``exp`` of that mean over the validation tokens.

Splits. A folder holding ``train.txt`` and ``validation.txt`` gives its own split; any other
text is split by position: the last ``val_fraction`` of the token stream is validation, so no
validation block overlaps a training one (a random split of overlapping windows would leak).

Tokenizers. ``byte``: the UTF-8 bytes, 256 tokens, nothing to download, any text. Otherwise a
Hugging Face tokenizer folder (or hub id already in the local cache): only its JSON/text files
are read (no code runs). The tokenizer must fit the model: :func:`check_tokenizer_fits`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from framework.errors import ConfigError, DataError

BYTE = "byte"
MODEL = "model"  # dataset.tokenizer=model: the model's own (resolved by the runner, which knows the model)
SPLIT_FILES = ("train.txt", "validation.txt")


def _byte_symbols() -> dict[int, str]:
    """The printable stand-in of every byte that byte-level BPE tokenizers use (GPT-2's alphabet):
    printable Latin-1 bytes stand for themselves, the others for code points from 256 on."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return symbols


class ByteTokenizer:
    """UTF-8 bytes as tokens (0..255): works on any text and any model with ``vocab_size >= 256``."""

    name = BYTE
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def as_pretrained(self):
        """The same tokenizer as a transformers ``PreTrainedTokenizerFast`` (token id = byte value),
        saved beside a model so that its folder loads with ``AutoTokenizer`` like any other."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        vocab = {symbol: byte for byte, symbol in _byte_symbols().items()}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


class PretrainedTokenizer:
    """A Hugging Face tokenizer (``transformers.AutoTokenizer``) behind the same two methods."""

    def __init__(self, name_or_path: str) -> None:
        from framework.models.hub import load_tokenizer

        self.name = name_or_path
        self.tokenizer = load_tokenizer(name_or_path)
        self.vocab_size = len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        # verbose=False: the whole corpus is one sequence, longer than any model's context, on purpose
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))


def build_tokenizer(name: str) -> ByteTokenizer | PretrainedTokenizer:
    """``byte`` or a tokenizer folder / cached hub id."""
    if name == MODEL:
        raise ConfigError(
            "dataset.tokenizer=model names the model's tokenizer, which only a run knows; allowed here: byte or a tokenizer folder"
        )
    return ByteTokenizer() if name == BYTE else PretrainedTokenizer(name)


def check_tokenizer_fits(
    tokenizer_name: str, tokenizer_size: int, model_vocab_size: int, model_tokenizer: str | None
) -> None:
    """One line when the tokenizer cannot feed the model: ids past the embedding, or a byte-level
    tokenizer on a model that was trained with another one (its output would be meaningless)."""
    if tokenizer_size > model_vocab_size:
        raise ConfigError(
            f"dataset.tokenizer={tokenizer_name} has {tokenizer_size} tokens but the model embeds only "
            f"vocab_size={model_vocab_size}; allowed: a tokenizer of at most {model_vocab_size} tokens (the model's own)"
        )
    if tokenizer_name == BYTE and model_tokenizer is not None:
        raise ConfigError(
            f"dataset.tokenizer=byte does not match the pretrained model, which was trained with the tokenizer "
            f"of {model_tokenizer}; set dataset.tokenizer=model (or that folder)"
        )


class TokenBlocks(Dataset):
    """``len(tokens) - 1`` tokens cut into blocks of ``block_size``: sample i is
    ``(tokens[iT:(i+1)T], tokens[iT+1:(i+1)T+1])``."""

    def __init__(self, tokens: torch.Tensor, block_size: int) -> None:
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.block_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.block_size
        window = self.tokens[start : start + self.block_size + 1].long()
        return window[:-1], window[1:]

    def random_windows(self, count: int, seed: int) -> torch.Tensor:
        """``[count, block_size]`` windows at random offsets (seeded): the calibration samples of
        one-shot pruners, as Wanda and SparseGPT draw them from their training text."""
        span = len(self.tokens) - self.block_size
        if span < 1:
            raise DataError(
                f"the training text has {len(self.tokens)} tokens; a calibration window needs more than {self.block_size}"
            )
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, span, (count,), generator=generator)
        return torch.stack([self.tokens[s : s + self.block_size].long() for s in starts.tolist()])


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"dataset.{key}={value!r} is invalid; allowed: an integer >= 1")
    return value


def text_files(path: Path) -> list[Path]:
    """The ``*.txt`` files of a folder (recursively, sorted) or the one file given."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"dataset.path={path} holds no *.txt file; allowed: a text file or a folder of *.txt files")
    return files


def read_texts(files: Sequence[Path]) -> str:
    try:
        return "\n\n".join(f.read_text(encoding="utf-8") for f in files)
    except UnicodeDecodeError as error:
        raise DataError(f"dataset.path: a file is not UTF-8 text ({error.reason} at byte {error.start})") from None


class TextSplits:
    """Both splits as token blocks, plus the tokenizer that made them."""

    def __init__(self, train: TokenBlocks, val: TokenBlocks, tokenizer: ByteTokenizer | PretrainedTokenizer) -> None:
        self.train, self.val, self.tokenizer = train, val, tokenizer


class Text:
    """``dataset=text``: blocks of ``block_size`` tokens from local text or the embedded corpus.

    ``path``: a text file, a folder of ``*.txt`` (``train.txt`` + ``validation.txt`` give their own
    split) or None for the embedded corpus; ``tokenizer``: ``byte`` or a Hugging Face tokenizer
    folder; ``val_fraction``: the tail of the token stream held out when the text has no split.
    """

    def __init__(
        self,
        path: str | None = None,
        tokenizer: str = BYTE,
        block_size: int = 128,
        val_fraction: float = 0.1,
    ) -> None:
        self.block_size = _positive_int("block_size", block_size)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"dataset.val_fraction={val_fraction!r} is invalid; allowed: a number in (0, 1)")
        if not isinstance(tokenizer, str) or not tokenizer:
            raise ConfigError(f"dataset.tokenizer={tokenizer!r} is invalid; allowed: byte or a tokenizer folder")
        self.path = None if path in (None, "") else str(path)
        self.tokenizer_name = tokenizer
        self.val_fraction = float(val_fraction)

    def use_model_tokenizer(self, model_tokenizer: str | None) -> None:
        """``tokenizer=model``: the pretrained model's tokenizer folder, or ``byte`` for a model
        without one (built from a config)."""
        if self.tokenizer_name == MODEL:
            self.tokenizer_name = model_tokenizer or BYTE

    def check(self) -> None:
        """The text is there (nothing is read)."""
        if self.path is not None:
            if not os.path.exists(self.path):
                raise DataError(
                    f"dataset.path={self.path} does not exist; allowed: a text file or a folder of *.txt files"
                )
            text_files(Path(self.path))

    def _raw_splits(self) -> tuple[str, str | None]:
        if self.path is None:
            from framework.data.corpus import generate_corpus

            return generate_corpus(), None
        root = Path(self.path)
        if root.is_dir() and all((root / name).is_file() for name in SPLIT_FILES):
            return read_texts([root / SPLIT_FILES[0]]), read_texts([root / SPLIT_FILES[1]])
        return read_texts(text_files(root)), None

    def load(self) -> TextSplits:
        self.check()
        tokenizer = build_tokenizer(self.tokenizer_name)
        train_text, val_text = self._raw_splits()
        train_tokens = torch.tensor(tokenizer.encode(train_text), dtype=torch.int32)
        if val_text is None:
            cut = int(round(len(train_tokens) * (1.0 - self.val_fraction)))
            train_tokens, val_tokens = train_tokens[:cut], train_tokens[cut:]
        else:
            val_tokens = torch.tensor(tokenizer.encode(val_text), dtype=torch.int32)
        train, val = TokenBlocks(train_tokens, self.block_size), TokenBlocks(val_tokens, self.block_size)
        for split, blocks in (("train", train), ("validation", val)):
            if len(blocks) == 0:
                raise DataError(
                    f"the {split} text has {len(blocks.tokens)} tokens, fewer than one block of "
                    f"dataset.block_size={self.block_size} + 1; allowed: more text or a smaller block_size"
                )
        return TextSplits(train, val, tokenizer)
