"""Issue 23's joint-embedding targets against floors no model can beat on this CPU, measured side by side.

Issue 23 asks `mk.builders.joint_embedding` to train at ≥ 1.25× the PyTorch reference on JAX
(`benchmarks/torch_reference.py`) and at ≥ 70 % of the fp32 matmul peak on TensorFlow. Each target gets a floor:
part of the model's own work, written directly in the backend with no Keras, no loss beyond a sum and no optimizer
update. Every real training step does all of this work and more, so its time is at least the floor's.

- **JAX:** the two encoder towers — image (Conv2D 3→64 ReLU, 2×2 max-pool, Conv2D 64→128 ReLU, global mean,
  Dense 64 ReLU) and text (Embedding 1000×64, LSTM 64 as a `lax.scan`, last state) — in `jax.lax`, forward and
  backward in one `jax.jit`, interleaved on the same batches with PyTorch's whole training step (its reference
  loop: forward, `CosineEmbeddingLoss`, backward, Adam). 1.25× needs the JAX step to take ≤ 0.8 of PyTorch's; the
  floor bounds the ratio. XLA:CPU's library options (oneDNN, XNNPACK, YNNPACK) are set through `XLA_FLAGS` before
  JAX starts, so each variant runs in a child process of its own with its own side-by-side ratio.
- **TensorFlow:** the image tower's two convolutions (with their ReLUs and the pool between them), forward and
  backward, in one `tf.function` (TensorFlow's oneDNN kernels), interleaved with TensorFlow's own 2048² fp32 matmul
  peak. The whole model's training FLOPs (the train-speed harness's count) over the convolutions' time alone bound
  the fraction of peak any TensorFlow step can reach. TensorFlow's own matmul peak is used (it is not above the
  harness's, which takes the fastest framework), so the bound is if anything generous.

Both bounds take the floor's fastest timed run (and PyTorch's median step, the peak's best run), so they err towards
saying a target is reachable.

    python -m benchmarks.joint_embedding_floor [--out benchmarks/results/joint_embedding_floor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# XLA:CPU variants tried: the default, then each library path the bundled jaxlib accepts.
VARIANTS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn-fusions": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise",
    "onednn-convolutions": "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot",
    "xnnpack-convolutions": "--xla_cpu_experimental_xnn_fusion_type=individual_convolution,individual_dot",
    "xnnpack-graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynnpack-convolutions": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution,individual_dot",
}
TARGET = 1.25  # issue 23: mtmm on JAX ≥ 1.25× PyTorch on the joint embedding
PEAK_TARGET = 0.70  # issue 23: TensorFlow's joint embedding at ≥ 70 % of the fp32 peak
PEAK_MATRIX = 2048  # the train-speed harness's peak matmul size
SIZES = {"batch_size": 64, "steps": 8, "repeats": 5}


# --- the floor: the two towers in jax.lax, weights taken from the PyTorch reference ------------------------

def torch_tower_weights(model: Any) -> dict[str, np.ndarray]:
    """The reference `JointEmbedding`'s tower weights as NumPy arrays in JAX's layouts (HWIO kernels, [in, out])."""
    image, text = model.image, model.text
    arr = {name: p.detach().cpu().numpy() for name, p in {
        "conv1_w": image.conv1.weight, "conv1_b": image.conv1.bias, "conv2_w": image.conv2.weight,
        "conv2_b": image.conv2.bias, "fc_w": image.fc.weight, "fc_b": image.fc.bias,
        "embedding": text.embedding.weight, "w_ih": text.lstm.weight_ih_l0, "w_hh": text.lstm.weight_hh_l0,
        "b_ih": text.lstm.bias_ih_l0, "b_hh": text.lstm.bias_hh_l0}.items()}
    return {
        "conv1_w": arr["conv1_w"].transpose(2, 3, 1, 0), "conv1_b": arr["conv1_b"],
        "conv2_w": arr["conv2_w"].transpose(2, 3, 1, 0), "conv2_b": arr["conv2_b"],
        "fc_w": arr["fc_w"].T, "fc_b": arr["fc_b"], "embedding": arr["embedding"],
        "lstm_w": arr["w_ih"].T, "lstm_u": arr["w_hh"].T, "lstm_b": arr["b_ih"] + arr["b_hh"],
    }


def towers(params: dict[str, Any], tokens: Any, images: Any) -> tuple[Any, Any]:
    """(text state [B, 64], image embedding [B, 64]): the reference's encoders, NHWC images, in `jax.lax`."""
    import jax
    from jax import lax
    from jax import numpy as jnp

    dims = ("NHWC", "HWIO", "NHWC")
    x = lax.conv_general_dilated(images, params["conv1_w"], (1, 1), "SAME", dimension_numbers=dims)
    x = jax.nn.relu(x + params["conv1_b"])
    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = lax.conv_general_dilated(x, params["conv2_w"], (1, 1), "SAME", dimension_numbers=dims)
    x = jax.nn.relu(x + params["conv2_b"])
    image = jax.nn.relu(jnp.mean(x, axis=(1, 2)) @ params["fc_w"] + params["fc_b"])

    embedded = jnp.take(params["embedding"], tokens, axis=0)  # [B, T, E]
    units = params["lstm_u"].shape[0]
    state = jnp.zeros((tokens.shape[0], units), embedded.dtype)

    def cell(carry, x_t):
        h, c = carry
        gates = x_t @ params["lstm_w"] + h @ params["lstm_u"] + params["lstm_b"]
        i, f, g, o = jnp.split(gates, 4, axis=-1)  # PyTorch's and Keras's gate order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    (h, _), _ = lax.scan(cell, (state, state), jnp.swapaxes(embedded, 0, 1))
    return h, image


