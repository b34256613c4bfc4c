"""`fit` that feeds in-memory arrays through one tf.data pipeline for all epochs (TensorFlow backend).

Keras's TensorFlow trainer builds a fresh tf.data iterator from array inputs at every epoch; for the
small, fast models this library builds, that costs more than the training steps themselves (10–25 ms
per epoch here, ~50 % of `fit`'s wall time on the hard-sharing MLP). The mixin hands Keras the batches
Keras's array pipeline would give — same batches, same shuffling, same class/sample weights — but
repeated, with `steps_per_epoch`, so a single iterator serves every epoch; for NumPy arrays it draws
them from one permutation per epoch rather than one gather per batch (`_epoch_batches`). The pipeline and its
iterator are kept on the model for the next `fit` on the same arrays (`_Pipeline`): a later short `fit`
continues the same stream of epochs instead of building and tracing a new pipeline (~35 ms of tf.data
function tracing plus ~13 ms for the iterator per `fit` on the hard-sharing MLP, against ~55 ms of
training for 2 epochs of 8,192 rows). For XLA-compiled models a kept pipeline hands over one execution's batches
per element, trained in one XLA computation (`_chunk_train_function`).
"""

from __future__ import annotations

import contextlib
import weakref
import zlib
from typing import Any, Iterator

import keras
import numpy as np

from mtmm_keras.models import _data_checks, _data_prep
from mtmm_keras.models._build_before_tracing import build_before_tracing, build_metrics_before_tracing
from mtmm_keras.models._whole_batches import predict_in_whole_batches

# Model attributes `_steps_per_execution` reads and swaps.
_STEP_FUNCTION_ATTRIBUTES = ("steps_per_execution", "make_train_function", "train_function", "test_function",
                             "predict_function")
# Where `_steps_per_execution` keeps the step functions traced for other step counts.
_CACHE_ATTRIBUTE = "_mtmm_functions_by_steps_per_execution"
# Where `_one_step_predict` keeps its predict function (with the `jit_compile` it was made for).
_PREDICT_CACHE_ATTRIBUTE = "_mtmm_one_step_predict_function"
# Where `_in_memory_plan` keeps the last `fit`'s repeated pipeline and its iterator (`_Pipeline`).
_PIPELINE_ATTRIBUTE = "_mtmm_in_memory_pipeline"
# Training arrays up to this size keep their pipeline between `fit` calls (it holds a tensor copy of them).
PIPELINE_CACHE_MAX_BYTES = 256 * 2**20
# An XLA-compiled model's `fit` runs each execution as one XLA computation (`_chunk_train_function`) when it plans
# at least this many training steps, or when the model already has that function for these steps per execution.
# Compiling it costs more than Keras's one-step function (first fit on 2 cores: MMoE 7.6 s against 2.0 s, soft
# sharing 5.6 s against 2.4 s) and each step then saves about a quarter (0.95 and 0.67 ms per step): it pays back
# after some 5,000–6,000 steps, so short fits keep Keras's loop.
XLA_CHUNK_MIN_STEPS = 4096


def _keras_debug_caps() -> bool:
    """True when Keras's debugging caps `keras.config.max_epochs()`/`max_steps_per_epoch()` are set
    (public API since Keras 3.9; a Keras without them has no caps)."""
    caps = (getattr(keras.config, "max_epochs", None), getattr(keras.config, "max_steps_per_epoch", None))
    return any(cap is not None and cap() for cap in caps)


