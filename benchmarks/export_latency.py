"""Latency and size of every export artifact against Keras, measured side by side in one run.

Run: `.venv/bin/python -m benchmarks.export_latency [--repeats 200] [--out benchmarks/results/export_latency.json]`

For each builder kind it exports all formats and TFLite flavours (verified), then times batch-1 and
batch-64 inference of each artifact in its runtime, of `model.predict` and of a direct Keras call,
interleaved round by round, and prints medians with the artifact sizes and int8/float32 size ratios.

Per zoo entry and deployment target (issue 19): `--zoo [ENTRY,...]` exports every entry for `android-gpu`, `ios`
and `openvino` (`mtmm export zoo:NAME --target T`, each verified in its runtime), and records per entry and target
the ops on the accelerator / total (LiteRT's GPU accelerator for android-gpu, on lavapipe where no GPU is at hand;
ONNX Runtime's mobile usability checker per NNAPI / CoreML EP for ios), the verdicts, and batch-1 latency per
runtime: LiteRT CPU with 1 thread (the android-gpu float32 file), ONNX Runtime CPU (the ios ONNX), OpenVINO CPU
(the IR) and Keras `model(x)` for scale, with the machine. Writes `benchmarks/results/export_latency_zoo.json` and
`.md` (the table benchmarks/README.md shows):

    nice -n 10 .venv/bin/python -m benchmarks.export_latency --zoo [--calls 30 --rounds 3]

Lavapipe (software Vulkan on the CPU) proves the GPU accelerator's op coverage and numerics, never its speed: no
GPU latency is reported.
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


ZOO_TARGETS = ("android-gpu", "ios", "openvino")
EPS = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")


def _machine() -> dict:
    import platform

    import keras

    info = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "platform": platform.platform(), "python": platform.python_version(), "keras": keras.__version__,
            "load_average_at_start": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    for module in ("tensorflow", "ai_edge_litert", "onnxruntime", "openvino"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    return info


def _export(entry: str, target: str, out: str) -> dict:
    """`mtmm export zoo:ENTRY --target TARGET` into `out` (in this process); the manifest, or the failure."""
    import contextlib
    import io

    from mtmm_keras.cli import main as cli

    buffer = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = cli(["export", f"zoo:{entry}", "--out", out, "--target", target])
    seconds = time.perf_counter() - start
    if code != 0 or not os.path.isfile(os.path.join(out, "manifest.json")):
        return {"exit_code": code, "output": buffer.getvalue()[-1500:], "export_s": seconds}
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["export_s"] = seconds
    return manifest


def _tflite_ops(path: str) -> int:
    from ai_edge_litert.interpreter import Interpreter

    return len(Interpreter(model_path=path)._get_ops_details())


def _gpu_rows(manifest: dict, out: str) -> list[dict]:
    rows = []
    for artifact in manifest.get("artifacts", []):
        gpu = (artifact.get("deployment") or {}).get("gpu_delegate") or {}
        total = _tflite_ops(os.path.join(out, artifact["path"]))
        if not gpu.get("ran"):
            on = None
        elif gpu.get("fully_accelerated"):
            on = total
        else:
            on = f"partial ({'; '.join(gpu.get('unsupported') or []) or gpu.get('reason', '')})"
        rows.append({"file": f"tflite {artifact['quantization']}", "ops_on_accelerator": on, "ops_total": total,
                     "fully_accelerated": gpu.get("fully_accelerated"), "adapter": gpu.get("adapter"),
                     "max_abs_diff_vs_cpu": gpu.get("max_abs_diff"), "verified": not artifact.get("error"),
                     "not_checked": None if gpu.get("ran") else gpu.get("reason")})
    return rows


def _ios_rows(manifest: dict) -> dict:
    onnx = next((a for a in manifest.get("artifacts", []) if a["format"] == "onnx"), None)
    if onnx is None:
        return {}
    deployment = onnx.get("deployment") or {}
    return {"verdicts": deployment.get("mobile_usability"), "rewrites": deployment.get("mobile_rewrites"),
            "verified": manifest.get("passed")}


def _zoo_inputs(entry: str, model) -> dict:
    """One test row per input (the fused entries' modality mask: every modality present)."""
    from mtmm_keras.export import _model_io, cli_export

    _, validation = cli_export.zoo_data(f"zoo:{entry}", model)
    x = {k: np.asarray(v[:1]) for k, v in validation[0].items()}
    infos = {i.name: i for i in _model_io.input_infos(model)}
    if _model_io.MODALITY_MASK in infos and _model_io.MODALITY_MASK not in x:
        x[_model_io.MODALITY_MASK] = np.ones((1, infos[_model_io.MODALITY_MASK].shape[-1]), "float32")
    return x


def _latencies(entry: str, manifests: dict, dirs: dict, rounds: int, calls: int) -> dict:
    """Batch-1 median ms per runtime, interleaved round by round: LiteRT CPU 1 thread, ONNX Runtime CPU, OpenVINO
    CPU, Keras model(x)."""
    import keras
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    import mtmm_keras as mk
    from mtmm_keras.export import _model_io

    model = mk.zoo.load(entry)
    x = _zoo_inputs(entry, model)
    view = _model_io.export_view(model)
    candidates = {"keras model(x)": lambda: _model_io.call_with_named_inputs(view, x)}
    gpu = manifests.get("android-gpu", {})
    float32 = next((a for a in gpu.get("artifacts", []) if a["quantization"] == "float32"), None)
    if float32:
        runner = Interpreter(model_path=os.path.join(dirs["android-gpu"], float32["path"]),
                             num_threads=1).get_signature_runner("serving_default")
        candidates["LiteRT CPU 1 thread"] = lambda: runner(**x)
    ios = next((a for a in manifests.get("ios", {}).get("artifacts", []) if a["format"] == "onnx"), None)
    if ios:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(os.path.join(dirs["ios"], ios["path"]), options,
                                       providers=["CPUExecutionProvider"])
        feeds = {i.name: x[i.name] for i in session.get_inputs()}
        candidates["ONNX Runtime CPU"] = lambda: session.run(None, feeds)
    openvino = next((a for a in manifests.get("openvino", {}).get("artifacts", []) if a["format"] == "openvino"), None)
    if openvino:
        import openvino as ov

        compiled = ov.Core().compile_model(os.path.join(dirs["openvino"], openvino["path"], "model.xml"), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})  # as the openvino target verifies
        request = compiled.create_infer_request()  # one request, reused (compiled(x) pays a set-up per call)
        candidates["OpenVINO CPU"] = lambda: request.infer(x)
    for fn in candidates.values():  # warm-up (traces, allocations)
        fn()
        fn()
    timings = {label: [] for label in candidates}
    for _ in range(rounds):
        for label, fn in candidates.items():
            timings[label].append(_time_round(fn, calls))
    keras.backend.clear_session()
    return {label: float(np.median(t)) for label, t in timings.items()}


