"""Second-look classifiers: crop geometry, the family rule, weights I/O and the shipped classifiers."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

import vision.second_look as sl
from vision.detect import Detection, normalize_paper, to_gray
from vision.synth.render import render_sample


def _forced(cls: str, threshold: float = 0.9, kind: sl.Kind = sl.POLARITY) -> sl.SecondLookNet:
    """A network of `kind`'s classes whose output is `cls` with probability about 0.99 whatever the crop."""
    config = sl.SecondLookConfig(
        side=32,
        channels=[4, 4, 4, 4],
        flip_threshold=threshold,
        classes=list(kind.classes),
        families=[list(f) for f in kind.families],
    )
    model = sl.SecondLookNet(config).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[kind.classes.index(cls)] = 6.0
    return model


def test_crop_centres_the_box_with_its_margin() -> None:
    gray = np.full((200, 300), 255, np.uint8)
    gray[50:90, 100:180] = 0  # an 80 x 40 ink block
    out = sl.crop(gray, (100, 50, 180, 90), side=64, margin=0.25)
    assert out.shape == (64, 64) and out.dtype == np.float32
    ys, xs = np.nonzero(out > 0.5)
    # the longer side (80 px) plus 25 % each side fills 64 px: the block spans 64 / 1.5 px, centred
    assert xs.max() - xs.min() + 1 == pytest.approx(64 / 1.5, abs=2)
    assert ys.max() - ys.min() + 1 == pytest.approx(32 / 1.5, abs=2)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(31.5, abs=1)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(31.5, abs=1)


def test_crop_pads_outside_the_image_with_paper_and_shrinks_large_boxes() -> None:
    gray = np.zeros((1000, 1000), np.uint8)  # all ink
    out = sl.crop(gray, (-200, -200, 400, 400), side=48, margin=0.1)
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
    sl.relabel(gray, dets, _forced("pnp"))
    # NPN becomes PNP; the NMOS stays (the classifier has no preference between NMOS and PMOS); others untouched
    assert [d.cls for d in dets] == ["pnp", "nmos", "resistor"]
    assert dets[0].score == 0.9 and dets[0].box == (10, 10, 40, 50)
    sl.relabel(gray, dets, _forced("pmos", threshold=0.999))  # p(pmos | MOS) ~ 0.99 < 0.999
    assert dets[1].cls == "nmos"
    sl.relabel(gray, dets, _forced("pmos"))
    assert [d.cls for d in dets] == ["pnp", "pmos", "resistor"]


def test_six_class_family_relabels_to_the_likeliest_class_given_its_share() -> None:
    gray = np.full((100, 100), 255, np.uint8)
    dets = [
        Detection("resistor", 0.9, (10, 10, 40, 20)),
        Detection("capacitor", 0.8, (50, 10, 60, 40)),
        Detection("diode", 0.7, (10, 50, 40, 60)),
        Detection("npn", 0.9, (60, 60, 90, 90)),
        Detection("ground", 0.9, (60, 20, 90, 40)),
    ]
    model = _forced("diode", kind=sl.PASSIVES)
    p = sl.predict(model, np.zeros((1, 32, 32), np.float32))[0]
    share = p[sl.PASSIVES.classes.index("diode")]  # the family is every class: its share is its probability
    assert sl.best_other(model.config, "resistor", p) == ("diode", pytest.approx(share))
    assert 0.95 < share < 0.999
    model.config.flip_threshold = share + 1e-4
    sl.relabel(gray, dets, model)
    assert [d.cls for d in dets] == ["resistor", "capacitor", "diode", "npn", "ground"]
    model.config.flip_threshold = share - 1e-4
    sl.relabel(gray, dets, model)
    # both passives become diodes; the diode stays (no other class has its mass); transistor and ground untouched
    assert [d.cls for d in dets] == ["diode", "diode", "diode", "npn", "ground"]
    assert [d.score for d in dets] == [0.9, 0.8, 0.7, 0.9, 0.9]


def test_share_is_within_the_family_only() -> None:
    """Classes outside a detection's family do not dilute the share: p(vsource) / p(vsource + isource)."""
    config = sl.SecondLookConfig(
        classes=["resistor", "isource", "vsource"], families=[["isource", "vsource"]], flip_threshold=0.7
    )
    p = np.array([0.6, 0.1, 0.3], np.float32)
    assert sl.best_other(config, "isource", p) == ("vsource", pytest.approx(0.75))
    assert config.family("resistor") is None