def _array_adapter(args: dict) -> tuple[Any, Any, Any] | None:
    """(Keras's own adapter for the training arrays, validation data, the training arrays `(x, y,
    sample_weight)` after any validation split), or None when `x`/`y` are not arrays or Keras rejects
    them (the stock `fit` then raises its own error)."""
    try:  # Keras internals: a Keras that moved or changed them gets the stock `fit`
        from keras.src.trainers.data_adapters import array_data_adapter, array_slicing

        array_data_adapter.can_convert_arrays, array_data_adapter.ArrayDataAdapter  # noqa: B018
        array_slicing.train_validation_split  # noqa: B018
    except (ImportError, AttributeError):
        return None
    x, y, sample_weight = args["x"], args["y"], args["sample_weight"]
    validation_data = args["validation_data"]
    if not array_data_adapter.can_convert_arrays((x, y, sample_weight)):
        return None
    try:
        if args["validation_split"] and validation_data is None:
            (x, y, sample_weight), validation_data = array_slicing.train_validation_split(
                (x, y, sample_weight), validation_split=args["validation_split"]
            )
        adapter = array_data_adapter.ArrayDataAdapter(
            x, y, sample_weight=sample_weight, class_weight=args["class_weight"], shuffle=args["shuffle"],
            batch_size=args["batch_size"],
        )
    except Exception:  # malformed inputs
        return None
    if not hasattr(adapter, "num_batches") or not hasattr(adapter, "get_tf_dataset"):
        return None
    return adapter, validation_data, (x, y, sample_weight)


