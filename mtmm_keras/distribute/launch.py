"""`training_scope(engine)`: build and fit inside the data-parallel engine a user picks by name.

The same training code runs on one device or data-parallel: `mtmm zoo train NAME --distribute ENGINE`
and user scripts wrap building *and* fitting in this scope.

- "mirrored": `tf.distribute.MirroredStrategy` over this host's devices (TensorFlow backend).
- "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy`, cluster and role from `TF_CONFIG`
  (TensorFlow backend), every worker running the same command; on JAX, `jax_multi_process()` (coordinator
  address, process count and id from `JAX_COORDINATOR_ADDRESS`/`JAX_NUM_PROCESSES`/`JAX_PROCESS_ID`):
  DataParallel over every process's devices, each process feeding its share of every batch
  (`process_local_rows`).
- "jax": `keras.distribution.DataParallel` over this host's devices (JAX backend).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

import keras

ENGINES = ("mirrored", "multi_worker", "jax")
_BACKENDS = {"mirrored": ("tensorflow",), "multi_worker": ("tensorflow", "jax"), "jax": ("jax",)}


def check_engine(engine: Any) -> str | None:
    """`engine` if it is usable with this Keras backend (None means one device), else a clear ValueError."""
    if engine is None:
        return None
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"`distribute` must be one of {ENGINES} (or None for one device), got {engine!r}.")
    backend = keras.backend.backend()
    if backend not in _BACKENDS[engine]:
        raise ValueError(
            f"`distribute={engine!r}` needs the {' or '.join(_BACKENDS[engine])} backend; Keras runs on {backend!r} "
            f"(set KERAS_BACKEND before starting Python)."
        )
    if engine == "multi_worker" and backend == "tensorflow" and not os.environ.get("TF_CONFIG"):
        raise ValueError("`distribute='multi_worker'` reads the cluster from TF_CONFIG, which is not set; see the "
                         "README section 'Training on more than one device'.")
    if engine == "multi_worker" and backend == "jax":
        from mtmm_keras.distribute import jax_processes

        names = (jax_processes.ENV_COORDINATOR, jax_processes.ENV_NUM_PROCESSES, jax_processes.ENV_PROCESS_ID)
        missing = [name for name in names if not os.environ.get(name)]
        if missing and not jax_processes._initialized():
            raise ValueError(f"`distribute='multi_worker'` on JAX reads the coordinator from {', '.join(names)}; "
                             f"{', '.join(missing)} not set. See the README section 'Training on more than one device'.")
    return engine


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker run (which must not write outputs)."""
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            task = json.loads(config).get("task", {})
        except (ValueError, AttributeError):
            return True
        cluster = json.loads(config).get("cluster", {})
        if "chief" in cluster:
            return task.get("type") == "chief"
        return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0
    if keras.backend.backend() == "jax" and os.environ.get("JAX_PROCESS_ID"):
        return int(os.environ["JAX_PROCESS_ID"]) == 0
    return True


@contextlib.contextmanager
def training_scope(engine: str | None) -> Iterator[Any]:
    """Run the block (model building and fit) under `engine`; yields the strategy / distribution, or None."""
    engine = check_engine(engine)
    if engine is None:
        yield None
        return
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy() if engine == "mirrored" else tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            yield strategy
        return
    if engine == "multi_worker":  # every process feeds its own rows: `process_local_rows`
        from mtmm_keras.distribute.jax_processes import jax_multi_process

        distribution = jax_multi_process()
    else:
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield distribution
    finally:
        keras.distribution.set_distribution(previous)
