"""Repair models: shapes, known pixels passing through, weight files, and the wire-completion geometry."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision.damage_net import CONFIRM_WEIGHTS, DamageNet, damage_mask, predict_damage
from vision.inpaint import (
    WEIGHTS,
    InpaintNet,
    PatchDiscriminator,
    composite,
    inpaint_image,
    kl_divergence,
    load_module,
    refine_cells,
)
from vision.wire_complete import bridge_breaks, complete_wires


@torch.no_grad()
def test_nets_shapes_and_odd_sizes() -> None:
    torch.manual_seed(0)
    gen, disc, mask_net = InpaintNet().eval(), PatchDiscriminator().eval(), DamageNet().eval()
    x = torch.rand(2, 1, 64, 96)
    m = (torch.rand(2, 1, 64, 96) > 0.8).float()
    pred, mu, logvar = gen(x, m)
    assert pred.shape == x.shape and 0.0 <= float(pred.min()) and float(pred.max()) <= 1.0
    assert mu.shape == logvar.shape == (2, gen.latent, 4, 6)
    assert disc(x, m).shape == (2, 1, 8, 12)
    assert predict_damage(mask_net, torch.rand(37, 51)).shape == (37, 51)  # padded inside, cropped back


def test_vae_samples_in_training_and_uses_the_mean_in_eval() -> None:
    torch.manual_seed(0)
    gen = InpaintNet()
    x, m = torch.rand(1, 1, 32, 32), torch.ones(1, 1, 32, 32)
    gen.eval()
    assert torch.equal(gen(x, m)[0], gen(x, m)[0])
    a, b = gen(x, m, sample=True)[0], gen(x, m, sample=True)[0]
    assert not torch.equal(a, b)
    assert float(kl_divergence(torch.zeros(4), torch.zeros(4))) == 0.0
    assert float(kl_divergence(torch.ones(4), torch.zeros(4))) == pytest.approx(0.5)


def test_known_pixels_pass_through_unchanged() -> None:
    torch.manual_seed(0)
    gen = InpaintNet().eval()
    gray = torch.rand(300, 520)
    mask = torch.zeros(300, 520, dtype=torch.bool)
    mask[20:60, 30:90] = True  # one tile: the tiled path
    out = inpaint_image(gen, gray, mask)
    assert torch.equal(out[~mask], gray[~mask])
    assert not torch.equal(out[mask], gray[mask])
    mask[:, :] = False
    mask[::7, :] = True  # damage in every tile: the whole-image path
    out = inpaint_image(gen, gray, mask)
    assert torch.equal(out[~mask], gray[~mask])
    assert torch.equal(inpaint_image(gen, gray, torch.zeros_like(mask)), gray)
    assert torch.equal(
        composite(torch.zeros(3), torch.ones(3), torch.tensor([1.0, 0.0, 1.0])), torch.tensor([0.0, 1, 0])
    )


def test_tiles_agree_with_the_whole_image_inside_the_hole() -> None:
    """A small hole is repaired the same whether its tile runs alone or within the whole image (up to the
    context each sees), so tiling does not change what the model draws."""
    torch.manual_seed(0)
    gen = InpaintNet().eval()
    gray = torch.ones(256, 256)
    gray[126:130, :] = 0.0
    mask = torch.zeros(256, 256, dtype=torch.bool)
    mask[110:146, 100:140] = True
    tiled = inpaint_image(gen, gray, mask, tile=128, margin=32)
    whole = inpaint_image(gen, gray, mask, tile=256, margin=0)
    assert float((tiled - whole)[mask].abs().mean()) < 0.2


@torch.no_grad()
def test_the_refiner_run_on_damaged_cells_matches_it_run_on_the_whole_image() -> None:
    torch.manual_seed(0)
    net = InpaintNet(refine=8).eval()
    torch.nn.init.normal_(net.refiner.out[0].weight, std=0.5)  # a refiner that changes something
    gray, logits = torch.rand(192, 320), torch.randn(192, 320)
    mask = torch.zeros(192, 320)
    mask[60:100, 40:230] = 1.0
    whole = net.refinement(gray[None, None], mask[None, None], logits[None, None])[0, 0]
    cells = refine_cells(net, gray, mask, logits)
    assert float(whole[mask > 0].abs().min()) > 0
    assert torch.allclose(cells[mask > 0], whole[mask > 0], atol=1e-5)
    assert not cells[128:].any() and not cells[:, 256:].any()  # cells without damage are not run


def test_weights_round_trip_in_fp16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = InpaintNet(widths=(8, 16, 24), latent=8, blocks=1, refine=4)
    gen.save(tmp_path / "g.safetensors")
    back = InpaintNet.load(tmp_path / "g.safetensors")
    assert (back.widths, back.latent, back.blocks, back.refine) == ((8, 16, 24), 8, 1, 4)
    for (k, a), (_, b) in zip(gen.state_dict().items(), back.state_dict().items()):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=2e-3, rtol=1e-3), k
    net = DamageNet(widths=(8, 8, 16, 16))
    net.save(tmp_path / "d.safetensors")
    assert DamageNet.load(tmp_path / "d.safetensors").widths == (8, 8, 16, 16)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_module(tmp_path / "missing.safetensors", lambda meta: DamageNet())


def test_shipped_weights_are_small_fp16_safetensors() -> None:
    from safetensors import safe_open

    for path in (WEIGHTS, WEIGHTS.with_name("damage_net.safetensors"), CONFIRM_WEIGHTS):
        assert path.is_file(), f"missing shipped weights {path}"
        assert path.stat().st_size <= 20 * 2**20
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert "F16" in dtypes and "F32" not in dtypes


def _dashes_and_hairlines() -> np.ndarray:
    """Clean line art in a real drawing's style: rows of dashed lines and hairline diagonals."""
    img = np.full((512, 640), 255, np.uint8)
    for y in range(60, 480, 60):
        for x in range(20, 620, 24):
            cv2.line(img, (x, y), (x + 12, y), 0, 2)
    for k in range(8):
        cv2.line(img, (20 + 70 * k, 500), (80 + 70 * k, 30), 0, 1, cv2.LINE_AA)
    return img