class InMemoryFitMixin:
    """Mixin for `keras.Model` subclasses: one repeated tf.data pipeline per `fit` call for array inputs.

    Applies on the TensorFlow backend when `x`/`y`/`sample_weight` are arrays (numpy, tensors, dicts or
    lists of them), `steps_per_epoch` is not given, the model has no distribution strategy (built in a
    scope or fit in one) and no `BackupAndRestore` callback is given. Keras's
    multi-step loop would run past the end of an epoch when the batches per epoch are not a multiple
    of `steps_per_execution`, so such a `fit` runs `d` steps per execution instead, `d` the largest
    divisor of the epoch's batch count not above `steps_per_execution` (the traced step function for
    `d` is kept for later fits); when `d` would be under a quarter of `steps_per_execution`, and in
    every other case (or with `validation_steps` set), `fit` is Keras's own; batch-level callbacks
    then fire every `d` steps. Batches, their order when `shuffle=False`, weighting and validation
    are exactly those of the stock `fit`. With `shuffle=True` each epoch draws a new
    order; Keras's per-epoch iterators replay one order every epoch once a global seed is set.
    On TensorFlow every `fit` (this path or Keras's own) first builds an unbuilt optimizer and the compiled metrics
    (`_build_before_tracing`), so that the first `fit` traces the training step once instead of twice.
    `predict` runs one step per execution on TensorFlow and JAX (`_one_step_predict`): the training
    setting would unroll that many steps into its graph.

    A model compiled with `jit_compile=True` (the builders' default on TensorFlow for experts and stacked towers)
    trains each execution's steps as one XLA computation (`_chunk_train_function`) rather than one XLA launch per
    batch, in a `fit` of at least `XLA_CHUNK_MIN_STEPS` steps (or once the model has that function): the same steps
    on the same batches, in the same order (weights bit-identical to Keras's loop in the tests), 1.36× (MMoE) and
    1.49× (soft sharing) the samples/s measured side by side, for a longer first compile.
    """

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: Any = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> Any:
        """Keras's `fit` after the data checks; in-memory arrays on TensorFlow train through one repeated pipeline."""
        stock = dict(
            x=x, y=y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
            class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
        )
        x = stock["x"] = _data_prep.unwrap_single_input(self, x)
        _data_checks.check(self, x, y, sample_weight, call="fit", labelled=True, finite=True)
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            val_x = _data_prep.unwrap_single_input(self, validation_data[0])
            _data_checks.check(self, val_x, *validation_data[1:], call="validation", labelled=True)
            stock["validation_data"] = validation_data = (val_x, *validation_data[1:])
        plan = self._in_memory_plan(stock)
        if plan is None:
            build_before_tracing(self, x.element_spec if _is_tf_dataset(x) else (x, y, sample_weight))
            return super().fit(**stock)
        dataset, steps, validation_data, steps_per_execution = plan
        pipeline = self.__dict__.get(_PIPELINE_ATTRIBUTE)
        if not (isinstance(pipeline, _Pipeline) and pipeline.dataset is dataset):
            pipeline = None
        # a chunked pipeline's elements are (the first batches stacked, the last batch)
        build_before_tracing(self, dataset.element_spec[1] if pipeline and pipeline.chunk > 1 else dataset.element_spec)
        if pipeline is not None:
            dataset = pipeline.adapter()  # Keras iterates the kept iterator: no new pipeline, no new iterator
        stock.update(x=dataset, y=None, sample_weight=None, class_weight=None, batch_size=None, shuffle=False,
                     validation_split=0.0, validation_data=validation_data, steps_per_epoch=steps,
                     # Keras validates in batches of `validation_batch_size or batch_size`: keep that
                     validation_batch_size=validation_batch_size or batch_size)
        chunks = pipeline.chunk if pipeline is not None else 1
        with _steps_per_execution(self, steps_per_execution, chunks):
            if pipeline is None:
                return super().fit(**stock)
            try:
                history = super().fit(**stock)
            except BaseException:
                pipeline.iterator = None  # stopped anywhere in an epoch: the next fit starts a new iterator
                raise
            if getattr(self, "stop_training", False):
                pipeline.iterator = None  # a callback may have stopped it mid-epoch
            return history

    def evaluate(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Keras's `evaluate` after the same data checks as `fit` (label keys and widths, NaN, row counts); a loaded
        model's compiled metrics are built first, so its first `evaluate` traces `test_step` once
        (`_build_before_tracing.build_metrics_before_tracing`)."""
        x = _data_prep.unwrap_single_input(self, x)
        _data_checks.check(self, x, y, kwargs.get("sample_weight"), call="evaluate", labelled=True)
        if not args:  # x, y and sample_weight as keywords (Keras's own order takes batch_size next)
            batch = x.element_spec if _is_tf_dataset(x) else (x, y, kwargs.get("sample_weight"))
            build_metrics_before_tracing(self, batch)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras's `predict` after the input checks, one step per call and one batch shape (fast first predict:
        `_whole_batches.predict_in_whole_batches`)."""
        x = _data_prep.unwrap_single_input(self, x)
        _data_checks.check(self, x, call="predict", labelled=False)
        with _one_step_predict(self):
            return predict_in_whole_batches(self, super().predict, x, args, kwargs)

    def _in_memory_plan(self, args: dict) -> tuple[Any, int, Any, int] | None:
        """(repeated dataset, batches per epoch, validation data, steps per execution to use),
        or None to use Keras's stock `fit`."""
        if keras.backend.backend() != "tensorflow" or getattr(self, "run_eagerly", False):
            return None
        # The fast path swaps Keras's step functions (`_steps_per_execution`): without these
        # attributes (a Keras that renamed them) the stock `fit` is used.
        if not all(hasattr(self, name) for name in _STEP_FUNCTION_ATTRIBUTES):
            return None
        if args["steps_per_epoch"] is not None or args["x"] is None:
            return None
        from mtmm_keras.distribute import model_strategy

        if model_strategy(self) is not None:
            return None  # the model's strategy (also when fit outside its scope): Keras's fit distributes
        if _has_backup_and_restore(args.get("callbacks")):
            return None  # a restarted fit must see the uninterrupted fit's later epochs, not epoch 0's order
        if _keras_debug_caps():
            return None  # Keras's debugging caps: leave them to Keras
        prepared = _array_adapter(args)
        if prepared is None:
            return None
        adapter, validation_data, arrays = prepared
        steps = adapter.num_batches
        configured = int(getattr(self, "steps_per_execution", 1) or 1)
        if not steps:
            return None
        usable = largest_divisor_at_most(steps, configured)
        if usable * 4 < configured:
            return None  # e.g. a prime number of batches: Keras's per-epoch iterators are cheaper than 1-step calls
        if usable != configured and args["validation_steps"]:
            return None  # Keras's multi-step loop runs past `validation_steps`; fewer steps per call would not
        chunk = usable if usable > 1 and getattr(self, "jit_compile", False) is True else 1
        planned = steps * max(int(args["epochs"]) - int(args["initial_epoch"]), 0)
        if chunk > 1 and planned < XLA_CHUNK_MIN_STEPS and not _has_chunk_function(self, usable):
            chunk = 1
        return _pipeline_dataset(self, adapter, arrays, args, chunk), steps, validation_data, usable


def _is_tf_dataset(x: Any) -> bool:
    """Whether `x` is a `tf.data.Dataset` (without importing TensorFlow on another backend)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset)


def _has_chunk_function(model: Any, steps: int) -> bool:
    """Whether `model` already holds a compiled `_chunk_train_function` for `steps` steps per execution (made by
    an earlier `fit` since its last `compile`): later short fits reuse it at no compile cost."""
    cache = model.__dict__.get(_CACHE_ATTRIBUTE)
    return (cache is not None and cache["owner"]() is getattr(model, "train_function", None)
            and cache.get((steps, "chunks"), (None,))[0] is not None)


def _has_backup_and_restore(callbacks: Any) -> bool:
    """True when `callbacks` holds a BackupAndRestore. The repeated pipeline would restart at epoch 0's
    shuffle order after a restart; Keras's per-epoch pipelines resume exactly (SIGKILL test)."""
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    return any(isinstance(c, keras.callbacks.BackupAndRestore) for c in callbacks or ())


def largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest d <= limit that divides `number` (so an epoch is a whole number of executions)."""
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


@contextlib.contextmanager
def _steps_per_execution(model: Any, steps: int, chunks: int = 1) -> Iterator[None]:
    """Run a `fit` with `steps` steps per execution, keeping the compiled setting and its functions.

    The train/test functions traced for `steps` are cached in the model's `__dict__` (a plain dict,
    not a tracked attribute, so saving never sees it; model and cache are collected together), tied
    to the current main train function so that a new `compile` (which drops it) also drops them.
    `predict_function` is not cached: one made during the fit (by a callback) is discarded, because
    Keras picks its single- or multi-step form from `steps_per_execution` when making it.
    """
    if steps == model.steps_per_execution and chunks == 1:
        yield
        return
    model.make_train_function()
    main = (model.steps_per_execution, model.train_function, model.test_function, model.predict_function)
    cache = model.__dict__.get(_CACHE_ATTRIBUTE)
    if cache is None or cache["owner"]() is not main[1]:
        cache = {"owner": weakref.ref(main[1])}
        model.__dict__[_CACHE_ATTRIBUTE] = cache
    model.steps_per_execution = steps
    key = steps if chunks == 1 else (steps, "chunks")
    model.train_function, model.test_function = cache.get(key, (None, None))
    if chunks > 1 and model.train_function is None:
        model.train_function = _chunk_train_function(model, chunks)
    model.predict_function = None
    try:
        yield
    finally:
        cache[key] = (model.train_function, model.test_function)
        (model.steps_per_execution, model.train_function, model.test_function, model.predict_function) = main


def _chunk_train_function(model: Any, steps: int) -> Any:
    """A train function that runs `steps` training steps as ONE XLA computation per call (TensorFlow, a model
    compiled with `jit_compile=True`), for the chunked pipeline of `_epoch_batches(..., chunk=steps)`.

    Keras's own loop calls its XLA-compiled step once per batch inside a plain `tf.function`: each call launches an
    XLA computation, whose per-launch cost (handing it every weight and optimizer slot) was a quarter of an MMoE
    step here (108k samples/s for 32 steps in one computation, 83k for 32 launches). Each element of the chunked
    pipeline holds one execution's batches as (the first `steps - 1` batches stacked, the last batch), the last one
    possibly an epoch's partial batch; they are trained in order, the same `train_step` on the same batches as
    Keras's loop, and the last step's logs are returned as Keras's loop returns them. The first step is traced
    outside the loop, so that a model's first `fit` can create its optimizer and metric variables there.
    """
    import tensorflow as tf

    def run(stack: Any, last: Any) -> Any:
        first = tf.nest.map_structure(lambda t: t[0], stack)
        model.train_step(first)
        for i in tf.range(1, steps - 1):
            model.train_step(tf.nest.map_structure(lambda t, i=i: t[i], stack))
        return model.train_step(last)

    compiled = tf.function(run, jit_compile=True, reduce_retracing=True)

    def function(iterator: Any) -> Any:
        stack, last = iterator.get_next()
        return compiled(stack, last)

    return function


@contextlib.contextmanager
def _one_step_predict(model: Any) -> Iterator[None]:
    """Run a `predict` with one step per execution (TensorFlow and JAX), whatever `fit` uses.

    Keras's `predict` unrolls `steps_per_execution` steps into one graph, and traces again for the
    shorter last chunk: with the builders' training default of 32, the first `predict` of `movies_ple`
    (LSTM title encoder) took 23 s on TensorFlow against 1.4 s with one step (later calls 0.24 s vs
    0.41 s), and 7.4 s vs 2.1 s on JAX (later calls alike). The one-step function is kept in the
    model's `__dict__` apart from Keras's own (valid while `jit_compile` is unchanged), and the
    compiled setting is left as it was.
    """
    steps = int(getattr(model, "steps_per_execution", 1) or 1)
    if keras.backend.backend() not in ("tensorflow", "jax") or steps == 1 or not hasattr(model, "predict_function"):
        yield
        return
    saved = (model.steps_per_execution, model.predict_function)
    cached = model.__dict__.get(_PREDICT_CACHE_ATTRIBUTE)
    model.steps_per_execution = 1
    model.predict_function = cached[1] if cached and cached[0] == model.jit_compile else None
    try:
        yield
    finally:
        model.__dict__[_PREDICT_CACHE_ATTRIBUTE] = (model.jit_compile, model.predict_function)
        model.steps_per_execution, model.predict_function = saved


def _without_autotune(dataset: Any) -> Any:
    """Fixed parallelism instead of tf.data autotuning: deleting an autotuned iterator waits for the
    autotuner's thread (50–250 ms per `fit` measured here, as long as 500 training steps)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class _Pipeline:
    """A model's repeated array pipeline and its iterator, kept for the next `fit` on the same data.

    `key` is the content of the training arrays (shape, dtype and CRC-32 of each, so arrays changed in
    place get a new pipeline) and the arguments that shape the batches (batch size, shuffle, class
    weights). The iterator is left at an epoch boundary by a `fit` that ran all its epochs, so the
    next `fit` continues the same stream: `fit(epochs=2)` twice sees the batches of `fit(epochs=4)`,
    each epoch a new order when shuffling (as `shuffle=True` promises, also under a global seed,
    where a new pipeline per `fit` would be seeded afresh). An interrupted or stopped `fit` drops
    the iterator (the next one starts a new epoch on a new iterator of the same pipeline). Copies
    and pickles of the model get no pipeline.
    """

    def __init__(self, key: Any, dataset: Any, chunk: int = 1):
        self.key, self.dataset, self.iterator, self.chunk = key, dataset, None, chunk

    def __reduce__(self) -> Any:
        return (type(None), ())

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def adapter(self) -> Any:
        """A Keras data adapter that hands `fit` this pipeline's iterator (made on first use)."""
        return _adapter_classes()[0](self)


