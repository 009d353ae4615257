"""Run directories: atomic writes, and one error for a file that cannot be used."""

from __future__ import annotations

import json
import os
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


def error_summary(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors about files that cannot be used."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def unusable_file_error(path: Path, error: BaseException) -> ValueError:
    """One line for a checkpoint that cannot be used: the file, what is wrong, and the fix.

    torch's advice to load an untrusted file with ``weights_only=False`` is left out on purpose.
    """
    message = error_summary(error)
    if "Weights only load failed" in message:
        message = f"{type(error).__name__}: it holds objects other than tensors and plain values"
    return ValueError(f"{path} cannot be used ({message}); delete it to start over, or point to the right file")
