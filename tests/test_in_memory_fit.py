"""`InMemoryFitMixin.fit` (one repeated tf.data pipeline per fit) trains exactly like Keras's stock `fit`."""

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.models import in_memory_fit
from mtmm_keras.models.in_memory_fit import _CACHE_ATTRIBUTE, _PIPELINE_ATTRIBUTE

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fast path is TensorFlow-only")

TASKS = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2, loss="sparse_categorical_crossentropy")]


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = {"a": x[:, :1] * 2.0, "b": x[:, 1:2] - x[:, 2:3], "c": (x[:, 3] > 0).astype("int32")}
    return x, y


def _twin_models(steps_per_execution=4, **kwargs):
    """Two identically initialised hard-sharing models: one trained by the mixin, one by stock Keras."""
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        models.append(mk.builders.hard_sharing((10,), TASKS, trunk_units=(16,), steps_per_execution=steps_per_execution,
                                               **kwargs))
    return models


def _assert_same_training(fast, stock, fast_history, stock_history):
    assert fast_history.history.keys() == stock_history.history.keys()
    for key in stock_history.history:
        np.testing.assert_allclose(fast_history.history[key], stock_history.history[key], rtol=1e-6, atol=1e-7)
    for got, want in zip(fast.get_weights(), stock.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_builders_return_the_fast_fit_model():
    model = mk.builders.hard_sharing((10,), TASKS)
    assert isinstance(model, mk.models.MultiTaskModel)
    assert isinstance(model, mk.models.InMemoryFitMixin)


@pytest.mark.parametrize("extra", [{}, {"validation_split": 0.25}, {"sample_weight": "per-row"}])
def test_same_batches_same_result_as_stock_fit(extra):
    x, y = _data()
    fast, stock = _twin_models()
    kwargs = dict(batch_size=16, epochs=3, shuffle=False, verbose=0, **extra)
    if kwargs.get("sample_weight") == "per-row":
        kwargs["sample_weight"] = np.linspace(0.1, 2.0, len(x)).astype("float32")
    assert fast._in_memory_plan({**_fit_args(), "x": x, "y": y, **kwargs}) is not None
    fast_history = fast.fit(x, y, **kwargs)
    stock_history = keras.Model.fit(stock, x, y, **kwargs)
    _assert_same_training(fast, stock, fast_history, stock_history)
    if "validation_split" in extra:
        assert "val_loss" in fast_history.history


def test_class_weight_and_validation_data_match_stock_fit():
    x, y = _data()
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        models.append(mk.builders.hard_sharing((10,), [mk.Task("c", 2, loss="sparse_categorical_crossentropy")], trunk_units=(8,), steps_per_execution=2))
    fast, stock = models
    kwargs = dict(batch_size=32, epochs=2, shuffle=False, verbose=0, class_weight={0: 1.0, 1: 3.0},
                  validation_data=(x[:64], y["c"][:64]))
    _assert_same_training(fast, stock, fast.fit(x, y["c"], **kwargs), keras.Model.fit(stock, x, y["c"], **kwargs))


def test_shuffled_epochs_each_see_every_row_once_in_a_new_order():
    x, y = _data(n=64)
    model = _twin_models(steps_per_execution=2)[0]
    dataset, steps, _, _ = model._in_memory_plan({**_fit_args(), "x": x, "y": y, "batch_size": 8})
    assert steps == 8
    batches = list(dataset.take(2 * steps).as_numpy_iterator())
    epochs = [np.concatenate([b[0] for b in batches[i * steps:(i + 1) * steps]]) for i in range(2)]
    for rows in epochs:
        np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(x[:, 0]))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], x)


