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

`--case mmoe` asks the same of issue 23's MMoE target (≥ 3× DeepCTR-Torch's `MMOE`, trained by its own `fit` in a
worker process, as `train_speed` runs it): 3 experts 100 → 256 → 128, per-task gates 100 → 64 → 3 (softmax) and
towers 128 → 64 → 1, binary cross-entropy on logits, Adam; the stock Keras model and the raw graph each compute the
experts as separate Dense layers and mix them with one einsum. The raw depth is timed twice, as a TensorFlow graph and
compiled by XLA (the builders compile models with experts with XLA on TensorFlow), and the in-graph depths run under
XLA as the builder's own `fit` does:

    python -m benchmarks.tf_step_floor --case mmoe [--out benchmarks/results/tf_step_floor_mmoe.json]
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
TARGETS = {"hard_sharing": TARGET, "mmoe": 3.0}  # issue 23: MMoE ≥ 3× DeepCTR-Torch's MMOE
STEPS_PER_CALL = 32  # the builders' steps_per_execution
DEPTHS = ("raw TensorFlow", "Keras train_step", "mtmm train_step", "mtmm fit")
RAW_XLA = "raw TensorFlow, XLA"
CASE_DEPTHS = {"hard_sharing": DEPTHS, "mmoe": (DEPTHS[0], RAW_XLA, *DEPTHS[1:])}
REFERENCE = "stock Keras fit"


def verdict(ratios: dict[str, float], target: float = TARGET) -> str:
    """The shallowest depth that already misses the target: the layer that must change to reach it. The raw depth
    counts at its best (graph or XLA), since either way of writing it by hand is open to the library."""
    raw = max(ratios.get(name, float("-inf")) for name in (DEPTHS[0], RAW_XLA))
    for depth in DEPTHS:
        value = raw if depth == DEPTHS[0] else ratios.get(depth, float("inf"))
        if value < target:
            return f"{target}× is lost at '{depth}' ({value:.2f}×); every depth before it reaches it"
    return f"every depth reaches {target}×"


def _fused_adam(grads: Any, params: list, slots: list, iterations: Any) -> None:
    """One fused `ResourceApplyAdam` per weight (lr 1e-3, Keras's Adam defaults), as a hand-written step does it."""
    import tensorflow as tf

    iterations.assign_add(1.0)
    b1, b2 = tf.constant(0.9), tf.constant(0.999)
    b1_power, b2_power = tf.pow(b1, iterations), tf.pow(b2, iterations)
    for p, g, (m, v) in zip(params, grads, slots):
        tf.raw_ops.ResourceApplyAdam(var=p.handle, m=m.handle, v=v.handle, beta1_power=b1_power,
                                     beta2_power=b2_power, lr=tf.constant(1e-3), beta1=b1, beta2=b2,
                                     epsilon=tf.constant(1e-7), grad=g)


