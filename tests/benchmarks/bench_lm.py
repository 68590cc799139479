#!/usr/bin/env python3
"""Language-backbone benchmark: ours vs ``transformers`` on a DeepSeek-V2-Lite-shaped model, plus MTP training.

One run, one GPU, the same random bf16 weights for both implementations (``transformers`` gets views of our
tensors, so no second copy): prefill tokens/s at 2k and 16k tokens, decode tokens/s at batch 1 (2k context) and
batch 32 (1k context; ours also with the grouped expert GEMMs in place of the fused small-batch kernels), peak memory
at 32k context, one MoE layer with the fused kernels (tiles picked by a sweep before decode), grouped GEMMs and the
per-expert loop, decode at batch 1 as a fraction of the HBM-bandwidth limit, and cache bytes per token against MHA
and GQA-8 layouts of the same model.
Routing uses the V3 rule (sigmoid + correction bias, ``noaux_tc``) because that is the only one
``DeepseekV3ForCausalLM`` implements; every shape is V2-Lite's.

Then (``--train-seconds`` > 0) the ``small`` preset trains with its MTP module on an offline corpus (the
``.py/.md/.rst/.txt`` files of the installed Python packages and /usr/share/doc), built and tokenized in a side
process while the GPU benchmark runs; it reports held-out validation loss, MTP top-1 (draft acceptance proxy),
the measured speculative acceptance rate and decode speedup, and saves the weights.

Usage::

    python tests/benchmarks/bench_lm.py --out OUTDIR            # on the GPU machine
    python tests/benchmarks/bench_lm.py --out /tmp/x --smoke    # CPU, tiny shapes: checks the script itself
    python tests/benchmarks/bench_lm.py --out OUTDIR --sections decode,moe   # decode and MoE-layer sections only

Results: ``OUTDIR/bench_lm.json`` (written after every section, so a timeout keeps what finished).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lm import mla, mla_decode, moe, moe_route  # noqa: E402
from lm.cache import LatentCache  # noqa: E402
from lm.config import LMConfig, preset  # noqa: E402
from lm.generate import CompiledBlocks, Generator  # noqa: E402
from lm.mla import build_meta  # noqa: E402
from lm.model import LanguageModel  # noqa: E402

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


class Bench:
    """Results dictionary flushed to JSON after each section; sections are time-boxed and isolated."""

    def __init__(self, out: Path, deadline: float, name: str = "bench_lm.json") -> None:
        self.out = out
        self.name = name
        self.deadline = deadline
        self.results: dict[str, Any] = {}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - (time.perf_counter() - T0)

    def flush(self) -> None:
        (self.out / self.name).write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def section(self, name: str, fn, *args: Any, need_s: float = 0.0, **kwargs: Any) -> Any:
        if self.left() < need_s:
            self.results[name] = {"skipped": f"only {self.left():.0f}s left, needs ~{need_s:.0f}s"}
            log(f"skip {name}: out of time")
            self.flush()
            return None
        log(f"== {name}")
        t = time.perf_counter()
        try:
            res = fn(*args, **kwargs)
        except Exception as exc:  # one failing section must not lose the others
            res = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
            log(f"{name} failed: {exc}")
        if isinstance(res, dict):
            res["section_seconds"] = round(time.perf_counter() - t, 2)
        self.results[name] = res
        self.flush()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return res


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


# ---------------------------------------------------------------------- models
def bench_config(smoke: bool) -> LMConfig:
    if smoke:
        return preset("debug").replace(torch_dtype="bfloat16", num_nextn_predict_layers=0)
    # V2-Lite shapes with the V3 routing rule (the one transformers' DeepseekV3 implements).
    return preset("deepseek-v2-lite").replace(scoring_func="sigmoid", topk_method="noaux_tc", norm_topk_prob=True)


def build_ours(cfg: LMConfig, device: str, dtype: torch.dtype = torch.bfloat16) -> LanguageModel:
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build directly in the target dtype (router and RoPE tables stay float32)
    try:
        with torch.device(device):
            model = LanguageModel(cfg)
    finally:
        torch.set_default_dtype(old)
    with torch.no_grad():
        for gate in model.gates():
            gate.e_score_correction_bias.normal_(0, 0.01)
    return model.eval()


def build_hf(model: LanguageModel, device: str):  # type: ignore[no-untyped-def]
    """A transformers DeepseekV3ForCausalLM whose parameters are views of ``model``'s tensors."""
    import transformers
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf_mod

    data = {k: v for k, v in model.config.to_dict().items() if k not in ("architectures", "torch_dtype")}
    hf_cfg = transformers.DeepseekV3Config(**data)
    with torch.device("meta"):
        hf = transformers.DeepseekV3ForCausalLM(hf_cfg)
    state = {("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    hf.model.rotary_emb = hf_mod.DeepseekV3RotaryEmbedding(hf_cfg).to(device)
    left_on_meta = [n for n, t in list(hf.named_parameters()) + list(hf.named_buffers()) if t.is_meta]
    if left_on_meta or unexpected:
        raise RuntimeError(f"transformers model incomplete: meta={left_on_meta[:5]} unexpected={unexpected[:5]}")
    hf.eval()
    info = {
        "transformers_version": transformers.__version__,
        "attn_implementation": hf.config._attn_implementation,
        "experts_implementation": getattr(hf.config, "_experts_implementation", "n/a"),
        "missing_keys": missing,
    }
    return hf, info


# ---------------------------------------------------------------------- sections
def env_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device == "cuda":
        n = 1 << 29  # 1 GiB of bf16
        a = torch.empty(n, dtype=torch.bfloat16, device=device).normal_()
        b = torch.empty_like(a)
        b.copy_(a)
        t = timed(lambda: b.copy_(a), 10)
        info["copy_bandwidth_TBps"] = round(2 * a.nbytes / t / 1e12, 3)  # bytes read + written
        del a, b
    return info


def correctness(model, hf, ctx: int, device: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ids = torch.randint(0, model.config.vocab_size, (1, ctx), device=device)
    with torch.inference_mode():
        ours = model(ids, logits_to_keep=8).logits.float()
        theirs = hf(ids, logits_to_keep=8).logits.float()
    return {
        "tokens": ctx,
        "max_abs_diff_last8_logits": (ours - theirs).abs().max().item(),
        "logit_scale": theirs.abs().max().item(),
        "argmax_agreement": (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item(),
    }


def correctness_fp32(cfg: LMConfig, layers: int, ctx: int, device: str) -> dict[str, Any]:
    """Same check on a shallow copy of the architecture in float32 (tells numerics from real differences),
    then both implementations in bf16 measured against that float32 reference."""
    small = cfg.replace(num_hidden_layers=layers)
    ref = build_ours(small, device, torch.float32)
    hf32, _ = build_hf(ref, device)
    ids = torch.randint(0, small.vocab_size, (1, ctx), device=device)
    res: dict[str, Any] = {"layers": layers, "tokens": ctx}
    with torch.inference_mode():
        expected = ref(ids).logits.float()
        theirs32 = hf32(ids).logits.float()
        res["fp32_max_abs_diff"] = (expected - theirs32).abs().max().item()
        res["fp32_argmax_agreement"] = (expected.argmax(-1) == theirs32.argmax(-1)).float().mean().item()
        res["logit_scale"] = expected.abs().max().item()
        del hf32
        low = ref.to(torch.bfloat16)
        hf16, _ = build_hf(low, device)
        for name, m in (("ours_bf16", low), ("transformers_bf16", hf16)):
            got = m(ids).logits.float()
            res[f"{name}_vs_fp32_max_abs_diff"] = (got - expected).abs().max().item()
            res[f"{name}_vs_fp32_argmax_agreement"] = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    return res


def prefill(model, hf, lengths: list[int], device: str, repeats: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    res: dict[str, Any] = {}
    for n in lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, n), device=device)
        row: dict[str, Any] = {}

        def ours(ids: torch.Tensor = ids) -> None:
            cache = LatentCache.for_model(model.config, 1, ids.shape[1], model.dtype, device)
            model(ids, cache=cache, logits_to_keep=1)

        with torch.inference_mode():
            best = None
            for variant, (backends, pad) in SDPA_VARIANTS.items():
                if device != "cuda" and variant != "default":
                    continue
                mla.SDPA_BACKENDS, mla.PAD_V_FOR_FLASH = backends, pad
                try:
                    ours()
                    row[f"ours_{variant}"] = n / timed(ours, repeats)
                except RuntimeError as exc:
                    row[f"ours_{variant}"] = f"unavailable: {str(exc)[:120]}"
                    continue
                if best is None or row[f"ours_{variant}"] > row[f"ours_{best}"]:
                    best = variant
            assert best is not None
            mla.SDPA_BACKENDS, mla.PAD_V_FOR_FLASH = SDPA_VARIANTS[best]  # later sections use the fastest
            row["ours"], row["ours_attention"] = row[f"ours_{best}"], best
            if hf is not None:

                def theirs(ids: torch.Tensor = ids) -> None:
                    hf_step(hf, ids, hf_cache(hf))

                theirs()
                row["transformers"] = n / timed(theirs, repeats)
                row["speedup"] = row["ours"] / row["transformers"]
        res[f"{n}_tok_per_s"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
    return res


def _sdpa_variants() -> dict[str, tuple[list[Any] | None, bool]]:
    from torch.nn.attention import SDPBackend

    return {
        "default": (None, False),
        "cudnn": ([SDPBackend.CUDNN_ATTENTION], False),
        "efficient": ([SDPBackend.EFFICIENT_ATTENTION], False),
        "flash_pad_v": ([SDPBackend.FLASH_ATTENTION], True),
    }


SDPA_VARIANTS = _sdpa_variants()


def decode_ours(  # type: ignore[no-untyped-def]
    model, prompts: list[list[int]], new: int, graphs: bool, compiled: bool = False, exact_casts: bool = False
) -> tuple[float, list[list[int]], dict[str, Any], Generator]:
    """Tokens/s of the second of two identical ``generate`` calls (the first captures graphs and compiles)."""
    gen = Generator(model, use_cuda_graphs=graphs, compile_decode=compiled)
    if compiled:
        gen.blocks = CompiledBlocks(exact_casts=exact_casts)
    t = time.perf_counter()
    gen.generate(prompts, max_new_tokens=new, stop_token_ids=[])
    info: dict[str, Any] = {"first_call_s": round(time.perf_counter() - t, 2)}
    result = gen.generate(prompts, max_new_tokens=new, stop_token_ids=[])
    if compiled:
        assert gen.blocks is not None
        info["compiled_blocks_usable"] = gen.blocks.usable
    return len(prompts) * new / result.decode_seconds, result.tokens, info, gen


def step_logits_diff(  # type: ignore[no-untyped-def]
    model, blocks: CompiledBlocks, batch: int, ctx: int, capacity: int, kv_len: int, device: str
) -> dict[str, Any]:
    """One absorbed decode step over the same cache, plain blocks vs compiled ``blocks`` (no graphs): logit diff.

    Shapes (capacity, kv_len) are those of the generator's steps, so the compiled code is the one that was timed.
    """
    ids = torch.randint(3, model.config.vocab_size, (batch, ctx), device=device)
    cache = LatentCache.for_model(model.config, batch, capacity, model.dtype, device)
    with torch.inference_mode():
        out = model(ids, cache=cache, logits_to_keep=1)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        logits = []
        for fn in (None, blocks):
            meta = build_meta(cache.lengths, 1, kv_len, 1, True, ids.device)
            meta.materialise(model.config.num_attention_heads, model.dtype)
            hidden = model.run_layers(model.embed(tok), meta.write_index, meta, cache.layers(), fn)
            logits.append(model.lm_head(hidden).float())  # both write the same cache slot before reading it
    plain, comp = logits
    return {
        "max_abs_logit_diff": (plain - comp).abs().max().item(),
        "logit_scale": plain.abs().max().item(),
        "argmax_agreement": (plain.argmax(-1) == comp.argmax(-1)).float().mean().item(),
        "compiled_blocks_usable": blocks.usable,
    }


def compiled_vs_fp32(cfg: LMConfig, layers: int, batch: int, ctx: int, device: str) -> dict[str, Any]:
    """One decode step of a shallow copy of the model: float32 plain blocks (the reference), then bf16 with plain
    blocks, compiled blocks and compiled blocks with eager-like rounding, each measured against the reference."""
    small = cfg.replace(num_hidden_layers=layers)
    model = build_ours(small, device, torch.float32)
    ids = torch.randint(3, small.vocab_size, (batch, ctx + 1), device=device)
    capacity, kv_len = -(-(ctx + 1) // 1024) * 1024, min(-(-(ctx + 1) // 256) * 256, -(-(ctx + 1) // 1024) * 1024)

    def step(blocks: CompiledBlocks | None) -> torch.Tensor:
        cache = LatentCache.for_model(small, batch, capacity, model.dtype, device)
        with torch.inference_mode():
            model(ids[:, :ctx], cache=cache, logits_to_keep=1)
            meta = build_meta(cache.lengths, 1, kv_len, 1, True, ids.device)
            meta.materialise(small.num_attention_heads, model.dtype)
            hidden = model.run_layers(model.embed(ids[:, ctx:]), meta.write_index, meta, cache.layers(), blocks)
            return model.lm_head(hidden).float()

    ref = step(None)
    model.to(torch.bfloat16)  # in place; the router and RoPE tables stay float32
    res: dict[str, Any] = {"layers": layers, "batch": batch, "context": ctx, "logit_scale": ref.abs().max().item()}
    for name, blocks in (
        ("plain_bf16", None),
        ("compiled_bf16", CompiledBlocks()),
        ("compiled_exact_casts_bf16", CompiledBlocks(exact_casts=True)),
    ):
        got = step(blocks)
        res[f"{name}_vs_fp32_max_abs_diff"] = (got - ref).abs().max().item()
        res[f"{name}_vs_fp32_argmax_agreement"] = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        if blocks is not None:
            res[f"{name}_usable"] = blocks.usable
    return res


def common_prefix(a: list[list[int]], b: list[list[int]]) -> list[int]:
    """Per row, how many leading tokens two generations share."""
    out = []
    for x, y in zip(a, b, strict=True):
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        out.append(n)
    return out


def hf_cache(hf):  # type: ignore[no-untyped-def]
    from transformers import DynamicCache

    try:
        return DynamicCache(config=hf.config)
    except TypeError:  # older signature
        return DynamicCache()


def hf_step(hf, ids: torch.Tensor, cache) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Greedy next tokens [B, 1] after feeding ``ids`` through transformers with its cache."""
    out = hf(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].argmax(-1, keepdim=True)


def decode_hf(hf, batch: int, ctx: int, steps: int, device: str) -> float:  # type: ignore[no-untyped-def]
    ids = torch.randint(3, hf.config.vocab_size, (batch, ctx), device=device)
    with torch.inference_mode():
        cache = hf_cache(hf)
        tok = hf_step(hf, ids, cache)
        for _ in range(2):  # warm-up steps
            tok = hf_step(hf, tok, cache)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            tok = hf_step(hf, tok, cache)
            tok.tolist()  # the same per-step host read-back our generator does
        sync()
    return batch * steps / (time.perf_counter() - t)


def decode(model, hf, batch: int, ctx: int, new: int, hf_steps: int, device: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    res: dict[str, Any] = {"batch": batch, "context": ctx, "new_tokens": new}
    graphs = device == "cuda"
    prompts = torch.randint(3, model.config.vocab_size, (batch, ctx)).tolist()
    try:
        res["ours_tok_per_s"], tokens, res["ours_info"], _ = decode_ours(model, prompts, new, graphs)
        res["cuda_graphs"] = graphs
    except Exception as exc:  # keep a number even if graph capture fails
        res["cuda_graph_error"] = f"{type(exc).__name__}: {exc}"
        res["ours_tok_per_s"], tokens, res["ours_info"], _ = decode_ours(model, prompts, new, False)
        res["cuda_graphs"] = False
    PLAIN_RUNS[batch] = (prompts, tokens)
    res["fused_moe"] = fused_state()  # checked and usable: the timed steps ran the fused expert kernels
    if graphs:
        res["ours_eager_tok_per_s"], _, _, _ = decode_ours(model, prompts, min(new, 16), False)
    if res["fused_moe"]["checked"] and res["fused_moe"]["usable"]:  # the same decode on the grouped GEMMs
        with grouped_dispatch(model):
            tps, grouped_tokens, _, _ = decode_ours(model, prompts, new, res["cuda_graphs"])
        res["ours_grouped_moe_tok_per_s"] = tps
        res["fused_over_grouped"] = res["ours_tok_per_s"] / tps
        # bf16 rounding differs between the two paths and flips near-tie routing in a random model (see the
        # compiled-decode notes): agreement is reported, not required.
        same = sum(x == y for a, b in zip(tokens, grouped_tokens) for x, y in zip(a, b))
        res["fused_vs_grouped_token_agreement"] = same / (batch * new)
    if moe_route._STATE["usable"] or mla_decode._STATE["usable"]:  # the same decode on the plain router/attention
        with plain_route_and_attention():
            res["ours_plain_route_attention_tok_per_s"] = decode_ours(model, prompts, new, res["cuda_graphs"])[0]
    if hf is not None:
        res["transformers_tok_per_s"] = decode_hf(hf, batch, ctx, hf_steps, device)
        res["speedup"] = res["ours_tok_per_s"] / res["transformers_tok_per_s"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


# Prompts and greedy tokens of the plain decode runs, by batch size (the compiled runs reuse and compare them).
PLAIN_RUNS: dict[int, tuple[list[list[int]], list[list[int]]]] = {}


def decode_compiled(  # type: ignore[no-untyped-def]
    model, plain: dict[str, Any], device: str, exact_casts: bool = False
) -> dict[str, Any]:
    """The same decode as ``plain`` (same prompts) with the blocks compiled by torch.compile (Inductor), captured
    by the same CUDA graphs: speed, greedy tokens against the plain run, and one step's logits against plain."""
    batch, ctx, new = plain["batch"], plain["context"], plain["new_tokens"]
    prompts, plain_tokens = PLAIN_RUNS[batch]
    res: dict[str, Any] = {"batch": batch, "context": ctx, "new_tokens": new, "exact_casts": exact_casts}
    graphs = plain.get("cuda_graphs", False)
    tps, tokens, info, gen = decode_ours(model, prompts, new, graphs, compiled=True, exact_casts=exact_casts)
    res["ours_compiled_tok_per_s"], res["ours_compiled_info"] = tps, info
    res["ours_plain_tok_per_s"] = plain["ours_tok_per_s"]
    res["compiled_over_plain"] = tps / plain["ours_tok_per_s"]
    if "transformers_tok_per_s" in plain:
        res["transformers_tok_per_s"] = plain["transformers_tok_per_s"]
        res["speedup_compiled"] = tps / plain["transformers_tok_per_s"]
    prefix = common_prefix(plain_tokens, tokens)
    res["compiled_vs_plain_greedy"] = {
        "identical_rows": sum(p == new for p in prefix),
        "rows": batch,
        "token_agreement": sum(x == y for a, b in zip(plain_tokens, tokens) for x, y in zip(a, b)) / (batch * new),
        "min_common_prefix": min(prefix),
    }
    capacity = -(-(ctx + new) // 1024) * 1024  # the generator's workspace and graph bucket for this run
    kv_len = min(-(-(ctx + 1) // 256) * 256, capacity)
    assert gen.blocks is not None
    res["compiled_vs_plain_step"] = step_logits_diff(model, gen.blocks, batch, ctx, capacity, kv_len, device)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


def active_bytes_per_token(cfg: LMConfig, ctx: int, elem: int = 2) -> dict[str, float]:
    """Bytes one batch-1 decode step must read: active weights (top-k experts) plus the latent cache."""
    weights = cfg.num_parameters(include_mtp=False, active_only=True)
    weights -= cfg.vocab_size * cfg.hidden_size  # only one embedding row is read
    router = sum(cfg.n_routed_experts * cfg.hidden_size for i in range(cfg.num_hidden_layers) if cfg.is_moe_layer(i))
    weight_bytes = (weights - router) * elem + router * 4
    cache_bytes = cfg.num_hidden_layers * ctx * cfg.kv_cache_dim * elem
    return {"weight_bytes": weight_bytes, "cache_bytes": cache_bytes, "total": weight_bytes + cache_bytes}


def moe_layer(model, tokens_list: list[int], device: str, repeats: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One MoE layer (router, routed and shared experts) with each dispatch, then the routed-expert dispatch alone
    (fixed routing, CUDA graphs on CUDA as in decode): fused kernels vs grouped GEMMs, and the weight bandwidth."""
    layer = next(block.mlp for block in model.layers if hasattr(block.mlp, "gate"))
    experts = layer.experts
    res: dict[str, Any] = {"fused_state": fused_state()}
    for n in tokens_list:
        x = torch.randn(1, n, model.config.hidden_size, device=device, dtype=model.dtype)
        row = {}
        with torch.inference_mode():
            ref = _loop(layer, x).float()
            pairs = n * model.config.num_experts_per_tok
            fused = device == "cuda" and experts._fused_ok(x[0], experts.gate_up_proj, experts.down_proj, pairs)
            variants = {"grouped": False, "loop": True} | ({"fused": False} if fused else {})
            for name, loop in variants.items():
                with grouped_dispatch(model, name != "fused"):
                    layer.use_loop = loop
                    layer(x)
                    row[f"{name}_ms"] = timed(lambda x=x: layer(x), repeats) * 1e3
                    layer.use_loop = False
                    if name != "loop":
                        row[f"{name}_max_abs_diff_vs_loop"] = (layer(x).float() - ref).abs().max().item()
            row["speedup"] = row["loop_ms"] / row["grouped_ms"]
            if fused:
                row["grouped_over_fused"] = row["grouped_ms"] / row["fused_ms"]
                row.update(_dispatch_only(layer, x[0], device, repeats))
        res[f"{n}_tokens"] = {k: round(v, 4) for k, v in row.items()}
    res["fused_state_after"] = fused_state()
    return res


def _dispatch_only(layer, x: torch.Tensor, device: str, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    experts = layer.experts
    w13, w2 = experts.gate_up_proj, experts.down_proj
    weights, indices = layer.gate(x)
    used = indices.unique().numel()
    nbytes = used * (w13[0].nbytes + w2[0].nbytes)
    row: dict[str, float] = {"experts_used": used, "routed_weight_MB": nbytes / 1e6}
    for name, fn in (
        ("fused", lambda: moe.fused_experts(x, w13, w2, weights, indices)),
        ("grouped", lambda: moe.grouped_experts(x, w13, w2, weights, indices)),
    ):
        replay = graphed(fn, device)
        seconds = timed(lambda replay=replay: [replay() for _ in range(10)], repeats) / 10
        row[f"dispatch_{name}_ms"] = seconds * 1e3
        row[f"dispatch_{name}_weight_TBps"] = nbytes / seconds / 1e12
    return row


def _loop(block, x):  # type: ignore[no-untyped-def]
    block.use_loop = True
    try:
        return block(x)
    finally:
        block.use_loop = False


@contextmanager
def grouped_dispatch(model, on: bool = True) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """While on, every expert layer of ``model`` takes the grouped GEMMs, never the fused small-batch kernels."""
    experts = [m for m in model.modules() if isinstance(m, moe.Experts)]
    saved = [e.fused_max_pairs for e in experts]
    if on:
        for e in experts:
            e.fused_max_pairs = 0
    try:
        yield
    finally:
        for e, limit in zip(experts, saved, strict=True):
            e.fused_max_pairs = limit


@contextmanager
def plain_route_and_attention() -> Iterator[None]:
    """Routing and absorbed attention by plain PyTorch ops instead of their Triton kernels, for a comparison."""
    saved = moe_route._STATE["usable"], mla_decode._STATE["usable"]
    moe_route._STATE["usable"] = mla_decode._STATE["usable"] = False
    try:
        yield
    finally:
        moe_route._STATE["usable"], mla_decode._STATE["usable"] = saved


def fused_state() -> dict[str, Any]:
    """Whether the fused MoE kernels are usable, have passed their first-call check, and their tiles; the same
    for the routing and the MLA decode attention kernels."""
    return {
        "triton": moe.triton is not None,
        **moe._FUSED_MOE,
        "tiles": copy.deepcopy(moe.FUSED_TILES),
        "routing_kernel": dict(moe_route._STATE),
        "mla_decode_kernels": dict(mla_decode._STATE),
    }


def graphed(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` captured in a CUDA graph after two warm-up calls (timings then see GPU work, not launches)."""
    if device != "cuda":
        return fn
    side = torch.cuda.Stream()  # warm-up off the capture stream, as the generator does (library handles)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


# Fused-kernel tiles tried by fused_tiles: (BLOCK_N, BLOCK_K, num_warps, num_stages) for gate/up and for down.
UP_TILES = [(32, 128, 4, 4), (64, 128, 4, 3), (32, 256, 4, 3), (16, 256, 4, 4)]
DOWN_TILES = [(32, 128, 4, 5), (64, 128, 4, 4), (32, 256, 4, 3), (16, 256, 4, 4)]


def fused_tiles(model, tokens: int, device: str, repeats: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Times the fused dispatch of one layer at ``tokens`` tokens for each tile pair (graph-captured), checks each
    against the grouped path, and keeps the fastest correct pair in ``moe.FUSED_TILES`` for the later sections."""
    if device != "cuda" or moe.triton is None:
        return {"skipped": "needs CUDA and Triton"}
    layer = next(block.mlp for block in model.layers if hasattr(block.mlp, "gate"))
    w13, w2 = layer.experts.gate_up_proj, layer.experts.down_proj
    x = torch.randn(tokens, model.config.hidden_size, device=device, dtype=model.dtype)
    res: dict[str, Any] = {"tokens": tokens, "default": copy.deepcopy(moe.FUSED_TILES), "runs": []}
    best: tuple[float, dict[str, dict[str, int]]] | None = None
    with torch.inference_mode():
        weights, indices = layer.gate(x)
        expected = moe.grouped_experts(x, w13, w2, weights, indices).float()
        nbytes = indices.unique().numel() * (w13[0].nbytes + w2[0].nbytes)
        keys = ("BLOCK_N", "BLOCK_K", "num_warps", "num_stages")
        for up in UP_TILES:
            for down in DOWN_TILES:
                tiles = {"up": dict(zip(keys, up)), "down": dict(zip(keys, down))}
                moe.FUSED_TILES.update(copy.deepcopy(tiles))
                run: dict[str, Any] = {"up": up, "down": down}
                try:
                    fn = lambda: moe.fused_experts_kernels(x, w13, w2, weights, indices)  # noqa: E731
                    err = (fn().float() - expected).abs().max().item()
                    replay = graphed(fn, device)
                    seconds = timed(lambda replay=replay: [replay() for _ in range(10)], repeats) / 10
                    run |= {"ms": round(seconds * 1e3, 4), "weight_TBps": round(nbytes / seconds / 1e12, 3)}
                    run["max_abs_diff_vs_grouped"] = err
                    if err <= 2e-2 * expected.abs().max().item() + 1e-3 and (best is None or seconds < best[0]):
                        best = (seconds, tiles)
                except Exception as exc:  # e.g. a tile that needs more shared memory than the GPU has
                    run["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                res["runs"].append(run)
    moe.FUSED_TILES.update(copy.deepcopy(best[1] if best is not None else res["default"]))
    res["chosen"] = copy.deepcopy(moe.FUSED_TILES)
    res["routed_weight_MB"] = nbytes / 1e6
    return res


# MLA decode split-kernel settings tried by mla_tiles: (BLOCK_N, num_warps, num_stages, programs_per_sm).
MLA_TILES = [(b, w, st, p) for b in (32, 64) for w in (4, 8) for st in (2, 3) for p in (1, 2, 4)]


def mla_tiles(model, shapes: list[tuple[int, int]], device: str, repeats: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Times the MLA decode attention kernels (graph-captured) for each setting at each (batch, cache slots) of
    ``shapes`` with the model's dimensions, checks each against the batched-GEMM path, and keeps the setting fastest
    at the first shape (summed over layers that is the decode step's attention) in ``mla_decode.TILES``."""
    if device != "cuda" or mla_decode.triton is None:
        return {"skipped": "needs CUDA and Triton"}
    cfg = model.config
    c, width, rows = cfg.kv_lora_rank, cfg.kv_cache_dim, cfg.num_attention_heads
    default = dict(mla_decode.TILES)
    res: dict[str, Any] = {"shapes": shapes, "default": default, "runs": []}
    cases = []
    g = torch.Generator(device=device).manual_seed(0)
    for batch, slots in shapes:
        q = torch.randn(batch, rows, width, device=device, dtype=model.dtype, generator=g)
        latent = torch.randn(batch, slots, width, device=device, dtype=model.dtype, generator=g)
        bias = torch.zeros(batch, 1, slots, device=device, dtype=model.dtype)
        bias[..., slots - slots // 8 :] = float("-inf")  # the unused end of a graph's cache bucket
        scale = cfg.softmax_scale()
        expected = mla_decode.reference(q.float(), latent.float(), bias.float(), scale, c)
        cases.append((q, latent, bias, scale, expected, latent.nbytes))
    best: tuple[float, dict[str, int]] | None = None
    keys = ("BLOCK_N", "num_warps", "num_stages", "programs_per_sm")
    with torch.inference_mode():
        for (batch, slots), (q, latent, bias, scale, _, _) in zip(shapes, cases, strict=True):  # batched GEMMs
            replay = graphed(
                lambda q=q, latent=latent, bias=bias, scale=scale: mla_decode.reference(q, latent, bias, scale, c),
                device,
            )
            res[f"plain_b{batch}_t{slots}_us"] = round(
                timed(lambda replay=replay: [replay() for _ in range(10)], repeats) / 10 * 1e6, 2
            )
        for setting in MLA_TILES:
            mla_decode.TILES.update(dict(zip(keys, setting)))
            run: dict[str, Any] = {"setting": setting}
            try:
                for (batch, slots), (q, latent, bias, scale, expected, nbytes) in zip(shapes, cases, strict=True):
                    fn = lambda q=q, latent=latent, bias=bias, scale=scale: mla_decode.decode_attention_kernels(  # noqa: E731
                        q, latent, bias, scale, c
                    )
                    err = (fn().float() - expected).abs().max().item()
                    replay = graphed(fn, device)
                    seconds = timed(lambda replay=replay: [replay() for _ in range(10)], repeats) / 10
                    cache_tbps = round(nbytes / seconds / 1e12, 3)
                    run[f"b{batch}_t{slots}"] = {"us": round(seconds * 1e6, 2), "cache_TBps": cache_tbps, "err": err}
                    if err > 2e-2 * expected.abs().max().item() + 1e-3:
                        run["wrong"] = True
                first = run[f"b{shapes[0][0]}_t{shapes[0][1]}"]["us"]
                if not run.get("wrong") and (best is None or first < best[0]):
                    best = (first, dict(mla_decode.TILES))
            except Exception as exc:  # e.g. a setting that needs more shared memory than the GPU has
                run["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            res["runs"].append(run)
    mla_decode.TILES.update(best[1] if best is not None else default)
    res["chosen"] = dict(mla_decode.TILES)
    return res


def peak_memory(model, hf, ctx: int, device: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if device != "cuda":
        return {"skipped": "needs CUDA"}
    res: dict[str, Any] = {"context": ctx}
    weights = sum(t.nbytes for t in model.state_dict().values())
    res["weights_GiB"] = weights / 2**30
    ids = torch.randint(3, model.config.vocab_size, (1, ctx))
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    gen = Generator(model)
    r = gen.generate(ids.tolist(), max_new_tokens=4, stop_token_ids=[])
    res["ours_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    res["ours_prefill_tok_per_s"] = ctx / r.prefill_seconds
    del gen
    if hf is not None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            t = time.perf_counter()
            cache = hf_cache(hf)
            tok = hf_step(hf, ids.to(device), cache)
            sync()
            res["transformers_prefill_tok_per_s"] = ctx / (time.perf_counter() - t)
            hf_step(hf, tok, cache)
            del cache
        res["transformers_peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


def cache_sizes(cfg: LMConfig) -> dict[str, Any]:
    layers, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    per_head = cfg.qk_head_dim + cfg.v_head_dim  # K and V widths of the equivalent expanded attention
    mla_bytes = layers * cfg.kv_cache_dim * 2
    mha = layers * heads * per_head * 2
    gqa8 = layers * 8 * per_head * 2
    return {
        "values_per_token_per_layer": cfg.kv_cache_dim,
        "mla_bytes_per_token": mla_bytes,
        "mha_bytes_per_token": mha,
        "gqa8_bytes_per_token": gqa8,
        "mha_over_mla": round(mha / mla_bytes, 2),
        "gqa8_over_mla": round(gqa8 / mla_bytes, 2),
    }


# ---------------------------------------------------------------------- corpus (side process) and training
def corpus_files(limit_bytes: int, seed: int) -> list[str]:
    import site
    import sysconfig

    roots = {*site.getsitepackages(), sysconfig.get_paths()["stdlib"], "/usr/share/doc"}
    files = []
    total = 0
    for root in sorted(r for r in roots if os.path.isdir(r)):
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith((".py", ".md", ".rst", ".txt")):
                    path = os.path.join(dirpath, name)
                    try:
                        size = os.path.getsize(path)
                    except OSError:
                        continue
                    if 200 <= size <= 1_000_000:
                        files.append((path, size))
    random.Random(seed).shuffle(files)
    chosen = []
    for path, size in files:
        if total >= limit_bytes:
            break
        chosen.append(path)
        total += size
    return chosen


def split_cpus(reserve: int = 3) -> tuple[set[int], set[int]]:
    """CPUs for the timing process and for the corpus side process (disjoint when the machine has enough).

    Short prefills are bound by the host's kernel launches, for both implementations: a tokenizer running on
    every core would slow whichever model happens to be timed while it runs, so it gets the other cores.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 * reserve:
        return set(cpus), set(cpus)
    return set(cpus[:reserve]), set(cpus[reserve:])


def build_corpus(
    out_dir: str, limit_bytes: int, tok_sample_bytes: int, vocab: int, status_file: str, cpus: set[int] | None = None
) -> None:
    """Side process: gather text files, train the BPE tokenizer, tokenize everything, write tokens + tokenizer."""
    if cpus:
        os.sched_setaffinity(0, cpus)  # before the tokenizer starts its thread pool
    from safetensors.torch import save_file

    from lm.tokenizer import Tokenizer
    from lm.train import text_files

    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    try:
        paths = corpus_files(limit_bytes, seed=0)
        texts = list(text_files(paths, max_bytes=1_000_000))
        info["files"] = len(texts)
        info["chars"] = sum(map(len, texts))
        sample, n = [], 0
        for t in texts:
            if n > tok_sample_bytes:
                break
            sample.append(t)
            n += len(t)
        tok = Tokenizer.train(sample, vocab_size=vocab)
        info["tokenizer_seconds"] = round(time.perf_counter() - t0, 1)
        ids: list[torch.Tensor] = []
        for i in range(0, len(texts), 2000):
            for seq in tok.encode_batch(texts[i : i + 2000]):
                ids.append(torch.tensor(seq + [tok.eos_id], dtype=torch.int32))
        tokens = torch.cat(ids)
        info["tokens"] = tokens.numel()
        save_file({"tokens": tokens}, os.path.join(out_dir, "corpus.safetensors"))
        tok.inner.save(os.path.join(out_dir, "tokenizer.json"))
        info["seconds"] = round(time.perf_counter() - t0, 1)
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    Path(status_file).write_text(json.dumps(info))


def train_small(
    bench: Bench, work: Path, corpus_proc: mp.Process, status: Path, device: str, seconds: float, smoke: bool
) -> dict[str, Any]:
    from safetensors.torch import load_file

    from lm.checkpoint import save_pretrained
    from lm.tokenizer import Tokenizer
    from lm.train import TokenDataset, TrainConfig, Trainer

    corpus_proc.join(timeout=max(1.0, bench.left() - 60))
    if corpus_proc.is_alive():
        corpus_proc.terminate()
        return {"error": "corpus build did not finish in time"}
    info = json.loads(status.read_text())
    if "error" in info:
        return {"corpus": info}
    tok = Tokenizer.load(work / "tokenizer.json")
    tokens = load_file(str(work / "corpus.safetensors"))["tokens"]
    data = TokenDataset(tokens)
    train, val = data.split(0.01)  # the tail files are never trained on
    cfg = preset("small").replace(vocab_size=tok.vocab_size)
    if smoke:
        cfg = preset("debug").replace(vocab_size=tok.vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):
        model = LanguageModel(cfg)
    batch, seq = (96, 512) if not smoke else (4, 32)
    tcfg = TrainConfig(
        steps=10**6,
        batch_size=batch,
        seq_len=seq,
        lr=2e-3,
        warmup_steps=100 if not smoke else 2,
        log_every=50 if not smoke else 5,
        max_seconds=seconds,
        seed=0,
    )
    trainer = Trainer(model, tcfg, log=log)
    # Measure the step time, then fix the schedule length so cosine decay ends when the time budget does.
    for _ in range(3):  # warm-up (library handles, allocator) before timing
        trainer.train_step(train.batch(batch, seq, 0, trainer.step), stats=False)
    sync()
    t = time.perf_counter()
    probe = 10
    for _ in range(probe):
        trainer.train_step(train.batch(batch, seq, 0, trainer.step), stats=False)
    sync()
    step_s = (time.perf_counter() - t) / probe
    tcfg.steps = max(probe + 1, int(seconds / step_s))
    tcfg.max_seconds = seconds * 1.05
    val_batches = val.sequential(batch, seq, 8 if not smoke else 2)
    history = trainer.fit(train, val_batches)
    final = history[-1]
    res: dict[str, Any] = {
        "corpus": info,
        "params": sum(p.numel() for p in model.parameters()),
        "train_tokens_seen": trainer.step * batch * seq,
        "steps": trainer.step,
        "step_seconds_probe": step_s,
        "train_tok_per_s": [h.get("tok_per_s") for h in history if "tok_per_s" in h][-3:],
        "val": final,
        "train_log_tail": history[-6:-1],
    }
    # Speculative decoding on held-out prompts: same tokens as greedy, acceptance, speedup (bf16 weights, as
    # served; the router stays float32).
    model.eval()
    if device == "cuda":
        model.to(torch.bfloat16)
    gen = Generator(model, tokenizer=tok)
    prompt_len, new = (64, 128) if not smoke else (16, 16)
    prompts = [val.tokens[i * 997 : i * 997 + prompt_len].tolist() for i in range(8 if not smoke else 2)]
    same = 0
    greedy_time = spec_time = 0.0
    drafted = accepted = produced = 0
    gen.generate(prompts[0], max_new_tokens=new, stop_token_ids=[])  # capture graphs
    gen.generate_speculative(prompts[0], max_new_tokens=new, stop_token_ids=[])
    for p in prompts:
        g = gen.generate(p, max_new_tokens=new, stop_token_ids=[])
        s = gen.generate_speculative(p, max_new_tokens=new, stop_token_ids=[])
        same += g.tokens == s.tokens
        greedy_time += g.decode_seconds
        spec_time += s.decode_seconds
        drafted += s.drafted
        accepted += s.accepted
        produced += len(s.tokens[0])
    res["speculative"] = {
        "prompts": len(prompts),
        "new_tokens": new,
        "identical_to_greedy": same,
        "acceptance_rate": accepted / max(1, drafted),
        "greedy_tok_per_s": produced / greedy_time,
        "speculative_tok_per_s": produced / spec_time,
        "speedup": greedy_time / spec_time,
    }
    sample_out = gen.generate(prompts[0], max_new_tokens=48).texts or [""]
    res["speculative"]["sample"] = tok.decode(prompts[0])[-200:] + " ||| " + sample_out[0]
    small_dir = bench.out / "small"
    save_pretrained(model, small_dir, max_shard_bytes=15 * 2**20, dtype=torch.bfloat16)
    (small_dir / "generation_config.json").unlink(missing_ok=True)  # regenerable; $OUT returns at most 8 files
    tok.inner.save(str(small_dir / "tokenizer.json"))
    res["saved"] = sorted(p.name for p in small_dir.iterdir())
    return res


# ---------------------------------------------------------------------- main
SECTIONS = ("all", "decode", "moe", "mtp")


def parse_sections(value: str) -> set[str]:
    names = {v.strip() for v in value.split(",") if v.strip()}
    if not names or not names <= set(SECTIONS):
        raise argparse.ArgumentTypeError(f"choose 'all' or a comma-separated subset of {SECTIONS[1:]}")
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--deadline-s", type=float, default=400.0, help="stop starting sections after this")
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: exercise the script")
    ap.add_argument(
        "--sections",
        type=parse_sections,
        default="all",
        help="all, or a comma-separated subset of: decode (the decode sections), moe (one MoE layer: fused, "
        "grouped and loop dispatch, and the fused kernels' tiles, chosen before decode), mtp (the MTP training of "
        "the small preset); results go to bench_lm_<names>.json (e.g. bench_lm_decode_moe.json)",
    )
    ap.add_argument(
        "--compile-decode", action="store_true", help="also time decode with the blocks compiled by torch.compile"
    )
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    chosen = args.sections
    if "all" not in chosen and "mtp" not in chosen:
        args.train_seconds = 0.0
    name = "bench_lm.json" if "all" in chosen else "bench_lm_" + "_".join(sorted(chosen)) + ".json"
    bench = Bench(args.out, args.deadline_s, name)
    bench.results["command"] = " ".join(sys.argv)
    # The compiled variants (plain, eager-like rounding, shallow copies) add up to more compiled entries than
    # Dynamo's default limit of 8 per function, past which it would run them uncompiled without an error.
    torch._dynamo.config.recompile_limit = 64
    smoke = args.smoke
    work = Path("/tmp/bench_lm_work")
    work.mkdir(parents=True, exist_ok=True)
    status = work / "corpus_status.json"
    status.unlink(missing_ok=True)
    corpus_proc = None
    all_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    timing_cpus, corpus_cpus = split_cpus()
    if args.train_seconds > 0:
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, len(corpus_cpus) - 1 if corpus_cpus else 1)))
        limit = 4_000_000 if smoke else 260_000_000
        sample = 1_000_000 if smoke else 16_000_000
        vocab = 512 if smoke else preset("small").vocab_size
        corpus_proc = mp.get_context("spawn").Process(
            target=build_corpus, args=(str(work), limit, sample, vocab, str(status), corpus_cpus), daemon=True
        )
        corpus_proc.start()
        if timing_cpus != corpus_cpus:
            os.sched_setaffinity(0, timing_cpus)
            bench.results["cpus"] = {"timing": len(timing_cpus), "corpus_side_process": len(corpus_cpus)}

    bench.results["env"] = env_info(device)
    if chosen != {"mtp"}:
        speed_sections(bench, args, device)
    if all_cpus:
        os.sched_setaffinity(0, all_cpus)  # training feeds the GPU from every core, as before
    if corpus_proc is not None:
        train_s = min(args.train_seconds, bench.left() - 75) if not smoke else 8.0
        bench.results["corpus_build_alive_at_train_start"] = corpus_proc.is_alive()
        if train_s > 20 or smoke:
            bench.section("mtp_training_small", train_small, bench, work, corpus_proc, status, device, train_s, smoke)
        else:
            bench.results["mtp_training_small"] = {"skipped": f"{bench.left():.0f}s left"}
    bench.results["total_seconds"] = round(time.perf_counter() - T0, 1)
    bench.flush()
    log("done")


def speed_sections(bench: Bench, args: argparse.Namespace, device: str) -> None:
    """The DeepSeek-V2-Lite-shaped sections: ours against transformers on the same random weights."""
    smoke, chosen = args.smoke, args.sections
    everything = "all" in chosen
    run_decode, run_moe = everything or "decode" in chosen, everything or "moe" in chosen
    cfg = bench_config(smoke)
    bench.results["config"] = {
        "preset": "deepseek-v2-lite shapes, noaux_tc sigmoid routing" if not smoke else "debug (smoke)",
        "parameters": cfg.num_parameters(include_mtp=False),
        "active_parameters": cfg.num_parameters(include_mtp=False, active_only=True),
    }
    log(f"env {bench.results['env']}")
    model = build_ours(cfg, device)
    log("built ours")
    hf = None
    if not args.skip_hf:
        try:
            hf, info = build_hf(model, device)
            bench.results["transformers"] = info
        except Exception as exc:
            bench.results["transformers"] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"transformers model unavailable: {exc}")
    bench.flush()
    s = smoke
    bench.results["cache"] = cache_sizes(cfg)
    if hf is not None and everything:
        bench.section("correctness_vs_transformers", correctness, model, hf, 64 if s else 512, device)
    if everything:
        fp32_args = (cfg, 2 if s else 4, 64 if s else 512, device)
        bench.section("correctness_fp32_shallow", correctness_fp32, *fp32_args, need_s=30)
        lengths = [64, 128] if s else [2048, 16384]
        bench.section("prefill", prefill, model, hf, lengths, device, 1 if s else 3, need_s=30)
    if run_moe:  # before decode: decode runs with the tiles this picks
        bench.section("moe_fused_tiles", fused_tiles, model, 4 if s else 32, device, 2 if s else 10, need_s=30)
        shapes = [(4, 64), (1, 64)] if s else [(32, 1152), (1, 2304)]  # the decode sections' graph buckets
        bench.section("mla_tiles", mla_tiles, model, shapes, device, 2 if s else 10, need_s=30)
    if run_decode:
        decode_sections(bench, args, cfg, model, hf, device)
    if run_moe:
        bench.section("moe_layer", moe_layer, model, [64, 8] if s else [4096, 32], device, 2 if s else 10, need_s=15)
    if everything:
        bench.section("peak_memory_32k", peak_memory, model, hf, 32768, device, need_s=40)
    del hf, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def decode_sections(  # type: ignore[no-untyped-def]
    bench: Bench, args: argparse.Namespace, cfg: LMConfig, model, hf, device: str
) -> None:
    """Decode at batch 1 and 32 (ours with the fused and with the grouped expert dispatch, transformers), then
    optionally with compiled blocks."""
    s = args.smoke
    b1_args = (1, 64 if s else 2048, 8 if s else 128, 4 if s else 24, device)
    bench.section("decode_b1", decode, model, hf, *b1_args, need_s=40)
    b1 = bench.results.get("decode_b1") or {}
    if "ours_tok_per_s" in b1:
        need = active_bytes_per_token(cfg, 64 if s else 2048)
        bw = bench.results["env"].get("copy_bandwidth_TBps", 0) * 1e12
        b1["bytes_per_token"] = need
        if bw:
            b1["bandwidth_limit_tok_per_s"] = round(bw / need["total"], 1)
            b1["ours_fraction_of_bandwidth_limit"] = round(b1["ours_tok_per_s"] * need["total"] / bw, 4)
            if "transformers_tok_per_s" in b1:
                b1["transformers_fraction"] = round(b1["transformers_tok_per_s"] * need["total"] / bw, 4)
        bench.flush()
    bench.section(
        "decode_b32",
        decode,
        model,
        hf,
        4 if s else 32,
        32 if s else 1024,
        8 if s else 64,
        2 if s else 8,
        device,
        need_s=40,
    )
    if args.compile_decode:  # after the plain sections, so that a slow compilation cannot cost their figures
        for name in ("decode_b1", "decode_b32"):
            plain = bench.results.get(name) or {}
            if "ours_tok_per_s" in plain:
                bench.section(f"{name}_compiled", decode_compiled, model, plain, device, need_s=60)
        for batch, ctx in ((1, 64 if s else 2048), (4 if s else 32, 32 if s else 1024)):
            fp32_args = (cfg, 2 if s else 4, batch, ctx, device)
            bench.section(f"compiled_vs_fp32_b{batch}", compiled_vs_fp32, *fp32_args, need_s=40)
        for name in ("decode_b1", "decode_b32"):
            plain = bench.results.get(name) or {}
            if "ours_tok_per_s" in plain:
                bench.section(f"{name}_compiled_exact", decode_compiled, model, plain, device, True, need_s=40)


if __name__ == "__main__":
    main()
