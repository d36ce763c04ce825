"""The optimizers the studies compare, random scaling, and rotated losses."""

from optprobe.optim.blockwise import AdamProx, AdaSGD, BlockwiseAdam
from optprobe.optim.normalized import ClippedSGD, NormalizedSGD
from optprobe.optim.random_scaling import RandomScaling
from optprobe.optim.registry import OPTIMIZERS, build_optimizer
from optprobe.optim.rotation import RotatedModel, StructuredRotation, rotate_model
from optprobe.optim.sign import GeneralizedSignSGD

__all__ = [
    "OPTIMIZERS",
    "AdaSGD",
    "AdamProx",
    "BlockwiseAdam",
    "ClippedSGD",
    "GeneralizedSignSGD",
    "NormalizedSGD",
    "RandomScaling",
    "RotatedModel",
    "StructuredRotation",
    "build_optimizer",
    "rotate_model",
]
