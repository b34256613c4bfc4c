"""Missing modalities (issue 11): every fusion builder takes `modality_dropout` / `modality_mask`; a masked modality
cannot change the outputs whatever its input holds; `ModalityDropout` drops at the documented rate and never a
whole row; `fit`/`predict` without the mask treat every modality as present; bad masks are clear errors.
Runs on TF and on JAX."""

import re

import keras
import numpy as np
import pytest

import mtmm_keras as mk

BUILDERS = {
    "attention_fusion": lambda enc, **kw: mk.builders.attention_fusion(enc, _tasks(), fusion_dim=8, **kw),
    "concat_fusion": lambda enc, **kw: mk.builders.concat_fusion(enc, _tasks(), fusion_dim=8, hidden_units=(8,), **kw),
    "gated_fusion": lambda enc, **kw: mk.builders.gated_fusion(enc, _tasks(), fusion_dim=8, **kw),
    "transformer_fusion": lambda enc, **kw: mk.builders.transformer_fusion(enc, _tasks(), fusion_dim=8, num_blocks=2, **kw),
    "bottleneck_fusion": lambda enc, **kw: mk.builders.transformer_fusion(enc, _tasks(), fusion_dim=8, bottleneck_tokens=2, **kw),
}
MODALITIES = ("image", "tabular", "audio")


def _tasks():
    return [mk.Task("c", 3, loss="sparse_categorical_crossentropy"), mk.Task("a", 1)]


def _encoders():
    seq_in = keras.Input((4, 3), name="audio")
    return {"image": mk.encoders.image((8, 8, 1), filters=(4,), output_dim=8), "tabular": mk.encoders.tabular(6, (8,)),
            # a sequence encoder ([batch, 4, 5]): four tokens in transformer_fusion, flattened elsewhere
            "audio": keras.Model(seq_in, keras.layers.Dense(5, activation="tanh")(seq_in), name="audio_encoder")}


def _inputs(n, rng, scale=1.0):
    return {"image": (scale * rng.normal(size=(n, 8, 8, 1))).astype("float32"),
            "tabular": (scale * rng.normal(size=(n, 6))).astype("float32"),
            "audio": (scale * rng.normal(size=(n, 4, 3))).astype("float32")}


def _np(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


# every pattern of present/missing modalities over three columns, the all-missing row included
MASK = np.array([[int(b) for b in f"{i:03b}"] for i in range(8)] * 2, "float32")


@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_masked_modality_cannot_change_the_outputs(name, rng):
    model = BUILDERS[name](_encoders(), modality_dropout=0.25, compile=False)
    n = len(MASK)
    x = {**_inputs(n, rng), "modality_mask": MASK}
    reference = _np(model(x, training=False))
    for garbage in (np.zeros, lambda shape: 1e3 * rng.normal(size=shape), lambda shape: np.full(shape, np.nan)):
        for column, modality in enumerate(MODALITIES):
            changed = dict(x)
            changed[modality] = garbage(x[modality].shape).astype("float32")
            got = _np(model(changed, training=False))
            missing = MASK[:, column] == 0
            for key in reference:
                np.testing.assert_allclose(got[key][missing], reference[key][missing], rtol=1e-6, atol=1e-6,
                                           err_msg=f"{name}: {modality} masked, output {key}")
                # and a present modality does matter (the test can fail)
                assert not np.allclose(got[key][~missing], reference[key][~missing], atol=1e-4), (name, modality, key)
    # a row with every modality missing gives the outputs of a zero fused vector: the same for any inputs
    empty = MASK.sum(axis=1) == 0
    other = _np(model({**_inputs(n, rng, scale=50.0), "modality_mask": MASK}, training=False))
    for key in reference:
        assert np.all(np.isfinite(reference[key]))
        np.testing.assert_allclose(other[key][empty], reference[key][empty], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["attention_fusion", "gated_fusion", "transformer_fusion"])
def test_missing_modalities_get_zero_weight_in_the_read_out(name, rng):
    model = BUILDERS[name](_encoders(), modality_mask=True, compile=False)
    weights = _np(mk.builders.fusion_weights(model)({**_inputs(len(MASK), rng), "modality_mask": MASK}))
    if name == "attention_fusion":
        alpha = weights["attention"]
        assert np.all(alpha[MASK == 0] == 0.0)
        np.testing.assert_allclose(alpha.sum(axis=1), (MASK.sum(axis=1) > 0).astype("float32"), rtol=1e-6)
    elif name == "gated_fusion":
        gates = weights["gates"]
        assert np.all(gates[MASK == 0] == 0.0)
        np.testing.assert_allclose(gates.sum(axis=1)[MASK.sum(axis=1) > 0], 1.0, rtol=1e-6)
    else:  # tokens: image (1), tabular (1), audio (4); no present query attends to a missing key
        token_mask = np.concatenate([MASK[:, :1], MASK[:, 1:2], np.repeat(MASK[:, 2:], 4, axis=1)], axis=1)
        for maps in weights.values():
            rows = MASK.sum(axis=1) > 0
            keys = np.broadcast_to(token_mask[:, None, None, :] == 0, maps.shape)
            assert np.all(maps[rows][keys[rows]] < 1e-12)


def test_modality_dropout_rate_never_all_and_identity_at_inference():
    layer = mk.layers.ModalityDropout(0.4, seed=1)
    m, n = 3, 20000
    full = np.ones((n, m), "float32")
    dropped = keras.ops.convert_to_numpy(layer(full, training=True))
    assert set(np.unique(dropped)) == {0.0, 1.0}
    assert dropped.sum(axis=1).min() >= 1  # never all of a row's modalities
    rate = 1.0 - dropped.mean()
    assert rate == pytest.approx(0.4 - 0.4 ** m / m, abs=0.01)  # independent drops, one restored in emptied rows
    partial = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]] * 2000, "float32")
    out = keras.ops.convert_to_numpy(layer(partial, training=True))
    assert np.all(out <= partial)  # a missing modality is never brought back
    assert np.all(out[partial.sum(axis=1) > 0].sum(axis=1) >= 1) and np.all(out[2::3] == 0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(partial, training=False)), partial)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(0.9 * partial)), partial)  # > 0.5 is present
    restored = mk.layers.ModalityDropout.from_config(layer.get_config())
    assert (restored.rate, restored.seed) == (0.4, 1)
    with pytest.raises(ValueError, match=re.escape("`rate` must be a number in [0, 1), got 1.0.")):
        mk.layers.ModalityDropout(1.0)


