"""Rasterise a random circuit and write its exact ground truth.

`render_sample(seed)` is deterministic: the seed fixes the style, the circuit, the values and the
label placement. The truth dict holds, in image pixels (x right, y down):

- `components`: {ref, type, value, bbox [x0, y0, x1, y1], pins {name: [x, y]}, labels [label indices]}
- `labels`: {text, bbox, role ("ref" | "value" | "net"), owner (component ref or net name)}
- `nets`: {name, pins [[ref, pin], ...]} (ground and supply symbols are components here too)
- `junctions` (dot centres), `crossings` (wire crossings that do not connect), `wires` (segments)
- `spice`: the SPICE netlist, `size`: [width, height], `template`, `style`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vision.synth.circuits import SUPPLY_NAMES, Layout, Part, random_circuit
from vision.synth.raster import FONT_FILES, RasterFigure, text_box
from vision.synth.spice import spice_line, spice_netlist, spice_node
from vision.synth.symbols import sample_look

MAX_SIDE = 1600  # pixels; larger drawings are rendered at a smaller scale
_EPS = 1e-4


@dataclass
class Sample:
    """One rendered drawing: the image (white paper, dark ink) and its ground truth."""

    image: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)


def sample_style(rng: np.random.Generator) -> dict[str, Any]:
    """A random drawing style: pen, scale, fonts, symbol conventions, paper."""
    iec = bool(rng.random() < 0.3)
    return {
        "px_per_unit": float(rng.uniform(32, 70)),
        "lw": float(rng.uniform(0.025, 0.07)),  # pen width in drawing units
        "font": str(rng.choice(FONT_FILES)),
        "font_size": float(rng.uniform(0.3, 0.45)),  # label height in drawing units
        "iec": iec,
        "dot_tees": bool(rng.random() < 0.8),
        "dot_radius": float(rng.uniform(0.07, 0.13)),
        # real drawings: few transistor circles, mostly analog FETs, mostly bump inductors
        "bjt_circle": bool(rng.random() < 0.15),
        "analog_fet": bool(rng.random() < 0.8),
        "inductor2": bool(rng.random() < 0.2),
        "curved_cap": bool(rng.random() < 0.3),
        "ground_kind": "signal" if rng.random() < 0.15 else "ground",
        "supply_name": str(rng.choice(SUPPLY_NAMES)),
        "rkm": bool(rng.random() < 0.15),
        "ohm": bool(rng.random() < 0.3),
        "micro": "µ" if rng.random() < 0.7 else "u",
        "units": bool(rng.random() < 0.7),
        "ink": "black",
        "paper": str(rng.choice(("white", "white", "white", "white", "cream", "grid"))),
        "color": bool(rng.random() < 0.1),
        "stack_labels": bool(rng.random() < 0.7),
    }


# -- connectivity ---------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, a: Any) -> Any:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _on_segment(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float], eps: float = _EPS) -> bool:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    if L2 < eps * eps:
        return math.hypot(p[0] - ax, p[1] - ay) < eps
    t = ((p[0] - ax) * dx + (p[1] - ay) * dy) / L2
    if t < -eps or t > 1 + eps:
        return False
    qx, qy = ax + t * dx, ay + t * dy
    return math.hypot(p[0] - qx, p[1] - qy) < eps


def _intersection(
    a: tuple[tuple[float, float], tuple[float, float]], b: tuple[tuple[float, float], tuple[float, float]]
) -> tuple[float, float] | None:
    (x1, y1), (x2, y2) = a
    (x3, y3), (x4, y4) = b
    den = (x1 - x2) * (y3 - y4) - (y1 - y2) * (x3 - x4)
    if abs(den) < 1e-12:
        return None
    t = ((x1 - x3) * (y3 - y4) - (y1 - y3) * (x3 - x4)) / den
    u = -((x1 - x2) * (y1 - y3) - (y1 - y2) * (x1 - x3)) / den
    if -_EPS <= t <= 1 + _EPS and -_EPS <= u <= 1 + _EPS:
        return (x1 + t * (x2 - x1), y1 + t * (y2 - y1))
    return None


def connectivity(layout: Layout) -> tuple[list[list[tuple[str, str]]], list[tuple[float, float]], dict[int, str]]:
    """Nets of a layout from its geometry.

    Touching wire ends, T-joints and pins on wires connect; dots join every wire through them; two
    wires that cross in their interiors do not connect.

    Returns:
        The nets as lists of (ref, pin), the non-connecting crossings (drawing units), and net names
        given by open terminals (net index -> name).
    """
    uf = _UnionFind()
    wires = layout.wires + [lead for p in layout.parts for lead in p.leads]
    pins = [(p.ref, name, xy) for p in layout.parts for name, xy in p.pins.items()]
    for i, (a, b) in enumerate(wires):
        uf.find(("w", i))
        for j, (c, d) in enumerate(wires):
            if i != j and (_on_segment(a, c, d) or _on_segment(b, c, d)):
                uf.union(("w", i), ("w", j))
    for ref, name, xy in pins:
        uf.find(("p", ref, name))
        for i, (a, b) in enumerate(wires):
            if _on_segment(xy, a, b):
                uf.union(("p", ref, name), ("w", i))
        for ref2, name2, xy2 in pins:
            if (ref2, name2) != (ref, name) and math.hypot(xy[0] - xy2[0], xy[1] - xy2[1]) < _EPS:
                uf.union(("p", ref, name), ("p", ref2, name2))
    for d in layout.dots:
        through = [i for i, (a, b) in enumerate(wires) if _on_segment(d, a, b)]
        for i in through[1:]:
            uf.union(("w", through[0]), ("w", i))
    crossings: list[tuple[float, float]] = []
    for i in range(len(wires)):
        for j in range(i + 1, len(wires)):
            x = _intersection(wires[i], wires[j])
            if x is not None and uf.find(("w", i)) != uf.find(("w", j)):
                crossings.append(x)
    groups: dict[Any, list[tuple[str, str]]] = {}
    for ref, name, _ in pins:
        groups.setdefault(uf.find(("p", ref, name)), []).append((ref, name))
    roots = list(groups)
    names: dict[int, str] = {}
    for xy, net_name, _side in layout.terminals:
        for i, (a, b) in enumerate(wires):
            if _on_segment(xy, a, b) and uf.find(("w", i)) in groups:
                names[roots.index(uf.find(("w", i)))] = net_name
                break
        else:
            for ref, name, pxy in pins:
                if math.hypot(xy[0] - pxy[0], xy[1] - pxy[1]) < _EPS:
                    names[roots.index(uf.find(("p", ref, name)))] = net_name
    return [groups[r] for r in roots], crossings, names


# -- label placement --------------------------------------------------------------------------------


def _free(box: tuple[float, float, float, float], occ: np.ndarray, pad: int = 3) -> bool:
    H, W = occ.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x0 - pad < 0 or y0 - pad < 0 or x1 + pad >= W or y1 + pad >= H:
        return False
    return not occ[y0 - pad : y1 + pad + 1, x0 - pad : x1 + pad + 1].any()


def _mark(box: tuple[float, float, float, float], occ: np.ndarray, pad: int = 4) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    occ[max(0, y0 - pad) : y1 + pad + 1, max(0, x0 - pad) : x1 + pad + 1] = True


def _label_arrangements(
    texts: list[str], bbox: tuple[float, float, float, float], vertical: bool, gap: float, line: float, stack: bool
) -> list[list[tuple[tuple[float, float], str]]]:
    """Candidate placements for a part's texts: lists of (pixel anchor, Pillow anchor) per text."""
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    n = len(texts)
    out: list[list[tuple[tuple[float, float], str]]] = []
    for side in ("right", "left") if vertical else ("above", "below"):
        if side == "right":
            out.append([((x1 + gap, cy - (n - 1) * line / 2 + i * line), "lm") for i in range(n)])
        elif side == "left":
            out.append([((x0 - gap, cy - (n - 1) * line / 2 + i * line), "rm") for i in range(n)])
        elif side == "above":
            if stack or n == 1:
                out.append([((cx, y0 - gap - (n - 1 - i) * line), "ms") for i in range(n)])
        else:
            if stack or n == 1:
                out.append([((cx, y1 + gap + i * line), "mt") for i in range(n)])
    if n == 2:
        if vertical:
            out.append([((x1 + gap, cy - line / 2), "lm"), ((x0 - gap, cy + line / 2), "rm")])
        else:
            out.append([((cx, y0 - gap), "ms"), ((cx, y1 + gap), "mt")])
            out.append([((cx - gap / 2, y0 - gap), "rs"), ((cx + gap / 2, y0 - gap), "ls")])
    # fallbacks for crowded spots: the other sides
    for side in ("above", "below") if vertical else ("right", "left"):
        if side == "above":
            out.append([((cx, y0 - gap - (n - 1 - i) * line), "ms") for i in range(n)])
        elif side == "below":
            out.append([((cx, y1 + gap + i * line), "mt") for i in range(n)])
        elif side == "right":
            out.append([((x1 + gap, cy - (n - 1) * line / 2 + i * line), "lm") for i in range(n)])
        else:
            out.append([((x0 - gap, cy - (n - 1) * line / 2 + i * line), "rm") for i in range(n)])
    return out


