"""Schematic labels: duplicate text boxes, OCR slips in part numbers and values, value plausibility."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.schematic import (
    _crop_for_ocr,
    _Models,
    assemble_circuit,
    binarize,
    ctc_log_likelihood,
    ctc_readings,
    drawn_ink,
    merge_text_boxes,
    ocr_char_probs,
    ocr_crops,
    read_schematic,
    redrawn_steps,
    redrawn_value,
    repair_read,
    split_reads,
    standard_value,
    value_for,
    value_reading,
    value_series,
    value_types,
)
from vision.detect import Detection
from vision.synth.raster import load_font
from vision.synth.render import render_sample
from vision.synth.scan import scan


def _label_image(
    text: str, size: int = 20, font: str = "DejaVuSerif.ttf"
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A white page with `text` in a DejaVu font, and the tight box of its ink."""
    img = Image.new("L", (240, 60), 255)
    ImageDraw.Draw(img).text((40, 18), text, font=load_font(font, size), fill=0)
    arr = np.asarray(img).copy()
    ys, xs = np.nonzero(arr < 128)
    return arr, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _smudged_label(text: str, char: int, font: str) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """`text` with the inside of its `char`-th character's cell painted flat gray, as an inpainter leaves a
    character it could not redraw."""
    page, (x0, y0, x1, y1) = _label_image(text, font=font)
    width = (x1 - x0) / len(text)
    left = int(x0 + char * width)
    page[int(y0) + 2 : int(y1) - 2, left + 1 : int(left + width) - 1] = 110
    return page, (x0, y0, x1, y1)


def test_shifted_duplicate_boxes_of_one_label_become_one_box_read_whole() -> None:
    """The detector can keep a box on a whole part number and a shifted one that misses its first
    character; the reader used to give the part whichever came first ('N4733A'). Merged, the one box
    covers the whole label and the real OCR reads it whole."""
    page, (x0, y0, x1, y1) = _label_image("1N4733A")
    char = (x1 - x0) / 7
    dets = [
        Detection("text", 0.39, (x0 + char, y0 + 2, x1, y1 + 1)),  # misses the "1"
        Detection("text", 0.35, (x0 + 0.2 * char, y0 - 1, x1 - 0.5 * char, y1)),
    ]
    _, ocr = _Models.get()
    assert ocr_crops(ocr, [_crop_for_ocr(page, dets[0].box)])[0][0] == "N4733A"  # the slip the merge undoes
    merged = merge_text_boxes(dets)
    assert len(merged) == 1 and merged[0].score == 0.39
    assert merged[0].box == (x0 + 0.2 * char, y0 - 1, x1, y1 + 1)
    assert ocr_crops(ocr, [_crop_for_ocr(page, merged[0].box)])[0][0] == "1N4733A"


def test_reference_and_value_run_together_are_cut_at_the_blank_and_read_again() -> None:
    """OCR drops the space in a box over "R1 150k" on one line ('R1150k'); several cuts would give a
    reference and a value ('R1'/'150k', 'R11'/'50k'), so the box is cut at the blank between the words
    and both halves are read again by the real OCR."""
    page, (x0, y0, x1, y1) = _label_image("R1 150k")
    _, ocr = _Models.get()

    def reread(boxes: list[tuple[float, float, float, float]]) -> list[str]:
        return [r for r, _ in ocr_crops(ocr, [_crop_for_ocr(page, b) for b in boxes])]

    box = Detection("text", 0.8, (x0, y0, x1, y1))
    texts, reads = split_reads([box], ["R1150k"], binarize(page), reread)
    assert reads == ["R1", "150k"]
    assert texts[0].box[0] == x0 and texts[1].box[2] == x1 and texts[0].box[2] < texts[1].box[0]
    # one word has no blank as wide as a space: kept whole, as without the drawing
    page, (x0, y0, x1, y1) = _label_image("L7805")
    assert split_reads([Detection("text", 0.8, (x0, y0, x1, y1))], ["L7805"], binarize(page), reread)[1] == ["L7805"]
    assert split_reads([box], ["R1150k"])[1] == ["R1150k"]


def test_distinct_labels_stay_apart() -> None:
    stacked = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (100, 28, 150, 42))]  # R1 / 10k
    in_line = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (134, 10, 180, 24))]  # R1 680k
    touching = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (125, 10, 180, 24))]
    # a box over a whole line "C4 8.2nF" and boxes over each of its words
    line = [Detection("text", 0.8, b) for b in ((554, 312, 657, 330), (557, 312, 587, 330), (596, 313, 654, 330))]
    for texts in (stacked, in_line, touching, line):
        assert [t.box for t in merge_text_boxes(texts)] == [t.box for t in texts]


