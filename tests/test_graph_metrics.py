"""`GraphMetricsMixin`: epoch-end metric read-out and reset compiled into one call each, with Keras's values."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.models import graph_metrics

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the compiled read-out is TensorFlow-only")

TASKS = [mk.Task("a", 1, metrics=["mae"]), mk.Task("b", 1), mk.Task("c", 2, loss="sparse_categorical_crossentropy",
                                                                      metrics=["accuracy"])]


def _data(n=192, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    return x, {"a": x[:, :1] * 2.0, "b": x[:, 1:2] - x[:, 2:3], "c": (x[:, 3] > 0).astype("int32")}


def _model(**kwargs):
    keras.utils.set_random_seed(0)
    return mk.builders.hard_sharing((10,), TASKS, trunk_units=(16,), steps_per_execution=4, **kwargs)


def _compiled_calls(model):
    cache = model.__dict__.get(graph_metrics._CACHE_ATTRIBUTE)
    return cache.calls if cache is not None else {}


def test_histories_and_evaluate_equal_keras_own_eager_read_out(monkeypatch):
    x, y = _data()
    fit_kwargs = dict(batch_size=16, epochs=3, shuffle=False, validation_split=0.25, verbose=0)
    compiled = _model()
    compiled_history = compiled.fit(x, y, **fit_kwargs)
    compiled_eval = compiled.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert set(_compiled_calls(compiled)) == {"reset", "result"}  # the compiled path did run

    monkeypatch.setattr(graph_metrics, "_compiled", lambda *args: None)  # Keras's own, op by op
    eager = _model()
    eager_history = eager.fit(x, y, **fit_kwargs)
    eager_eval = eager.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert _compiled_calls(eager) == {}
    assert compiled_history.history.keys() == eager_history.history.keys()
    assert {"a_mae", "c_accuracy", "val_a_mae", "weight/a", "c_loss"} <= set(compiled_history.history)
    for key, values in eager_history.history.items():
        assert compiled_history.history[key] == values, key
    assert compiled_eval == eager_eval


def test_a_new_compile_traces_a_new_read_out_that_sees_the_new_metrics():
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first = model.__dict__[graph_metrics._CACHE_ATTRIBUTE]
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mse", "c": "sparse_categorical_crossentropy"},
                  metrics={"b": ["mae"]})
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert model.__dict__[graph_metrics._CACHE_ATTRIBUTE] is not first
    predicted = model.predict(x, batch_size=32, verbose=0)["b"]
    assert logs["b_mae"] == pytest.approx(float(np.mean(np.abs(predicted - y["b"]))), rel=1e-5)


def test_eager_models_and_strategies_keep_keras_own_read_out():
    import tensorflow as tf

    x, y = _data()
    eager = _model(run_eagerly=True)
    eager.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert _compiled_calls(eager) == {}
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        scoped = _model()
    scoped.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert _compiled_calls(scoped) == {}


def test_copies_of_the_model_carry_no_compiled_calls():
    import copy
    import pickle

    cache = graph_metrics._CompiledMetricCalls((1, 2))
    assert copy.deepcopy(cache) is None
    assert pickle.loads(pickle.dumps(cache)) is None


def test_short_fits_of_new_models_trace_nothing_and_long_ones_compile():
    """Tracing costs more than a few eager read-outs: the first calls per metric set stay eager."""
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert _compiled_calls(model) == {}
    model.fit(x, y, batch_size=16, epochs=graph_metrics.EAGER_CALLS_BEFORE_COMPILING + 1, verbose=0)
    assert set(_compiled_calls(model)) == {"reset", "result"}
