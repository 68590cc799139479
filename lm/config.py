"""Model configuration for the DeepSeek-V3 language backbone.

One dataclass whose field names are the Hugging Face ``DeepseekV3Config`` keys, so a ``config.json`` written here
loads in ``transformers`` and a public DeepSeek checkpoint's ``config.json`` loads here. RoPE parameters are kept
in the original checkpoint form (``rope_theta`` + ``rope_scaling``), which every ``transformers`` version reads;
the newer ``rope_parameters`` form is accepted on input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any


class LMConfigError(ValueError):
    """A configuration value is missing, out of range or inconsistent."""


SCORING_FUNCS = ("sigmoid", "softmax")
TOPK_METHODS = ("noaux_tc", "greedy", "group_limited_greedy")
ROPE_TYPES = ("default", "yarn")
# Keys that transformers derives or writes for bookkeeping; they carry no information we need to keep.
_DERIVED_KEYS = {
    "head_dim",
    "qk_head_dim",
    "transformers_version",
    "dtype",
    "use_cache",
    "pretraining_tp",
    "output_router_logits",
    "num_mtp_layers",
    "rope_parameters",
    "architectures",
    "model_type",
    "torch_dtype",
}


@dataclass
class LMConfig:
    """DeepSeek-V3 architecture hyper-parameters (Hugging Face ``DeepseekV3Config`` keys).

    ``q_lora_rank`` of ``None`` (or 0) selects the plain query projection of DeepSeek-V2-Lite. ``extra`` keeps keys
    of a loaded ``config.json`` that this class does not interpret, so they survive a load/save round trip.
    """

    vocab_size: int = 129280
    hidden_size: int = 7168
    intermediate_size: int = 18432
    moe_intermediate_size: int = 2048
    num_hidden_layers: int = 61
    num_attention_heads: int = 128
    num_key_value_heads: int | None = None
    n_shared_experts: int = 1
    n_routed_experts: int = 256
    routed_scaling_factor: float = 2.5
    kv_lora_rank: int = 512
    q_lora_rank: int | None = 1536
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    qk_nope_head_dim: int = 128
    n_group: int = 8
    topk_group: int = 4
    num_experts_per_tok: int = 8
    first_k_dense_replace: int = 3
    norm_topk_prob: bool = True
    scoring_func: str = "sigmoid"
    topk_method: str = "noaux_tc"
    aux_loss_alpha: float = 0.0001
    seq_aux: bool = True
    hidden_act: str = "silu"
    max_position_embeddings: int = 163840
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    rope_interleave: bool = True
    attention_bias: bool = False
    attention_dropout: float = 0.0
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    pad_token_id: int | None = None
    num_nextn_predict_layers: int = 1
    torch_dtype: str = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.q_lora_rank == 0:
            self.q_lora_rank = None
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.rope_scaling is not None:
            self.rope_scaling = dict(self.rope_scaling)
            # transformers writes "rope_type", the original checkpoints "type"; keep both spellings in sync.
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            self.rope_scaling["type"] = kind
            self.rope_scaling.pop("rope_type", None)
            self.rope_scaling.pop("rope_theta", None)
            if kind == "default":
                self.rope_scaling = None
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: the position-free part plus the decoupled RoPE part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer by MLA: the compressed latent plus the shared RoPE key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def rope_type(self) -> str:
        """``"yarn"`` when YaRN scaling is configured, else ``"default"``."""
        return "default" if self.rope_scaling is None else str(self.rope_scaling["type"])

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Whether decoder layer ``layer_idx`` uses the MoE feed-forward (the first k layers are dense)."""
        return layer_idx >= self.first_k_dense_replace

    def softmax_scale(self) -> float:
        """Attention softmax scale with the YaRN ``mscale_all_dim`` correction applied twice (q and k)."""
        scale = self.qk_head_dim**-0.5
        if self.rope_scaling is not None:
            mscale_all_dim = self.rope_scaling.get("mscale_all_dim", 0)
            if mscale_all_dim:
                m = yarn_get_mscale(float(self.rope_scaling["factor"]), float(mscale_all_dim))
                scale = scale * m * m
        return scale

    def num_parameters(self, include_mtp: bool = True, active_only: bool = False) -> int:
        """Parameter count of the model this config builds (routed experts counted once each, or top-k if active)."""
        d = self.hidden_size
        h = self.num_attention_heads
        if self.q_lora_rank is None:
            attn = d * h * self.qk_head_dim
        else:
            attn = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * h * self.qk_head_dim
        attn += d * self.kv_cache_dim + self.kv_lora_rank
        attn += self.kv_lora_rank * h * (self.qk_nope_head_dim + self.v_head_dim)
        attn += h * self.v_head_dim * d
        norms = 2 * d
        dense = 3 * d * self.intermediate_size
        routed = self.num_experts_per_tok if active_only else self.n_routed_experts
        moe = 3 * d * self.moe_intermediate_size * (routed + self.n_shared_experts) + self.n_routed_experts * d
        total = 0
        for i in range(self.num_hidden_layers):
            total += attn + norms + (moe if self.is_moe_layer(i) else dense)
        total += self.vocab_size * d * (1 if self.tie_word_embeddings else 2) + d
        if include_mtp:
            total += self.num_nextn_predict_layers * (attn + norms + moe + 2 * d * d + 3 * d)
        return total

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`LMConfigError` naming the first invalid or inconsistent value."""
        positive = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "moe_intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "n_routed_experts",
            "kv_lora_rank",
            "qk_rope_head_dim",
            "v_head_dim",
            "qk_nope_head_dim",
            "n_group",
            "topk_group",
            "num_experts_per_tok",
            "max_position_embeddings",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LMConfigError(f"config: {name} must be a positive integer, got {value!r}")
        for name in ("n_shared_experts", "first_k_dense_replace", "num_nextn_predict_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LMConfigError(f"config: {name} must be a non-negative integer, got {value!r}")
        if self.q_lora_rank is not None and (not isinstance(self.q_lora_rank, int) or self.q_lora_rank < 0):
            raise LMConfigError(f"config: q_lora_rank must be null or a positive integer, got {self.q_lora_rank!r}")
        if self.qk_rope_head_dim % 2:
            raise LMConfigError(f"config: qk_rope_head_dim must be even for RoPE pairs, got {self.qk_rope_head_dim}")
        if self.num_key_value_heads != self.num_attention_heads:
            raise LMConfigError(
                "config: MLA needs num_key_value_heads == num_attention_heads "
                f"({self.num_key_value_heads} != {self.num_attention_heads})"
            )
        if self.n_routed_experts % self.n_group:
            raise LMConfigError(
                f"config: n_routed_experts ({self.n_routed_experts}) must be divisible by n_group ({self.n_group})"
            )
        if self.topk_group > self.n_group:
            raise LMConfigError(f"config: topk_group ({self.topk_group}) exceeds n_group ({self.n_group})")
        per_group = self.n_routed_experts // self.n_group
        if self.topk_method == "noaux_tc" and self.n_group > 1 and per_group < 2:
            raise LMConfigError("config: noaux_tc group scores need at least 2 experts per group")
        if self.num_experts_per_tok > self.topk_group * per_group:
            raise LMConfigError(
                f"config: num_experts_per_tok ({self.num_experts_per_tok}) exceeds the experts reachable in "
                f"topk_group groups ({self.topk_group * per_group})"
            )
        if self.first_k_dense_replace > self.num_hidden_layers:
            raise LMConfigError(
                f"config: first_k_dense_replace ({self.first_k_dense_replace}) exceeds num_hidden_layers "
                f"({self.num_hidden_layers})"
            )
        if self.scoring_func not in SCORING_FUNCS:
            raise LMConfigError(f"config: scoring_func must be one of {SCORING_FUNCS}, got {self.scoring_func!r}")
        if self.topk_method not in TOPK_METHODS:
            raise LMConfigError(f"config: topk_method must be one of {TOPK_METHODS}, got {self.topk_method!r}")
        if self.hidden_act != "silu":
            raise LMConfigError(f"config: only hidden_act 'silu' is supported, got {self.hidden_act!r}")
        if self.routed_scaling_factor <= 0 or self.rms_norm_eps <= 0 or self.rope_theta <= 0:
            raise LMConfigError("config: routed_scaling_factor, rms_norm_eps and rope_theta must be positive")
        if self.torch_dtype not in ("bfloat16", "float16", "float32"):
            raise LMConfigError(f"config: torch_dtype must be bfloat16, float16 or float32, got {self.torch_dtype!r}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling["type"]
            if kind not in ROPE_TYPES:
                raise LMConfigError(f"config: rope_scaling type must be one of {ROPE_TYPES}, got {kind!r}")
            factor = self.rope_scaling.get("factor")
            if not isinstance(factor, (int, float)) or factor <= 0:
                raise LMConfigError(f"config: rope_scaling.factor must be a positive number, got {factor!r}")
            original = self.rope_scaling.get("original_max_position_embeddings", self.max_position_embeddings)
            if not isinstance(original, int) or original <= 0:
                raise LMConfigError(f"config: rope_scaling.original_max_position_embeddings invalid: {original!r}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content, in the Hugging Face key layout."""
        out: dict[str, Any] = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}
        for f in fields(self):
            if f.name == "extra":
                continue
            out[f.name] = getattr(self, f.name)
        out["rope_scaling"] = None if self.rope_scaling is None else dict(self.rope_scaling)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        """Build from a ``config.json`` dictionary (original DeepSeek or ``transformers`` 4.x/5.x layout)."""
        if not isinstance(data, dict):
            raise LMConfigError("config: expected a JSON object")
        data = dict(data)
        model_type = data.get("model_type", "deepseek_v3")
        if model_type not in ("deepseek_v3", "deepseek_v2"):
            raise LMConfigError(f"config: model_type {model_type!r} is not a DeepSeek-V2/V3 model")
        if data.get("quantization_config"):
            raise LMConfigError("config: quantized (e.g. FP8 block-scaled) checkpoints are not supported; dequantize")
        rope_parameters = data.get("rope_parameters")
        if isinstance(rope_parameters, dict) and "rope_scaling" not in data:
            params = dict(rope_parameters)
            data.setdefault("rope_theta", params.pop("rope_theta", 10000.0))
            kind = params.get("rope_type", params.get("type", "default"))
            data["rope_scaling"] = None if kind == "default" else params
        if "torch_dtype" not in data and isinstance(data.get("dtype"), str):
            data["torch_dtype"] = data["dtype"]
        if "num_nextn_predict_layers" not in data and "num_mtp_layers" in data:
            data["num_nextn_predict_layers"] = data["num_mtp_layers"]
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in _DERIVED_KEYS}
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise LMConfigError(f"config: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (``path`` may be the file or its directory)."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True)
            path = path / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LMConfig:
        """Read ``config.json`` (``path`` may be the file or its directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise LMConfigError(f"config: no config.json at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LMConfigError(f"config: {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> LMConfig:
        """A validated copy with some fields changed."""
        return dc_replace(self, **changes)


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN attention temperature ``0.1 * mscale * ln(scale) + 1`` (1 when not extending)."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


# ---------------------------------------------------------------------- presets
def _yarn(factor: float, original: int, mscale: float, mscale_all_dim: float) -> dict[str, Any]:
    return {
        "type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": original,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": mscale,
        "mscale_all_dim": mscale_all_dim,
    }


def _debug() -> LMConfig:
    # Tiny but complete: q-LoRA, 2 groups of routed experts, 1 dense + 2 MoE layers, YaRN, one MTP module.
    return LMConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        routed_scaling_factor=2.5,
        kv_lora_rank=32,
        q_lora_rank=48,
        qk_rope_head_dim=8,
        v_head_dim=16,
        qk_nope_head_dim=16,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        max_position_embeddings=512,
        rope_scaling=_yarn(4.0, 128, 1.0, 0.8),
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        num_nextn_predict_layers=1,
        torch_dtype="float32",
    )


def _small() -> LMConfig:
    # The model we train: 19.3 M parameters (incl. the MTP module), 38.5 MB in bf16, 8192-token byte-level BPE.
    # Deep and narrow on purpose: a decode step of a model this small is bound by kernel latency per layer, and the
    # MTP module costs about two layers' worth of it, so self-speculation only pays off over many layers (with 5
    # layers of width 384 it added 38 % to a step and capped the speedup near 1.4×).
    return LMConfig(
        vocab_size=8192,
        hidden_size=320,
        intermediate_size=640,
        moe_intermediate_size=56,
        num_hidden_layers=10,
        num_attention_heads=5,
        n_shared_experts=1,
        n_routed_experts=16,
        routed_scaling_factor=2.5,
        kv_lora_rank=128,
        q_lora_rank=160,
        qk_rope_head_dim=32,
        v_head_dim=64,
        qk_nope_head_dim=64,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        # GPT-2 convention: documents are joined by <eos> (id 2), which therefore also starts a prompt.
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
        num_nextn_predict_layers=1,
        torch_dtype="bfloat16",
    )


def _deepseek_v2_lite() -> LMConfig:
    # Shapes of deepseek-ai/DeepSeek-V2-Lite (15.7 B parameters, 2.4 B active), routing as published.
    return LMConfig(
        vocab_size=102400,
        hidden_size=2048,
        intermediate_size=10944,
        moe_intermediate_size=1408,
        num_hidden_layers=27,
        num_attention_heads=16,
        n_shared_experts=2,
        n_routed_experts=64,
        routed_scaling_factor=1.0,
        kv_lora_rank=512,
        q_lora_rank=None,
        qk_rope_head_dim=64,
        v_head_dim=128,
        qk_nope_head_dim=128,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=6,
        first_k_dense_replace=1,
        norm_topk_prob=False,
        scoring_func="softmax",
        topk_method="greedy",
        aux_loss_alpha=0.001,
        max_position_embeddings=163840,
        rope_scaling=_yarn(40, 4096, 0.707, 0.707),
        bos_token_id=100000,
        eos_token_id=100001,
        num_nextn_predict_layers=0,
    )


def _deepseek_v3() -> LMConfig:
    # Shapes of deepseek-ai/DeepSeek-V3 (671 B parameters, 37 B active) with its MTP module.
    return LMConfig(
        rope_scaling=_yarn(40, 4096, 1.0, 1.0),
        bos_token_id=0,
        eos_token_id=1,
    )


PRESETS = {
    "debug": _debug,
    "small": _small,
    "deepseek-v2-lite": _deepseek_v2_lite,
    "deepseek-v3": _deepseek_v3,
}


def preset(name: str) -> LMConfig:
    """A fresh config for a named preset (``debug``, ``small``, ``deepseek-v2-lite``, ``deepseek-v3``)."""
    if name not in PRESETS:
        raise LMConfigError(f"config: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]()