@pytest.mark.parametrize(
    "read,fixed",
    [
        ("A03400", "AO3400"),  # Alpha & Omega MOSFET prefix with a zero for the O
        ("A03401", "AO3401"),
        ("0PA2134", "OPA2134"),
        ("0P07", "OP07"),
        ("IN4007", "1N4007"),
        ("TL072", "TL072"),  # a real zero after letters stays
        ("NE5532", "NE5532"),
        ("A0", "A0"),
        ("1:2nF", "1.2nF"),  # a decimal point read as a colon; a transformer's ratio stays
        ("1:10", "1:10"),
    ],
)
def test_part_number_prefix_slips(read: str, fixed: str) -> None:
    assert repair_read(read) == fixed


def test_part_numbers_need_a_series_number() -> None:
    """Stray reads of net labels ('VO' read 'VO8', 'X' read '0x') and a value with a garbled unit
    ('8.2uF' read '8.2ud') are no part numbers, so they are not given to a transistor as its value; real
    part numbers still are."""
    for stray in ("VO8", "0x", "Q2a", "A1", "8.2ud"):
        assert value_types(stray) == set(), stray
    for pn in ("BC547", "2N7000", "BAT54", "Si2301", "IRLZ44N", "BZX84C5V1", "MJE3055"):
        assert {"npn", "diode", "nmos"} <= value_types(pn), pn
    assert value_types("5V1") == {"zener"}


def test_milli_on_a_plain_capacitor_is_nano() -> None:
    assert value_for("capacitor", "39mF") == "39nF"
    assert value_for("capacitor", "3.3mF") == "3.3nF"
    assert value_for("capacitor_polarized", "3.9mF") == "3.9mF"  # electrolytics do reach millifarads
    assert value_for("capacitor", "4.7µF") == "4.7µF"
    # through the label assignment: the reference block "C1" / "39mF" beside a plain capacitor
    norm = np.full((300, 300), 255, np.uint8)
    comps = [
        Detection("capacitor", 0.9, (100, 100, 140, 160)),
        Detection("capacitor_polarized", 0.9, (200, 100, 240, 160)),
    ]
    boxes = [(145, 115, 165, 127), (145, 131, 172, 143), (245, 115, 265, 127), (245, 131, 280, 143)]
    texts = [Detection("text", 0.9, b) for b in boxes]
    c = assemble_circuit(norm, comps, texts, ["C1", "39mF", "C2", "2.2mF"], [], [])
    assert {p.id: p.value for p in c.components} == {"C1": "39nF", "C2": "2.2mF"}


def test_ctc_readings_sum_every_alignment_that_spells_a_text() -> None:
    """With every symbol of every step kept, the beam search gives each text the total probability of
    the alignments that collapse to it (repeats merged, blanks dropped), counted here by brute force."""
    rng = np.random.default_rng(0)
    alphabet = ["blank", "a", "b", "c"]
    probs = rng.dirichlet(np.ones(4), size=5)
    want: dict[str, float] = {}
    for path in itertools.product(range(4), repeat=5):
        text = "".join(alphabet[c] for k, c in enumerate(path) if c and (k == 0 or path[k - 1] != c))
        want[text] = want.get(text, 0.0) + float(np.prod([probs[k, c] for k, c in enumerate(path)]))
    got = ctc_readings(probs, alphabet, top=4, width=10_000)
    assert got.keys() == want.keys()
    assert all(abs(got[t] - want[t]) < 1e-12 for t in want)
    assert abs(sum(got.values()) - 1.0) < 1e-9


def test_standard_values() -> None:
    for text in ("680k", "1k", "4k7", "1.8mF", "33µH", "10", "2.2nF", "100nF"):
        assert standard_value("resistor" if text[-1] not in "FH" else "capacitor", text), text
    for text in ("660k", "6k", "50k", "1.7k"):
        assert not standard_value("resistor", text), text
    assert not standard_value("vsource", "12V") and not standard_value("resistor", "1N4148")


