"""Wrap a pretrained-architecture backbone (keras-hub's BertBackbone, ViTBackbone, ... or any functional
`keras.Model`) as an encoder with ONE input and ONE feature-vector output, so every builder takes it.

keras-hub is an optional extra (`pip install "mtmm-keras[hub]"`): this module never imports it at import
time, only when a backbone is given by preset name. Reloading a saved model needs no import either: Keras
imports a `keras_hub.*` class's module itself when a `.keras` file names one.
"""

from __future__ import annotations

from typing import Any

import keras

from mtmm_keras import _checks
from mtmm_keras._extras import require
from mtmm_keras.layers.token_ids import DERIVED_INPUTS, TokenIdsTo  # noqa: F401  (TokenIdsTo: importable here, as in 0.1)
from mtmm_keras.layers.transformer_text import PaddingMask, SequencePooling

POOLINGS = ("cls", "mean", "pooled")
# Backbone inputs derived from the token ids inside the wrapper (so the encoder has one input).
SEQUENCE_KEYS = ("sequence_output", "last_hidden_state", "encoder_sequence_output")
POOLED_KEYS = ("pooled_output",)


def _load_preset(preset: str) -> keras.Model:
    require(["keras_hub"], "hub", "mk.encoders.from_backbone with a preset name")
    import keras_hub

    return keras_hub.models.Backbone.from_preset(preset)


def _split_outputs(output: Any) -> tuple[Any, Any]:
    """(sequence output or None, pooled output or None) of a backbone's symbolic output."""
    if isinstance(output, dict):
        sequence = next((output[k] for k in SEQUENCE_KEYS if k in output), None)
        pooled = next((output[k] for k in POOLED_KEYS if k in output), None)
        if sequence is None and pooled is None:
            raise ValueError(f"The backbone's output dict has none of {SEQUENCE_KEYS + POOLED_KEYS}; its keys: {sorted(output)}.")
        return sequence, pooled
    if isinstance(output, (list, tuple)):
        raise ValueError(f"The backbone must have one output (a tensor or a dict with 'sequence_output'), it has {len(output)}.")
    rank = len(output.shape)
    if rank == 3:
        return output, None
    if rank == 2:
        return None, output
    raise ValueError(f"The backbone's output must be [batch, length, dim] or [batch, dim], got shape {tuple(output.shape)}.")


