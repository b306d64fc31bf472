"""Telling a local path from a Hugging Face hub id, so a mistyped folder fails at once instead of after minutes of
network retries."""

from __future__ import annotations

from pathlib import Path


def looks_local(name: str) -> bool:
    """True for a path rather than a hub id ("org/name" or "name"): absolute, ./ ../ ~, a backslash, more than one
    slash, or a first component that exists here as a folder (runs/x when ./runs exists)."""
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    first = Path(name).parts[0] if Path(name).parts else ""
    return "/" in name and Path(first).is_dir()
