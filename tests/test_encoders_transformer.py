"""mk.encoders.transformer_text: the forward pass equals a NumPy transformer written from the formulas,
padding is neither attended to nor pooled, it trains inside a builder, saves, and exports (the mask path
included) to TFLite and ONNX without Flex ops."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk

VOCAB, LENGTH = 20, 6


def _randomize(model, seed=0, scale=0.5):
    """Non-trivial weights everywhere (LayerNorm gains and biases too), so the reference checks every term."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=scale, size=w.shape).astype("float32") for w in model.get_weights()])


def _tokens(n=5, length=LENGTH, seed=1):
    """Token ids with 1..length real tokens per row, then padding (id 0); one row is all real tokens."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, size=(n, length)).astype("int32")
    lengths = np.concatenate([[length], rng.integers(1, length + 1, size=n - 1)])
    tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return tokens


# ---- NumPy reference ------------------------------------------------------------------------------

def _np(variable):
    return keras.ops.convert_to_numpy(variable)


def _layer_norm(x, norm, eps=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _np(norm.gamma) + _np(norm.beta)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _reference_block(x, mask, block):
    attention = block.attention
    project = lambda h, dense: np.einsum("bld,dhk->blhk", h, _np(dense.kernel)) + _np(dense.bias)
    h = _layer_norm(x, block.attention_norm)
    q, k, v = (project(h, d) for d in (attention._query_dense, attention._key_dense, attention._value_dense))
    scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)  # padded keys get no attention at all
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bhqs,bshk->bqhk", weights, v)
    x = x + np.einsum("bqhk,hkd->bqd", attended, _np(attention._output_dense.kernel)) + _np(attention._output_dense.bias)
    h = _layer_norm(x, block.ffn_norm)
    h = _gelu_tanh(h @ _np(block.ffn_inner.kernel) + _np(block.ffn_inner.bias))
    return x + h @ _np(block.ffn_outer.kernel) + _np(block.ffn_outer.bias)


def _reference(model, tokens, pooling, num_layers):
    x = _np(model.get_layer("token_embedding").embeddings)[tokens]
    x = x + _np(model.get_layer("position_embedding").position_embeddings)[None]
    mask = (tokens != 0).astype("float64")
    if pooling == "cls":
        token = _np(model.get_layer("cls_token").token)
        x = np.concatenate([np.broadcast_to(token, (len(x), 1, x.shape[-1])), x], axis=1)
        mask = np.concatenate([np.ones((len(x), 1)), mask], axis=1)
    for i in range(num_layers):
        x = _reference_block(x, mask, model.get_layer(f"block{i + 1}"))
    x = _layer_norm(x, model.get_layer("final_norm"))
    if pooling == "cls":
        return x[:, 0]
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_forward_pass_equals_a_numpy_transformer(pooling):
    model = mk.encoders.transformer_text(VOCAB, LENGTH, embedding_dim=8, num_heads=2, num_layers=2, ffn_units=12,
                                         dropout=0.1, pooling=pooling)
    _randomize(model)
    tokens = _tokens()
    got = keras.ops.convert_to_numpy(model(tokens, training=False))
    expected = _reference(model, tokens.astype("int64"), pooling, num_layers=2)
    assert got.shape == (len(tokens), 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_is_neither_attended_to_nor_pooled(pooling):
    """A row padded to 6 tokens gives the same features as the same 3 tokens in a length-3 model with the
    same weights (its position table cut to 3 rows): padding changes nothing."""
    kwargs = dict(embedding_dim=8, num_heads=2, num_layers=2, ffn_units=12, pooling=pooling, output_dim=5)
    long, short = mk.encoders.transformer_text(VOCAB, 6, **kwargs), mk.encoders.transformer_text(VOCAB, 3, **kwargs)
    _randomize(long, seed=3)
    short.set_weights([w[:3] if w.shape == (6, 8) else w for w in long.get_weights()])
    real = np.random.default_rng(4).integers(1, VOCAB, size=(4, 3)).astype("int32")
    padded = np.concatenate([real, np.zeros((4, 3), "int32")], axis=1)
    run = lambda model, x: keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(run(long, padded), run(short, real), rtol=1e-5, atol=1e-5)
    # ... whereas a real token in place of the padding does change the features
    filled = padded.copy()
    filled[:, 3:] = 7
    assert np.abs(run(long, filled) - run(long, padded)).max() > 1e-3


def test_trains_in_a_builder_and_reloads_from_keras_file(tmp_path):
    encoder = mk.encoders.transformer_text(VOCAB, LENGTH, embedding_dim=8, num_heads=2, num_layers=1, ffn_units=16,
                                           pooling="cls", output_dim=8)
    model = mk.builders.hard_sharing(encoder, [mk.Task("c", 2, loss="sparse_categorical_crossentropy", metrics=["accuracy"])],
                                     trunk_units=(8,), learning_rate=0.01)
    assert [t.name.split(":")[0] for t in model.inputs] == ["text"] and str(model.inputs[0].dtype) == "int32"
    tokens = _tokens(96, seed=5)
    labels = (tokens == 3).any(axis=1).astype("int32")  # does the sentence contain token 3?
    history = model.fit(tokens, {"c": labels}, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(tokens, verbose=0)["c"], model.predict(tokens, verbose=0)["c"],
                               rtol=1e-5, atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="pooling"):
        mk.encoders.transformer_text(10, 4, pooling="max")
    with pytest.raises(ValueError, match="num_heads"):
        mk.encoders.transformer_text(10, 4, embedding_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        mk.encoders.transformer_text(10, 4, dropout=1.0)
    with pytest.raises(ValueError, match="sequence_length"):
        mk.encoders.transformer_text(10, 0)
    with pytest.raises(ValueError, match="activation"):
        mk.encoders.transformer.TransformerEncoderBlock(2, 8, activation="nope")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_exports_to_tflite_and_onnx_without_flex_ops(pooling, tmp_path):
    from mtmm_keras.export import runtimes, tflite_writer

    encoder = mk.encoders.transformer_text(VOCAB, LENGTH, embedding_dim=8, num_heads=2, num_layers=1, ffn_units=16, pooling=pooling)
    _randomize(encoder, seed=6)
    tokens = _tokens(16, seed=7)
    report = mk.export.export_model(encoder, str(tmp_path / pooling), formats=("tflite", "onnx"),
                                    representative_data=tokens, verbose=False)
    assert report.passed, report.table()
    expected = keras.ops.convert_to_numpy(encoder(tokens))
    for artifact in report.artifacts:
        if artifact.format == "tflite":
            assert tflite_writer.flex_ops(open(artifact.path, "rb").read()) == []
            got = runtimes.tflite_runner(artifact.path)({"text": tokens})
        else:
            got = runtimes.onnx_runner(artifact.path, {o.get("onnx_name", o["name"]): o["name"] for o in artifact.outputs})({"text": tokens})
        (value,) = got.values()
        np.testing.assert_allclose(value, expected, atol=1e-4)  # padded rows included: the mask path converted
