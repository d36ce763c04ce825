"""A sink receives one row (a flat ``{column: value}`` dict) per measured step."""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    """Where metric rows go. ``write`` is called once per row with a monotone ``step``."""

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
