"""Training script for the repair nets: pack files, damaged crops, resumable checkpoints, fp16 export."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision.damage_net import DamageNet
from vision.inpaint import InpaintNet, PatchDiscriminator
from vision.train_inpaint import (
    CROP,
    LABEL,
    SYMBOL,
    DamagedCrops,
    Pack,
    aim_map,
    critic_weights,
    generator_losses,
    glyph_boxes,
    ladder_drawing,
    main,
    make_example,
    warm_start,
)


def test_pack_crops_and_resumable_training(tmp_path: Path) -> None:
    pack_file = tmp_path / "pack.npz"
    main(["pack", "--out", str(pack_file), "--count", "2", "--first-seed", "3"])
    drawings = Pack(pack_file)
    assert len(drawings) == 2 and drawings[0].ndim == 2 and drawings[0].dtype == np.uint8

    # Seed 3 is a ladder drawing (boxes: its glyphs), seed 4 one of the engine's (labels and symbols).
    assert {LABEL} == set(drawings.boxes(0)[:, 4]) and {LABEL, SYMBOL} == set(drawings.boxes(1)[:, 4])

    drawing = ladder_drawing(7)
    damaged, mask, intact, restore = make_example(drawing, np.random.default_rng(0))
    assert damaged.shape == mask.shape == intact.shape == restore.shape == (CROP, CROP)
    d, m, t, r = make_example(drawing, np.random.default_rng(0), boxes=glyph_boxes(drawing), aim=0.5, page_size=True)
    assert d.shape == (CROP, CROP) and not (r & ~m).any()  # restore lies inside the mask
    crops = iter(DamagedCrops(pack_file, seed=1, size=64, per_drawing=2, aim=0.5, page_size=True))
    d, m, t, r = next(crops)
    assert d.shape == m.shape == t.shape == r.shape == (1, 64, 64) and d.dtype == torch.uint8

    ckpt, weights = tmp_path / "ckpt", tmp_path / "weights"
    common = ["--data", str(pack_file), "--ckpt", str(ckpt), "--weights", str(weights), "--minutes", "0"]
    common += ["--batch", "2", "--crop", "64", "--workers", "0", "--log-every", "0", "--gan-start", "0"]
    common += ["--aim", "0.5", "--page-size", "--restore", "3", "--refine", "4", "--coarse-lr", "0.5"]
    main(["train", *common, "--steps", "1"])
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 1
    assert "restore" in json.loads((ckpt / "train_log.jsonl").read_text().splitlines()[0])
    first = InpaintNet.load(weights / "inpaint.safetensors").state_dict()
    main(["train", *common, "--steps", "2", "--gan-in-hole"])  # resumes at step 1 and trains one more
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    second = InpaintNet.load(weights / "inpaint.safetensors").state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    assert DamageNet.load(weights / "damage_net.safetensors").widths == DamageNet().widths
    main(["export", "--ckpt", str(ckpt), "--weights", str(tmp_path / "exported")])
    exported = InpaintNet.load(tmp_path / "exported" / "inpaint.safetensors")
    assert exported.refine == 4 and all(torch.equal(exported.state_dict()[k], second[k]) for k in second)


def test_critic_weights_sit_on_the_patches_that_see_the_hole() -> None:
    hole = torch.zeros(2, 1, 64, 64)
    hole[0, 0, 40:48, 8:12] = 1  # the second crop was left undamaged
    logits = torch.Size((2, 1, 8, 8))
    uniform = critic_weights(hole, logits, in_hole=False)
    assert torch.allclose(uniform, torch.full(logits, 1 / 64))
    w = critic_weights(hole, logits, in_hole=True)
    assert torch.allclose(w.sum((1, 2, 3)), torch.ones(2))
    assert w[0, 0, 5, 1] == 1 and w[0].count_nonzero() == 1  # the hole lies in one 8-px patch
    assert torch.allclose(w[1], uniform[1])  # no hole: every patch


def test_pack_is_the_same_rendered_by_worker_processes(tmp_path: Path) -> None:
    main(["pack", "--out", str(tmp_path / "one.npz"), "--count", "3", "--first-seed", "11"])
    main(["pack", "--out", str(tmp_path / "two.npz"), "--count", "3", "--first-seed", "11", "--workers", "2"])
    one, two = Pack(tmp_path / "one.npz"), Pack(tmp_path / "two.npz")
    assert all(np.array_equal(one[i], two[i]) and np.array_equal(one.boxes(i), two.boxes(i)) for i in range(3))


def test_real_pack_holds_the_training_split_and_feeds_its_share_of_crops(tmp_path: Path) -> None:
    folder = tmp_path / "real"  # a `train_detector pack-real` folder: one training and one validation drawing
    folder.mkdir()
    train_drawing, val_drawing = ladder_drawing(7), np.full((300, 300), 255, np.uint8)
    cv2.imwrite(str(folder / "5.png"), train_drawing)
    cv2.imwrite(str(folder / "6.png"), val_drawing)
    index = [
        {"id": "5", "file": "5.png", "split": "train", "boxes": [["resistor", 10.0, 20.0, 60.0, 40.0]]},
        {"id": "6", "file": "6.png", "split": "val", "boxes": []},
    ]
    (folder / "index.json").write_text(json.dumps(index))
    main(["pack", "--real", str(folder), "--out", str(tmp_path / "real.npz")])
    real = Pack(tmp_path / "real.npz")
    assert len(real) == 1 and real[0].shape == train_drawing.shape
    assert np.abs(real[0].astype(int) - train_drawing).max() <= 8 and len(np.unique(real[0])) <= 16
    assert real.boxes(0)[0].tolist() == [10.0, 20.0, 60.0, 40.0, SYMBOL] and LABEL in real.boxes(0)[1:, 4]

    main(["pack", "--out", str(tmp_path / "synth.npz"), "--count", "1", "--first-seed", "4"])

    def intact_crops(share: float) -> list[torch.Tensor]:
        crops = DamagedCrops(tmp_path / "synth.npz", 0, 64, 1, real_path=tmp_path / "real.npz", real_share=share)
        return [crops[k][2] for k in range(6)]

    # All crops from one pack or the other: the same crop numbers give other drawings.
    assert not any(torch.equal(a, b) for a, b in zip(intact_crops(0.0), intact_crops(1.0)))


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


@torch.no_grad()
def test_a_refiner_added_to_shipped_weights_starts_from_their_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    shipped = tmp_path / "shipped"
    DamageNet().save(shipped / "damage_net.safetensors")
    InpaintNet().save(shipped / "inpaint.safetensors")
    gen = InpaintNet(refine=8)
    warm_start(shipped, DamageNet(), gen, PatchDiscriminator())
    x, m = torch.rand(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.7).float()
    before = InpaintNet.load(shipped / "inpaint.safetensors")(x, m)[0]
    assert torch.allclose(gen.eval()(x, m)[0], before, atol=1e-6)
    gen.save(shipped / "inpaint.safetensors")
    with pytest.raises(RuntimeError, match="do not fit"):  # a refiner's weights have no place in a net without one
        warm_start(shipped, DamageNet(), InpaintNet(), PatchDiscriminator())


def test_pack_without_boxes_aims_at_glyphs(tmp_path: Path) -> None:
    drawing = ladder_drawing(7)
    ok, png = cv2.imencode(".png", drawing)
    old = tmp_path / "old.npz"  # a pack written before boxes existed
    np.savez(old, data=png.ravel(), offsets=np.array([0, png.size], np.int64))
    boxes = Pack(old).boxes(0)
    assert len(boxes) > 5 and np.array_equal(boxes, glyph_boxes(drawing))
    # Glyphs are small; the wires and symbols they label are one large piece, never a box.
    assert (boxes[:, 2] - boxes[:, 0]).max() <= 0.06 * max(drawing.shape)


def test_aim_map_follows_the_crop() -> None:
    boxes = np.array([[10, 10, 20, 20, LABEL], [100, 0, 140, 30, SYMBOL]], np.float32)
    where = aim_map(boxes, 2.0, 5, 0, 64)  # scaled twice, crop 5 rows down: the label at rows 15-35, cols 20-40
    assert where is not None and where.shape == (64, 64)
    assert where[25, 30] > 0 and where[13, 30] == 0 and where[25, 42] == 0
    assert np.isclose(where.sum(), 1.0)  # the symbol lies outside the crop: the label takes the whole aim
    assert aim_map(boxes[1:], 1.0, 40, 0, 32) is None


def test_restore_term_counts_erased_ink_under_fade_and_gap() -> None:
    intact = torch.ones(1, 1, 32, 32)
    intact[..., 16, :] = 0.1  # a wire
    hole = torch.zeros_like(intact)
    hole[..., 8:24, 8:24] = 1
    pred = intact.clone()
    pred[..., 16, 8:24] = 1.0  # the net erased the wire in the hole
    faded = hole.clone()
    assert generator_losses(pred, intact, intact, hole, faded)["restore"] == pytest.approx(0.9)
    assert generator_losses(pred, intact, intact, hole, torch.zeros_like(hole))["restore"] == 0
    assert generator_losses(intact, intact, intact, hole, faded)["restore"] == 0
