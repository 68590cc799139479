"""Latent KV cache for MLA: ``kv_lora_rank + qk_rope_head_dim`` numbers per token per layer.

One preallocated tensor ``data`` [layers, batch, capacity, C + R] holds, for every cached token, the normalised
joint KV latent and the rotated RoPE key. Rows may hold different lengths (``lengths``); new tokens of a row are
written right after its own length, and attention masks each row to its own prefix. The cache can be saved to and
loaded from a safetensors file (only the filled slots), so a long document is encoded once and questions about it
reuse the cache.

Device-side ``lengths`` drives positions, writes and masks (so captured CUDA graphs can replay decode steps);
a host-side mirror answers capacity questions without device synchronisation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lm.config import LMConfig
from lm.mla import AttentionMeta, build_meta

_FORMAT = "ohmlens-latent-cache-v1"


class CacheError(ValueError):
    """The cache is too small, of the wrong shape, or its file is unusable."""


def config_fingerprint(config: LMConfig) -> str:
    """Short hash of the architecture fields a cache depends on (to refuse a cache made by another model)."""
    keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "kv_lora_rank",
        "qk_rope_head_dim",
        "qk_nope_head_dim",
        "v_head_dim",
        "vocab_size",
        "rope_theta",
        "rope_scaling",
        "rope_interleave",
    )
    blob = json.dumps({k: getattr(config, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class LatentCache:
    """Compressed MLA cache for a batch of sequences.

    Args:
        num_layers: attention layers served (main decoder layers, or MTP modules).
        batch_size: rows.
        capacity: slots per row.
        dim: values per token per layer (``kv_lora_rank + qk_rope_head_dim``).
        dtype: storage dtype (the model's).
        device: storage device.
        max_positions: largest position the model's rotary table covers.
        fingerprint: architecture hash checked when a saved cache is loaded.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        capacity: int,
        dim: int,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        max_positions: int | None = None,
        fingerprint: str = "",
    ) -> None:
        if min(num_layers, batch_size, capacity, dim) <= 0:
            raise CacheError("cache: layers, batch size, capacity and dim must be positive")
        self.data = torch.zeros(num_layers, batch_size, capacity, dim, dtype=dtype, device=device)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self._host = [0] * batch_size
        self.max_positions = max_positions or capacity
        self.fingerprint = fingerprint
        self.absorb_max_tokens = 16  # steps this short use absorbed attention over the latent cache

    @classmethod
    def for_model(
        cls,
        config: LMConfig,
        batch_size: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str,
        mtp: bool = False,
    ) -> LatentCache:
        """A cache sized for ``config``'s decoder layers (or its MTP modules when ``mtp``)."""
        layers = config.num_nextn_predict_layers if mtp else config.num_hidden_layers
        if layers == 0:
            raise CacheError("cache: the model has no MTP modules")
        return cls(
            layers,
            batch_size,
            capacity,
            config.kv_cache_dim,
            dtype,
            device,
            config.max_position_embeddings,
            config_fingerprint(config),
        )

    # ------------------------------------------------------------------ shape and size
    @property
    def num_layers(self) -> int:
        return self.data.shape[0]

    @property
    def batch_size(self) -> int:
        return self.data.shape[1]

    @property
    def capacity(self) -> int:
        return self.data.shape[2]

    @property
    def dim(self) -> int:
        return self.data.shape[3]

    @property
    def host_lengths(self) -> list[int]:
        """Cached tokens per row (host copy, no device synchronisation)."""
        return list(self._host)

    def bytes_per_token(self) -> int:
        """Bytes one cached token occupies across all layers."""
        return self.num_layers * self.dim * self.data.element_size()

    def layers(self) -> list[torch.Tensor]:
        """Per-layer views [batch, capacity, dim] (updated in place by the attention layers)."""
        return list(self.data.unbind(0))

    # ------------------------------------------------------------------ stepping
    def prepare(
        self, seqlen: int, absorb: bool | None = None, kv_len: int | None = None
    ) -> tuple[torch.Tensor, AttentionMeta]:
        """Positions [B, S] and attention metadata for appending ``seqlen`` tokens to every row."""
        past = max(self._host)
        need = past + seqlen
        if need > self.capacity:
            raise CacheError(f"cache: {need} tokens exceed the cache capacity of {self.capacity}")
        if need > self.max_positions:
            raise CacheError(f"cache: {need} tokens exceed the model's {self.max_positions} positions")
        if absorb is None:
            absorb = past > 0 and seqlen <= self.absorb_max_tokens
        uniform = len(set(self._host)) == 1
        meta = build_meta(self.lengths, seqlen, kv_len or need, past, absorb, self.data.device, uniform)
        assert meta.write_index is not None
        return meta.write_index, meta

    def advance(self, n: int | Sequence[int]) -> None:
        """Count ``n`` more tokens (per row when a sequence) as cached."""
        if isinstance(n, int):
            self.lengths += n
            self._host = [h + n for h in self._host]
        else:
            self.set_lengths([h + int(k) for h, k in zip(self._host, n, strict=True)])

    def set_lengths(self, lengths: Sequence[int]) -> None:
        """Set each row's cached length (e.g. after a padded prefill, or to roll back rejected tokens)."""
        lengths = [int(x) for x in lengths]
        if len(lengths) != self.batch_size or min(lengths) < 0 or max(lengths) > self.capacity:
            raise CacheError(f"cache: invalid lengths {lengths} for batch {self.batch_size}, capacity {self.capacity}")
        self.lengths.copy_(torch.tensor(lengths, dtype=torch.long))  # in place: captured graphs read this tensor
        self._host = lengths

    def clone(self, capacity: int | None = None, batch_size: int | None = None) -> LatentCache:
        """A copy with room for ``capacity`` slots; a 1-row cache can be broadcast to ``batch_size`` rows."""
        capacity = capacity or self.capacity
        rows = batch_size or self.batch_size
        if rows != self.batch_size and self.batch_size != 1:
            raise CacheError("cache: only a single-row cache can be broadcast to a batch")
        if capacity < max(self._host):
            raise CacheError(f"cache: capacity {capacity} is below the cached length {max(self._host)}")
        out = LatentCache(
            self.num_layers,
            rows,
            capacity,
            self.dim,
            self.data.dtype,
            self.data.device,
            self.max_positions,
            self.fingerprint,
        )
        n = min(capacity, self.capacity)
        out.data[:, :, :n] = self.data[:, :, :n].expand(-1, rows, -1, -1)
        out.set_lengths(self._host * rows if rows != self.batch_size else self._host)
        out.absorb_max_tokens = self.absorb_max_tokens
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write the filled slots of every row to a safetensors file."""
        tensors = {f"row{b}": self.data[:, b, : self._host[b]].contiguous().cpu() for b in range(self.batch_size)}
        meta = {
            "format": _FORMAT,
            "lengths": json.dumps(self._host),
            "num_layers": str(self.num_layers),
            "dim": str(self.dim),
            "max_positions": str(self.max_positions),
            "fingerprint": self.fingerprint,
        }
        meta.update(metadata or {})
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        capacity: int | None = None,
        config: LMConfig | None = None,
    ) -> LatentCache:
        """Read a cache written by :meth:`save`; ``config`` (if given) must match the model that wrote it."""
        path = Path(path)
        if path.suffix != ".safetensors" or not path.is_file():
            raise CacheError(f"cache: {path} is not a .safetensors file")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _FORMAT:
                    raise CacheError(f"cache: {path} is not a latent cache file")
                lengths = [int(x) for x in json.loads(meta["lengths"])]
                rows = [f.get_tensor(f"row{b}") for b in range(len(lengths))]
        except (OSError, KeyError, json.JSONDecodeError, RuntimeError, SafetensorError) as exc:
            raise CacheError(f"cache: cannot read {path}: {exc}") from exc
        if config is not None and meta.get("fingerprint") != config_fingerprint(config):
            raise CacheError("cache: the file was written by a model with a different architecture")
        num_layers, dim = int(meta["num_layers"]), int(meta["dim"])
        cap = capacity or max(max(lengths), 1)
        cache = cls(
            num_layers,
            len(lengths),
            cap,
            dim,
            rows[0].dtype,
            device,
            int(meta["max_positions"]),
            meta.get("fingerprint", ""),
        )
        for b, row in enumerate(rows):
            if tuple(row.shape) != (num_layers, lengths[b], dim):
                expected = (num_layers, lengths[b], dim)
                raise CacheError(f"cache: row {b} has shape {tuple(row.shape)}, expected {expected}")
            cache.data[:, b, : lengths[b]] = row.to(device)
        cache.set_lengths(lengths)
        return cache