def test_a_label_with_a_character_left_gray_is_reread_as_the_parts_value() -> None:
    """An inpainter leaves a character it could not redraw as a gray blot. The real OCR then reads
    "1.8mF" as "1.8r.F", no value at all, and "56kΩ" as "6kΩ". Among its likely readings the reader
    finds the value a part of the type can have, a preferred (E24) number first."""
    _, ocr = _Models.get()
    page, box = _smudged_label("1.8mF", 3, "DejaVuSans.ttf")
    crop = _crop_for_ocr(page, box)
    assert ocr_crops(ocr, [crop])[0][0] == "1.8r.F" and not value_types("1.8r.F")
    probs, alphabet = ocr_char_probs(ocr, crop)
    assert value_reading("capacitor_polarized", probs, alphabet) == "1.8mF"
    assert value_reading("resistor", probs, alphabet) is None
    page, box = _smudged_label("56kΩ", 0, "DejaVuSerif.ttf")
    crop = _crop_for_ocr(page, box)
    assert ocr_crops(ocr, [crop])[0][0] == "6kΩ"
    assert value_reading("resistor", *ocr_char_probs(ocr, crop)) == "56kΩ"

    # through the label assignment: the misread label goes to the part it stands beside, not to a part
    # that stands farther from it
    page, (x0, y0, x1, y1) = _smudged_label("1.8mF", 3, "DejaVuSans.ttf")
    norm = np.full((200, 400), 255, np.uint8)
    norm[:60, :240] = page
    texts = [Detection("text", 0.9, (x0, y0, x1, y1))]
    comps = [
        Detection("capacitor_polarized", 0.9, (x1 + 6, y0 - 20, x1 + 30, y1 + 20)),
        Detection("capacitor_polarized", 0.9, (x1 + 70, y0 - 20, x1 + 94, y1 + 20)),
    ]
    asked: list[tuple[int, str]] = []

    def reread(ti: int, ctype: str) -> str | None:
        asked.append((ti, ctype))
        return value_reading(ctype, *ocr_char_probs(ocr, _crop_for_ocr(norm, texts[ti].box)))

    c = assemble_circuit(norm, comps, texts, ["1.8r.F"], [], [], reread_value=reread)
    assert [p.value for p in c.components] == ["1.8mF", ""] and asked == [(0, "capacitor_polarized")]
    assert [p.value for p in assemble_circuit(norm, comps, texts, ["1.8r.F"], [], []).components] == ["", ""]


def test_a_net_label_beside_a_transistor_is_not_reread_into_a_part_number() -> None:
    """On a scanned diff-pair drawing OCR reads the net label "OUT" beside a transistor that has no part number
    as "0OUT". A likely reading of it, "10OUT", passes for a part number; the re-reading guesses quantities and
    word values only, so the transistor keeps no value."""
    seed = 900_000_425  # eval_schematic's scanned condition
    sample = render_sample(seed)
    sample = scan(sample, seed, float(np.random.default_rng(seed).uniform(0.5, 1.5)))
    assert sorted(c["value"] for c in sample.truth["components"] if c["type"] == "npn") == ["", "MJE3055"]
    read = read_schematic(sample.image)
    assert sorted(p.value for p in read.components if p.type == "npn") == ["", "MJE3055"]
    assert value_types("10OUT") >= {"npn"}  # why it must not be guessed


def test_a_reread_keeps_half_of_what_ocr_read() -> None:
    """Junk OCR reads off a real drawing ('#', a stray CJK glyph) must not become values because some digit is
    likely enough at one step; a reading that keeps most of the read ('CREEN' -> 'GREEN') still counts."""
    alphabet = ["blank", "#", "3", "C", "G", "R", "E", "N"]

    def one_hot(text: str, alt: dict[int, tuple[str, float]]) -> np.ndarray:
        probs = np.full((2 * len(text), len(alphabet)), 1e-6)
        for k, ch in enumerate(text):
            probs[2 * k, alphabet.index(ch)] = 1.0
            probs[2 * k + 1, 0] = 1.0
            if k in alt:
                probs[2 * k, alphabet.index(alt[k][0])] = alt[k][1]
        return probs / probs.sum(axis=1, keepdims=True)

    assert value_reading("resistor", one_hot("#", {0: ("3", 0.2)}), alphabet) is None
    assert value_reading("led", one_hot("CREEN", {0: ("G", 0.2)}), alphabet) == "GREEN"


