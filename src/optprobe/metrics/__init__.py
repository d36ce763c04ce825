"""Metrics: what the Probe computes from its shared evaluations (see :mod:`optprobe.metrics.base`).

A metric of your own subclasses :class:`TrajectoryMetric` (declare its :class:`Needs`, read
:class:`StepData`) and goes to ``Probe(metrics=[..., YourMetric()])`` as it is.
"""

from optprobe.metrics.base import Needs, PeriodicMetric, StepData, TrajectoryMetric, safe_ratio

__all__ = ["Needs", "PeriodicMetric", "StepData", "TrajectoryMetric", "safe_ratio"]
