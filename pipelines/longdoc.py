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
from safetensors import safe_open

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
    """Token ids of a stretch of the marked document (BOS first) and each block's token span [start, end)."""

    ids: list[int]
    spans: dict[str, tuple[int, int]]
    truncated: bool = False


def encode_document(doc: Document, tokenizer: Tokenizer, max_tokens: int) -> Encoded:
    """BOS, then `[block id] text` per block; stops before the block that would not fit in `max_tokens`."""
    windows = encode_windows(doc, tokenizer, max_tokens)
    first = windows[0]
    first.truncated = len(windows) > 1
    return first


def encode_windows(doc: Document, tokenizer: Tokenizer, window: int) -> list[Encoded]:
    """The marked document cut at block boundaries into windows of at most `window` tokens, each opened by BOS
    (a model with fewer positions than the document has tokens reads it window by window)."""
    pieces = block_text(doc)
    encoded = tokenizer.encode_batch([f"[{bid}] {text}\n" for bid, text in pieces])
    out = [Encoded([tokenizer.bos_id], {})]
    for (bid, _), toks in zip(pieces, encoded, strict=True):
        toks = toks[: window - 1]  # a block longer than a whole window keeps its start
        if len(out[-1].ids) + len(toks) > window:
            out.append(Encoded([tokenizer.bos_id], {}))
        cur = out[-1]
        cur.spans[bid] = (len(cur.ids), len(cur.ids) + len(toks))
        cur.ids += toks
    return out


# ---------------------------------------------------------------- the pass and its saved cache


@dataclass
class PassResult:
    """What one pass over a document produced: one cache row per window."""

    cache: LatentCache
    windows: list[Encoded]
    block_vectors: dict[str, np.ndarray]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(w.ids) for w in self.windows)


class LongDocPass:
    """Runs documents through the backbone once and keeps their latent caches in the workspace."""

    def __init__(self, workspace: Workspace, lm: LMBundle, chunk: int = 1024, reserve: int = 256) -> None:
        self.workspace = workspace
        self.lm = lm
        self.chunk = chunk
        self.reserve = reserve  # positions left free in each window for a question and its answer

    def cache_path(self, doc_id: str) -> Path:
        """Where a document's cache lives: named by the document and the model architecture it belongs to."""
        return self.workspace.root / "caches" / f"{doc_id}-{config_fingerprint(self.lm.model.config)}.safetensors"

    @torch.inference_mode()
    def _prefill(self, ids: list[int], capacity: int) -> tuple[LatentCache, torch.Tensor, torch.Tensor]:
        """A fresh 1-row cache holding `ids`, their hidden states [S, D] and the last position's logits."""
        model = self.lm.model
        cache = LatentCache.for_model(model.config, 1, capacity, model.dtype, model.device)
        t = torch.tensor([ids], device=model.device)
        hidden, logits = [], None
        for c0 in range(0, len(ids), self.chunk):
            out = model(t[:, c0 : c0 + self.chunk], cache=cache, logits_to_keep=1)
            hidden.append(out.hidden[0].float())
            logits = out.logits
        assert logits is not None
        return cache, torch.cat(hidden), logits

    def run(self, doc: Document) -> PassResult:
        """Prefill the whole document window by window, save the cache (one row per window), and return it with
        each block's mean hidden state."""
        start = time.perf_counter()
        model = self.lm.model
        windows = encode_windows(doc, self.lm.tokenizer, self.lm.max_tokens - self.reserve)
        width = max(len(w.ids) for w in windows)
        cache = LatentCache.for_model(model.config, len(windows), width, model.dtype, model.device)
        vectors: dict[str, np.ndarray] = {}
        for k, w in enumerate(windows):
            part, states, _ = self._prefill(w.ids, len(w.ids))
            cache.data[:, k, : len(w.ids)] = part.data[:, 0, : len(w.ids)]
            arr = states.cpu().numpy()
            vectors.update({bid: arr[a:b].mean(0) for bid, (a, b) in w.spans.items()})
        cache.set_lengths([len(w.ids) for w in windows])
        path = self.cache_path(doc.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "doc_id": doc.id,
            "tokens": str(sum(len(w.ids) for w in windows)),
            "spans": json.dumps([w.spans for w in windows]),
        }
        cache.save(path, metadata=meta)
        return PassResult(cache, windows, vectors, time.perf_counter() - start)

    def window_of(self, doc_id: str, block_id: str | None) -> int:
        """The window (cache row) holding a block; the first one when the block is not given or not found."""
        path = self.cache_path(doc_id)
        if block_id is None or not path.exists():
            return 0
        with safe_open(str(path), framework="pt") as f:
            spans = json.loads((f.metadata() or {}).get("spans", "[]"))
        return next((k for k, s in enumerate(spans) if block_id in s), 0)

    def load(self, doc_id: str, window: int = 0, extra: int = 256) -> LatentCache | None:
        """One window of a document's saved cache (with room for `extra` more tokens), or None when there is none."""
        path = self.cache_path(doc_id)
        if not path.exists():
            return None
        saved = LatentCache.load(path, config=self.lm.model.config)
        n = saved.host_lengths[window]
        row = LatentCache(
            saved.num_layers, 1, n + extra, saved.dim, saved.data.dtype, "cpu", saved.max_positions, saved.fingerprint
        )
        row.data[:, 0, :n] = saved.data[:, window, :n]
        row.set_lengths([n])
        return row

    @torch.inference_mode()
    def first_token(
        self, doc: Document, question: str, use_cache: bool, block_id: str | None = None
    ) -> tuple[int, float]:
        """Time to the first answer token, with the window holding `block_id` as context: from the saved cache,
        or by encoding that window and the question anew."""
        q_ids = self.lm.tokenizer.encode(f"\nQuestion: {question}\nAnswer:")
        window = self.window_of(doc.id, block_id)
        start = time.perf_counter()
        if use_cache:
            cache = self.load(doc.id, window, extra=len(q_ids) + 8)
            if cache is None:
                raise LongDocError("no saved cache for this document: run the pass first")
            logits = self.lm.model(torch.tensor([q_ids]), cache=cache, logits_to_keep=1).logits
        else:
            ids = encode_windows(doc, self.lm.tokenizer, self.lm.max_tokens - self.reserve)[window].ids + q_ids
            logits = self._prefill(ids, len(ids) + 8)[2]
        return int(logits[0, -1].argmax()), time.perf_counter() - start


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
