"""Loss balancing and gradient aggregation inside plain `model.fit` (backend-neutral: TF and JAX).

The methods are checked against NumPy versions of their papers' formulas; static weighting against
Keras's own compiled multi-output loss; a gradient-level method that returns w = 1 against static."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import mtmm_keras as mk
from mtmm_keras.weighting.dwa import dwa_weights

LAMBDAS = {"a": 1.0, "b": 0.5, "c": 2.0}


def _tasks():
    return [
        mk.Task("a", 1),
        mk.Task("b", 3, loss="sparse_categorical_crossentropy", weight=0.5, metrics=["accuracy"]),
        mk.Task("c", 1, weight=2.0, metrics=["mae"]),
    ]


@pytest.fixture
def data(rng):
    x = rng.normal(size=(64, 6)).astype("float32")
    y = {"a": rng.normal(size=(64, 1)).astype("float32"), "b": rng.integers(0, 3, size=(64,)),
         "c": rng.normal(size=(64, 1)).astype("float32")}
    return x, y


def _model(weighting="static", **kwargs):
    keras.utils.set_random_seed(1)
    return mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,), weighting=weighting, **kwargs)


def test_static_is_keras_compiled_loss_exactly(data):
    x, y = data
    model, twin = _model(), _model()
    plain = keras.Model(twin.inputs, twin.outputs)  # Keras's own Model on a copy of the same layers and weights
    plain.set_weights(model.get_weights())
    tasks = _tasks()
    plain.compile(optimizer="adam", loss={t.name: t.keras_loss() for t in tasks},
                  loss_weights={t.name: t.weight for t in tasks}, metrics={t.name: t.keras_metrics() for t in tasks},
                  steps_per_execution=1 if keras.backend.backend() == "torch" else 4)  # torch: one step per call
    ours = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    theirs = plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    for key, values in theirs.items():
        np.testing.assert_allclose(ours[key], values, rtol=1e-6, err_msg=key)
    for got, want in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for name, lam in LAMBDAS.items():
        assert ours[f"weight/{name}"] == [lam, lam]


@pytest.mark.parametrize("method", ["static", "uncertainty", "dwa", "rlw"])
def test_loss_level_methods_train_with_validation_and_log_weights(method, data):
    x, y = data
    model = _model(method)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x, y)).history
    for name in LAMBDAS:
        for key in (f"weight/{name}", f"val_weight/{name}", f"{name}_loss", f"val_{name}_loss"):
            assert len(history[key]) == 3 and np.all(np.isfinite(history[key])), key
    assert history["loss"][-1] < history["loss"][0] or method == "rlw"


def test_uncertainty_matches_kendall_and_learns_sigma(data):
    x, y = data
    method = mk.weighting.get("uncertainty")
    method.build_for_tasks(3)
    s = np.array([0.3, -0.2, 0.1], "float32")
    method.log_variance.assign(s)
    losses = np.array([1.5, 0.7, 2.0], "float32")
    total, weights = method.combine(ops.convert_to_tensor(losses))
    np.testing.assert_allclose(float(total), np.sum(0.5 * np.exp(-s) * losses + 0.5 * s), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(weights), 0.5 * np.exp(-s), rtol=1e-6)
    model = _model("uncertainty")
    before = np.asarray(model.weighting.log_variance).copy()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    after = np.asarray(model.weighting.log_variance)
    assert np.all(np.abs(after - before) > 1e-4)  # trained by the model's optimizer
    lambdas = np.array(list(LAMBDAS.values()))
    np.testing.assert_allclose([history[f"weight/{n}"][-1] for n in LAMBDAS], lambdas * 0.5 * np.exp(-after),
                               rtol=0.05)  # the epoch mean of a weight that moved a little during the epoch


def test_dwa_weights_follow_liu_et_al(data):
    x, y = data
    np.testing.assert_allclose(dwa_weights([1, 2], [2, 2], 2.0), 2 * np.exp([0.25, 0.5]) / np.exp([0.25, 0.5]).sum())
    model = _model("dwa")
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0).history
    lambdas = np.array(list(LAMBDAS.values()))
    for epoch in (0, 1):
        np.testing.assert_allclose([history[f"weight/{n}"][epoch] for n in LAMBDAS], lambdas)
    for epoch in (2, 3):
        previous = [history[f"{n}_loss"][epoch - 1] for n in LAMBDAS]
        before = [history[f"{n}_loss"][epoch - 2] for n in LAMBDAS]
        np.testing.assert_allclose([history[f"weight/{n}"][epoch] for n in LAMBDAS],
                                   lambdas * dwa_weights(previous, before, 2.0), rtol=1e-5)


def test_rlw_weights_are_a_softmax_of_standard_normals():
    method = mk.weighting.get("rlw", seed=3)
    method.build_for_tasks(3)
    draws = np.stack([np.asarray(method.combine(ops.ones((3,)))[1]) for _ in range(400)])
    np.testing.assert_allclose(draws.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(draws > 0) and draws.std(axis=0).min() > 0.05
    log_ratio = np.log(draws[:, 0] / draws[:, 1])  # ε_0 − ε_1 ~ N(0, 2)
    assert abs(log_ratio.mean()) < 0.25 and 1.6 < log_ratio.var() < 2.5
    _, weights = method.combine(ops.ones((3,)), training=False)
    np.testing.assert_allclose(ops.convert_to_numpy(weights), 1 / 3)


class _Ones(mk.weighting.Weighting):
    """A gradient-level method whose weights are 1: its step must be static weighting's."""

    level = "gradient"

    def gramian_weights(self, gramian):
        return ops.ones((gramian.shape[0],))


