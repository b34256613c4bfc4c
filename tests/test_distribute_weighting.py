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


_TWO_REPLICAS = r'''
import json, os
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import mtmm_keras as mk

rng = np.random.default_rng(0)
x = rng.normal(size=(48, 4)).astype("float32")
y = {"a": (3.0 * x[:, :1] + 2.0).astype("float32"), "b": rng.integers(0, 3, size=(48,)).astype("int64")}
y["a"][::5] = np.nan  # missing labels: per-replica row counts differ
tasks = [mk.Task("a", 1, weight=2.0), mk.Task("b", 3, loss="sparse_categorical_crossentropy")]

def build(method):
    keras.utils.set_random_seed(0)
    return mk.builders.hard_sharing((4,), tasks, trunk_units=(8,), weighting=method, steps_per_execution=1,
                                    jit_compile=False, optimizer=keras.optimizers.SGD(0.05))

def train(model, initial):
    model.set_weights(initial)
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # 3 steps
    return {key: [float(v) for v in values] for key, values in history.history.items()}, \
        [w.tolist() for w in model.get_weights()]

# One strategy for both models: two MirroredStrategy objects in one process can reuse collective keys
# (the second model's gradient all-reduce then meets the first's shapes: "expected shape [32] ... [30]").
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
for method in ["static", "uncertainty"]:
    single = build(method)
    initial = single.get_weights()
    one = train(single, initial)
    with strategy.scope():
        model = build(method)
    try:
        out[method] = {"one": one, "two": train(model, initial)}
    except Exception as error:
        out[method] = {"error": f"{type(error).__name__}: {str(error)[:400]}"}
print("RESULT" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def two_replicas() -> dict:
    import os
    import subprocess
    import sys
    import json

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": repo, "KERAS_BACKEND": "tensorflow",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True, text=True, env=env,
                          timeout=600, cwd=repo)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, f"worker failed (rc {done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT"):])


@pytest.mark.parametrize("method", ["static", "uncertainty"])
def test_two_replicas_train_like_one_device(two_replicas, method):
    """Loss, `<task>_loss`, `weight/<task>` and the weights after 3 steps on 2 replicas (MirroredStrategy,
    2 logical CPUs) equal one device's: each replica's total is its share of the global loss, and the
    per-task logs are the unscaled means over the global batch's present rows."""
    result = two_replicas[method]
    assert "error" not in result, result.get("error")
    (logs_one, weights_one), (logs_two, weights_two) = result["one"], result["two"]
    assert set(logs_one) == set(logs_two) and {"a_loss", "b_loss", "weight/a", "weight/b"} <= set(logs_two)
    for key in logs_one:
        np.testing.assert_allclose(logs_two[key], logs_one[key], rtol=1e-5, err_msg=key)
    for a, b in zip(weights_one, weights_two):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
