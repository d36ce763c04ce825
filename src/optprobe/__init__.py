"""optprobe: test optimization theory against real training runs.

The public names are imported on first use (PEP 562), so ``import optprobe`` — and the command line's
``--help``, ``--version`` and ``list`` — do not pay for importing torch.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from optprobe.errors import OptprobeError, ProbeWarning  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from optprobe.probe import Probe
    from optprobe.probe_config import ProbeConfig
    from optprobe.sinks import read_table

__all__ = ["OptprobeError", "Probe", "ProbeConfig", "ProbeWarning", "__version__", "read_table"]

_LAZY = {"Probe": "optprobe.probe", "ProbeConfig": "optprobe.probe_config", "read_table": "optprobe.sinks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'optprobe' has no attribute {name!r}")
