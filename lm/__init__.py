"""Language backbone: DeepSeek-V3 architecture (MLA + DeepSeekMoE + MTP), Hugging Face checkpoint compatible.

Public API (imported lazily so ``import lm`` stays cheap)::

    from lm import preset, LanguageModel, load_pretrained, save_pretrained, Generator, Tokenizer
    model = load_pretrained("path/to/checkpoint", device="cuda")
    text = Generator(model, Tokenizer.load("path/to/checkpoint")).generate("Vin max?", max_new_tokens=64).texts[0]
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LMConfig": "lm.config",
    "LMConfigError": "lm.config",
    "preset": "lm.config",
    "LanguageModel": "lm.model",
    "LMOutput": "lm.model",
    "InputError": "lm.model",
    "LatentCache": "lm.cache",
    "CacheError": "lm.cache",
    "Generator": "lm.generate",
    "GenerationError": "lm.generate",
    "GenerationResult": "lm.generate",
    "SamplingParams": "lm.generate",
    "load_pretrained": "lm.checkpoint",
    "save_pretrained": "lm.checkpoint",
    "CheckpointError": "lm.checkpoint",
    "Tokenizer": "lm.tokenizer",
    "TokenizerError": "lm.tokenizer",
    "Trainer": "lm.train",
    "TrainConfig": "lm.train",
    "TokenDataset": "lm.train",
    "TrainError": "lm.train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lm' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
