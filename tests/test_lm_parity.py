"""Parity with Hugging Face ``transformers`` DeepseekV3ForCausalLM (CPU, fp32, tiny random configs).

Pinned to transformers 5.24.0 (the version in pyproject's test extra): its DeepseekV3 layout (interleaved RoPE
pairs, experts fused in memory but per-expert on disk, ``MtpModel`` for the layer after the decoder) is what these
tests check against. Another version skips with a reason instead of failing on upstream changes.
"""

from __future__ import annotations

import json

import pytest
import torch

from lm.checkpoint import CheckpointError, load_pretrained, save_pretrained
from lm.config import preset
from tests.test_lm_model import one_thread, random_model  # noqa: F401  (autouse fixture)

transformers = pytest.importorskip("transformers")
TRANSFORMERS_PIN = "5.24.0"
pytestmark = pytest.mark.skipif(
    transformers.__version__ != TRANSFORMERS_PIN,
    reason=f"parity tests are pinned to transformers {TRANSFORMERS_PIN}, found {transformers.__version__}",
)
TOL = 1e-4


@pytest.fixture(autouse=True)
def _quiet_transformers():
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _hf_load(path):
    return transformers.DeepseekV3ForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


CONFIGS = {
    "v3-yarn-groups": preset("debug"),
    "plain-q-no-yarn": preset("debug").replace(q_lora_rank=None, rope_scaling=None, n_group=1, topk_group=1),
    "halves-rope-no-dense": preset("debug").replace(rope_interleave=False, first_k_dense_replace=0, n_shared_experts=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers_after_our_save(tmp_path, name):
    model = random_model(CONFIGS[name], seed=3)
    save_pretrained(model, tmp_path)
    hf = _hf_load(tmp_path)
    ids = torch.randint(0, model.config.vocab_size, (2, 33))
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf(ids).logits
    assert ours.abs().max() > 1.0  # logits large enough for the tolerance to mean something
    assert (ours - theirs).abs().max().item() <= TOL


def test_transformers_save_then_our_load(tmp_path):
    cfg = CONFIGS["v3-yarn-groups"]
    torch.manual_seed(4)
    hf_cfg = transformers.DeepseekV3Config(**{k: v for k, v in cfg.to_dict().items() if k != "architectures"})
    hf = transformers.DeepseekV3ForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.15)
        for layer in hf.model.layers[cfg.first_k_dense_replace :]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.3)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf", dtype=torch.float32)
    assert len(ours.mtp) == 0  # transformers writes no MTP weights: none are invented
    ids = torch.randint(0, cfg.vocab_size, (2, 25))
    with torch.no_grad():
        expected = hf(ids).logits
        assert (ours(ids).logits - expected).abs().max().item() <= TOL
        # ... and back again: our save of the loaded model is what transformers had.
        save_pretrained(ours, tmp_path / "ours")
        again = _hf_load(tmp_path / "ours")
        assert (again(ids).logits - expected).abs().max().item() <= TOL


def test_sharded_save_has_index_and_per_expert_names(tmp_path):
    model = random_model(seed=5)
    files = save_pretrained(model, tmp_path, max_shard_bytes=200_000)
    assert len(files) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    names = index["weight_map"]
    n = model.config.num_hidden_layers
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in names
    assert "model.layers.1.mlp.gate.e_score_correction_bias" in names
    assert f"model.layers.{n}.eh_proj.weight" in names and f"model.layers.{n}.shared_head.norm.weight" in names
    reloaded = load_pretrained(tmp_path, dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
        hf = _hf_load(tmp_path)
        assert (hf(ids).logits - model(ids).logits).abs().max().item() <= TOL


def test_mtp_logits_match_transformers_mtp_model(tmp_path):
    from transformers.modeling_layers import MtpModel

    cfg = CONFIGS["v3-yarn-groups"]
    model = random_model(cfg, seed=6)
    save_pretrained(model, tmp_path)
    hf = _hf_load(tmp_path)
    # transformers only looks for DeepSeek-V3's MTP layer index (61); point it at this tiny model's index.
    hf._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{cfg.num_hidden_layers}\..*"]
    mtp = MtpModel.from_pretrained(hf).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 30))
    with torch.no_grad():
        ours = model(ids[:, :-1], labels=ids[:, 1:])
        hidden = hf(ids[:, :-1], output_hidden_states=True).hidden_states[-1]
        positions = torch.arange(1, ids.shape[1] - 1).expand(2, -1)
        h = mtp.forward_layer(0, hidden[:, :-1], positions, None, input_ids=ids[:, 1:-1])
        theirs = mtp._project_to_logits(h)
    assert ours.mtp_logits[0].shape == theirs.shape
    assert (ours.mtp_logits[0] - theirs).abs().max().item() <= TOL


def test_pickle_and_incomplete_checkpoints_are_refused(tmp_path):
    model = random_model(seed=7)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    model.config.save(tmp_path / "pickled")
    with pytest.raises(CheckpointError, match="pickle"):
        load_pretrained(tmp_path / "pickled")
    with pytest.raises(CheckpointError, match="pickle"):
        load_pretrained(tmp_path / "pickled" / "pytorch_model.bin")
    save_pretrained(model, tmp_path / "ok")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "ok" / "model.safetensors")
    del tensors["model.layers.0.self_attn.kv_b_proj.weight"]
    save_file(tensors, tmp_path / "ok" / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained(tmp_path / "ok")
