"""Detector training data: the `strong` augmentation of real samples, zoomed-in crops, and their command line.

The packs here are built from synthetic drawings written in the `pack_real` format (exact boxes and pins), and,
where `../shared/data` is present, from a few circuits-real images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import vision.train_detector as td
from tests.conftest import requires_data
from vision.detect import to_gray
from vision.synth.render import render_sample

SIDE = 384


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three rendered drawings as a packed real set; the last component of each is an ignore box."""
    root = tmp_path_factory.mktemp("pack")
    index = []
    for seed in (11, 12, 13):
        s = render_sample(seed)
        cv2.imwrite(str(root / f"{seed}.png"), to_gray(s.image))
        comps = s.truth["components"]
        index.append(
            {
                "id": str(seed),
                "file": f"{seed}.png",
                "split": "train",
                "boxes": [(c["type"], *c["bbox"]) for c in comps[:-1]],
                "pins": [(td.PIN_ROLE[(c["type"], n)], *xy) for c in comps for n, xy in c["pins"].items()],
                "ignore": [tuple(comps[-1]["bbox"])],
            }
        )
    (root / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return root


def _assert_on_ink(canvas: np.ndarray, boxes: list, pins: list, radius: int) -> None:
    """The boxes hold far more ink than the canvas outside them (each one more); each pin has ink within `radius` px.

    Ink is counted above the paper's level (the median), which grain and textured paper raise.
    """
    canvas = canvas - float(np.median(canvas))
    outside = np.ones(canvas.shape, bool)
    for _, x0, y0, x1, y1 in boxes:
        outside[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = False
    background = float(canvas[outside].mean())
    assert float(canvas[~outside].mean()) > 2.5 * background
    for _, x0, y0, x1, y1 in boxes:
        ink = float(canvas[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))].mean())
        assert ink > max(background, 0.03), (x0, y0, x1, y1, ink, background)
    h, w = canvas.shape
    for _, x, y in pins:
        if 0 <= x < w and 0 <= y < h:
            ix, iy = int(x), int(y)
            near = canvas[max(0, iy - radius) : iy + radius + 1, max(0, ix - radius) : ix + radius + 1]
            assert near.max() > 0.15, (x, y)


@pytest.mark.parametrize(("aug", "scale"), [("flip", (0.6, 1.0)), ("strong", (0.7, 1.4)), ("strong", (1.8, 2.2))])
def test_boxes_and_pins_stay_on_the_ink(pack: Path, aug: str, scale: tuple[float, float]) -> None:
    ds = td.RealDataset(pack, "train", SIDE, 3, aug, scale)
    for i in range(12):
        canvas, boxes, pins, _ = ds.sample(i)
        assert canvas.shape == (SIDE, SIDE) and boxes
        _assert_on_ink(canvas, boxes, pins, radius=2)