def _pipeline_key(arrays: Any, args: dict) -> tuple | None:
    """What identifies the batches of a repeated pipeline: the training arrays' structure, shapes,
    dtypes and contents (CRC-32), batch size, shuffle and class weights; None for anything but
    NumPy arrays of plain numbers up to `PIPELINE_CACHE_MAX_BYTES` in all (then no pipeline is kept)."""
    leaves = [leaf for leaf in keras.tree.flatten(arrays) if leaf is not None]
    if not leaves or not all(isinstance(v, np.ndarray) and v.dtype.kind in "biufc" for v in leaves):
        return None
    if sum(v.nbytes for v in leaves) > PIPELINE_CACHE_MAX_BYTES:
        return None
    contents = tuple((v.shape, v.dtype.str, zlib.crc32(memoryview(np.ascontiguousarray(v)).cast("B")))
                     for v in leaves)
    structure = repr(keras.tree.map_structure(lambda v: None if v is None else 0, arrays))
    class_weight = args["class_weight"]
    class_weight = tuple(sorted(class_weight.items())) if isinstance(class_weight, dict) else class_weight
    return structure, contents, args["batch_size"], repr(args["shuffle"]), repr(class_weight)


def _pipeline_dataset(model: Any, adapter: Any, arrays: Any, args: dict, chunk: int = 1) -> Any:
    """The repeated, autotuning-free pipeline of `adapter`'s batches: the model's kept one when it was
    built from the same arrays and arguments (`_Pipeline`), else a new one (kept when it may be). With
    `chunk` > 1 (an XLA-compiled model) a kept pipeline yields `chunk` batches per element (`_epoch_batches`), for
    `_chunk_train_function`; Keras's own repeated pipeline is never chunked (chunk 1)."""
    key = _pipeline_key(arrays, args) if _adapter_classes() is not None else None
    if key is not None:
        key = (*key, chunk)
    kept = model.__dict__.get(_PIPELINE_ATTRIBUTE)
    if key is not None and isinstance(kept, _Pipeline) and kept.key == key:
        return kept.dataset
    keras_dataset = adapter.get_tf_dataset()
    epochs = _epoch_batches(adapter, keras_dataset, chunk) if key is not None else None
    if epochs is None and key is not None:
        key, chunk = (*key[:-1], 1), 1
    dataset = _without_autotune(epochs if epochs is not None else keras_dataset.repeat())
    model.__dict__[_PIPELINE_ATTRIBUTE] = None if key is None else _Pipeline(key, dataset, chunk)
    return dataset