# -- rendering --------------------------------------------------------------------------------------


def _paper(rng: np.random.Generator, h: int, w: int, kind: str, grid_px: float) -> np.ndarray:
    """Background RGB float image in 0..1."""
    if kind == "cream":
        base = np.array([1.0, 0.98, 0.92]) - rng.uniform(0, 0.04)
    else:
        base = np.array([1.0, 1.0, 1.0])
    img = np.ones((h, w, 3), np.float32) * base.astype(np.float32)
    if kind == "grid":
        tone = np.array(rng.choice([[0.75, 0.85, 0.95], [0.8, 0.8, 0.8], [0.75, 0.92, 0.8]]), np.float32)
        step = max(6, int(round(grid_px)))
        grid = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            grid[::step, :] = 1
            grid[:, ::step] = 1
        else:
            grid[::step, ::step] = 1
            grid = cv2.dilate(grid, np.ones((2, 2), np.uint8))
        img[grid > 0] = tone
    return img


def render_layout(layout: Layout, style: dict[str, Any], rng: np.random.Generator) -> Sample:
    """Rasterise a laid-out circuit with a style and compute its ground truth."""
    bb = layout.elements[0].get_bbox(transform=True, includetext=False)
    xmin, ymin, xmax, ymax = bb.xmin, bb.ymin, bb.xmax, bb.ymax
    for e in layout.elements[1:]:
        b = e.get_bbox(transform=True, includetext=False)
        xmin, ymin, xmax, ymax = min(xmin, b.xmin), min(ymin, b.ymin), max(xmax, b.xmax), max(ymax, b.ymax)
    margin_u = 2.2  # room for labels outside the outermost parts
    s = float(style["px_per_unit"])
    span = max(xmax - xmin, ymax - ymin) + 2 * margin_u
    s = min(s, MAX_SIDE / span)
    mx = margin_u * s + float(rng.uniform(0, 0.6)) * s
    my = margin_u * s + float(rng.uniform(0, 0.6)) * s
    W = int(math.ceil((xmax - xmin) * s + 2 * mx))
    H = int(math.ceil((ymax - ymin) * s + 2 * my))
    lw = max(1.0, float(style["lw"]) * s)
    fig = RasterFigure(W, H, (xmin, ymax), s, (mx, my), lw, font=str(style["font"]))
    for e in layout.elements:
        if type(e).__name__ == "Dot":
            e.params["radius"] = float(style["dot_radius"]) * (0.8 if e.params.get("open") else 1.0)
        e._draw(fig)

    def box_px(e: Any) -> list[float]:
        b = e.get_bbox(transform=True, includetext=False)
        x0, y0 = fig.px(b.xmin, b.ymax)
        x1, y1 = fig.px(b.xmax, b.ymin)
        return [x0 - lw / 2, y0 - lw / 2, x1 + lw / 2, y1 + lw / 2]

    # labels: refs and values beside their parts, net names beside terminals
    occ = cv2.dilate((fig.ink > 40).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    size = max(9, int(round(float(style["font_size"]) * s)))
    gap = max(3.0, 0.15 * s)
    line = size * 1.15
    labels: list[dict[str, Any]] = []
    components: list[dict[str, Any]] = []
    comp_boxes = {}
    for part in layout.parts:
        comp_boxes[part.ref] = box_px(part.element)
    for part in layout.parts:
        texts: list[tuple[str, str]] = []
        if part.type == "supply":
            texts = [(part.value, "value")]
        elif part.type != "ground":
            texts = [(part.ref, "ref")] + ([(part.value, "value")] if part.value else [])
        placed = _place_labels(fig, part, texts, comp_boxes[part.ref], occ, size, gap, line, style, rng)
        idx = []
        for (text, role), box in placed:
            idx.append(len(labels))
            labels.append({"text": text, "bbox": [round(v, 2) for v in box], "role": role, "owner": part.ref})
        value = next((t for (t, r), _ in placed if r == "value"), "")
        components.append(
            {
                "ref": part.ref,
                "type": part.type,
                "value": value,
                "bbox": [round(v, 2) for v in comp_boxes[part.ref]],
                "pins": {k: [round(c, 2) for c in fig.px(*xy)] for k, xy in part.pins.items()},
                "labels": idx,
            }
        )
    for xy, net_name, side in layout.terminals:
        px, py = fig.px(*xy)
        r = float(style["dot_radius"]) * s + gap
        anchor, pos = {
            "left": ("rm", (px - r, py)),
            "right": ("lm", (px + r, py)),
            "up": ("ms", (px, py - r)),
            "down": ("mt", (px, py + r)),
        }[side]
        box = text_box(str(style["font"]), size, net_name, pos, anchor)
        if _free(box, occ, pad=1):
            box = fig.draw_text(net_name, pos, size, str(style["font"]), *_pil_align(anchor))
            _mark(box, occ)
            labels.append({"text": net_name, "bbox": [round(v, 2) for v in box], "role": "net", "owner": net_name})

    nets_u, crossings_u, term_names = connectivity(layout)
    named_terms = {lb["owner"] for lb in labels if lb["role"] == "net"}
    types = {c["ref"]: c["type"] for c in components}
    values = {c["ref"]: c["value"] for c in components}
    nets: list[dict[str, Any]] = []
    counter = 0
    for i, pins in enumerate(nets_u):
        name = None
        if any(types[r] == "ground" for r, _ in pins):
            name = "0"
        else:
            supplies = sorted({values[r] for r, _ in pins if types[r] == "supply" and values[r]})
            if supplies:
                name = spice_node(supplies[0])
            elif i in term_names and term_names[i] in named_terms:
                name = spice_node(term_names[i])
        if name is None:
            counter += 1
            name = f"N{counter:03d}"
        same = next((n for n in nets if n["name"] == name), None)
        if same is not None:  # ground symbols and equal supply rails are one net without a wire
            same["pins"] = sorted(same["pins"] + [list(p) for p in pins])
        else:
            nets.append({"name": name, "pins": [list(p) for p in sorted(pins)]})
    node_of = {(r, p): n["name"] for n in nets for r, p in n["pins"]}
    cards = []
    for c in components:
        card = spice_line(c["type"], c["ref"], c["value"], {p: node_of[(c["ref"], p)] for p in c["pins"]})
        if card:
            cards.append(card)

    image = _compose(fig.ink, style, rng, s)
    truth = {
        "size": [W, H],
        "components": components,
        "labels": labels,
        "nets": nets,
        "junctions": [[round(c, 2) for c in fig.px(*d)] for d in layout.dots],
        "crossings": [[round(c, 2) for c in fig.px(*x)] for x in crossings_u],
        "wires": [[[round(c, 2) for c in fig.px(*a)], [round(c, 2) for c in fig.px(*b)]] for a, b in layout.wires],
        "spice": spice_netlist(f"ohmlens synthetic {layout.template}", cards),
        "template": layout.template,
        "style": dict(style),
        "px_per_unit": s,
        "line_width": lw,
    }
    return Sample(image=image, truth=truth)


def _pil_align(anchor: str) -> tuple[str, str]:
    h = {"l": "left", "m": "center", "r": "right"}[anchor[0]]
    v = {"t": "top", "m": "center", "s": "base", "b": "bottom"}[anchor[1]]
    return h, v


def _place_labels(
    fig: RasterFigure,
    part: Part,
    texts: list[tuple[str, str]],
    bbox: list[float],
    occ: np.ndarray,
    size: int,
    gap: float,
    line: float,
    style: dict[str, Any],
    rng: np.random.Generator,
) -> list[tuple[tuple[str, str], tuple[float, float, float, float]]]:
    """Try label arrangements around a part until one fits; paints the one chosen."""
    if not texts:
        return []
    vertical = part.vertical or part.type in ("npn", "pnp", "nmos", "pmos", "transformer")
    if part.type == "supply":
        x0, y0, x1, y1 = bbox
        up = fig.px(*part.pins["1"])[1] > (y0 + y1) / 2  # pin at the bottom: the symbol points up
        cands = [[(((x0 + x1) / 2, y0 - gap), "ms")]] if up else [[(((x0 + x1) / 2, y1 + gap), "mt")]]
        cands += [[((x1 + gap, (y0 + y1) / 2), "lm")], [((x0 - gap, (y0 + y1) / 2), "rm")]]
    else:
        cands = _label_arrangements(
            [t for t, _ in texts], tuple(bbox), vertical, gap, line, bool(style.get("stack_labels", True))
        )
        if rng.random() < 0.3 and len(cands) > 1:
            cands[0], cands[1] = cands[1], cands[0]
    font = str(style["font"])
    for cand in cands:
        boxes = [text_box(font, size, t, pos, anchor) for (t, _), (pos, anchor) in zip(texts, cand)]
        if all(_free(b, occ) for b in boxes) and not _overlap_any(boxes):
            out = []
            for (t, role), (pos, anchor) in zip(texts, cand):
                box = fig.draw_text(t, pos, size, font, *_pil_align(anchor))
                _mark(box, occ)
                out.append(((t, role), box))
            return out
    return []


def _overlap_any(boxes: list[tuple[float, float, float, float]]) -> bool:
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                return True
    return False


def _compose(ink: np.ndarray, style: dict[str, Any], rng: np.random.Generator, s: float) -> np.ndarray:
    """Paper plus ink; grayscale uint8 for plain black-on-white styles, RGB otherwise."""
    a = ink.astype(np.float32)[..., None] / 255.0
    plain = style.get("paper", "white") == "white" and not style.get("color")
    if plain:
        return np.clip(255.0 * (1.0 - a[..., 0]), 0, 255).astype(np.uint8)
    paper = _paper(rng, ink.shape[0], ink.shape[1], str(style.get("paper", "white")), s / 2)
    if style.get("color"):
        inkc = np.array(
            rng.choice([[0.05, 0.1, 0.45], [0.45, 0.05, 0.05], [0.0, 0.3, 0.1], [0.2, 0.2, 0.2]]), np.float32
        )
    else:
        inkc = np.zeros(3, np.float32)
    out = paper * (1.0 - a) + inkc * a
    return np.clip(out * 255.0, 0, 255).astype(np.uint8)


def render_sample(seed: int, style: dict[str, Any] | None = None, template: str | None = None) -> Sample:
    """Render the synthetic drawing number `seed` (deterministic).

    Args:
        seed: Any non-negative integer; the same seed gives the same drawing and truth.
        style: Style overrides on top of the seed's random style (e.g. {"paper": "white",
            "color": False} for plain black on white).
        template: Circuit family name from `circuits.TEMPLATES`; random when None.
    """
    rng = np.random.default_rng(seed)
    st = sample_style(rng)
    # symbol habits from their own stream, so a seed's circuit stays what it was before they existed
    st.update(sample_look(np.random.default_rng([seed, 1])))
    if style:
        st.update(style)
    layout = random_circuit(rng, st, template)
    return render_layout(layout, st, rng)
