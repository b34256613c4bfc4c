"""The fast `fit` uses Keras internals (`keras.src...`); when they are missing or changed, `fit` must
fall back to Keras's stock `fit` and still train — never fail with an ImportError/AttributeError.

Each case breaks one internal the way a future Keras might (a module that no longer imports, a class
that was renamed) and checks that `fit` trains exactly like Keras's stock `fit` on the same model.
"""

from __future__ import annotations

import builtins

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.models import in_memory_fit

# The fast fit and the TF gradient step are TensorFlow-only; the token-id check, the gradient step's loss
# metric and the missing-label metric guard are every backend's, so those three run on JAX and torch too.
tf_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fast path is TensorFlow-only")

TASKS = [mk.Task("a", 1), mk.Task("b", 2)]


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, {"a": x[:, :1] * 2.0, "b": x[:, 1:3] - x[:, 3:5]}


def _model():
    keras.utils.set_random_seed(0)
    return mk.builders.hard_sharing((6,), TASKS, trunk_units=(8,), steps_per_execution=2)


def _stock_result():
    model = _model()
    x, y = _data()
    history = keras.Model.fit(model, x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()


def _assert_trains_like_stock(model, history):
    want_loss, want_weights = _stock_result()
    assert len(history.history["loss"]) == 2
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_allclose(history.history["loss"], want_loss, rtol=1e-6)
    for got, want in zip(model.get_weights(), want_weights):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def _fit(model):
    x, y = _data()
    return model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)


@pytest.fixture
def no_keras_internals(monkeypatch):
    """Every `keras.src...` import made from mtmm_keras raises ImportError (as if Keras had moved them)."""
    real_import = builtins.__import__
    blocked = []

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "")
        if importer.startswith("mtmm_keras") and name.startswith("keras.src"):
            blocked.append(name)
            raise ImportError(f"No module named {name!r} (simulated)")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    return blocked


@tf_only
def test_fit_trains_when_keras_internals_cannot_be_imported(no_keras_internals):
    model = _model()
    history = _fit(model)
    assert no_keras_internals, "the fast path should have tried a keras.src import"
    _assert_trains_like_stock(model, history)


@tf_only
def test_plan_falls_back_to_stock_fit_without_keras_internals(no_keras_internals):
    model = _model()
    x, y = _data()
    args = dict(x=x, y=y, batch_size=16, epochs=1, sample_weight=None, class_weight=None, shuffle=False,
                validation_split=0.0, validation_data=None, steps_per_epoch=None, validation_steps=None)
    assert model._in_memory_plan(args) is None


@tf_only
def test_fit_trains_when_the_array_adapter_class_is_gone(monkeypatch):
    from keras.src.trainers.data_adapters import array_data_adapter

    monkeypatch.delattr(array_data_adapter, "ArrayDataAdapter")
    model = _model()
    _assert_trains_like_stock(model, _fit(model))


@tf_only
def test_fit_trains_when_the_adapter_lacks_num_batches(monkeypatch):
    from keras.src.trainers.data_adapters import array_data_adapter

    class Renamed(array_data_adapter.ArrayDataAdapter):
        num_batches = property(lambda self: (_ for _ in ()).throw(AttributeError("renamed")))

    monkeypatch.setattr(array_data_adapter, "ArrayDataAdapter", Renamed)
    model = _model()
    _assert_trains_like_stock(model, _fit(model))


@tf_only
def test_fit_trains_when_step_function_attributes_are_renamed(monkeypatch):
    monkeypatch.setattr(in_memory_fit, "_STEP_FUNCTION_ATTRIBUTES", ("steps_per_execution", "a_renamed_train_function"))
    model = _model()
    _assert_trains_like_stock(model, _fit(model))


@tf_only
def test_the_debug_caps_are_read_from_the_public_keras_config():
    """`keras.config.max_epochs()` (public) replaces the unguarded `keras.src.backend.config` import."""
    import inspect

    source = inspect.getsource(in_memory_fit)
    assert "from keras.src.backend import config" not in source
    keras.config.set_max_epochs(1)
    try:
        model = _model()
        history = _fit(model)  # epochs=2, capped to 1 by Keras itself
        assert len(history.history["loss"]) == 1
    finally:
        keras.config.set_max_epochs(None)


@tf_only
def test_fit_works_when_keras_config_has_no_debug_caps(monkeypatch):
    monkeypatch.delattr(keras.config, "max_epochs")
    monkeypatch.delattr(keras.config, "max_steps_per_epoch")
    model = _model()
    _assert_trains_like_stock(model, _fit(model))