def _epoch_batches(adapter: Any, keras_dataset: Any, chunk: int = 1) -> Any | None:
    """Keras's batches of `adapter`, repeated, drawn with one gather per epoch instead of one per batch.

    Keras's array pipeline gathers every batch's rows by index in a dataset `map`; on small models that
    per-step work is a tenth of the step (hard-sharing MLP, batch 256: 363k samples/s through Keras's
    pipeline against 397k from batches already in place). This pipeline permutes the whole arrays once per
    epoch (the same `tf.random.shuffle` of the row indices that Keras draws; no permutation when not
    shuffling) and then slices the epoch into batches, the last one partial as in Keras. The batches are
    Keras's: the same rows in the same order without shuffling, every row once per epoch with it, and the
    same element structure, dtypes and shapes (else None, and Keras's own pipeline is repeated). Used for
    the arrays a kept pipeline holds (NumPy, up to `PIPELINE_CACHE_MAX_BYTES`): a shuffled epoch holds one
    permuted copy of them.

    With `chunk` > 1 (it divides the epoch's batch count) each element is one execution of `chunk` consecutive
    batches of that epoch, as (the first `chunk - 1` stacked, the last), the last possibly the partial batch.
    """
    import tensorflow as tf

    inputs = getattr(adapter, "_inputs", None)  # Keras internals: without them, Keras's own pipeline
    shuffle = getattr(adapter, "_shuffle", None)
    num_samples, batch_size = getattr(adapter, "_num_samples", None), getattr(adapter, "batch_size", None)
    if inputs is None or shuffle not in (True, False) or not num_samples or not batch_size:
        return None
    spec = keras_dataset.element_spec
    try:
        tensors = tf.nest.map_structure(lambda array, leaf: tf.constant(array, dtype=leaf.dtype),
                                        keras.tree.lists_to_tuples(inputs), spec)
    except (TypeError, ValueError):
        return None
    full = num_samples // batch_size
    in_full = full * batch_size

    partial = num_samples > in_full
    if chunk > 1 and (full + partial) % chunk:
        return None
    executions = (full + partial) // chunk
    whole = executions - partial  # executions of full batches only

    def one_epoch(_: Any) -> Any:
        rows = tensors
        if shuffle:
            order = tf.random.shuffle(tf.range(num_samples, dtype=tf.int64))
            rows = tf.nest.map_structure(lambda t: tf.gather(t, order), tensors)
        in_batches = tf.nest.map_structure(lambda t: tf.reshape(t[:in_full], [full, batch_size, *t.shape[1:]]), rows)
        if chunk > 1:
            grouped = tf.nest.map_structure(lambda t: tf.reshape(t[:whole * chunk], [whole, chunk, *t.shape[1:]]),
                                            in_batches)
            batches = tf.data.Dataset.from_tensor_slices(
                (tf.nest.map_structure(lambda t: t[:, :-1], grouped), tf.nest.map_structure(lambda t: t[:, -1], grouped)))
            if partial:
                batches = batches.concatenate(tf.data.Dataset.from_tensors(
                    (tf.nest.map_structure(lambda t: t[whole * chunk:], in_batches),
                     tf.nest.map_structure(lambda t: t[in_full:], rows))))
            return batches
        batches = tf.data.Dataset.from_tensor_slices(in_batches)
        if partial:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda t: t[in_full:], rows)))
        return batches

    dataset = tf.data.Dataset.from_tensors(0).repeat().flat_map(one_epoch)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False  # as Keras's pipeline
    if shuffle:
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    dataset = dataset.with_options(options)
    batch_spec = dataset.element_spec[1] if chunk > 1 else dataset.element_spec
    same = tf.nest.map_structure(lambda mine, theirs: mine.is_compatible_with(theirs) and mine.dtype == theirs.dtype,
                                 batch_spec, spec)
    return dataset if all(tf.nest.flatten(same)) else None