def test_gradient_level_with_unit_weights_trains_like_static(data):
    x, y = data
    static, ones = _model("static", optimizer="sgd", learning_rate=0.05), _model(_Ones(), optimizer="sgd",
                                                                                  learning_rate=0.05)
    ones.set_weights(static.get_weights())
    assert [v.path for v in ones.shared_variables()] == [v.path for v in ones.trainable_variables[:2]]  # the trunk
    a = static.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    b = ones.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, validation_data=(x, y)).history
    for got, want in zip(ones.get_weights(), static.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    assert b["weight/b"] == [0.5, 0.5] and "val_loss" in b


def test_gradient_level_method_gets_the_gramian_of_the_shared_gradients(data):
    """G handed to the method equals J Jᵀ of the λ-scaled task gradients over the trunk, computed by hand."""
    from test_missing_labels import _gradients

    x, y = data
    x, y = x[:16], {k: v[:16] for k, v in y.items()}
    seen = {}

    class Record(_Ones):
        def gramian_weights(self, gramian):
            seen["g"] = np.asarray(gramian)
            return ops.ones((gramian.shape[0],))

    model = _model(Record(), optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True)
    losses = {t.name: t.keras_loss() for t in _tasks()}
    rows = []
    for name, lam in LAMBDAS.items():
        grads = _gradients(model, lambda: lam * ops.mean(losses[name](y[name], model(x, training=True)[name])))
        rows.append(np.concatenate([g.reshape(-1) for g in grads[:2]]))  # the trunk's kernel and bias
    jacobian = np.stack(rows)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(seen["g"], jacobian @ jacobian.T, rtol=1e-4, atol=1e-7)


def test_unknown_weighting_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="`weighting`: unknown method 'nope'; valid names: .*dwa.*static"):
        _model("nope")
    with pytest.raises(TypeError, match="`weighting` must be a method name"):
        _model(3)


def test_gradnorm_step_matches_chen_et_al_and_trains(data):
    from mtmm_keras.weighting.gradnorm import gradnorm_step

    method = mk.weighting.get("gradnorm", alpha=1.5, learning_rate=0.1)
    method.build_for_tasks(3)
    rng = np.random.default_rng(4)
    jacobian = rng.normal(size=(3, 7)).astype("float32") * np.array([[1.0], [3.0], [0.3]], "float32")
    gramian = jacobian @ jacobian.T
    norms = np.linalg.norm(jacobian, axis=1)
    first, second = np.array([2.0, 1.0, 0.5], "float32"), np.array([1.5, 0.9, 0.2], "float32")
    w0 = np.asarray(method.aggregate(ops.convert_to_tensor(gramian), ops.convert_to_tensor(first)))
    np.testing.assert_allclose(w0, 1.0)  # w(0) = 1; L(0) is recorded
    w1 = gradnorm_step(np.ones(3), norms, first, first, 1.5, 0.1)
    np.testing.assert_allclose(np.asarray(method.loss_weights), w1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(method.aggregate(ops.convert_to_tensor(gramian),
                                                           ops.convert_to_tensor(second))), w1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(method.loss_weights), gradnorm_step(w1, norms, second, first, 1.5, 0.1),
                               rtol=1e-5)
    x, y = data
    history = _model("gradnorm").fit(x, y, batch_size=16, epochs=2, verbose=0).history
    weights = np.array([history[f"weight/{n}"][-1] for n in LAMBDAS]) / np.array(list(LAMBDAS.values()))
    assert np.all(np.isfinite(weights)) and not np.allclose(weights, 1.0)


