"""Where vidnas keeps what it computes once and reuses: tables, pretrained backbones, supernets.

``$VIDNAS_CACHE`` if set, else ``$XDG_CACHE_HOME/vidnas`` (``~/.cache/vidnas``). Every
entry is keyed by a hash of everything that determines it, so a stale entry is never
reused; writes are atomic (written aside, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "config_hash"]


def cache_dir() -> Path:
    root = os.environ.get("VIDNAS_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME",
                                                                         os.path.expanduser("~/.cache")), "vidnas")
    return Path(root)


def config_hash(*parts: Any, length: int = 12) -> str:
    """A short stable hash of JSON-able parts (dicts sorted by key)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
