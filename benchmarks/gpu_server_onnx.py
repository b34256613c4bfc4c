"""Issue 19, item 5: the `gpu-server` ONNX files in ONNX Runtime's TensorRT and CUDA execution providers, on a CUDA
machine that may have JAX and PyTorch but no TensorFlow and no package registry.

Two steps, two machines:

1. Here (TensorFlow, the zoo): export each entry for `gpu-server` and write the bundle the GPU machine needs —
   the float32 and float16 ONNX files, their manifests, and `reference.npz` (256 real test rows per input and the
   Keras model's outputs on them):

       .venv/bin/python benchmarks/gpu_server_onnx.py prepare --out gpu_bundle [--entries penguins_hard,movies_mmoe]

   and fill a wheelhouse with what the GPU machine lacks (Python and platform of the GPU machine):

       .venv/bin/python -m pip download --only-binary=:all: --python-version 3.11 \\
           --platform manylinux_2_28_x86_64 -d gpu_bundle/wheelhouse onnxruntime-gpu numpy
       # TensorRT EP only: its libraries too (large), e.g. tensorrt-cu12-libs; CUDA EP: cuDNN 9 / cuBLAS 12 come
       # with PyTorch's nvidia-* wheels (onnxruntime.preload_dlls() loads them) or add nvidia-cudnn-cu12 here

2. There (one command; this file needs only numpy and onnxruntime, no TensorFlow, no mtmm_keras):

       python gpu_bundle/gpu_server_onnx.py run --bundle gpu_bundle [--wheelhouse gpu_bundle/wheelhouse] \\
           [--out gpu_server_onnx.json] [--repeats 50]

   (`prepare` copies this script into the bundle.) Without an importable onnxruntime, `run` installs it from the
   wheelhouse into `BUNDLE/.pydeps` (`pip install --no-index --find-links`), never from a registry.

For every entry, ONNX file (float32, float16) and provider (TensorRT, CUDA, CPU): whether the provider is in this
onnxruntime build and whether the session really runs on it (ONNX Runtime falls back to the CPU silently when CUDA
or TensorRT libraries are missing: the JSON says so), parity with the Keras reference outputs and with the CPU
EP on the same file (max |difference|, and pass/fail against the export's tolerances: 1e-4 + 1e-4·scale for
float32, 1e-2 + 1e-2·scale for float16), and median batch-1 and batch-256 latency. TensorRT gets the manifest's
min/opt/max batch profile (1/32/256) and an engine cache in `BUNDLE/.trt_cache`; the CUDA EP runs float32 with
TF32 off. Everything goes to one JSON file, with the machine (GPU name from nvidia-smi, CPU, onnxruntime
version and providers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}  # absolute, plus the same relative to the largest |reference|
BATCHES = (1, 256)
REFERENCE = "reference.npz"
DEFAULT_ENTRIES = ("penguins_hard", "multi_fashion_hard", "multi_fashion_soft", "mfeat_fusion", "mfeat_gated_fusion",
                   "movies_mmoe", "av_digits_fusion", "av_digits_clip", "av_digits_retrieval")


# --- step 1: the bundle (here, with TensorFlow) -------------------------------------------------------------------
def prepare_model(model, out: str, rows: dict[str, np.ndarray]) -> dict:
    """Export `model` for `gpu-server` into `out` (SavedModel dropped: the GPU machine has no TensorFlow) and write
    `out/reference.npz`: the input `rows` ("in/NAME") and the Keras model's outputs on them ("out/NAME")."""
    import keras
    from mtmm_keras.export import _model_io

    import mtmm_keras as mk

    report = mk.export.export_model(model, out, target="gpu-server", representative_data=rows, verbose=False)
    shutil.rmtree(os.path.join(out, "saved_model"), ignore_errors=True)
    outputs = _model_io.call_with_named_inputs(_model_io.export_view(model), rows)
    arrays = {f"in/{k}": np.asarray(v) for k, v in rows.items()}
    arrays.update({f"out/{k}": np.asarray(keras.ops.convert_to_numpy(v), np.float32) for k, v in outputs.items()})
    np.savez(os.path.join(out, REFERENCE), **arrays)
    return {"passed": report.passed, "artifacts": [a.path for a in report.artifacts]}


