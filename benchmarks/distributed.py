"""Training past one device: samples/s on 1 and 2 replicas, the difference to one device, resume after a kill.

Run (the README's table): `.venv/bin/python -m benchmarks.distributed` (all options: `--help`; results go to
benchmarks/results/distributed.json and .md).

For hard sharing (an MLP, 2 tasks) and the joint embedding (two tabular towers, InfoNCE on in-batch negatives),
each engine trains the same initial weights on the same rows, unshuffled, `--epochs` epochs at global batch
`--batch`, once on one device and once on two replicas:
- `mirrored`: `tf.distribute.MirroredStrategy` over two logical CPU devices in one process;
- `jax`: Keras `DataParallel` over two XLA host devices in one process (`--xla_force_host_platform_device_count=2`);
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, two processes over 127.0.0.1 (`TF_CONFIG`); its
  one-device reference runs inside each worker while the other worker runs its own, so both sides share the cores.
Reported: samples/s (rows / median seconds of the epochs after the first, which also traces), its ratio 2-replica /
1-device measured side by side in one worker, the largest relative difference of the epoch losses and of the final
weights (largest |Δ| over the array's largest magnitude) against one device.
`resume`: hard sharing under `BackupAndRestore`, SIGKILLed at the end of epoch `--kill-after`, then relaunched:
wall time of the uninterrupted run, of the killed run and of the relaunch, and the final-weight difference.

On a 2-core CPU the two replicas share the same two cores, so no speed-up above ~1 is possible here: these rows
measure the engines' overhead and their exactness. A GPU or multi-host run needs one device per replica (e.g.
`MirroredStrategy()` over the visible GPUs, or one worker per host in `TF_CONFIG`) and a global batch grown with
the replica count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks import _local_processes as local_processes
from benchmarks.mtl_methods import ROOT, _write, machine

ENGINES = ("mirrored", "jax", "multi_worker", "resume")
CASES = ("hard_sharing", "joint_embedding")
DEFAULT_OUT = "benchmarks/results/distributed.json"

# Runs in each worker process: the device layout is set before the backend initialises.
_WORKER = r'''
import json, os, signal, statistics, sys, time
settings = json.loads(sys.argv[1])
engine = settings["engine"]
if engine == "mirrored":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
if engine == "multi_worker":
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op
import numpy as np
import keras
import mtmm_keras as mk

ROWS, BATCH, EPOCHS, WIDTH = settings["rows"], settings["batch"], settings["epochs"], settings["width"]

def data(case):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 32)).astype("float32")
    if case == "hard_sharing":
        return x, {"reg": x[:, :1] * 2.0 - x[:, 1:2], "cls": (x[:, 2] > 0).astype("int32")}
    noisy = lambda a: a + 0.3 * rng.normal(size=a.shape).astype("float32")
    return {"a": noisy(x), "b": noisy(x[:, ::-1])}, None

def build(case):
    if case == "hard_sharing":
        tasks = [mk.Task("reg", 1), mk.Task("cls", 2, loss="sparse_categorical_crossentropy")]
        return mk.builders.hard_sharing((32,), tasks, trunk_units=(WIDTH, WIDTH), steps_per_execution=1)
    encoders = {m: mk.encoders.tabular(32, (WIDTH,), input_name=m, name=f"{m}_encoder") for m in ("a", "b")}
    return mk.builders.joint_embedding(encoders, embedding_dim=64, loss="contrastive", steps_per_execution=1)

class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
    def on_train_begin(self, logs=None):
        self.seconds = []

def train(model, case, initial, **fit):
    model.set_weights(initial)
    x, y = data(case)
    timer = EpochTimes()
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[timer], **fit)
    steady = timer.seconds[1:] or timer.seconds
    return {"samples_per_s": ROWS / statistics.median(steady), "epoch_seconds": timer.seconds,
            "losses": [np.asarray(v, "float64").ravel().tolist() for v in history.history["loss"]], "weights": [w.tolist() for w in model.get_weights()]}

out = {}
if engine == "resume":
    keras.utils.set_random_seed(0)
    model = build("hard_sharing")
    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after BackupAndRestore saved this epoch
            if settings["mode"] == "killed" and epoch + 1 == settings["kill_after"]:
                os.kill(os.getpid(), signal.SIGKILL)
    x, y = data("hard_sharing")
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(settings["backup"]), Kill()])
    out["weights"] = [w.tolist() for w in model.get_weights()]
else:
    if engine == "mirrored":  # one strategy per process (two of them break Keras's all-reduce)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for case in settings["cases"]:
        keras.utils.set_random_seed(0)
        single = build(case)
        initial = single.get_weights()
        out[case] = {"one": train(single, case, initial)}
        if engine == "jax":
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
            model = build(case)
        else:
            with strategy.scope():
                model = build(case)
        out[case]["two"] = train(model, case, initial)
        if engine == "jax":
            keras.distribution.set_distribution(None)
print("RESULT" + json.dumps(out), flush=True)
'''


def _env(engine: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "",
           "KERAS_BACKEND": "jax" if engine == "jax" else "tensorflow"}
    env.pop("TF_CONFIG", None)
    if engine == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    return {**env, **(extra or {})}


def _start(settings: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(settings)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def relative_difference(a: Any, b: Any) -> float:
    """Largest |a − b| over the largest |a| (0 when both are zero)."""
    import numpy as np

    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))


def compare(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """Speed ratio and exactness of a 2-replica run against its one-device reference."""
    return {
        "samples_per_s_one": one["samples_per_s"],
        "samples_per_s_two": two["samples_per_s"],
        "speedup": two["samples_per_s"] / one["samples_per_s"],
        "loss_rel_diff": max(relative_difference(a, b) for a, b in zip(one["losses"], two["losses"])),
        "weight_rel_diff": max(relative_difference(a, b) for a, b in zip(one["weights"], two["weights"])),
    }


def run_engine(engine: str, settings: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One engine's cases: {case: compare(...)}, or {"error": ...}."""
    job = {**settings, "engine": engine}
    if engine == "multi_worker":
        ports = [f"127.0.0.1:{p}" for p in local_processes.free_ports(2)]
        workers = [
            _start(job, _env(engine, {"TF_CONFIG": json.dumps({"cluster": {"worker": ports},
                                                              "task": {"type": "worker", "index": i}})}))
            for i in range(2)
        ]
        raw = local_processes.results(workers, timeout)[0]  # the chief's view; both workers hold the same weights
    else:
        raw = local_processes.results([_start(job, _env(engine))], timeout)[0]
    return {case: compare(raw[case]["one"], raw[case]["two"]) for case in settings["cases"]}


