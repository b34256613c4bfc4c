"""Where TensorFlow's hard-sharing training time goes, from a hand-written graph up to `fit`, against PyTorch.

Issue 23 asks `mk.builders.hard_sharing` on the TensorFlow backend to train at ≥ 2× the PyTorch reference loop
(`benchmarks/torch_reference.py`). This takes the same model (MLP 100 → 128 → 64, heads 1, 1, 2; Σ MSE; Adam) and
times it at four depths of the stack, interleaved with PyTorch's loop (in a worker process of its own, as
`train_speed` runs it), on the same arrays:

1. **raw TensorFlow**: the forward pass, `tf.GradientTape` and one fused `ResourceApplyAdam` per weight, written by
   hand, 32 steps per `tf.function` call on batches sliced from in-graph constants (no Keras, no tf.data);
2. **Keras's own `train_step`** of a stock `keras.Model` (the same layers, `loss="mse"` per output), 32 steps per
   call on the same in-graph batches;
3. **mtmm's `train_step`** (`MultiTaskModel`: per-task losses, missing-label masks, weighting, per-task logs), the
   same way;
4. **mtmm `fit`** on the NumPy arrays — what users run and what `train_speed` reports (its tf.data pipeline, kept
   between `fit` calls on the same arrays, `steps_per_execution=32`).

Each depth's ratio over PyTorch shows which layer of the stack loses the time that 2× needs. Stock Keras `fit` of
the stock model (a new tf.data pipeline per `fit`) is timed beside them for reference.

    python -m benchmarks.tf_step_floor [--out benchmarks/results/tf_step_floor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 2.0  # issue 23: hard sharing ≥ 2× PyTorch on TensorFlow
STEPS_PER_CALL = 32  # the builders' steps_per_execution
DEPTHS = ("raw TensorFlow", "Keras train_step", "mtmm train_step", "mtmm fit")
REFERENCE = "stock Keras fit"


def verdict(ratios: dict[str, float], target: float = TARGET) -> str:
    """The shallowest depth that already misses the target: the layer that must change to reach it."""
    for depth in DEPTHS:
        if ratios.get(depth, float("inf")) < target:
            return f"{target}× is lost at '{depth}' ({ratios[depth]:.2f}×); every depth before it reaches it"
    return f"every depth reaches {target}×"


def _build_raw(x: np.ndarray, targets: np.ndarray, batch_size: int) -> Callable[[], None]:
    """Hand-written TF: 100 → 128 → 64 → 4 (the three heads side by side), Σ_t MSE_t, fused Adam per weight."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    widths = [(x.shape[1], 128), (128, 64), (64, targets.shape[1])]
    kernels = [tf.Variable((rng.uniform(-1, 1, size) * np.sqrt(6 / sum(size))).astype(np.float32)) for size in widths]
    biases = [tf.Variable(np.zeros(size[1], np.float32)) for size in widths]
    params = kernels + biases
    slots = [(tf.Variable(tf.zeros_like(p)), tf.Variable(tf.zeros_like(p))) for p in params]
    iterations = tf.Variable(0.0)
    head_slices = [(0, 1), (1, 2), (2, 4)]  # tasks a, b, c

    def step(xb, yb):
        with tf.GradientTape() as tape:
            h = xb
            for i, (kernel, bias) in enumerate(zip(kernels, biases)):
                h = tf.nn.bias_add(tf.matmul(h, kernel), bias)
                h = tf.nn.relu(h) if i < len(kernels) - 1 else h
            errors = tf.square(h - yb)
            loss = tf.add_n([tf.reduce_mean(errors[:, a:b]) for a, b in head_slices])
        grads = tape.gradient(loss, params)
        iterations.assign_add(1.0)
        b1, b2 = tf.constant(0.9), tf.constant(0.999)
        b1_power, b2_power = tf.pow(b1, iterations), tf.pow(b2, iterations)
        for p, g, (m, v) in zip(params, grads, slots):
            tf.raw_ops.ResourceApplyAdam(var=p.handle, m=m.handle, v=v.handle, beta1_power=b1_power,
                                         beta2_power=b2_power, lr=tf.constant(1e-3), beta1=b1, beta2=b2,
                                         epsilon=tf.constant(1e-7), grad=g)

    return _in_graph_epoch(step, x, targets, batch_size)


def _in_graph_epoch(step: Callable[[Any, Any], Any], x: np.ndarray, y: Any, batch_size: int) -> Callable[[], None]:
    """One epoch of `step(inputs, labels)`, 32 steps per `tf.function` call, on batches sliced from in-graph
    constants (no tf.data); `y` is an array or a dict of arrays. Only whole chunks of 32 steps run."""
    import tensorflow as tf

    steps = x.shape[0] // batch_size

    def batched(array: np.ndarray) -> Any:
        return tf.constant(array[:steps * batch_size].reshape(steps, batch_size, -1))

    inputs, labels = batched(x), tf.nest.map_structure(batched, y)

    @tf.function
    def chunk(start):
        for i in tf.range(STEPS_PER_CALL):
            row = start + i
            step(inputs[row], tf.nest.map_structure(lambda t, r=row: t[r], labels))

    def epoch() -> None:
        for start in range(0, steps - STEPS_PER_CALL + 1, STEPS_PER_CALL):
            chunk(tf.constant(start))

    return epoch


