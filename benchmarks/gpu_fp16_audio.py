"""Issue 19: what LiteRT's GPU accelerator at its default (fp16) precision costs an audio tower.

Exports a joint-embedding zoo entry's towers for `android-gpu` (float32 TFLite, static batch), runs every test row
of each tower through the CPU interpreter and through the GPU accelerator at enforced fp32 and at its default
precision (in a child process that does not import TensorFlow; Mesa's lavapipe without a GPU, see
export/gpu_delegate.py), and prints the audio embeddings' cosine to the CPU result and Recall@1 both ways; for a classification entry
(e.g. av_digits_fusion) the whole model, and its accuracy per task.

    python benchmarks/gpu_fp16_audio.py [--entry av_digits_clip] [--batch-size 50] [--limit N]

Lavapipe proves numerics, never speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def _child(path: str, data: str, out: str, mode: str) -> None:
    """In the child: every row of the arrays in `data` (one per input) through `path` on the CPU interpreter or the
    GPU accelerator, a static batch at a time; the outputs go to `out` (.npz, one array per output)."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.gpu_options import GpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import Options

    with np.load(data) as npz:
        x = {k: npz[k] for k in npz.files}
    cpu = Interpreter(model_path=path).get_signature_runner("serving_default")
    batch = int(next(iter(cpu.get_input_details().values()))["shape"][0])
    rows = len(next(iter(x.values())))
    results: dict[str, list] = {}
    if mode == "cpu":
        for start in range(0, rows, batch):
            for name, value in cpu(**{k: v[start:start + batch] for k, v in x.items()}).items():
                results.setdefault(name, []).append(value)
    else:
        options = Options(hardware_accelerators=HardwareAccelerator.GPU,
                          gpu_options=GpuOptions(enforce_f32=mode == "gpu_fp32"))
        model = CompiledModel.from_file(path, options=options)
        assert model.is_fully_accelerated(), "not fully accelerated"
        index = model.get_signature_index("serving_default")
        names = model.get_signature_list()["serving_default"]
        inputs, outputs = model.create_input_buffers(index), model.create_output_buffers(index)
        shapes = {k: tuple(d["shape"]) for k, d in cpu.get_output_details().items()}
        for start in range(0, rows, batch):
            for buffer, name in zip(inputs, names["inputs"]):
                buffer.write(np.ascontiguousarray(x[name][start:start + batch]))
            model.run_by_index(index, inputs, outputs)
            for buffer, name in zip(outputs, names["outputs"]):
                value = buffer.read(int(np.prod(shapes[name])), np.float32).reshape(shapes[name])
                results.setdefault(name, []).append(value)
    np.savez(out, **{k: np.concatenate(v) for k, v in results.items()})


def _run(path: str, x: dict[str, np.ndarray], mode: str, work: str) -> dict[str, np.ndarray]:
    from mtmm_keras.export import gpu_delegate

    env = dict(os.environ)
    icd = gpu_delegate.vulkan_icd()
    if icd:
        env["VK_ICD_FILENAMES"] = icd
        lib = os.path.join(os.path.dirname(icd), "lib")
        if os.path.isdir(lib):
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    data, out = os.path.join(work, "x.npz"), os.path.join(work, f"{mode}.npz")
    np.savez(data, **x)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, data, out, mode],
                          check=False, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed: {done.stderr[-2000:]}")
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}


def _classifier(model, recipe, x, y, batch_size, work) -> dict:
    """A classification entry (e.g. av_digits_fusion, every modality present): accuracy per task, CPU vs GPU."""
    from mtmm_keras.layers.modality_mask import MODALITY_MASK

    names = [t.name.split(":")[0] for t in model.inputs]
    rows = len(next(iter(x.values())))
    x = {k: v for k, v in x.items() if k in names}
    if MODALITY_MASK in names:  # every modality present (column order: the recipe's encoders)
        x[MODALITY_MASK] = np.ones((rows, len(recipe["encoders"])), "float32")
    import mtmm_keras as mk

    mk.export.export_model(model, os.path.join(work, "out"), target="android-gpu", quantize=["float32"],
                           batch_size=batch_size, representative_data=x, verbose=False)
    (path,) = [os.path.join(work, "out", f) for f in os.listdir(os.path.join(work, "out")) if f.endswith(".tflite")]
    results = {}
    for mode in ("cpu", "gpu_fp32", "gpu_default"):
        outputs = _run(path, x, mode, work)
        for task in recipe["tasks"]:
            if "categorical_crossentropy" in str(task.get("loss", "")):
                truth = np.asarray(y[task["name"]]).reshape(-1)
                results[f"{mode}_{task['name']}_accuracy"] = float((outputs[task["name"]].argmax(-1) == truth).mean())
    return results


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30)


def main(argv=None) -> dict:
    """Measure the entry's towers (see the module docstring); prints and returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", default="av_digits_clip")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--limit", type=int, default=None, help="test rows (default: the whole test split)")
    args = parser.parse_args(argv)

    import mtmm_keras as mk
    from mtmm_keras.zoo import registry
    from mtmm_keras.zoo.evaluation import split_arrays

    recipe = registry.recipe(args.entry)
    model = mk.zoo.load(args.entry)
    x, y = split_arrays(recipe, "test", limit=args.limit)
    rows = (len(next(iter(x.values()))) // args.batch_size) * args.batch_size
    x = {m: v[:rows] for m, v in x.items()}
    results: dict = {"entry": args.entry, "rows": rows, "batch_size": args.batch_size}
    if recipe["builder"] != "joint_embedding":
        with tempfile.TemporaryDirectory() as work:
            y = {k: np.asarray(v)[:rows] for k, v in y.items()}
            results.update(_classifier(model, recipe, x, y, args.batch_size, work))
        print(json.dumps(results, indent=1))
        return results
    with tempfile.TemporaryDirectory() as work:
        mk.export.export_towers(model, os.path.join(work, "out"), target="android-gpu", quantize=["float32"],
                                batch_size=args.batch_size, representative_data=x, verbose=False)
        embeddings: dict[str, dict[str, np.ndarray]] = {}
        for modality in x:
            (path,) = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(work, "out", modality))
                       for f in files if f.endswith(".tflite")]
            embeddings[modality] = {mode: next(iter(_run(path, {modality: x[modality]}, mode, work).values()))
                                    for mode in ("cpu", "gpu_fp32", "gpu_default")}
    groups = np.asarray(y["group"]).reshape(-1)[:rows]
    for mode in ("cpu", "gpu_fp32", "gpu_default"):
        per = {m: e[mode] if m == "audio" else e["cpu"] for m, e in embeddings.items()}
        metrics = mk.retrieval.cross_modal_metrics(per, groups, ks=(1,))
        results[f"audio_{mode}"] = {k: v for k, v in metrics.items() if "recall_at_1" in k}
    for modality, e in embeddings.items():
        for mode in ("gpu_fp32", "gpu_default"):
            cos = _cosines(e[mode], e["cpu"])
            results[f"{modality}_{mode}_cosine_to_cpu"] = {"mean": float(cos.mean()), "min": float(cos.min())}
            results[f"{modality}_{mode}_max_abs_diff"] = float(np.max(np.abs(e[mode] - e["cpu"])))
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:6])
    else:
        main()