def bench_zoo(entries: list[str], rounds: int, calls: int, workdir: str, save=None) -> list[dict]:
    """Every entry in turn; an entry that fails (e.g. a preset being retrained) is recorded with its error and the
    run goes on; `save(results)` after each entry keeps what is done."""
    results = []
    for entry in entries:
        print(f"\n== {entry}", flush=True)
        try:
            results.append(_bench_entry(entry, rounds, calls, workdir))
        except Exception as err:  # noqa: BLE001  (one broken entry must not lose the others' numbers)
            print(f"  FAILED: {type(err).__name__}: {str(err)[:300]}", flush=True)
            results.append({"entry": entry, "error": f"{type(err).__name__}: {str(err)[:500]}"})
        if save is not None:
            save(results)
    return results


def _bench_entry(entry: str, rounds: int, calls: int, workdir: str) -> dict:
    """One entry: its exports for every target, their coverage and verdicts, and the batch-1 latencies."""
    manifests, dirs = {}, {}
    for target in ZOO_TARGETS:
        dirs[target] = os.path.join(workdir, entry, target)
        manifests[target] = _export(entry, target, dirs[target])
        status = "verified" if manifests[target].get("passed") else f"FAILED {manifests[target].get('output', '')[-300:]}"
        print(f"  {target}: {status} ({manifests[target]['export_s']:.0f} s)", flush=True)
    result = {"entry": entry, "gpu": _gpu_rows(manifests["android-gpu"], dirs["android-gpu"]),
              "ios": _ios_rows(manifests["ios"]),
              "openvino": {"verified": manifests["openvino"].get("passed")},
              "export_s": {t: round(m["export_s"], 1) for t, m in manifests.items()}}
    failed = [t for t, m in manifests.items() if not m.get("passed")]
    if failed:
        result["error"] = f"export failed for {', '.join(failed)}: " + manifests[failed[0]].get("output", "")[-300:]
        return result
    result["latency_ms_batch1"] = _latencies(entry, manifests, dirs, rounds, calls)
    print("  " + json.dumps({k: v for k, v in result.items() if k != "entry"})[:1200], flush=True)
    return result