@pytest.mark.parametrize("batch_size, steps_per_execution", [(24, 4), (32, 16)])
def test_uneven_epochs_run_fewer_steps_per_execution_with_the_same_result(batch_size, steps_per_execution):
    x, y = _data()
    fast, stock = _twin_models(steps_per_execution=steps_per_execution)
    # 256 rows in batches of 24: 11 batches per epoch, run 1 per execution (1 >= 4 / 4);
    # batches of 32: 8 per epoch, run 8 per execution instead of 16
    plan = fast._in_memory_plan({**_fit_args(), "x": x, "y": y, "batch_size": batch_size})
    assert plan is not None and plan[1] % plan[3] == 0 and plan[3] <= steps_per_execution
    kwargs = dict(batch_size=batch_size, epochs=3, shuffle=False, verbose=0)
    kwargs["validation_data"] = (x[:40], {k: v[:40] for k, v in y.items()})
    _assert_same_training(fast, stock, fast.fit(x, y, **kwargs), keras.Model.fit(stock, x, y, **kwargs))
    assert fast.steps_per_execution == steps_per_execution  # the compiled setting is restored
    main_train_function = fast.train_function
    cache = fast.__dict__[_CACHE_ATTRIBUTE]
    train_function, test_function = cache[plan[3]]
    traces = _tracing_counts(train_function, test_function)
    assert len(traces) == 2 and all(count >= 1 for count in traces)  # one tf.function each, traced
    fast.fit(x, y, **kwargs)  # a second uneven fit reuses the cached step functions: no new function, no retrace
    assert fast.__dict__[_CACHE_ATTRIBUTE] is cache
    assert cache[plan[3]][0] is train_function and cache[plan[3]][1] is test_function
    assert _tracing_counts(train_function, test_function) == traces
    assert fast.train_function is main_train_function and fast.steps_per_execution == steps_per_execution
    # a recompile (with the same steps_per_execution, so the fit takes the cached path again; compile's
    # default of 1 would skip it) drops the cached functions: new ones are traced
    fast.compile(optimizer="sgd", loss={t.name: t.keras_loss() for t in TASKS}, steps_per_execution=steps_per_execution)
    history = fast.fit(x, y, **kwargs)
    new_cache = fast.__dict__[_CACHE_ATTRIBUTE]
    assert new_cache is not cache and new_cache[plan[3]][0] is not train_function
    assert new_cache["owner"]() is fast.train_function
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("rows", [256, 250])  # whole batches; a partial last batch (15 of 16 rows, then 10)
def test_an_xla_model_runs_each_execution_as_one_computation_with_keras_results(rows, monkeypatch):
    """A model compiled with XLA (the expert builders' default on TensorFlow) trains each execution's batches in one
    XLA computation (`_chunk_train_function`) instead of one launch per batch: the same weights and logs as Keras's
    own loop, callbacks at Keras's batch numbers, every step counted."""
    monkeypatch.setattr(in_memory_fit, "XLA_CHUNK_MIN_STEPS", 0)
    x, y = _data(rows)
    fast, stock = [], []
    for models in (fast, stock):
        keras.utils.set_random_seed(0)
        models.append(mk.builders.mmoe((10,), TASKS, num_experts=3, expert_units=(8,), tower_units=(4,),
                                       steps_per_execution=4))
    (fast,), (stock,) = fast, stock
    assert fast.jit_compile is True
    batches = []
    seen = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    kwargs = dict(batch_size=16, epochs=3, shuffle=False, verbose=0)
    fast_history = fast.fit(x, y, callbacks=[seen], **kwargs)
    _assert_same_training(fast, stock, fast_history, keras.Model.fit(stock, x, y, **kwargs))
    assert fast.__dict__[_PIPELINE_ATTRIBUTE].chunk == 4 and int(fast.optimizer.iterations) == 3 * 16
    assert batches == [3, 7, 11, 15] * 3
    cache = fast.__dict__[_CACHE_ATTRIBUTE]
    chunked = cache[(4, "chunks")][0]
    fast.fit(x, y, **kwargs)  # the next fit reuses the chunked function, and Keras's own is back after each fit
    assert cache[(4, "chunks")][0] is chunked and fast.train_function is not chunked


def test_only_long_fits_pay_for_the_one_computation_function_and_later_fits_reuse_it(monkeypatch):
    """Its compile costs more than Keras's one-step function, so a fit of fewer than `XLA_CHUNK_MIN_STEPS` steps
    keeps Keras's loop, a longer one makes it, and every later fit of that model reuses it."""
    monkeypatch.setattr(in_memory_fit, "XLA_CHUNK_MIN_STEPS", 40)
    x, y = _data()  # 16 batches of 16 per epoch, 4 per execution
    keras.utils.set_random_seed(0)
    model = mk.builders.mmoe((10,), TASKS, num_experts=2, expert_units=(4,), tower_units=(4,), steps_per_execution=4)
    kwargs = dict(batch_size=16, shuffle=False, verbose=0)
    model.fit(x, y, epochs=2, **kwargs)  # 32 steps
    assert model.__dict__[_PIPELINE_ATTRIBUTE].chunk == 1
    model.fit(x, y, epochs=3, **kwargs)  # 48 steps
    assert model.__dict__[_PIPELINE_ATTRIBUTE].chunk == 4
    model.fit(x, y, epochs=1, **kwargs)  # short, but the function is there
    assert model.__dict__[_PIPELINE_ATTRIBUTE].chunk == 4 and int(model.optimizer.iterations) == 6 * 16


