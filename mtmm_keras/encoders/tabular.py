"""Tabular encoder: an MLP over a `[batch, input_dim]` float feature vector."""

from __future__ import annotations

from typing import Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.layers.piecewise_linear import PiecewiseLinearEncoding
from mtmm_keras.layers.standardization import Standardization

NUMERIC_ENCODINGS = ("piecewise_linear",)


def tabular(
    input_dim: int,
    hidden_units: Sequence[int] = (64,),
    activation: str = "relu",
    dropout: float = 0.0,
    normalize: bool = False,
    numeric_encoding: str | None = None,
    num_bins: int = 8,
    input_name: str = "features",
    name: str = "tabular_encoder",
) -> keras.Model:
    """Dense(ReLU) layers over numeric features.

    Features should be standardised: do it beforehand, or pass `normalize=True` for an
    `mk.layers.Standardization` layer (named "normalize") to `adapt()` on the training data —
    its statistics are weights, so they are saved and exported (ONNX too) with the model.
    `numeric_encoding="piecewise_linear"` encodes each feature over `num_bins` quantile bins first
    (`mk.layers.PiecewiseLinearEncoding`, named "numeric_encoding", also adapted on the training data).
    """
    input_dim = _checks.positive_int(input_dim, "input_dim")
    hidden_units = _checks.units_tuple(hidden_units, "hidden_units", allow_empty=False)
    dropout = _checks.non_negative_float(dropout, "dropout")
    if numeric_encoding is not None:
        _checks.one_of(numeric_encoding, "numeric_encoding", NUMERIC_ENCODINGS)
    num_bins = _checks.positive_int(num_bins, "num_bins")
    features = keras.Input(shape=(input_dim,), name=input_name)
    x = Standardization(name="normalize")(features) if normalize else features
    if numeric_encoding == "piecewise_linear":
        x = PiecewiseLinearEncoding(num_bins, name="numeric_encoding")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation=activation, name=f"dense{i + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout{i + 1}")(x)
    return keras.Model(features, x, name=name)
