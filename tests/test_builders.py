"""Builder behaviour: learning, safe-mode round-trips, and argument errors. Runs on TF and on JAX."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk

REFERENCE_TASKS = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)]


def _views(n=256, seed=0, noise=1.0):
    return mk.data.paired_modalities(n, num_classes=4, noise=noise, seed=seed)


def _fit_losses(model, x, y=None, epochs=6, batch_size=32):
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False).history["loss"]


def _assert_round_trip(model, x, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model)
    want, got = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    assert set(want) == set(got)
    for key in want:
        np.testing.assert_array_equal(want[key], got[key])
    return reloaded


def _fusion_encoders():
    return {"image": mk.encoders.image((8, 8, 1), filters=(8, 16), output_dim=16), "tabular": mk.encoders.tabular(16, (16,))}


def _joint_encoders(kind="conv"):
    return {"text": mk.encoders.text(64, 12, embedding_dim=16, hidden_dim=16, kind=kind), "image": mk.encoders.image((8, 8, 1), filters=(8, 16), output_dim=16)}


# --- hard sharing ---------------------------------------------------------------------------

def test_hard_sharing_learns_and_round_trips(tmp_path):
    x, y = mk.data.reference_multitask(512)
    model = mk.builders.hard_sharing((100,), REFERENCE_TASKS)
    assert set(model.output) == {"a", "b", "c"} and model.output["c"].shape == (None, 2)
    losses = _fit_losses(model, x, y)
    assert losses[-1] < 0.6 * losses[0]
    _assert_round_trip(model, x[:16], tmp_path)


def test_hard_sharing_total_loss_is_weighted_sum():
    x, y = mk.data.reference_multitask(64)
    tasks = [mk.Task("a", 1, weight=2.0), mk.Task("b", 1, weight=0.5), mk.Task("c", 2, loss="mae")]
    model = mk.builders.hard_sharing((100,), tasks)
    result = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    want = 2.0 * np.mean((pred["a"] - y["a"]) ** 2) + 0.5 * np.mean((pred["b"] - y["b"]) ** 2) + np.mean(np.abs(pred["c"] - y["c"]))
    assert result["loss"] == pytest.approx(want, rel=1e-4)


def test_hard_sharing_accepts_input_and_encoder():
    model = mk.builders.hard_sharing(keras.Input((12,), name="x"), [mk.Task("t", 3)], trunk_units=(8,))
    assert model.input.name == "x"
    encoder = mk.encoders.image((8, 8), filters=(4,), output_dim=8)
    on_encoder = mk.builders.hard_sharing(encoder, [mk.Task("cls", 4, loss="sparse_categorical_crossentropy")], trunk_units=(8,))
    out = on_encoder.predict(np.zeros((2, 8, 8), "float32"), verbose=0)
    assert out["cls"].shape == (2, 4)


def test_hard_sharing_classification_and_regression_side_by_side():
    v = _views(512, noise=0.5)
    tasks = [
        mk.Task("label", 4, loss="sparse_categorical_crossentropy", metrics=["accuracy"]),
        mk.Task("parity", 1, loss="binary_crossentropy", metrics=["accuracy"]),
        mk.Task("centroid", 1),
    ]
    y = {"label": v["label"], "parity": (v["label"] % 2).astype("float32"), "centroid": v["tabular"][:, :1]}
    model = mk.builders.hard_sharing((16,), tasks, trunk_units=(32,))
    history = model.fit(v["tabular"], y, epochs=8, batch_size=32, verbose=0).history
    assert history["label_accuracy"][-1] > 0.7
    assert history["parity_accuracy"][-1] > 0.7


# --- soft sharing ---------------------------------------------------------------------------

def test_soft_sharing_learns_and_round_trips(tmp_path):
    x, y = mk.data.reference_multitask(512)
    model = mk.builders.soft_sharing((100,), REFERENCE_TASKS, alpha=1e-4)
    losses = _fit_losses(model, x, y)
    assert losses[-1] < 0.6 * losses[0]
    _assert_round_trip(model, x[:16], tmp_path)


def test_soft_sharing_alpha_pulls_towers_together():
    x, y = mk.data.reference_multitask(256)

    def spread(alpha):
        keras.utils.set_random_seed(1)
        model = mk.builders.soft_sharing((100,), REFERENCE_TASKS, tower_units=(16,), alpha=alpha, learning_rate=1e-2)
        model.fit(x, y, epochs=10, batch_size=32, verbose=0)
        kernel = keras.ops.convert_to_numpy(model.get_layer("towers_dense1").kernel)
        return np.sum((kernel - kernel.mean(0)) ** 2)

    assert spread(1.0) < 0.1 * spread(0.0)


# --- attention fusion -----------------------------------------------------------------------

def test_attention_fusion_learns_reads_alpha_and_round_trips(tmp_path):
    v = _views(512)
    x = {"image": v["image"], "tabular": v["tabular"]}
    tasks = [mk.Task("label", 4, loss="sparse_categorical_crossentropy", metrics=["accuracy"]), mk.Task("parity", 1, loss="binary_crossentropy")]
    y = {"label": v["label"], "parity": (v["label"] % 2).astype("float32")}
    model = mk.builders.attention_fusion(_fusion_encoders(), tasks, fusion_dim=16)
    assert [t.name for t in model.inputs] == ["image", "tabular"]
    losses = _fit_losses(model, x, y, epochs=8)
    assert losses[-1] < 0.6 * losses[0]
    alpha = mk.builders.attention_model(model).predict({k: a[:10] for k, a in x.items()}, verbose=0)
    assert alpha.shape == (10, 2)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-5)
    both = mk.builders.with_attention_output(model).predict({k: a[:10] for k, a in x.items()}, verbose=0)
    np.testing.assert_allclose(both["attention"], alpha, rtol=1e-6)
    reloaded = _assert_round_trip(model, {k: a[:10] for k, a in x.items()}, tmp_path)
    np.testing.assert_allclose(mk.builders.attention_model(reloaded).predict({k: a[:10] for k, a in x.items()}, verbose=0), alpha, rtol=1e-6)


def test_attention_fusion_errors():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        mk.builders.attention_fusion({"image": mk.encoders.image((8, 8))}, [mk.Task("t", 2)])
    with pytest.raises(TypeError, match=r"^`encoders` must be a dict \{modality name: keras.Model\}, got list"):
        mk.builders.attention_fusion([mk.encoders.image((8, 8))], [mk.Task("t", 2)])
    with pytest.raises(ValueError, match="^`fusion_dim` must be a positive integer, got 0"):
        mk.builders.attention_fusion(_fusion_encoders(), [mk.Task("t", 2)], fusion_dim=0)
    with pytest.raises(ValueError, match=r"^`tasks` names \['attention'\] clash with modality/output names"):
        mk.builders.attention_fusion(_fusion_encoders(), [mk.Task("attention", 2)])


# --- joint embedding ------------------------------------------------------------------------

def test_joint_embedding_in_batch_negatives_learn_and_round_trip(tmp_path):
    v = _views(512)
    x = {"text": v["tokens"], "image": v["image"]}
    model = mk.builders.joint_embedding(_joint_encoders(), embedding_dim=16)
    assert isinstance(model.loss, mk.losses.MaxMarginRankingLoss)
    # labels as group ids: same-class items are not negatives
    losses = _fit_losses(model, x, v["label"], epochs=10)
    assert losses[-1] < 0.5 * losses[0]
    text = mk.builders.tower(model, "text").predict(v["tokens"], verbose=0)
    image = mk.builders.tower(model, "image").predict(v["image"], verbose=0)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    recall = mk.retrieval.retrieval_recall(text, image, ks=(1,), query_ids=v["label"], gallery_ids=v["label"])
    assert recall["recall_at_1"] > 0.7  # 4 classes: chance is 0.25
    _assert_round_trip(model, {k: a[:16] for k, a in x.items()}, tmp_path)


def test_joint_embedding_fits_without_labels_and_with_lstm():
    v = _views(128)
    model = mk.builders.joint_embedding(_joint_encoders("lstm"), embedding_dim=8, loss="hardest_negative")
    losses = _fit_losses(model, {"text": v["tokens"], "image": v["image"]}, epochs=3)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_joint_embedding_loss_equals_spec_on_batch():
    v = _views(16)
    x = {"text": v["tokens"], "image": v["image"]}
    model = mk.builders.joint_embedding(_joint_encoders(), embedding_dim=8, loss=mk.losses.MaxMarginRankingLoss(margin=0.2, bidirectional=False))
    emb = model.predict(x, verbose=0)
    sim = emb["text"] @ emb["image"].T  # cosine: towers L2-normalise
    per_anchor = [sum(max(0.0, sim[i, k] - sim[i, i] + 0.2) for k in range(16) if k != i) for i in range(16)]
    result = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(np.mean(per_anchor), rel=1e-4)


def test_joint_embedding_pair_mode_with_cosine_embedding_loss(tmp_path):
    v = _views(512)
    rng = np.random.default_rng(3)
    partner = np.where(rng.random(512) < 0.5, np.arange(512), rng.permutation(512))
    labels = np.where(v["label"][partner] == v["label"], 1.0, -1.0).astype("float32")
    x = {"text": v["tokens"], "image": v["image"][partner]}
    model = mk.builders.joint_embedding(_joint_encoders(), embedding_dim=16, loss=mk.losses.CosineEmbeddingLoss(margin=0.1))
    losses = _fit_losses(model, x, labels, epochs=12)
    assert losses[-1] < 0.7 * losses[0]
    emb = model.predict(x, verbose=0)
    cosine = np.sum(emb["text"] * emb["image"], axis=1)
    assert cosine[labels > 0].mean() - cosine[labels < 0].mean() > 0.3
    _assert_round_trip(model, {k: a[:8] for k, a in x.items()}, tmp_path)


def test_joint_embedding_errors():
    encoders = {"text": mk.encoders.text(10, 5, hidden_dim=16), "image": mk.encoders.image((8, 8), output_dim=8)}
    with pytest.raises(ValueError, match="Embedding sizes do not match.*'text': 16.*'image': 8"):
        mk.builders.joint_embedding(encoders, embedding_dim=None)
    with pytest.raises(ValueError, match=r"^`loss` must be a keras.losses.Loss or one of \[.*'max_margin'.*\]; got 'nope'"):
        mk.builders.joint_embedding(encoders, loss="nope")
    with pytest.raises(ValueError, match="^`similarity` must be one of 'cosine', 'dot'; got 'euclid'"):
        mk.builders.joint_embedding(encoders, similarity="euclid")
    with pytest.raises(ValueError, match="at least 2 modalities"):
        mk.builders.joint_embedding({"text": encoders["text"]})
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        three = dict(encoders, tab=mk.encoders.tabular(4))
        mk.builders.joint_embedding(three, loss="cosine_embedding")
    model = mk.builders.joint_embedding(encoders, embedding_dim=8)
    with pytest.raises(ValueError, match="'audio' is not in this model; its modalities are"):
        mk.builders.tower(model, "audio")


# --- shared argument checks -------------------------------------------------------------------

@pytest.mark.parametrize("builder", [mk.builders.hard_sharing, mk.builders.soft_sharing])
def test_multitask_builder_argument_errors(builder):
    with pytest.raises(ValueError, match="`tasks` is empty"):
        builder((4,), [])
    with pytest.raises(ValueError, match="duplicate task names"):
        builder((4,), [mk.Task("a", 1), mk.Task("a", 1)])
    with pytest.raises(TypeError, match=r"^`inputs` must be an input shape tuple such as \(100,\).*; got str 'four'"):
        builder("four", [mk.Task("a", 1)])
    with pytest.raises(ValueError, match=r"^`inputs\[0\]` must be a positive integer, got 0"):
        builder((0,), [mk.Task("a", 1)])
    with pytest.raises(ValueError, match=r"^`optimizer`: unknown optimizer 'not_an_optimizer' \(try 'adam'"):
        builder((4,), [mk.Task("a", 1)], optimizer="not_an_optimizer")


def test_fit_with_wrong_shape_is_a_clear_error():
    model = mk.builders.hard_sharing((10,), [mk.Task("a", 1)], trunk_units=(4,))
    with pytest.raises(ValueError, match=r"^input 'features' has shape \(8, 11\), but the model expects \[rows, 10\]"):
        model.fit(np.zeros((8, 11), "float32"), {"a": np.zeros((8, 1))}, verbose=0)


def test_compile_false_and_custom_optimizer():
    model = mk.builders.hard_sharing((4,), [mk.Task("a", 1)], compile=False)
    assert not model.compiled
    model = mk.builders.soft_sharing((4,), [mk.Task("a", 1), mk.Task("b", 1)], optimizer=keras.optimizers.SGD(0.1))
    assert isinstance(model.optimizer, keras.optimizers.SGD)
