"""Training past one device: strategy-aware compile defaults and cross-replica gathers.

- `model_strategy(model)` — the `tf.distribute` strategy a model was built in (or is used under), or None.
- `compile_defaults(model)` — the builder compile settings that must change under that strategy, or on
  the PyTorch backend (one step per execution); `check_compile_arguments(...)` refuses, naming the
  argument and the backend, an explicit `steps_per_execution` > 1 on torch.
- `all_gather_rows(x)` / `local_rows_start(x)` — the global batch from inside a replica, gradients
  flowing back to each replica's own rows; the identity on one device and on JAX's DataParallel
  (whose step already sees the global batch).
- `num_replicas()` / `scale_for_replicas(value)` — the per-replica share of a value summed over replicas.
- `training_scope(engine)` — build and fit under "mirrored", "multi_worker" (TF_CONFIG / jax.distributed)
  or "jax" (DataParallel); `mtmm zoo train --distribute ENGINE` uses it.
- `jax_multi_process(coordinator, num_processes, process_id)` / `process_local_rows(data, batch_size)` —
  JAX data parallelism over several processes (`jax.distributed`), each feeding its share of every batch.
- `MultiWorkerFitMixin` — `fit` under MultiWorkerMirroredStrategy despite keras-team/keras#20585
  (`multiworker`; JointEmbeddingModel has it).
"""

from __future__ import annotations

# Keras first: importing it registers mtmm's classes (mtmm_keras/__init__.py), which imports
# mtmm_keras.models, which imports this package's modules; they must not be half-loaded then.
import keras  # noqa: F401

from mtmm_keras.distribute import multiworker
from mtmm_keras.distribute.launch import ENGINES, check_engine, is_chief, training_scope
from mtmm_keras.distribute.gather import all_gather_rows, local_rows_start
from mtmm_keras.distribute.jax_processes import jax_multi_process, process_local_rows
from mtmm_keras.distribute.multiworker import MultiWorkerFitMixin
from mtmm_keras.distribute.scaling import num_replicas, scale_for_replicas
from mtmm_keras.distribute.strategy import (
    check_compile_arguments,
    compile_defaults,
    model_strategy,
    saved_compile_arguments,
)

__all__ = [
    "ENGINES",
    "check_compile_arguments",
    "check_engine",
    "is_chief",
    "training_scope",
    "MultiWorkerFitMixin",
    "all_gather_rows",
    "compile_defaults",
    "jax_multi_process",
    "process_local_rows",
    "local_rows_start",
    "model_strategy",
    "saved_compile_arguments",
    "multiworker",
    "num_replicas",
    "scale_for_replicas",
]