def test_confirming_net_keeps_true_damage_and_drops_what_real_drawings_hold() -> None:
    from vision.synth.damage import apply_damage

    net, confirm = DamageNet.load(), DamageNet.load(CONFIRM_WEIGHTS)
    clean = _dashes_and_hairlines()
    # The net trained on synthetic drawings alone takes dashes and hairlines for damage; confirmed, nothing is left.
    assert damage_mask(net, clean).mean() > 0.01
    assert not damage_mask(net, clean, confirm).any()
    damaged, true = apply_damage(clean, np.random.default_rng(0), kinds=["hole", "gap", "scribble"])
    alone, confirmed = damage_mask(net, damaged), damage_mask(net, damaged, confirm)
    assert not (confirmed & ~alone).any()  # confirming only drops pieces, with the first net's outline
    hole = true > 0
    assert (confirmed & hole).sum() > 0.8 * (alone & hole).sum()
    assert np.array_equal(damage_mask(net, damaged, net), alone)  # a net confirms all of its own pieces


def test_damage_mask_takes_in_the_soft_edge_round_each_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    import vision.damage_net as damage_net
    from vision.synth.damage import apply_damage_by_kind
    from vision.synth.render import render_sample

    net = DamageNet.load()
    sample = render_sample(800_007)
    damaged, true, _ = apply_damage_by_kind(sample.image, np.random.default_rng(800_007))
    gray = damaged if damaged.ndim == 2 else cv2.cvtColor(damaged, cv2.COLOR_RGB2GRAY)
    grown, edge = damage_mask(net, gray), damage_net.EDGE_THRESHOLD
    monkeypatch.setattr(damage_net, "EDGE_THRESHOLD", 1.0)  # no probability is over it: the pieces alone
    core = damage_mask(net, gray)
    ring = grown & ~core
    assert not (core & ~grown).any()
    assert ring.any() and not (ring & ~cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)).any()
    prob = predict_damage(net, torch.from_numpy(gray).float() / 255.0).numpy()
    assert (prob[ring] > edge).all()
    hole = true > 0
    assert (grown & hole).sum() > (core & hole).sum()  # the ring holds damage the pieces left out


# ------------------------------------------------------------------------------------------ wire completion
def _lines() -> np.ndarray:
    img = np.full((300, 400), 255, np.uint8)
    cv2.line(img, (20, 100), (380, 100), 0, 3, cv2.LINE_AA)
    cv2.line(img, (200, 150), (200, 290), 0, 2, cv2.LINE_AA)
    cv2.line(img, (20, 280), (150, 150), 0, 2, cv2.LINE_AA)
    cv2.line(img, (250, 20), (250, 100), 0, 3, cv2.LINE_AA)
    return img


