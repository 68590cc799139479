"""SPICE cards for the component vocabulary (shared by the synthetic truth and the reader's export)."""

from __future__ import annotations

import re

from vision.synth import NET_SYMBOLS


def spice_node(name: str) -> str:
    """A SPICE-safe node name ('+5V' -> 'P5V', '-12V' -> 'N12V', '3.3V' -> '3P3V')."""
    s = name.strip().upper().replace("+", "P").replace("-", "N").replace(".", "P")
    s = re.sub(r"[^A-Z0-9_]", "_", s)
    return s or "NET"


def spice_line(ctype: str, ref: str, value: str, nodes: dict[str, str]) -> str | None:
    """One SPICE card for a component; None for net symbols (ground, supply).

    Args:
        ctype: Component type.
        ref: Reference designator.
        value: Value text as drawn ('' when none).
        nodes: Pin name -> node name.
    """
    n = lambda *names: " ".join(nodes.get(k, "NC") for k in names)  # noqa: E731
    v = value.replace("µ", "u").replace("μ", "u").replace("Ω", "") if value else ""
    if ctype in NET_SYMBOLS:
        return None
    if ctype in ("resistor", "capacitor", "inductor"):
        letter = {"resistor": "R", "capacitor": "C", "inductor": "L"}[ctype]
        return f"{_card(letter, ref)} {n('1', '2')} {v or '1'}"
    if ctype == "capacitor_polarized":
        return f"{_card('C', ref)} {n('+', '-')} {v or '1u'}"
    if ctype in ("diode", "led", "zener"):
        model = v or {"diode": "D", "led": "LED", "zener": "DZ"}[ctype]
        return f"{_card('D', ref)} {n('A', 'K')} {spice_node(model)}"
    if ctype in ("npn", "pnp"):
        return f"{_card('Q', ref)} {n('C', 'B', 'E')} {spice_node(v or ctype.upper())}"
    if ctype in ("nmos", "pmos"):
        bulk = nodes.get("B", nodes.get("S", "NC"))
        return f"{_card('M', ref)} {n('D', 'G', 'S')} {bulk} {spice_node(v or ctype.upper())}"
    if ctype == "opamp":
        return f"{_card('X', ref)} {n('+', '-', 'OUT')} {spice_node(v or 'OPAMP')}"
    if ctype in ("vsource", "battery"):
        return f"{_card('V', ref)} {n('+', '-')} DC {v or '0'}"
    if ctype == "vsource_ac":
        return f"{_card('V', ref)} {n('1', '2')} AC {v or '1'}"
    if ctype == "isource":
        return f"{_card('I', ref)} {n('+', '-')} DC {v or '0'}"
    if ctype == "switch":
        return f"{_card('X', ref)} {n('1', '2')} SWITCH"
    if ctype == "crystal":
        return f"{_card('X', ref)} {n('1', '2')} XTAL" + (f" PARAMS: F={v}" if v else "")
    if ctype == "potentiometer":
        return f"{_card('X', ref)} {n('1', 'W', '2')} POT" + (f" PARAMS: R={v}" if v else "")
    if ctype == "transformer":
        return f"{_card('X', ref)} {n('P1', 'P2', 'S1', 'S2')} XFMR"
    return f"* {ref}: unsupported type {ctype}"


def _card(letter: str, ref: str) -> str:
    """SPICE card names start with the element letter: R1 stays R1, Z1 becomes DZ1, RV1 becomes XRV1."""
    return ref if ref.upper().startswith(letter) else f"{letter}{ref}"


def spice_netlist(title: str, cards: list[str]) -> str:
    return "\n".join([f"* {title}", *cards, ".end", ""])
