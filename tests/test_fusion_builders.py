"""Fusion designs (issue 11): concat, gated (GMU) and Transformer fusion beside attention fusion: dict outputs,
learning, the fusion layers against NumPy formulas, the per-modality weights read-out, `.keras` round trips and
argument errors. Runs on TF and on JAX."""

import math

import keras
import numpy as np
import pytest

import mtmm_keras as mk

BUILDERS = {
    "attention_fusion": lambda enc, tasks, **kw: mk.builders.attention_fusion(enc, tasks, fusion_dim=8, **kw),
    "concat_fusion": lambda enc, tasks, **kw: mk.builders.concat_fusion(enc, tasks, fusion_dim=8, hidden_units=(8,), **kw),
    "gated_fusion": lambda enc, tasks, **kw: mk.builders.gated_fusion(enc, tasks, fusion_dim=8, **kw),
    "transformer_fusion": lambda enc, tasks, **kw: mk.builders.transformer_fusion(enc, tasks, fusion_dim=8, **kw),
    "bottleneck_fusion": lambda enc, tasks, **kw: mk.builders.transformer_fusion(enc, tasks, fusion_dim=8,
                                                                                 bottleneck_tokens=2, **kw),
}


def _encoders():
    return {"image": mk.encoders.image((8, 8, 1), filters=(4,), output_dim=8), "tabular": mk.encoders.tabular(16, (8,))}


def _tabular_encoders():
    """Two dense modalities (the image flattened): quick to trace, which fit needs once per model."""
    return {"image": mk.encoders.tabular(64, (8,), input_name="image", name="image_encoder"),
            "tabular": mk.encoders.tabular(16, (8,))}


def _tasks():
    return [mk.Task("label", 4, loss="sparse_categorical_crossentropy", metrics=["accuracy"]), mk.Task("score", 1)]


def _data(n=128, seed=0, flat=False):
    v = mk.data.paired_modalities(n, num_classes=4, noise=0.5, seed=seed)
    x = {"image": v["image"].reshape(n, -1) if flat else v["image"], "tabular": v["tabular"]}
    return x, {"label": v["label"], "score": (v["label"] / 3.0).astype("float32")[:, None]}


# --- builders -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BUILDERS))
def test_fusion_builder_dict_outputs_learn_and_round_trip(name, tmp_path):
    x, y = _data(flat=True)
    model = BUILDERS[name](_tabular_encoders(), _tasks(), learning_rate=0.01)
    assert isinstance(model, mk.models.MultiTaskModel)
    assert sorted(t.name for t in model.inputs) == ["image", "tabular"]  # no mask input unless asked for
    few = {k: v[:5] for k, v in x.items()}
    out = model(few)  # eager calls here: tracing predict for each tiny model costs more than the test
    assert set(out) == {"label", "score"} and out["label"].shape == (5, 4) and out["score"].shape == (5, 1)
    history = model.fit(x, y, epochs=6, batch_size=32, verbose=0, shuffle=False).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < 0.8 * history[0], history
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    got, want = reloaded(few), model(few)
    for key in want:
        np.testing.assert_allclose(_np(got[key]), _np(want[key]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_fusion_builder_with_mask_round_trips_and_reads_the_same_columns(name, tmp_path):
    x, _ = _data(6)
    model = BUILDERS[name](_encoders(), _tasks(), modality_dropout=0.3, compile=False)
    assert sorted(t.name for t in model.inputs) == ["image", "modality_mask", "tabular"]
    assert tuple(model.get_layer("modality_dropout").output.shape) == (None, 2)
    mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]], "float32")
    path = tmp_path / f"{name}_mask.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    want, got = model({**x, "modality_mask": mask}), reloaded({**x, "modality_mask": mask})
    for key in want:
        np.testing.assert_allclose(_np(got[key]), _np(want[key]), rtol=1e-6, atol=1e-6)
    assert reloaded.get_layer("modality_dropout").rate == pytest.approx(0.3)


def test_transformer_fusion_takes_sequence_tokens_and_three_modalities():
    seq_in = keras.Input((5, 3), name="frames")
    sequence = keras.Model(seq_in, keras.layers.Dense(6)(seq_in), name="frames_encoder")  # [batch, 5, 6]: 5 tokens
    encoders = {"frames": sequence, **_encoders()}
    for k, expected in ((0, [(2, 7, 7)]), (3, [(2, 8, 8), (2, 4, 4), (2, 4, 4)])):
        model = mk.builders.transformer_fusion(encoders, [mk.Task("t", 2)], fusion_dim=8, bottleneck_tokens=k,
                                               modality_mask=True, compile=False)
        rng = np.random.default_rng(0)
        x = {"frames": rng.normal(size=(3, 5, 3)).astype("float32"), "image": rng.normal(size=(3, 8, 8, 1)).astype("float32"),
             "tabular": rng.normal(size=(3, 16)).astype("float32"), "modality_mask": np.ones((3, 3), "float32")}
        maps = {k: _np(v) for k, v in mk.builders.fusion_weights(model)(x).items()}
        names = ["block1"] if not k else ["block1_frames", "block1_image", "block1_tabular"]
        assert list(maps) == names
        for name, shape in zip(names, expected):
            assert maps[name].shape == (3, *shape)
            np.testing.assert_allclose(maps[name].sum(axis=-1), 1.0, rtol=1e-5)