@pytest.mark.parametrize("builder,method", [("soft_sharing", "upgrad"), ("attention_fusion", "uncertainty"),
                                            ("attention_fusion", "mgda")])
def test_other_builders_take_weighting(builder, method, rng):
    tasks = [mk.Task("a", 1), mk.Task("b", 2, loss="sparse_categorical_crossentropy", metrics=["accuracy"])]
    y = {"a": rng.normal(size=(32, 1)).astype("float32"), "b": rng.integers(-1, 2, size=(32,))}  # -1: missing
    if builder == "soft_sharing":
        model = mk.builders.soft_sharing((4,), tasks, tower_units=(8,), weighting=method)
        x = rng.normal(size=(32, 4)).astype("float32")
        assert {v.path for v in model.shared_variables()} == {v.path for v in model.trainable_variables
                                                              if v.path.startswith("towers")}
    else:
        encoders = {m: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)], name=f"{m}_encoder")
                    for m in ("left", "right")}
        model = mk.builders.attention_fusion(encoders, tasks, fusion_dim=4, weighting=method)
        x = {m: rng.normal(size=(32, 3)).astype("float32") for m in ("left", "right")}
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and len(history["weight/b"]) == 2
    assert model.weighting.method_name == method


def test_set_weighting_replaces_the_method_and_checks_the_task_count():
    model = _model("uncertainty")
    model.set_weighting("dwa", temperature=3.0)
    paths = [v.path for v in model.variables]
    assert not any("log_variance" in p for p in paths) and sum("loss_history" in p for p in paths) == 1
    assert model.get_config()["weighting"]["config"]["temperature"] == 3.0
    two = mk.weighting.get("uncertainty")
    two.build_for_tasks(2)
    with pytest.raises(ValueError, match="built for 2 tasks; this model has 3"):
        model.set_weighting(two)


def _list_output_model(weighting="static"):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6,))
    trunk = keras.layers.Dense(8, activation="relu", name="trunk")(inputs)
    outputs = [keras.layers.Dense(1, name="a")(trunk), keras.layers.Dense(1, name="c")(trunk)]
    model = mk.models.MultiTaskModel(inputs, outputs)
    model.set_weighting(weighting)
    model.compile(optimizer="sgd", loss=["mse", "mae"], loss_weights=[1.0, 2.0])
    return model


@pytest.mark.parametrize("weighting", ["static", "upgrad"])
def test_list_outputs_use_keras_output_names(data, weighting):
    x, y = data
    model = _list_output_model(weighting)
    assert model.task_names == list(model.output_names) == ["a", "c"]
    history = model.fit(x, [y["a"], y["c"]], batch_size=16, epochs=1, verbose=0).history
    assert {"a_loss", "c_loss", "weight/a", "weight/c"} <= set(history)
    if weighting == "static":  # λ from compile's list loss_weights
        np.testing.assert_allclose([history["weight/a"][0], history["weight/c"][0]], [1.0, 2.0], rtol=1e-6)
    else:
        assert [v.path for v in model.shared_variables()] == ["trunk/kernel", "trunk/bias"]


def test_no_task_loss_is_a_clear_error(data):
    x, y = data
    model = _list_output_model()
    model.compile(optimizer="sgd", loss={"zzz": "mse"})
    with pytest.raises(ValueError, match="No task loss"):
        model.compute_loss(x[:4], [y["a"][:4], y["c"][:4]], model(x[:4]))


def test_loss_weights_are_read_from_compile(data, monkeypatch):
    x, y = data
    model = _model()
    model.compile(optimizer="adam", loss={t.name: t.keras_loss() for t in _tasks()},
                  loss_weights={"a": 3.0, "b": 0.25, "c": 1.5})
    monkeypatch.delattr(model._compile_loss, "_user_loss_weights", raising=False)  # the private copy is not read
    assert model.compiled_loss_weights == {"a": 3.0, "b": 0.25, "c": 1.5}  # compile's argument, not _compile_loss
    assert [task.weight for task in model._task_plan()] == [3.0, 0.25, 1.5]
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    np.testing.assert_allclose([history[f"weight/{t}"][0] for t in "abc"], [3.0, 0.25, 1.5], rtol=1e-6)


