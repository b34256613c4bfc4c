"""Image encoder: a small CNN from `[batch, H, W, C]` (or `[batch, H, W]` greyscale) to a feature vector."""

from __future__ import annotations

from typing import Sequence

import keras

from mtmm_keras import _checks

INPUT_DTYPES = ("float32", "uint8", "int32")


def image(
    input_shape: Sequence[int],
    filters: Sequence[int] = (32, 64),
    output_dim: int | None = 64,
    rescale: float | None = None,
    pooling: str = "avg",
    input_name: str = "image",
    name: str = "image_encoder",
    input_dtype: str = "float32",
) -> keras.Model:
    """Conv2D(3×3, ReLU) blocks (2×2 max-pool between them) → global pool → optional Dense.

    This is the spec's image encoder (Conv 64 → Conv 128 → mean pool → Dense 64) with the widths as
    arguments. `rescale` multiplies the input first (e.g. 1/255 for uint8 pixels). `input_dtype` is the
    dtype of the model's Input: "uint8" (or another integer dtype) takes raw pixels as a camera gives
    them, cast to float32 inside the model (then scaled by `rescale`), so exported artifacts take
    them too. `pooling` is
    "avg" or "max" (global pooling: position-free features) or "flatten" (a 2×2 max-pool after every
    block, then flatten: keeps *where* things are, e.g. for left/right items in one image).
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) not in (2, 3):
        raise ValueError(f"`input_shape` must be (height, width) or (height, width, channels), got {input_shape!r}.")
    shape = tuple(_checks.positive_int(d, f"input_shape[{i}]") for i, d in enumerate(shape))
    filters = _checks.units_tuple(filters, "filters", allow_empty=False)
    _checks.one_of(pooling, "pooling", ("avg", "max", "flatten"))
    _checks.one_of(input_dtype, "input_dtype", INPUT_DTYPES)
    pixels = keras.Input(shape=shape, name=input_name, dtype=input_dtype)
    x = pixels
    if len(shape) == 2:
        x = keras.layers.Reshape(shape + (1,), name="add_channel")(x)
    if rescale is not None:  # Rescaling casts its input to float32 first, so it also converts integer pixels
        x = keras.layers.Rescaling(rescale, name="rescale")(x)
    elif input_dtype != "float32":
        x = keras.layers.Rescaling(1.0, name="cast")(x)
    for i, width in enumerate(filters):
        if i > 0 and pooling != "flatten" and min(x.shape[1], x.shape[2]) >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if pooling == "flatten" and min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="mean_pool")(x)
    if output_dim is not None:
        x = keras.layers.Dense(_checks.positive_int(output_dim, "output_dim"), activation="relu", name="features")(x)
    return keras.Model(pixels, x, name=name)
