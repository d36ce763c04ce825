"""optprobe."""
