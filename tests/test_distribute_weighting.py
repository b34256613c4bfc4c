"""Gradient-level weighting under tf.distribute is refused with the reason, before any step runs
(each replica would aggregate only its local gradients); loss-level methods still train there."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")


def _data(rng):
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, {"a": rng.normal(size=(16, 1)).astype("float32"), "b": rng.normal(size=(16, 1)).astype("float32")}


def test_gradient_level_weighting_is_refused_under_a_strategy(rng):
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = mk.builders.hard_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], trunk_units=(4,), weighting="upgrad")
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="upgrad.*tf.distribute"):
        model.fit(*_data(rng), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_loss_level_weighting_trains_under_a_strategy(rng):
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = mk.builders.hard_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], trunk_units=(4,), weighting="uncertainty")
    history = model.fit(*_data(rng), epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and "weight/a" in history.history