def _ink_pieces(img: np.ndarray) -> int:
    return cv2.connectedComponents((img < 140).astype(np.uint8), connectivity=8)[0] - 1


def test_wire_completion_joins_axis_and_diagonal_gaps_and_t_stems() -> None:
    img = _lines()
    mask = np.zeros(img.shape, bool)
    mask[85:115, 150:190] = True  # horizontal gap
    mask[200:240, 190:210] = True  # vertical gap
    mask[195:235, 60:110] = True  # diagonal gap
    mask[60:106, 240:260] = True  # a T-junction: stem end and the rail under it
    damaged = img.copy()
    damaged[mask] = 255
    out, stats = complete_wires(damaged, mask)
    assert stats.joined == 4 and stats.extended == 1
    assert _ink_pieces(out) == _ink_pieces(img) == 3
    assert np.array_equal(out[~mask], damaged[~mask])  # only damaged pixels are painted
    assert np.abs(out.astype(int) - img)[mask].mean() < 0.25 * np.abs(damaged.astype(int) - img)[mask].mean()


def test_wire_completion_leaves_gaps_outside_the_mask_alone() -> None:
    img = _lines()
    damaged = img.copy()
    damaged[85:115, 150:190] = 255  # a real gap in the drawing, not damage
    mask = np.zeros(img.shape, bool)
    mask[200:240, 190:210] = True
    damaged[mask] = 255
    out, stats = complete_wires(damaged, mask)
    assert stats.joined == 1
    assert np.array_equal(out[85:115, 150:190], damaged[85:115, 150:190])
    # Ends that do not face each other (parallel plates of a capacitor) are never joined.
    cap = np.full((200, 200), 255, np.uint8)
    cv2.line(cap, (20, 100), (90, 100), 0, 2)
    cv2.line(cap, (90, 80), (90, 120), 0, 2)
    cv2.line(cap, (110, 80), (110, 120), 0, 2)
    cv2.line(cap, (110, 100), (180, 100), 0, 2)
    hole = np.zeros(cap.shape, bool)
    hole[60:140, 60:140] = True
    cap_in = cap.copy()
    cap_in[hole & (cap > 200)] = 255
    out, stats = complete_wires(cap_in, hole)
    assert np.array_equal(out[95:106, 93:108], cap_in[95:106, 93:108])


def test_wire_stems_reach_wires_through_stray_marks_but_never_labels_or_diagonals() -> None:
    img = np.full((300, 400), 255, np.uint8)
    cv2.line(img, (20, 60), (380, 60), 0, 3)  # a rail
    cv2.line(img, (120, 60), (120, 200), 0, 3)  # its stem
    cv2.line(img, (20, 250), (100, 250), 0, 3)  # a wire whose end points at a label
    cv2.putText(img, "BC547", (165, 257), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)
    cv2.line(img, (340, 170), (300, 130), 0, 2)  # a diagonal (a symbol's stroke) pointing at the rail
    mask = np.zeros(img.shape, bool)
    mask[64:110, 110:131] = True  # the stem's top is gone ...
    mask[235:266, 100:160] = True  # ... and so is the paper between the wire's end and the label
    mask[64:131, 220:301] = True  # ... and between the diagonal's end and the rail
    damaged = img.copy()
    damaged[mask] = 255
    damaged[85:90, 117:123] = 0  # the inpainter's stray guess at the missing stem
    out, stats = complete_wires(damaged, mask)
    assert stats.extended == 1
    assert (out[64:110, 119:122] < 128).all()  # the stem runs up to the rail again
    assert np.array_equal(out[235:266, 100:160], damaged[235:266, 100:160])  # nothing drawn towards the label
    assert np.array_equal(out[64:131, 220:301], damaged[64:131, 220:301])  # nor along the diagonal