def _tracing_counts(*functions):
    """How often the tf.functions inside Keras's step-function closures were traced."""
    return [cell.cell_contents.experimental_get_tracing_count() for function in functions
            for cell in (function.__closure__ or ()) if hasattr(cell.cell_contents, "experimental_get_tracing_count")]


def test_uneven_fit_leaves_predict_whole_and_the_model_collectable():
    import gc
    import weakref

    x, y = _data(n=88)
    model = _twin_models(steps_per_execution=4)[0]
    # 11 batches of 8: one step per execution; a callback predicts mid-fit
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: model.predict(x[:8], verbose=0))])
    assert model.predict(x, batch_size=8, verbose=0)["a"].shape == (88, 1)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_validation_steps_with_an_uneven_epoch_is_left_to_keras():
    x, y = _data(n=160)
    fast, stock = _twin_models(steps_per_execution=4)
    args = {**_fit_args(), "x": x, "y": y, "batch_size": 16, "validation_steps": 2,
            "validation_data": (x[:40], {k: v[:40] for k, v in y.items()})}
    assert fast._in_memory_plan(args) is None  # 10 batches: 2 per execution, but validation_steps is set
    kwargs = dict(batch_size=16, epochs=2, shuffle=False, verbose=0, validation_steps=2,
                  validation_data=args["validation_data"])
    _assert_same_training(fast, stock, fast.fit(x, y, **kwargs), keras.Model.fit(stock, x, y, **kwargs))


def test_falls_back_to_stock_fit_when_few_steps_would_fit_an_execution():
    x, y = _data()
    fast, stock = _twin_models(steps_per_execution=32)
    # 256 rows in batches of 7: 37 batches per epoch, prime, so only 1 step per execution would fit
    assert fast._in_memory_plan({**_fit_args(), "x": x, "y": y, "batch_size": 7}) is None
    kwargs = dict(batch_size=7, epochs=2, shuffle=False, verbose=0)
    _assert_same_training(fast, stock, fast.fit(x, y, **kwargs), keras.Model.fit(stock, x, y, **kwargs))


def test_largest_divisor_at_most():
    from mtmm_keras.models.in_memory_fit import largest_divisor_at_most

    assert [largest_divisor_at_most(n, 32) for n in (64, 60, 57, 58, 11, 8, 1)] == [32, 30, 19, 29, 11, 8, 1]


def test_an_explicit_epoch_length_is_left_to_keras():
    x, y = _data()
    model = _twin_models()[0]
    assert model._in_memory_plan({**_fit_args(), "x": x, "y": y, "batch_size": 16, "steps_per_epoch": 8}) is None


def test_datasets_are_left_to_keras():
    import tensorflow as tf

    x, y = _data()
    model = _twin_models()[0]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    assert model._in_memory_plan({**_fit_args(), "x": dataset}) is None
    assert len(model.fit(dataset, epochs=2, shuffle=False, verbose=0).history["loss"]) == 2


def test_callbacks_and_early_stopping_see_real_epochs():
    x, y = _data()
    model = _twin_models()[0]
    seen = []
    history = model.fit(
        x, y, batch_size=16, epochs=50, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch)),
                   keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)],
    )
    assert seen == [0, 1]  # stops after the second epoch fails to improve by 10
    assert len(history.history["loss"]) == 2


def test_joint_embedding_fit_without_labels_uses_the_fast_path():
    encoders = {"a": mk.encoders.tabular(8, (8,)), "b": mk.encoders.tabular(6, (8,))}
    model = mk.builders.joint_embedding(encoders, embedding_dim=4, steps_per_execution=2)
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(64, 8)).astype("float32"), "b": rng.normal(size=(64, 6)).astype("float32")}
    assert model._in_memory_plan({**_fit_args(), "x": x, "batch_size": 16}) is not None
    losses = model.fit(x, batch_size=16, epochs=4, verbose=0).history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]


def _fit_args():
    return dict(x=None, y=None, batch_size=None, epochs=1, verbose=0, callbacks=None, validation_split=0.0,
                validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
                steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1)


