"""Long-document pass: the whole document through the language backbone once, its MLA latent cache kept.

The document is written out in reading order with a block marker before each block (`[p12-b7] text`, tables as
`a | b | c` rows), tokenised, and prefilled once. The compressed latent cache (kv_lora_rank + qk_rope_head_dim
numbers per token per layer) is saved in the workspace as safetensors and loaded for every later question, so a
question costs only its own tokens, never a re-encoding of the document. The same pass yields one hidden-state
vector per block, from which `semantic_links` proposes paragraph → table/figure links.

Also here: `LMReader`, the generative reader `pipelines.qa` uses over retrieved evidence, and `load_lm`, which
opens a Hugging Face DeepSeek-format checkpoint folder (`--lm PATH`), the project's trained one, or — for
measurements only — a preset with random weights.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lm.cache import LatentCache, config_fingerprint
from lm.checkpoint import load_pretrained
from lm.config import preset
from lm.generate import Generator, SamplingParams
from lm.model import LanguageModel
from lm.tokenizer import Tokenizer
from pipelines.document import Document, Link
from pipelines.retrieval import caption_index
from pipelines.store import Workspace

PROJECT_WEIGHTS = Path(__file__).resolve().parents[1] / "lm" / "weights" / "small"


class LongDocError(ValueError):
    """A checkpoint or cache that cannot be used."""


@dataclass
class LMBundle:
    """A loaded backbone with its tokenizer; `source` says where the weights came from."""

    model: LanguageModel
    tokenizer: Tokenizer
    source: str
    generator: Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = Generator(self.model, self.tokenizer)

    @property
    def max_tokens(self) -> int:
        return self.model.config.max_position_embeddings


def load_lm(path: str | Path | None = None) -> LMBundle:
    """The backbone from a checkpoint folder (config.json, safetensors, tokenizer.json), else the project's own.

    Raises:
        LongDocError: no usable checkpoint (none given and the project has no trained weights).
    """
    folder = Path(path) if path is not None else PROJECT_WEIGHTS
    if not (folder / "config.json").is_file():
        hint = "" if path is not None else " (the project has no trained LM weights; pass --lm PATH)"
        raise LongDocError(f"no language-model checkpoint at {folder}{hint}")
    try:
        model = load_pretrained(folder, device="cpu", dtype=torch.float32)
        tokenizer = Tokenizer.load(folder)
    except ValueError as exc:  # CheckpointError, TokenizerError, LMConfigError are ValueErrors
        raise LongDocError(str(exc)) from exc
    return LMBundle(model, tokenizer, str(folder))


def random_lm(preset_name: str, tokenizer: Tokenizer, max_positions: int | None = None, seed: int = 0) -> LMBundle:
    """A preset with random weights (for size and speed measurements only), its vocabulary fitted to `tokenizer`."""
    changes: dict = {
        "vocab_size": tokenizer.vocab_size,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "torch_dtype": "float32",
    }
    if max_positions:
        changes["max_position_embeddings"] = max_positions
    config = preset(preset_name).replace(**changes)
    torch.manual_seed(seed)
    model = LanguageModel(config).to(torch.float32).eval()
    return LMBundle(model, tokenizer, f"random:{preset_name}")


# ---------------------------------------------------------------- the document as marked text


def block_text(doc: Document) -> list[tuple[str, str]]:
    """(block id, text) in reading order, headers/footers left out, tables as `a | b | c` rows."""
    out = []
    for b in doc.blocks:
        if b.kind in ("page_header", "page_footer"):
            continue
        if b.table is not None:
            text = "\n".join(" | ".join(c for c in row) for row in b.table.grid())
        else:
            text = b.text.strip() or (b.label or "")
        if text:
            out.append((b.id, text))
    return out


@dataclass
class Encoded:
    """Token ids of the marked document and each block's token span [start, end)."""

    ids: list[int]
    spans: dict[str, tuple[int, int]]
    truncated: bool


def encode_document(doc: Document, tokenizer: Tokenizer, max_tokens: int) -> Encoded:
    """BOS, then `[block id] text` per block; stops before the block that would not fit in `max_tokens`."""
    ids = [tokenizer.bos_id]
    spans: dict[str, tuple[int, int]] = {}
    pieces = block_text(doc)
    encoded = tokenizer.encode_batch([f"[{bid}] {text}\n" for bid, text in pieces])
    truncated = False
    for (bid, _), toks in zip(pieces, encoded, strict=True):
        if len(ids) + len(toks) > max_tokens:
            truncated = True
            break
        spans[bid] = (len(ids), len(ids) + len(toks))
        ids += toks
    return Encoded(ids, spans, truncated)


# ---------------------------------------------------------------- the pass and its saved cache


@dataclass
class PassResult:
    """What one pass over a document produced."""

    cache: LatentCache
    encoded: Encoded
    block_vectors: dict[str, np.ndarray]
    seconds: float