def zoo_table(report: dict) -> str:
    """The Markdown table benchmarks/README.md shows (written beside the JSON)."""
    header = ("| entry | android-gpu: ops on GPU / total (f32, f16) | ios: NNAPI / CoreML NN / CoreML MLProgram "
              "(nodes) | openvino | LiteRT CPU 1 thr | ONNX Runtime | OpenVINO | Keras `model(x)` |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if "latency_ms_batch1" not in r:
            lines.append(f"| {r['entry']} | not measured: {r.get('error', '?')[:160]} | | | | | | |")
            continue
        gpu = ", ".join(f"{g['ops_on_accelerator']}/{g['ops_total']}" for g in r["gpu"]) or "export failed"
        verdicts = (r["ios"] or {}).get("verdicts") or {}
        ios = " / ".join(f"{verdicts[ep]['verdict']} ({verdicts[ep]['nodes_supported']})" for ep in EPS
                         if ep in verdicts) or "export failed"
        lat = r["latency_ms_batch1"]
        cells = " | ".join(f"{lat[k]:.3f}" if k in lat else "-"
                           for k in ("LiteRT CPU 1 thread", "ONNX Runtime CPU", "OpenVINO CPU", "keras model(x)"))
        lines.append(f"| {r['entry']} | {gpu} | {ios} | {'verified' if r['openvino']['verified'] else 'FAILED'} | "
                     f"{cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median over rounds)")
    parser.add_argument("--calls", type=int, default=200, help="batch-1 calls per round and candidate")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/export_latency.json, "
                        "or export_latency_zoo.json with --zoo)")
    parser.add_argument("--zoo", nargs="?", const="all", default=None,
                        help="per zoo entry and deployment target (android-gpu, ios, openvino); optionally a "
                        "comma-separated list of entries")
    parser.add_argument("--merge", action="store_true", help="with --zoo: keep the other entries already in --out")
    args = parser.parse_args(argv)
    for flag in ("rounds", "calls"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    if args.zoo is not None:
        from mtmm_keras.zoo import registry

        known = registry.list()
        entries = known if args.zoo == "all" else [e for e in args.zoo.split(",") if e]
        unknown = [e for e in entries if e not in known]
        if unknown or not entries:
            parser.error(f"--zoo {unknown or entries}: not zoo entries; choose among {', '.join(known)}")
        out = args.out or "benchmarks/results/export_latency_zoo.json"
        earlier = []
        if args.merge and os.path.isfile(out):  # keep the other entries of an earlier run (each with its machine)
            with open(out) as f:
                earlier = json.load(f)["results"]
        machine = _machine()
        date = time.strftime("%Y-%m-%d", time.gmtime())

        def save(results):
            for r in results:
                r.setdefault("machine", machine)
                r.setdefault("date", date)
            fresh = {r["entry"]: r for r in results}
            merged = [fresh.pop(r["entry"], r) for r in earlier] + list(fresh.values())
            order = {name: i for i, name in enumerate(known)}
            merged.sort(key=lambda r: order.get(r["entry"], len(order)))
            report = {"machine": machine, "date": date, "rounds": args.rounds, "calls": args.calls,
                      "note": "GPU accelerator checks ran on Mesa's lavapipe (software Vulkan): op coverage and "
                      "numerics, never speed; each result records its own machine and date", "results": merged}
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            with open(out, "w") as f:
                json.dump(report, f, indent=1)
            with open(os.path.splitext(out)[0] + ".md", "w") as f:
                f.write(zoo_table(report))
            return report

        with tempfile.TemporaryDirectory() as workdir:
            results = bench_zoo(entries, args.rounds, args.calls, workdir, save)
        print(zoo_table(save(results)))
        print(f"wrote {out} and {os.path.splitext(out)[0]}.md")
        return 0
    args.out = args.out or "benchmarks/results/export_latency.json"
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
