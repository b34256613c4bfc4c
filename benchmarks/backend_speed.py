"""Which backend trains each builder faster: JAX against TensorFlow, the builders `benchmarks.train_speed` does not pair
with a PyTorch reference (cross-stitch, CGC, PLE and the four fusion builders).

One worker process per backend (train_speed's workers, so the same `fit` and the same idle-machine rules) builds
each case, fits it once (set-up: tracing or compiling) and then times `--repeats` fits per side, interleaved
TF, JAX, TF, JAX, ... Reported per case: steady-state samples/s per backend and JAX / TensorFlow (above 1: JAX is
faster). The task models train on train_speed's hard-sharing data (100 features, heads of 1, 1 and 2 units); the
fusion models read those features as two modalities (60 and 40 columns), each through a tabular encoder.

    python -m benchmarks.backend_speed [--cases cgc,ple] [--quick] [--repeats 5] [--out PATH]

Writes `benchmarks/results/backend_speed.json` and prints a markdown table; refuses to report ratios when other
processes kept the cores busy (`--allow-busy` reports them, marked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks import train_speed

TASK_CASES = ("cross_stitch", "cgc", "ple")
FUSION_CASES = ("concat_fusion", "attention_fusion", "gated_fusion", "transformer_fusion")
CASES = TASK_CASES + FUSION_CASES
MODALITY_COLUMNS = {"left": 60, "right": 40}  # the 100 features, split in two modalities
BACKENDS = ("tensorflow", "jax")
FULL = {"num_samples": 16384, "batch_size": 256, "epochs": 4, "repeats": 5}
QUICK = {"num_samples": 8192, "batch_size": 256, "epochs": 2, "repeats": 3}


def make_data(case: str, num_samples: int, seed: int = 0) -> tuple[Any, dict[str, np.ndarray]]:
    """train_speed's hard-sharing arrays; a fusion case gets the features as {"left": 60 cols, "right": 40 cols}."""
    _check_case(case)
    x, y = train_speed.make_data("hard_sharing", num_samples, seed)
    if case in FUSION_CASES:
        split = MODALITY_COLUMNS["left"]
        x = {"left": x[:, :split], "right": x[:, split:]}
    return x, y


def build(case: str, mk: Any, compile_kwargs: dict | None = None) -> Any:
    """The case's model with the builder's defaults and train_speed's three regression heads."""
    _check_case(case)
    tasks = [mk.Task(name, units) for name, units in train_speed.TASK_UNITS.items()]
    builder = getattr(mk.builders, case)
    if case in TASK_CASES:
        return builder((train_speed.INPUT_DIM,), tasks, **(compile_kwargs or {}))
    encoders = {m: mk.encoders.tabular(cols, hidden_units=(64,), input_name=m, name=f"{m}_encoder")
                for m, cols in MODALITY_COLUMNS.items()}
    return builder(encoders, tasks, **(compile_kwargs or {}))


def _check_case(case: str) -> None:
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def measure(workers: dict[str, Any], case: str, spec: dict, repeats: int, settle: float, allow_busy: bool,
            foreign: Any = None) -> dict[str, Any]:
    """Prepare `case` on each backend's worker, time `repeats` interleaved fits per side, summarise.

    `workers` maps each backend to an object with `call(op, **kwargs)` and `proc.pid` (train_speed's `Worker`);
    `foreign` makes the load sampler (train_speed's `ForeignLoad` by default)."""
    foreign = foreign or train_speed.ForeignLoad
    prepared = {b: w.call("prepare", case=case, **spec) for b, w in workers.items()}
    times: dict[str, list[float]] = {b: [] for b in workers}
    load = foreign([w.proc.pid for w in workers.values()])
    for _ in range(repeats):
        for backend in workers:
            seconds, _ = train_speed.timed_run(workers, backend, case, settle)
            times[backend].append(seconds)
    other_cores = load.cores()
    refused = train_speed.busy_refusal(other_cores, allow_busy, f"while {case} was timed")
    samples = spec["num_samples"] * spec["epochs"]
    entry: dict[str, Any] = {"other_processes_cores": other_cores, "busy": bool(other_cores and other_cores > train_speed.BUSY_CORES),
                             "parameters": prepared[next(iter(prepared))]["parameters"], "backends": {}}
    for backend, seconds in times.items():
        entry["backends"][backend] = {
            "samples_per_s": train_speed.summarize([samples / s for s in seconds]),
            "setup_and_steady": train_speed.setup_and_steady(prepared[backend]["warmup_s"], seconds),
        }
    if refused:
        entry["refused"] = refused
    elif set(BACKENDS) <= set(times):
        entry["jax_over_tensorflow"] = train_speed.ratio(entry["backends"]["jax"]["samples_per_s"],
                                                         entry["backends"]["tensorflow"]["samples_per_s"])
    return entry