def _build_raw(x: np.ndarray, targets: np.ndarray, batch_size: int) -> Callable[[], None]:
    """Hand-written TF: 100 → 128 → 64 → 4 (the three heads side by side), Σ_t MSE_t, fused Adam per weight."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    widths = [(x.shape[1], 128), (128, 64), (64, targets.shape[1])]
    kernels = [tf.Variable(_glorot(rng, size)) for size in widths]
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
        _fused_adam(tape.gradient(loss, params), params, slots, iterations)

    return _in_graph_epoch(step, x, targets, batch_size)


def _glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.uniform(-1, 1, shape) * np.sqrt(6 / sum(shape[-2:]))).astype(np.float32)


def _build_raw_mmoe(x: np.ndarray, labels: np.ndarray, batch_size: int, jit_compile: bool) -> Callable[[], None]:
    """Hand-written TF MMoE, written as the stock Keras model computes it (each expert its own two matmuls, the
    experts stacked [batch, E, 128] and mixed by each task's softmax gate with one einsum), per-task towers, Σ_t
    binary cross-entropy on logits, fused Adam per weight."""
    import tensorflow as tf

    from benchmarks.train_speed import MMOE

    rng = np.random.default_rng(0)
    experts, (first, second) = MMOE["num_experts"], MMOE["expert_units"]
    (gate,), (tower,), tasks = MMOE["gate_units"], MMOE["tower_units"], len(MMOE["tasks"])
    widths = {**{f"expert_{e}_{k}": size for e in range(experts) for k, size in ((1, (x.shape[1], first)),
                                                                                 (2, (first, second)))},
              **{f"{part}_{t}_{k}": size for t in range(tasks)
                 for part, k, size in (("gate", 1, (x.shape[1], gate)), ("gate", 2, (gate, experts)),
                                       ("tower", 1, (second, tower)), ("tower", 2, (tower, 1)))}}
    w = {name: tf.Variable(_glorot(rng, size)) for name, size in widths.items()}
    b = {name: tf.Variable(np.zeros(size[1], np.float32)) for name, size in widths.items()}
    params = [*w.values(), *b.values()]
    slots = [(tf.Variable(tf.zeros_like(p)), tf.Variable(tf.zeros_like(p))) for p in params]
    iterations = tf.Variable(0.0)

    def dense(h, name, relu=True):
        h = tf.nn.bias_add(tf.matmul(h, w[name]), b[name])
        return tf.nn.relu(h) if relu else h

    def step(xb, yb):
        with tf.GradientTape() as tape:
            stacked = tf.stack([dense(dense(xb, f"expert_{e}_1"), f"expert_{e}_2") for e in range(experts)], axis=1)
            loss = 0.0
            for t in range(tasks):
                g = tf.nn.softmax(dense(dense(xb, f"gate_{t}_1"), f"gate_{t}_2", relu=False))  # [batch, E]
                logits = dense(dense(tf.einsum("be,beu->bu", g, stacked), f"tower_{t}_1"), f"tower_{t}_2", relu=False)
                loss += tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=yb[:, t:t + 1], logits=logits))
        _fused_adam(tape.gradient(loss, params), params, slots, iterations)

    return _in_graph_epoch(step, x, labels, batch_size, jit_compile=jit_compile)


def _stock_mmoe(input_dim: int) -> Any:
    """The same MMoE as a stock functional `keras.Model` (Dense layers per expert, gate and tower; binary
    cross-entropy on logits per output), compiled as the builder compiles it on TensorFlow (XLA, 32 steps)."""
    import keras

    from benchmarks.train_speed import MMOE

    features = keras.Input((input_dim,))
    experts = [keras.layers.Dense(MMOE["expert_units"][1], activation="relu")(
        keras.layers.Dense(MMOE["expert_units"][0], activation="relu")(features)) for _ in range(MMOE["num_experts"])]
    stacked = keras.ops.stack(experts, axis=1)  # [batch, E, 128]
    outputs = {}
    for task in MMOE["tasks"]:
        gate = keras.layers.Dense(MMOE["num_experts"], activation="softmax")(
            keras.layers.Dense(MMOE["gate_units"][0], activation="relu")(features))
        mixed = keras.ops.einsum("be,beu->bu", gate, stacked)
        tower = keras.layers.Dense(MMOE["tower_units"][0], activation="relu")(mixed)
        outputs[task] = keras.layers.Dense(1, name=task)(tower)
    model = keras.Model(features, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dict.fromkeys(MMOE["tasks"],
                  keras.losses.BinaryCrossentropy(from_logits=True)), steps_per_execution=STEPS_PER_CALL,
                  jit_compile=True)
    return model


def _in_graph_epoch(step: Callable[[Any, Any], Any], x: np.ndarray, y: Any, batch_size: int,
                    jit_compile: bool = False) -> Callable[[], None]:
    """One epoch of `step(inputs, labels)`, 32 steps per `tf.function` call (compiled by XLA with `jit_compile`),
    on batches sliced from in-graph constants (no tf.data); `y` is an array or a dict of arrays. Only whole chunks
    of 32 steps run."""
    import tensorflow as tf

    steps = x.shape[0] // batch_size

    def batched(array: np.ndarray) -> Any:
        return tf.constant(array[:steps * batch_size].reshape(steps, batch_size, -1))

    inputs, labels = batched(x), tf.nest.map_structure(batched, y)

    @tf.function(jit_compile=jit_compile)
    def chunk(start):
        for i in tf.range(STEPS_PER_CALL):
            row = start + i
            step(inputs[row], tf.nest.map_structure(lambda t, r=row: t[r], labels))

    def epoch() -> None:
        for start in range(0, steps - STEPS_PER_CALL + 1, STEPS_PER_CALL):
            chunk(tf.constant(start))

    return epoch


def measure(num_samples: int, batch_size: int, epochs: int, repeats: int, case: str = "hard_sharing") -> dict[str, Any]:
    """Samples/s of every depth of `case` and of its PyTorch side (interleaved, medians of `repeats`), their ratios
    and the verdict."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tempfile

    import keras
    import tensorflow as tf

    import mtmm_keras as mk
    from benchmarks.train_speed import INPUT_DIM, MMOE, TASK_UNITS, Worker, build_mtmm, make_data, steady_state_fits

    steady_state_fits()  # the "mtmm fit" depth is a long training's fit

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("benchmarks.tf_step_floor measures the TensorFlow backend; Keras was already started on "
                           f"{keras.backend.backend()!r} (unset KERAS_BACKEND or set it to tensorflow)")
    x, y = make_data(case, num_samples)
    task_names = tuple(MMOE["tasks"]) if case == "mmoe" else tuple(TASK_UNITS)
    stacked = np.concatenate([y[name] for name in task_names], axis=1)

    keras.utils.set_random_seed(0)
    if case == "mmoe":
        stock = _stock_mmoe(INPUT_DIM)
        raw_epochs = {DEPTHS[0]: _build_raw_mmoe(x, stacked, batch_size, jit_compile=False),
                      RAW_XLA: _build_raw_mmoe(x, stacked, batch_size, jit_compile=True)}
    else:
        features = keras.Input((INPUT_DIM,))
        h = keras.layers.Dense(64, activation="relu")(keras.layers.Dense(128, activation="relu")(features))
        stock = keras.Model(features, {name: keras.layers.Dense(units, name=name)(h) for name, units in TASK_UNITS.items()})
        stock.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dict.fromkeys(TASK_UNITS, "mse"),
                      steps_per_execution=STEPS_PER_CALL)
        raw_epochs = {DEPTHS[0]: _build_raw(x, stacked, batch_size)}
    mtmm = build_mtmm(mk, case, {})
    # the in-graph Keras and mtmm steps compiled as each model's own `fit` compiles them
    stock_epoch = _in_graph_epoch(lambda xb, yb: stock.train_step((xb, yb)), x, y, batch_size, bool(stock.jit_compile))
    mtmm_epoch = _in_graph_epoch(lambda xb, yb: mtmm.train_step((xb, yb)), x, y, batch_size, bool(mtmm.jit_compile))
    sides: dict[str, Callable[[], None]] = {
        **{name: (lambda run=run: [run() for _ in range(epochs)]) for name, run in raw_epochs.items()},
        "Keras train_step": lambda: [stock_epoch() for _ in range(epochs)],
        "mtmm train_step": lambda: [mtmm_epoch() for _ in range(epochs)],
        "mtmm fit": lambda: mtmm.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0),
        REFERENCE: lambda: stock.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0),
    }
    for run in sides.values():  # trace, compile and build pipelines outside the timing
        run()
    reference = "DeepCTR-Torch MMOE" if case == "mmoe" else "PyTorch loop"
    seconds: dict[str, list[float]] = {name: [] for name in (reference, *sides)}
    with tempfile.TemporaryDirectory() as log_dir:
        torch_worker = Worker("torch", "cpu", dict(os.environ), log_dir)
        try:
            torch_info = torch_worker.call("info")
            torch_worker.call("prepare", case=case, num_samples=num_samples, batch_size=batch_size, epochs=epochs)
            for _ in range(repeats):
                seconds[reference].append(torch_worker.call("time", case=case)["seconds"])
                for name, run in sides.items():
                    start = time.perf_counter()
                    run()
                    seconds[name].append(time.perf_counter() - start)
        finally:
            torch_worker.close()
    samples = {name: num_samples * epochs for name in seconds}  # the loops and fit train every row
    # the in-graph loops run whole chunks of 32 steps only
    for name in (*raw_epochs, "Keras train_step", "mtmm train_step"):
        samples[name] = (num_samples // batch_size // STEPS_PER_CALL) * STEPS_PER_CALL * batch_size * epochs
    rates = {name: samples[name] / statistics.median(values) for name, values in seconds.items()}
    ratios = {name: rates[name] / rates[reference] for name in (*CASE_DEPTHS[case], REFERENCE)}
    return {"case": case, "reference": reference, "tensorflow": tf.__version__, "keras": keras.__version__,
            "torch": torch_info, "samples_per_s": rates, "ratio_over_torch": ratios, "seconds": seconds,
            "target": TARGETS[case], "verdict": verdict(ratios, TARGETS[case])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tf_step_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="hard_sharing", choices=sorted(TARGETS),
                        help="hard_sharing (against the PyTorch loop, target 2×) or mmoe (against DeepCTR-Torch's "
                             "MMOE, target 3×)")
    parser.add_argument("--out", default=None, help="where to write the JSON (default "
                        "benchmarks/results/tf_step_floor.json, tf_step_floor_mmoe.json for --case mmoe)")
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
    if args.case == "mmoe":
        from benchmarks.train_speed import _deepctr_available

        if not _deepctr_available():
            parser.error("--case mmoe needs DeepCTR-Torch (pip install deepctr-torch==0.3.0, in the bench extra)")
    report = measure(args.num_samples, args.batch_size, args.epochs, args.repeats, args.case)
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                         "load_average_at_end": list(os.getloadavg())}
    report["command"] = "python -m benchmarks.tf_step_floor " + " ".join(argv if argv is not None else sys.argv[1:])
    reference = report["reference"]
    print(f"| depth | samples/s | over the {reference} |")
    print("|---|---|---|")
    print(f"| {reference} | {report['samples_per_s'][reference]:,.0f} | 1.00× |")
    for depth in (*CASE_DEPTHS[args.case], REFERENCE):
        print(f"| {depth} | {report['samples_per_s'][depth]:,.0f} | {report['ratio_over_torch'][depth]:.2f}× |")
    print(report["verdict"])
    out = Path(args.out or f"benchmarks/results/tf_step_floor{'_mmoe' if args.case == 'mmoe' else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