def run_resume(settings: dict[str, Any], timeout: float, workdir: Path) -> dict[str, Any]:
    """Uninterrupted vs SIGKILLed-and-relaunched `BackupAndRestore` training: wall times and weight difference."""
    timings, weights = {}, {}
    for mode in ("full", "killed", "resumed"):
        backup = workdir / ("full_backup" if mode == "full" else "backup")
        job = {**settings, "engine": "resume", "mode": mode, "backup": str(backup)}
        start = time.perf_counter()
        worker = _start(job, _env("resume"))
        if mode == "killed":
            worker.communicate(timeout=timeout)
            if worker.returncode != -signal.SIGKILL:
                raise RuntimeError(f"the killed run ended with rc {worker.returncode}, not SIGKILL")
        else:
            weights[mode] = local_processes.results([worker], timeout)[0]["weights"]
        timings[f"{mode}_wall_s"] = time.perf_counter() - start
    return {
        **timings,
        "kill_after_epoch": settings["kill_after"],
        "epochs": settings["epochs"],
        "weight_rel_diff": max(relative_difference(a, b) for a, b in zip(weights["full"], weights["resumed"])),
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"Command: `python -m benchmarks.distributed {' '.join(report['argv'])}`".rstrip(), "",
             f"Machine: {report['machine'].get('cpu', '?')}, {report['machine'].get('cpus')} CPUs "
             f"(load average at start {report['machine'].get('load_average_at_start', ['?'])[0]})", "",
             f"{s['rows']} rows, global batch {s['batch']}, {s['epochs']} epochs, hidden width {s['width']}", "",
             "| engine | case | 1 device samples/s | 2 replicas samples/s | ratio | loss rel. diff | weight rel. diff |",
             "|---|---|---|---|---|---|---|"]
    for engine, cases in report["engines"].items():
        if engine == "resume":
            continue
        if "error" in cases:
            lines.append(f"| {engine} | (all) | — | — | — | failed: {cases['error'][:120]} | |")
            continue
        for case, r in cases.items():
            lines.append(f"| {engine} | {case} | {r['samples_per_s_one']:.0f} | {r['samples_per_s_two']:.0f} | "
                         f"{r['speedup']:.2f} | {r['loss_rel_diff']:.1e} | {r['weight_rel_diff']:.1e} |")
    resume = report["engines"].get("resume")
    if resume and "error" not in resume:
        lines += ["", f"Resume after SIGKILL (hard sharing, killed after epoch {resume['kill_after_epoch']} of "
                      f"{resume['epochs']}): uninterrupted {resume['full_wall_s']:.1f} s; killed run "
                      f"{resume['killed_wall_s']:.1f} s + relaunch {resume['resumed_wall_s']:.1f} s; final weights "
                      f"within {resume['weight_rel_diff']:.1e} (relative) of the uninterrupted run."]
    elif resume:
        lines += ["", f"Resume after SIGKILL: failed: {resume['error']}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated: {', '.join(ENGINES)}")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256, help="global batch (each of 2 replicas gets half)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=256, help="hidden units of the trunk / encoders")
    parser.add_argument("--kill-after", type=int, default=2, help="resume: SIGKILL at the end of this epoch")
    parser.add_argument("--timeout-s", type=float, default=1200.0, help="per worker process")
    parser.add_argument("--out", default=DEFAULT_OUT, help="a path ending .json (a .md table is written beside it)")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    cases = [c for c in args.cases.split(",") if c]
    for name, values, valid in (("--engines", engines, ENGINES), ("--cases", cases, CASES)):
        bad = [v for v in values if v not in valid]
        if bad or not values:
            parser.error(f"{name}: {bad or 'nothing given'}; valid: {', '.join(valid)}")
    if not args.out.endswith(".json"):
        parser.error(f"--out must end with .json, got {args.out!r}")
    if not 0 < args.kill_after < args.epochs:
        parser.error(f"--kill-after must be between 1 and --epochs - 1 ({args.epochs - 1}), got {args.kill_after}")
    settings = {"rows": args.rows, "batch": args.batch, "epochs": args.epochs, "width": args.width,
                "kill_after": args.kill_after, "cases": cases}
    report: dict[str, Any] = {"argv": list(sys.argv[1:] if argv is None else argv), "machine": machine(),
                              "settings": settings, "engines": {}}
    import tempfile

    for engine in engines:
        print(f"[distributed] {engine} ...", flush=True)
        try:
            if engine == "resume":
                with tempfile.TemporaryDirectory(prefix="mtmm_resume_") as workdir:
                    report["engines"][engine] = run_resume(settings, args.timeout_s, Path(workdir))
            else:
                report["engines"][engine] = run_engine(engine, settings, args.timeout_s)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            report["engines"][engine] = {"error": str(error)[-500:]}
    _write(report, args.out)
    table = markdown(report)
    Path(args.out).with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
