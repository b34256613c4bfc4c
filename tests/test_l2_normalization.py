"""`mk.layers.L2Normalization`: UnitNormalization's values with a finite gradient at an all-zero row
(Keras's layer gives NaN there on JAX and PyTorch, and one zero row then poisons every weight)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import mtmm_keras as mk
from mtmm_keras.layers import L2Normalization


def _gradient(layer, x):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: ops.sum(layer(v) * ops.arange(1.0, 5.0)))(x))
    if backend == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        ops.sum(layer(t) * ops.arange(1.0, 5.0)).backward()
        return t.grad.numpy()
    import tensorflow as tf

    t = tf.Variable(x)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(t) * tf.range(1.0, 5.0))
    return tape.gradient(total, t).numpy()


def test_values_match_keras_unit_normalization():
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    x[1] = 0.0
    x[2] = 1e-8
    np.testing.assert_allclose(ops.convert_to_numpy(L2Normalization()(x)),
                               ops.convert_to_numpy(keras.layers.UnitNormalization()(x)), rtol=1e-6, atol=1e-7)
    norms = np.linalg.norm(ops.convert_to_numpy(L2Normalization()(x))[[0, 3, 4]], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_gradient_is_finite_at_an_all_zero_row():
    x = np.zeros((2, 4), "float32")
    x[1] = [3.0, 0.0, 4.0, 0.0]
    gradient = _gradient(L2Normalization(), x)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient[0], 1e12 * np.arange(1.0, 5.0), rtol=1e-5)  # d(x/ε)/dx at 0
    # at a non-zero row: the Jacobian of x/‖x‖ applied to (1, 2, 3, 4)
    v, c = x[1], np.arange(1.0, 5.0)
    expected = (c - v * (v @ c) / (v @ v)) / np.linalg.norm(v)
    np.testing.assert_allclose(gradient[1], expected, rtol=1e-5, atol=1e-7)


def test_config_round_trip_and_argument_errors():
    layer = L2Normalization(axis=1, epsilon=1e-6, name="unit")
    again = L2Normalization.from_config(layer.get_config())
    assert (again.axis, again.epsilon, again.name) == (1, 1e-6, "unit")
    with pytest.raises(ValueError, match=r"`axis` must be an integer, got 'last'"):
        L2Normalization(axis="last")
    with pytest.raises(ValueError, match=r"`epsilon` must be in \(0, 1\), got 0"):
        L2Normalization(epsilon=0)


def test_joint_embedding_trains_through_a_zero_row():
    """The cosine joint embedding's towers end in this layer: an all-zero input row (a ReLU tower's output is
    then 0 too, with no bias) leaves every weight finite after a step on every backend."""
    model = mk.builders.joint_embedding(
        {"a": mk.encoders.tabular(4, (8,), input_name="a", name="a_encoder"),
         "b": mk.encoders.tabular(4, (8,), input_name="b", name="b_encoder")},
        embedding_dim=4, loss="contrastive")
    assert any(isinstance(layer, L2Normalization) for tower in model.layers if isinstance(tower, keras.Model)
               for layer in tower.layers)
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(16, 4)).astype("float32"), "b": rng.normal(size=(16, 4)).astype("float32")}
    model.fit(x, np.arange(16), epochs=1, batch_size=16, verbose=0)
    for tower in [layer for layer in model.layers if isinstance(layer, keras.Model)]:
        for sub in tower.layers:
            if isinstance(sub, keras.layers.Dense):
                sub.kernel.assign(np.zeros(sub.kernel.shape, "float32"))
                sub.bias.assign(np.zeros(sub.bias.shape, "float32"))
    model.fit(x, np.arange(16), epochs=1, batch_size=16, verbose=0)
    assert all(np.all(np.isfinite(ops.convert_to_numpy(w))) for w in model.weights)