def test_fit_with_modality_dropout_and_predict_without_the_mask(rng):
    n = 64
    x = _inputs(n, rng)
    y = {"c": rng.integers(0, 3, size=n), "a": rng.normal(size=(n, 1)).astype("float32")}
    model = BUILDERS["gated_fusion"](_encoders(), modality_dropout=0.3, learning_rate=0.01)
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)  # no mask given: all present, then dropped
    assert np.all(np.isfinite(history.history["loss"]))
    some = {"image": x["image"][:8], "tabular": x["tabular"][:8], "audio": x["audio"][:8]}
    without = model.predict(some, verbose=0)
    with_ones = model.predict({**some, "modality_mask": np.ones((8, 3), "float32")}, verbose=0)
    for key in without:
        np.testing.assert_allclose(without[key], with_ones[key], rtol=1e-6, atol=1e-6)
    model.evaluate(x, y, verbose=0)  # evaluate fills the mask too
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=(some, {k: v[:8] for k, v in y.items()}))
    # training does drop modalities: the dropout layer's training output differs from its input
    dropout = model.get_layer("modality_dropout")
    assert float(keras.ops.convert_to_numpy(dropout(np.ones((200, 3), "float32"), training=True)).mean()) < 0.9


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a tf.data pipeline")
def test_tf_data_without_the_mask_gets_ones(rng):
    import tensorflow as tf

    x = _inputs(32, rng)
    y = {"c": rng.integers(0, 3, size=32), "a": rng.normal(size=(32, 1)).astype("float32")}
    model = BUILDERS["concat_fusion"](_encoders(), modality_mask=True)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    got = model.predict(tf.data.Dataset.from_tensor_slices(x).batch(16), verbose=0)
    want = model.predict({**x, "modality_mask": np.ones((32, 3), "float32")}, verbose=0)
    np.testing.assert_allclose(got["a"], want["a"], rtol=1e-6, atol=1e-6)


def test_bad_masks_are_clear_errors(rng):
    model = BUILDERS["attention_fusion"](_encoders(), modality_mask=True)
    x = _inputs(4, rng)
    with pytest.raises(ValueError, match=r"^input 'modality_mask' has shape \(4, 2\), but the model expects \[rows, 3\]: "
                                         r"one column per modality, in the order of the `encoders` dict"):
        model.predict({**x, "modality_mask": np.ones((4, 2), "float32")}, verbose=0)
    with pytest.raises(ValueError, match=re.escape("input 'modality_mask' must hold only 0 (modality missing) and 1 "
                                                   "(present); 12 value(s) are neither (first at row 0: 0.5).")):
        model.predict({**x, "modality_mask": np.full((4, 3), 0.5, "float32")}, verbose=0)
    # calling the model directly skips fit/predict's checks: Keras's own input-spec error, which must still name
    # the mask input and both shapes
    with pytest.raises(ValueError, match=r"^Input 2 with name 'modality_mask' of layer 'attention_fusion' is "
                                         r"incompatible with the layer: expected shape=\(None, 3\), found shape=\(4, 2\)"):
        model({**x, "modality_mask": np.ones((4, 2), "float32")})
