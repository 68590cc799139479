"""Glyph restorer: the net, its strips, its place in repair, and its training script."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

from vision.damage_net import DamageNet
from vision.glyph import (
    LINE_HEIGHT,
    LINE_STRIDE,
    PRESETS,
    SYMBOL_SIDE,
    SYMBOL_WEIGHTS,
    TEXT_RANGE,
    WEIGHTS,
    GlyphConfig,
    GlyphNet,
    find_text_damage,
    redraw,
    strip_for,
    symbol_window,
)
from vision.train_glyph import (
    STRIP_WIDTH,
    DamagedLabels,
    false_alarms,
    finder_masks,
    label_strips,
    main,
    net_hint,
    partly_found,
    predicted_like,
    symbol_windows,
)


def test_net_shapes_and_fp16_round_trip(tmp_path: Path) -> None:
    net = GlyphNet(PRESETS["debug"]).eval()
    image, mask = torch.rand(2, 1, LINE_HEIGHT, 72), torch.zeros(2, 1, LINE_HEIGHT, 72)
    with torch.no_grad():
        out = net(image, mask)
    assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    net.save(tmp_path / "g.safetensors")
    back = GlyphNet.load(tmp_path / "g.safetensors")
    assert back.config == net.config
    with torch.no_grad():
        assert torch.allclose(back(image, mask), out, atol=2e-2)
    net.save(tmp_path / "g8.safetensors", int8=True)  # the shipped format: int8 kernels, fp16 scales
    small = GlyphNet.load(tmp_path / "g8.safetensors")
    assert (tmp_path / "g8.safetensors").stat().st_size < (tmp_path / "g.safetensors").stat().st_size
    with torch.no_grad():
        assert torch.allclose(small(image, mask), out, atol=5e-2)


@pytest.mark.parametrize("height", [5.0, 14.0, 60.0])
def test_strip_holds_the_box_at_reading_scale(height: float) -> None:
    box = (100.0, 50.0, 100.0 + 3 * height, 50.0 + height)
    strip = strip_for(box)
    text = height * strip.scale
    assert TEXT_RANGE[0] - 1e-6 <= text <= TEXT_RANGE[1] + 1e-6
    assert strip.scale == 1.0 or height < TEXT_RANGE[0] or height > TEXT_RANGE[1]
    assert strip.width % LINE_STRIDE == 0
    # The box's corners land inside the strip, with the context margin left and right.
    (u0, v0), (u1, v1) = (strip.matrix() @ np.array([[box[0], box[2]], [box[1], box[3]], [1.0, 1.0]])).T
    assert 0 <= v0 < v1 <= LINE_HEIGHT and 8 <= u0 < u1 <= strip.width - 8


def _label_drawing() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    gray = np.full((120, 300), 245, np.uint8)
    cv2.putText(gray, "680pF", (90, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 20, 2, cv2.LINE_AA)
    ys, xs = np.nonzero(gray < 128)
    return gray, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_redraw_writes_only_masked_pixels_of_touched_boxes() -> None:
    gray, box = _label_drawing()
    mask = np.zeros(gray.shape, bool)
    mask[55:75, 120:130] = True  # a blot over the middle of the label
    mask[5:9, 250:260] = True  # and a speck far from any box
    damaged = gray.copy()
    damaged[mask] = 245
    far = (10.0, 10.0, 40.0, 25.0)  # a box the damage does not touch
    out = damaged.copy()
    net = GlyphNet(PRESETS["debug"]).eval()
    assert redraw(net, damaged, mask, [box, far], out) == 1
    assert np.array_equal(out[~mask], damaged[~mask])  # known pixels pass through
    assert np.array_equal(out[5:9, 250:260], damaged[5:9, 250:260])  # damage outside every box is not the net's
    assert redraw(net, damaged, np.zeros_like(mask), [box], damaged.copy()) == 0


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="glyph weights not installed")
def test_shipped_net_gives_back_erased_strokes_of_a_label() -> None:
    from vision.synth.render import render_sample

    sample = render_sample(900_123)
    gray = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    labels = [lb for lb in sample.truth["labels"] if lb["role"] == "value"]
    rng = np.random.default_rng(0)
    errors = []
    for label in labels[:4]:
        x0, y0, x1, y1 = (int(round(v)) for v in label["bbox"])
        mask = np.zeros(gray.shape, bool)
        cx = int(rng.integers(x0 + 2, max(x0 + 3, x1 - 2)))
        mask[y0 - 1 : y1 + 1, cx - 3 : cx + 3] = True  # a paper-white cut through one glyph
        damaged = gray.copy()
        damaged[mask] = int(np.percentile(gray, 90))
        out = damaged.copy()
        redraw(GlyphNet.load(), damaged, mask, [tuple(label["bbox"])], out)
        ink = gray[mask] < 128
        errors.append(
            (
                np.abs(out[mask].astype(float) - gray[mask])[ink].mean(),
                np.abs(damaged[mask].astype(float) - gray[mask])[ink].mean(),
            )
        )
    restored, left = np.mean(errors, 0)
    assert restored < 0.5 * left


@pytest.mark.parametrize("box", [(300.0, 200.0, 330.0, 310.0), (40.5, 7.2, 90.0, 30.0), (10.0, 10.0, 250.0, 60.0)])
def test_symbol_window_holds_the_box_at_the_drawings_scale(box: tuple[float, float, float, float]) -> None:
    window = symbol_window(box)
    assert window.scale == 1.0
    assert window.width % LINE_STRIDE == 0 and window.height % LINE_STRIDE == 0
    assert window.width >= SYMBOL_SIDE and window.height >= SYMBOL_SIDE
    x0, y0 = np.array(box[:2]) - (window.ox, window.oy)
    x1, y1 = np.array(box[2:]) - (window.ox, window.oy)
    assert x0 >= 11 and y0 >= 11 and x1 <= window.width - 11 and y1 <= window.height - 11  # LINE_PAD round it
    assert abs(x0 - (window.width - x1)) <= 1 and abs(y0 - (window.height - y1)) <= 1  # centred


def test_redraw_of_symbols_writes_only_masked_pixels_of_touched_symbols() -> None:
    gray = np.full((300, 400), 240, np.uint8)
    cv2.line(gray, (20, 150), (380, 150), 20, 3)
    box = (180.0, 120.0, 220.0, 180.0)
    mask = np.zeros(gray.shape, bool)
    mask[140:160, 195:205] = True  # a blot on the symbol
    mask[10:14, 380:390] = True  # and a speck outside its window's box
    out = gray.copy()
    out[mask] = 245
    before = out.copy()
    net = GlyphNet(PRESETS["debug"]).eval()
    assert redraw(net, gray, mask, [box, (10.0, 200.0, 40.0, 240.0)], out, symbol_window) == 1
    assert np.array_equal(out[~mask], before[~mask]) and np.array_equal(out[10:14, 380:390], before[10:14, 380:390])


@pytest.mark.skipif(not SYMBOL_WEIGHTS.is_file(), reason="symbol restorer weights not installed")
@pytest.mark.parametrize("seed", [11, 13, 19])
def test_shipped_symbol_restorer_keeps_cut_capacitor_plates_apart(seed: int) -> None:
    from vision.inpaint import InpaintNet, inpaint_image
    from vision.synth.render import render_sample

    sample = render_sample(seed)
    gray = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    box = next(tuple(c["bbox"]) for c in sample.truth["components"] if c["type"] == "capacitor")
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    mask = cv2.circle(np.zeros(gray.shape, np.uint8), (cx, cy), 9, 1, -1).astype(bool)  # a hole over both plates
    damaged = gray.copy()
    damaged[mask] = int(np.percentile(gray, 90))
    inpainted = inpaint_image(InpaintNet.load(), torch.from_numpy(damaged).float() / 255.0, torch.from_numpy(mask))
    inpainted = np.round(inpainted.numpy() * 255.0).astype(np.uint8)
    out = inpainted.copy()
    assert redraw(GlyphNet.load(SYMBOL_WEIGHTS), damaged, mask, [box], out, symbol_window) == 1

    def error(image: np.ndarray) -> float:
        return float(np.abs(image[mask].astype(float) - gray[mask]).mean())

    def pieces(image: np.ndarray) -> int:
        return cv2.connectedComponents((image[cy - 20 : cy + 20, cx - 20 : cx + 20] < 128).astype(np.uint8))[0] - 1

    assert error(out) < 0.4 * error(inpainted)  # the inpainter's coarse scale fills the slit between the plates
    assert pieces(out) == pieces(gray)


def test_symbol_windows_are_damaged_crops_round_each_symbol() -> None:
    windows = symbol_windows(600_000_000)
    assert windows and all(a.shape == (SYMBOL_SIDE, SYMBOL_SIDE) and a.dtype == np.uint8 for w in windows for a in w)
    centre = slice(SYMBOL_SIDE // 2 - 30, SYMBOL_SIDE // 2 + 30)
    assert all((t[centre, centre] < 128).any() for _, _, t in windows)  # a symbol's strokes at the middle
    assert sum(bool(m.any()) for _, m, _ in windows) >= 0.8 * len(windows)
    d, m, t, given = next(iter(DamagedLabels(600_000_000, spoil=1.0, symbols=True)))
    assert d.shape == given.shape == (1, SYMBOL_SIDE, SYMBOL_SIDE)


def test_label_strips_and_spoilt_masks() -> None:
    strips = label_strips(600_000_000)
    assert strips and all(a.shape == (LINE_HEIGHT, STRIP_WIDTH) and a.dtype == np.uint8 for s in strips for a in s)
    damaged = [s for s in strips if s[1].any()]
    assert len(damaged) >= 0.8 * len(strips)  # most strips keep damage on their glyphs
    # Outside the mask the damage changed nothing visibly (the simulator's mask holds every visible change).
    assert all(np.abs(d[m == 0].astype(int) - t[m == 0]).max() <= 26 for d, m, t in damaged[:5])
    mask = np.zeros((LINE_HEIGHT, STRIP_WIDTH), np.uint8)
    for x in range(4, 120, 12):
        mask[10:20, x : x + 5] = 255
    spoilt = [predicted_like(mask, np.random.default_rng(i)) for i in range(20)]
    assert any(not np.array_equal(s, mask) for s in spoilt) and all(s.dtype == np.uint8 for s in spoilt)
    assert any((mask > 0).sum() - (s > 0).sum() > 0 for s in spoilt)  # pieces go missing
    intact = np.full((LINE_HEIGHT, STRIP_WIDTH), 240, np.uint8)
    intact[20:30, 60:64] = 10  # one sound stroke, away from the damage
    for i in range(10):
        alarmed = false_alarms(mask, intact, np.random.default_rng(i))
        added = (alarmed > 0) & (mask == 0)
        assert added.any() and np.all(alarmed[mask > 0] == 255)  # blots are added, the damage stays
        ys, xs = np.nonzero(added)
        assert ys.min() >= 20 - 8 and ys.max() < 30 + 8 and xs.min() >= 60 - 8 and xs.max() < 64 + 8  # at the ink
    d, m, t, given = next(iter(DamagedLabels(600_000_000, spoil=1.0, alarms=1.0, keep_clean=0.5, partial=1.0)))
    assert d.shape == given.shape == (1, LINE_HEIGHT, STRIP_WIDTH)
    partial = [partly_found(mask, np.random.default_rng(i)) for i in range(10)]
    assert all(not ((p > 0) & (mask == 0)).any() for p in partial)  # only ever less than the damage
    assert any(0 < (p > 0).sum() < (mask > 0).sum() for p in partial)
    hinted = DamagedLabels(600_000_000, keep_clean=0.5, net_hints=1.0)
    d, m, t, given = next(iter(hinted))
    assert np.array_equal(given[0].numpy(), net_hint(DamageNet.load(), d[0].numpy()))  # the damage net's own mask
    pieces = cv2.connectedComponents((mask > 0).astype(np.uint8))[0] - 1
    cut = [cv2.connectedComponents((p > 0).astype(np.uint8))[0] - 1 for p in partial]
    assert max(cut) <= pieces  # pieces are cut, not split into more


def test_text_damage_finder_replaces_the_mask_inside_touched_boxes_only(tmp_path: Path) -> None:
    finder = GlyphNet(GlyphConfig((8, 8, 16, 16), 1, 2, output="damage")).eval()
    torch.nn.init.zeros_(finder.head.weight)
    torch.nn.init.constant_(finder.head.bias, 5.0)  # a finder that calls everything damage
    gray, box = _label_drawing()
    mask = np.zeros(gray.shape, bool)
    mask[55:75, 120:130] = True  # touches the label
    mask[5:9, 250:260] = True  # a speck far from any box
    out = find_text_damage(finder, gray, mask, [box, (10.0, 10.0, 40.0, 25.0)])
    x0, y0, x1, y1 = int(box[0]) - 2, int(box[1]) - 2, int(np.ceil(box[2])) + 2, int(np.ceil(box[3])) + 2
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = True
    assert out[inside].all()  # the finder's verdict over the touched box's window
    assert np.array_equal(out[~inside], mask[~inside])  # the damage net's everywhere else (the speck stays)
    torch.nn.init.constant_(finder.head.bias, -5.0)  # and one that finds nothing clears the box
    assert not find_text_damage(finder, gray, mask, [box])[inside].any()
    with torch.no_grad():
        logits = finder(torch.rand(1, 1, LINE_HEIGHT, 64), torch.zeros(1, 1, LINE_HEIGHT, 64))
    assert float(logits.min()) < 0.0  # logits, not an image in [0, 1]
    finder.save(tmp_path / "f.safetensors", int8=True)
    assert GlyphNet.load(tmp_path / "f.safetensors").config.output == "damage"


def test_finder_masks_replace_the_given_mask_on_their_share_of_strips() -> None:
    finder = GlyphNet(replace(PRESETS["debug"], output="damage")).eval()
    torch.nn.init.zeros_(finder.head.weight)
    torch.nn.init.constant_(finder.head.bias, 5.0)  # a finder that calls everything damage
    damaged, given = torch.rand(64, 1, LINE_HEIGHT, 32), torch.zeros(64, 1, LINE_HEIGHT, 32)
    assert bool((finder_masks(finder, damaged, given, 1.0, torch.Generator().manual_seed(0)) == 1.0).all())
    assert bool((finder_masks(finder, damaged, given, 0.0, torch.Generator().manual_seed(0)) == 0.0).all())
    some = finder_masks(finder, damaged, given, 0.5, torch.Generator().manual_seed(0)).amax((1, 2, 3))
    assert 10 < int(some.sum()) < 54  # whole strips, about half of them


def test_training_resumes_and_writes_weights(tmp_path: Path) -> None:
    ckpt, weights = tmp_path / "ckpt", tmp_path / "glyph.safetensors"
    common = ["--preset", "debug", "--ckpt", str(ckpt), "--weights", str(weights), "--minutes", "0"]
    common += ["--batch", "4", "--workers", "0", "--log-every", "0", "--spoil", "0.5", "--cpu"]
    main([*common, "--steps", "1"])
    assert json.loads((ckpt / "state.json").read_text())["step"] == 1
    first = GlyphNet.load(weights).state_dict()
    main([*common, "--steps", "2"])
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    second = GlyphNet.load(weights).state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    GlyphNet(replace(PRESETS["debug"], output="damage")).save(tmp_path / "finder.safetensors")  # gives the masks
    main(
        ["--init", str(weights), "--ckpt", str(tmp_path / "warm"), "--weights", str(tmp_path / "w2.safetensors")]
        + common[6:]
        + ["--steps", "1", "--finder-masks", "1.0", "--finder", str(tmp_path / "finder.safetensors")]
    )
    assert GlyphNet.load(tmp_path / "w2.safetensors").config == PRESETS["debug"]
    # The text-damage finder starts from the restorer's weights with a fresh head.
    finder = tmp_path / "finder.safetensors"
    main(
        ["--task", "damage", "--init", str(weights), "--ckpt", str(tmp_path / "fc"), "--weights", str(finder)]
        + common[6:]
        + ["--partial", "0.5", "--alarms", "0.5", "--steps", "1"]
    )
    net = GlyphNet.load(finder)
    assert net.config.output == "damage" and net.config.widths == PRESETS["debug"].widths
    assert "bce" in json.loads((tmp_path / "fc" / "train_log.jsonl").read_text().splitlines()[0])


def test_training_with_the_critic_saves_it_and_resumes_it(tmp_path: Path) -> None:
    ckpt, weights = tmp_path / "ckpt", tmp_path / "glyph.safetensors"
    common = ["--preset", "debug", "--ckpt", str(ckpt), "--weights", str(weights), "--minutes", "0", "--batch", "4"]
    common += ["--workers", "0", "--log-every", "0", "--cpu", "--adv", "0.1", "--gan-start", "0.5"]
    main([*common, "--steps", "2"])
    with safe_open(str(ckpt / "models.safetensors"), framework="pt") as f:
        critic = {k: f.get_tensor(k) for k in f.keys() if k.startswith("critic.")}
    assert critic
    main([*common, "--steps", "4"])
    log = [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # The critic trains from the first step; the net takes its term from half the run on.
    assert all("critic" in r for r in log) and ["adv" in r for r in log] == [False, True, True, True]
    with safe_open(str(ckpt / "models.safetensors"), framework="pt") as f:
        assert any(not torch.equal(v, f.get_tensor(k)) for k, v in critic.items() if v.is_floating_point())
    # A run trained without the critic goes on with a fresh one.
    plain = [a for a in common if a not in ("--adv", "0.1")] + ["--ckpt", str(tmp_path / "plain")]
    main([*plain, "--steps", "1"])
    main([*plain, "--adv", "0.1", "--steps", "2"])
    with safe_open(str(tmp_path / "plain" / "models.safetensors"), framework="pt") as f:
        assert any(k.startswith("critic.") for k in f.keys())


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="glyph weights not installed")
def test_repair_redraws_a_cut_label_and_keeps_known_pixels() -> None:
    from pipelines.repair import repair_drawing
    from vision.synth.render import render_sample

    back = []
    for seed in (900_321, 900_322, 900_323):  # one label's share varies a lot from drawing to drawing
        sample = render_sample(seed)
        gray = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
        mask = np.zeros(gray.shape, np.uint8)
        for label in sample.truth["labels"][:3]:
            x0, y0, x1, y1 = (int(round(v)) for v in label["bbox"])
            mask[y0 : y1 + 1, (x0 + x1) // 2 - 2 : (x0 + x1) // 2 + 2] = 255
        damaged = gray.copy()
        damaged[mask > 0] = int(np.percentile(gray, 90))
        result = repair_drawing(damaged, mask)
        assert result.stats["texts_redrawn"] >= 2
        assert np.array_equal(result.image[mask == 0], damaged[mask == 0])
        ink = (gray < 128) & (mask > 0)
        back.append((result.image[ink] < 128).mean())
    assert np.mean(back) > 0.4, back  # the inpainter alone brings back none of these cut strokes


@pytest.mark.skipif(not SYMBOL_WEIGHTS.is_file(), reason="symbol restorer weights not installed")
def test_symbols_are_redrawn_a_pixel_beyond_a_predicted_mask_and_that_ring_joins_the_mask_used() -> None:
    from pipelines.repair import repair_gray
    from vision.synth.render import render_sample

    sample = render_sample(13)
    gray = sample.image if sample.image.ndim == 2 else cv2.cvtColor(sample.image, cv2.COLOR_RGB2GRAY)
    box = next(c["bbox"] for c in sample.truth["components"] if c["type"] == "capacitor")
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    hole = cv2.circle(np.zeros(gray.shape, np.uint8), (cx, cy), 10, 1, -1).astype(bool)
    damaged = gray.copy()
    damaged[hole] = int(np.percentile(gray, 90))
    short = cv2.erode(hole.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # a mask a pixel short
    ring = hole & ~short
    for predicted in (True, False):
        out, used, stats = repair_gray(damaged, short, predicted=predicted)
        assert stats["symbols_redrawn"] == 1
        assert np.array_equal(out[~used], damaged[~used])
        error = np.abs(out[ring].astype(float) - gray[ring]).mean()
        if predicted:
            assert used[ring].mean() > 0.5 and error < 0.5 * np.abs(damaged[ring].astype(float) - gray[ring]).mean()
        else:
            assert not (used & ~short).any() and np.array_equal(out[ring], damaged[ring])  # a user's mask is kept