def test_fusion_weights_read_out():
    x, _ = _data(6)
    gated = BUILDERS["gated_fusion"](_encoders(), _tasks(), compile=False)
    gates = _np(mk.builders.fusion_weights(gated)(x)["gates"])
    assert gates.shape == (6, 2, 8)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)
    attention = BUILDERS["attention_fusion"](_encoders(), _tasks(), compile=False)
    alpha = _np(mk.builders.fusion_weights(attention)(x)["attention"])
    np.testing.assert_allclose(alpha, _np(mk.builders.attention_model(attention)(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="concatenation"):
        mk.builders.fusion_weights(BUILDERS["concat_fusion"](_encoders(), _tasks(), compile=False))
    with pytest.raises(ValueError, match="no fusion layer"):
        mk.builders.fusion_weights(mk.builders.hard_sharing((4,), [mk.Task("t", 1)], compile=False))


def test_fusion_builder_argument_errors():
    tasks = [mk.Task("t", 2)]
    for builder in (mk.builders.concat_fusion, mk.builders.gated_fusion, mk.builders.transformer_fusion,
                    mk.builders.attention_fusion):
        with pytest.raises(ValueError, match="at least 2 modalities"):
            builder({"image": mk.encoders.image((8, 8))}, tasks)
        with pytest.raises(ValueError, match="modality_dropout"):
            builder(_encoders(), tasks, modality_dropout=1.0)
        with pytest.raises(TypeError, match="modality_mask"):
            builder(_encoders(), tasks, modality_mask="yes")
        with pytest.raises(ValueError, match="reserved"):
            builder({"modality_mask": mk.encoders.tabular(4, (4,)), "b": mk.encoders.tabular(4, (4,))}, tasks)
        with pytest.raises(ValueError, match="fusion_dim"):
            builder(_encoders(), tasks, fusion_dim=0)
    with pytest.raises(ValueError, match="bottleneck_tokens"):
        mk.builders.transformer_fusion(_encoders(), tasks, bottleneck_tokens=-1)
    with pytest.raises(ValueError, match="num_heads"):
        mk.builders.transformer_fusion(_encoders(), tasks, num_heads=0)


# --- layers against NumPy -----------------------------------------------------------------------

def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np(w):
    return keras.ops.convert_to_numpy(w)


@pytest.mark.parametrize("modalities", [2, 3])
def test_gated_fusion_is_the_gmu(modalities, rng):
    sizes = [3, 5, 4][:modalities]
    xs = [rng.normal(size=(6, d)).astype("float32") for d in sizes]
    mask = np.ones((6, modalities), "float32")
    mask[1, 0] = mask[2, -1] = 0
    mask[3] = 0  # every modality missing: the zero vector
    layer = mk.layers.GatedFusion(7)
    fused, gates = layer(xs, return_gates=True)
    fused_m, gates_m = layer(xs, modality_mask=mask, return_gates=True)
    W = [_np(w) for w in layer.view_kernels]
    b = [_np(v) for v in layer.view_biases]
    Wz, bz = _np(layer.gate_kernel), _np(layer.gate_bias)
    h = np.stack([np.tanh(x @ w + c) for x, w, c in zip(xs, W, b)], axis=1)
    a = np.concatenate(xs, -1) @ Wz + bz
    if modalities == 2:  # Arevalo et al. 2017: z = σ(W_z [x_1, x_2]), h = z h_1 + (1 − z) h_2
        z = 1.0 / (1.0 + np.exp(-a))
        want_gates = np.stack([z, 1.0 - z], axis=1)
    else:  # one softmax gate per modality and unit
        want_gates = _softmax(a.reshape(6, modalities, 7), axis=1)
    np.testing.assert_allclose(_np(gates), want_gates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(fused), (want_gates * h).sum(axis=1), rtol=1e-5, atol=1e-6)
    # masked: missing features zeroed before any weight sees them, their gates closed and the rest renormalised
    xs0 = [x * mask[:, m:m + 1] for m, x in enumerate(xs)]
    h0 = np.stack([np.tanh(x @ w + c) for x, w, c in zip(xs0, W, b)], axis=1)
    a0 = np.concatenate(xs0, -1) @ Wz + bz
    logits = np.stack([a0, np.zeros_like(a0)], 1) if modalities == 2 else a0.reshape(6, modalities, 7)
    e = np.exp(logits - logits.max(axis=1, keepdims=True)) * mask[:, :, None]
    total = e.sum(axis=1, keepdims=True)
    g = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    np.testing.assert_allclose(_np(gates_m), g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(fused_m), (g * h0).sum(axis=1), rtol=1e-5, atol=1e-6)
    assert np.all(_np(gates_m)[mask == 0] == 0.0)
    np.testing.assert_array_equal(_np(fused_m)[3], 0.0)


def test_two_modality_gated_fusion_without_a_mask_needs_no_softmax(rng, monkeypatch):
    """The unmasked two-modality GMU is computed as h_2 + σ(a)(h_1 − h_2): TensorFlow's oneDNN softmax over the
    modality axis (with its two transposes) made gated_fusion train 2.5× slower than concat_fusion
    (benchmarks/backend_speed.py). It equals the masked path with every modality present."""
    layer = mk.layers.GatedFusion(5)
    xs = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")]
    layer(xs)  # built

    def no_softmax(*args, **kwargs):
        raise AssertionError("softmax called")

    monkeypatch.setattr(keras.ops, "softmax", no_softmax)
    fused, gates = layer(xs, return_gates=True)
    np.testing.assert_allclose(_np(gates).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(_np(fused), _np(layer(xs, modality_mask=np.ones((4, 2), "float32"))), rtol=1e-5, atol=1e-6)


def test_concat_fusion_zeroes_missing_and_appends_the_mask(rng):
    xs = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")]
    mask = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], "float32")
    layer = mk.layers.ConcatFusion()
    np.testing.assert_array_equal(_np(layer(xs)), np.concatenate(xs, -1))
    want = np.concatenate([xs[0] * mask[:, :1], xs[1] * mask[:, 1:], mask], -1)
    np.testing.assert_array_equal(_np(layer(xs, modality_mask=mask)), want)
    np.testing.assert_array_equal(_np(mk.layers.ConcatFusion(append_mask=False)(xs, modality_mask=mask)), want[:, :5])


def _layer_norm(x, norm):
    gamma, beta = _np(norm.gamma), _np(norm.beta)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def _dense(x, dense):
    return x @ _np(dense.kernel) + _np(dense.bias)


def _gelu(x):  # tanh approximation (Hendrycks & Gimpel), as the layer uses
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _block(layer, i, x, key_mask):
    """One pre-norm block in NumPy: x + MHA(LN(x)), then + FFN(LN(.)); key_mask [B, T] (True = attend)."""
    mha = layer.attentions[i]
    y = _layer_norm(x, layer.norms1[i])
    q = np.einsum("btd,dhk->bthk", y, _np(mha._query_dense.kernel)) + _np(mha._query_dense.bias)
    k = np.einsum("btd,dhk->bthk", y, _np(mha._key_dense.kernel)) + _np(mha._key_dense.bias)
    v = np.einsum("btd,dhk->bthk", y, _np(mha._value_dense.kernel)) + _np(mha._value_dense.bias)
    scores = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    scores = np.where(key_mask[:, None, None, :], scores, scores - 1e9)
    probs = _softmax(scores, -1)
    context = np.einsum("bhqs,bshk->bqhk", probs, v)
    x = x + np.einsum("bqhk,hkd->bqd", context, _np(mha._output_dense.kernel)) + _np(mha._output_dense.bias)
    y = _dense(_gelu(_dense(_layer_norm(x, layer.norms2[i]), layer.ffns1[i])), layer.ffns2[i])
    return x + y, probs


@pytest.mark.parametrize("bottleneck", [0, 2])
def test_transformer_fusion_matches_numpy(bottleneck, rng):
    counts, d = [1, 3], 8
    xs = [rng.normal(size=(4, t, d)).astype("float32") for t in counts]
    mask = np.array([[1, 1], [0, 1], [1, 0], [1, 1]], "float32")
    layer = mk.layers.TransformerFusion(num_blocks=2, num_heads=2, bottleneck_tokens=bottleneck)
    fused, maps = layer(xs, modality_mask=mask, return_attention_scores=True)
    tokens = []
    for m, x in enumerate(xs):
        x = x * mask[:, m, None, None] + _np(layer.modality_embedding)[m]
        if counts[m] > 1:
            x = x + _np(layer.position_embeddings[m])
        tokens.append(x)
    token_mask = np.concatenate([np.repeat(mask[:, m:m + 1], t, 1) for m, t in enumerate(counts)], 1)
    want_maps = []
    if not bottleneck:
        x = np.concatenate(tokens, 1)
        for i in range(2):
            x, probs = _block(layer, i, x, token_mask > 0)
            want_maps.append(probs)
    else:
        shared = np.broadcast_to(_np(layer.bottleneck), (4, bottleneck, d))
        for b in range(2):
            updates = []
            for m in range(2):
                z, probs = _block(layer, 2 * b + m, np.concatenate([tokens[m], shared], 1), np.ones((4, counts[m] + bottleneck), bool))
                want_maps.append(probs)
                tokens[m], update = z[:, : counts[m]], z[:, counts[m]:]
                updates.append(update)
            shared = (np.stack(updates, 1) * mask[:, :, None, None]).sum(1) / mask.sum(1)[:, None, None]
        x = np.concatenate(tokens, 1)
    x = _layer_norm(x, layer.final_norm)
    want = (x * token_mask[..., None]).sum(1) / token_mask.sum(1, keepdims=True)
    np.testing.assert_allclose(_np(fused), want, rtol=1e-4, atol=1e-5)
    assert len(maps) == len(want_maps)
    for got, expected in zip(maps, want_maps):
        np.testing.assert_allclose(_np(got), expected, rtol=1e-4, atol=1e-5)
