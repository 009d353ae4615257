"""Argument checks shared by the layers: one line naming the argument and what is allowed."""

from __future__ import annotations

import torch


def require_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (1, 2, 3, ...); got {value!r}")
    return value


def require_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
    return value  # type: ignore[return-value]


def require_device(device: str) -> str:
    """Return ``device`` if it is ``"auto"`` or a device torch understands, else raise ``ValueError``."""
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from error
    return device
