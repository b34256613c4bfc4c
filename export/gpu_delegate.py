"""Run a .tflite file on LiteRT's GPU accelerator (`CompiledModel` with `HardwareAccelerator.GPU`, no CPU
fallback) and compare it with the CPU interpreter: whether the whole graph runs on the GPU (else the ops that fell
off and why, as the delegate prints them) and the max |difference| at enforced fp32 and at the delegate's default
(reduced) precision.

Without a GPU, Mesa's lavapipe software Vulkan driver runs the delegate: `scripts/install_system_deps.sh` unpacks
it under `.cache/vulkan/` and `VK_ICD_FILENAMES` (or `MTMM_VK_ICD`) points at its ICD file. Lavapipe proves op
coverage and numerics, never speed. Each check runs in a child process: the delegate writes its reasons to the
native stderr and may crash on graphs it cannot compile (a crash is reported, it never takes the export down).
The child runs this file as a script, so it never imports TensorFlow (which does not share a process with the
GPU accelerator).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import numpy as np

# where scripts/install_system_deps.sh unpacks Mesa's lavapipe (relative to the project root)
LAVAPIPE_ICD = os.path.join(".cache", "vulkan", "lvp_icd.json")
TIMEOUT_S = 300
# a float32 file at enforced fp32 on the GPU must match the CPU interpreter within this (absolute, plus the same
# relative to the largest |CPU value|); a float16 file is held to FP16_TOLERANCE at the delegate's default (fp16)
# precision, the one it is made for. The other number of each file is reported, not enforced (on lavapipe, float16
# files of the fusion graphs at enforced fp32 differ by ~1 from the CPU: their fp16 weights are not widened alike)
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
_UNSUPPORTED = re.compile(r"Following operations are not supported by GPU delegate:\n(.*?)\n\d+ operations will run on the GPU",
                          re.S)


def vulkan_icd() -> str | None:
    """The Vulkan ICD file the check uses: $MTMM_VK_ICD, $VK_ICD_FILENAMES, else the project's unpacked lavapipe."""
    for variable in ("MTMM_VK_ICD", "VK_ICD_FILENAMES"):
        if os.environ.get(variable):
            return os.environ[variable]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for base in (os.getcwd(), root):
        path = os.path.join(base, LAVAPIPE_ICD)
        if os.path.isfile(path):
            return path
    return None


def check(path: str, inputs: dict[str, np.ndarray], work_dir: str) -> dict[str, Any]:
    """Run `path` on the GPU accelerator in a child process on `inputs` (one static batch); returns
    {"ran", "fully_accelerated", "unsupported", "max_abs_diff": {"fp32": .., "default": ..}, "adapter"} or
    {"ran": False, "reason": ...} when the accelerator cannot start here."""
    env = dict(os.environ)
    icd = vulkan_icd()
    if icd:
        env["VK_ICD_FILENAMES"] = icd
        lib = os.path.join(os.path.dirname(icd), "lib")
        if os.path.isdir(lib):
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    data = os.path.join(work_dir, os.path.basename(path) + ".gpu-inputs.npz")
    np.savez(data, **inputs)
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), path, data], capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ran": False, "reason": f"the GPU accelerator did not finish within {TIMEOUT_S} s"}
    finally:
        os.remove(data)
    result = next((json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")),
                  None)
    found = _UNSUPPORTED.search(done.stderr)
    unsupported = [line.strip() for line in found.group(1).splitlines() if line.strip()] if found else []
    adapter = re.search(r"Selected adapter: (.*?), arch=", done.stderr)
    if result is None:
        if done.returncode < 0 or done.returncode > 128:  # killed by a signal: the delegate crashed
            return {"ran": True, "fully_accelerated": False, "crashed": True, "unsupported": unsupported,
                    "reason": f"the GPU accelerator crashed (signal {abs(done.returncode) % 128}): "
                              + _last_error(done.stderr)}
        return {"ran": False, "reason": _last_error(done.stderr) or f"exit status {done.returncode}"}
    result["unsupported"] = unsupported
    if adapter:
        result["adapter"] = adapter.group(1).strip()
    return result


def failure(result: dict[str, Any], quantization: str = "float32") -> str | None:
    """Why a GPU-target TFLite file fails its accelerator check (None: it passes, or the accelerator could not
    start on this machine, which `result["reason"]` records): ops off the GPU, a crash, fp32 numbers off."""
    if not result.get("ran"):
        return None
    if result.get("crashed"):
        return result["reason"]
    if not result.get("fully_accelerated"):
        ops = "; ".join(result.get("unsupported") or []) or result.get("reason", "")
        return f"falls off LiteRT's GPU accelerator: {ops}"
    mode, tolerance = ("fp32", FP32_TOLERANCE) if quantization == "float32" else ("default", FP16_TOLERANCE)
    diff = result["max_abs_diff"].get(mode, 0.0)
    limit = tolerance * (1.0 + result.get("cpu_scale", 0.0))
    if diff > limit:
        return (f"GPU accelerator at {'enforced fp32' if mode == 'fp32' else 'its default precision'} differs from "
                f"the CPU interpreter by {diff:.2e} (> {limit:.1e})")
    return None


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith(("I0", "INFO:"))]
    return " ".join(lines[-3:])[:500]


def _run(path: str, data: str) -> dict[str, Any]:
    """In the child: the CPU interpreter's outputs, then the GPU accelerator's at enforced fp32 and default precision."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.gpu_options import GpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import Options

    with np.load(data) as npz:
        inputs = {k: npz[k] for k in npz.files}
    cpu = dict(Interpreter(model_path=path).get_signature_runner("serving_default")(**inputs))
    result: dict[str, Any] = {"ran": True, "fully_accelerated": True, "max_abs_diff": {}}
    for mode, enforce in (("fp32", True), ("default", False)):
        options = Options(hardware_accelerators=HardwareAccelerator.GPU, gpu_options=GpuOptions(enforce_f32=enforce))
        try:
            model = CompiledModel.from_file(path, options=options)
        except RuntimeError as err:  # without CPU fallback a graph that falls off the GPU is refused
            result["fully_accelerated"] = False
            result["reason"] = str(err).strip().splitlines()[-1][:300]
            return result
        result["fully_accelerated"] = result["fully_accelerated"] and model.is_fully_accelerated()
        signature = "serving_default"
        index = model.get_signature_index(signature)
        input_buffers, output_buffers = model.create_input_buffers(index), model.create_output_buffers(index)
        names = model.get_signature_list()[signature]
        for buffer, name in zip(input_buffers, names["inputs"]):
            buffer.write(np.ascontiguousarray(inputs[name]))
        model.run_by_index(index, input_buffers, output_buffers)
        diff, scale = 0.0, 0.0
        for buffer, name in zip(output_buffers, names["outputs"]):
            want = cpu[name]
            got = buffer.read(want.size, want.dtype).reshape(want.shape)
            if want.size:
                diff = max(diff, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
                scale = max(scale, float(np.max(np.abs(want.astype(np.float64)))))
        result["max_abs_diff"][mode] = diff
        result["cpu_scale"] = scale
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(_run(sys.argv[1], sys.argv[2])), flush=True)
