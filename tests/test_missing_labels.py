"""Missing labels: NaN (regression) / −1 (class labels) / `Task.missing_label` rows drop out of a task's
loss and metrics; the rest of the batch trains as if those rows were not there. Backend-neutral."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import mtmm_keras as mk

ROWS = 32


def _tasks(**a_kwargs):
    return [
        mk.Task("a", 1, weight=2.0, metrics=["mae"], **a_kwargs),
        mk.Task("b", 3, loss="sparse_categorical_crossentropy", weight=0.5, metrics=["accuracy"]),
    ]


def _data(rng):
    x = rng.normal(size=(ROWS, 6)).astype("float32")
    y = {"a": rng.normal(size=(ROWS, 1)).astype("float32"), "b": rng.integers(0, 3, size=(ROWS,)).astype("int64")}
    return x, y


def _gradients(model, loss_fn):
    """d loss_fn(model outputs...) / d trainable variables, on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return [np.asarray(g) for g in tape.gradient(loss, model.trainable_variables)]
    if backend == "jax":
        import jax
        from keras.src import backend as kb

        def value(trainable):
            mapping = list(zip(model.trainable_variables, trainable))
            mapping += [(v, v.value) for v in model.non_trainable_variables + model.metrics_variables]
            with kb.StatelessScope(state_mapping=mapping):
                return loss_fn()

        return [np.asarray(g) for g in jax.grad(value)([v.value for v in model.trainable_variables])]
    if backend == "torch":
        import torch

        tensors = [v.value for v in model.trainable_variables]
        grads = torch.autograd.grad(loss_fn(), tensors, allow_unused=True)  # unused: None, as on TensorFlow
        return [np.zeros(t.shape, "float32") if g is None else g.detach().cpu().numpy() for g, t in zip(grads, tensors)]
    pytest.skip(f"gradients are read here on TensorFlow, JAX and torch, not {backend}")


def test_half_missing_labels_give_the_gradients_of_training_on_the_present_rows(rng):
    x, y = _data(rng)
    present = np.arange(ROWS) % 2 == 0
    y_missing = {"a": np.where(present[:, None], y["a"], np.nan).astype("float32"), "b": y["b"]}
    model = mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,))

    def masked():
        return model.compute_loss(x, y_missing, model(x, training=True), training=True)

    def present_rows_alone():
        a = keras.losses.mean_squared_error(y["a"][present], model(x[present], training=True)["a"])
        b = keras.losses.sparse_categorical_crossentropy(y["b"], model(x, training=True)["b"], from_logits=True)
        return 2.0 * ops.mean(a) + 0.5 * ops.mean(b)

    got, want = _gradients(model, masked), _gradients(model, present_rows_alone)
    assert len(got) == len(want) == len(model.trainable_variables)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # and not the gradients of treating the missing labels as zeros
    zeros = {"a": np.nan_to_num(y_missing["a"]), "b": y["b"]}
    as_zero = _gradients(model, lambda: model.compute_loss(x, zeros, model(x, training=True), training=True))
    assert not np.allclose(as_zero[0], want[0], rtol=1e-3)


def test_minus_one_class_labels_are_missing_and_rows_without_labels_add_nothing(rng):
    x, y = _data(rng)
    model = mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,))
    # 8 extra rows with no label for any task: the loss and every metric are unchanged
    x_more = np.concatenate([x, rng.normal(size=(8, 6)).astype("float32")])
    y_more = {"a": np.concatenate([y["a"], np.full((8, 1), np.nan, "float32")]),
              "b": np.concatenate([y["b"], np.full((8,), -1, "int64")])}
    base = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    more = model.evaluate(x_more, y_more, batch_size=64, verbose=0, return_dict=True)
    for key in ("loss", "a_loss", "b_loss", "a_mae", "b_accuracy"):
        np.testing.assert_allclose(more[key], base[key], rtol=1e-5, err_msg=key)
    # metrics over present rows: a_mae is the numpy MAE of the rows that have a label
    y_half = {"a": y["a"].copy(), "b": y["b"].copy()}
    y_half["a"][::2] = np.nan
    y_half["b"][1::2] = -1
    result = model.evaluate(x, y_half, batch_size=64, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(result["a_mae"], np.abs(pred["a"][1::2] - y["a"][1::2]).mean(), rtol=1e-5)
    accuracy = (pred["b"][::2].argmax(-1) == y["b"][::2]).mean()
    np.testing.assert_allclose(result["b_accuracy"], accuracy, rtol=1e-6)


def test_a_batch_without_any_label_of_a_task_adds_zero_not_nan(rng):
    x, y = _data(rng)
    model = mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,))
    pred = model(x)
    none_a = {"a": np.full((ROWS, 1), np.nan, "float32"), "b": y["b"]}
    loss = float(model.compute_loss(x, none_a, pred, training=False))
    b_only = 0.5 * float(ops.mean(keras.losses.sparse_categorical_crossentropy(y["b"], pred["b"], from_logits=True)))
    np.testing.assert_allclose(loss, b_only, rtol=1e-5)
    history = model.fit(x, {"a": np.where(np.arange(ROWS)[:, None] < 4, y["a"], np.nan), "b": y["b"]},
                        batch_size=8, epochs=1, shuffle=False, verbose=0).history  # batches 2–4 have no `a` label
    assert all(np.isfinite(v[0]) for v in history.values())


