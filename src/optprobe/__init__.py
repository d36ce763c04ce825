"""optprobe: test optimization theory against real training runs."""

__version__ = "0.1.0"
