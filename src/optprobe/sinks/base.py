"""A sink receives one row (a flat ``{column: value}`` dict) per measured step."""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    """Where metric rows go. ``write`` is called once per row with a monotone ``step``.

    A sink may also define ``start(config)``: the Probe calls it once, before the first row, with its
    settings (``dataclasses.asdict(ProbeConfig)``); the tracker sinks record them and name the EMA
    columns by β's index in ``config["betas"]`` (see :mod:`optprobe.sinks.names`).
    """

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
