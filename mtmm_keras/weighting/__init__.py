"""Loss balancing and gradient aggregation for multi-task models: `weighting=` on every builder.

`mk.weighting.get(name, **kwargs)` makes an instance; `mk.weighting.names()` lists the methods.
Loss level: static (λ_t), uncertainty (Kendall et al. 2018), dwa (Liu et al. 2019), rlw (Lin et al.
2022). Gradient level (over the shared parameters): gradnorm (Chen et al. 2018) and the Gramian-based
aggregators (upgrad, mgda, pcgrad, cagrad, imtl, nash_mtl).
"""

import importlib as _importlib

from mtmm_keras.weighting._base import Weighting, get, names, register
from mtmm_keras.weighting.dwa import DWA
from mtmm_keras.weighting.rlw import RLW
from mtmm_keras.weighting.static import Static
from mtmm_keras.weighting.uncertainty import Uncertainty

__all__ = ["DWA", "RLW", "Static", "Uncertainty", "Weighting", "get", "names", "register"]

# Methods whose files other work streams are still writing: imported when present.
for _module in ("gradnorm", "upgrad", "mgda", "pcgrad", "cagrad", "imtl", "nash_mtl"):
    try:
        _importlib.import_module(f"mtmm_keras.weighting.{_module}")
    except ModuleNotFoundError as _error:
        if _error.name != f"mtmm_keras.weighting.{_module}":
            raise
del _importlib