def markdown(report: dict[str, Any]) -> str:
    """One row per case: samples/s per backend (median), JAX / TensorFlow and which is faster."""
    lines = ["| builder | TensorFlow samples/s | JAX samples/s | JAX / TensorFlow | faster |", "|---|---|---|---|---|"]
    for case, entry in report["cases"].items():
        rates = {b: entry["backends"][b]["samples_per_s"]["median"] for b in entry["backends"]}
        value = entry.get("jax_over_tensorflow")
        faster = ("—" if value is None else "JAX" if value > 1.05 else "TensorFlow" if value < 1 / 1.05
                  else "neither (within 5 %)")
        shown = "refused (busy)" if entry.get("refused") else f"{value:.2f}" + (" (busy)" if entry.get("busy") else "")
        lines.append(f"| `{case}` | {rates.get('tensorflow', 0):,.0f} | {rates.get('jax', 0):,.0f} | {shown} | {faster} |")
    return "\n".join(lines)


def run(cases: Sequence[str], quick: bool, repeats: int | None, settle: float, allow_busy: bool) -> dict[str, Any]:
    """Start a worker per backend, measure every case, return the report."""
    spec = dict(QUICK if quick else FULL)
    default_repeats = spec.pop("repeats")
    repeats = repeats or default_repeats
    report: dict[str, Any] = {"machine": train_speed._machine(), "quick": quick, "setup": {**spec, "repeats": repeats},
                              "command": " ".join(["python -m benchmarks.backend_speed", *sys.argv[1:]]), "cases": {}}
    log_dir = tempfile.mkdtemp(prefix="mtmm-backend-speed-")
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workers: dict[str, Any] = {}
    try:
        for backend in BACKENDS:
            workers[backend] = train_speed.Worker("keras", "cpu", dict(env, KERAS_BACKEND=backend), log_dir,
                                                  label=f"keras-{backend}")
            report.setdefault("backends", {})[backend] = workers[backend].call("info")
        for case in cases:
            start = time.perf_counter()
            report["cases"][case] = entry = measure(workers, case, spec, repeats, settle, allow_busy)
            rates = ", ".join(f"{b} {e['samples_per_s']['median']:,.0f}/s" for b, e in entry["backends"].items())
            print(f"{case}: {rates}; JAX / TensorFlow {entry.get('jax_over_tensorflow', float('nan')):.2f}"
                  f"{' — ' + entry['refused'] if entry.get('refused') else ''} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    finally:
        for worker in workers.values():
            worker.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    report["machine"]["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, check them all, run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help=f"smaller runs: {QUICK} instead of {FULL}")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per backend and case (default: 5, quick 3)")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds of quiet before each timed fit (default 0.5)")
    parser.add_argument("--allow-busy", action="store_true", help="report ratios even when other processes were busy")
    parser.add_argument("--out", default="benchmarks/results/backend_speed.json", help="JSON path")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        parser.error(f"--cases: unknown case(s) {unknown or args.cases!r}; choose from {', '.join(CASES)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be a positive number of fits, got {args.repeats}")
    report = run(cases, args.quick, args.repeats, args.settle, args.allow_busy)
    print("\n" + markdown(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
