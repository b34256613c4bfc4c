"""Issue 19, item 5: benchmarks/gpu_server_onnx.py, the one-command GPU check of the `gpu-server` ONNX files. No GPU
here: a tiny model's bundle runs with the CPU provider only (CUDA asked for and reported as skipped), in a process
where TensorFlow cannot be imported (the GPU machine has none), and the JSON it writes is checked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_server_onnx.py"
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend")


def _run_script(*args, block=("tensorflow",)):
    """Run the script's `main` in a fresh interpreter where the modules in `block` cannot be imported."""
    code = ("import sys, runpy\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in block)
            + f"sys.argv = [{str(SCRIPT)!r}] + {list(map(str, args))!r}\n"
            + f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    sys.path.insert(0, str(ROOT))
    from benchmarks import gpu_server_onnx

    tab = keras.Input((5,), name="tab")
    ids = keras.Input((4,), name="ids", dtype="int32")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(tab),
                                    keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids))])
    model = keras.Model([tab, ids], {"y": keras.layers.Dense(3, name="y")(h), "p": keras.layers.Dense(1, name="p")(h)},
                        name="tiny")
    rng = np.random.default_rng(0)
    rows = {"tab": rng.normal(size=(40, 5)).astype("float32"), "ids": rng.integers(0, 10, (40, 4)).astype("int32")}
    folder = tmp_path_factory.mktemp("bundle")
    result = gpu_server_onnx.prepare_model(model, str(folder / "tiny"), rows)
    assert result["passed"]
    return folder


def test_cpu_provider_run_writes_parity_and_latency_and_reports_cuda_as_skipped(bundle, tmp_path):
    assert sorted(os.listdir(bundle / "tiny")) == ["manifest.json", "reference.npz", "tiny.float16.onnx", "tiny.onnx"]
    out = tmp_path / "gpu.json"
    done = _run_script("run", "--bundle", bundle, "--providers", "CUDAExecutionProvider,CPUExecutionProvider",
                       "--repeats", "3", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda: skipped, not available" in done.stdout
    report = json.loads(out.read_text())
    assert report["providers_missing"] == ["CUDAExecutionProvider"]
    assert report["machine"]["onnxruntime"] and "CPUExecutionProvider" in report["machine"]["available_providers"]
    assert report["machine"]["onnxruntime_from"] == "installed" and report["date"]
    entry = report["entries"]["tiny"]
    assert sorted(entry) == ["onnx/float16", "onnx/float32"]
    for flavour, bound in (("onnx/float32", 1e-4), ("onnx/float16", 1e-2)):
        cpu = entry[flavour]["cpu"]
        assert cpu["ran_on"] == ["CPUExecutionProvider"] and "fallback" not in cpu
        parity = cpu["parity"]
        assert parity["rows"] == 40 and parity["passed"] and parity["max_abs_diff_vs_keras"] <= parity["tolerance"]
        assert parity["tolerance"] == pytest.approx(bound * (1 + parity["reference_scale"]))
        assert set(cpu["latency_ms"]) == {"batch1", "batch256"} and all(v > 0 for v in cpu["latency_ms"].values())
        assert "not in this onnxruntime build" in entry[flavour]["cuda"]["skipped"]
    assert entry["onnx/float32"]["cpu"]["parity"]["max_abs_diff_vs_keras"] < 1e-5


def test_parity_fails_when_the_reference_disagrees(bundle, tmp_path):
    """Parity has teeth: a reference output shifted by 0.1 fails the float32 check."""
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    with np.load(copy / "tiny" / "reference.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["out/y"] = arrays["out/y"] + 0.1
    np.savez(copy / "tiny" / "reference.npz", **arrays)
    out = tmp_path / "gpu.json"
    done = _run_script("run", "--bundle", copy, "--providers", "CPUExecutionProvider", "--repeats", "2", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    parity = json.loads(out.read_text())["entries"]["tiny"]["onnx/float32"]["cpu"]["parity"]
    assert not parity["passed"] and parity["max_abs_diff_vs_keras"] == pytest.approx(0.1, rel=1e-3)
    assert "OVER TOLERANCE" in done.stdout


def test_bad_arguments_name_the_flag_and_the_valid_values(bundle, tmp_path):
    done = _run_script("run", "--bundle", bundle, "--providers", "MetalExecutionProvider")
    assert done.returncode == 2 and "--providers ['MetalExecutionProvider'] unknown: choose among " \
        "TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider" in done.stderr
    done = _run_script("run", "--bundle", bundle, "--entries", "nope", "--out", tmp_path / "x.json")
    assert done.returncode != 0 and "--entries ['nope'] are not in the bundle" in done.stderr
    done = _run_script("run", "--bundle", tmp_path, "--out", tmp_path / "x.json")
    assert done.returncode != 0 and "holds no exported entry" in done.stderr
    # no onnxruntime and no wheelhouse: it says how to carry one, and never reaches for a registry
    done = _run_script("run", "--bundle", bundle, block=("tensorflow", "onnxruntime"))
    assert done.returncode != 0 and "pass --wheelhouse DIR" in done.stderr
