"""Loss balancing and gradient aggregation for multi-task models: `weighting=` on every builder.

`mk.weighting.get(name, **kwargs)` makes an instance; `mk.weighting.names()` lists the methods.
Loss level: static (λ_t), uncertainty (Kendall et al. 2018), dwa (Liu et al. 2019), rlw (Lin et al.
2022). Gradient level (over the shared parameters): gradnorm (Chen et al. 2018) and the Gramian-based
aggregators upgrad, mgda, pcgrad, cagrad, imtl, nash_mtl.
"""

from mtmm_keras.weighting._base import Weighting, get, names, register
from mtmm_keras.weighting.cagrad import CAGrad
from mtmm_keras.weighting.dwa import DWA
from mtmm_keras.weighting.gradnorm import GradNorm
from mtmm_keras.weighting.imtl import IMTLG
from mtmm_keras.weighting.mgda import MGDA
from mtmm_keras.weighting.nash_mtl import NashMTL
from mtmm_keras.weighting.pcgrad import PCGrad
from mtmm_keras.weighting.rlw import RLW
from mtmm_keras.weighting.static import Static
from mtmm_keras.weighting.uncertainty import Uncertainty
from mtmm_keras.weighting.upgrad import UPGrad

__all__ = [
    "CAGrad", "DWA", "GradNorm", "IMTLG", "MGDA", "NashMTL", "PCGrad", "RLW", "Static", "Uncertainty", "UPGrad",
    "Weighting", "get", "names", "register",
]
