"""Tell Keras that a model's own `compute_loss` replaces its compiled loss, so `fit` stops re-tracing.

Keras's JAX and PyTorch trainers start every `fit`/`evaluate` with `Trainer._symbolic_build`, which traces
the whole model, its loss and metrics symbolically (`backend.compute_output_spec`) while any of the model's
layers, compiled metrics or compiled loss (`CompileLoss`) is unbuilt. The compiled loss is built the first
time Keras's own `compute_loss` calls it; `MultiTaskModel` (with its weighting) and `JointEmbeddingModel`
compute their losses themselves and never call it, so it stayed unbuilt and every later `fit` traced the
model again (~10 ms per `fit` of the hard-sharing MLP on JAX, more for larger models).
"""

from __future__ import annotations

from typing import Any


def mark_unused(model: Any) -> None:
    """Mark the model's compiled loss built (with no per-output loss trackers) when it is never called.

    Call it from a `compute_loss` that does not call Keras's compiled loss; a Keras without
    `_compile_loss` is left alone (it then traces as before)."""
    compiled = getattr(model, "_compile_loss", None)
    if compiled is not None and getattr(compiled, "built", True) is False:
        compiled.built = True
