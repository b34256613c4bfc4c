"""Cost of loss balancing / gradient aggregation per training step, against static weighting.

Run: `.venv/bin/python -m benchmarks.weighting_cost [--quick] [--out PATH]` (any Keras backend;
`KERAS_BACKEND=jax` for JAX). The model is the seed's hard-sharing MLP (input 100 → Dense 128 →
Dense 64 → heads [1, 1, 2], MSE, Adam) trained with `model.fit` on in-memory arrays at the builders'
default compile settings. For each method (plus `keras_compiled_loss`: the same model with no weighting
set, i.e. Keras's own compiled multi-output loss, the "before" of the per-task path) a warm-up `fit` compiles the step, then timed `fit`s run interleaved
across methods; the report gives the median (and fastest) seconds per step and their ratios to static. The issue's
bound: a gradient-level step costs at most (T + 1)× a static step for T tasks (here T = 3: 4×).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

TASK_UNITS = {"a": 1, "b": 1, "c": 2}
INPUT_DIM = 100
SETTINGS = {"full": {"num_samples": 16384, "batch_size": 256, "epochs": 4, "repeats": 5},
            "quick": {"num_samples": 4096, "batch_size": 256, "epochs": 2, "repeats": 3}}


def _data(num_samples: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_samples, INPUT_DIM)).astype("float32")
    return x, {name: rng.normal(size=(num_samples, units)).astype("float32") for name, units in TASK_UNITS.items()}


def _build(method: str) -> Any:
    import keras

    import mtmm_keras as mk

    keras.utils.set_random_seed(0)
    tasks = [mk.Task(name, units) for name, units in TASK_UNITS.items()]
    if method == "keras_compiled_loss":
        # the same MultiTaskModel (same fast array fit) with no weighting set: Keras's own compiled loss
        model = mk.builders.hard_sharing((INPUT_DIM,), tasks, compile=False)
        model.compile(optimizer="adam", loss={t.name: t.keras_loss() for t in tasks},
                      loss_weights={t.name: t.weight for t in tasks}, steps_per_execution=32)
        return model
    return mk.builders.hard_sharing((INPUT_DIM,), tasks, weighting=method)


def run(methods: list[str], settings: dict[str, int]) -> dict[str, Any]:
    import keras

    x, y = _data(settings["num_samples"])
    steps = settings["num_samples"] // settings["batch_size"] * settings["epochs"]
    models = {}
    for method in methods:
        models[method] = _build(method)
        models[method].fit(x, y, batch_size=settings["batch_size"], epochs=1, verbose=0)  # compile + warm up
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(settings["repeats"]):
        for method in methods:
            start = time.perf_counter()
            models[method].fit(x, y, batch_size=settings["batch_size"], epochs=settings["epochs"], verbose=0)
            times[method].append((time.perf_counter() - start) / steps)
    static, static_min = statistics.median(times["static"]), min(times["static"])
    results = {
        method: {"median_s_per_step": statistics.median(t), "min_s_per_step": min(t), "max_s_per_step": max(t),
                 "ratio_to_static": statistics.median(t) / static,
                 # the fastest runs: on a shared machine the least disturbed estimate
                 "min_ratio_to_static": min(t) / static_min}
        for method, t in times.items()
    }
    return {
        "backend": keras.backend.backend(), "keras": keras.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "settings": settings, "tasks": len(TASK_UNITS),
        "bound_gradient_level_ratio": len(TASK_UNITS) + 1, "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    import mtmm_keras as mk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (a smoke run)")
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all registered)")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    methods = args.methods.split(",") if args.methods else ["keras_compiled_loss", *mk.weighting.names()]
    if "static" not in methods:
        methods.insert(0, "static")
    report = run(methods, SETTINGS["quick" if args.quick else "full"])
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
