"""Training speed of the mtmm builders against PyTorch versions of the spec's reference models.

Run: `.venv/bin/python -m benchmarks.train_speed [--quick] [--fits-per-run N] [--profile] [--allow-busy] [--out benchmarks/results/train_speed.json]`
(needs the `bench` extra: `pip install -e ".[bench]"`, i.e. torch==2.13.0; the MMoE case also DeepCTR-Torch,
`pip install deepctr-torch==0.3.0`, and is skipped without it).

For each case (hard sharing, soft sharing, joint embedding in pair mode) both sides train on the same
synthetic arrays with the same batch size and number of samples:
  A. `benchmarks.torch_reference`: the model written in PyTorch, trained with a plain loop;
  B. the `mk.builders` model with the builder's default compile settings, trained with `model.fit`.
The MMoE case's side A is DeepCTR-Torch's `MMOE` (100 `DenseFeat` inputs, two binary tasks) trained with
its own `fit`, the library users pick, against `mk.builders.mmoe` with the same experts, gates and towers.
Each side lives in its own worker process (so neither framework's thread pools or allocator disturb
the other); after a warm-up the parent runs them interleaved A B A B ... and reports, per side, the
median and min–max of training samples/s (steady state: every timed run repeats a `fit` of a model that
has already trained once), each side's set-up time (its first run, which traces/compiles, less the
median steady run), the ratio mtmm/PyTorch, and the achieved fraction of the
machine's fp32 matrix-multiply peak (measured here, best of the two frameworks) given each model's
training FLOPs per sample (3 × forward multiply-add FLOPs of its Dense/Conv/LSTM layers).
It also times `mtmm --help` and `mtmm zoo list` start-up. On a machine with a CUDA GPU (and
`--device auto`) PyTorch runs on CUDA and Keras on the JAX backend on the GPU.

Busy machines: PyTorch's OpenMP threads slow down sharply when another process takes a core, so ratios
measured then say little. The harness samples the other processes' CPU use before it starts and while
each case is timed; above `BUSY_CORES` it refuses: it exits before measuring, and a case that became
busy is reported without ratios. `--allow-busy` measures and reports anyway, every ratio marked as
measured on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CASES = ("hard_sharing", "soft_sharing", "joint_embedding", "mmoe")
TASK_UNITS = {"a": 1, "b": 1, "c": 2}  # the spec's heads [1, 1, 2]

# Per case: samples, batch size, epochs per timed run, timed repeats per side.
FULL = {
    "hard_sharing": {"num_samples": 16384, "batch_size": 256, "epochs": 8, "repeats": 7},
    "soft_sharing": {"num_samples": 16384, "batch_size": 256, "epochs": 8, "repeats": 7},
    "joint_embedding": {"num_samples": 2048, "batch_size": 64, "epochs": 1, "repeats": 5},
    "mmoe": {"num_samples": 16384, "batch_size": 256, "epochs": 4, "repeats": 5},
}
QUICK = {
    "hard_sharing": {"num_samples": 8192, "batch_size": 256, "epochs": 2, "repeats": 3},
    "soft_sharing": {"num_samples": 8192, "batch_size": 256, "epochs": 2, "repeats": 3},
    "joint_embedding": {"num_samples": 512, "batch_size": 64, "epochs": 1, "repeats": 3},
    "mmoe": {"num_samples": 8192, "batch_size": 256, "epochs": 2, "repeats": 3},
}
JOINT = {"vocab_size": 1000, "sequence_length": 32, "embedding_dim": 64, "hidden_dim": 64, "image_shape": (32, 32, 3),
         "filters": (64, 128), "embed_dim": 64}
INPUT_DIM = 100
SOFT_ALPHA = 1e-3
# DeepCTR-Torch's MMOE defaults (3 experts 256→128, gates 64, towers 64), two binary tasks.
MMOE = {"tasks": ("ctr", "ctcvr"), "num_experts": 3, "expert_units": (256, 128), "gate_units": (64,),
        "tower_units": (64,)}
# Other processes' average CPU use (cores) above which the harness refuses to report ratios.
BUSY_CORES = 0.2

# Issue 23's targets (every backend unless said), and issue 10's soft/hard time per sample and CLI start-up.
TARGETS = {
    "hard_sharing_vs_torch": 2.0,
    "soft_sharing_vs_torch": 2.0,
    "joint_embedding_vs_torch": 1.25,
    "joint_embedding_peak_fraction_tensorflow": 0.70,
    "mmoe_vs_deepctr_torch": 3.0,
    "soft_over_hard_time_per_sample": 1.2,
    "cli_startup_s": 0.5,
}


# --- pieces that need neither torch nor a Keras backend (unit-tested) -----------------------

def make_data(case: str, num_samples: int, seed: int = 0) -> tuple[Any, Any]:
    """The synthetic arrays both sides train on (numpy, identical for a given seed)."""
    rng = np.random.default_rng(seed)
    if case in ("hard_sharing", "soft_sharing"):
        x = rng.normal(size=(num_samples, INPUT_DIM)).astype(np.float32)
        z = x @ (np.random.default_rng(1234).normal(size=(INPUT_DIM, 4)) / np.sqrt(INPUT_DIM))
        y = {
            "a": np.sin(2.0 * z[:, :1]),
            "b": z[:, 1:2] * z[:, 2:3],
            "c": np.concatenate([np.tanh(z[:, 3:4] + z[:, :1]), z[:, 1:2] - z[:, 3:4]], axis=1),
        }
        return x, {k: v.astype(np.float32) for k, v in y.items()}
    if case == "joint_embedding":
        h, w, c = JOINT["image_shape"]
        tokens = rng.integers(0, JOINT["vocab_size"], size=(num_samples, JOINT["sequence_length"])).astype(np.int32)
        image = rng.normal(size=(num_samples, h, w, c)).astype(np.float32)
        labels = np.where(rng.random(num_samples) < 0.5, 1.0, -1.0).astype(np.float32)
        return {"text": tokens, "image": image}, labels
    if case == "mmoe":
        x = rng.normal(size=(num_samples, INPUT_DIM)).astype(np.float32)
        w = np.random.default_rng(4321).normal(size=(INPUT_DIM, 2)) / np.sqrt(INPUT_DIM)
        logits = np.stack([x @ w[:, 0], x @ w[:, 0] + x @ w[:, 1]], axis=1)
        labels = (rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-2.0 * logits))).astype(np.float32)
        return x, {name: labels[:, i:i + 1] for i, name in enumerate(MMOE["tasks"])}
    raise ValueError(f"unknown case {case!r}; choose from {CASES}")


def steady_state_fits() -> None:
    """Let the timed fits run as the fits of a long training do. The timed fits are short (a few hundred steps),
    and an XLA-compiled model's `fit` on TensorFlow runs its executions as one XLA computation only from
    `XLA_CHUNK_MIN_STEPS` planned steps on (the longer compile pays back after some thousands of steps); the
    harness reports steady-state samples/s, so it sets that threshold to 0. The compile shows in the set-up column."""
    from mtmm_keras.models import in_memory_fit

    in_memory_fit.XLA_CHUNK_MIN_STEPS = 0


def build_mtmm(mk: Any, case: str, compile_kwargs: dict) -> Any:
    """The mtmm side of `case` (`mk`: the imported `mtmm_keras`), from the builder with `compile_kwargs`."""
    tasks = [mk.Task(name, units) for name, units in TASK_UNITS.items()]
    if case == "hard_sharing":
        return mk.builders.hard_sharing((INPUT_DIM,), tasks, **compile_kwargs)
    if case == "soft_sharing":
        return mk.builders.soft_sharing((INPUT_DIM,), tasks, alpha=SOFT_ALPHA, **compile_kwargs)
    if case == "mmoe":
        binary = [mk.Task(name, 1, loss="binary_crossentropy") for name in MMOE["tasks"]]  # logits + BCE
        return mk.builders.mmoe((INPUT_DIM,), binary, num_experts=MMOE["num_experts"],
                                expert_units=MMOE["expert_units"], gate_units=MMOE["gate_units"],
                                tower_units=MMOE["tower_units"], **compile_kwargs)
    encoders = {
        "text": mk.encoders.text(JOINT["vocab_size"], JOINT["sequence_length"], embedding_dim=JOINT["embedding_dim"],
                                 hidden_dim=JOINT["hidden_dim"]),
        "image": mk.encoders.image(JOINT["image_shape"], filters=JOINT["filters"], output_dim=JOINT["embed_dim"]),
    }
    return mk.builders.joint_embedding(encoders, embedding_dim=JOINT["embed_dim"], loss=mk.losses.CosineEmbeddingLoss(),
                                       **compile_kwargs)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max (and count) of a list of measurements."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize() needs at least one value")
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def ratio(numerator: dict[str, float], denominator: dict[str, float]) -> float:
    """Ratio of two summaries' medians."""
    return numerator["median"] / denominator["median"]


