"""The bag-of-words text encoders ("mean", "sum": pooled embeddings of the non-padding tokens, token dropout),
`mk.layers.PiecewiseLinearEncoding` (against the formula, adapted to quantiles, saved and reloaded) and the zoo's
fit options `early_stopping` / `head_bias` (checked, and the head biases set to the training prior)."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk


def _embedding(encoder):
    return np.asarray(encoder.get_layer("token_embedding").embeddings)


@pytest.mark.parametrize("kind", ["mean", "sum"])
def test_bag_encoder_pools_the_non_padding_embeddings(kind):
    encoder = mk.encoders.text(20, 5, embedding_dim=4, hidden_dim=None, kind=kind)
    tokens = np.array([[3, 7, 7, 0, 0], [0, 0, 0, 0, 0], [5, 1, 2, 9, 4]], "int32")
    table = _embedding(encoder)
    out = np.asarray(encoder.predict(tokens, verbose=0))
    assert out.shape == (3, 4)
    for row, ids in enumerate(tokens):
        words = table[ids[ids != 0]]
        expected = words.sum(axis=0) if kind == "sum" else (words.mean(axis=0) if len(words) else np.zeros(4))
        np.testing.assert_allclose(out[row], expected if len(words) else np.zeros(4), rtol=1e-5, atol=1e-6)


def test_bag_encoder_dense_dropout_and_errors():
    encoder = mk.encoders.text(20, 5, embedding_dim=4, hidden_dim=6, kind="sum", dropout=0.5, token_dropout=0.5)
    tokens = np.array([[3, 7, 2, 0, 0]] * 64, "int32")
    inference = np.asarray(encoder(tokens, training=False))
    assert inference.shape == (64, 6) and np.allclose(inference, inference[0])  # no dropout at inference
    trained = np.asarray(encoder(tokens, training=True))
    assert not np.allclose(trained, trained[0])  # words (and units) left out at random while training
    with pytest.raises(ValueError, match="hidden_dim"):
        mk.encoders.text(20, 5, hidden_dim=None)  # an LSTM needs its width
    with pytest.raises(ValueError, match="token_dropout"):
        mk.encoders.text(20, 5, kind="lstm", token_dropout=0.1)
    with pytest.raises(ValueError, match="dropout"):
        mk.encoders.text(20, 5, kind="conv", dropout=0.1)
    with pytest.raises(ValueError, match="token_dropout"):
        mk.encoders.text(20, 5, kind="mean", token_dropout=1.0)


def test_embedding_l2_adds_its_penalty():
    encoder = mk.encoders.text(20, 5, embedding_dim=4, hidden_dim=None, kind="sum", embedding_l2=0.01)
    assert len(encoder.losses) == 1
    np.testing.assert_allclose(float(encoder.losses[0]), 0.01 * np.sum(_embedding(encoder) ** 2), rtol=1e-5)


def _piecewise(x, edges):
    """The encoding written from its definition, one feature, `edges` [bins + 1]."""
    out = []
    bins = len(edges) - 1
    for t in range(bins):
        ratio = (x - edges[t]) / (edges[t + 1] - edges[t])
        low = -np.inf if t == 0 else 0.0
        high = np.inf if t == bins - 1 else 1.0
        out.append(np.clip(ratio, low, high))
    return np.stack(out, axis=-1)


def test_piecewise_linear_encoding_matches_the_formula_after_adapt(tmp_path):
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(size=500), rng.exponential(size=500), rng.integers(0, 3, 500)], axis=1).astype("float32")
    layer = mk.layers.PiecewiseLinearEncoding(4)
    layer.adapt(data)
    probe = np.array([[-5.0, 0.3, 1.0], [0.0, 10.0, 2.0], [0.5, 0.0, 0.0]], "float32")
    out = np.asarray(layer(probe))
    assert out.shape == (3, 12)
    starts = np.asarray(layer.start).reshape(3, 4)
    widths = 1.0 / np.asarray(layer.inverse_width).reshape(3, 4)
    for j in range(3):
        edges = np.append(starts[j], starts[j, -1] + widths[j, -1])
        assert np.all(np.diff(edges) > 0)  # repeated values (feature 2 has three) are widened apart
        if j < 2:
            np.testing.assert_allclose(edges, np.quantile(data[:, j], np.linspace(0, 1, 5)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[:, 4 * j:4 * j + 4], _piecewise(probe[:, j], edges), rtol=1e-4, atol=1e-5)
    encoder = mk.encoders.tabular(3, (5,), numeric_encoding="piecewise_linear", num_bins=4)
    encoder.get_layer("numeric_encoding").adapt(data)
    encoder.save(tmp_path / "enc.keras")
    again = keras.models.load_model(tmp_path / "enc.keras")
    np.testing.assert_allclose(again.predict(probe, verbose=0), encoder.predict(probe, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="numeric_encoding"):
        mk.encoders.tabular(3, (5,), numeric_encoding="periodic_sine")
    with pytest.raises(ValueError, match="adapt"):
        layer.adapt(np.full((4, 3), np.nan, "float32"))


def _recipe(**fit):
    return {"builder": "hard_sharing", "data": "none",
            "encoders": {"tab": {"kind": "tabular", "input_dim": 3, "hidden_units": [4],
                                 "numeric_encoding": "piecewise_linear", "num_bins": 3},
                         "words": {"kind": "text", "text_kind": "sum", "vocab_size": 12, "sequence_length": 4,
                                   "embedding_dim": 3, "hidden_dim": None}},
            "tasks": [{"name": "y", "units": 1, "loss": "mse", "activation": None},
                      {"name": "flag", "units": 1, "loss": "binary_crossentropy", "activation": None, "metrics": ["auc"]}],
            "fit": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01, "seed": 0, "validation_split": 0.25, **fit}}


def test_zoo_fit_options_are_checked():
    from mtmm_keras.zoo import training

    assert training.fit_options(_recipe()) == {"patience": None, "head_bias": None, "reduce_lr": None}
    assert training.fit_options(_recipe(early_stopping={"patience": 2}, head_bias="prior", reduce_lr={"factor": 0.3, "patience": 2})) == {
        "patience": 2, "head_bias": "prior", "reduce_lr": {"factor": 0.3, "patience": 2}}
    for bad, match in [({"early_stopping": {"patience": 0}}, "patience"), ({"early_stopping": 3}, "early_stopping"),
                       ({"early_stopping": {"patience": 2, "monitor": "loss"}}, "early_stopping"),
                       ({"early_stopping": {"patience": 2}, "validation_split": 0.0}, "validation split"),
                       ({"head_bias": "zeros"}, "head_bias"), ({"reduce_lr": {"factor": 1.5, "patience": 2}}, "factor"),
                       ({"reduce_lr": {"factor": 0.5}}, "reduce_lr"), ({"reduce_lr": {"factor": 0.5, "patience": 0}}, "patience")]:
        with pytest.raises(ValueError, match=match):
            training.fit_options(_recipe(**bad))


def test_zoo_head_bias_prior_and_early_stopping_fit():
    from mtmm_keras.zoo import recipes, training

    recipe = _recipe(early_stopping={"patience": 1}, head_bias="prior", reduce_lr={"factor": 0.5, "patience": 1}, epochs=30)
    rng = np.random.default_rng(1)
    x = {"tab": rng.normal(size=(96, 3)).astype("float32"), "words": rng.integers(0, 12, (96, 4)).astype("int32")}
    y = {"y": (5.0 + x["tab"][:, 0]).astype("float32"), "flag": (rng.random(96) < 0.25).astype("int64")}
    model = recipes.build(recipe)
    training.adapt_normalizers(model, x)
    assert np.any(np.asarray(model.get_layer("inputs_encoder").get_layer("tab_encoder").get_layer("numeric_encoding").start) != np.tile(np.linspace(-2, 2, 4)[:-1], 3))
    training.init_head_biases(model, recipe, y)
    np.testing.assert_allclose(model.get_layer("y").get_weights()[1], [y["y"].mean()], rtol=1e-5)
    rate = y["flag"].mean()
    np.testing.assert_allclose(model.get_layer("flag").get_weights()[1], [np.log(rate / (1 - rate))], rtol=1e-5)
    history = training._fit(model, recipe, x, y, epochs=30, verbose=0)
    assert len(history["loss"]) < 30  # stopped early on noise labels


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
def test_bag_of_words_and_piecewise_linear_run_fully_on_the_gpu_accelerator(tmp_path):
    """The movies entries' encoders on LiteRT's GPU accelerator (lavapipe without a GPU): summed bag of words (1-D
    GATHER after the export's flat-index rewrite) and the piecewise-linear tabular encoding."""
    from mtmm_keras.export import gpu_delegate

    if gpu_delegate.vulkan_icd() is None:
        pytest.skip("no Vulkan driver for LiteRT's GPU accelerator: run scripts/install_system_deps.sh")
    rng = np.random.default_rng(0)
    x = {"tab": rng.normal(size=(64, 3)).astype("float32"), "words": rng.integers(0, 30, (64, 6)).astype("int32")}
    tab = mk.encoders.tabular(3, (8,), numeric_encoding="piecewise_linear", num_bins=4, input_name="tab")
    tab.get_layer("numeric_encoding").adapt(x["tab"])
    words = mk.encoders.text(30, 6, embedding_dim=4, hidden_dim=None, kind="sum", token_dropout=0.5, input_name="words")
    joined = keras.layers.Concatenate()([tab.output, words.output])
    model = keras.Model([tab.input, words.input], {"y": keras.layers.Dense(2, name="y")(joined)}, name="bag_pwl")
    report = mk.export.export_model(model, tmp_path / "out", target="android-gpu", representative_data=x, verbose=False)
    assert report.passed, report.table()
    for artifact in report.artifacts:
        gpu = artifact.deployment["gpu_delegate"]
        assert gpu["fully_accelerated"] and gpu["unsupported"] == [], (artifact.quantization, gpu)
