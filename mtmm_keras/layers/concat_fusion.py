"""ConcatFusion: late fusion by concatenation, h = [x_1, …, x_M] (missing modalities zeroed, plus the mask)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras.layers.modality_mask import present, zero_missing


@keras.saving.register_keras_serializable(package="mtmm")
class ConcatFusion(keras.layers.Layer):
    """Concatenate M modality vectors `[batch, d_m]` into `[batch, Σ d_m]`, the baseline fusion.

    With `modality_mask` (`[batch, M]`, 1 = present) a missing modality's features are replaced by zeros
    (whatever its input held, the output is the same) and, with `append_mask=True`, the 0/1 mask itself is
    appended (`[batch, Σ d_m + M]`), so the layers after it can tell a missing modality from one whose
    features happen to be zero. A row with every modality missing becomes the zero vector.
    """

    def __init__(self, append_mask: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(append_mask, bool):
            raise TypeError(f"`append_mask` must be True or False, got {append_mask!r}.")
        self.append_mask = append_mask

    @staticmethod
    def _sizes(input_shape: Any) -> list[int]:
        if not (isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple))):
            raise ValueError(f"ConcatFusion takes a list of [batch, features] tensors, one per modality; got {input_shape}.")
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise ValueError(f"ConcatFusion needs at least 2 modalities, got {len(shapes)}.")
        if any(len(s) != 2 or s[-1] is None for s in shapes):
            raise ValueError(f"ConcatFusion inputs must each be [batch, features] with a known size; got shapes {shapes}.")
        return [int(s[-1]) for s in shapes]

    def build(self, input_shape: Any) -> None:
        """Create `ConcatFusion`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        self._sizes(input_shape)

    def call(self, inputs: Any, modality_mask: Any = None) -> Any:
        """Run `ConcatFusion` on its inputs (the computation is described in the class docstring)."""
        xs = list(inputs)
        if modality_mask is None:
            return ops.concatenate(xs, axis=-1)
        mask = present(modality_mask, xs[0].dtype)
        xs = [zero_missing(x, mask[:, m:m + 1]) for m, x in enumerate(xs)]
        return ops.concatenate(xs + [mask] if self.append_mask else xs, axis=-1)

    def compute_output_spec(self, inputs: Any, modality_mask: Any = None) -> Any:
        """The output's shape and dtype for symbolic inputs, without running the layer."""
        sizes = self._sizes([tuple(t.shape) for t in inputs])
        width = sum(sizes) + (len(sizes) if modality_mask is not None and self.append_mask else 0)
        return keras.KerasTensor((inputs[0].shape[0], width), dtype=inputs[0].dtype)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(append_mask=self.append_mask)
        return config
