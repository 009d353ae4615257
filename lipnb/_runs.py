"""Run directories: atomic writes and the record of the settings a run was made with."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch


def atomic_torch_save(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


def record_settings(out_dir: Path, settings: Mapping[str, object]) -> None:
    """Record ``settings`` in ``out_dir/config.json``; refuse a directory recorded with other values."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded_path = out_dir / "config.json"
    if recorded_path.exists():
        recorded = json.loads(recorded_path.read_text())
        differing = [key for key, value in settings.items() if recorded.get(key) != value]
        if differing:
            raise ValueError(
                f"{out_dir} holds a run with different {', '.join(differing)}; choose another out_dir or delete it"
            )
    else:
        write_json(recorded_path, dict(settings))


def error_summary(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors about files that cannot be used."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
