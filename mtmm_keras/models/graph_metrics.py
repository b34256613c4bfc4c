"""Epoch-end metric read-out and reset as one compiled call each (TensorFlow backend).

At every epoch's end (and around every `evaluate`) Keras reads each metric's result and resets each
metric's variables op by op, eagerly. A multi-task model has many metrics — the loss, every task's loss,
weight and compiled metrics — so that is dozens of separately dispatched TensorFlow ops per epoch: on the
hard-sharing MLP, 43 ms of a 450 ms, 8-epoch `fit` (cProfile), as much as 7 of its 64 training steps. The
mixin runs the same Keras code inside one `tf.function` per model and set of metric variables, so each is
one call; the values are the same (the histories are identical). Tracing them costs more than a few
eager read-outs, so a model's first `EAGER_CALLS_BEFORE_COMPILING` calls of each, per set of metric
variables, stay eager: a one- or two-epoch `fit` of a new model traces nothing. Elsewhere — JAX,
PyTorch, eager execution, a model under a distribution strategy — Keras's own methods run unchanged.
"""

from __future__ import annotations

from typing import Any

import keras

# Where the compiled read-out and reset live on the model: a plain `__dict__` entry, so Keras never tracks or
# saves it.
_CACHE_ATTRIBUTE = "_mtmm_graph_metrics"
# Calls of each method, per set of metric variables, that run eagerly before it is traced: tracing both takes
# ~0.1 s, an eager read-out and reset ~5 ms, so only a model read out many times (long or repeated fits) gains.
EAGER_CALLS_BEFORE_COMPILING = 4


class _CompiledMetricCalls:
    """The model's compiled `reset_metrics`/`get_metrics_result`, valid for one set of metric variables.

    A new `compile`, or a metric built on first use, changes the set, and the calls are traced anew. Copies
    and pickles of the model get none."""

    def __init__(self, key: tuple[int, ...]):
        self.key, self.calls, self.eager_calls = key, {}, {}

    def __reduce__(self) -> Any:
        return (type(None), ())

    def __deepcopy__(self, memo: dict) -> None:
        return None


def _compiled(model: Any, name: str, body: Any) -> Any | None:
    """`body` as a `tf.function` for this model's current metric variables, or None where Keras's eager
    code should run (another backend, a traced or eager-only context, a distribution strategy)."""
    if keras.backend.backend() != "tensorflow" or getattr(model, "run_eagerly", False):
        return None
    import tensorflow as tf

    if not tf.executing_eagerly():
        return None  # inside a traced step: Keras's code is traced into it as usual
    from mtmm_keras.distribute import model_strategy

    if model_strategy(model) is not None or tf.distribute.has_strategy():
        return None  # replicated metric variables: leave the cross-replica reads to Keras
    variables = model.metrics_variables
    if not variables:
        return None
    key = tuple(id(variable) for variable in variables)
    cache = model.__dict__.get(_CACHE_ATTRIBUTE)
    if not isinstance(cache, _CompiledMetricCalls) or cache.key != key:
        cache = _CompiledMetricCalls(key)
        model.__dict__[_CACHE_ATTRIBUTE] = cache
    if name not in cache.calls:
        eager = cache.eager_calls.get(name, 0)
        if eager < EAGER_CALLS_BEFORE_COMPILING:
            cache.eager_calls[name] = eager + 1
            return None
        cache.calls[name] = tf.function(body, autograph=False)
    return cache.calls[name]


class GraphMetricsMixin:
    """Mixin for `keras.Model` subclasses: `reset_metrics` and `get_metrics_result` as one compiled call
    each when called eagerly on TensorFlow (see the module docstring); Keras's own elsewhere."""

    def reset_metrics(self) -> None:
        """Keras's `reset_metrics`, compiled into one call on TensorFlow."""
        call = _compiled(self, "reset", lambda: super(GraphMetricsMixin, self).reset_metrics())
        if call is None:
            super().reset_metrics()
        else:
            call()

    def get_metrics_result(self) -> Any:
        """Keras's `get_metrics_result`, compiled into one call on TensorFlow (the same dict of tensors)."""
        call = _compiled(self, "result", lambda: super(GraphMetricsMixin, self).get_metrics_result())
        return super().get_metrics_result() if call is None else call()