def _layer_forward_flops(layer: Any) -> int:
    """Multiply-add FLOPs (2 per MAC) of one layer's forward pass for one sample; nested models recurse."""
    import keras

    from mtmm_keras.layers import StackedDense

    if isinstance(layer, keras.Model):
        return sum(_layer_forward_flops(inner) for inner in layer.layers)
    name = type(layer).__name__
    from mtmm_keras.layers import Experts

    if isinstance(layer, Experts):  # num_experts MLPs side by side: kernel i is [experts, in, out]
        return sum(2 * int(np.prod(kernel.shape)) for kernel in layer.kernels)
    if isinstance(layer, StackedDense):
        in_dim = int(layer.kernel.shape[1])
        return 2 * layer.num_towers * in_dim * layer.units
    if isinstance(layer, keras.layers.Dense):
        in_shape = layer.input.shape
        positions = int(np.prod([d for d in in_shape[1:-1]])) if len(in_shape) > 2 else 1
        return 2 * positions * int(in_shape[-1]) * layer.units
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        out_positions = int(np.prod(layer.output.shape[1:-1]))
        kernel = layer.kernel.shape  # (*window, in/groups, out)
        return 2 * out_positions * int(np.prod(kernel))
    if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        steps, in_dim = int(layer.input.shape[1]), int(layer.input.shape[2])
        gates = 4 if isinstance(layer, keras.layers.LSTM) else 3
        return 2 * steps * gates * (in_dim + layer.units) * layer.units
    if name in ("SimpleRNN",):
        steps, in_dim = int(layer.input.shape[1]), int(layer.input.shape[2])
        return 2 * steps * (in_dim + layer.units) * layer.units
    return 0  # embeddings, pooling, activations, normalisation: no multiply-adds worth counting


def training_flops_per_sample(model: Any) -> int:
    """Training FLOPs per sample: forward + backward ≈ 3 × forward multiply-add FLOPs (Dense/Conv/LSTM)."""
    return 3 * _layer_forward_flops(model)


def busy_refusal(other_cores: float | None, allow_busy: bool, where: str) -> str | None:
    """Why ratios measured while other processes used `other_cores` cores must not be reported, or None.

    None when the machine was idle enough (at most `BUSY_CORES`), when the load is unknown (no /proc),
    or when `--allow-busy` was given (the ratios are then reported, marked as measured while busy)."""
    if other_cores is None or other_cores <= BUSY_CORES or allow_busy:
        return None
    return (f"other processes kept {other_cores:.2f} cores busy {where} (more than {BUSY_CORES}): ratios "
            "measured now would not be a fair comparison; rerun on an idle machine, or pass --allow-busy to "
            "report them anyway, marked as measured while busy")


