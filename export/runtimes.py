"""Run each artifact in the runtime it is deployed with: TF (SavedModel), LiteRT (TFLite), ONNX Runtime."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def saved_model_runner(path: str) -> Runner:
    """A callable running the SavedModel at `path` through its `serving_default` signature on named numpy inputs."""
    import tensorflow as tf

    serving = tf.saved_model.load(path).signatures["serving_default"]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in serving(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    return run


def tflite_runner(path: str) -> Runner:
    """LiteRT signature runner (resizes a dynamic batch to the input it is given)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return lambda inputs: dict(runner(**inputs))


def in_batches(run: Runner, batch_size: int | None) -> Runner:
    """Feed a fixed-batch artifact `batch_size` rows at a time and concatenate the outputs."""
    if batch_size is None:
        return run

    def batched(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(inputs.values())))
        chunks = [run({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, rows, batch_size)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    return batched


def onnx_runner(path: str, output_names: dict[str, str]) -> Runner:
    """ONNX Runtime session; `output_names` maps ONNX output names back to the model's names."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {output_names.get(n, n): v for n, v in zip(names, session.run(None, inputs))}

    return run


def median_latency_ms(run: Callable[[], object], repeats: int = 50, warmup: int = 5) -> float:
    """Median wall time of `run()` in milliseconds, after a warm-up."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)