def floor_step():
    """The jitted floor: value and gradient of sum(text) + sum(image) over every tower weight."""
    import jax

    def loss(params, tokens, images):
        text, image = towers(params, tokens, images)
        return text.sum() + image.sum()

    return jax.jit(jax.value_and_grad(loss))


def bound(floor_s: float, torch_s: float) -> float:
    """The fastest mtmm/PyTorch ratio the floor allows: PyTorch's step time over the floor's."""
    return torch_s / floor_s


def verdict(best_bound: float, target: float = TARGET) -> str:
    """JAX: whether the best variant's floor leaves room for the target ratio over PyTorch."""
    if best_bound < target:
        return (f"unreachable on XLA:CPU: the towers alone, with no loss or optimizer, allow at most {best_bound:.2f}× "
                f"PyTorch (target {target}×)")
    return f"not ruled out: the floor allows up to {best_bound:.2f}× (target {target}×)"


def peak_fraction_bound(model_flops_per_step: float, floor_s: float, peak_flops_per_s: float) -> float:
    """The highest fraction of peak a step can reach if everything but the floor's work took no time."""
    return model_flops_per_step / floor_s / peak_flops_per_s


def peak_verdict(fraction: float, target: float = PEAK_TARGET) -> str:
    """TensorFlow: whether the convolutions' own time leaves room for the target fraction of peak."""
    if fraction < target:
        return (f"unreachable with TensorFlow's convolution kernels: with every other op free, a step reaches at most "
                f"{fraction:.1%} of the fp32 peak (target {target:.0%})")
    return f"not ruled out: the convolutions alone allow up to {fraction:.1%} of peak (target {target:.0%})"


def conv_tower_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised weights of the image tower's convolutions (HWIO), as `mk.encoders.image` shapes them."""
    from benchmarks.train_speed import JOINT

    rng = np.random.default_rng(seed)
    channels, (f1, f2) = JOINT["image_shape"][2], JOINT["filters"]
    return {"conv1_w": (rng.normal(size=(3, 3, channels, f1)) * np.sqrt(2 / (9 * channels))).astype(np.float32),
            "conv1_b": np.zeros(f1, np.float32),
            "conv2_w": (rng.normal(size=(3, 3, f1, f2)) * np.sqrt(2 / (9 * f1))).astype(np.float32),
            "conv2_b": np.zeros(f2, np.float32)}


# --- one variant, measured in this process ----------------------------------------------------------------

