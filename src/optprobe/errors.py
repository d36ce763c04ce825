"""Errors and warnings optprobe raises, each with a message that says what to change."""


class OptprobeError(ValueError):
    """Misuse of optprobe: wrong arguments, mismatched reference point, malformed config."""


class ProbeWarning(UserWarning):
    """A measurement could not be taken (degenerate or non-finite step); the value is recorded as NaN."""