def test_turned_samples_keep_every_box_on_the_ink(pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(td, "P_TURN", 1.0)
    ds = td.RealDataset(pack, "train", SIDE, 4, "strong", (0.5, 0.5))  # the whole drawing fits: nothing is cut
    for i in range(9):
        canvas, boxes, pins, ignore = ds.sample(i)
        entry = ds.items[i % len(ds.items)]
        assert len(boxes) == len(entry["boxes"]) and len(pins) == len(entry["pins"]) and len(ignore) == 1
        _assert_on_ink(canvas, boxes, pins, radius=2)


def test_strong_augmentation_is_fixed_by_the_seed(pack: Path) -> None:
    a = td.RealDataset(pack, "train", SIDE, 7, "strong", (0.7, 1.4))
    b = td.RealDataset(pack, "train", SIDE, 7, "strong", (0.7, 1.4))
    other = td.RealDataset(pack, "train", SIDE, 8, "strong", (0.7, 1.4))
    for i in range(4):
        ca, ba, pa, ia = a.sample(i)
        cb, bb, pb, ib = b.sample(i)
        assert np.array_equal(ca, cb) and (ba, pa, ia) == (bb, pb, ib)
        assert not np.array_equal(ca, other.sample(i)[0])
    ta, tb = a[5], b[5]
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_crop_boxes_keeps_mostly_visible_boxes_and_ignores_the_rest() -> None:
    boxes = [
        (1, 10.0, 10.0, 50.0, 50.0),  # inside
        (2, -5.0, 10.0, 35.0, 50.0),  # 87.5 % visible: clipped
        (3, 90.0, 10.0, 130.0, 50.0),  # 25 % visible: ignored
        (4, 200.0, 200.0, 220.0, 220.0),  # outside
        (5, 40.0, 60.0, 40.0, 80.0),  # zero width, inside
    ]
    kept, ignore = td.crop_boxes(boxes, [(-10.0, -10.0, 20.0, 20.0), (150.0, 0.0, 160.0, 9.0)], 100)
    assert kept == [(1, 10.0, 10.0, 50.0, 50.0), (2, 0.0, 10.0, 35.0, 50.0), (5, 40.0, 60.0, 40.0, 80.0)]
    assert ignore == [(90.0, 10.0, 100.0, 50.0), (0.0, 0.0, 20.0, 20.0)]


def test_zoomed_in_crops_turn_cut_symbols_into_ignore_regions(pack: Path) -> None:
    ds = td.RealDataset(pack, "train", SIDE, 5, "strong", (2.5, 2.5))
    ds.items = [{**e, "ignore": []} for e in ds.items]  # every ignore region below comes from the crop
    cut = 0
    for i in range(9):
        _, boxes, _, ignore = ds.sample(i)
        assert len(boxes) + len(ignore) <= len(ds.items[i % len(ds.items)]["boxes"])
        assert all(0 <= v <= SIDE for b in boxes for v in b[1:]) and all(0 <= v <= SIDE for b in ignore for v in b)
        cut += len(ignore)
        t = ds[i]
        assert t["image"].shape == (1, SIDE, SIDE)
        if any(x1 - x0 >= td.STRIDE and y1 - y0 >= td.STRIDE for x0, y0, x1, y1 in ignore):
            assert t["valid"].min() == 0  # no loss on the cut symbols
    assert cut > 0


def test_synthetic_zoom_masks_cut_objects() -> None:
    zoomed = td.SynthDataset(21, 1, 256, p_scan=0.0, p_damage=0.0, scale=(1.8, 1.8))[0]
    whole = td.SynthDataset(21, 1, 256, p_scan=0.0, p_damage=0.0)[0]
    assert zoomed["valid"].min() == 0 and whole["valid"].min() == 1


def test_train_command_line_takes_and_records_the_options(pack: Path, tmp_path: Path) -> None:
    argv = "--backbone lcnet_050 --head-channels 16 --side 128 --infer-side 128 --batch 2 --workers 0 --steps 2"
    argv += " --log-every 1 --cpu --warmup 1 --real-period 2 --real-aug strong --real-scale 0.7,1.4"
    argv += " --synth-scale 0.4,1.2"
    td.main(["train", "--out", str(tmp_path / "run"), "--real", str(pack), *argv.split()])
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2
    opts = summary["options"]
    assert (opts["real_aug"], opts["real_scale"], opts["synth_scale"]) == ("strong", [0.7, 1.4], [0.4, 1.2])
    with pytest.raises(SystemExit):
        td.main(["train", "--out", str(tmp_path / "bad"), "--real-scale", "1.4,0.7"])


@pytest.mark.data
def test_real_images_stay_aligned(tmp_path: Path) -> None:
    src = requires_data("circuits-real") / "images"
    (tmp_path / "src" / "images").mkdir(parents=True)
    for js in sorted(src.glob("*.json"))[:8]:
        for path in (js, js.with_suffix(".png")):
            (tmp_path / "src" / "images" / path.name).symlink_to(path)
    td.pack_real(tmp_path / "src", tmp_path / "pack")
    ds = td.RealDataset(tmp_path / "pack", "train", 512, 1, "strong", (0.7, 1.2))
    for i in range(len(ds)):
        canvas, boxes, pins, _ = ds.sample(i)
        _assert_on_ink(canvas, boxes, pins, radius=4)  # the annotations' pins are up to 2 image px off the line


def test_repeat_rare_shows_images_of_rare_classes_more_often() -> None:
    items = [{"id": f"c{i}", "boxes": [["resistor", 0, 0, 1, 1]]} for i in range(18)]
    items += [{"id": f"r{i}", "boxes": [["resistor", 0, 0, 1, 1], ["inductor", 0, 0, 1, 1]]} for i in range(2)]
    out = td.repeat_rare(items, 0.5, np.random.default_rng(0))
    ids = [e["id"] for e in out]
    assert set(ids) == {e["id"] for e in items}  # every image stays
    # inductor in 2 of 20 images: r = sqrt(0.5 / 0.1) = 2.24, so 2 or 3 copies; resistor (everywhere): 1
    assert all(ids.count(f"r{i}") in (2, 3) for i in range(2))
    assert all(ids.count(f"c{i}") == 1 for i in range(18))
    assert ids != sorted(ids, key=[e["id"] for e in items].index)  # shuffled
    assert [e["id"] for e in td.repeat_rare(items, 0.5, np.random.default_rng(0))] == ids  # drawn from the seed