def test_no_wire_is_extended_through_a_damaged_label() -> None:
    """A battery's plate ends where a fade over its label begins; the label's characters lie inside the damage, and a
    wire runs beyond them. Through damage the ray passes over ink that is no wire (the inpainter's guesses), so the
    plate would be drawn on through the label onto that wire; with the label's box to avoid, nothing is drawn."""
    img = np.full((200, 400), 255, np.uint8)
    cv2.line(img, (60, 100), (140, 100), 0, 3)  # a plate, long enough to count as a wire's stem
    cv2.line(img, (100, 100), (100, 190), 0, 3)  # its lead
    cv2.putText(img, "3.3V", (150, 106), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1)
    cv2.line(img, (196, 20), (196, 180), 0, 3)  # a wire beyond the label
    mask = np.zeros(img.shape, bool)
    mask[85:120, 141:190] = True  # the fade: from the plate's end over the label, short of the wire
    label = np.zeros(img.shape, bool)
    label[92:110, 148:188] = True
    assert (img[label] < 128).any()
    out, stats = complete_wires(img, mask)
    assert stats.extended == 1 and (out[100, 141:148] < 128).all()  # drawn on through the label
    out, stats = complete_wires(img, mask, avoid=label)
    assert stats.extended == 0 and np.array_equal(out, img)


def test_a_stem_is_joined_to_its_rail_across_a_break_thinner_than_the_stroke() -> None:
    img = np.full((300, 400), 255, np.uint8)
    cv2.line(img, (20, 60), (380, 60), 0, 3)  # a rail
    cv2.line(img, (120, 60), (120, 200), 0, 3)  # its stem
    mask = np.zeros(img.shape, bool)
    mask[50:110, 110:131] = True
    damaged = img.copy()
    damaged[62, 110:131] = 255  # the inpainter redrew all but one row of paper under the rail
    out, stats = complete_wires(damaged, mask)
    assert stats.extended == 1
    assert (out[62, 119:122] < 128).all()


def test_a_join_beside_a_predicted_mask_paints_the_end_of_the_cut_it_missed() -> None:
    img = np.full((200, 300), 255, np.uint8)
    cv2.line(img, (10, 100), (290, 100), 0, 3)  # a wire
    damaged = img.copy()
    damaged[90:111, 130:170] = 255  # a cut through it ...
    mask = np.zeros(img.shape, bool)
    mask[90:111, 138:170] = True  # ... whose left end the mask missed
    out, stats = complete_wires(damaged, mask)
    assert stats.joined == 1 and (out[99:102, 130:136] > 200).all()  # painted in the mask only: still broken
    out, stats = complete_wires(damaged, mask, beside=3.0)
    assert stats.joined == 1
    assert (out[99:102, 130:170] < 128).all()  # the wire is whole again
    changed = out != damaged
    assert changed[:, :138].any() and not changed[:, :128].any()  # within three stroke widths of the mask


def test_breaks_a_partial_mask_left_in_a_wire_are_closed_but_not_a_capacitor_gap() -> None:
    img = np.full((200, 300), 255, np.uint8)
    cv2.line(img, (10, 50), (290, 50), 0, 3)  # a wire
    cv2.line(img, (10, 150), (135, 150), 0, 3)  # a capacitor: leads and plates 8 px apart
    cv2.line(img, (145, 150), (290, 150), 0, 3)
    cv2.line(img, (135, 130), (135, 170), 0, 3)
    cv2.line(img, (145, 130), (145, 170), 0, 3)
    cv2.line(img, (150, 80), (150, 120), 0, 3)  # a vertical wire with a break far from any damage
    damaged = img.copy()
    damaged[44:57, 106:112] = 255  # the part of a cut that the mask missed (the inpainter filled the rest)
    damaged[95:100, 145:156] = 255
    mask = np.zeros(img.shape, bool)
    mask[42:59, 96:106] = True
    mask[140:160, 120:134] = True  # damage beside the capacitor
    out, closed = bridge_breaks(damaged, mask)
    assert closed == 1
    assert (out[49:52, 100:112] < 128).all()  # the wire is one stroke again
    assert np.array_equal(out[120:180, 100:200], damaged[120:180, 100:200])  # the plates stay apart
    assert np.array_equal(out[90:105, 140:160], damaged[90:105, 140:160])  # no mask near it: left alone
    assert (out != damaged).sum() <= 6 * 5  # only the break's pixels
    inside = np.zeros(img.shape, bool)
    inside[40:60, 100:118] = True  # the whole break under the mask: the inpainter's, not this step's
    assert bridge_breaks(damaged, inside)[1] == 0
    between = np.zeros(img.shape, bool)
    between[152:170, 138:143] = True  # damage between the plates, below the leads: the gap beside it stays open
    out, closed = bridge_breaks(damaged, between)
    assert closed == 0 and np.array_equal(out, damaged)
