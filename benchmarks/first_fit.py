"""The first `fit` of a new model on TensorFlow, with the optimizer and metrics built before the first trace (what
mtmm does, `mtmm_keras/models/_build_before_tracing.py`) and built inside it (what Keras does outside a strategy:
TensorFlow then traces the training step twice).

Run: `.venv/bin/python -m benchmarks.first_fit [--repeats 3] [--out benchmarks/results/first_fit.json]`

Each measurement is a fresh process (TensorFlow imported, one model built, one `fit` of 2 epochs on 256 rows of
the reference data, batch 32, the builder's defaults: XLA for the experts and soft sharing), the two ways
interleaved; it prints the median seconds of that `fit`, the traces of `train_step` it made and the ratio.
XLA runs at its default optimisation level (users' setting; `make test` lowers it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUILDERS = ("hard_sharing", "soft_sharing", "mmoe", "ple")
WAYS = ("built_in_the_trace", "built_before")


def one(builder: str, way: str) -> dict[str, Any]:
    """One fresh-process measurement (run by `main` as `--one BUILDER WAY`)."""
    import mtmm_keras as mk
    from mtmm_keras.models import in_memory_fit

    real = in_memory_fit.build_before_tracing
    if way == "built_in_the_trace":
        in_memory_fit.build_before_tracing = lambda model, batch: False
    try:
        return _timed_fit(mk, builder)
    finally:
        in_memory_fit.build_before_tracing = real


def _timed_fit(mk: Any, builder: str) -> dict[str, Any]:
    x, y = mk.data.reference_multitask(256, seed=0)
    tasks = [mk.Task("a", 1, metrics=["mae"]), mk.Task("c", 2, loss="categorical_crossentropy", metrics=["accuracy"])]
    model = getattr(mk.builders, builder)((100,), tasks)
    traces, step = [], model.train_step

    def counted(*args: Any) -> Any:
        traces.append(1)
        return step(*args)

    model.train_step = counted
    start = time.perf_counter()
    model.fit(x, {"a": y["a"], "c": y["c"]}, epochs=2, batch_size=32, verbose=0)
    return {"seconds": time.perf_counter() - start, "traces": len(traces)}


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per builder and way (default 3)")
    parser.add_argument("--builders", default=",".join(BUILDERS), help=f"comma-separated, from {', '.join(BUILDERS)}")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--one", nargs=2, metavar=("BUILDER", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT" + json.dumps(one(*args.one)), flush=True)
        return {}
    builders = [b.strip() for b in args.builders.split(",") if b.strip()]
    unknown = [b for b in builders if b not in BUILDERS]
    if unknown or args.repeats < 1:
        parser.error(f"--builders: unknown {unknown}; choose from {', '.join(BUILDERS)}" if unknown
                     else "--repeats must be at least 1")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    runs: dict[str, dict[str, list[dict]]] = {b: {w: [] for w in WAYS} for b in builders}
    for repeat in range(args.repeats):
        for builder in builders:
            for way in (WAYS if repeat % 2 == 0 else WAYS[::-1]):
                result = subprocess.run([sys.executable, "-m", "benchmarks.first_fit", "--one", builder, way],
                                        capture_output=True, text=True, env=env, timeout=600)
                line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
                if result.returncode != 0 or line is None:
                    raise SystemExit(f"{builder}/{way} failed:\n{result.stderr[-3000:]}")
                runs[builder][way].append(json.loads(line[len("RESULT"):]))
                print(f"  {builder:13s} {way:19s} {runs[builder][way][-1]['seconds']:6.2f} s", flush=True)
    report = {"machine": {"cpu": _cpu(), "cpus": os.cpu_count()}, "repeats": args.repeats, "builders": {}}
    print(f"\nFirst fit on TensorFlow ({report['machine']['cpu']}, {os.cpu_count()} cores), median of {args.repeats}:")
    print("| builder | optimizer & metrics built in the trace | built before it (mtmm) | ratio |")
    print("|---|---|---|---|")
    for builder in builders:
        medians = {w: statistics.median(r["seconds"] for r in runs[builder][w]) for w in WAYS}
        traces = {w: runs[builder][w][0]["traces"] for w in WAYS}
        report["builders"][builder] = {"median_seconds": medians, "traces": traces, "runs": runs[builder]}
        print(f"| {builder} | {medians[WAYS[0]]:.2f} s ({traces[WAYS[0]]} traces) | {medians[WAYS[1]]:.2f} s "
              f"({traces[WAYS[1]]} trace{'s' if traces[WAYS[1]] != 1 else ''}) | "
              f"{medians[WAYS[0]] / medians[WAYS[1]]:.2f}× |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