class LongDocPass:
    """Runs documents through the backbone once and keeps their latent caches in the workspace."""

    def __init__(self, workspace: Workspace, lm: LMBundle, chunk: int = 1024) -> None:
        self.workspace = workspace
        self.lm = lm
        self.chunk = chunk

    def cache_path(self, doc_id: str) -> Path:
        """Where a document's cache lives: named by the document and the model architecture it belongs to."""
        return self.workspace.root / "caches" / f"{doc_id}-{config_fingerprint(self.lm.model.config)}.safetensors"

    @torch.inference_mode()
    def run(self, doc: Document, reserve: int = 256) -> PassResult:
        """Prefill the whole document (as far as the model's positions reach, keeping `reserve` for questions),
        save the cache, and return it with per-block mean hidden states."""
        start = time.perf_counter()
        model = self.lm.model
        enc = encode_document(doc, self.lm.tokenizer, self.lm.max_tokens - reserve)
        cache = LatentCache.for_model(model.config, 1, len(enc.ids) + reserve, model.dtype, model.device)
        ids = torch.tensor([enc.ids], device=model.device)
        hidden = []
        for c0 in range(0, len(enc.ids), self.chunk):
            out = model(ids[:, c0 : c0 + self.chunk], cache=cache, logits_to_keep=1)
            hidden.append(out.hidden[0].float())
        states = torch.cat(hidden).cpu().numpy()
        vectors = {bid: states[a:b].mean(0) for bid, (a, b) in enc.spans.items()}
        path = self.cache_path(doc.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"doc_id": doc.id, "tokens": str(len(enc.ids)), "truncated": str(enc.truncated),
                "spans": json.dumps(enc.spans)}  # fmt: skip
        cache.save(path, metadata=meta)
        return PassResult(cache, enc, vectors, time.perf_counter() - start)

    def load(self, doc_id: str, extra: int = 256) -> LatentCache | None:
        """The saved cache of a document (with room for `extra` more tokens), or None when there is none."""
        path = self.cache_path(doc_id)
        if not path.exists():
            return None
        cached = LatentCache.load(path, config=self.lm.model.config)
        return cached.clone(capacity=cached.host_lengths[0] + extra)

    @torch.inference_mode()
    def first_token(self, doc: Document, question: str, use_cache: bool) -> tuple[int, float]:
        """Time to the first answer token: from the saved cache, or by encoding document and question anew."""
        q_ids = self.lm.tokenizer.encode(f"\nQuestion: {question}\nAnswer:")
        start = time.perf_counter()
        if use_cache:
            cache = self.load(doc.id, extra=len(q_ids) + 8)
            if cache is None:
                raise LongDocError("no saved cache for this document: run the pass first")
            out = self.lm.model(torch.tensor([q_ids]), cache=cache, logits_to_keep=1)
        else:
            enc = encode_document(doc, self.lm.tokenizer, self.lm.max_tokens - 256)
            ids = enc.ids + q_ids
            cache = LatentCache.for_model(self.lm.model.config, 1, len(ids) + 8, self.lm.model.dtype, "cpu")
            t = torch.tensor([ids])
            for c0 in range(0, len(ids), self.chunk):
                out = self.lm.model(t[:, c0 : c0 + self.chunk], cache=cache, logits_to_keep=1)
        token = int(out.logits[0, -1].argmax())
        return token, time.perf_counter() - start


def cache_bytes_per_token(lm: LMBundle, dtype_bytes: int = 2) -> dict[str, int]:
    """Bytes per token of the MLA latent cache against a standard (MHA) KV cache of the same model."""
    c = lm.model.config
    layers = c.num_hidden_layers
    return {
        "mla_latent": layers * c.kv_cache_dim * dtype_bytes,
        "standard_kv": layers * c.num_attention_heads * (c.qk_head_dim + c.v_head_dim) * dtype_bytes,
    }


# ---------------------------------------------------------------- semantic links


def semantic_links(
    doc: Document, vectors: dict[str, np.ndarray], threshold: float, method: str, window: int = 3
) -> list[Link]:
    """Paragraph → table/figure links where a paragraph's vector is closest to an object's caption vector.

    Only objects within `window` pages of the paragraph compete (a paragraph discusses nearby content) and only
    paragraphs that do not already name an object ("Table 3", "Figure 2-1"), which are the explicit links' job.
    """
    captions = caption_index(doc)
    targets = [(obj_id, cap) for obj_id, cap in captions.items() if cap.id in vectors]
    out = []
    named = re.compile(r"\b(?:Table|Figure|Fig\.)\s*\d", re.I)
    for b in doc.blocks:
        if b.kind not in ("paragraph", "list_item") or b.id not in vectors or named.search(b.text):
            continue
        v = vectors[b.id]
        best, best_sim = None, threshold
        for obj_id, cap in targets:
            if abs(cap.page - b.page) > window:
                continue
            w = vectors[cap.id]
            sim = float(v @ w / (np.linalg.norm(v) * np.linalg.norm(w) + 1e-9))
            if sim > best_sim:
                best, best_sim = obj_id, sim
        if best is not None:
            out.append(Link(b.id, best, "semantic", f"{method} similarity", round(best_sim, 4)))
    return out


# ---------------------------------------------------------------- the generative reader


class LMReader:
    """Writes an answer from numbered evidence with the backbone, asked to cite evidence ids in brackets."""

    def __init__(self, lm: LMBundle, max_new_tokens: int = 48) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens

    def read(self, question: str, evidence: list[tuple[str, str]]) -> str:
        lines = [f"[{eid}] {text}" for eid, text in evidence]
        prompt = "Evidence:\n" + "\n".join(lines) + f"\nQuestion: {question}\nAnswer (cite evidence ids):"
        ids = self.lm.generator.encode(prompt)[-(self.lm.max_tokens - self.max_new_tokens) :]
        result = self.lm.generator.generate(
            [ids], SamplingParams(max_new_tokens=self.max_new_tokens, stop_strings=("\n",))
        )
        return (result.texts or [""])[0]
