"""ohmlens pipelines: the jobs behind the CLI and the web UI.

Public API: `parse_pdf`, `read_schematic`, `repair_drawing`, `Workspace`, and the `Document` model.
Imports are lazy so that parsing a PDF does not load the image models.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

# PyMuPDF 2 loads its ONNX page-layout model whenever `pymupdf` is imported (0.4 s and 55 MB here), and its
# `find_tables()` and pymupdf4llm then consult it. ohmlens uses neither, so unless pymupdf is already loaded or
# OHMLENS_PYMUPDF_LAYOUT=1 asks for it (the table benchmark's find_tables anchor), pymupdf starts without it.
if "pymupdf" not in sys.modules and os.environ.get("OHMLENS_PYMUPDF_LAYOUT") != "1":
    sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[assignment]  # None: import fails, pymupdf skips it

_EXPORTS = {
    "parse_pdf": "pipelines.ingest",
    "Workspace": "pipelines.store",
    "Document": "pipelines.document",
    "read_schematic": "pipelines.schematic",
    "repair_drawing": "pipelines.repair",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
