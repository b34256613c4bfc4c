"""Audio encoder: Conv1D over time on a `[batch, frames, bins]` spectrogram."""

from __future__ import annotations

from typing import Sequence

import keras

from mtmm_keras import _checks


def audio(
    input_shape: Sequence[int],
    filters: Sequence[int] = (32, 64),
    output_dim: int | None = 64,
    input_name: str = "audio",
    name: str = "audio_encoder",
) -> keras.Model:
    """Conv1D(5, ReLU) blocks over frames (2× max-pool between) → global mean pool → optional Dense."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 2:
        raise ValueError(f"`input_shape` must be (frames, frequency_bins), got {input_shape!r}.")
    shape = tuple(_checks.positive_int(d, f"input_shape[{i}]") for i, d in enumerate(shape))
    filters = _checks.units_tuple(filters, "filters", allow_empty=False)
    spectrogram = keras.Input(shape=shape, name=input_name)
    x = spectrogram
    for i, width in enumerate(filters):
        if i > 0 and x.shape[1] >= 4:
            x = keras.layers.MaxPooling1D(2, name=f"pool{i}")(x)
        x = keras.layers.Conv1D(width, 5, padding="same", activation="relu", name=f"conv{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    if output_dim is not None:
        x = keras.layers.Dense(_checks.positive_int(output_dim, "output_dim"), activation="relu", name="features")(x)
    return keras.Model(spectrogram, x, name=name)
