"""optprobe: test optimization theory against real training runs."""

__version__ = "0.1.0"

from optprobe.errors import OptprobeError, ProbeWarning  # noqa: E402
from optprobe.probe import Probe, ProbeConfig  # noqa: E402
from optprobe.sinks import read_table  # noqa: E402

__all__ = ["OptprobeError", "Probe", "ProbeConfig", "ProbeWarning", "__version__", "read_table"]