def _graph_walk_shared(model):
    """The previous implementation (walks Keras's node internals): the reference for the shared sets."""
    owners = {}
    for tensor in model.outputs:
        seen, stack, ids = set(), [tensor], set()
        while stack:
            history = getattr(stack.pop(), "_keras_history", None)
            if history is None or id(history[0]) in seen:
                continue
            seen.add(id(history[0]))
            ids |= {id(v) for v in history[0].trainable_variables}
            nodes = history[0]._inbound_nodes
            if history[1] < len(nodes):
                stack.extend(nodes[history[1]].input_tensors)
        for key in ids:
            owners[key] = owners.get(key, 0) + 1
    return {v.path for v in model.trainable_variables if owners.get(id(v), 0) >= 2}


def test_shared_variables_use_public_keras_and_match_the_graph_walk():
    """`shared_variables` reads the graph through public Keras only (a sub-model per output), gives the
    same sets as walking Keras's node internals (hard sharing, soft sharing, PLE), and is cached."""
    import inspect

    source = inspect.getsource(mk.models.MultiTaskModel.shared_variables)
    assert "_keras_history" not in source and "_inbound_nodes" not in source
    tasks = [mk.Task("a", 1), mk.Task("b", 2)]
    keras.utils.set_random_seed(0)
    cases = {
        "hard": mk.builders.hard_sharing((4,), tasks, trunk_units=(8,), weighting="upgrad"),
        "ple": mk.builders.ple((4,), tasks, weighting="upgrad"),
        "soft": mk.builders.soft_sharing((4,), tasks, tower_units=(4,), weighting="upgrad"),
    }
    for name, model in cases.items():
        got = model.shared_variables()
        assert {v.path for v in got} == _graph_walk_shared(model), name
        assert got and model.shared_variables()[0] is got[0], name  # cached
    assert {v.path for v in cases["hard"].shared_variables()} == {"trunk_dense1/kernel", "trunk_dense1/bias"}


def test_gradient_level_weighting_refuses_loss_scaling(data):
    """mixed_float16: `compile` wraps the optimizer in a LossScaleOptimizer, which the gradient-level
    step does not scale for; fit refuses it before any step (weights untouched), loss-level still trains."""
    x, y = data
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _model("upgrad")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        weights = [w.copy() for w in model.get_weights()]
        with pytest.raises(ValueError, match="upgrad.*LossScaleOptimizer.*mixed_float16"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
        loss_level = _model("uncertainty")
        assert np.isfinite(loss_level.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"]).all()
    finally:
        keras.config.set_dtype_policy("float32")


def test_gradnorm_records_initial_loss_at_a_tasks_first_labelled_batch(data):
    from mtmm_keras.weighting.gradnorm import GradNorm

    method = GradNorm()
    method.build_for_tasks(2)
    gramian = ops.convert_to_tensor(np.eye(2, dtype="float32"))
    method.aggregate(gramian, ops.convert_to_tensor([2.0, 0.0]), counts=ops.convert_to_tensor([5.0, 0.0]))
    np.testing.assert_allclose(np.asarray(method.initial_losses), [2.0, 0.0])  # b: no labels yet
    method.aggregate(gramian, ops.convert_to_tensor([1.5, 3.0]), counts=ops.convert_to_tensor([5.0, 4.0]))
    np.testing.assert_allclose(np.asarray(method.initial_losses), [2.0, 3.0])  # b: its first labelled batch
    method.aggregate(gramian, ops.convert_to_tensor([1.0, 0.5]), counts=ops.convert_to_tensor([5.0, 4.0]))
    np.testing.assert_allclose(np.asarray(method.initial_losses), [2.0, 3.0])


def test_gradnorm_in_fit_with_a_task_unlabelled_in_the_first_batch(data):
    x, y = data
    y = {**y, "c": y["c"].copy()}
    y["c"][:16] = np.nan  # no label of c in the first batch
    model = _model("gradnorm")
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert np.all(np.asarray(model.weighting.initial_losses) > 0)


def test_nash_mtl_optim_niter_warns_that_it_is_unused():
    from mtmm_keras.weighting.nash_mtl import NashMTL

    with pytest.warns(UserWarning, match="optim_niter.*no effect"):
        method = NashMTL(optim_niter=7)
    assert method.get_config()["optim_niter"] == 7
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NashMTL()
