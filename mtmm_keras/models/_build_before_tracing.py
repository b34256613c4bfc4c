"""Create a model's optimizer and metric variables before TensorFlow traces its first training step.

Outside a distribution strategy, Keras's TensorFlow trainer leaves the optimizer's slots and the compiled metrics'
variables to the first trace of `train_step` (`TensorFlowTrainer._maybe_symbolic_build` returns early). A
`tf.function` whose first trace creates variables is traced a second time once they exist (TensorFlow lifts their
initialisers out, then retraces without them), so every model's first `fit` traced its whole training step twice.
Building them first, with the symbolic build Keras itself runs under a strategy (`Trainer._symbolic_build`, on the
shapes and dtypes of one batch: nothing is computed), leaves one trace: a new model's first `fit` 1.26–1.46× faster
on 2 cores (`python -m benchmarks.first_fit`, benchmarks/README.md "First fit"). Weights and logs are unchanged.
"""

from __future__ import annotations

from typing import Any

import keras


def build_before_tracing(model: keras.Model, batch_spec: Any) -> bool:
    """Build `model`'s unbuilt optimizer and metrics for batches like `batch_spec`; True when it did.

    `batch_spec` is one training batch `(x[, y[, sample_weight]])` as `tf.TensorSpec`s (a tf.data element spec) or
    the training arrays (only shapes and dtypes are read; the batch dimension may differ). Only on TensorFlow, in
    graph mode, with no distribution strategy (Keras builds those models itself, inside the strategy's scope) and
    an optimizer not built yet. Anything else, a Keras without `_symbolic_build` (an internal), or a batch it cannot
    build from leaves the model as it was: Keras then builds in the first trace, as it always did, and reports any
    error in the data itself.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "built", True):
        return False
    return _symbolic_build(model, batch_spec) and bool(optimizer.built)


def build_metrics_before_tracing(model: keras.Model, batch_spec: Any) -> bool:
    """Before `evaluate`: build `model`'s unbuilt compiled metrics and loss for batches like `batch_spec`, so its
    first `evaluate` traces `test_step` once instead of twice; True when it did.

    Only for a model whose optimizer is built or absent, which is what a loaded model has (`compile_from_config`
    builds the optimizer, not the metrics): Keras's build would also create an unbuilt optimizer's slots (twice the
    parameters) for an evaluation that never uses them, so a new model's evaluate before any `fit` keeps Keras's two
    traces. The same conditions as `build_before_tracing` otherwise.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not getattr(optimizer, "built", False):
        return False
    metrics, loss = getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None)  # Keras internals
    if not any(part is not None and getattr(part, "built", True) is False for part in (metrics, loss)):
        return False  # nothing to build (or a Keras without them: two traces, as before)
    return _symbolic_build(model, batch_spec) and (metrics is None or bool(metrics.built))


def _symbolic_build(model: keras.Model, batch_spec: Any) -> bool:
    """Keras's `Trainer._symbolic_build(data_batch=batch_spec)` where it applies; False where it was not run or
    failed (Keras's first trace then builds and raises its own error)."""
    if keras.backend.backend() != "tensorflow" or getattr(model, "run_eagerly", False):
        return False
    from mtmm_keras.distribute import model_strategy

    if model_strategy(model) is not None:
        return False
    symbolic_build = getattr(model, "_symbolic_build", None)  # Keras internal; without it: two traces, as before
    if not isinstance(batch_spec, tuple):
        batch_spec = (batch_spec,)  # inputs only (a label-free joint embedding)
    if symbolic_build is None or len(batch_spec) not in (1, 2, 3):
        return False
    import numpy as np
    import tensorflow as tf

    leaves = [leaf for leaf in keras.tree.flatten(batch_spec) if leaf is not None]
    if not leaves or not all(isinstance(leaf, (tf.TensorSpec, tf.Tensor, np.ndarray)) for leaf in leaves):
        return False  # ragged or sparse batches, Python objects: left to Keras's trace
    try:
        symbolic_build(data_batch=batch_spec)
    except Exception:  # noqa: BLE001 - Keras's own first trace builds and raises its own error
        return False
    return True
