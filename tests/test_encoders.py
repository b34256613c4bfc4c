import keras
import numpy as np
import pytest

import mtmm_keras as mk


@pytest.mark.parametrize(
    "encoder, batch, out_dim",
    [
        (mk.encoders.text(50, 7, hidden_dim=12), np.ones((3, 7), "int32"), 12),
        (mk.encoders.text(50, 7, hidden_dim=12, kind="conv"), np.ones((3, 7), "int32"), 12),
        (mk.encoders.image((10, 10, 3), output_dim=9), np.zeros((3, 10, 10, 3), "float32"), 9),
        (mk.encoders.image((10, 10), output_dim=None, filters=(4, 6)), np.zeros((3, 10, 10), "float32"), 6),
        (mk.encoders.image((8, 8, 1), filters=(4, 6), output_dim=None, pooling="flatten"), np.zeros((3, 8, 8, 1), "float32"), 2 * 2 * 6),
        (mk.encoders.image((8, 8, 1), filters=(4,), output_dim=None, pooling="max"), np.zeros((3, 8, 8, 1), "float32"), 4),
        (mk.encoders.tabular(5, (7, 3)), np.zeros((3, 5), "float32"), 3),
        (mk.encoders.audio((20, 8), output_dim=11), np.zeros((3, 20, 8), "float32"), 11),
    ],
)
def test_encoder_output_shapes(encoder, batch, out_dim):
    assert encoder.predict(batch, verbose=0).shape == (3, out_dim)


def test_tabular_normalize_layer_is_adaptable_and_saved(tmp_path, rng):
    encoder = mk.encoders.tabular(3, (4,), normalize=True)
    data = rng.normal(loc=5.0, scale=3.0, size=(200, 3)).astype("float32")
    encoder.get_layer("normalize").adapt(data)
    normalized = encoder.get_layer("normalize")(data)
    np.testing.assert_allclose(np.asarray(normalized).mean(axis=0), 0.0, atol=1e-4)
    encoder.save_weights(tmp_path / "enc.weights.h5")
    fresh = mk.encoders.tabular(3, (4,), normalize=True)
    fresh.load_weights(tmp_path / "enc.weights.h5")
    np.testing.assert_allclose(fresh.predict(data[:5], verbose=0), encoder.predict(data[:5], verbose=0), rtol=1e-6)


def test_encoder_argument_errors():
    with pytest.raises(ValueError, match="kind"):
        mk.encoders.text(10, 5, kind="gru")
    with pytest.raises(ValueError, match="vocab_size"):
        mk.encoders.text(0, 5)
    with pytest.raises(ValueError, match="input_shape"):
        mk.encoders.image((8,))
    with pytest.raises(ValueError, match="pooling"):
        mk.encoders.image((8, 8), pooling="spp")
    with pytest.raises(ValueError, match="input_shape"):
        mk.encoders.audio((8, 8, 8))
    with pytest.raises(ValueError, match="hidden_units"):
        mk.encoders.tabular(4, ())


def test_text_lstm_unrolls_short_sequences_by_default_with_the_same_function():
    short, looped = mk.encoders.text(30, 9, hidden_dim=6, unroll=True), mk.encoders.text(30, 9, hidden_dim=6, unroll=False)
    assert short.get_layer("lstm").unroll is True and looped.get_layer("lstm").unroll is False
    # the default: unrolled on TensorFlow and PyTorch, a loop on JAX (XLA compiles and trains the loop faster)
    assert mk.encoders.text(30, 9, hidden_dim=6).get_layer("lstm").unroll is (keras.backend.backend() != "jax")
    from mtmm_keras.encoders.text import UNROLL_MAX_LENGTH

    long = mk.encoders.text(30, UNROLL_MAX_LENGTH + 1, hidden_dim=6)
    assert long.get_layer("lstm").unroll is False
    looped.set_weights(short.get_weights())
    tokens = np.random.default_rng(0).integers(0, 30, size=(4, 9)).astype("int32")
    np.testing.assert_allclose(short.predict(tokens, verbose=0), looped.predict(tokens, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="unroll"):
        mk.encoders.text(30, 9, unroll="yes")
