"""Training-time steering of the damage simulator (`DamageAim`): aimed holes and gap cuts, page-sized damage, and
the default damage left exactly as the evaluation draws it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_damage_sim import drawing
from vision.synth.damage import DamageAim, DamageInputError, apply_damage, apply_damage_by_kind


@pytest.mark.parametrize("aim", [DamageAim(), DamageAim(where=np.zeros((320, 400)), share=1.0)])
def test_no_aim_target_means_the_default_damage(aim: DamageAim) -> None:
    for seed in range(4):
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        a, ma = apply_damage(drawing(), rng_a)
        b, mb = apply_damage(drawing(), rng_b, aim=aim)
        assert np.array_equal(a, b) and np.array_equal(ma, mb)
        assert rng_a.random() == rng_b.random()  # not one extra draw


def test_aimed_gap_cuts_land_on_the_target() -> None:
    img = drawing()
    where = np.zeros(img.shape, np.float32)
    where[18:40, 145:215] = 1.0  # the text "R1 4k7"
    inside = {}
    for share in (0.0, 1.0):
        hit = total = 0
        for seed in range(8):
            _, mask = apply_damage(img, np.random.default_rng(seed), ["gap"], DamageAim(where, share))
            hit += int((mask[10:48, 135:225] > 0).sum())
            total += int((mask > 0).sum())
        inside[share] = hit / total
    assert inside[1.0] > 0.95 and inside[0.0] < 0.5


def test_page_size_scales_holes() -> None:
    img = drawing()
    areas = {}
    for page in (None, 4 * 320):
        masks = [apply_damage(img, np.random.default_rng(s), ["hole"], DamageAim(page_size=page))[1] for s in range(8)]
        areas[page] = np.mean([(m > 0).sum() for m in masks])
    assert areas[4 * 320] > 2 * areas[None]


def test_aim_map_must_match_the_image() -> None:
    with pytest.raises(DamageInputError, match="aim map"):
        apply_damage_by_kind(drawing(), np.random.default_rng(0), aim=DamageAim(where=np.ones((10, 10))))
