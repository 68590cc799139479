"""Byte-level BPE tokenizer trained with the Hugging Face ``tokenizers`` library.

Saved as ``tokenizer.json`` (plus ``tokenizer_config.json`` and ``special_tokens_map.json``) so that
``transformers.PreTrainedTokenizerFast.from_pretrained(folder)`` and ``AutoTokenizer`` load it unchanged.
Special tokens come first: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2 (the ids the ``small`` preset uses).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


class TokenizerError(ValueError):
    """A tokenizer file is missing or unusable."""


class Tokenizer:
    """Thin wrapper over a ``tokenizers.Tokenizer`` with the project's special tokens."""

    def __init__(self, inner: _HFTokenizer) -> None:
        self.inner = inner
        ids = [inner.token_to_id(t) for t in SPECIAL_TOKENS]
        if any(i is None for i in ids):
            raise TokenizerError(f"tokenizer lacks the special tokens {SPECIAL_TOKENS}")
        self.pad_id, self.bos_id, self.eos_id = ids

    @property
    def vocab_size(self) -> int:
        return self.inner.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> Tokenizer:
        """Learn a byte-level BPE vocabulary of ``vocab_size`` entries (special tokens included) from ``texts``."""
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise TokenizerError("vocab_size must cover the 256 byte symbols and the special tokens")
        inner = _HFTokenizer(models.BPE())
        inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        inner.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        inner.train_from_iterator(texts, trainer=trainer)
        return cls(inner)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load ``tokenizer.json`` (``path`` may be the file or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(f"tokenizer: no tokenizer.json at {path}")
        try:
            return cls(_HFTokenizer.from_file(str(path)))
        except Exception as exc:  # the Rust library raises plain Exception subclasses for bad files
            raise TokenizerError(f"tokenizer: cannot read {path}: {exc}") from exc

    def save(self, folder: str | Path, model_max_length: int = 4096) -> None:
        """Write ``tokenizer.json`` and the config files ``transformers`` expects beside it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.inner.save(str(folder / "tokenizer.json"))
        pad, bos, eos = SPECIAL_TOKENS
        special = {"pad_token": pad, "bos_token": bos, "eos_token": eos}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length, **special}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self.inner.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts (parallel in the Rust library)."""
        return [e.ids for e in self.inner.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; bytes of an unfinished UTF-8 character decode as U+FFFD."""
        return self.inner.decode(list(ids), skip_special_tokens=skip_special_tokens)