def measure_tensorflow(steps: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """TensorFlow: the convolutions' forward + backward per batch, interleaved with TF's own matmul peak."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    from benchmarks.train_speed import (
        JOINT,
        KerasWorker,
        _time_matmul,
        make_data,
        training_flops_per_sample,
    )

    worker = KerasWorker("cpu")
    model_flops = training_flops_per_sample(worker.build("joint_embedding", {}))
    x, _ = make_data("joint_embedding", steps * batch_size)
    images = [tf.constant(x["image"][i:i + batch_size]) for i in range(0, steps * batch_size, batch_size)]
    weights = [tf.Variable(v) for v in conv_tower_weights().values()]

    @tf.function
    def convs(image):
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(image, weights[0], 1, "SAME"), weights[1]))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, weights[2], 1, "SAME"), weights[3]))
            total = tf.reduce_sum(h)
        return total, tape.gradient(total, weights)

    a = tf.random.normal((PEAK_MATRIX, PEAK_MATRIX))
    b = tf.random.normal((PEAK_MATRIX, PEAK_MATRIX))

    def run_floor() -> None:
        for image in images:
            _, grads = convs(image)
        grads[0].numpy()

    run_floor()
    floor_times, peaks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        run_floor()
        floor_times.append((time.perf_counter() - start) / steps)
        peaks.append(_time_matmul(lambda: tf.matmul(a, b).numpy(), PEAK_MATRIX, 3))  # the harness's peak
    # the convolutions' fastest run against the best peak (the harness's definition): if anything, a generous bound
    floor_s, peak = min(floor_times), max(peaks)
    height, width = JOINT["image_shape"][:2]  # conv1 on the full map, conv2 after the 2×2 pool
    conv_flops = 3 * 2 * (height * width * int(np.prod(weights[0].shape))
                          + (height // 2) * (width // 2) * int(np.prod(weights[2].shape)))
    return {"tensorflow": tf.__version__, "model_train_flops_per_sample": model_flops, "batch_size": batch_size,
            "convs_share_of_model_flops": conv_flops / model_flops,
            "seconds_per_step": {"tf_convs": {"median": statistics.median(floor_times), "min": floor_s,
                                              "max": max(floor_times)}},
            "tf_fp32_matmul_peak_flops_per_s": peak,
            "peak_fraction_bound": peak_fraction_bound(model_flops * batch_size, floor_s, peak)}


def measure(steps: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """JAX: the towers' floor per batch, interleaved with PyTorch's whole reference step on the same batches."""
    import jax
    import torch

    from benchmarks import torch_reference as ref
    from benchmarks.train_speed import JOINT, make_data

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    x, y = make_data("joint_embedding", steps * batch_size)
    model, loss_fn = ref.build("joint_embedding", "cpu", vocab_size=JOINT["vocab_size"],
                               embedding_dim=JOINT["embedding_dim"], channels=JOINT["image_shape"][2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, targets = ref.to_tensors("joint_embedding", x, y)
    params = {k: jax.device_put(v) for k, v in torch_tower_weights(model).items()}
    step = floor_step()
    batches = [(x["text"][i:i + batch_size], x["image"][i:i + batch_size])
               for i in range(0, steps * batch_size, batch_size)]
    batches = [(jax.device_put(t), jax.device_put(im)) for t, im in batches]

    # the floor computes the reference's towers: same outputs on the same weights
    with torch.no_grad():
        ref_text = model.text(inputs[0][:batch_size]).numpy()
        ref_image = model.image(inputs[1][:batch_size]).numpy()
    text, image = towers(params, *batches[0])
    max_diff = float(max(np.abs(np.asarray(text) - ref_text).max(), np.abs(np.asarray(image) - ref_image).max()))

    def run_floor() -> None:
        for tokens, images in batches:
            _, grads = step(params, tokens, images)
        jax.block_until_ready(grads)

    def run_torch() -> None:
        ref.train(model, loss_fn, optimizer, inputs, targets, batch_size, 1)

    start = time.perf_counter()
    run_floor()
    compile_s = time.perf_counter() - start
    run_torch()
    times: dict[str, list[float]] = {"jax_floor": [], "torch_step": []}
    for _ in range(repeats):
        for name, fn in (("torch_step", run_torch), ("jax_floor", run_floor)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / steps)
    med = {name: statistics.median(values) for name, values in times.items()}
    return {"xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__, "torch": torch.__version__,
            "towers_max_abs_diff_vs_torch": max_diff, "floor_compile_s": compile_s,
            "seconds_per_step": {name: {"median": med[name], "min": min(v), "max": max(v)} for name, v in times.items()},
            # the floor's fastest run against PyTorch's median step: if anything, a generous bound
            "bound_vs_torch": bound(min(times["jax_floor"]), med["torch_step"])}


# --- driver: one child per XLA_FLAGS variant ----------------------------------------------------------------

def run_child(backend: str, flags: str, sizes: dict[str, int]) -> dict[str, Any]:
    """One measurement in a fresh process (XLA reads XLA_FLAGS once, at start-up)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(part for part in (env.get("XLA_FLAGS", ""), flags) if part)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, "-m", "benchmarks.joint_embedding_floor", "--child", backend,
           *(f"--{k.replace('_', '-')}={v}" for k, v in sizes.items())]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        return {"xla_flags": flags, "error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_report(report: dict[str, Any]) -> None:
    print("JAX: the towers alone against PyTorch's whole step (batch {batch_size})".format(**report["sizes"]))
    print("| XLA:CPU variant (`XLA_FLAGS`) | PyTorch step, median (ms) | JAX towers alone, fastest (ms) "
          "| best ratio the floor allows |")
    print("|---|---|---|---|")
    for name, r in report["jax"].items():
        if "error" in r:
            print(f"| {name} (`{VARIANTS.get(name, '')}`) | – | – | failed: {r['error'][0]} |")
            continue
        s = r["seconds_per_step"]
        print(f"| {name} (`{r['xla_flags'] or 'none'}`) | {s['torch_step']['median'] * 1e3:.1f} | {s['jax_floor']['min'] * 1e3:.1f} "
              f"| {r['bound_vs_torch']:.2f}× |")
    print(report["jax_verdict"])
    tf_report = report["tensorflow"]
    if "error" in tf_report:
        print(f"TensorFlow: failed: {tf_report['error'][0]}")
    elif tf_report:
        print(f"TensorFlow: the convolutions alone {tf_report['seconds_per_step']['tf_convs']['min'] * 1e3:.1f} ms "
              f"per step at their fastest ({tf_report['convs_share_of_model_flops']:.0%} of the model's FLOPs), matmul peak "
              f"{tf_report['tf_fp32_matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s")
        print(report["tensorflow_verdict"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.joint_embedding_floor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/joint_embedding_floor.json", help="where to write the JSON")
    parser.add_argument("--batch-size", type=int, default=SIZES["batch_size"])
    parser.add_argument("--steps", type=int, default=SIZES["steps"], help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=SIZES["repeats"], help="interleaved timed runs per side")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated XLA:CPU variants for the JAX floor, a subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--no-tensorflow", action="store_true", help="skip the TensorFlow floor")
    parser.add_argument("--child", choices=("jax", "tensorflow"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ("batch_size", "steps", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.child:
        measure_child = measure if args.child == "jax" else measure_tensorflow
        print(json.dumps(measure_child(args.steps, args.batch_size, args.repeats)))
        return 0
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        parser.error(f"--variants: unknown {unknown or names}; choose from {', '.join(VARIANTS)}")
    sizes = {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats}
    jax_results = {}
    for name in names:
        print(f"measuring JAX, {name} ...", file=sys.stderr, flush=True)
        jax_results[name] = run_child("jax", VARIANTS[name], sizes)
    tf_result: dict[str, Any] = {}
    if not args.no_tensorflow:
        print("measuring TensorFlow ...", file=sys.stderr, flush=True)
        tf_result = run_child("tensorflow", "", sizes)
    bounds = [r["bound_vs_torch"] for r in jax_results.values() if "bound_vs_torch" in r]
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "load_average_at_end": list(os.getloadavg())},
              "command": "python -m benchmarks.joint_embedding_floor " + " ".join(argv if argv is not None else sys.argv[1:]),
              "sizes": sizes, "targets": {"jax_vs_torch": TARGET, "tensorflow_peak_fraction": PEAK_TARGET},
              "jax": jax_results, "jax_verdict": verdict(max(bounds)) if bounds else "no JAX variant ran",
              "tensorflow": tf_result,
              "tensorflow_verdict": peak_verdict(tf_result["peak_fraction_bound"])
              if "peak_fraction_bound" in tf_result else "not measured"}
    print_report(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