def test_token_id_checks_survive_an_unwalkable_graph(monkeypatch):
    """The vocabulary lookup walks Keras's node graph (internal); if that fails, the range check is
    skipped but fractional ids are still refused and good data still trains."""
    model = mk.builders.joint_embedding(
        {"text": mk.encoders.text(10, 5, embedding_dim=4, hidden_dim=4, kind="conv"),
         "tabular": mk.encoders.tabular(3, hidden_units=(4,))}, embedding_dim=4)
    for operation in model.operations:  # as if Keras had renamed the attribute
        monkeypatch.delattr(operation, "_inbound_nodes")
    rng = np.random.default_rng(0)
    x = {"text": rng.integers(0, 10, size=(8, 5)).astype("int32"), "tabular": rng.normal(size=(8, 3)).astype("float32")}
    model.fit(x, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="whole numbers"):
        model.fit({**x, "text": x["text"] + 0.5}, epochs=1, verbose=0)
    assert model.predict(x, verbose=0)["text"].shape == (8, 4)


# ---------------------------------------------------------------- weighting / missing-label internals


def _weighted_model(method):
    keras.utils.set_random_seed(0)
    return mk.builders.hard_sharing((6,), TASKS, trunk_units=(8,), weighting=method, steps_per_execution=1)


def test_gradient_step_loss_metric_falls_back_to_the_public_metrics(monkeypatch):
    """Without the trainer's private `_loss_tracker` the gradient-level step finds Keras's `loss`
    metric in the public `model.metrics`; with neither, a clear error instead of an AttributeError."""
    from mtmm_keras.models import _gradient_step

    model = _weighted_model("upgrad")
    tracker = model._loss_tracker

    class NoPrivateTracker:
        _loss_tracker = None
        metrics = [tracker]

    assert _gradient_step.loss_tracker(NoPrivateTracker()) is tracker

    class Nothing:
        _loss_tracker = None
        metrics = []

    with pytest.raises(RuntimeError, match="loss-level method"):
        _gradient_step.loss_tracker(Nothing())
    history = _fit(model)
    assert np.isfinite(history.history["loss"]).all()


@tf_only
def test_gradient_step_trains_without_the_private_training_arg_flag(monkeypatch):
    """The TF gradient step no longer reads `_call_has_training_arg` (Layer.__call__ passes `training`)."""
    import inspect

    from mtmm_keras.models import _gradient_step_tf

    assert "_call_has_training_arg" not in inspect.getsource(_gradient_step_tf)
    monkeypatch.delattr(mk.models.MultiTaskModel, "_call_has_training_arg", raising=False)
    model = _weighted_model("upgrad")
    history = _fit(model)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_masked_metrics_refuse_rather_than_count_missing_rows(monkeypatch):
    """When Keras's compiled-metrics internals are not as expected, metrics over labels with missing rows
    raise a clear error (Keras's own update would silently count the missing rows); labels without
    missing values still train with Keras's own metrics."""
    from keras.src.trainers import compile_utils

    monkeypatch.setattr(compile_utils.CompileMetrics, "_flat_metrics", property(
        lambda self: (_ for _ in ()).throw(AttributeError("renamed"))), raising=False)
    tasks = [mk.Task("a", 1, metrics=["mae"]), mk.Task("b", 2, metrics=["mae"])]
    keras.utils.set_random_seed(0)
    model = mk.builders.hard_sharing((6,), tasks, trunk_units=(8,), steps_per_execution=1)
    x, y = _data()
    y_missing = {**y, "a": y["a"].copy()}
    y_missing["a"][::4] = np.nan
    with pytest.raises(RuntimeError, match="missing-label rows"):
        model.fit(x, y_missing, epochs=1, batch_size=16, verbose=0)


@tf_only
def test_fit_trains_when_keras_has_no_symbolic_build(monkeypatch):
    """Without `Trainer._symbolic_build` the optimizer and metrics are built in the first trace, as Keras does."""
    from keras.src.trainers import trainer

    monkeypatch.delattr(trainer.Trainer, "_symbolic_build")
    model = _model()
    history = _fit(model)
    assert model.optimizer.built
    _assert_trains_like_stock(model, history)


def test_evaluate_works_when_keras_has_no_compiled_metrics_internals(tmp_path, monkeypatch):
    """A loaded model's metrics are built before `evaluate` through `_symbolic_build`, `_compile_metrics` and
    `_compile_loss`; without them Keras builds them in the first trace and reports the same numbers."""
    from keras.src.trainers import trainer

    model = _model()
    _fit(model)
    model.save(tmp_path / "m.keras")
    x, y = _data()
    want = keras.saving.load_model(tmp_path / "m.keras").evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    monkeypatch.delattr(trainer.Trainer, "_symbolic_build")
    got = keras.saving.load_model(tmp_path / "m.keras").evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert got == pytest.approx(want, rel=1e-6)
    monkeypatch.undo()
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for name in ("_compile_metrics", "_compile_loss"):  # as if Keras had renamed them
        loaded.__dict__.pop(name, None)
        object.__setattr__(loaded, name, None)
    from mtmm_keras.models._build_before_tracing import build_metrics_before_tracing

    assert build_metrics_before_tracing(loaded, (x, y)) is False
