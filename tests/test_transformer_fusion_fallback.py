"""`TransformerFusion` overrides Keras's private `MultiHeadAttention._masked_softmax` (no −1e9 sentinel, for
int8 exports). Should Keras rename that method, the override simply stops applying and Keras's own masking
runs: these tests prove that fallback gives the same outputs in float, and a canary says when the internal
method is gone (then the int8 sentinel problem comes back and the override needs a new hook)."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.layers import transformer_fusion


def test_keras_still_has_the_hook_the_override_uses():
    assert callable(getattr(keras.layers.MultiHeadAttention, "_masked_softmax", None)), (
        "keras.layers.MultiHeadAttention no longer has _masked_softmax: TransformerFusion's masking now runs on "
        "Keras's own (-1e9) path; give _MaskedMultiHeadAttention the new hook")


@pytest.mark.parametrize("bottleneck", [0, 2])
def test_without_the_override_keras_masking_gives_the_same_outputs(bottleneck, monkeypatch):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4, t, 8)).astype("float32") for t in (1, 3)]
    mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1]], "float32")
    layer = mk.layers.TransformerFusion(num_blocks=2, num_heads=2, bottleneck_tokens=bottleneck)
    ours = keras.ops.convert_to_numpy(layer(xs, modality_mask=mask))
    # what a Keras without `_masked_softmax` would run: the subclass's method is never looked up
    monkeypatch.delattr(transformer_fusion._MaskedMultiHeadAttention, "_masked_softmax")
    stock = keras.ops.convert_to_numpy(layer(xs, modality_mask=mask))
    np.testing.assert_allclose(stock, ours, rtol=1e-5, atol=1e-6)


def test_the_override_is_the_softmax_that_runs(monkeypatch):
    """So the equality above is not vacuous: the layer's attention goes through the overridden method."""
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(2, t, 8)).astype("float32") for t in (1, 3)]
    mask = np.ones((2, 2), "float32")
    layer = mk.layers.TransformerFusion(num_blocks=1, num_heads=2)
    before = keras.ops.convert_to_numpy(layer(xs, modality_mask=mask))
    monkeypatch.setattr(transformer_fusion._MaskedMultiHeadAttention, "_masked_softmax",
                        lambda self, scores, mask=None: keras.ops.zeros_like(scores))
    after = keras.ops.convert_to_numpy(layer(xs, modality_mask=mask))
    assert np.abs(after - before).max() > 1e-3
