"""The writers' shortcuts give the artifacts the slow paths gave.

* `saved_model_writer`: `ExportArchive.track(model)` only for a model whose serving function reads a resource other
  than a variable (a lookup table: without tracking, TensorFlow refuses to save it); otherwise the weights the
  serving function reads are listed as the loaded SavedModel's `variables`, without Keras's walk of the model.
* `tflite_writer.convert(..., converter=)`: one converter for every flavour gives the bytes a new converter per
  flavour gives, each flavour converted after one that set other options.
"""

import numpy as np
import pytest

import keras
import mtmm_keras as mk
from mtmm_keras.export import _model_io, saved_model_writer, tflite_writer

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")


def _hard_sharing():
    # a 40 x 64 kernel: over the 1,024 weights below which the dynamic flavour leaves a tensor in float32
    return mk.builders.hard_sharing((40,), [mk.Task("y", 1), mk.Task("c", 3, loss="sparse_categorical_crossentropy")],
                                    trunk_units=(64,))


def _write(model, path):
    saved_model_writer.write_saved_model(model, str(path), _model_io.input_infos(_model_io.export_view(model), None))


def test_saved_model_lists_the_weights_it_serves_without_tracking_the_model(tmp_path, monkeypatch):
    import tensorflow as tf

    model = _hard_sharing()
    tracked = []
    archive_class = type(keras.export.ExportArchive())  # the backend's class, which the factory returns
    monkeypatch.setattr(archive_class, "track", lambda self, resource: tracked.append(resource))
    _write(model, tmp_path / "sm")
    assert tracked == []  # no walk of the model (it traces a default signature per sub-model)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert sorted(v.name for v in loaded.trainable_variables) == sorted(v.path + ":0" for v in model.trainable_variables)
    assert len(loaded.variables) == len(loaded.trainable_variables) + len(loaded.non_trainable_variables)
    x = np.random.default_rng(0).normal(size=(4, 40)).astype("float32")
    served = loaded.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_allclose(served["y"].numpy(), model.predict(x, verbose=0)["y"], rtol=1e-5, atol=1e-6)


def test_a_model_with_a_lookup_table_is_tracked_and_its_export_serves(tmp_path, monkeypatch):
    ids = keras.Input((3,), dtype="int64", name="ids")
    x = keras.layers.IntegerLookup(vocabulary=[5, 7, 9])(ids)
    x = keras.layers.Flatten()(keras.layers.Embedding(5, 2)(x))
    model = keras.Model(ids, {"y": keras.layers.Dense(1, name="y")(x)})
    verdicts, check = [], saved_model_writer._uses_resources_besides_variables
    monkeypatch.setattr(saved_model_writer, "_uses_resources_besides_variables",
                        lambda fn: verdicts.append(check(fn)) or verdicts[-1])
    report = mk.export.export_model(model, tmp_path / "out", formats=["saved_model"], verbose=False)
    assert verdicts == [True]
    assert report.passed, report.table()


def test_a_lookup_table_left_untracked_cannot_be_saved(tmp_path, monkeypatch):
    """The reason for the check above: without `track`, TensorFlow refuses the table."""
    ids = keras.Input((3,), dtype="int64", name="ids")
    model = keras.Model(ids, keras.layers.IntegerLookup(vocabulary=[5, 7, 9])(ids))
    monkeypatch.setattr(saved_model_writer, "_uses_resources_besides_variables", lambda fn: False)
    with pytest.raises(AssertionError, match="untracked"):
        _write(model, tmp_path / "sm")


def test_one_converter_for_every_flavour_gives_the_bytes_of_a_new_converter_each(tmp_path):
    model = _hard_sharing()
    _write(model, tmp_path / "sm")
    rows = np.random.default_rng(0).normal(size=(32, 40)).astype("float32")
    calibration = lambda: ({"features": rows[i:i + 1]} for i in range(len(rows)))  # noqa: E731
    flavours = ("int8", "float16", "float32", "dynamic", "float32")  # each after one that sets other options
    converter = tflite_writer.saved_model_converter(str(tmp_path / "sm"))
    shared = [tflite_writer.convert(str(tmp_path / "sm"), f, calibration, converter=converter) for f in flavours]
    fresh = [tflite_writer.convert(str(tmp_path / "sm"), f, calibration) for f in flavours]
    assert shared == fresh
    assert len(set(fresh[:4])) == 4  # the flavours differ, so a leaked option would show
