"""JAX data parallelism over several processes (hosts): `jax.distributed` plus Keras's `DataParallel`.

Every process runs the same script. `jax_multi_process()` joins the processes (coordinator address,
process count and this process's id: arguments, else the `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID` environment variables) and returns a `keras.distribution.DataParallel` over every
process's devices. Keras's JAX trainer then builds each global batch from the processes' local batches
(`jax.make_array_from_process_local_data`), so each process must feed only its share of every batch:
`process_local_rows(data, batch_size)` cuts in-memory arrays that way (the global batch is the
processes' shares in process order, i.e. the same rows, in the same order, as one process would see).
A `tf.data.Dataset` of global batches needs no cutting: pass `auto_shard_dataset=True` and Keras shards it.
On CPU the processes talk through gloo (jax's default `jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def _setting(value: Any, env: str, argument: str, integer: bool) -> Any:
    if value is None:
        value = os.environ.get(env) or None
        if value is None:
            raise ValueError(f"`{argument}` is not given and {env} is not set: every process needs the coordinator "
                             f"address, the process count and its own id (arguments, or {ENV_COORDINATOR}, "
                             f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}).")
        if integer:
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{env} must be an integer, got {os.environ[env]!r}.") from None
    if integer and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise TypeError(f"`{argument}` must be an integer, got {value!r}.")
    if not integer and (not isinstance(value, str) or ":" not in value):
        raise ValueError(f"`{argument}` must be 'host:port' of process 0, got {value!r}.")
    return value


def _initialized() -> bool:
    import jax

    is_initialized = getattr(jax.distributed, "is_initialized", None)
    if is_initialized is not None:
        return bool(is_initialized())
    from jax._src import distributed  # jax versions without the public check

    return distributed.global_state.client is not None


def jax_multi_process(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
                      *, auto_shard_dataset: bool = False) -> Any:
    """Join this process to a `num_processes`-process JAX run and return a `DataParallel` over all their devices.

    Call it first (before any JAX computation) in every process, with `process_id` 0 on the coordinator
    (`coordinator`, "host:port", must be reachable from every process). Missing arguments come from the
    `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` environment variables. A second call
    in the same process returns a new `DataParallel` without re-joining. `auto_shard_dataset=False` (the
    default) means each process feeds its own rows (`process_local_rows`); True lets Keras shard a
    `tf.data.Dataset` of global batches. Set it with `keras.distribution.set_distribution(...)`.
    """
    if keras.backend.backend() != "jax":
        raise ValueError(f"`jax_multi_process` needs the jax backend; Keras runs on {keras.backend.backend()!r} "
                         "(set KERAS_BACKEND=jax before starting Python).")
    if not _initialized():
        coordinator = _setting(coordinator, ENV_COORDINATOR, "coordinator", integer=False)
        num_processes = _setting(num_processes, ENV_NUM_PROCESSES, "num_processes", integer=True)
        process_id = _setting(process_id, ENV_PROCESS_ID, "process_id", integer=True)
        if num_processes < 1:
            raise ValueError(f"`num_processes` must be at least 1, got {num_processes}.")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"`process_id` must be in [0, {num_processes - 1}] for {num_processes} processes, "
                             f"got {process_id}.")
        keras.distribution.initialize(coordinator, int(num_processes), int(process_id))
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices(),
                                           auto_shard_dataset=auto_shard_dataset)


def _process_layout() -> tuple[int, int, int]:
    """(process count, this process's index, devices per process) of the running JAX job; one process
    on other backends (no JAX import: importing it would start a second runtime beside TensorFlow's)."""
    if keras.backend.backend() != "jax":
        return 1, 0, 1
    import jax

    return jax.process_count(), jax.process_index(), jax.local_device_count()


def process_local_rows(data: Any, batch_size: int) -> tuple[Any, int]:
    """This process's share of every global batch of `data`, and the per-process batch size to `fit` with.

    `data` is an array or a (nested) dict / list / tuple of arrays with the same row count. Each global
    batch of `batch_size` rows is cut into equal contiguous shares, one per process in process order.
    A last batch that does not split evenly over every device loses its trailing rows (at most
    devices − 1 of them). Returns `(local_data, batch_size // num_processes)`; one process: `data` as is.
    """
    processes, index, local_devices = _process_layout()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if processes == 1:
        return data, int(batch_size)
    devices = processes * local_devices
    if batch_size % devices:
        raise ValueError(f"`batch_size` {batch_size} must be a multiple of the {devices} devices of the "
                         f"{processes} processes (each batch is split evenly over them).")
    leaves = keras.tree.flatten(data)
    if not leaves:
        raise ValueError("`data` holds no arrays.")
    rows = {len(leaf) for leaf in leaves}
    if len(rows) != 1:
        raise ValueError(f"every array in `data` must have the same number of rows, got {sorted(rows)}.")
    total = rows.pop()
    full, rest = divmod(total, batch_size)
    rest -= rest % devices
    share = batch_size // processes
    picked = [np.arange(b * batch_size + index * share, b * batch_size + (index + 1) * share) for b in range(full)]
    if rest:
        start, last_share = full * batch_size, rest // processes
        picked.append(np.arange(start + index * last_share, start + (index + 1) * last_share))
    take = np.concatenate(picked) if picked else np.zeros((0,), dtype="int64")
    return keras.tree.map_structure(lambda leaf: np.asarray(leaf)[take], data), share
