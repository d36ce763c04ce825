"""Curvature of the loss from Hessian-vector products: eigenvalues, trace, diagonal, ‖H‖₁,₁, (L0, L1) fits."""

from optprobe.curvature.cauchy import L11Estimate, blockwise_smoothness, hessian_l11, row_l1_norms
from optprobe.curvature.density import SpectralDensity, spectral_density
from optprobe.curvature.full import FullHessianOperator
from optprobe.curvature.ggn import GGNOperator, SplitLoss
from optprobe.curvature.gn_split import GaussNewtonSplit, gauss_newton_split
from optprobe.curvature.hessian_diagonal import (
    DiagonalGeometry,
    diagonal_geometry,
    hessian_rows,
    sample_coordinates,
)
from optprobe.curvature.hutchinson import TraceEstimate, hessian_trace, hutchinson_diagonal
from optprobe.curvature.hutchpp import hutchpp_trace
from optprobe.curvature.hvp import HessianOperator, ParamLayout
from optprobe.curvature.lanczos import Spectrum, sharpness, spectral_norm
from optprobe.curvature.operator import CurvatureOperator, as_linear_operator
from optprobe.curvature.relaxed import RelaxedFit, relaxed_smoothness, relaxed_smoothness_table
from optprobe.curvature.singular import SingularStats, effective_rank, singular_uniformity

__all__ = [
    "as_linear_operator",
    "CurvatureOperator",
    "DiagonalGeometry",
    "FullHessianOperator",
    "GGNOperator",
    "GaussNewtonSplit",
    "HessianOperator",
    "L11Estimate",
    "ParamLayout",
    "RelaxedFit",
    "SingularStats",
    "SpectralDensity",
    "SplitLoss",
    "Spectrum",
    "TraceEstimate",
    "blockwise_smoothness",
    "diagonal_geometry",
    "effective_rank",
    "gauss_newton_split",
    "hessian_l11",
    "hessian_rows",
    "hessian_trace",
    "hutchinson_diagonal",
    "hutchpp_trace",
    "relaxed_smoothness",
    "relaxed_smoothness_table",
    "row_l1_norms",
    "sample_coordinates",
    "sharpness",
    "singular_uniformity",
    "spectral_density",
    "spectral_norm",
]
