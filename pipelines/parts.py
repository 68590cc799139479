"""Common part numbers of the semiconductors a schematic shows, by symbol type, and the common values of other parts.

The schematic reader weighs a label the repair redrew partly against these (`pipelines.schematic.redrawn_value`):
a character a gap erased whole is a guess, and a part number is far more often one of the usual parts than a
near miss of one. The lists hold the everyday small-signal and power parts of hobby and textbook circuits (the
synthetic drawings' parts among them); a part that is not listed is read as OCR reads it.
"""

from __future__ import annotations

_ZENER_VOLTS = "2V4 2V7 3V0 3V3 3V6 3V9 4V3 4V7 5V1 5V6 6V2 6V8 7V5 8V2 9V1 10 11 12 13 15 16 18 20 22 24 27 30 33"


def _listed(names: str) -> frozenset[str]:
    return frozenset(names.split())


COMMON_PARTS: dict[str, frozenset[str]] = {
    "diode": _listed(
        "1N4001 1N4002 1N4003 1N4004 1N4005 1N4006 1N4007 1N5400 1N5401 1N5402 1N5404 1N5406 1N5408 1N4148 1N4448"
        " 1N914 1N4933 1N5817 1N5818 1N5819 1N5822 1N60 1N34A BAT54 BAT85 BAT43 BAT46 BAV99 BAS16 BAW56 UF4007 FR107"
        " SS14 SS34 MBR0520 MUR120 BY255 RL207"
    ),
    "zener": frozenset(
        [f"1N{n}A" for n in range(4728, 4765)]
        + [f"1N{n}B" for n in range(5221, 5268)]
        + [f"{family}{volts}" for family in ("BZX84C", "BZX79C", "BZX55C") for volts in _ZENER_VOLTS.split()]
        # a zener labelled with its voltage alone, in RKM or plain: 3V3, 3.3V, 12V
        + [volts if "V" in volts else f"{volts}V" for volts in _ZENER_VOLTS.split()]
        + [volts.replace("V", ".") + "V" for volts in _ZENER_VOLTS.split() if "V" in volts]
    ),
    "npn": _listed(
        "2N3904 2N2222 2N2222A PN2222A 2N4401 2N5551 2N3055 2N4124 2N5088 2N2219 BC546 BC547 BC547B BC548 BC549 BC550"
        " BC337 BC338 BC817 BC847 BC107 BC108 BC109 BC639 BD135 BD137 BD139 BD241 TIP29C TIP31C TIP41C TIP120 TIP122"
        " TIP142 MJE3055 MJE340 MJE13005 MPSA06 MPSA42 MPSA13 S8050 S9013 S9014 S9018 2SC945 2SC1815 MMBT3904"
        " MMBT2222A D882 ZTX450"
    ),
    "pnp": _listed(
        "2N3906 2N2907 2N2907A PN2907A 2N4403 2N5401 2N2955 2N4126 2N5087 2N2905 BC556 BC557 BC557B BC558 BC559 BC560"
        " BC327 BC328 BC807 BC857 BC177 BC178 BC179 BC640 BD136 BD138 BD140 BD242 TIP30C TIP32C TIP42C TIP125 TIP127"
        " TIP147 MJE2955 MJE350 MPSA56 MPSA92 S8550 S9012 S9015 2SA733 2SA1015 MMBT3906 MMBT2907A B772 ZTX550"
    ),
    "nmos": _listed(
        "2N7000 2N7002 BS170 BSS138 BS108 VN2222 IRF510 IRF520 IRF530 IRF540 IRF540N IRF630 IRF640 IRF740 IRF840"
        " IRFZ44N IRFZ34N IRLZ44N IRLZ34N IRL540N IRF3205 IRF1010E IRF3710 IRFP250N IRFP460 IRLML2502 IRLB8721"
        " AO3400 AO3402 AO3416 Si2302 FQP30N06L STP55NF06"
    ),
    "pmos": _listed(
        "BS250 BSS84 TP0610 VP2106 IRF9510 IRF9520 IRF9530 IRF9540 IRF9540N IRF9Z34N IRF4905 IRF5305 IRFP9240"
        " IRLML6402 IRLML2244 AO3401 AO3407 AO3415 Si2301 Si2305 FQP27P06 NDP6020P"
    ),
    "opamp": _listed(
        "LM358 LM324 LM741 LM301 LM833 LM4562 LMV358 LMV321 LF351 LF353 LF356 TL071 TL072 TL074 TL081 TL082 TL084"
        " NE5532 NE5534 RC4558 JRC4558 OP07 OP27 OP37 OPA134 OPA2134 OPA4134 OPA2604 OPA177 OPA2277 MCP6001 MCP6002"
        " MCP6004 MCP602 AD8605 AD8606 AD8620 AD797 AD711 AD712 CA3140 CA3130 LT1013 LT1014 LM6132 TLC272 TLV2372"
    ),
}

# The values other parts are most often labelled with: the usual supply, battery and signal voltages (mains among
# them), the standard crystal frequencies, LED colours, transformer turns ratios and switch kinds.
_SOURCE_VOLTS = (
    "1V 1.2V 1.5V 1.8V 2V 2.5V 3V 3.3V 3.6V 3.7V 4.5V 5V 6V 7.4V 9V 10V 12V 15V 18V 20V 24V 28V 30V 36V 48V"
    " 100V 110V 115V 117V 120V 220V 230V 240V"
)
COMMON_VALUES: dict[str, frozenset[str]] = {
    "vsource": _listed(_SOURCE_VOLTS),
    "vsource_ac": _listed(_SOURCE_VOLTS),
    "battery": _listed(_SOURCE_VOLTS),
    "crystal": _listed(
        "32.768kHz 1MHz 1.8432MHz 2MHz 3.2768MHz 3.579545MHz 3.6864MHz 4MHz 4.096MHz 4.194304MHz 4.9152MHz 5MHz 6MHz"
        " 6.144MHz 7.3728MHz 8MHz 9.8304MHz 10MHz 11.0592MHz 12MHz 12.288MHz 13.56MHz 14.31818MHz 14.7456MHz 16MHz"
        " 18.432MHz 19.2MHz 20MHz 24MHz 24.576MHz 25MHz 26MHz 27MHz 32MHz 40MHz 48MHz 50MHz"
    ),
    # the words an LED or a switch is labelled with are all the reader takes as their values
    "led": _listed("RED GREEN BLUE YELLOW WHITE LED IR"),
    "transformer": _listed("1:1 1:2 2:1 1:3 3:1 1:4 4:1 1:5 5:1 1:10 10:1 1:20 20:1 1:100 100:1"),
    "switch": _listed("SPST SPDT PUSH NO NC"),
}
