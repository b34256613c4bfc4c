import keras
import numpy as np
import pytest

import mtmm_keras as mk


def _reference_fusion(h, W, b, v, mask=None):
    e = np.tanh(h @ W + b) @ v  # [B, M]
    if mask is not None:
        e = np.where(mask > 0, e, -np.inf)
    alpha = np.exp(e - e.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    return (alpha[..., None] * h).sum(axis=1), alpha


def test_attention_fusion_matches_spec_formula(rng):
    layer = mk.layers.AttentionFusion(attention_units=5)
    h = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]
    fused, alpha = layer(h, return_attention_scores=True)
    W, b, v = (keras.ops.convert_to_numpy(w) for w in (layer.W, layer.b, layer.v))
    want_fused, want_alpha = _reference_fusion(np.stack(h, 1), W, b, v)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(alpha), want_alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused), want_fused, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(alpha).sum(axis=1), 1.0, rtol=1e-6)


def test_attention_fusion_mask_gives_zero_weight(rng):
    layer = mk.layers.AttentionFusion()
    h = rng.normal(size=(3, 4, 8)).astype("float32")
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 0]], dtype="float32")
    fused, alpha = layer(h, modality_mask=mask, return_attention_scores=True)
    alpha = keras.ops.convert_to_numpy(alpha)
    assert np.all(alpha[mask == 0] == 0.0)
    np.testing.assert_allclose(alpha[:2].sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(fused)))  # all-missing row is 0, not NaN
    W, b, v = (keras.ops.convert_to_numpy(w) for w in (layer.W, layer.b, layer.v))
    np.testing.assert_allclose(alpha[:2], _reference_fusion(h[:2], W, b, v, mask[:2])[1], rtol=1e-5, atol=1e-6)


def test_attention_fusion_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        mk.layers.AttentionFusion()([keras.Input((4,))])
    with pytest.raises(ValueError, match="share one known feature size"):
        mk.layers.AttentionFusion()([keras.Input((4,)), keras.Input((5,))])
    with pytest.raises(ValueError, match="attention_units"):
        mk.layers.AttentionFusion(attention_units=0)


def test_stacked_dense_equals_independent_dense_towers(rng):
    layer = mk.layers.StackedDense(3, 5, activation="relu")
    x = rng.normal(size=(4, 7)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    for t in range(3):
        np.testing.assert_allclose(y[:, t], np.maximum(x @ kernel[t] + bias[t], 0), rtol=1e-5, atol=1e-6)
    # per-tower input [B, T, in]
    stacked = rng.normal(size=(4, 3, 5)).astype("float32")
    layer2 = mk.layers.StackedDense(3, 2)
    out = keras.ops.convert_to_numpy(layer2(stacked))
    k2, b2 = (keras.ops.convert_to_numpy(w) for w in (layer2.kernel, layer2.bias))
    np.testing.assert_allclose(out[:, 1], stacked[:, 1] @ k2[1] + b2[1], rtol=1e-5, atol=1e-6)
    # each tower is initialised independently, with per-tower Glorot scale
    limit = np.sqrt(6.0 / (7 + 5))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
    assert not np.allclose(kernel[0], kernel[1])


def test_stacked_dense_tower_count_mismatch():
    with pytest.raises(ValueError, match="axis 1 must be 3"):
        mk.layers.StackedDense(3, 4)(keras.Input((2, 6)))


@pytest.mark.parametrize(
    "layer",
    [
        mk.layers.AttentionFusion(attention_units=7),
        mk.layers.StackedDense(2, 3, activation="tanh", kernel_regularizer=mk.regularizers.ParameterDistance(0.1)),
        mk.layers.SplitTowers(),
    ],
)
def test_layer_configs_round_trip(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"].startswith("mtmm>")
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()


def test_standardization_adapts_and_exports_statistics_as_weights(rng):
    data = rng.normal(loc=3.0, scale=2.0, size=(500, 4)).astype("float32")
    layer = mk.layers.Standardization()
    layer.adapt(data)
    out = keras.ops.convert_to_numpy(layer(data))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    assert [w.name for w in layer.non_trainable_weights] == ["mean", "variance"]
    with pytest.raises(ValueError, match="finite"):
        layer.adapt(np.full((3, 4), np.nan, "float32"))


# --- small layers whose every branch a test must see (benchmarks/mutation.py found these untested) -----------

def test_learned_temperature_caps_at_clips_100_and_adds_siglips_bias():
    import math

    s = np.array([[0.5, -0.25], [0.1, 1.0]], "float32")
    plain = mk.layers.LearnedTemperature(init_logit_scale=math.log(10.0))
    assert plain.get_config()["max_logit_scale"] == 100.0  # CLIP's cap, the documented default
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(s)), 10.0 * s, rtol=1e-6)
    plain.logit_scale.assign(math.log(1000.0))  # past the cap (as a training step could leave it): used as 100
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(s)), 100.0 * s, rtol=1e-5)
    biased = mk.layers.LearnedTemperature(init_logit_scale=math.log(10.0), init_logit_bias=-10.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(biased(s)), 10.0 * s - 10.0, rtol=1e-6)


