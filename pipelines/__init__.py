"""ohmlens pipelines: the jobs behind the CLI and the web UI.

Public API: `parse_pdf`, `read_schematic`, `repair_drawing`, `Workspace`, and the `Document` model.
Imports are lazy so that parsing a PDF does not load the image models.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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
