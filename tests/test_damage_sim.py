"""The damage simulator: deterministic, exact masks, every kind of damage, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.synth.damage import DAMAGE_KINDS, VISIBLE_DELTA, DamageInputError, apply_damage


def drawing(colour: bool = False) -> np.ndarray:
    """A small schematic-like drawing: a rectangle loop of wires, a zigzag, a junction dot and text."""
    img = np.full((320, 400), 255, np.uint8)
    cv2.rectangle(img, (40, 60), (360, 260), 0, 2, cv2.LINE_AA)
    zig = np.array([(150, 60), (160, 45), (175, 75), (190, 45), (205, 75), (220, 45), (230, 60)], np.int32)
    cv2.rectangle(img, (151, 58), (229, 62), 255, -1)
    cv2.polylines(img, [zig], False, 0, 2, cv2.LINE_AA)
    cv2.circle(img, (40, 160), 5, 0, -1, cv2.LINE_AA)
    cv2.line(img, (40, 160), (200, 160), 0, 2, cv2.LINE_AA)
    cv2.putText(img, "R1 4k7", (150, 35), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1, cv2.LINE_AA)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if colour else img


@pytest.mark.parametrize("colour", [False, True])
def test_same_seed_same_damage_and_shapes(colour: bool) -> None:
    img = drawing(colour)
    a, ma = apply_damage(img, np.random.default_rng(3))
    b, mb = apply_damage(img, np.random.default_rng(3))
    c, _ = apply_damage(img, np.random.default_rng(4))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert ma.shape == img.shape[:2] and ma.dtype == np.uint8 and set(np.unique(ma)) <= {0, 255}
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)
    assert np.array_equal(img, drawing(colour))  # the input is not modified in place


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_each_kind_damages_and_masks_what_changed(kind: str) -> None:
    img = drawing()
    hits = 0
    for seed in range(6):
        out, mask = apply_damage(img, np.random.default_rng(seed), kinds=[kind])
        diff = np.abs(out.astype(int) - img.astype(int))
        # Everything visibly changed is inside the mask (rounding allows one level more).
        assert diff[mask == 0].max(initial=0) <= VISIBLE_DELTA * 255 + 1, kind
        if mask.any():
            hits += 1
            assert diff[mask > 0].max() > VISIBLE_DELTA * 255, kind
    assert hits >= 4, f"{kind} left no visible damage in most drawings"


def test_holes_and_tears_mask_the_whole_region() -> None:
    img = drawing()
    out, mask = apply_damage(img, np.random.default_rng(11), kinds=["hole"])
    region = mask > 0
    assert region.sum() > 30
    # A hole is one solid region, not a scatter of changed pixels.
    n, _ = cv2.connectedComponents(region.astype(np.uint8))
    assert n - 1 <= 12


def test_damage_sizes_follow_the_image() -> None:
    small, big = drawing(), cv2.resize(drawing(), None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    share_small = np.mean([apply_damage(small, np.random.default_rng(s))[1].mean() for s in range(8)])
    share_big = np.mean([apply_damage(big, np.random.default_rng(s))[1].mean() for s in range(8)])
    assert 0.0 < share_big < 0.3 * 255 and 0.0 < share_small < 0.3 * 255


@pytest.mark.parametrize(
    ("image", "kinds", "message"),
    [
        (np.zeros((10, 10), np.uint8), None, "too small"),
        (np.zeros((64, 64), np.float32), None, "uint8"),
        (np.zeros((64, 64, 4), np.uint8), None, "shape"),
        (np.zeros((64, 64), np.uint8), ["burn"], "unknown damage kinds"),
        (np.zeros((64, 64), np.uint8), [], "unknown damage kinds"),
    ],
)
def test_bad_input(image: np.ndarray, kinds: list[str] | None, message: str) -> None:
    with pytest.raises(DamageInputError, match=message):
        apply_damage(image, np.random.default_rng(0), kinds)