def from_backbone(
    backbone: keras.Model | str,
    pooling: str = "mean",
    input_name: str | None = None,
    sequence_length: int | None = None,
    output_dim: int | None = None,
    padding_id: int = 0,
    name: str | None = None,
) -> keras.Model:
    """Encoder `keras.Model` with one input and one `[batch, dim]` output around `backbone`.

    `backbone`: a keras-hub backbone (BertBackbone, ViTBackbone, ...) built from a config or
    `from_preset`, a preset name or folder (loaded with `keras_hub.models.Backbone.from_preset`; needs the
    `hub` extra), or any functional `keras.Model` whose output is a sequence `[batch, length, dim]`, a
    vector `[batch, dim]`, or a dict with "sequence_output" and/or "pooled_output".

    A backbone with several inputs is fed from one: the token ids ("token_ids"); its "padding_mask" is
    derived inside the model as token_ids != `padding_id` and its "segment_ids" are zeros (registered
    `TokenIdsTo` layers). Text inputs with an unknown length get `sequence_length` (default: the
    backbone's `max_sequence_length`), which exports need.

    `pooling`: "cls" (the first position: BERT's [CLS], ViT's class token), "mean" (the mean over
    positions; for token inputs only the real tokens, padding excluded) or "pooled" (the backbone's own
    pooled output, e.g. BERT's tanh layer over [CLS]). `output_dim` adds a Dense(ReLU) projection.
    `input_name` names the input (default: the backbone's input name).
    """
    if isinstance(backbone, str):
        backbone = _load_preset(backbone)
    if not isinstance(backbone, keras.Model):
        raise TypeError(f"`backbone` must be a keras.Model (e.g. a keras_hub backbone) or a preset name, got {type(backbone).__name__}.")
    _checks.one_of(pooling, "pooling", POOLINGS)
    if not isinstance(padding_id, int) or isinstance(padding_id, bool):
        raise TypeError(f"`padding_id` must be an integer token id, got {padding_id!r}.")
    if sequence_length is not None:
        sequence_length = _checks.positive_int(sequence_length, "sequence_length")
    if input_name is not None and (not isinstance(input_name, str) or not input_name):
        raise ValueError(f"`input_name` must be a non-empty string, got {input_name!r}.")

    # 1. the one input, and the backbone's inputs fed from it
    structure = backbone.input
    if isinstance(structure, dict):
        main = [key for key in structure if key not in DERIVED_INPUTS]
        if len(main) != 1:
            raise ValueError(
                f"`backbone` {backbone.name!r} has inputs {sorted(structure)}: from_backbone feeds one input and derives "
                f"only {DERIVED_INPUTS} from token ids, so it needs exactly one other input; got {main}.")
        main_key = main[0]
        derived = [key for key in structure if key in DERIVED_INPUTS]
        if derived and main_key != "token_ids":
            raise ValueError(f"`backbone` {backbone.name!r}: {derived} can only be derived from a 'token_ids' input, not {main_key!r}.")
        spec = structure[main_key]
    elif isinstance(structure, (list, tuple)):
        raise ValueError(f"`backbone` {backbone.name!r} must take one input or a dict of inputs; it takes {len(structure)} positional inputs.")
    else:
        main_key, derived, spec = None, [], structure
    shape = tuple(spec.shape[1:])
    is_tokens = main_key == "token_ids" or (main_key is None and "int" in str(spec.dtype) and len(shape) == 1)
    if is_tokens and shape[0] is None:
        shape = (sequence_length or backbone.get_config().get("max_sequence_length") or None,)
    elif sequence_length is not None and not is_tokens:
        raise ValueError("`sequence_length` applies to token-id inputs only; this backbone takes "
                         f"{spec.dtype} inputs of shape {tuple(spec.shape)}.")
    default_name = main_key or spec.name.split(":")[0]
    inputs = keras.Input(shape=shape, dtype=spec.dtype, name=input_name or default_name)
    sequence_only, _ = _split_outputs(backbone.output)
    if pooling != "pooled" and isinstance(backbone.output, dict) and sequence_only is not None:
        # the backbone's graph up to its sequence output only: layers that feed just the pooled output
        # (BERT's pooled_dense) would get no gradient and make every fit warn about it
        backbone = keras.Model(backbone.input, sequence_only, name=backbone.name)
    if isinstance(structure, dict):
        feed = {main_key: inputs}
        for key in derived:
            feed[key] = TokenIdsTo(key, padding_id=padding_id, name=key)(inputs)
        output = backbone(feed)
    else:
        output = backbone(inputs)

    # 2. pooling
    sequence, pooled = _split_outputs(output)
    if pooling == "pooled":
        if pooled is None:
            raise ValueError(f"pooling='pooled': backbone {backbone.name!r} has no pooled output; use 'cls' or 'mean'.")
        x = pooled
    else:
        if sequence is None:
            raise ValueError(f"pooling={pooling!r} needs a sequence output; backbone {backbone.name!r} gives only a "
                             "[batch, dim] vector: use pooling='pooled'.")
        if pooling == "cls":
            x = SequencePooling("first", name="pool")(sequence)
        elif is_tokens:
            if sequence.shape[1] != inputs.shape[1]:
                raise ValueError(f"pooling='mean': backbone {backbone.name!r} returns {sequence.shape[1]} positions for "
                                 f"{inputs.shape[1]} tokens, so its padding cannot be masked; use 'cls' or 'pooled'.")
            mask = PaddingMask(padding_id, name="pool_mask")(inputs)
            x = SequencePooling("mean", name="pool")(sequence, padding_mask=mask)
        else:
            x = SequencePooling("mean", name="pool")(sequence)
    if output_dim is not None:
        x = keras.layers.Dense(_checks.positive_int(output_dim, "output_dim"), activation="relu", name="features")(x)
    return keras.Model(inputs, x, name=name or f"{backbone.name}_encoder")