def test_predict_runs_one_step_per_execution_and_keeps_the_compiled_setting():
    """Keras's TF predict unrolls `steps_per_execution` steps into one graph and traces again for every new
    chunk length (23 s for movies_ple's first predict at 32 steps); one step per call traces once."""
    from mtmm_keras.models import in_memory_fit

    x, _ = _data(n=300)
    fast, stock = _twin_models(steps_per_execution=32)
    got = fast.predict(x[:70], batch_size=8, verbose=0)  # 9 batches: 8 full, 1 partial
    function = fast.__dict__[in_memory_fit._PREDICT_CACHE_ATTRIBUTE][1]
    traced = function.experimental_get_tracing_count()
    fast.predict(x, batch_size=8, verbose=0)  # 38 batches: unrolled, chunks of 32 and 6 would trace again
    fast.predict(x[:13], batch_size=8, verbose=0)
    assert function.experimental_get_tracing_count() == traced <= 2
    assert fast.steps_per_execution == 32 and fast.predict_function is None  # the compiled setting is untouched
    stock.steps_per_execution = 1
    want = keras.Model.predict(stock, x[:70], batch_size=8, verbose=0)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)
    fast.fit(x, {k: v for k, v in _data(n=300)[1].items()}, batch_size=8, epochs=1, verbose=0)  # fit still uses 32
    assert fast.steps_per_execution == 32


def test_a_second_fit_on_the_same_arrays_continues_the_kept_pipeline():
    """The pipeline and its iterator are kept for the next fit on the same arrays: two fits see the batches of
    one fit of their epochs together (shuffle=False: exactly stock Keras's two fits), with no new pipeline."""
    import copy
    import pickle

    from mtmm_keras.models.in_memory_fit import _PIPELINE_ATTRIBUTE

    x, y = _data()
    fast, stock = _twin_models()
    kwargs = dict(batch_size=16, shuffle=False, verbose=0)
    histories = [fast.fit(x, y, epochs=2, **kwargs)]
    pipeline = fast.__dict__[_PIPELINE_ATTRIBUTE]
    iterator = pipeline.iterator
    assert iterator is not None
    histories.append(fast.fit(x.copy(), {k: v.copy() for k, v in y.items()}, epochs=1, **kwargs))  # same contents
    assert fast.__dict__[_PIPELINE_ATTRIBUTE] is pipeline and pipeline.iterator is iterator
    stock_histories = [keras.Model.fit(stock, x, y, epochs=2, **kwargs), keras.Model.fit(stock, x, y, epochs=1, **kwargs)]
    for got, want in zip(histories, stock_histories):
        _assert_same_training(fast, stock, got, want)
    assert copy.deepcopy(pipeline) is None and pickle.loads(pickle.dumps(pipeline)) is None


def test_arrays_changed_in_place_or_other_batching_get_a_new_pipeline():
    from mtmm_keras.models.in_memory_fit import _PIPELINE_ATTRIBUTE

    x, y = _data()
    fast, stock = _twin_models()
    kwargs = dict(epochs=1, shuffle=False, verbose=0)
    fast.fit(x, y, batch_size=16, **kwargs)
    keras.Model.fit(stock, x, y, batch_size=16, **kwargs)
    first = fast.__dict__[_PIPELINE_ATTRIBUTE]
    x[:5] *= 2.0  # in place: same object, new contents
    _assert_same_training(fast, stock, fast.fit(x, y, batch_size=16, **kwargs),
                          keras.Model.fit(stock, x, y, batch_size=16, **kwargs))
    second = fast.__dict__[_PIPELINE_ATTRIBUTE]
    assert second is not first
    _assert_same_training(fast, stock, fast.fit(x, y, batch_size=32, **kwargs),
                          keras.Model.fit(stock, x, y, batch_size=32, **kwargs))
    assert fast.__dict__[_PIPELINE_ATTRIBUTE] is not second


def test_a_fit_stopped_mid_epoch_or_on_tensors_keeps_no_iterator():
    import tensorflow as tf

    from mtmm_keras.models.in_memory_fit import _PIPELINE_ATTRIBUTE

    x, y = _data()
    fast = _twin_models(steps_per_execution=2)[0]
    kwargs = dict(batch_size=16, shuffle=False, verbose=0)

    def stop(batch, logs):
        fast.stop_training = True

    fast.fit(x, y, epochs=2, callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=stop)], **kwargs)
    assert fast.__dict__[_PIPELINE_ATTRIBUTE].iterator is None  # stopped after 2 of 16 steps
    fast.fit(x, y, epochs=1, **kwargs)  # starts a new epoch on a new iterator
    assert fast.__dict__[_PIPELINE_ATTRIBUTE].iterator is not None
    fast.fit(tf.constant(x), {k: tf.constant(v) for k, v in y.items()}, epochs=1, **kwargs)
    assert fast.__dict__[_PIPELINE_ATTRIBUTE] is None  # tensors: no content key, nothing kept


