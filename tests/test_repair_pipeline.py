"""The repair pipeline and `ohmlens repair`: real shipped models, known pixels kept, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from pipelines.repair import (
    ImageLoadError,
    ImageSizeError,
    MaskError,
    PhotoError,
    RepairInputError,
    lone_marks,
    looks_like_photo,
    repair_command,
    repair_drawing,
)
from vision.synth.damage import apply_damage


def drawing() -> np.ndarray:
    """A 480×640 schematic-like drawing: a loop of wires with a zigzag resistor, a capacitor and labels."""
    img = np.full((480, 640), 255, np.uint8)
    cv2.rectangle(img, (80, 100), (560, 380), 0, 3, cv2.LINE_AA)
    cv2.rectangle(img, (250, 96), (390, 104), 255, -1)
    zig = [(250, 100), (262, 80), (285, 120), (308, 80), (331, 120), (354, 80), (377, 120), (390, 100)]
    cv2.polylines(img, [np.array(zig, np.int32)], False, 0, 3, cv2.LINE_AA)
    cv2.rectangle(img, (556, 220), (564, 260), 255, -1)
    cv2.line(img, (530, 230), (590, 230), 0, 3, cv2.LINE_AA)
    cv2.line(img, (530, 250), (590, 250), 0, 3, cv2.LINE_AA)
    cv2.line(img, (320, 100), (320, 380), 0, 3, cv2.LINE_AA)
    cv2.circle(img, (320, 100), 7, 0, -1, cv2.LINE_AA)
    cv2.circle(img, (320, 380), 7, 0, -1, cv2.LINE_AA)
    cv2.putText(img, "R1 4k7", (280, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2, cv2.LINE_AA)
    cv2.putText(img, "C1", (600, 245), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
    return img


def test_given_mask_repairs_a_cut_wire_and_keeps_every_known_pixel() -> None:
    intact = drawing()
    mask = np.zeros(intact.shape, np.uint8)
    mask[220:270, 60:100] = 255  # a hole across the left wire
    mask[360:400, 420:470] = 255  # a hole across the bottom wire
    damaged = intact.copy()
    damaged[mask > 0] = 60  # dark backing shows through
    result = repair_drawing(damaged, mask)
    assert result.image.shape == intact.shape and result.image.dtype == np.uint8
    assert np.array_equal(result.image[mask == 0], damaged[mask == 0])
    assert np.array_equal(result.mask, mask)
    assert result.stats["mask_source"] == "given"
    hole = mask > 0
    err_before = np.abs(damaged.astype(int) - intact)[hole].mean()
    err_after = np.abs(result.image.astype(int) - intact)[hole].mean()
    assert err_after < 0.35 * err_before
    # The bottom wire is one stroke again across its hole.
    row = result.image[370:391, 410:480] < 128
    assert row.any(axis=0).all()


def test_predicted_mask_finds_synthetic_damage_and_repairs_it() -> None:
    intact = drawing()
    ious, gains = [], []
    for seed in range(3):
        damaged, true = apply_damage(intact, np.random.default_rng(seed), kinds=["hole", "scribble", "stain", "gap"])
        result = repair_drawing(damaged)
        pred, hole = result.mask > 0, true > 0
        ious.append((pred & hole).sum() / max((pred | hole).sum(), 1))
        before = np.abs(damaged.astype(int) - intact)[hole].mean()
        after = np.abs(result.image.astype(int) - intact)[hole].mean()
        gains.append(after / before)
        assert np.array_equal(result.image[~pred], damaged[~pred])
    assert np.mean(ious) > 0.5, ious
    assert np.mean(gains) < 0.6, gains


def test_clean_drawing_is_left_nearly_alone() -> None:
    result = repair_drawing(drawing())
    assert result.stats["damaged_share"] < 0.01
    assert np.abs(result.image.astype(int) - drawing()).mean() < 1.0


def test_colour_and_transparent_inputs(tmp_path: Path) -> None:
    gray = drawing()
    rgb = np.stack([gray, gray, np.minimum(gray.astype(int) + 40, 255).astype(np.uint8)], axis=2)  # blue-ish ink
    mask = np.zeros(gray.shape, bool)
    mask[360:400, 420:470] = True
    damaged = rgb.copy()
    damaged[mask] = (90, 60, 30)
    result = repair_drawing(damaged, mask)
    assert result.image.shape == rgb.shape
    assert np.array_equal(result.image[~mask], damaged[~mask])
    rgba = np.dstack([rgb, np.full(gray.shape, 255, np.uint8)])
    rgba[:20, :20, 3] = 0  # transparent corner reads as white paper
    path = tmp_path / "drawing.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = repair_drawing(path, mask)
    assert out.image.shape == rgb.shape and out.image[5, 5].tolist() == [255, 255, 255]


def test_command_writes_repaired_image_and_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged, _ = apply_damage(drawing(), np.random.default_rng(1), kinds=["hole"])
    src = tmp_path / "scan.png"
    cv2.imwrite(str(src), damaged)
    monkeypatch.chdir(tmp_path)
    written = repair_command(str(src), None, None, show_mask=True)
    assert [p.name for p in written] == ["scan.repaired.png", "scan.repaired.mask.png"]
    assert cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED).shape == damaged.shape
    assert set(np.unique(cv2.imread(str(written[1]), cv2.IMREAD_GRAYSCALE))) <= {0, 255}
    mask_file = tmp_path / "mask.png"
    cv2.imwrite(str(mask_file), np.zeros_like(damaged))
    out = tmp_path / "sub" / "fixed.jpg"
    assert repair_command(str(src), str(mask_file), out, show_mask=False) == [out]
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(RepairInputError, match="unsupported output type"):
        repair_command(str(src), None, tmp_path / "x.gif", show_mask=False)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: p / "missing.png", ImageLoadError, "not found"),
        (lambda p: (p / "notes.png").write_text("hello") and p / "notes.png", ImageLoadError, "not a readable"),
        (lambda p: np.zeros((20, 400), np.uint8), ImageSizeError, "too small"),
        (lambda p: np.zeros((100, 100, 5), np.uint8), ImageLoadError, "gray or RGB"),
        (lambda p: np.zeros((100, 100), np.float64), ImageLoadError, "8- or 16-bit"),
        (lambda p: "not an image", ImageLoadError, "not found"),
        (lambda p: 42, ImageLoadError, "path or a numpy array"),
    ],
)
def test_bad_images(tmp_path: Path, make, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        repair_drawing(make(tmp_path))


def test_huge_image_is_refused_before_any_work() -> None:
    huge = np.broadcast_to(np.uint8(255), (6001, 6001))
    with pytest.raises(ImageSizeError, match="too large"):
        repair_drawing(np.ascontiguousarray(huge))


def test_colour_photos_are_refused_and_drawings_are_not() -> None:
    for photo in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.camera()):
        assert looks_like_photo(photo)
    with pytest.raises(PhotoError, match="photograph"):
        repair_drawing(skimage.data.astronaut())
    assert not looks_like_photo(drawing())
    damaged, _ = apply_damage(cv2.cvtColor(drawing(), cv2.COLOR_GRAY2RGB), np.random.default_rng(2))
    assert not looks_like_photo(damaged)
    shaded = drawing()
    shaded[:, :400] = np.minimum(shaded[:, :400], 190)  # grey fill behind half the drawing
    assert not looks_like_photo(shaded)
    ramp = (drawing() * np.linspace(0.55, 1.0, 640)[None, :]).astype(np.uint8)  # a scan lit from one side
    assert not looks_like_photo(ramp)
    assert looks_like_photo(255 - drawing())  # light lines on a dark ground: not ink on paper


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.zeros((10, 10), np.uint8), "must match"),
        (np.zeros((640, 480), np.uint8), "must match"),
        (np.full((480, 640), 255, np.uint8), "too little of the drawing"),
        (np.zeros((480, 640, 7), np.uint8), "single-channel"),
        (np.array([["a"] * 640] * 480), "must hold numbers"),
        ([[0, 1], [1, 0]], "path or a numpy array"),
    ],
)
def test_bad_masks(mask: object, message: str) -> None:
    with pytest.raises(MaskError, match=message):
        repair_drawing(drawing(), mask)  # type: ignore[arg-type]


def test_mask_files(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="mask not found"):
        repair_drawing(drawing(), tmp_path / "nope.png")
    bad = tmp_path / "mask.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(MaskError, match="is not a readable image"):
        repair_drawing(drawing(), bad)
    ones = tmp_path / "ones.png"
    m = np.zeros((480, 640), np.uint8)
    m[360:400, 420:470] = 1  # a 0/1 mask counts its ones
    cv2.imwrite(str(ones), m)
    assert repair_drawing(drawing(), ones).mask.sum() == 40 * 50 * 255


def test_marks_beside_a_decimal_point_are_false_alarms_but_cuts_and_faded_ink_are_not() -> None:
    gray = np.full((120, 400), 250, np.uint8)
    cv2.rectangle(gray, (40, 40), (44, 70), 20, -1)  # a "1"
    cv2.rectangle(gray, (52, 66), (55, 70), 20, -1)  # its decimal point
    cv2.rectangle(gray, (64, 40), (68, 70), 20, -1)  # a stroke cut in two by a gap
    gray[52:58, 64:69] = 250
    cv2.rectangle(gray, (80, 40), (84, 70), 200, -1)  # a faded stroke
    box = (38.0, 38.0, 88.0, 72.0)
    mask = np.zeros(gray.shape, bool)
    mask[48:58, 51:57] = True  # the paper above the point: what a cut "1" would leave
    mask[51:59, 63:70] = True  # the gap, touching both stroke ends
    mask[45:60, 79:86] = True  # the faded stroke
    mask[5:15, 300:310] = True  # paper far from any text box
    lone = lone_marks(gray, mask, [box])
    assert lone[48:58, 51:57].all() and lone.sum() == 60
    assert not lone[51:59, 63:70].any() and not lone[45:60, 79:86].any() and not lone[5:15, 300:310].any()
