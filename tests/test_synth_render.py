"""Synthetic schematic engine: determinism, ground-truth consistency, scan geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vision.synth import NET_SYMBOLS, OPTIONAL_PINS, TYPE_PINS
from vision.synth.circuits import TEMPLATES
from vision.synth.render import render_sample
from vision.synth.scan import scan


def test_same_seed_same_drawing_and_truth() -> None:
    a, b = render_sample(123), render_sample(123)
    assert a.image.dtype == np.uint8 and np.array_equal(a.image, b.image)
    assert a.truth == b.truth
    c = render_sample(124)
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_truth_is_consistent(template: str) -> None:
    s = render_sample(7, template=template)
    t = s.truth
    h, w = s.image.shape[:2]
    assert t["size"] == [w, h] and t["template"] == template
    refs = [c["ref"] for c in t["components"]]
    assert len(refs) == len(set(refs)) and len(refs) >= 3
    seen: list[tuple[str, str]] = []
    for n in t["nets"]:
        seen += [tuple(p) for p in n["pins"]]
    # every pin is in exactly one net, and every net pin exists
    all_pins = [(c["ref"], name) for c in t["components"] for name in c["pins"]]
    assert sorted(seen) == sorted(all_pins)
    assert len({n["name"] for n in t["nets"]}) == len(t["nets"])
    lw = t["line_width"]
    for c in t["components"]:
        names = {name for name, _ in TYPE_PINS[c["type"]]}
        assert names - OPTIONAL_PINS.get(c["type"], frozenset()) <= set(c["pins"]) <= names
        x0, y0, x1, y1 = c["bbox"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        for x, y in c["pins"].values():  # pins sit on (or just inside) the symbol's box
            assert x0 - 1 <= x <= x1 + 1 and y0 - 1 <= y <= y1 + 1
            # and there is ink under every pin
            patch = s.image[max(0, int(y) - 2) : int(y) + 3, max(0, int(x) - 2) : int(x) + 3]
            assert patch.min() < 128, (c["ref"], x, y)
        for li in c["labels"]:
            assert t["labels"][li]["owner"] == c["ref"]
    for lb in t["labels"]:
        x0, y0, x1, y1 = lb["bbox"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and lb["text"]
        assert lb["role"] in ("ref", "value", "net")
    for x, y in t["junctions"]:  # junction dots are filled ink
        r = max(1, int(lw))
        assert s.image[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1].max() < 128
    cards = [ln for ln in t["spice"].splitlines() if ln and not ln.startswith(("*", "."))]
    assert len(cards) == sum(1 for c in t["components"] if c["type"] not in NET_SYMBOLS)
    assert t["spice"].rstrip().endswith(".end")


@pytest.mark.parametrize("template", ["mos_stage", "bjt_amp", "diffpair", "mirror"])
def test_drawings_are_readable_circuits(template: str) -> None:
    """No part is shorted by a wire drawn through it, no ground or supply symbol sits across a wire,
    and no two parallel wires run so close that they print as one thick stroke (each once came from
    templates that placed parts blindly)."""
    for seed in range(30):
        t = render_sample(seed, template=template).truth
        lw = t["line_width"]
        for c in t["components"]:
            if c["type"] in NET_SYMBOLS:
                x0, y0, x1, y1 = (v + d for v, d in zip(c["bbox"], (1.5 * lw, 1.5 * lw, -1.5 * lw, -1.5 * lw)))
                for (ax, ay), (bx, by) in t["wires"]:
                    if ay == by and y0 < ay < y1:
                        inside = min(max(ax, bx), x1) - max(min(ax, bx), x0)
                    elif ax == bx and x0 < ax < x1:
                        inside = min(max(ay, by), y1) - max(min(ay, by), y0)
                    else:
                        continue
                    assert inside <= 2 * lw, (seed, c["ref"], (ax, ay, bx, by))
        net = {(r, p): n["name"] for n in t["nets"] for r, p in n["pins"]}
        for c in t["components"]:
            roles = dict(TYPE_PINS[c["type"]])
            by_role = {roles[p]: net[(c["ref"], p)] for p in c["pins"]}
            if len(TYPE_PINS[c["type"]]) == 2:
                assert len({net[(c["ref"], p)] for p in c["pins"]}) == 2, (seed, c["ref"])
            if "high" in by_role:
                assert by_role["high"] != by_role["low"], (seed, c["ref"])
        unit = t["px_per_unit"]
        ws = t["wires"]
        for i, ((ax, ay), (bx, by)) in enumerate(ws):
            for (cx, cy), (dx, dy) in ws[i + 1 :]:
                if ay == by and cy == dy:
                    gap, overlap = abs(ay - cy), min(max(ax, bx), max(cx, dx)) - max(min(ax, bx), min(cx, dx))
                elif ax == bx and cx == dx:
                    gap, overlap = abs(ax - cx), min(max(ay, by), max(cy, dy)) - max(min(ay, by), min(cy, dy))
                else:
                    continue
                assert not (0 < gap < 0.25 * unit and overlap > 0), (seed, (ax, ay, bx, by), (cx, cy, dx, dy))


def test_ground_symbols_share_net_zero() -> None:
    for seed in range(20):
        t = render_sample(seed, template="ladder").truth
        grounds = [c["ref"] for c in t["components"] if c["type"] == "ground"]
        if len(grounds) >= 2:
            zero = next(n for n in t["nets"] if n["name"] == "0")
            assert {r for r, _ in zero["pins"]} >= set(grounds)
            return
    pytest.fail("no ladder drawing with two ground symbols in 20 seeds")


def test_crossings_do_not_connect() -> None:
    for seed in range(40):
        s = render_sample(seed, template="rectifier")
        if s.truth["crossings"]:
            break
    else:
        pytest.fail("no rectifier with a wire crossing in 40 seeds")
    t = s.truth
    # the crossing point lies on two wires that belong to different nets
    (cx, cy) = t["crossings"][0]
    through = [w for w in t["wires"] if _on(w, cx, cy)]
    assert len(through) >= 2
    assert not any(math.dist(j, (cx, cy)) < 1.0 for j in t["junctions"])


def _on(w: list[list[float]], x: float, y: float) -> bool:
    (ax, ay), (bx, by) = w
    return min(ax, bx) - 1 <= x <= max(ax, bx) + 1 and min(ay, by) - 1 <= y <= max(ay, by) + 1


def test_style_override_gives_plain_black_on_white() -> None:
    s = render_sample(3, {"paper": "white", "color": False})
    assert s.image.ndim == 2 and s.image.max() == 255 and s.image.min() < 50
    assert np.percentile(s.image, 50) == 255


def test_scan_moves_the_truth_with_the_pixels() -> None:
    clean = render_sample(11, {"paper": "white", "color": False})
    scanned = scan(clean, seed=11, strength=1.5)
    gray = scanned.image if scanned.image.ndim == 2 else scanned.image.mean(axis=2)
    h, w = gray.shape
    assert scanned.truth["size"] == [w, h]
    assert scan(clean, seed=11, strength=1.5).image.tobytes() == scanned.image.tobytes()
    paper = np.percentile(gray, 90)
    dark = 0
    pins = [xy for c in scanned.truth["components"] for xy in c["pins"].values()]
    for x, y in pins:
        patch = gray[max(0, int(y) - 3) : int(y) + 4, max(0, int(x) - 3) : int(x) + 4]
        dark += patch.min() < paper - 60
    assert dark >= 0.95 * len(pins)