@pytest.mark.parametrize("shuffle", [False, True])
def test_epoch_batches_are_keras_batches_with_one_gather_per_epoch(shuffle):
    """The kept pipeline draws Keras's batches (partial last batch, sample weights, dtypes) from whole-epoch
    permutations; without shuffling they are Keras's own, batch for batch."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import array_data_adapter

    from mtmm_keras.models.in_memory_fit import _epoch_batches

    x, y = _data(n=70)
    weights = np.linspace(0.5, 1.5, 70)  # float64: Keras's pipeline casts it; ours must too
    adapter = array_data_adapter.ArrayDataAdapter(x, y, sample_weight=weights, batch_size=16, shuffle=shuffle)
    keras_dataset = adapter.get_tf_dataset()
    ours = _epoch_batches(adapter, keras_dataset)
    assert ours is not None
    # a Keras whose adapter keeps its arrays elsewhere gets its own pipeline back (the caller repeats it)
    assert _epoch_batches(type("Adapter", (), {"batch_size": 16, "_shuffle": shuffle})(), keras_dataset) is None
    same = tf.nest.map_structure(lambda a, b: (a.dtype, a.shape.rank) == (b.dtype, b.shape.rank),
                                 ours.element_spec, keras_dataset.element_spec)
    assert all(tf.nest.flatten(same)), same  # every leaf: a bare `assert same` is true for any non-empty structure
    batches = list(ours.take(10).as_numpy_iterator())  # two epochs of 4 full batches and one of 6 rows
    assert [len(b[0]) for b in batches] == [16, 16, 16, 16, 6] * 2
    if not shuffle:
        for got, want in zip(batches[:5], keras_dataset.as_numpy_iterator()):
            tf.nest.map_structure(np.testing.assert_array_equal, got, want)
        return
    epochs = [np.concatenate([b[0] for b in batches[i * 5:(i + 1) * 5]]) for i in range(2)]
    for rows in epochs:
        np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(x[:, 0]))
    assert not np.array_equal(epochs[0], epochs[1])
    for batch in batches:  # rows stay together with their labels and weights
        order = [int(np.flatnonzero(x[:, 0] == value)[0]) for value in batch[0][:, 0]]
        np.testing.assert_array_equal(batch[1]["a"], y["a"][order])
        np.testing.assert_allclose(batch[2]["a"], weights[order].astype("float32"))


def _count_train_step_traces(model):
    """The Python calls of `model.train_step` (one per trace in graph mode), counted from now on."""
    calls, step = [], model.train_step

    def counted(*args):
        calls.append(1)
        return step(*args)

    model.train_step = counted
    return calls


@pytest.mark.parametrize("case", ["arrays_with_metrics", "dataset", "gradient_level_weighting", "few_batches"])
def test_a_first_fit_traces_the_training_step_once_and_trains_like_stock_fit(case):
    """Optimizer and metric variables are made before the first trace (`_build_before_tracing`): TensorFlow
    traces a step that creates variables twice; stock Keras (two traces) gives the same weights and logs."""
    import tensorflow as tf

    tasks = [mk.Task("a", 1, metrics=["mae"]), mk.Task("c", 2, loss="sparse_categorical_crossentropy",
                                                       metrics=["accuracy"])]
    extra = {"weighting": "pcgrad"} if case == "gradient_level_weighting" else {}
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        models.append(mk.builders.hard_sharing((10,), tasks, trunk_units=(16,),
                                               steps_per_execution=16 if case == "few_batches" else 4, **extra))
    fast, stock = models
    x, y = _data()
    y = {"a": y["a"], "c": y["c"]}
    data = dict(x=x, y=y, batch_size=16)
    if case == "dataset":
        data = dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    if case == "few_batches":  # 2 batches per epoch, 16 steps per execution: Keras's own fit on the arrays
        data = dict(x=x, y=y, batch_size=128)
        assert fast._in_memory_plan({**_fit_args(), **data, "epochs": 2}) is None
    traces, stock_traces = _count_train_step_traces(fast), _count_train_step_traces(stock)
    fast_history = fast.fit(**data, epochs=2, shuffle=False, verbose=0)
    stock_history = keras.Model.fit(stock, **data, epochs=2, shuffle=False, verbose=0)
    assert (len(traces), len(stock_traces)) == (1, 2)
    _assert_same_training(fast, stock, fast_history, stock_history)
    assert set(fast_history.history) >= {"a_mae", "c_accuracy"}
    fast.fit(**data, epochs=1, shuffle=False, verbose=0)
    assert len(traces) == 1  # a later fit reuses the step


def test_a_loaded_models_first_evaluate_traces_the_test_step_once_with_keras_results(tmp_path, monkeypatch):
    """A loaded model (its optimizer built by `compile_from_config`, its metrics not) gets its metrics built before
    `evaluate` traces `test_step`: one trace, not Keras's two, and the same metrics. A new model's evaluate before
    any fit keeps Keras's two traces and leaves the optimizer unbuilt (no Adam slots for an evaluation)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the double trace is TensorFlow's (tf.function's variable lifting)")
    tasks = [mk.Task("a", 1, metrics=["mae"]), mk.Task("c", 2, loss="sparse_categorical_crossentropy",
                                                       metrics=["accuracy"])]
    keras.utils.set_random_seed(0)
    model = mk.builders.hard_sharing((10,), tasks, trunk_units=(16,))
    x, y = _data()
    y = {"a": y["a"], "c": y["c"]}
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")

    def traced_evaluate(loaded):
        calls, step = [], loaded.test_step
        loaded.test_step = lambda *args: calls.append(1) or step(*args)
        return loaded.evaluate(x, y, batch_size=32, verbose=0, return_dict=True), len(calls)

    ours, traces = traced_evaluate(keras.saving.load_model(tmp_path / "m.keras"))
    monkeypatch.setattr(in_memory_fit, "build_metrics_before_tracing", lambda model, batch: False)
    stock, stock_traces = traced_evaluate(keras.saving.load_model(tmp_path / "m.keras"))
    assert (traces, stock_traces) == (1, 2)
    assert set(ours) >= {"a_mae", "c_accuracy", "loss"} and ours == pytest.approx(stock, rel=1e-6)
    monkeypatch.undo()
    keras.utils.set_random_seed(0)
    new = mk.builders.hard_sharing((10,), tasks, trunk_units=(16,))
    assert traced_evaluate(new)[1] == 2 and not new.optimizer.built


def test_an_xla_models_predict_runs_whole_batches_only_with_keras_outputs():
    """70 rows in batches of 32 (`_whole_batches`): an XLA model's predict step sees one batch shape (one trace and
    one compile, not two), and every row's outputs are Keras's; without XLA, and with arguments past `batch_size`
    and `verbose`, the call is Keras's own."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow pass covers it (JAX: tests/reliability/test_cross_backend_load.py)")
    x, _ = _data(70)
    xla = mk.builders.mmoe((10,), TASKS, num_experts=2, expert_units=(8,), tower_units=(4,))
    plain = mk.builders.hard_sharing((10,), TASKS, trunk_units=(8,))
    assert (xla.jit_compile, plain.jit_compile) == (True, False)
    for model, traces_wanted in ((xla, 1), (plain, 2)):
        calls, step = [], model.predict_step
        model.predict_step = lambda *args, calls=calls, step=step: calls.append(args[0]) or step(*args)
        got = model.predict(x, batch_size=32, verbose=0)
        assert len(calls) == traces_wanted, model.name
        if traces_wanted == 1:
            assert [int(batch.shape[0]) if batch.shape[0] is not None else None for batch in calls] == [32]
        want = keras.Model.predict(model, x, batch_size=32, verbose=0)
        for name in want:
            assert got[name].shape == want[name].shape == (70, want[name].shape[1])
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    seen = []
    xla.predict(x, batch_size=32, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_predict_batch_end=lambda batch, logs: seen.append(batch))])
    assert seen == [0, 1, 2]  # Keras's own batches, the last one partial


def test_a_model_in_a_strategy_scope_is_left_to_keras_own_build():
    """Keras builds a strategy's model itself, inside the scope; building it outside would make plain variables."""
    import tensorflow as tf

    from mtmm_keras.models._build_before_tracing import build_before_tracing

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = mk.builders.hard_sharing((10,), TASKS, trunk_units=(16,))
    x, y = _data()
    assert build_before_tracing(model, (x, y)) is False and not model.optimizer.built
    plain = mk.builders.hard_sharing((10,), TASKS, trunk_units=(16,))
    assert build_before_tracing(plain, (x, y)) is True and plain.optimizer.built
    assert build_before_tracing(plain, (x, y)) is False  # built already
