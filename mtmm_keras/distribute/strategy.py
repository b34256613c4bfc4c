"""Which `tf.distribute` strategy a model trains under, and the compile settings that work there."""

from __future__ import annotations

from typing import Any

import keras

# Compile settings the builders' defaults (`builders._common.COMPILE_DEFAULTS`) must give up under a
# `tf.distribute` strategy, measured with Keras 3.15 / TensorFlow 2.21 on MirroredStrategy:
# - steps_per_execution > 1 fails in Keras's multi-step loop under any strategy, a plain
#   keras.Model included: "InvalidArgumentError: You must feed a value for placeholder tensor
#   '.../while/cond/Placeholder_1'".
# - jit_compile=True (forced for soft sharing's stacked towers) fails: "Trying to access resource
#   towers_dense1/kernel/replica_1 ... from device CPU:0". Keras's own "auto" already turns XLA off
#   under tf.distribute (Trainer._resolve_auto_jit_compile); False says so explicitly.
TF_DISTRIBUTE_COMPILE: dict[str, Any] = {"steps_per_execution": 1, "jit_compile": False}

# Compile settings the builders' defaults must give up on the PyTorch backend (Keras 3.15, torch 2.x):
# - Keras's torch trainer runs one step per call into the backend; `fit`/`evaluate`/`predict` raise
#   "`steps_per_execution` must be 1 with the PyTorch backend" for anything else.
# - jit_compile: Keras's "auto" already means eager on torch (Trainer._resolve_auto_jit_compile);
#   False says so explicitly. `torch.compile` (jit_compile=True) stays the caller's opt-in.
TORCH_COMPILE: dict[str, Any] = {"steps_per_execution": 1, "jit_compile": False}


def model_strategy(model: keras.Model | None = None) -> Any:
    """The `tf.distribute.Strategy` `model` trains under, or None (one device, or not TensorFlow).

    That is the strategy whose scope the model was created in — also when asked outside that scope,
    e.g. for `fit` called after the `with strategy.scope():` block — else the strategy of the scope
    we are in now (`model=None`: only the latter). JAX/torch (`keras.distribution`) give None: their
    data parallelism needs no strategy-specific settings.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if model is not None:
        # Keras's TF trainer records `tf.distribute.get_strategy()` in `_distribute_strategy` when the
        # model is created inside a strategy scope (None otherwise). An internal: a Keras without it
        # falls back to the variables, which a strategy creates as distributed values.
        built_in = getattr(model, "_distribute_strategy", None)
        if built_in is None and not hasattr(model, "_distribute_strategy"):
            built_in = _variables_strategy(model)
        if built_in is not None:
            return built_in
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def _variables_strategy(model: keras.Model) -> Any:
    """The strategy that created the model's (first) variable, or None for plain variables."""
    import tensorflow as tf

    for variable in getattr(model, "variables", ()):
        value = getattr(variable, "value", variable)
        if isinstance(value, tf.distribute.DistributedValues):
            return getattr(value, "distribute_strategy", None) or getattr(value, "_distribute_strategy", None)
        return None
    return None


def compile_defaults(model: keras.Model | None = None) -> dict[str, Any]:
    """Compile settings to lay over the builders' defaults for `model` (empty when none are needed).

    On the PyTorch backend (any model, also `model=None`): one step per execution, no `torch.compile`
    (`TORCH_COMPILE`). Under a `tf.distribute` strategy (see `model_strategy`): one step per execution
    and no forced XLA (`TF_DISTRIBUTE_COMPILE`; both fail there, see the comments above them).
    Arguments the caller passes to the builder still win over these (an explicit
    `steps_per_execution` > 1 on torch is refused by the models' `compile`, `check_compile_arguments`).
    """
    if keras.backend.backend() == "torch":
        return dict(TORCH_COMPILE)
    if model_strategy(model) is not None:
        return dict(TF_DISTRIBUTE_COMPILE)
    return {}


def saved_compile_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """A saved model's compile arguments as this backend can run them.

    A `.keras` file or zoo preset saved on TensorFlow or JAX carries the execution settings of that
    backend (the builders' `steps_per_execution=32`, XLA for stacked towers on TensorFlow). They change
    how steps are dispatched, never the results, so on the PyTorch backend `TORCH_COMPILE` replaces them
    and the model loads compiled instead of failing `check_compile_arguments`. On JAX a saved `jit_compile=False`
    becomes Keras's `"auto"` (XLA when every layer supports it): TensorFlow on a CPU saves its own resolution of
    "auto", False, and Keras's JAX trainer runs a model with `jit_compile=False` eagerly, step by step (a
    fusion entry saved on TensorFlow, mfeat_fusion, took 4.4 s instead of 0.8 s for its first predict of 500 rows on
    JAX, 0.39 s instead of 0.02 s for later ones). TensorFlow: unchanged.
    """
    backend = keras.backend.backend()
    if backend == "jax" and arguments.get("jit_compile") is False:
        return {**arguments, "jit_compile": "auto"}
    if backend != "torch":
        return dict(arguments)
    return {**arguments, **{key: value for key, value in TORCH_COMPILE.items() if key in arguments}}


def check_compile_arguments(steps_per_execution: Any = 1) -> None:
    """Refuse compile settings the current backend cannot train with, naming the argument and the backend.

    On the PyTorch backend Keras runs one step per execution: `steps_per_execution` > 1 would compile, then
    fail in `fit`/`evaluate`/`predict` with Keras's own error. Ours comes at `compile` (a builder's
    `compile=True`), says which argument to drop, and that the builders' default there is 1.
    """
    if keras.backend.backend() != "torch":
        return
    try:
        steps = int(steps_per_execution)
    except (TypeError, ValueError):
        return  # Keras's compile reports a malformed value itself
    if steps > 1:
        raise ValueError(
            f"`steps_per_execution={steps_per_execution!r}` is not supported on the PyTorch backend "
            "(KERAS_BACKEND=torch): Keras's torch trainer runs one training step per call. Leave "
            "`steps_per_execution` out (the builders' default is 1 on torch, 32 on TensorFlow and JAX) or pass 1."
        )