def test_custom_marker_and_the_fit_checks(rng):
    x, y = _data(rng)
    marked = {"a": np.where(np.arange(ROWS)[:, None] % 2 == 0, -100.0, y["a"]).astype("float32"), "b": y["b"]}
    nan = {"a": np.where(np.arange(ROWS)[:, None] % 2 == 0, np.nan, y["a"]).astype("float32"), "b": y["b"]}
    custom = mk.builders.hard_sharing((6,), _tasks(missing_label=-100), trunk_units=(8,))
    auto = mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,))
    auto.set_weights(custom.get_weights())
    np.testing.assert_allclose(custom.evaluate(x, marked, batch_size=64, verbose=0),
                               auto.evaluate(x, nan, batch_size=64, verbose=0), rtol=1e-6)
    never = mk.builders.hard_sharing((6,), _tasks(missing_label=None), trunk_units=(8,))
    with pytest.raises(ValueError, match="non-finite"):
        never.fit(x, nan, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="task 'a'.*all missing"):
        auto.fit(x, {"a": np.full((ROWS, 1), np.nan, "float32"), "b": y["b"]}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="class ids 0..2"):
        auto.fit(x, {"a": y["a"], "b": np.full((ROWS,), -2)}, epochs=1, verbose=0)  # -1 is the marker, -2 is not
    bad_x = x.copy()
    bad_x[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        auto.fit(bad_x, nan, epochs=1, verbose=0)  # missing labels never excuse NaN inputs


def test_task_missing_label_setting_round_trips_and_is_checked():
    for value, stored in (("auto", "auto"), (None, None), (-1, -1), (float("nan"), "nan"), (-0.5, -0.5)):
        task = mk.Task("a", 1, missing_label=value)
        assert task.missing_label == stored
        assert mk.Task.from_config(task.get_config()) == task
    for bad in ("none", float("inf"), True, [1]):
        with pytest.raises(ValueError, match=r"Task\('a'\).missing_label"):
            mk.Task("a", 1, missing_label=bad)


def test_zoo_evaluation_skips_missing_labels():
    from mtmm_keras.zoo import evaluation

    class _Model:  # predict() only: what task_metrics reads
        def predict(self, x, **kwargs):
            return {"r": np.array([[1.0], [5.0], [2.0]]), "c": np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])}

    class _Input:
        name = "features"

    _Model.inputs = [_Input()]
    recipe = {"tasks": [{"name": "r", "loss": "mse"}, {"name": "c", "loss": "sparse_categorical_crossentropy"}]}
    y = {"r": np.array([[1.0], [np.nan], [4.0]]), "c": np.array([0, 1, -1])}
    metrics = evaluation.task_metrics(_Model(), recipe, {"features": np.zeros((3, 1))}, y)
    assert metrics == {"r_rmse": pytest.approx(np.sqrt(2.0)), "c_accuracy": 1.0}


def test_missing_labels_in_a_list_y_train_like_the_dict(rng):
    x, y = _data(rng)
    y["a"][::3] = np.nan
    y["b"][1::4] = -1
    results = []
    for labels in (y, [y["a"], y["b"]]):
        keras.utils.set_random_seed(0)
        model = mk.builders.hard_sharing((6,), _tasks(), trunk_units=(8,))
        history = model.fit(x, labels, batch_size=16, epochs=1, shuffle=False, verbose=0).history
        results.append((history, model.get_weights()))
    (h_dict, w_dict), (h_list, w_list) = results
    assert np.isfinite(h_list["loss"]).all()
    for key in h_dict:
        np.testing.assert_allclose(h_list[key], h_dict[key], rtol=1e-6, err_msg=key)
    for a, b in zip(w_dict, w_list):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
