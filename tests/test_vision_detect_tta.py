"""Left-right flip test-time augmentation in the detector: box voting across passes and mirror equivariance."""

from __future__ import annotations

import numpy as np
import pytest

from vision.detect import (
    DEFAULT_WEIGHTS,
    Detection,
    DetectorConfig,
    _class_agnostic_nms,
    detect,
    load_detector,
    mirror_detections,
    normalize_paper,
    to_gray,
    vote_detections,
)
from vision.synth.render import render_sample


def test_mirror_maps_boxes_back_and_twice_is_identity() -> None:
    d = [Detection("diode", 0.7, (10.0, 5.0, 30.0, 15.0))]
    m = mirror_detections(d, 100)
    assert m[0].box == (70.0, 5.0, 90.0, 15.0) and m[0].cls == "diode"
    assert mirror_detections(m, 100)[0].box == d[0].box


def test_vote_takes_the_class_both_passes_support() -> None:
    box = (0.0, 0.0, 20.0, 20.0)
    a = [Detection("capacitor", 0.4, box), Detection("diode", 0.3, (1.0, 0.0, 21.0, 20.0))]
    b = [Detection("diode", 0.5, (0.0, 1.0, 20.0, 21.0)), Detection("capacitor", 0.1, box)]
    out = vote_detections([a, b])
    assert len(out) == 1
    assert out[0].cls == "diode"
    assert out[0].score == pytest.approx(0.4)
    # score-weighted mean of each pass's best diode box
    assert out[0].box == pytest.approx((0.375, 0.625, 20.375, 20.625))


def test_vote_halves_what_one_pass_missed_and_keeps_groups_apart() -> None:
    box = (0.0, 0.0, 20.0, 20.0)
    a = [Detection("resistor", 0.8, box), Detection("text", 0.6, box)]
    out = vote_detections([a, []])
    assert sorted((d.cls, d.score) for d in out) == [("resistor", 0.4), ("text", 0.3)]


def test_vote_of_one_pass_equals_class_agnostic_nms() -> None:
    rng = np.random.default_rng(0)
    classes = ["resistor", "capacitor", "diode", "text", "junction"]
    dets = []
    for _ in range(60):
        x, y = rng.uniform(0, 200, 2)
        w, h = rng.uniform(5, 30, 2)
        dets.append(Detection(str(rng.choice(classes)), float(rng.uniform(0.1, 1)), (x, y, x + w, y + h)))
    voted = _class_agnostic_nms(vote_detections([dets], iou=0.6), DetectorConfig())
    plain = _class_agnostic_nms(dets, DetectorConfig())
    key = sorted((d.cls, round(d.score, 6), tuple(round(v, 4) for v in d.box)) for d in voted)
    assert key == sorted((d.cls, round(d.score, 6), tuple(round(v, 4) for v in d.box)) for d in plain)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped detector weights absent")
def test_flip_tta_is_mirror_equivariant_and_finds_the_parts() -> None:
    model = load_detector()
    s = render_sample(900_123_456)
    gray = normalize_paper(to_gray(s.image))
    w = gray.shape[1]
    dets, _ = detect(model, gray, box_threshold=0.35, flip_tta=True)
    dets_m, _ = detect(model, np.ascontiguousarray(gray[:, ::-1]), box_threshold=0.35, flip_tta=True)
    back = mirror_detections(dets_m, w)

    def key(ds: list[Detection]) -> list[tuple]:
        return sorted((d.cls, round(d.score, 3), tuple(round(v, 1) for v in d.box)) for d in ds)

    assert key(dets) == key(back)
    parts = [d for d in dets if d.cls not in ("text", "junction")]
    found = 0
    for c in s.truth["components"]:
        x0, y0, x1, y1 = c["bbox"]
        for d in parts:
            ix = max(0.0, min(x1, d.box[2]) - max(x0, d.box[0]))
            iy = max(0.0, min(y1, d.box[3]) - max(y0, d.box[1]))
            union = (x1 - x0) * (y1 - y0) + (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) - ix * iy
            if d.cls == c["type"] and ix * iy / union >= 0.5:
                found += 1
                break
    assert found >= 0.8 * len(s.truth["components"]), f"{found} of {len(s.truth['components'])} parts found"
