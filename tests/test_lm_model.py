"""Language backbone: config, routing, MoE dispatch, MLA cache and decode equivalences (CPU, fp32, tiny)."""

from __future__ import annotations

import json

import pytest
import torch

from lm.cache import CacheError, LatentCache
from lm.config import LMConfig, LMConfigError, preset
from lm.model import InputError, LanguageModel
from lm.moe import Experts, Gate, grouped_mm


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread avoids oversubscription on busy shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_model(config: LMConfig | None = None, seed: int = 0) -> LanguageModel:
    """A model with large random weights (norm gains around 1, random correction biases) in eval mode."""
    config = config or preset("debug")
    torch.manual_seed(seed)
    model = LanguageModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.15)
        for gate in model.gates():
            gate.e_score_correction_bias.normal_(0.0, 0.3)
    return model.eval()


# ---------------------------------------------------------------------- config
def test_config_roundtrip_and_hf_keys(tmp_path):
    cfg = preset("debug")
    cfg.save(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "deepseek_v3" and data["architectures"] == ["DeepseekV3ForCausalLM"]
    for key in ("q_lora_rank", "kv_lora_rank", "n_group", "topk_group", "num_nextn_predict_layers", "rope_scaling"):
        assert key in data
    assert LMConfig.load(tmp_path) == cfg


def test_config_reads_transformers5_rope_parameters():
    data = preset("debug").to_dict()
    scaling = data.pop("rope_scaling")
    data.pop("rope_theta")
    data["rope_parameters"] = {**scaling, "rope_type": "yarn", "rope_theta": 5000.0}
    cfg = LMConfig.from_dict(data)
    assert cfg.rope_theta == 5000.0 and cfg.rope_type == "yarn" and cfg.rope_scaling["factor"] == 4.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_routed_experts": 10}, "divisible by n_group"),
        ({"topk_group": 5}, "exceeds n_group"),
        ({"scoring_func": "relu"}, "scoring_func"),
        ({"qk_rope_head_dim": 7}, "even"),
        ({"hidden_size": 0}, "positive integer"),
        ({"first_k_dense_replace": 9}, "first_k_dense_replace"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling type"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(LMConfigError, match=message):
        preset("debug").replace(**change)


def test_presets_sizes():
    small = preset("small")
    assert small.num_parameters() * 2 < 40e6  # bf16 weights, MTP module included
    assert abs(preset("deepseek-v2-lite").num_parameters() / 1e9 - 15.7) < 0.05
    assert abs(preset("deepseek-v3").num_parameters(include_mtp=False) / 1e9 - 671) < 1
    with pytest.raises(LMConfigError, match="unknown preset"):
        preset("gpt2")


# ---------------------------------------------------------------------- routing and experts
def _reference_route(gate: Gate, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Per-token restatement of noaux_tc routing (DeepSeek-V3 inference code), for comparison.
    scores = torch.sigmoid(x.float() @ gate.weight.T)
    weights, indices = [], []
    per_group = gate.n_experts // gate.routing.n_group
    for s in scores:
        biased = s + gate.e_score_correction_bias
        groups = biased.view(gate.routing.n_group, per_group)
        group_score = groups.topk(2).values.sum(-1)
        allowed = set(group_score.topk(gate.routing.topk_group).indices.tolist())
        masked = torch.tensor(
            [biased[e].item() if e // per_group in allowed else float("-inf") for e in range(gate.n_experts)]
        )
        idx = masked.topk(gate.routing.top_k).indices
        w = s[idx] / s[idx].sum() * gate.routing.route_scale
        order = idx.argsort()
        indices.append(idx[order])
        weights.append(w[order])
    return torch.stack(weights), torch.stack(indices)


def test_noaux_tc_routing_matches_reference():
    cfg = preset("debug")
    torch.manual_seed(1)
    gate = Gate(cfg)
    with torch.no_grad():
        gate.weight.normal_(0, 0.5)
        gate.e_score_correction_bias.normal_(0, 0.5)
    x = torch.randn(50, cfg.hidden_size)
    w, idx = gate(x)
    order = idx.argsort(dim=-1)
    ref_w, ref_idx = _reference_route(gate, x)
    assert torch.equal(idx.gather(1, order), ref_idx)
    torch.testing.assert_close(w.gather(1, order), ref_w, rtol=1e-5, atol=1e-6)
    # The bias only steers the choice: a huge bias forces expert 3 in, yet its weight is its unbiased score.
    with torch.no_grad():
        gate.e_score_correction_bias.zero_()
        gate.e_score_correction_bias[3] = 100.0
    w, idx = gate(x)
    assert torch.all((idx == 3).any(dim=-1))
    scores = torch.sigmoid(x @ gate.weight.T)
    torch.testing.assert_close(w, scores.gather(1, idx) / scores.gather(1, idx).sum(-1, keepdim=True) * 2.5)


def test_group_limit_keeps_choices_inside_topk_groups():
    cfg = preset("debug")
    gate = Gate(cfg)
    with torch.no_grad():
        gate.weight.normal_(0, 1.0)
    _, idx = gate(torch.randn(200, cfg.hidden_size))
    groups = idx // (cfg.n_routed_experts // cfg.n_group)
    assert all(len(set(row.tolist())) <= cfg.topk_group for row in groups)


def test_softmax_greedy_routing_unnormalised():
    cfg = preset("debug").replace(scoring_func="softmax", topk_method="greedy", norm_topk_prob=False)
    gate = Gate(cfg)
    with torch.no_grad():
        gate.weight.normal_(0, 0.5)
    x = torch.randn(10, cfg.hidden_size)
    w, idx = gate(x)
    probs = torch.softmax(x @ gate.weight.T, dim=-1)
    torch.testing.assert_close(w, probs.gather(1, idx) * cfg.routed_scaling_factor)
    assert torch.equal(idx, probs.topk(cfg.num_experts_per_tok).indices)


@pytest.mark.parametrize("split_min_pairs", [16384, 0])  # the few-kernel path and the long-prefill path
def test_grouped_dispatch_equals_per_expert_loop(split_min_pairs):
    cfg = preset("debug")
    torch.manual_seed(2)
    experts = Experts(cfg)
    experts.split_min_pairs = split_min_pairs
    with torch.no_grad():
        experts.gate_up_proj.normal_(0, 0.2)
        experts.down_proj.normal_(0, 0.2)
    x = torch.randn(64, cfg.hidden_size)
    idx = torch.stack([torch.randperm(cfg.n_routed_experts)[: cfg.num_experts_per_tok] for _ in range(64)])
    idx[:10] = torch.tensor([0, 1])  # an expert receiving many tokens, several receiving none
    w = torch.rand(64, cfg.num_experts_per_tok)
    with torch.inference_mode():
        torch.testing.assert_close(experts(x, w, idx), experts.forward_loop(x, w, idx), rtol=1e-5, atol=1e-5)


def test_grouped_mm_fallback_matches_kernel_path():
    x = torch.randn(10, 16)
    w = torch.randn(3, 16, 8)
    offsets = torch.tensor([3, 3, 10], dtype=torch.int32)
    expected = torch.cat([x[:3] @ w[0], x[3:] @ w[2]])
    torch.testing.assert_close(grouped_mm(x, w, offsets), expected)  # kernel (aligned strides)
    odd = torch.randn(10, 6)
    w6 = torch.randn(3, 6, 8)
    torch.testing.assert_close(grouped_mm(odd, w6, offsets), torch.cat([odd[:3] @ w6[0], odd[3:] @ w6[2]]))


def test_aux_free_bias_update_moves_against_load():
    cfg = preset("debug")
    gate = Gate(cfg).train()
    gate.track_load = True
    with torch.no_grad():
        gate.weight.normal_(0, 0.5)
    gate(torch.randn(256, cfg.hidden_size))
    load = gate.expert_load.clone()
    assert load.sum() == 256 * cfg.num_experts_per_tok
    returned = gate.update_bias(0.01)
    assert torch.equal(returned, load)
    bias = gate.e_score_correction_bias
    assert torch.all(bias[load > load.mean()] < 0) and torch.all(bias[load < load.mean()] > 0)
    assert gate.expert_load.sum() == 0


def test_sequence_balance_loss_only_in_training():
    cfg = preset("debug").replace(aux_loss_alpha=0.01)
    model = random_model(cfg).train()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    out = model(ids, labels=ids.roll(-1, 1))
    assert out.aux_loss is not None and out.aux_loss.item() > 0
    assert torch.isclose(out.loss, out.main_loss + 0.3 * out.mtp_loss + out.aux_loss)
    out = model.eval()(ids, labels=ids.roll(-1, 1))
    assert out.aux_loss is None


def test_router_stays_float32_when_model_is_cast():
    model = LanguageModel(preset("debug")).to(torch.bfloat16)
    gate = model.gates()[0]
    assert gate.weight.dtype == torch.float32 and gate.e_score_correction_bias.dtype == torch.float32
    assert model.rotary.table.dtype == torch.float32
    assert model.layers[0].self_attn.q_a_proj.weight.dtype == torch.bfloat16


# ---------------------------------------------------------------------- cache and decode
def test_cache_holds_latent_plus_rope_per_token_per_layer():
    cfg = preset("debug")
    model = random_model(cfg)
    cache = LatentCache.for_model(cfg, batch_size=2, capacity=20, dtype=torch.float32, device="cpu")
    assert cache.data.shape == (cfg.num_hidden_layers, 2, 20, cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    assert cache.bytes_per_token() == cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * 4
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        model(ids[:, :8], cache=cache)
        # Filled slots are exactly the normalised latent and the rotated RoPE key (nothing per head).
        layer0 = model.layers[0].self_attn
        x = model.layers[0].input_layernorm(model.embed_tokens(ids[:, :8]))
        rot, pairs = model.rotary(torch.arange(8).expand(2, 8))
        torch.testing.assert_close(cache.data[0, :, :8], layer0._latent(x, rot, pairs))
        assert torch.count_nonzero(cache.data[:, :, 8:]) == 0
        # The cache is the whole decode state: a fresh model object continues from it identically.
        clone = random_model(cfg)
        a = model(ids[:, 8:], cache=cache.clone()).logits
        b = clone(ids[:, 8:], cache=cache.clone()).logits
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("absorb", [True, False])
def test_cached_decode_equals_full_recompute(absorb):
    cfg = preset("debug")
    model = random_model(cfg)
    ids = torch.randint(0, cfg.vocab_size, (3, 24))
    with torch.no_grad():
        full = model(ids).logits
        cache = LatentCache.for_model(cfg, 3, 32, torch.float32, "cpu")
        parts = [model(ids[:, :10], cache=cache).logits, model(ids[:, 10:14], cache=cache, absorb=False).logits]
        for t in range(14, 24):
            parts.append(model(ids[:, t : t + 1], cache=cache, absorb=absorb).logits)
    assert (torch.cat(parts, 1) - full).abs().max().item() <= 1e-4
    assert cache.host_lengths == [24, 24, 24]


@pytest.mark.parametrize("absorb", [True, False])
def test_variable_length_rows_decode_like_separate_sequences(absorb):
    cfg = preset("debug")
    model = random_model(cfg)
    ids = torch.randint(0, cfg.vocab_size, (3, 20))
    lengths = [5, 9, 7]
    with torch.no_grad():
        full = model(ids).logits
        cache = LatentCache.for_model(cfg, 3, 24, torch.float32, "cpu")
        model(ids[:, :9], cache=cache)  # right-padded prompts
        cache.set_lengths(lengths)
        for step in range(0, 6, 2):  # two tokens per step: rows of different lengths need the explicit mask
            nxt = torch.stack([ids[b, lengths[b] + step : lengths[b] + step + 2] for b in range(3)])
            logits = model(nxt, cache=cache, absorb=absorb).logits
            expected = torch.stack([full[b, lengths[b] + step : lengths[b] + step + 2] for b in range(3)])
            assert (logits - expected).abs().max().item() <= 1e-4


def test_cache_save_load_roundtrip(tmp_path):
    cfg = preset("debug")
    model = random_model(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        cache = LatentCache.for_model(cfg, 2, 16, torch.float32, "cpu")
        model(ids[:, :6], cache=cache)
        cache.set_lengths([6, 4])
        cache.save(tmp_path / "doc.safetensors", {"document": "abc"})
        loaded = LatentCache.load(tmp_path / "doc.safetensors", capacity=16, config=cfg)
        assert loaded.host_lengths == [6, 4]
        torch.testing.assert_close(loaded.data[:, 0, :6], cache.data[:, 0, :6])
        torch.testing.assert_close(loaded.data[:, 1, :4], cache.data[:, 1, :4])
        a = model(ids[:, 6:8], cache=cache).logits
        b = model(ids[:, 6:8], cache=loaded).logits
    torch.testing.assert_close(a, b)
    with pytest.raises(CacheError, match="different architecture"):
        LatentCache.load(tmp_path / "doc.safetensors", config=cfg.replace(kv_lora_rank=16))
    (tmp_path / "bad.safetensors").write_bytes(b"not a cache")
    with pytest.raises(CacheError):
        LatentCache.load(tmp_path / "bad.safetensors")


def test_cache_capacity_error():
    cfg = preset("debug")
    model = random_model(cfg)
    cache = LatentCache.for_model(cfg, 1, 4, torch.float32, "cpu")
    with pytest.raises(CacheError, match="capacity"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_inputs_embeds_equals_input_ids():
    model = random_model()
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        a = model(ids).logits
        b = model(inputs_embeds=model.embed_tokens(ids)).logits
    torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="exactly one"):
        model(ids, inputs_embeds=model.embed_tokens(ids))
    with pytest.raises(InputError, match="inputs_embeds must be"):
        model(inputs_embeds=torch.zeros(1, 3, 5))


def test_training_backward_reaches_every_parameter():
    model = random_model()
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    out = model(ids[:, :-1], labels=ids[:, 1:])
    out.loss.backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # Experts that no token chose legitimately get zero gradient; everything else must learn.
    assert all("experts." in n for n in untouched), untouched
