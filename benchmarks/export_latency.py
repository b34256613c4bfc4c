"""Latency and size of every export artifact against Keras, measured side by side in one run.

Run: `.venv/bin/python -m benchmarks.export_latency [--repeats 200] [--out benchmarks/results/export_latency.json]`

For each builder kind it exports all formats and TFLite flavours (verified), then times batch-1 and
batch-64 inference of each artifact in its runtime, of `model.predict` and of a direct Keras call,
interleaved round by round, and prints medians with the artifact sizes and int8/float32 size ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

FLAVOURS = ("float32", "float16", "dynamic", "int8")


def _models():
    import mtmm_keras as mk

    x, y = mk.data.reference_multitask(2048)
    views = mk.data.paired_modalities(2048)
    hard = mk.builders.hard_sharing((100,), [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)])
    hard.fit(x, y, epochs=2, batch_size=64, verbose=0)
    soft = mk.builders.soft_sharing((100,), [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)])
    soft.fit(x, y, epochs=2, batch_size=64, verbose=0)
    fx = {"image": views["image"], "tabular": views["tabular"]}
    fusion = mk.builders.attention_fusion(
        {"image": mk.encoders.image((8, 8, 1)), "tabular": mk.encoders.tabular(16)},
        [mk.Task("label", 8, loss="sparse_categorical_crossentropy")],
    )
    fusion.fit(fx, {"label": views["label"]}, epochs=2, batch_size=64, verbose=0)
    jx = {"text": views["tokens"], "image": views["image"]}
    joint = mk.builders.joint_embedding({"text": mk.encoders.text(64, 12), "image": mk.encoders.image((8, 8, 1))})
    joint.fit(jx, views["label"], epochs=2, batch_size=64, verbose=0)
    return [("hard_sharing", hard, {"features": x}), ("soft_sharing", soft, {"features": x}),
            ("attention_fusion", fusion, fx), ("joint_embedding", joint, jx)]


def _time_round(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def bench_model(name, model, data, rounds: int, calls: int, workdir: str) -> dict:
    import tensorflow as tf

    import mtmm_keras as mk
    from mtmm_keras.export import runtimes

    report = mk.export.export_model(model, os.path.join(workdir, name), quantize=FLAVOURS,
                                    representative_data={k: v[:256] for k, v in data.items()}, verbose=False)
    batches = {b: {k: v[:b] for k, v in data.items()} for b in (1, 64)}
    # Keras gets its inputs in the structure the model declares (a bare array for one input)
    keras_batches = {b: (next(iter(x.values())) if len(model.inputs) == 1 else x) for b, x in batches.items()}
    compiled = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    keras_candidates = {
        "keras model.predict": lambda b: model.predict(keras_batches[b], verbose=0),
        "keras direct call": lambda b: model(keras_batches[b], training=False),
        "keras tf.function": lambda b: compiled(keras_batches[b]),
    }
    candidates = {label: (lambda fn: lambda batch: fn(len(next(iter(batch.values())))))(fn) for label, fn in keras_candidates.items()}
    sizes = {}
    onnx_names = {}
    for artifact in report.artifacts:
        label = f"{artifact.format} {artifact.quantization}"
        sizes[label] = artifact.size_bytes
        if artifact.format == "saved_model":
            run = runtimes.saved_model_runner(artifact.path)
        elif artifact.format == "tflite":
            run = runtimes.tflite_runner(artifact.path)
        else:
            onnx_names = {o.get("onnx_name", o["name"]): o["name"] for o in artifact.outputs}
            run = runtimes.onnx_runner(artifact.path, onnx_names)
        candidates[label] = run
    timings = {label: {1: [], 64: []} for label in candidates}
    for fn in candidates.values():  # warm-up (traces, allocations)
        for batch in batches.values():
            fn(batch)
    for _ in range(rounds):  # interleaved: every candidate once per round
        for label, fn in candidates.items():
            for b, batch in batches.items():
                timings[label][b].append(_time_round(lambda: fn(batch), calls if b == 1 else max(calls // 8, 2)))
    rows = {}
    for label, per_batch in timings.items():
        rows[label] = {
            "batch1_ms": float(np.median(per_batch[1])),
            "batch64_ms": float(np.median(per_batch[64])),
            "batch1_min_max_ms": [float(np.min(per_batch[1])), float(np.max(per_batch[1]))],
            "size_bytes": sizes.get(label),
        }
    return {"model": name, "params": model.count_params(), "verified": report.passed, "rows": rows,
            "int8_over_float32_size": sizes["tflite int8"] / sizes["tflite float32"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median over rounds)")
    parser.add_argument("--calls", type=int, default=200, help="batch-1 calls per round and candidate")
    parser.add_argument("--out", default="benchmarks/results/export_latency.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, model, data in _models():
            print(f"\n== {name}: exporting and timing ({args.rounds} interleaved rounds)", flush=True)
            result = bench_model(name, model, data, args.rounds, args.calls, workdir)
            results.append(result)
            keras_b1 = result["rows"]["keras direct call"]["batch1_ms"]
            print(f"{'runtime':<22}{'batch-1 ms':>12}{'(min–max)':>20}{'batch-64 ms':>13}{'size KiB':>10}{'b1 speed-up vs Keras call':>28}")
            for label, row in result["rows"].items():
                lo, hi = row["batch1_min_max_ms"]
                size = f"{row['size_bytes'] / 1024:.0f}" if row["size_bytes"] else "-"
                print(f"{label:<22}{row['batch1_ms']:>12.4f}{f'{lo:.4f}–{hi:.4f}':>20}{row['batch64_ms']:>13.3f}{size:>10}{keras_b1 / row['batch1_ms']:>27.1f}×")
            print(f"int8 / float32 TFLite size: {result['int8_over_float32_size']:.2f}   all artifacts verified: {result['verified']}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": {"cpus": os.cpu_count()}, "results": results}, f, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