_ADAPTER_CLASSES: list = []


def _adapter_classes() -> tuple[Any, Any] | None:
    """(Keras data adapter over a `_Pipeline`, the `tf.distribute.DistributedDataset` it hands Keras),
    made once; None when Keras has no `DataAdapter` base (then pipelines are not kept).

    Keras's `fit` accepts a `DataAdapter` as `x`, and its TensorFlow epoch iterator iterates a
    `DistributedDataset` as it is; ours returns the kept iterator from `iter()`.
    """
    if _ADAPTER_CLASSES:
        return _ADAPTER_CLASSES[0]
    try:  # Keras internals: a Keras that moved them gets a new pipeline per fit, as before
        import tensorflow as tf
        from keras.src.trainers.data_adapters.data_adapter import DataAdapter

        base = tf.distribute.DistributedDataset
    except (ImportError, AttributeError):
        _ADAPTER_CLASSES.append(None)
        return None

    class KeptIterable(base):  # type: ignore[misc, valid-type]
        def __init__(self, pipeline: _Pipeline):
            self._pipeline = pipeline

        def __iter__(self) -> Any:
            if self._pipeline.iterator is None:
                self._pipeline.iterator = iter(self._pipeline.dataset)
            return self._pipeline.iterator

        @property
        def element_spec(self) -> Any:
            return self._pipeline.dataset.element_spec

    class KeptPipelineAdapter(DataAdapter):
        def __init__(self, pipeline: _Pipeline):
            self._iterable = KeptIterable(pipeline)

        def get_tf_dataset(self) -> Any:
            return self._iterable

        @property
        def num_batches(self) -> None:
            return None  # repeated: `fit` passes `steps_per_epoch`

        @property
        def batch_size(self) -> None:
            return None

        @property
        def has_partial_batch(self) -> None:
            return None

        @property
        def partial_batch_size(self) -> None:
            return None

    _ADAPTER_CLASSES.append((KeptPipelineAdapter, KeptIterable))
    return _ADAPTER_CLASSES[0]