def test_token_ids_to_padding_mask_and_segment_ids():
    tokens = np.array([[5, 3, 0, 0], [7, 1, 1, 2]], "int32")
    mask = mk.layers.TokenIdsTo("padding_mask")(tokens)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), tokens != 0)
    mask1 = mk.layers.TokenIdsTo("padding_mask", padding_id=1)(tokens)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask1), tokens != 1)
    segments = mk.layers.TokenIdsTo("segment_ids")(tokens)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(segments), np.zeros_like(tokens))
    for bad in (True, 1.0, "0"):
        with pytest.raises(TypeError, match="`padding_id` must be an integer token id"):
            mk.layers.TokenIdsTo("padding_mask", padding_id=bad)


def test_sequence_pooling_without_a_mask_is_the_plain_mean(rng):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mk.layers.SequencePooling("mean")(x)), x.mean(axis=1),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mk.layers.SequencePooling("first")(x)), x[:, 0])


def test_standardization_adapt_builds_an_unbuilt_layer(rng):
    data = rng.normal(loc=3.0, scale=2.0, size=(64, 5)).astype("float32")
    layer = mk.layers.Standardization()
    layer.adapt(data)  # not built yet: adapt builds it
    out = keras.ops.convert_to_numpy(layer(data))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-4)


def test_split_towers_output_shape_and_its_errors():
    layer = mk.layers.SplitTowers()
    assert layer.compute_output_shape((None, 3, 5)) == [(None, 5)] * 3
    for bad in ((None, None, 5), (None, 5)):
        with pytest.raises(ValueError, match="SplitTowers expects"):
            layer.compute_output_shape(bad)


def test_fusion_layers_called_on_symbolic_inputs_without_attention_scores():
    """Keras asks `compute_output_spec` when a fusion layer is called on `keras.Input`s (a user's own model)."""
    flat = [keras.Input((6,)), keras.Input((6,))]
    fused = mk.layers.AttentionFusion(attention_units=4)(flat)
    assert tuple(fused.shape) == (None, 6)
    tokens = [keras.Input((3, 8)), keras.Input((2, 8))]
    fused = mk.layers.TransformerFusion(num_heads=2)(tokens)
    assert tuple(fused.shape) == (None, 8)


def test_fusion_layers_refuse_one_modality_and_inputs_of_the_wrong_rank():
    flat, seq = np.zeros((2, 6), "float32"), np.zeros((2, 3, 8), "float32")
    with pytest.raises(ValueError, match="ConcatFusion needs at least 2 modalities, got 1"):
        mk.layers.ConcatFusion()([flat])
    with pytest.raises(ValueError, match=r"GatedFusion inputs must each be \[batch, features\]"):
        mk.layers.GatedFusion(units=4)([seq, seq])
    with pytest.raises(ValueError, match=r"TransformerFusion inputs must each be \[batch, tokens, d\]"):
        mk.layers.TransformerFusion()([np.zeros((2, 8), "float32"), np.zeros((2, 8), "float32")])


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_dselect_k_smooth_step_is_the_papers_cubic(gamma):
    """Hazimeh et al. 2021, eq. 4: 0 below −γ/2, 1 above γ/2, −2t³/γ³ + 3t/(2γ) + 1/2 in between."""
    gate = mk.layers.DSelectKGate(num_experts=4, gamma=gamma)
    assert gate.k == 2  # the documented default
    t = gamma * np.array([-1.0, -0.5, -0.2, 0.0, 0.25, 0.5, 1.0], "float32")
    cubic = -2.0 * t**3 / gamma**3 + 1.5 * t / gamma + 0.5
    want = np.where(t <= -gamma / 2, 0.0, np.where(t >= gamma / 2, 1.0, cubic))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gate.smooth_step(t)), want, atol=1e-6)


@pytest.mark.parametrize("num_experts", [4, 5, 8])
def test_dselect_k_selects_a_distribution_over_the_experts(num_experts, rng):
    """Every row is non-negative and sums to 1, for 2 and 3 binary digits (a product over several digits)."""
    gate = mk.layers.DSelectKGate(num_experts=num_experts, k=2, gamma=4.0)
    out = keras.ops.convert_to_numpy(gate(rng.normal(size=(16, 6)).astype("float32")))
    assert out.shape == (16, num_experts) and out.min() >= 0.0
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.ptp(out, axis=0).max() > 1e-3  # the rows differ: the selectors read the input


def test_mix_experts_output_shape_checks_the_expert_count():
    layer = mk.layers.MixExperts()
    assert layer.compute_output_shape([(None, 3, 5), (None, 3)]) == (None, 5)
    assert layer.compute_output_shape([(None, None, 5), (None, 3)]) == (None, 5)
    with pytest.raises(ValueError, match="MixExperts expects"):
        layer.compute_output_shape([(None, 3, 5), (None, 4)])