def test_a_word_value_one_letter_off_is_that_word() -> None:
    """OCR reads a repaired 'YELLOW' as 'YELLOV' with no likely W; beside an LED that is its colour. Short words and
    words one letter off no word value of the type stay as read."""
    alphabet = ["blank", "Y", "E", "L", "O", "V", "W", "R", "I", "T", "H"]

    def spelled(text: str) -> np.ndarray:
        probs = np.full((2 * len(text), len(alphabet)), 1e-6)
        for k, ch in enumerate(text):
            probs[2 * k, alphabet.index(ch)] = 1.0
            probs[2 * k + 1, 0] = 1.0
        return probs / probs.sum(axis=1, keepdims=True)

    assert value_reading("led", spelled("YELLOV"), alphabet) == "YELLOW"
    assert value_reading("led", spelled("WHITE"), alphabet) == "WHITE"
    assert value_reading("led", spelled("YELLOVV"), alphabet) is None
    assert value_reading("resistor", spelled("YELLOV"), alphabet) is None
    assert value_reading("led", spelled("REO"), alphabet) is None


def test_ctc_log_likelihood_matches_torch_ctc_loss() -> None:
    """The forward algorithm against torch's CTC loss (the reference), with repeated symbols that need a blank
    between them and a symbol that takes two steps."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(7, 0.5), size=12)  # (steps, alphabet), blank first
    for symbols in ([1, 2, 3], [2, 2], [4], [1, 5, 1, 5, 6]):
        want = -torch.nn.functional.ctc_loss(
            torch.log(torch.from_numpy(probs))[:, None],
            torch.tensor([symbols]),
            torch.tensor([len(probs)]),
            torch.tensor([len(symbols)]),
            reduction="sum",
        ).item()
        assert abs(ctc_log_likelihood(probs, symbols) - want) < 1e-6, symbols


def test_drawn_ink_is_the_ink_a_repair_put_where_the_damage_showed_none() -> None:
    """Three characters of a label damaged three ways and repaired to the intact label: a gap left bare paper, a hole
    shows a flat dark backing (most of the simulator's holes and tears), a translucent stain leaves the ink visible.
    The repair's ink is a guess in the first two, rim of the hole included, and a restoration under the stain.
    Outside the mask nothing counts."""
    img = Image.new("L", (300, 90), 255)
    font = load_font("DejaVuSans.ttf", 48)
    ImageDraw.Draw(img).text((40, 15), "150k", font=font, fill=0)
    intact = np.asarray(img).copy()
    ink = binarize(intact)
    cells = [(int(40 + font.getlength("150k"[:i])), int(40 + font.getlength("150k"[: i + 1]))) for i in range(4)]
    damaged, mask = intact.copy(), np.zeros(intact.shape, bool)
    rng = np.random.default_rng(0)
    (g0, g1), (h0, h1), (s0, s1) = cells[:3]
    damaged[:, g0:g1] = 255
    damaged[:, h0:h1] = np.clip(rng.normal(60, 8, (90, h1 - h0)), 0, 255).astype(np.uint8)
    damaged[:, s0:s1] = (damaged[:, s0:s1] * 0.6).astype(np.uint8)
    mask[:, g0:s1] = True
    drawn = drawn_ink(damaged, intact, mask)
    assert drawn[:, g0:g1].sum() == ink[:, g0:g1].sum() > 0
    assert drawn[:, h0:h1].sum() == ink[:, h0:h1].sum() > 0
    assert drawn[:, s0:s1].sum() == 0 and drawn[:, s1:].sum() == 0
    assert drawn_ink(damaged, intact, np.zeros_like(mask)).sum() == 0


def test_a_character_the_repair_drew_is_read_as_the_series_value_that_fits_what_is_left() -> None:
    """A gap erased the '2' of "8.2pF" whole and the glyph net drew a clean '0': OCR is sure of "8.0pF", which is
    no E24 value. With the steps over the drawn '0' taken as a guess, the series value that fits the '8.' and
    'pF' left is 8.2pF. A value the repair did not touch, and one whose drawn character leaves an E12 value,
    stay as read; the step applies to resistors, capacitors and inductors only."""
    page, box = _label_image("8.0pF", font="DejaVuSans.ttf")
    font = load_font("DejaVuSans.ttf", 20)
    left, right = 40 + font.getlength("8."), 40 + font.getlength("8.0")
    ink = binarize(page)
    drawn = np.zeros_like(ink)
    drawn[:, int(left) : int(math.ceil(right))] = True
    drawn &= ink
    _, ocr = _Models.get()
    probs, alphabet = ocr_char_probs(ocr, _crop_for_ocr(page, box))
    rec_shape = tuple(ocr.text_rec.rec_image_shape[1:3])
    steps = redrawn_steps(drawn, ink, box, len(probs), rec_shape)
    assert steps.max() == 1.0 and (steps > 0).sum() <= 6  # one character's steps
    assert value_series("8.0pF") == 0 and value_series("8.2pF") == 12 and value_series("4.3k") == 24
    assert redrawn_value("capacitor", probs, alphabet, steps) == "8.2pF"
    assert redrawn_value("capacitor", probs, alphabet, np.zeros_like(steps)) is None
    assert redrawn_value("vsource", probs, alphabet, steps) is None

    page, box = _label_image("150k", font="DejaVuSans.ttf")
    ink = binarize(page)
    drawn = np.zeros_like(ink)
    drawn[:, int(40 + font.getlength("1")) : int(math.ceil(40 + font.getlength("15")))] = True
    probs, alphabet = ocr_char_probs(ocr, _crop_for_ocr(page, box))
    steps = redrawn_steps(drawn & ink, ink, box, len(probs), rec_shape)
    assert steps.max() == 1.0 and redrawn_value("resistor", probs, alphabet, steps) is None


def _redrawn_reading(text: str, drawn_char: int, ctype: str) -> str | None:
    """`redrawn_value` for a label `text` (read as such by OCR) whose `drawn_char`-th character the repair drew."""
    font = load_font("DejaVuSans.ttf", 20)
    _, ocr = _Models.get()
    page, box = _label_image(text, font="DejaVuSans.ttf")
    ink = binarize(page)
    drawn = np.zeros_like(ink)
    left, right = 40 + font.getlength(text[:drawn_char]), 40 + font.getlength(text[: drawn_char + 1])
    drawn[:, int(left) : int(math.ceil(right))] = True
    probs, alphabet = ocr_char_probs(ocr, _crop_for_ocr(page, box))
    assert ocr_crops(ocr, [_crop_for_ocr(page, box)])[0][0] == text
    steps = redrawn_steps(drawn & ink, ink, box, len(probs), tuple(ocr.text_rec.rec_image_shape[1:3]))
    assert steps.max() == 1.0
    assert redrawn_value(ctype, probs, alphabet, np.zeros_like(steps)) is None
    return redrawn_value(ctype, probs, alphabet, steps)


def test_a_part_number_the_repair_drew_a_character_of_is_read_as_the_common_part_that_fits() -> None:
    """A transistor's label whose first character the repair drew reads "1N3904": a diode's prefix, no NPN
    transistor. With that character taken as a guess, the common NPN part that fits the rest is the 2N3904. A
    listed part ("BC548") stays as read, and so does a label the repair did not touch."""
    assert _redrawn_reading("1N3904", 0, "npn") == "2N3904"
    assert _redrawn_reading("BC548", 4, "npn") is None


def test_a_redrawn_prefix_or_unit_is_a_guess_like_a_redrawn_digit() -> None:
    """The glyph net draws an erased ohm sign as a '4' ("15k4", 15.4 kilohm, no series value) and an erased 'k'
    as a '0' ("3.30Ω", an odd way to write 3.3 ohm): the series value in a usual writing that fits the characters
    left wins, prefix and unit included (which prefix the drawn '0' was, nothing tells). A zener's voltage is one of
    the E24 voltages zeners come in. A plain series value with a redrawn prefix stays as read."""
    assert _redrawn_reading("15k4", 3, "resistor") == "15kΩ"
    assert _redrawn_reading("3.30Ω", 3, "resistor") in {"3.3kΩ", "3.3MΩ"}
    assert _redrawn_reading("3V2", 2, "zener") in {"3V0", "3V3", "3V6", "3V9"}
    assert _redrawn_reading("22nF", 2, "capacitor") is None
    assert _redrawn_reading("47k", 2, "resistor") is None


def test_a_redrawn_label_of_a_source_crystal_led_or_transformer_reads_as_a_common_value_of_the_part() -> None:
    """Where the glyph net drew a character as junk ("2304" beside an AC source, "1i1" beside a transformer,
    "REB" beside an LED) or too faintly for OCR to read ("16MH" beside a crystal), the label reads as the common
    value of that part that fits the characters left, one character longer or shorter at most. A common value
    read as such stays."""
    assert _redrawn_reading("2304", 3, "vsource_ac") == "230V"
    assert _redrawn_reading("1i1", 1, "transformer") == "1:1"
    assert _redrawn_reading("REB", 2, "led") == "RED"
    assert _redrawn_reading("16MH", 3, "crystal") == "16MHz"
    assert _redrawn_reading("RED", 2, "led") is None
    assert _redrawn_reading("12V", 1, "vsource") is None
