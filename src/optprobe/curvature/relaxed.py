"""(L0, L1)-smoothness: the tightest upper envelope L_t ≤ L0 + L1 ‖∇F(x_t)‖ of measured smoothness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import linprog

from optprobe.errors import OptprobeError


@dataclass(frozen=True)
class RelaxedFit:
    """The envelope L0 + L1 g, the points it was fitted to, and how many lie on or near it."""

    l0: float
    l1: float
    grad_norms: np.ndarray
    smoothness: np.ndarray
    near_fraction: float

    def envelope(self, grad_norms: ArrayLike) -> np.ndarray:
        """L0 + L1 g."""
        return self.l0 + self.l1 * np.asarray(grad_norms, dtype=float)


def relaxed_smoothness(grad_norms: ArrayLike, smoothness: ArrayLike, rtol: float = 0.05) -> RelaxedFit:
    """min_{L0,L1≥0} Σ_t (L0 + L1 g_t) s.t. L0 + L1 g_t ≥ L_t (a linear program); NaN pairs are dropped.

    ``near_fraction`` is the share of points with L_t ≥ (1 − rtol)(L0 + L1 g_t).
    """
    g = np.asarray(grad_norms, dtype=float)
    s = np.asarray(smoothness, dtype=float)
    keep = np.isfinite(g) & np.isfinite(s)
    g, s = g[keep], s[keep]
    if g.size == 0:
        raise OptprobeError("relaxed_smoothness needs at least one finite (grad norm, smoothness) pair")
    # solved in units of max g and max s (the program is scale-equivariant): HiGHS rejects a program
    # with huge coefficients ("Model error"), and a diverging run's gradient norms reach 1e17
    g_unit, s_unit = (float(np.max(np.abs(x))) or 1.0 for x in (g, s))
    res = linprog(
        c=[g.size, (g / g_unit).sum()],
        A_ub=-np.column_stack([np.ones_like(g), g / g_unit]),
        b_ub=-s / s_unit,
        bounds=[(0, None), (0, None)],
        method="highs",
    )
    if not res.success:
        raise OptprobeError(f"the envelope linear program failed: {res.message}")
    l0, l1 = float(res.x[0]) * s_unit, float(res.x[1]) * s_unit / g_unit
    env = l0 + l1 * g
    near = float(np.mean(s >= (1 - rtol) * env))
    return RelaxedFit(l0, l1, g, s, near)


def relaxed_smoothness_table(
    frame: pd.DataFrame, smoothness: str = "sharpness", grad_norm: str = "full_grad_norm", rtol: float = 0.05
) -> dict[str, RelaxedFit]:
    """Fits of ``frame[smoothness]`` against ``frame[grad_norm]``: key ``""`` globally, and each layer whose
    ``<smoothness>/<layer>`` column exists (against ``<grad_norm>/<layer>``, else the global norm)."""
    fits = {}
    if smoothness in frame and grad_norm in frame:
        fits[""] = relaxed_smoothness(frame[grad_norm], frame[smoothness], rtol)
    prefix = f"{smoothness}/"
    for column in frame.columns:
        if isinstance(column, str) and column.startswith(prefix):
            layer = column[len(prefix) :]
            g_col = f"{grad_norm}/{layer}" if f"{grad_norm}/{layer}" in frame else grad_norm
            if g_col in frame:
                fits[layer] = relaxed_smoothness(frame[g_col], frame[column], rtol)
    if not fits:
        raise OptprobeError(
            f"no columns to fit: the table needs {grad_norm!r} and {smoothness!r} (or '{smoothness}/<layer>')"
        )
    return fits
