"""What a dataset holds: :class:`DataKind`. A ``StrEnum``: members compare equal to their value
(``DataKind.IMAGE == "image"``), so checkpoints, configs and plugins that wrote the strings keep
working, while code compares against the members and a typo is an AttributeError, not a branch
silently never taken."""

from __future__ import annotations

from enum import StrEnum


class DataKind(StrEnum):
    IMAGE = "image"  # uint8 (N, C, H, W)
    VECTOR = "vector"  # float32 (N, D)


__all__ = ["DataKind"]
