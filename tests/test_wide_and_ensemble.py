"""Wide & Deep heads (`wide=` on the multi-task builders, `mk.layers.WideDeepHead`) and seed ensembles
(`mk.models.average_ensemble`): NumPy oracles, every builder, errors that name the argument, saving. Runs on every
backend; a wide ensemble's reload in a new process is in tests/reliability/test_reload_new_process.py."""

from __future__ import annotations


import keras
import numpy as np
import pytest

import mtmm_keras as mk

TASKS = [mk.Task("label", units=1, loss="binary_crossentropy"),
         mk.Task("kind", units=3, loss="sparse_categorical_crossentropy"), mk.Task("score", units=1, loss="mse")]
VOCAB = 50


def _encoders():
    return {"title": mk.encoders.text(vocab_size=VOCAB, sequence_length=6, kind="sum", embedding_dim=4,
                                      input_name="title", name="title_encoder"),
            "tabular": mk.encoders.tabular(3, hidden_units=(4,), input_name="tabular", name="tabular_encoder")}


def _inputs(rows=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (rows, 6)).astype("int32")
    ids[:, -2:] = 0  # padding
    ids[0, :3] = 7  # a repeated word counts three times
    return {"title": ids, "tabular": rng.normal(size=(rows, 3)).astype("float32")}


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype(w.dtype) for w in model.get_weights()])


def test_wide_deep_head_matches_numpy_word_counts_and_a_linear_map():
    head = mk.layers.WideDeepHead(2, activation="sigmoid", wide_vocab_sizes=[VOCAB, None])
    rng = np.random.default_rng(0)
    deep = rng.normal(size=(5, 4)).astype("float32")
    x = _inputs()
    out = keras.ops.convert_to_numpy(head([deep, x["title"], x["tabular"]]))
    kernel, bias, words, linear = [rng.normal(size=w.shape).astype("float32") for w in head.get_weights()]
    head.set_weights([kernel, bias, words, linear])
    out = keras.ops.convert_to_numpy(head([deep, x["title"], x["tabular"]]))
    counts = np.zeros((5, VOCAB), "float32")
    for row, ids in enumerate(x["title"]):
        for i in ids[ids != 0]:
            counts[row, i] += 1.0
    expected = 1.0 / (1.0 + np.exp(-(deep @ kernel + bias + counts @ words + x["tabular"] @ linear)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert [w.path.split("/")[-1] for w in head.weights][:2] == ["kernel", "bias"]


def test_wide_weights_start_at_zero_and_wide_l2_is_their_penalty():
    head = mk.layers.WideDeepHead(1, wide_vocab_sizes=[VOCAB], wide_l2=0.01)
    deep = np.ones((2, 3), "float32")
    head([deep, np.ones((2, 4), "int32")])
    assert not np.any(keras.ops.convert_to_numpy(head.wide_weights[0]))
    head.wide_weights[0].assign(np.full((VOCAB, 1), 2.0, "float32"))
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in head.losses))
    assert penalty == pytest.approx(0.01 * VOCAB * 4.0, rel=1e-6)


@pytest.mark.parametrize("kind", ["hard_sharing", "soft_sharing", "mmoe", "cgc", "ple", "cross_stitch"])
def test_every_multi_task_builder_takes_wide_and_its_heads_add_the_word_counts(kind):
    model = getattr(mk.builders, kind)(_encoders(), TASKS, wide={"title": VOCAB, "tabular": None}, wide_l2=1e-4)
    for task in TASKS:
        head = model.get_layer(task.name)
        assert isinstance(head, mk.layers.WideDeepHead) and head.wide_vocab_sizes == [VOCAB, None]
    x = _inputs()
    before = model.predict(x, verbose=0)
    head = model.get_layer("label")
    table = np.zeros((VOCAB, 1), "float32")
    table[7] = 0.5
    head.wide_weights[0].assign(table)
    after = model.predict(x, verbose=0)
    np.testing.assert_allclose(after["label"] - before["label"], 0.5 * (x["title"] == 7).sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after["score"], before["score"], atol=1e-6)  # another task's head is untouched
    if kind == "mmoe":  # one builder trains (the zoo test trains hard sharing): the heads' gradients flow
        model.fit(x, {"label": np.ones((5, 1)), "kind": np.zeros(5), "score": np.zeros((5, 1))}, epochs=1, verbose=0)


def test_without_wide_the_heads_stay_dense():
    model = mk.builders.mmoe(_encoders(), TASKS)
    assert all(type(model.get_layer(t.name)) is keras.layers.Dense for t in TASKS)


