"""Transistor polarity classifier: crop geometry, the flip rule, weights I/O and the shipped classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vision.polarity as pol
from vision.detect import Detection, normalize_paper, to_gray
from vision.synth.render import render_sample


def _forced(cls: str, threshold: float = 0.9) -> pol.PolarityNet:
    """A network whose output is `cls` with probability about 0.99 whatever the crop."""
    model = pol.PolarityNet(pol.PolarityConfig(side=32, channels=[4, 4, 4, 4], flip_threshold=threshold)).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[pol.CLASSES.index(cls)] = 6.0
    return model


def test_crop_centres_the_box_with_its_margin() -> None:
    gray = np.full((200, 300), 255, np.uint8)
    gray[50:90, 100:180] = 0  # an 80 x 40 ink block
    out = pol.crop(gray, (100, 50, 180, 90), side=64, margin=0.25)
    assert out.shape == (64, 64) and out.dtype == np.float32
    ys, xs = np.nonzero(out > 0.5)
    # the longer side (80 px) plus 25 % each side fills 64 px: the block spans 64 / 1.5 px, centred
    assert xs.max() - xs.min() + 1 == pytest.approx(64 / 1.5, abs=2)
    assert ys.max() - ys.min() + 1 == pytest.approx(32 / 1.5, abs=2)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(31.5, abs=1)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(31.5, abs=1)


def test_crop_pads_outside_the_image_with_paper_and_shrinks_large_boxes() -> None:
    gray = np.zeros((1000, 1000), np.uint8)  # all ink
    out = pol.crop(gray, (-200, -200, 400, 400), side=48, margin=0.1)
    assert out.shape == (48, 48)
    assert out[:8, :8].max() == 0.0  # the part left of and above the image is paper
    assert out[-8:, -8:].min() == 1.0


def test_flip_keeps_the_family_and_needs_confidence() -> None:
    dets = [
        Detection("npn", 0.9, (10, 10, 40, 50)),
        Detection("nmos", 0.8, (60, 10, 90, 50)),
        Detection("resistor", 0.9, (10, 60, 40, 70)),
    ]
    gray = np.full((100, 100), 255, np.uint8)
    pol.refine_polarity(gray, dets, _forced("pnp"))
    # NPN becomes PNP; the NMOS stays (the classifier has no preference between NMOS and PMOS); others untouched
    assert [d.cls for d in dets] == ["pnp", "nmos", "resistor"]
    assert dets[0].score == 0.9 and dets[0].box == (10, 10, 40, 50)
    pol.refine_polarity(gray, dets, _forced("pmos", threshold=0.999))  # p(pmos | MOS) ~ 0.99 < 0.999
    assert dets[1].cls == "nmos"
    pol.refine_polarity(gray, dets, _forced("pmos"))
    assert [d.cls for d in dets] == ["pnp", "pmos", "resistor"]


def test_no_weights_no_change(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(pol, "WEIGHTS", tmp_path / "missing.safetensors")
    pol._shipped.cache_clear()
    try:
        dets = [Detection("npn", 0.9, (10, 10, 40, 50))]
        assert pol.refine_polarity(np.full((64, 64), 255, np.uint8), dets)[0].cls == "npn"
    finally:
        pol._shipped.cache_clear()


def test_prediction_ignores_turns_and_mirrors() -> None:
    torch.manual_seed(0)
    model = pol.PolarityNet(pol.PolarityConfig(side=32, channels=[4, 8, 8, 8])).eval()
    x = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    p = pol.predict(model, x)
    for k in range(8):
        turned = pol.dihedral(torch.from_numpy(x)[None], k)[0].numpy()
        assert np.allclose(pol.predict(model, turned), p, atol=1e-5)


def test_weights_round_trip(tmp_path) -> None:
    model = _forced("nmos", threshold=0.87)
    path = tmp_path / "p.safetensors"
    pol.save_polarity(model, path)
    back = pol.load_polarity(path)
    assert back.config == model.config
    x = np.zeros((2, 32, 32), np.float32)
    assert np.allclose(pol.predict(back, x), pol.predict(model, x), atol=1e-3)


@pytest.mark.skipif(not pol.WEIGHTS.is_file(), reason="no shipped polarity weights")
def test_shipped_classifier_reads_synthetic_transistors() -> None:
    """Held-out synthetic drawings (seeds unlike the training ones): the classifier prefers the true polarity for
    nearly every transistor, and flips most of them back when the detector is made to swap every one."""
    model = pol.load_polarity()
    assert pol.WEIGHTS.stat().st_size < 1_000_000
    preferred, flipped_back, total, seen = 0, 0, 0, set()
    for seed in range(950_000_000, 950_000_020):
        s = render_sample(seed, template=pol.TRANSISTOR_TEMPLATES[seed % len(pol.TRANSISTOR_TEMPLATES)])
        norm = normalize_paper(to_gray(s.image))
        comps = [c for c in s.truth["components"] if c["type"] in pol.OTHER]
        if not comps:
            continue
        p = pol.predict(
            model, np.stack([pol.crop(norm, c["bbox"], model.config.side, model.config.margin) for c in comps])
        )
        preferred += sum(
            pi[pol.CLASSES.index(c["type"])] > pi[pol.CLASSES.index(pol.OTHER[c["type"]])] for pi, c in zip(p, comps)
        )
        dets = [Detection(pol.OTHER[c["type"]], 1.0, tuple(c["bbox"])) for c in comps]  # every one swapped
        pol.refine_polarity(norm, dets, model)
        flipped_back += sum(d.cls == c["type"] for d, c in zip(dets, comps))
        total += len(comps)
        seen |= {c["type"] for c in comps}
    assert seen == set(pol.CLASSES)
    assert preferred >= 0.9 * total, (preferred, total)
    assert flipped_back >= 0.75 * total, (flipped_back, total)
