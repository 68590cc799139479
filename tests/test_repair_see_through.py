"""Restoring stained and faded drawing from the damaged pixels, and the simulator's per-kind damage maps."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pipelines.repair import _models, repair_gray
from vision.inpaint import faded_ink, fold_lines, inpaint_image, own_ink_pieces, see_through, stained_paper
from vision.synth.damage import DAMAGE_KINDS, apply_damage, apply_damage_by_kind
from vision.synth.render import render_sample

PAPER = 245


def page() -> np.ndarray:
    """A 320×400 drawing: a horizontal wire, a capacitor (two plates with leads) and a label."""
    img = np.full((320, 400), PAPER, np.uint8)
    cv2.line(img, (20, 60), (380, 60), 0, 3)
    cv2.line(img, (200, 120), (200, 180), 0, 3)
    cv2.line(img, (180, 180), (220, 180), 0, 3)
    cv2.line(img, (180, 192), (220, 192), 0, 3)
    cv2.line(img, (200, 192), (200, 260), 0, 3)
    cv2.putText(img, "C4", (232, 196), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    return img


def ink(gray: np.ndarray) -> np.ndarray:
    return gray < 0.55 * PAPER


def f_measure(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = (pred & truth).sum()
    return float(2 * tp / max(pred.sum() + truth.sum(), 1))


def test_faded_strokes_the_net_left_gray_are_darkened_and_erased_ones_stay_erased() -> None:
    intact = page()
    region = np.zeros(intact.shape, bool)
    region[165:210, 170:290] = True
    faded = intact.copy()
    # Ink keeps 40 % of its darkness: visible, but lighter than the ink threshold.
    faded[region] = (PAPER - 0.4 * (PAPER - intact[region].astype(float))).astype(np.uint8)
    grayish = faded.copy()
    grayish[region] = np.where(ink(intact)[region], 170, PAPER)  # an inpainter that left the strokes gray
    truth = ink(intact) & region
    assert not (ink(faded) & region).any()
    out, stats = see_through(faded, region, grayish)
    assert f_measure(ink(out) & region, truth) > 0.9
    assert stats.to_ink > 0
    assert np.array_equal(out[~region], grayish[~region])
    # One that threw them away is trusted: a light scribble or a tear's rim would look the same here.
    erased = faded.copy()
    erased[region] = PAPER
    out, stats = see_through(faded, region, erased)
    assert not (ink(out) & region).any() and stats.to_ink == 0


def test_stain_over_empty_paper_becomes_clean_paper_and_keeps_the_wire() -> None:
    intact = page()
    yy, xx = np.mgrid[: intact.shape[0], : intact.shape[1]]
    stain = (yy - 90) ** 2 + (xx - 100) ** 2 < 45**2  # over the wire and empty paper around it
    stained = (intact * np.where(stain, 0.62, 1.0)).astype(np.uint8)
    blob = stained.copy()
    paper_px = stain & ~cv2.dilate(ink(intact).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    for gray in (175, 225):  # a net that kept the wire but left a gray blob, darker or lighter
        blob[stain] = np.where(ink(intact)[stain], 20, gray)
        out, stats = see_through(stained, stain, blob)
        assert out[paper_px].min() >= PAPER - 3  # no gray left where there was only paper
        assert (out[stain & ink(intact)] < 0.55 * PAPER).mean() > 0.95
        assert stats.to_paper > 0


def test_grid_lines_under_a_stain_stay_paper_and_the_wire_stays_ink() -> None:
    intact = page()
    grid = np.zeros(intact.shape, bool)
    grid[::8, :] = grid[:, ::8] = True
    intact[grid & ~ink(intact)] = 195  # light grid lines, far from ink darkness
    yy, xx = np.mgrid[: intact.shape[0], : intact.shape[1]]
    stain = (yy - 90) ** 2 + (xx - 100) ** 2 < 45**2
    stained = (intact * np.where(stain, 0.93, 1.0)).astype(np.uint8)  # a light stain: clean paper to the eye
    blob = stained.copy()
    blob[stain] = np.where(ink(intact)[stain], 20, 190)  # a net that kept the wire but left a gray blob
    out, _ = see_through(stained, stain, blob)
    lines = stain & grid & ~cv2.dilate(ink(intact).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not ink(out)[lines].any()  # before: stretched to the drawing's ink as if faded strokes
    assert (out[stain & ink(intact)] < 0.55 * PAPER).mean() > 0.95


def test_a_stain_marked_only_at_its_ring_is_marked_whole() -> None:
    intact = page()
    yy, xx = np.mgrid[: intact.shape[0], : intact.shape[1]]
    dist = np.hypot(yy - 200, xx - 90)
    stained = (intact * np.where(dist < 50, 0.8, 1.0)).astype(np.uint8)
    ring = (dist > 44) & (dist < 52)  # what a detector often marks: the drying ring
    grown = stained_paper(stained, ring)
    inside = (dist < 40) & ~ring
    assert grown[inside].mean() > 0.95
    assert not grown[dist > 60].any() and not (grown & ring).any()
    elsewhere = np.zeros_like(ring)
    elsewhere[10:20, 300:320] = True  # a mask that does not touch the stain grows nothing
    assert not stained_paper(stained, elsewhere).any()


def test_half_faded_wire_and_dot_the_net_left_gray_come_back_but_a_wide_tear_does_not() -> None:
    intact = page()
    cv2.circle(intact, (200, 60), 6, 0, -1)  # a junction dot on the wire
    region = np.zeros(intact.shape, bool)
    region[45:75, 120:280] = True
    # Ink keeps 35-65 % of its darkness, unevenly along the wire: at its darkest lighter than the ink threshold.
    kept = 0.5 + 0.15 * np.sin(np.arange(intact.shape[1]) / 3.0)[None, :].repeat(intact.shape[0], 0)
    damaged = intact.copy()
    damaged[region] = (PAPER - kept[region] * (PAPER - intact[region].astype(float))).astype(np.uint8)
    tear = np.zeros(intact.shape, bool)
    tear[222:238, 40:160] = True  # a band of backing, four strokes wide, over bare paper
    damaged[tear] = int(0.45 * PAPER)
    mask = region | cv2.dilate(tear.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    net_out = damaged.copy()
    net_out[mask] = PAPER  # the net removed the tear
    net_out[region] = np.where(ink(intact)[region], 170, PAPER)  # and left the faded wire gray
    out, stats = see_through(damaged, mask, net_out)
    assert f_measure(ink(out) & region, ink(intact) & region) > 0.9
    assert stats.to_ink > 0
    assert not ink(out)[tear].any()


def test_the_faded_edge_a_mask_leaves_out_is_added_but_not_intact_ink_or_grid() -> None:
    intact = page()
    grid = np.zeros(intact.shape, bool)
    grid[::16, :] = grid[:, ::16] = True
    intact[grid & (intact == PAPER)] = int(0.82 * PAPER)  # grid paper, lighter than any ink
    fade = np.zeros(intact.shape, bool)
    fade[40:80, 120:280] = True  # reaching 30 pixels past the mask on either side
    damaged = intact.copy()
    damaged[fade] = (PAPER - 0.4 * (PAPER - intact[fade].astype(float))).astype(np.uint8)
    mask = np.zeros(intact.shape, bool)
    mask[50:70, 150:250] = True  # the detector saw only the middle of the faded patch
    grown = faded_ink(damaged, mask)
    wire = ink(intact) & fade & ~mask
    assert grown[wire].mean() > 0.9
    assert not (grown & ink(intact) & ~fade).any()  # the wire past the fade and the capacitor stay known
    assert not (grown & ~cv2.dilate(fade.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)).any()
    assert not faded_ink(intact, mask).any()  # nothing faded next to the mask: nothing added


def test_a_long_faded_wire_marked_at_its_two_ends_is_followed_all_the_way() -> None:
    intact = page()
    fade = np.zeros(intact.shape, bool)
    fade[50:70, 30:370] = True  # the whole wire but its two ends
    damaged = intact.copy()
    damaged[fade] = (PAPER - 0.4 * (PAPER - intact[fade].astype(float))).astype(np.uint8)
    mask = np.zeros(intact.shape, bool)
    mask[50:70, 30:50] = mask[50:70, 350:370] = True  # 300 px apart, ten times the old reach
    grown = faded_ink(damaged, mask)
    assert grown[ink(intact) & fade & ~mask].mean() > 0.95
    assert not (grown & ink(intact) & ~fade).any()


def test_pieces_in_the_drawings_own_ink_are_drawing_but_marks_in_another_tone_or_solid_blots_are_damage() -> None:
    img = page()
    for x in range(40, 120, 20):
        cv2.ellipse(img, (x + 10, 150), (10, 10), 0, 180, 360, 0, 3)  # a coil, in the drawing's ink
    mask = np.zeros(img.shape, bool)
    # The net took the coil for a scribble; its mask hugs the strokes.
    mask[135:165, 35:135] = cv2.dilate((img[135:165, 35:135] < 200).astype(np.uint8), np.ones((3, 3))) > 0
    cv2.polylines(img, [np.array([[280, 240], [330, 260], [290, 280], [340, 300]])], False, 90, 3)  # a pen mark
    mask[232:306, 272:346] = cv2.dilate((img[232:306, 272:346] < 200).astype(np.uint8), np.ones((5, 5))) > 0
    img[250:290, 20:60] = 0  # a hole over a dark backing: solid, no paper in it
    mask[250:290, 20:60] = True
    drawn = own_ink_pieces(img, mask)
    assert drawn[135:165, 35:135].sum() == mask[135:165, 35:135].sum()  # the coil's piece, all of it
    assert not drawn[232:306, 272:346].any() and not drawn[250:290, 20:60].any()
    assert not (drawn & ~mask).any()


def test_fold_line_and_dark_overlays_are_not_restored_as_ink() -> None:
    intact = page()
    damaged = intact.copy()
    damaged[140:143, :] = 0.6 * PAPER  # a crease across the sheet: straight, long, faint
    scribble = np.zeros(intact.shape, np.uint8)
    cv2.polylines(scribble, [np.array([(60, 220), (90, 250), (120, 215), (150, 255)], np.int32)], False, 1, 2)
    damaged[scribble > 0] = 20
    ring = cv2.dilate(scribble, np.ones((5, 5), np.uint8)).astype(bool) & (scribble == 0)
    damaged[ring] = 140  # its soft, faint edge
    mask = np.zeros(intact.shape, bool)
    mask[138:145, :] = True
    mask |= cv2.dilate(scribble, np.ones((7, 7), np.uint8)).astype(bool)
    assert fold_lines(mask)[140, 5:395].all()
    net_out = damaged.copy()
    net_out[mask] = intact[mask]  # the net removed both
    out, _ = see_through(damaged, mask, net_out)
    assert np.array_equal(out, net_out)


def test_repair_restores_faded_ink_better_than_the_inpainter_alone() -> None:
    sample = render_sample(900_003)  # held-out seed
    gray = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    damaged, mask = apply_damage(gray, np.random.default_rng(5), kinds=["fade"])
    hole = mask > 0
    paper = float(np.percentile(gray, 90))
    truth = (gray < 0.55 * paper) & hole
    repaired, _, stats = repair_gray(damaged, hole)
    assert stats["restored_ink"] > 0
    net_only = inpaint_image(_models()[1], torch.from_numpy(damaged).float() / 255.0, torch.from_numpy(hole)).numpy()
    got = f_measure((repaired < 0.55 * paper) & hole, truth)
    before = f_measure((damaged < 0.55 * paper) & hole, truth)
    net = f_measure((net_only < 0.55 * paper / 255.0) & hole, truth)
    assert got > 0.8 and got > before + 0.1 and got > net + 0.05, (got, before, net)
    assert np.array_equal(repaired[~hole], damaged[~hole])


def test_damage_by_kind_matches_apply_damage_and_covers_the_mask() -> None:
    img = page()
    for seed in range(4):
        out, mask = apply_damage(img, np.random.default_rng(seed))
        out2, mask2, kinds = apply_damage_by_kind(img, np.random.default_rng(seed))
        assert np.array_equal(out, out2) and np.array_equal(mask, mask2)
        assert kinds and set(kinds) <= set(DAMAGE_KINDS)
        union = np.logical_or.reduce(list(kinds.values()))
        assert not (union & (mask == 0)).any()
        assert union.sum() > 0.8 * (mask > 0).sum()
    _, _, only = apply_damage_by_kind(img, np.random.default_rng(1), kinds=["gap"])
    assert set(only) == {"gap"}
