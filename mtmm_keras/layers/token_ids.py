"""`TokenIdsTo`: the companion inputs a text backbone wants (padding mask, segment ids), derived inside the model
from its token ids, so an encoder built by `mk.encoders.from_backbone` takes token ids alone."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks

DERIVED_INPUTS = ("padding_mask", "segment_ids")


@keras.saving.register_keras_serializable(package="mtmm")
class TokenIdsTo(keras.layers.Layer):
    """Token ids → a companion input a text backbone wants: "padding_mask" (1 where id != `padding_id`,
    else 0) or "segment_ids" (all zeros: a single segment). Same shape, int32."""

    KINDS = DERIVED_INPUTS

    def __init__(self, kind: str, padding_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.kind = _checks.one_of(kind, "kind", self.KINDS)
        if not isinstance(padding_id, int) or isinstance(padding_id, bool):
            raise TypeError(f"`padding_id` must be an integer token id, got {padding_id!r}.")
        self.padding_id = padding_id

    def call(self, tokens: Any) -> Any:
        """Run `TokenIdsTo` on its inputs (the computation is described in the class docstring)."""
        if self.kind == "segment_ids":
            return ops.zeros_like(ops.cast(tokens, "int32"))
        return ops.cast(ops.not_equal(tokens, ops.cast(self.padding_id, tokens.dtype)), "int32")

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(kind=self.kind, padding_id=self.padding_id)
        return config