def measure(num_samples: int, batch_size: int, epochs: int, repeats: int) -> dict[str, Any]:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tempfile

    import keras
    import tensorflow as tf

    import mtmm_keras as mk
    from benchmarks.train_speed import INPUT_DIM, TASK_UNITS, Worker, make_data

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("benchmarks.tf_step_floor measures the TensorFlow backend; Keras was already started on "
                           f"{keras.backend.backend()!r} (unset KERAS_BACKEND or set it to tensorflow)")
    x, y = make_data("hard_sharing", num_samples)
    stacked = np.concatenate([y[name] for name in TASK_UNITS], axis=1)

    keras.utils.set_random_seed(0)
    features = keras.Input((INPUT_DIM,))
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Dense(128, activation="relu")(features))
    stock = keras.Model(features, {name: keras.layers.Dense(units, name=name)(h) for name, units in TASK_UNITS.items()})
    stock.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dict.fromkeys(TASK_UNITS, "mse"),
                  steps_per_execution=STEPS_PER_CALL)
    mtmm = mk.builders.hard_sharing((INPUT_DIM,), [mk.Task(name, units) for name, units in TASK_UNITS.items()])

    raw_epoch = _build_raw(x, stacked, batch_size)
    stock_epoch = _in_graph_epoch(lambda xb, yb: stock.train_step((xb, yb)), x, y, batch_size)
    mtmm_epoch = _in_graph_epoch(lambda xb, yb: mtmm.train_step((xb, yb)), x, y, batch_size)
    sides: dict[str, Callable[[], None]] = {
        "raw TensorFlow": lambda: [raw_epoch() for _ in range(epochs)],
        "Keras train_step": lambda: [stock_epoch() for _ in range(epochs)],
        "mtmm train_step": lambda: [mtmm_epoch() for _ in range(epochs)],
        "mtmm fit": lambda: mtmm.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0),
        REFERENCE: lambda: stock.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0),
    }
    for run in sides.values():  # trace, compile and build pipelines outside the timing
        run()
    seconds: dict[str, list[float]] = {name: [] for name in ("PyTorch loop", *sides)}
    with tempfile.TemporaryDirectory() as log_dir:
        torch_worker = Worker("torch", "cpu", dict(os.environ), log_dir)
        try:
            torch_info = torch_worker.call("info")
            torch_worker.call("prepare", case="hard_sharing", num_samples=num_samples, batch_size=batch_size,
                              epochs=epochs)
            for _ in range(repeats):
                seconds["PyTorch loop"].append(torch_worker.call("time", case="hard_sharing")["seconds"])
                for name, run in sides.items():
                    start = time.perf_counter()
                    run()
                    seconds[name].append(time.perf_counter() - start)
        finally:
            torch_worker.close()
    samples = {name: num_samples * epochs for name in seconds}  # the loops and fit train every row
    # the in-graph loops run whole chunks of 32 steps only
    for name in ("raw TensorFlow", "Keras train_step", "mtmm train_step"):
        samples[name] = (num_samples // batch_size // STEPS_PER_CALL) * STEPS_PER_CALL * batch_size * epochs
    rates = {name: samples[name] / statistics.median(values) for name, values in seconds.items()}
    ratios = {name: rates[name] / rates["PyTorch loop"] for name in (*DEPTHS, REFERENCE)}
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "torch": torch_info, "samples_per_s": rates,
            "ratio_over_torch": ratios, "seconds": seconds, "verdict": verdict(ratios)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tf_step_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/tf_step_floor.json", help="where to write the JSON")
    parser.add_argument("--num-samples", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed runs per depth")
    args = parser.parse_args(argv)
    for flag in ("num_samples", "batch_size", "epochs", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.num_samples < args.batch_size * STEPS_PER_CALL:
        parser.error(f"--num-samples must hold at least {STEPS_PER_CALL} batches of --batch-size "
                     f"({args.batch_size * STEPS_PER_CALL}), got {args.num_samples}")
    report = measure(args.num_samples, args.batch_size, args.epochs, args.repeats)
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                         "load_average_at_end": list(os.getloadavg())}
    report["command"] = "python -m benchmarks.tf_step_floor " + " ".join(argv if argv is not None else sys.argv[1:])
    print("| depth | samples/s | over the PyTorch loop |")
    print("|---|---|---|")
    print(f"| PyTorch loop | {report['samples_per_s']['PyTorch loop']:,.0f} | 1.00× |")
    for depth in (*DEPTHS, REFERENCE):
        print(f"| {depth} | {report['samples_per_s'][depth]:,.0f} | {report['ratio_over_torch'][depth]:.2f}× |")
    print(report["verdict"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
