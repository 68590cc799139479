"""Training script for the repair nets: pack files, damaged crops, resumable checkpoints, fp16 export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vision.damage_net import DamageNet
from vision.inpaint import InpaintNet, PatchDiscriminator
from vision.train_inpaint import CROP, DamagedCrops, Pack, ladder_drawing, main, make_example, warm_start


def test_pack_crops_and_resumable_training(tmp_path: Path) -> None:
    pack_file = tmp_path / "pack.npz"
    main(["pack", "--out", str(pack_file), "--count", "2", "--first-seed", "3"])
    drawings = Pack(pack_file)
    assert len(drawings) == 2 and drawings[0].ndim == 2 and drawings[0].dtype == np.uint8

    damaged, mask, intact = make_example(ladder_drawing(7), np.random.default_rng(0))
    assert damaged.shape == mask.shape == intact.shape == (CROP, CROP)
    crops = iter(DamagedCrops(pack_file, seed=1, size=64, per_drawing=2))
    d, m, t = next(crops)
    assert d.shape == m.shape == t.shape == (1, 64, 64) and d.dtype == torch.uint8

    ckpt, weights = tmp_path / "ckpt", tmp_path / "weights"
    common = ["--data", str(pack_file), "--ckpt", str(ckpt), "--weights", str(weights), "--minutes", "0"]
    common += ["--batch", "2", "--crop", "64", "--workers", "0", "--log-every", "0", "--gan-start", "0"]
    main(["train", *common, "--steps", "1"])
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 1
    first = InpaintNet.load(weights / "inpaint.safetensors").state_dict()
    main(["train", *common, "--steps", "2"])  # resumes at step 1 and trains one more
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    second = InpaintNet.load(weights / "inpaint.safetensors").state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    assert DamageNet.load(weights / "damage_net.safetensors").widths == DamageNet().widths


def test_pack_is_the_same_rendered_by_worker_processes(tmp_path: Path) -> None:
    main(["pack", "--out", str(tmp_path / "one.npz"), "--count", "3", "--first-seed", "11"])
    main(["pack", "--out", str(tmp_path / "two.npz"), "--count", "3", "--first-seed", "11", "--workers", "2"])
    one, two = Pack(tmp_path / "one.npz"), Pack(tmp_path / "two.npz")
    assert all(np.array_equal(one[i], two[i]) for i in range(3))


def test_warm_start_from_shipped_weights(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    DamageNet().save(shipped / "damage_net.safetensors")
    InpaintNet().save(shipped / "inpaint.safetensors")
    mask_net, gen, disc = DamageNet(), InpaintNet(), PatchDiscriminator()
    warm_start(shipped, mask_net, gen, disc)
    ref = InpaintNet.load(shipped / "inpaint.safetensors").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in gen.state_dict().items())
    with pytest.raises(FileNotFoundError, match="no checkpoint or shipped weights"):
        warm_start(tmp_path, mask_net, gen, disc)