def setup_and_steady(first_run_s: float, steady_run_s: Sequence[float]) -> dict[str, float]:
    """A side's first run (it traces/compiles and builds its pipeline) split into set-up and steady-state time:
    set-up = first run − median steady run (never below 0), the steady runs being the same work repeated."""
    steady = statistics.median([float(v) for v in steady_run_s])
    return {"first_run_s": float(first_run_s), "steady_run_s": steady, "setup_s": max(0.0, float(first_run_s) - steady)}


# --- workers (one process per framework) ----------------------------------------------------

def _time_matmul(fn, n: int, reps: int) -> float:
    fn()
    best = 0.0
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = max(best, 2.0 * n**3 / (time.perf_counter() - start))
    return best


class TorchWorker:
    def __init__(self, device: str):
        import torch

        from benchmarks import torch_reference

        self.torch, self.ref = torch, torch_reference
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch.cuda.is_available() is False (CPU-only torch build or no GPU)")
        self.device = device
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
        self.cases: dict[str, Any] = {}

    def info(self, _: dict) -> dict:
        torch = self.torch
        info = {"framework": f"torch {torch.__version__}", "device": self.device, "threads": torch.get_num_threads(),
                "cuda_available": torch.cuda.is_available()}
        if self.device == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
        return info

    def peak(self, cmd: dict) -> dict:
        torch, n = self.torch, cmd["n"]
        a = torch.randn(n, n, device=self.device)
        b = torch.randn(n, n, device=self.device)

        def mm():
            torch.mm(a, b)
            if self.device == "cuda":
                torch.cuda.synchronize()

        return {"flops_per_s": _time_matmul(mm, n, cmd["reps"])}

    def prepare(self, cmd: dict) -> dict:
        torch, case = self.torch, cmd["case"]
        torch.manual_seed(0)
        x, y = make_data(case, cmd["num_samples"])
        if case == "mmoe":
            return self._prepare_deepctr(x, y, cmd)
        sizes = {"input_dim": INPUT_DIM, "alpha": SOFT_ALPHA, "vocab_size": JOINT["vocab_size"],
                 "embedding_dim": JOINT["embedding_dim"], "channels": JOINT["image_shape"][2]}
        model, loss_fn = self.ref.build(case, self.device, **sizes)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        inputs, targets = self.ref.to_tensors(case, x, y, self.device)
        self.cases[case] = (model, loss_fn, optimizer, inputs, targets, cmd)
        counted = self._counted_flops(model, loss_fn, inputs, targets, cmd["batch_size"])
        start = time.perf_counter()
        loss = self.ref.train(model, loss_fn, optimizer, inputs, targets, cmd["batch_size"], cmd["epochs"])
        return {"warmup_s": time.perf_counter() - start, "loss": loss, "counted_train_flops_per_sample": counted,
                "parameters": sum(p.numel() for p in model.parameters())}

    def _prepare_deepctr(self, x: Any, y: dict, cmd: dict) -> dict:
        """DeepCTR-Torch's MMOE on 100 `DenseFeat` columns, two binary tasks, trained by its own `fit`."""
        from deepctr_torch.inputs import DenseFeat
        from deepctr_torch.models import MMOE as DeepCTRMMOE

        columns = [DenseFeat(f"f{i}", 1) for i in range(INPUT_DIM)]
        model = DeepCTRMMOE(columns, num_experts=MMOE["num_experts"], expert_dnn_hidden_units=MMOE["expert_units"],
                            gate_dnn_hidden_units=MMOE["gate_units"], tower_dnn_hidden_units=MMOE["tower_units"],
                            task_types=("binary",) * len(MMOE["tasks"]), task_names=MMOE["tasks"], device=self.device)
        model.compile("adam", loss=["binary_crossentropy"] * len(MMOE["tasks"]))
        inputs = {f"f{i}": x[:, i:i + 1] for i in range(INPUT_DIM)}
        labels = np.concatenate([y[name] for name in MMOE["tasks"]], axis=1)
        self.cases["mmoe"] = ("deepctr", model, inputs, labels, cmd)
        start = time.perf_counter()
        self._deepctr_fit("mmoe")
        return {"warmup_s": time.perf_counter() - start, "loss": None, "counted_train_flops_per_sample": None,
                "parameters": sum(p.numel() for p in model.parameters())}

    def _deepctr_fit(self, case: str) -> None:
        _, model, inputs, labels, spec = self.cases[case]
        model.fit(inputs, labels, batch_size=spec["batch_size"], epochs=spec["epochs"], verbose=0)

    def _counted_flops(self, model, loss_fn, inputs, targets, batch_size) -> float | None:
        """torch's own FLOP count of one training step (forward + backward), per sample; a cross-check."""
        try:
            from torch.utils.flop_counter import FlopCounterMode

            batch = [t[:batch_size] for t in inputs]
            with FlopCounterMode(display=False) as counter:
                loss_fn(model(*batch), [t[:batch_size] for t in targets]).backward()
            model.zero_grad(set_to_none=True)
            return counter.get_total_flops() / batch_size
        except Exception:  # noqa: BLE001 - informational only
            return None

    def time(self, cmd: dict) -> dict:
        """Seconds for `fits` (default 1) consecutive training runs of the prepared case."""
        fits = cmd.get("fits", 1)
        if self.cases[cmd["case"]][0] == "deepctr":
            start = time.perf_counter()
            for _ in range(fits):
                self._deepctr_fit(cmd["case"])
            return {"seconds": time.perf_counter() - start}
        model, loss_fn, optimizer, inputs, targets, spec = self.cases[cmd["case"]]
        start = time.perf_counter()
        for _ in range(fits):
            self.ref.train(model, loss_fn, optimizer, inputs, targets, spec["batch_size"], spec["epochs"])
        return {"seconds": time.perf_counter() - start}

    def profile(self, cmd: dict) -> dict:
        """One timed run under torch.profiler: the ops that take the most time (self time, all threads)."""
        from torch.profiler import ProfilerActivity, profile

        if self.cases[cmd["case"]][0] == "deepctr":
            return {"available": False, "why": "DeepCTR-Torch's fit is not profiled"}
        spec = self.cases[cmd["case"]][-1]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = self.time(cmd)["seconds"]
        steps = spec["epochs"] * -(-spec["num_samples"] // spec["batch_size"])
        events = [e for e in prof.key_averages() if not e.key.startswith(("Optimizer.", "ProfilerStep"))]
        total = sum(e.self_cpu_time_total for e in events) / 1e3
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: cmd.get("top", 10)]
        return {"wall_ms": wall * 1e3, "steps": steps, "op_self_ms_total": total,
                "op_calls_per_step": sum(e.count for e in events) / steps,
                "top_ops": [{"op": e.key, "ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in top]}


class KerasWorker:
    def __init__(self, device: str):
        import keras

        import mtmm_keras as mk

        self.keras, self.mk = keras, mk
        self.backend = keras.backend.backend()
        self.device = self._device()
        self.cases: dict[str, Any] = {}
        steady_state_fits()

    def _device(self) -> str:
        if self.backend == "jax":
            import jax

            return jax.devices()[0].platform
        if self.backend == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        return "cpu"

    def info(self, _: dict) -> dict:
        import mtmm_keras

        return {"framework": f"keras {self.keras.__version__} ({self.backend} backend)", "backend": self.backend,
                "device": self.device, "mtmm_keras": mtmm_keras.__version__, "backend_version": self._backend_version()}

    def _backend_version(self) -> str:
        module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(self.backend, self.backend)
        return __import__(module).__version__

    def peak(self, cmd: dict) -> dict:
        n = cmd["n"]
        if self.backend == "jax":
            import jax
            import jax.numpy as jnp

            a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
            b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
            f = jax.jit(lambda u, v: jnp.matmul(u, v, precision=jax.lax.Precision.HIGHEST))
            return {"flops_per_s": _time_matmul(lambda: f(a, b).block_until_ready(), n, cmd["reps"])}
        if self.backend == "tensorflow":
            import tensorflow as tf

            a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
            return {"flops_per_s": _time_matmul(lambda: tf.matmul(a, b).numpy(), n, cmd["reps"])}
        return {"flops_per_s": None}

    def build(self, case: str, compile_kwargs: dict) -> Any:
        return build_mtmm(self.mk, case, compile_kwargs)

    def prepare(self, cmd: dict) -> dict:
        case = cmd["case"]
        self.keras.utils.set_random_seed(0)
        if case in CASES:
            x, y = make_data(case, cmd["num_samples"])
            model = self.build(case, cmd.get("compile_kwargs") or {})
        else:  # the builders only benchmarks.backend_speed times (no PyTorch reference)
            from benchmarks import backend_speed

            x, y = backend_speed.make_data(case, cmd["num_samples"])
            model = backend_speed.build(case, self.mk, cmd.get("compile_kwargs") or {})
        self.cases[case] = (model, x, y, cmd)
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=cmd["batch_size"], epochs=cmd["epochs"], verbose=0)
        return {"warmup_s": time.perf_counter() - start, "loss": float(history.history["loss"][-1]),
                "train_flops_per_sample": training_flops_per_sample(model), "parameters": model.count_params(),
                "compile": {"steps_per_execution": model.steps_per_execution, "jit_compile": model.jit_compile}}

    def time(self, cmd: dict) -> dict:
        """Seconds for `fits` (default 1) consecutive `fit` calls of the prepared case."""
        model, x, y, spec = self.cases[cmd["case"]]
        start = time.perf_counter()
        for _ in range(cmd.get("fits", 1)):
            model.fit(x, y, batch_size=spec["batch_size"], epochs=spec["epochs"], verbose=0)
        return {"seconds": time.perf_counter() - start}

    def profile(self, cmd: dict) -> dict:
        """One timed run under the TensorFlow profiler, summarised from its XSpace trace.

        Reports the wall time, the time the Python thread spends inside the compiled training
        function (the rest is `fit`'s own work: data adapter, iterators, callbacks), the kernel
        time per op type on TensorFlow's compute threads and the number of op executions per step.
        """
        if self.backend != "tensorflow":
            return {"available": False, "why": f"op-level profile implemented for the TensorFlow backend only, not {self.backend}"}
        import collections
        import glob

        import tensorflow as tf
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

        spec = self.cases[cmd["case"]][-1]
        logdir = tempfile.mkdtemp(prefix="mtmm-tfprof-")
        tf.profiler.experimental.start(logdir)
        try:
            wall = self.time(cmd)["seconds"]
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
            space.ParseFromString(Path(path).read_bytes())
        shutil.rmtree(logdir, ignore_errors=True)
        op_ms: collections.Counter = collections.Counter()
        op_calls: collections.Counter = collections.Counter()
        in_graph_ms = data_ms = 0.0
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    ms = event.duration_ps / 1e9
                    if line.name == "python" and "__inference_multi_step_on_iterator" in name:
                        in_graph_ms += ms
                    elif line.name.startswith("tf_Compute") and ":" in name and "::" not in name:
                        op_type = name.rsplit(":", 1)[1]
                        op_ms[op_type] += ms
                        op_calls[op_type] += 1
                    elif line.name.startswith("tf_data") and ":" in name and "::" not in name:
                        data_ms += ms
        steps = spec["epochs"] * -(-spec["num_samples"] // spec["batch_size"])
        return {"wall_ms": wall * 1e3, "steps": steps, "in_compiled_steps_ms": in_graph_ms,
                "op_kernel_ms_total": sum(op_ms.values()), "tf_data_op_ms": data_ms,
                "op_calls_per_step": sum(op_calls.values()) / steps,
                "top_ops": [{"op": op, "ms": ms, "calls": op_calls[op]} for op, ms in op_ms.most_common(cmd.get("top", 10))]}


def worker_main(kind: str, device: str) -> int:
    """Serve JSON-line commands on stdin; answer on the original stdout (everything else goes to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker: Any = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if worker is None:
                worker = TorchWorker(device) if kind == "torch" else KerasWorker(device)
            result = {"ok": True, **getattr(worker, cmd["op"])(cmd)}
        except Exception as err:  # noqa: BLE001 - reported to the parent
            import traceback

            result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        proto.write(json.dumps(result) + "\n")
        if cmd["op"] == "exit":
            break
    return 0


class Worker:
    """Parent-side handle on one worker process."""

    def __init__(self, kind: str, device: str, env: dict[str, str], log_dir: str, label: str = ""):
        self.kind = label or kind
        self.log_path = Path(log_dir) / f"{self.kind}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.train_speed", "--worker", kind, "--device", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
            cwd=str(Path(__file__).resolve().parent.parent),
        )

    def call(self, op: str, **kwargs: Any) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} worker died; log tail:\n{self.log_path.read_text()[-3000:]}")
        result = json.loads(line)
        if not result.pop("ok"):
            raise RuntimeError(f"{self.kind} worker failed on {op}: {result['error']}\n{result['traceback']}")
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
        self._log.close()


# --- the parent: CLI start-up, peak, interleaved timing, report ----------------------------

def cli_startup(runs: int = 5) -> dict[str, Any]:
    """Wall time of `mtmm --help` and `mtmm zoo list` (the installed console script when there is one)."""
    script = Path(sys.executable).with_name("mtmm")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "mtmm_keras.cli"]
    env = dict(os.environ)
    results: dict[str, Any] = {"command": " ".join(base)}
    for label, args in (("mtmm --help", ["--help"]), ("mtmm zoo list", ["zoo", "list"])):
        times, rc = [], 0
        for _ in range(runs):
            start = time.perf_counter()
            proc = subprocess.run(base + args, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            rc = rc or proc.returncode
        results[label] = {**summarize(times), "returncode": rc}
    return results


def _proc_times(pid: int) -> list[int] | None:
    """utime, stime, cutime, cstime of a process in clock ticks (Linux /proc/PID/stat), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return [int(v) for v in fields[11:15]]
    except (OSError, IndexError, ValueError):
        return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process (all its threads) has used so far (Linux /proc), else None."""
    times = _proc_times(pid)
    return None if times is None else (times[0] + times[1]) / os.sysconf("SC_CLK_TCK")


def timed_run(workers: dict[str, "Worker"], name: str, case: str, settle_s: float,
              fits: int = 1) -> tuple[float, float | None]:
    """One timed run on worker `name`, after `settle_s` of quiet: `fits` consecutive fits. Returns the seconds
    per fit and the CPU seconds the *other* workers burned during the run (e.g. OpenMP threads still
    spin-waiting after their own run), which would be stolen from the side being timed."""
    if settle_s:
        time.sleep(settle_s)
    others = [w.proc.pid for other, w in workers.items() if other != name]
    before = [process_cpu_seconds(pid) for pid in others]
    seconds = workers[name].call("time", case=case, fits=fits)["seconds"] / fits
    after = [process_cpu_seconds(pid) for pid in others]
    if any(v is None for v in before + after):
        return seconds, None
    return seconds, sum(a - b for a, b in zip(after, before))


class ForeignLoad:
    """CPU used by processes other than this harness and its workers while it measures (Linux /proc).

    PyTorch's OpenMP threads in particular slow down sharply when another process takes a core, so
    a case measured while others were busy is flagged rather than silently reported.
    """

    def __init__(self, pids: Sequence[int]):
        self.pids = [os.getpid(), *pids]
        self.available = Path("/proc/stat").exists()
        self._start = self._sample() if self.available else None
        self._t0 = time.perf_counter()

    @staticmethod
    def _busy_jiffies() -> int:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        guest = sum(fields[8:10]) if len(fields) > 9 else 0  # guest time is already counted in user
        return sum(fields) - idle - guest

    def _own_jiffies(self) -> int:
        return sum(sum(times) for times in map(_proc_times, self.pids) if times is not None)

    def _sample(self) -> tuple[int, int]:
        return self._busy_jiffies(), self._own_jiffies()

    def cores(self) -> float | None:
        """Average number of cores the other processes kept busy since construction."""
        if not self.available or self._start is None:
            return None
        busy, own = self._sample()
        seconds = time.perf_counter() - self._t0
        foreign = (busy - self._start[0]) - (own - self._start[1])
        return max(0.0, foreign / os.sysconf("SC_CLK_TCK") / seconds)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"



class BusyMachine(RuntimeError):
    """Other processes hold the cores: the harness does not measure (without --allow-busy)."""


def _deepctr_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepctr_torch") is not None


def _default_backends(torch_device: str) -> list[str]:
    import importlib.util

    if torch_device == "cuda":
        return ["jax"]  # Keras on JAX (XLA) against PyTorch CUDA
    first = os.environ.get("KERAS_BACKEND", "tensorflow")
    backends = [first]
    if first != "jax" and importlib.util.find_spec("jax") is not None:
        backends.append("jax")
    return backends


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    cases = [c for c in args.cases.split(",") if c]
    for case in cases:
        if case not in CASES:
            raise SystemExit(f"--cases: unknown case {case!r}; choose from {', '.join(CASES)}")
    if "mmoe" in cases and not _deepctr_available():
        print("mmoe: skipped, DeepCTR-Torch is not installed (pip install deepctr-torch==0.3.0)", flush=True)
        cases.remove("mmoe")
    compile_kwargs = json.loads(args.mtmm_compile) if args.mtmm_compile else {}
    report: dict[str, Any] = {"machine": _machine(), "quick": bool(args.quick), "targets": TARGETS,
                              "mtmm_compile_overrides": compile_kwargs,
                              "command": " ".join(["python -m benchmarks.train_speed", *sys.argv[1:]])}
    probe = ForeignLoad([])
    time.sleep(args.busy_probe)
    report["other_processes_cores_at_start"] = busy = probe.cores()
    refusal = busy_refusal(busy, args.allow_busy, f"in the {args.busy_probe:g} s before the run")
    if refusal:
        raise BusyMachine(f"refusing to measure: {refusal}.")
    if busy is not None and busy > BUSY_CORES:
        print(f"warning (--allow-busy): other processes kept {busy:.2f} cores busy before starting; every ratio below "
              "is marked as measured on a busy machine.", flush=True)
    report["cli_startup"] = cli_startup(3 if args.quick else 5)
    for label in ("mtmm --help", "mtmm zoo list"):
        s = report["cli_startup"][label]
        print(f"{label:16s} start-up: median {s['median']:.3f} s (min {s['min']:.3f}, max {s['max']:.3f})", flush=True)

    log_dir = tempfile.mkdtemp(prefix="mtmm-train-speed-")
    base_env = dict(os.environ)
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workers: dict[str, Worker] = {}
    try:
        workers["torch"] = Worker("torch", args.device, base_env, log_dir)
        torch_info = workers["torch"].call("info")
        report["torch"] = torch_info
        backends = [b for b in args.backends.split(",") if b] or _default_backends(torch_info["device"])
        report["mtmm"] = {}
        for backend in backends:
            env = dict(base_env, KERAS_BACKEND=backend)
            if args.device == "cpu" or torch_info["device"] == "cpu":
                env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
            else:  # true fp32 on both sides: no TF32 matmuls (PyTorch's side sets allow_tf32=False)
                env.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
                env.setdefault("TF_ENABLE_TF32_EXECUTION", "0")
            workers[backend] = Worker("keras", args.device, env, log_dir, label=f"keras-{backend}")
            info = workers[backend].call("info")
            report["mtmm"][backend] = info
            if torch_info["device"] == "cuda" and info["device"] != "gpu":
                print(f"warning: PyTorch runs on CUDA but Keras/{backend} sees no GPU; that comparison is GPU vs CPU.")
        print(f"A = {torch_info['framework']} on {torch_info['device']} ({torch_info['threads']} threads); B = mtmm-keras "
              + ", ".join(f"{i['framework']} on {i['device']}" for i in report["mtmm"].values()), flush=True)

        n, reps = (1024, 5) if args.quick else (2048, 10)
        peaks = {name: w.call("peak", n=n, reps=reps)["flops_per_s"] for name, w in workers.items()}
        peak = max(v for v in peaks.values() if v)
        report["fp32_matmul_peak"] = {"flops_per_s": peak, "by_framework": peaks, "matrix": n}
        print(f"fp32 matmul peak ({n}x{n}, best of " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items() if v)
              + f" GFLOP/s): {peak / 1e9:.0f} GFLOP/s", flush=True)

        report["cases"] = {}
        for case in cases:
            entry = measure_case(workers, backends, case, dict(sizes[case]), args.repeats, args.settle, compile_kwargs,
                                 peak, args.allow_busy, fits_per_run=args.fits_per_run)
            if args.profile:
                entry["profile"] = {name: w.call("profile", case=case) for name, w in workers.items()}
            report["cases"][case] = entry
            print(_case_line(case, entry), flush=True)
            if entry.get("refused"):
                print(f"refused: {case}: {entry['refused']}", flush=True)
            elif entry.get("busy"):
                print(f"warning: other processes kept {entry['other_processes_cores']:.2f} of {os.cpu_count()} cores busy "
                      f"while {case} was timed (--allow-busy): these ratios are not a fair comparison.", flush=True)
    finally:
        for w in workers.values():
            w.close()
    shutil.rmtree(log_dir, ignore_errors=True)
    report["checks"] = _checks(report)
    report["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return report


def measure_case(workers: dict[str, Any], backends: Sequence[str], case: str, spec: dict, repeats: int, settle: float,
                 compile_kwargs: dict, peak: float, allow_busy: bool, foreign: Any = None,
                 fits_per_run: int = 1) -> dict[str, Any]:
    """Prepare `case` on every worker (its first run: set-up), time `repeats` runs per side interleaved
    (steady state), and summarise: samples/s, set-up vs steady time per side, mtmm/PyTorch ratios. Each
    timed run is `fits_per_run` consecutive fits (per-fit time: their mean), as in a loop of fits.

    `workers` maps "torch" and each backend to an object with `call(op, **kwargs)` and `proc.pid`;
    `foreign` makes the load sampler (`ForeignLoad` by default). When other processes kept more than
    `BUSY_CORES` busy meanwhile, the ratios are left out (`refused` says why) unless `allow_busy`, which
    reports them with `busy: True`."""
    foreign = foreign or ForeignLoad
    repeats = repeats or spec["repeats"]
    spec = {k: v for k, v in spec.items() if k != "repeats"}
    prepared = {"torch": workers["torch"].call("prepare", case=case, **spec)}
    for backend in backends:
        prepared[backend] = workers[backend].call("prepare", case=case, compile_kwargs=compile_kwargs, **spec)
    samples = spec["num_samples"] * spec["epochs"]
    times: dict[str, list[float]] = {name: [] for name in workers}
    stolen: dict[str, list[float | None]] = {name: [] for name in workers}
    load = foreign([w.proc.pid for w in workers.values()])
    for _ in range(repeats):  # interleaved: A B A B ... (B once per backend)
        for name in workers:
            seconds, others_cpu = timed_run(workers, name, case, settle, fits_per_run)
            times[name].append(seconds)
            stolen[name].append(others_cpu)
    other_cores = load.cores()
    refused = busy_refusal(other_cores, allow_busy, f"while {case} was timed")
    flops = prepared[backends[0]]["train_flops_per_sample"]
    entry: dict[str, Any] = {
        "setup": {**spec, "repeats": repeats, "samples_per_run": samples, "fits_per_run": fits_per_run},
        "other_processes_cores": other_cores,
        "busy": other_cores is not None and other_cores > BUSY_CORES,
        "train_flops_per_sample": flops,
        "torch_counted_train_flops_per_sample": prepared["torch"]["counted_train_flops_per_sample"],
        "parameters": {name: p["parameters"] for name, p in prepared.items()},
        "torch": _side(times["torch"], samples, flops, peak, stolen["torch"]),
        "mtmm": {},
    }
    entry["torch"]["setup_and_steady"] = setup_and_steady(prepared["torch"]["warmup_s"], times["torch"])
    if refused:
        entry["refused"] = refused
    for backend in backends:
        side = _side(times[backend], samples, flops, peak, stolen[backend])
        side["compile"] = prepared[backend]["compile"]
        side["setup_and_steady"] = setup_and_steady(prepared[backend]["warmup_s"], times[backend])
        side["ratio_over_torch"] = None if refused else ratio(side["samples_per_s"], entry["torch"]["samples_per_s"])
        entry["mtmm"][backend] = side
    return entry


def _side(seconds: list[float], samples: int, flops: int, peak: float,
          others_cpu: Sequence[float | None] = ()) -> dict[str, Any]:
    rate = summarize([samples / t for t in seconds])
    side = {"samples_per_s": rate, "seconds": seconds, "peak_fraction": rate["median"] * flops / peak if peak else None}
    known = [v for v in others_cpu if v is not None]
    if known:  # CPU seconds the idle workers used during this side's runs, per run
        side["other_workers_cpu_s_per_run"] = summarize(known)
    return side


def _range(s: dict) -> str:
    return f"{_fmt_rate(s['median'])} [{_fmt_rate(s['min'])}–{_fmt_rate(s['max'])}]"


def _case_line(case: str, entry: dict) -> str:
    def setup(side: dict) -> str:
        split = side.get("setup_and_steady")
        return f" (set-up {split['setup_s']:.2f} s)" if split else ""

    parts = [f"{case:16s} {_reference_name(case)} {_range(entry['torch']['samples_per_s'])}{setup(entry['torch'])}"]
    for backend, side in entry["mtmm"].items():
        value = side.get("ratio_over_torch")
        shown = "ratio not reported (busy)" if value is None else f"{value:.2f}x" + (" [busy]" if entry.get("busy") else "")
        parts.append(f"mtmm/{backend} {_range(side['samples_per_s'])}{setup(side)} = {shown}")
    return " | ".join(parts)


def _reference_name(case: str) -> str:
    return "DeepCTR-Torch" if case == "mmoe" else "torch"


def _check(value: float, op: str, target: float) -> dict[str, Any]:
    met = value >= target if op == ">=" else value <= target
    return {"value": value, "target": f"{op} {target}", "met": bool(met)}


def _checks(report: dict) -> dict[str, Any]:
    """Each target against its measured value; `contended` marks values measured while other processes were busy
    (with --allow-busy; without it those cases have no ratios and no checks)."""
    checks = _raw_checks(report)
    busy = {case: (e.get("other_processes_cores") or 0.0) > BUSY_CORES for case, e in report.get("cases", {}).items()}
    for name, check in checks.items():
        check["contended"] = any(flag for case, flag in busy.items() if case in name)
    return checks


def _raw_checks(report: dict) -> dict[str, Any]:
    cases = {case: e for case, e in report.get("cases", {}).items() if not e.get("refused")}
    checks: dict[str, Any] = {}
    for backend in report.get("mtmm", {}):
        if "mmoe" in cases:
            checks[f"mmoe mtmm/DeepCTR-Torch ({backend})"] = _check(
                cases["mmoe"]["mtmm"][backend]["ratio_over_torch"], ">=", TARGETS["mmoe_vs_deepctr_torch"])
        for case in ("hard_sharing", "soft_sharing"):
            if case in cases:
                checks[f"{case} mtmm/torch ({backend})"] = _check(
                    cases[case]["mtmm"][backend]["ratio_over_torch"], ">=", TARGETS[f"{case}_vs_torch"])
        if "joint_embedding" in cases:
            side = cases["joint_embedding"]["mtmm"][backend]
            checks[f"joint_embedding mtmm/torch ({backend})"] = _check(
                side["ratio_over_torch"], ">=", TARGETS["joint_embedding_vs_torch"])
            if backend == "tensorflow":
                checks[f"joint_embedding fraction of fp32 peak ({backend})"] = _check(
                    side["peak_fraction"], ">=", TARGETS["joint_embedding_peak_fraction_tensorflow"])
        if "hard_sharing" in cases and "soft_sharing" in cases:
            # time per sample, soft / hard = hard's samples/s / soft's samples/s
            checks[f"soft_sharing/hard_sharing time per sample ({backend})"] = _check(
                ratio(cases["hard_sharing"]["mtmm"][backend]["samples_per_s"],
                      cases["soft_sharing"]["mtmm"][backend]["samples_per_s"]),
                "<=", TARGETS["soft_over_hard_time_per_sample"])
    for label in ("mtmm --help", "mtmm zoo list"):
        s = report["cli_startup"][label]
        checks[f"start-up {label} (s)"] = _check(s["median"], "<=", TARGETS["cli_startup_s"])
        checks[f"start-up {label} (s)"]["met"] &= s["returncode"] == 0
    return checks


def print_table(report: dict) -> None:
    peak = report["fp32_matmul_peak"]["flops_per_s"]
    print()
    print(f"Training samples/s: median [min–max] of {'/'.join(str(e['setup']['repeats']) for e in report['cases'].values())} "
          f"interleaved runs; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s.")
    if report.get("quick"):
        print("--quick: short fits (2 epochs of 8 192 samples), each timed run a new `fit` of an already trained "
              "model; the first run's tracing/compiling is the set-up column. The full run gives the targets' ratios.")
    fits = {e["setup"].get("fits_per_run", 1) for e in report["cases"].values()}
    if fits != {1}:
        print(f"--fits-per-run {max(fits)}: each timed run is that many consecutive fits (per-fit time: their mean), "
              "as in a loop of fits; the pause comes only before the first.")
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    def setup(side: dict) -> str:
        split = side["setup_and_steady"]
        return f"{split['setup_s']:.2f} s / {split['steady_run_s']:.3f} s"

    print("| case | train FLOPs/sample | side | samples/s median [min–max] | set-up / steady run | mtmm / reference | % of fp32 peak |")
    print("|---|---|---|---|---|---|---|")
    for case, e in report["cases"].items():
        flops = f"{e['train_flops_per_sample'] / 1e6:.3g} M"
        t = e["torch"]
        reference = "DeepCTR-Torch MMOE" if case == "mmoe" else "PyTorch"
        print(f"| {case} | {flops} | {reference} ({report['torch']['device']}) | {_range(t['samples_per_s'])} | {setup(t)} | 1 | "
              f"{pct(t['peak_fraction'])} |")
        for backend, side in e["mtmm"].items():
            value = side["ratio_over_torch"]
            shown = "not reported (busy)" if value is None else f"**{value:.2f}×**" + (" (busy)" if e.get("busy") else "")
            print(f"| {case} | {flops} | mtmm, Keras/{backend} | {_range(side['samples_per_s'])} | {setup(side)} | "
                  f"{shown} | {pct(side['peak_fraction'])} |")
    print()
    for name, check in report["checks"].items():
        note = "  [measured while other processes were busy: not reliable]" if check.get("contended") else ""
        print(f"{'MET ' if check['met'] else 'MISS'} {name}: {check['value']:.3g} (target {check['target']}){note}")
    for case, e in report["cases"].items():
        for side, prof in e.get("profile", {}).items():
            if not prof.get("top_ops"):
                continue
            extra = (f", {prof['in_compiled_steps_ms']:.0f} ms inside the compiled steps, tf.data ops {prof['tf_data_op_ms']:.0f} ms"
                     if "in_compiled_steps_ms" in prof else "")
            total = prof.get("op_kernel_ms_total", prof.get("op_self_ms_total", 0.0))
            print(f"\nprofile {case} / {side}: wall {prof['wall_ms']:.0f} ms for {prof['steps']} steps{extra}; "
                  f"op time {total:.0f} ms, {prof['op_calls_per_step']:.0f} op calls per step")
            for op in prof["top_ops"]:
                print(f"    {op['ms']:8.1f} ms  {op['calls']:6d}x  {op['op']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller data and fewer repeats (about a minute on an idle 2-core machine)")
    parser.add_argument("--out", default="", help="where to write the JSON results (default: benchmarks/results/"
                                                    "train_speed.json, or train_speed_quick.json with --quick)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--backends", default="",
                        help="Keras backends for the mtmm side, comma-separated (default: $KERAS_BACKEND or tensorflow, "
                             "plus jax when installed; on a CUDA machine: jax)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per side (default: per case)")
    parser.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                        help="quiet pause before each timed run, so the previous side's threads (OpenMP spin-waits) "
                             "are idle (default: 0.5)")
    parser.add_argument("--fits-per-run", type=int, default=1, metavar="N",
                        help="consecutive fits per timed run, reported per fit (default 1: one fit after the pause). "
                             "N > 1 times a fit inside a loop of fits (hyper-parameter search, cross-validation), "
                             "where the cores have not gone idle since the previous fit")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA (PyTorch) + JAX GPU (Keras) when PyTorch sees a GPU, else CPU")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile one run per side (torch.profiler; TensorFlow's profiler) and print where the time goes")
    parser.add_argument("--mtmm-compile", default="", metavar="JSON",
                        help='extra keyword arguments for the builders, to compare levers, e.g. \'{"steps_per_execution": 1}\' '
                             "(default: none, i.e. the builders' own defaults)")
    parser.add_argument("--allow-busy", action="store_true",
                        help=f"measure and report ratios even when other processes keep more than {BUSY_CORES} cores "
                             "busy (default: refuse; every ratio is then marked as measured while busy)")
    parser.add_argument("--busy-probe", type=float, default=2.0, metavar="SECONDS",
                        help="how long to sample other processes' CPU use before starting (default: 2)")
    parser.add_argument("--worker", choices=("torch", "keras"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.device)
    if args.fits_per_run < 1:
        parser.error(f"--fits-per-run must be a positive integer, got {args.fits_per_run}")
    try:
        report = run(args)
    except BusyMachine as err:
        print(f"train_speed: {err}", file=sys.stderr)
        return 3
    except RuntimeError as err:
        print(f"train_speed: error: {err}", file=sys.stderr)
        return 2
    print_table(report)
    loop = f"_fits{args.fits_per_run}" if args.fits_per_run > 1 else ""
    out = Path(args.out or f"benchmarks/results/train_speed{'_quick' if args.quick else ''}{loop}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
