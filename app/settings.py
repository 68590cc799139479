"""Settings shared by the CLI and the web UI, from the environment with defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_workspace() -> Path:
    return Path(os.environ.get("OHMLENS_WORKSPACE", Path.home() / ".ohmlens"))


@dataclass
class Settings:
    """Where data lives and what the UI accepts."""

    workspace: Path = field(default_factory=_default_workspace)
    max_upload_mb: int = int(os.environ.get("OHMLENS_MAX_UPLOAD_MB", "200"))