def prepare(out: str, entries: list[str], rows: int) -> int:
    """Step 1: each zoo entry's gpu-server export and reference rows under `out`, and this script beside them."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from mtmm_keras.export import _model_io, cli_export

    import mtmm_keras as mk

    os.makedirs(out, exist_ok=True)
    for entry in entries:
        model = mk.zoo.load(entry)
        _, validation = cli_export.zoo_data(f"zoo:{entry}", model)
        test = {k: np.asarray(v[:rows]) for k, v in validation[0].items()}
        names = [info.name for info in _model_io.input_infos(model)]
        if _model_io.MODALITY_MASK in names and _model_io.MODALITY_MASK not in test:
            width = {i.name: i.shape[-1] for i in _model_io.input_infos(model)}[_model_io.MODALITY_MASK]
            test[_model_io.MODALITY_MASK] = _model_io.presence_patterns(len(next(iter(test.values()))), width)
        target = os.path.join(out, entry)
        shutil.rmtree(target, ignore_errors=True)
        result = prepare_model(model, target, test)
        print(f"{entry}: exported for gpu-server, verified {result['passed']}, {len(next(iter(test.values())))} "
              "reference rows", flush=True)
    shutil.copy(os.path.abspath(__file__), os.path.join(out, os.path.basename(__file__)))
    print(f"bundle in {out}: carry it (and a wheelhouse) to the GPU machine, then run\n"
          f"  python {out}/{os.path.basename(__file__)} run --bundle {out} --wheelhouse {out}/wheelhouse")
    return 0


# --- step 2: the run (the GPU machine: numpy and onnxruntime only) ------------------------------------------------
def import_onnxruntime(bundle: str, wheelhouse: str | None):
    """onnxruntime as installed, else installed from `wheelhouse` into BUNDLE/.pydeps (no registry); returns
    (module, how it was found)."""
    try:
        import onnxruntime as ort

        return ort, "installed"
    except ImportError:
        if not wheelhouse:
            raise SystemExit("onnxruntime is not importable here: pass --wheelhouse DIR (onnxruntime-gpu wheels made "
                             "with `pip download`, see this file's docstring).") from None
    target = os.path.join(bundle, ".pydeps")
    package = "onnxruntime-gpu" if any(n.startswith("onnxruntime_gpu") for n in os.listdir(wheelhouse)) else "onnxruntime"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, "--target",
                    target, package], check=True)
    sys.path.insert(0, target)
    import onnxruntime as ort

    return ort, f"{package} from {wheelhouse}"


def machine(ort) -> dict:
    """The GPU (nvidia-smi), CPU, Python and onnxruntime (version, device, providers) this run used."""
    gpu = None
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, check=False)
        gpu = done.stdout.strip() or None
    return {"gpu": gpu, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": ort.__version__, "device": ort.get_device(),
            "available_providers": ort.get_available_providers(), "platform": platform.platform()}


def _provider_options(provider: str, manifest_artifact: dict, cache: str, quantization: str) -> dict:
    if provider == "CUDAExecutionProvider":
        return {"use_tf32": "0"} if quantization == "float32" else {}
    if provider == "TensorrtExecutionProvider":
        options = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache}
        shapes = (manifest_artifact.get("deployment") or {}).get("shapes") or {}
        if shapes and "min" in next(iter(shapes.values())):
            for key in ("min", "opt", "max"):
                options[f"trt_profile_{key}_shapes"] = ",".join(
                    f"{name}:{'x'.join(map(str, s[key]))}" for name, s in shapes.items())
        return options
    return {}


def _session(ort, path: str, provider: str, options: dict):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    chain = [(provider, options)] + ([("CUDAExecutionProvider", {})] if provider == "TensorrtExecutionProvider" else [])
    if provider != "CPUExecutionProvider":
        chain.append(("CPUExecutionProvider", {}))
    return ort.InferenceSession(path, so, providers=[p for p, _ in chain], provider_options=[o for _, o in chain])


def _median_ms(run, repeats: int, warmup: int = 3) -> float:
    # export/runtimes.median_latency_ms's twin on purpose: this script runs where mtmm_keras is not installed
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _feeds(session, inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in session.get_inputs():
        value = inputs[spec.name]
        repeat = -(-batch // len(value))
        feeds[spec.name] = np.ascontiguousarray(np.concatenate([value] * repeat)[:batch] if repeat > 1 else value[:batch])
    return feeds


def _diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> tuple[float, float]:
    diff = scale = 0.0
    for name, value in want.items():
        if name in got and value.size:
            diff = max(diff, float(np.max(np.abs(got[name].astype(np.float64) - value.astype(np.float64)))))
            scale = max(scale, float(np.max(np.abs(value))))
    return diff, scale


def run_entry(ort, folder: str, providers: list[str], repeats: int, cache: str) -> dict:
    """Every ONNX file of one exported entry on every provider (see the module docstring)."""
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    with np.load(os.path.join(folder, REFERENCE)) as npz:
        inputs = {k[3:]: npz[k] for k in npz.files if k.startswith("in/")}
        reference = {k[4:]: npz[k] for k in npz.files if k.startswith("out/")}
    available = ort.get_available_providers()
    result = {}
    for artifact in manifest["artifacts"]:
        if artifact["format"] != "onnx":
            continue
        path, quantization = os.path.join(folder, os.path.basename(artifact["path"])), artifact["quantization"]
        names = {o.get("onnx_name", o["name"]): o["name"] for o in artifact["outputs"]}
        rows = len(next(iter(inputs.values())))
        per_provider, cpu_outputs = {}, None
        print(f"  onnx/{quantization}", flush=True)
        for provider in sorted(providers, key=lambda p: p != "CPUExecutionProvider"):  # the CPU first: the baseline
            entry: dict = {}
            per_provider[SHORT[provider]] = entry
            if provider not in available:
                entry["skipped"] = f"{provider} is not in this onnxruntime build (available: {', '.join(available)})"
                print(f"    {SHORT[provider]}: skipped, not available", flush=True)
                continue
            try:
                session = _session(ort, path, provider, _provider_options(provider, artifact, cache, quantization))
            except Exception as err:  # noqa: BLE001  (a provider that cannot start is reported, the run goes on)
                entry["skipped"] = f"session failed on {provider}: {str(err).splitlines()[0][:300]}"
                print(f"    {SHORT[provider]}: {entry['skipped']}", flush=True)
                continue
            entry["ran_on"] = session.get_providers()
            if entry["ran_on"][0] != provider:
                entry["fallback"] = (f"asked for {provider}, ONNX Runtime runs on {entry['ran_on'][0]} (missing "
                                     "CUDA / cuDNN / TensorRT libraries?)")
            output_names = [o.name for o in session.get_outputs()]

            def run(batch, session=session, output_names=output_names, names=names):
                values = session.run(None, _feeds(session, inputs, batch))
                return {names.get(n, n): v for n, v in zip(output_names, values)}

            got = run(rows)
            diff, scale = _diff(got, reference)
            tolerance = TOLERANCE.get(quantization, 1e-2)
            entry["parity"] = {"rows": rows, "max_abs_diff_vs_keras": diff, "reference_scale": scale,
                               "tolerance": tolerance * (1 + scale), "passed": bool(diff <= tolerance * (1 + scale))}
            if provider == "CPUExecutionProvider":
                cpu_outputs = got
            elif cpu_outputs is not None:
                entry["parity"]["max_abs_diff_vs_cpu_ep"] = _diff(got, cpu_outputs)[0]
            entry["latency_ms"] = {f"batch{b}": _median_ms(lambda b=b: run(b), repeats if b == 1 else max(repeats // 5, 3))
                                   for b in BATCHES}
            note = f" (FELL BACK to {entry['ran_on'][0]})" if "fallback" in entry else ""
            print(f"    {SHORT[provider]}{note}: max|Δ| vs Keras {diff:.2e} "
                  f"({'ok' if entry['parity']['passed'] else 'OVER TOLERANCE'}), batch-1 "
                  f"{entry['latency_ms']['batch1']:.3f} ms, batch-256 {entry['latency_ms']['batch256']:.3f} ms", flush=True)
        result[f"onnx/{quantization}"] = per_provider
    return result


def run(bundle: str, wheelhouse: str | None, out: str, providers: list[str], repeats: int, entries: list[str] | None) -> int:
    """Step 2: every entry of the bundle on every provider; the JSON report to `out`."""
    ort, found = import_onnxruntime(bundle, wheelhouse)
    if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels (PyTorch's), where they are
        try:
            ort.preload_dlls()
        except Exception as err:  # noqa: BLE001
            print(f"onnxruntime.preload_dlls() failed ({err}); the CUDA EP may fall back to the CPU", flush=True)
    info = machine(ort)
    info["onnxruntime_from"] = found
    missing = [p for p in providers if p not in info["available_providers"]]
    print(f"onnxruntime {ort.__version__} ({found}); providers available: {', '.join(info['available_providers'])}")
    if missing:
        print(f"not available, reported as skipped: {', '.join(missing)}", flush=True)
    cache = os.path.join(bundle, ".trt_cache")
    os.makedirs(cache, exist_ok=True)
    folders = sorted(d for d in os.listdir(bundle) if os.path.isfile(os.path.join(bundle, d, REFERENCE)))
    if entries:
        unknown = sorted(set(entries) - set(folders))
        if unknown:
            raise SystemExit(f"--entries {unknown} are not in the bundle {bundle!r}; it holds {folders}.")
        folders = [d for d in folders if d in entries]
    if not folders:
        raise SystemExit(f"--bundle {bundle!r} holds no exported entry (a folder with manifest.json and {REFERENCE}); "
                         "make one with `gpu_server_onnx.py prepare`.")
    results = {}
    for folder in folders:
        print(f"== {folder}", flush=True)
        results[folder] = run_entry(ort, os.path.join(bundle, folder), providers, repeats, cache)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "providers_asked": providers, "providers_missing": missing, "repeats": repeats, "entries": results}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    """`prepare` or `run`, arguments checked (each error names its flag and the valid values)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: export the zoo for gpu-server and write the bundle (needs TensorFlow)")
    p.add_argument("--out", default="gpu_bundle")
    p.add_argument("--entries", default=",".join(DEFAULT_ENTRIES), help="comma-separated zoo entries")
    p.add_argument("--rows", type=int, default=256, help="reference rows per entry (the test split)")
    r = sub.add_parser("run", help="the GPU machine: run the bundle in ONNX Runtime (numpy + onnxruntime only)")
    r.add_argument("--bundle", default=os.path.dirname(os.path.abspath(__file__)))
    r.add_argument("--wheelhouse", default=None, help="folder of wheels (onnxruntime-gpu, ...) made with pip download")
    r.add_argument("--out", default="gpu_server_onnx.json")
    r.add_argument("--providers", default=",".join(PROVIDERS),
                   help=f"comma-separated, among {', '.join(PROVIDERS)}")
    r.add_argument("--repeats", type=int, default=50, help="timed batch-1 runs per provider (batch-256: a fifth)")
    r.add_argument("--entries", default=None, help="comma-separated subset of the bundle's entries")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        if args.rows < 1:
            parser.error(f"--rows must be a positive integer, got {args.rows}")
        return prepare(args.out, [e for e in args.entries.split(",") if e], args.rows)
    providers = [p for p in args.providers.split(",") if p]
    wrong = [p for p in providers if p not in PROVIDERS]
    if wrong or not providers:
        parser.error(f"--providers {wrong or providers} unknown: choose among {', '.join(PROVIDERS)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if not os.path.isdir(args.bundle):
        parser.error(f"--bundle {args.bundle!r} is not a folder")
    if args.wheelhouse is not None and not os.path.isdir(args.wheelhouse):
        parser.error(f"--wheelhouse {args.wheelhouse!r} is not a folder")
    return run(args.bundle, args.wheelhouse, args.out, providers, args.repeats,
               [e for e in args.entries.split(",") if e] if args.entries else None)


if __name__ == "__main__":
    raise SystemExit(main())