@pytest.mark.parametrize("wide, wide_l2, error, message", [
    ({"titel": VOCAB}, 0.0, ValueError, r"^`wide` names the input 'titel', which the model does not have; its inputs: "
                                        r"'title', 'tabular'\.$"),
    ({"title": None}, 0.0, ValueError, r"^`wide\['title'\]` is None \(a float input's linear path\), but input 'title' "
                                       r"holds int32 token ids: give their vocabulary size"),
    ({"tabular": 10}, 0.0, ValueError, r"^`wide\['tabular'\]` is a vocabulary size \(10\), but input 'tabular' holds "
                                       r"float32 features, not token ids: use None"),
    ({"title": 1}, 0.0, ValueError, r"^`wide\['title'\]` must be a vocabulary size >= 2"),
    ({"title": 2.5}, 0.0, ValueError, r"^`wide\['title'\]` must be a positive integer"),
    (["title"], 0.0, TypeError, r"^`wide` must be a dict \{model input name: vocabulary size"),
    (None, 0.1, ValueError, r"^`wide_l2` \(0\.1\) penalises the wide paths, but `wide` names none"),
    ({"title": VOCAB}, -1.0, ValueError, r"^`wide_l2` must be"),
])
def test_a_bad_wide_argument_is_named_with_what_would_be_valid(wide, wide_l2, error, message):
    with pytest.raises(error, match=message):
        mk.builders.mmoe(_encoders(), TASKS, wide=wide, wide_l2=wide_l2)


def test_fusion_builders_do_not_take_wide():
    """A missing modality's wide path would bypass the modality mask, so fusion builders have no `wide`."""
    with pytest.raises(TypeError, match=r"^concat_fusion\(\) got an unexpected keyword argument 'wide'"):
        mk.builders.concat_fusion(_encoders(), TASKS, wide={"title": VOCAB})


def _members(count=3):
    members = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        member = mk.builders.mmoe(_encoders(), TASKS, wide={"title": VOCAB}, compile=False)
        _randomise(member, seed)
        members.append(member)
    return members


def test_average_ensemble_outputs_are_the_mean_of_its_members():
    members = _members()
    x = _inputs()
    each = [m.predict(x, verbose=0) for m in members]
    ensemble = mk.models.average_ensemble(members, name="trio")
    out = ensemble.predict(x, verbose=0)
    assert sorted(out) == sorted(t.name for t in TASKS)
    for task in out:
        np.testing.assert_allclose(out[task], np.mean([e[task] for e in each], axis=0), rtol=1e-5, atol=1e-6)
    nested = [layer for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in nested] == ["trio_member_0", "trio_member_1", "trio_member_2"]
    assert all(m.name.startswith("mmoe") for m in members)  # the caller's models are left as they were
    assert [c["name"] for c in ensemble.task_configs] == [t.name for t in TASKS]
    assert ensemble.count_params() == sum(m.count_params() for m in members)


def test_average_ensemble_refuses_members_that_do_not_match():
    one = mk.builders.hard_sharing((4,), TASKS, compile=False)
    other_inputs = mk.builders.hard_sharing((5,), TASKS, compile=False)
    other_outputs = mk.builders.hard_sharing((4,), TASKS[:2], compile=False)
    with pytest.raises(ValueError, match=r"^`members` needs at least 2 models to average, got 1\.$"):
        mk.models.average_ensemble([one])
    with pytest.raises(ValueError, match=r"^`members\[1\]` takes the inputs .* an ensemble's members must take the same"):
        mk.models.average_ensemble([one, other_inputs])
    with pytest.raises(ValueError, match=r"^`members\[1\]` gives the outputs .* must give the same outputs\.$"):
        mk.models.average_ensemble([one, other_outputs])
    with pytest.raises(TypeError, match=r"^`members\[1\]` must be a built functional keras.Model, got str\.$"):
        mk.models.average_ensemble([one, "model"])


def test_an_ensemble_of_trained_members_saves_their_weights_and_no_optimizer_state(tmp_path):
    members = _members(2)
    for member in members:
        member.compile(optimizer="adam", loss={"label": "binary_crossentropy",
                                              "kind": "sparse_categorical_crossentropy", "score": "mse"})
        member.fit(_inputs(), {"label": np.ones((5, 1)), "kind": np.zeros(5), "score": np.zeros((5, 1))}, verbose=0)
    ensemble = mk.models.average_ensemble(members)
    ensemble.save_weights(tmp_path / "ensemble.weights.h5")
    import h5py

    with h5py.File(tmp_path / "ensemble.weights.h5") as f:
        names = []
        f.visit(names.append)
    assert names and not [n for n in names if "optimizer" in n], [n for n in names if "optimizer" in n][:5]
    stored = sum(int(np.prod(w.shape)) for w in ensemble.weights)
    assert stored == sum(m.count_params() for m in members)


def test_average_ensemble_of_plain_functional_models_with_list_outputs():
    def plain(seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((3,), name="x")
        return keras.Model(x, [keras.layers.Dense(1, name="y")(x), keras.layers.Dense(2, name="z")(x)])

    members = [plain(0), plain(1)]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    each = [m.predict(x, verbose=0) for m in members]
    out = mk.models.average_ensemble(members).predict(x, verbose=0)
    np.testing.assert_allclose(out["y"], (each[0][0] + each[1][0]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["z"], (each[0][1] + each[1][1]) / 2, rtol=1e-5, atol=1e-6)
