"""Every Keras/TensorFlow internal the library reaches for is guarded: when it is gone (simulated here by making
its import fail or its attribute vanish), a public fallback does the job, or a warning says what is lost. Nothing
fails silently, nothing crashes with a raw ImportError/AttributeError."""

from __future__ import annotations

import builtins
import functools
import warnings

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow internals")


def _block_imports(monkeypatch, *blocked: str) -> None:
    real_import = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        wanted = {name} | {f"{name}.{item}" for item in (fromlist or ())}
        if any(w == b or w.startswith(b + ".") for w in wanted for b in blocked):
            raise ImportError(f"simulated: no {name}")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", guarded)


@pytest.fixture(scope="module")
def flatbuffer():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax()])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_tflite_ops_are_read_with_litert_s_schema_and_tensorflow_s_as_fallback(flatbuffer, monkeypatch):
    from mtmm_keras.export import tflite_writer

    first = tflite_writer.op_names(flatbuffer)
    assert set(first) == {"FULLY_CONNECTED", "SOFTMAX"}
    _block_imports(monkeypatch, "ai_edge_litert.schema_py_generated")
    assert tflite_writer.op_names(flatbuffer) == first  # TensorFlow's copy of the schema
    assert tflite_writer.tensor_types(flatbuffer)
    _block_imports(monkeypatch, "tensorflow.lite.python")
    with pytest.raises(ImportError, match=r"^Reading a \.tflite file's ops needs the TFLite schema, which "
                                          r"ai-edge-litert ships .*pip install 'mtmm-keras\[export\]'"):
        tflite_writer.op_names(flatbuffer)


def test_builtin_code_matches_tensorflow_s_schema_util(flatbuffer):
    from tensorflow.lite.python import schema_util

    from mtmm_keras.export import tflite_writer

    schema = tflite_writer._schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    codes = model.operatorCodes
    assert codes and [tflite_writer._builtin_code(c) for c in codes] == \
        [schema_util.get_builtin_code_from_operator_code(c) for c in codes]


def test_zoo_seed_restore_warns_and_still_builds_without_tensorflow_s_seed_internals(monkeypatch):
    from mtmm_keras.zoo import recipes

    _block_imports(monkeypatch, "tensorflow.python.eager")
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    with pytest.warns(RuntimeWarning, match=r"^TensorFlow internals for its global seed are missing or changed"):
        with recipes.seeded(7):
            weights = keras.layers.Dense(2)
            weights.build((None, 3))
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # NumPy's state is still put back


def test_retrieval_metrics_warn_when_they_cannot_be_saved(monkeypatch):
    encoders = {"a": mk.encoders.tabular(3, hidden_units=(4,)), "b": mk.encoders.tabular(5, hidden_units=(4,))}
    metric = mk.metrics.RecallAtK(1, query="a", gallery="b")
    model = mk.builders.joint_embedding(encoders, embedding_dim=4, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(optimizer="adam", loss=mk.losses.MaxMarginRankingLoss(), metrics=[metric])
    assert model._compile_config.config["metrics"] == [metric]  # saved as given
    real_compile = keras.Model.compile

    @functools.wraps(real_compile)  # same signature: the mixin binds its arguments to it
    def compile_without_config(self, *args, **kwargs):
        real_compile(self, *args, **kwargs)
        self.__dict__.pop("_compile_config", None)  # a Keras that keeps no compile config

    monkeypatch.setattr(keras.Model, "compile", compile_without_config)
    with pytest.warns(RuntimeWarning, match=r"keeps no `_compile_config` dict, so the retrieval metrics "
                                            r"\['in_batch_a_to_b_recall_at_1'\] train and log as usual but are not saved"):
        model.compile(optimizer="adam", loss=mk.losses.MaxMarginRankingLoss(), metrics=[metric])


def test_multi_worker_workaround_warns_when_keras_renamed_its_hooks(monkeypatch):
    from mtmm_keras.distribute import multiworker

    assert multiworker.missing_hooks() == []  # this Keras has them: the workaround applies
    monkeypatch.setattr(multiworker, "KERAS_HOOKS", ("_maybe_symbolic_build", "_a_renamed_hook"))
    monkeypatch.setattr(multiworker, "is_multi_worker", lambda strategy: strategy == "multi-worker")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        multiworker.warn_if_workaround_missing("single device")  # not multi-worker: nothing to say
    with pytest.warns(RuntimeWarning, match=r"workaround \(keras-team/keras#20585\) cannot apply: this Keras has no "
                                            r"_a_renamed_hook\."):
        multiworker.warn_if_workaround_missing("multi-worker")
    model = mk.builders.hard_sharing((3,), [mk.Task("a", 1)], trunk_units=(4,))
    model._distribute_strategy = "multi-worker"
    with pytest.warns(RuntimeWarning, match="cannot apply"):  # fit says so before it starts
        with pytest.raises(Exception):
            model.fit(np.zeros((8, 3), "float32"), {"a": np.zeros((8, 1))}, epochs=1, verbose=0)