def test_no_weights_no_change(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(sl, "WEIGHTS_DIR", tmp_path)
    dets = [Detection("npn", 0.9, (10, 10, 40, 50)), Detection("diode", 0.9, (50, 10, 60, 40))]
    assert [d.cls for d in sl.refine(np.full((64, 64), 255, np.uint8), dets)] == ["npn", "diode"]


def test_refine_applies_every_shipped_kind(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(sl, "WEIGHTS_DIR", tmp_path)
    sl.save_model(_forced("pnp"), tmp_path / "polarity.safetensors")
    sl.save_model(_forced("inductor", kind=sl.PASSIVES), tmp_path / "passives.safetensors")
    dets = [
        Detection("npn", 0.9, (10, 10, 40, 50)),
        Detection("resistor", 0.9, (50, 10, 60, 40)),
        Detection("ground", 0.9, (10, 50, 30, 60)),
    ]
    sl.refine(np.full((64, 64), 255, np.uint8), dets)
    assert [d.cls for d in dets] == ["pnp", "inductor", "ground"]


def test_prediction_ignores_turns_and_mirrors() -> None:
    torch.manual_seed(0)
    model = sl.SecondLookNet(sl.SecondLookConfig(side=32, channels=[4, 8, 8, 8])).eval()
    x = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    p = sl.predict(model, x)
    for k in range(8):
        turned = sl.dihedral(torch.from_numpy(x)[None], k)[0].numpy()
        assert np.allclose(sl.predict(model, turned), p, atol=1e-5)


@pytest.mark.parametrize("kind", [sl.POLARITY, sl.PASSIVES])
def test_weights_round_trip(tmp_path, kind: sl.Kind) -> None:
    model = _forced(kind.classes[1], threshold=0.87, kind=kind)
    path = tmp_path / "p.safetensors"
    sl.save_model(model, path)
    back = sl.load_model(path)
    assert back.config == model.config and back.config.classes == list(kind.classes)
    x = np.zeros((2, 32, 32), np.float32)
    assert np.allclose(sl.predict(back, x), sl.predict(model, x), atol=1e-3)


def test_weights_without_classes_load_as_polarity(tmp_path) -> None:
    """Weights saved before the families (no classes or families in the metadata) are the polarity classifier."""
    from safetensors.torch import save_file

    model = _forced("pmos", threshold=0.82)
    config = {k: v for k, v in asdict(model.config).items() if k not in ("classes", "families")}
    path = tmp_path / "old.safetensors"
    save_file({k: v.half() for k, v in model.state_dict().items()}, str(path), metadata={"config": json.dumps(config)})
    back = sl.load_model(path)
    assert back.config.classes == ["npn", "pnp", "nmos", "pmos"]
    assert back.config.families == [["npn", "pnp"], ["nmos", "pmos"]]
    dets = [Detection("nmos", 0.9, (10, 10, 40, 50)), Detection("resistor", 0.9, (50, 10, 60, 40))]
    sl.relabel(np.full((64, 64), 255, np.uint8), dets, back)
    assert [d.cls for d in dets] == ["pmos", "resistor"]


def test_threshold_is_the_lowest_with_the_best_gain() -> None:
    right = np.array([True, True, False, False, False, True])
    other_right = np.array([False, False, True, True, False, False])
    share = np.array([0.6, 0.95, 0.8, 0.9, 0.99, 0.75])
    # 0.76..0.80: two fixed, one broken (0.95); lower, two or three broken; higher, at most one fixed
    assert sl.choose_threshold(right, other_right, share) == (0.76, 1)
    assert sl.choose_threshold(right[:2], other_right[:2], share[:2]) == (0.96, 0)


def _shipped_reads(kind: sl.Kind, seeds: range) -> tuple[int, int, int, set[str]]:
    """On synthetic drawings: crops whose true class beats the rest of its family, detections turned to a wrong
    class of the family that come back, crops, and the classes seen."""
    model = sl.load_model(kind.weights)
    c = model.config
    preferred, back, total, seen = 0, 0, 0, set()
    for seed in seeds:
        s = render_sample(seed, template=kind.templates[seed % len(kind.templates)])
        norm = normalize_paper(to_gray(s.image))
        comps = [k for k in s.truth["components"] if k["type"] in kind.classes]
        if not comps:
            continue
        p = sl.predict(model, np.stack([sl.crop(norm, k["bbox"], c.side, c.margin) for k in comps]))
        for pi, k in zip(p, comps):
            preferred += max(c.family(k["type"]), key=lambda x: pi[c.classes.index(x)]) == k["type"]
        wrong = [next(x for x in c.family(k["type"]) if x != k["type"]) for k in comps]
        dets = [Detection(w, 1.0, tuple(k["bbox"])) for w, k in zip(wrong, comps)]
        sl.relabel(norm, dets, model)
        back += sum(d.cls == k["type"] for d, k in zip(dets, comps))
        total += len(comps)
        seen |= {k["type"] for k in comps}
    return preferred, back, total, seen


@pytest.mark.skipif(not sl.POLARITY.weights.is_file(), reason="no shipped polarity weights")
def test_shipped_classifier_reads_synthetic_transistors() -> None:
    """Held-out synthetic drawings (seeds unlike the training ones): the classifier prefers the true polarity for
    nearly every transistor, and flips most of them back when the detector is made to swap every one."""
    assert sl.POLARITY.weights.stat().st_size < 1_000_000
    preferred, flipped_back, total, seen = _shipped_reads(sl.POLARITY, range(950_000_000, 950_000_020))
    assert seen == set(sl.POLARITY.classes)
    assert preferred >= 0.9 * total, (preferred, total)
    assert flipped_back >= 0.75 * total, (flipped_back, total)


@pytest.mark.skipif(not sl.PASSIVES.weights.is_file(), reason="no shipped passives weights")
def test_shipped_classifier_reads_synthetic_two_terminal_parts() -> None:
    """Held-out synthetic drawings: the classifier prefers the true class of nearly every resistor, capacitor,
    inductor, diode and source, and relabels most of them back when the detector is made to read each wrongly."""
    assert sl.PASSIVES.weights.stat().st_size < 1_000_000
    preferred, back, total, seen = _shipped_reads(sl.PASSIVES, range(950_000_000, 950_000_020))
    assert seen == set(sl.PASSIVES.classes)
    assert preferred >= 0.95 * total, (preferred, total)
    assert back >= 0.85 * total, (back, total)
