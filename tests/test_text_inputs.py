"""A model with a string input (a TextVectorization layer inside an encoder) trains and predicts on raw text
given as NumPy arrays, and a wrong array for that input is refused with an error naming it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mtmm_keras as mk

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="Keras feeds text on TensorFlow only")
TEXTS = np.array([["a good film"], ["bad"], ["great fun"], ["dull plot"]] * 8)


def _model():
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(TEXTS.reshape(-1))
    title = keras.Input(shape=(1,), dtype="string", name="title")
    features = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(21, 4)(vectorize(title)))
    encoder = keras.Model(title, features, name="title_encoder")
    return mk.builders.hard_sharing({"title": encoder, "year": mk.encoders.tabular(1, hidden_units=(2,))},
                                    [mk.Task("good", 1, loss="binary_crossentropy")], trunk_units=(4,))


@pytest.mark.parametrize("dtype", [str, object])
def test_text_arrays_train_and_predict(dtype):
    model = _model()
    x = {"title": TEXTS.astype(dtype), "year": np.linspace(0, 1, len(TEXTS), dtype="float32")[:, None]}
    y = {"good": np.array([[1.0], [0.0], [1.0], [0.0]] * 8)}
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    pred = model.predict(x, verbose=0)["good"]
    assert pred.shape == (len(TEXTS), 1)
    again = model.predict({"title": TEXTS[:4], "year": x["year"][:4]}, verbose=0)["good"]
    np.testing.assert_allclose(again, pred[:4], rtol=1e-5, atol=1e-6)


def test_numbers_for_a_string_input_are_refused_naming_it():
    model = _model()
    x = {"title": np.zeros((32, 1), "float32"), "year": np.zeros((32, 1), "float32")}
    with pytest.raises(TypeError, match=r"^input 'title' is a string input \(the model turns text into numbers "
                                        r"itself\), but got an array of dtype float32\. Pass the raw text"):
        model.fit(x, {"good": np.zeros((32, 1))}, epochs=1, verbose=0)
