"""Loss balancing and gradient aggregation for multi-task models: `weighting=` on every builder.

`mk.weighting.get(name, **kwargs)` makes an instance; `mk.weighting.names()` lists the methods.
"""

from mtmm_keras.weighting._base import Weighting, get, names, register

__all__ = ["Weighting", "get", "names", "register"]
