"""Multi-task architectures × loss-weighting / gradient-aggregation methods on the offline datasets.

Run (the README's table): `.venv/bin/python -m benchmarks.mtl_methods --datasets movies --max-train-rows 10000
--epochs 3 --seeds 0,1,2` (all options: `--help`; results go to benchmarks/results/mtl_methods.json and .md).

For every dataset, architecture (hard, soft, mmoe, ple, cgc, cross_stitch: `mk.builders.*` with their default
widths) and weighting method (`weighting=` name), each seed trains one model with the same recipe: the dataset's
encoder (below), Adam at the builder's default learning rate, batch 256, `--epochs` epochs, no early stopping, the
first `--max-train-rows` rows of the train split (TFDS's stored order, which is shuffled) and the whole test split
(or its first `--max-test-rows`). The seed sets the initial weights and the batch order, not the rows.

Single-task baselines use the same recipe: hard sharing with one task (one independent network per task, LibMTL's
"STL"), seeded the same way. Δm (LibMTL, Lin & Zhang 2023) of a run is
    Δm = (1/T) Σ_t (−1)^{l_t} (M_t − M_t^single) / M_t^single × 100 %,
with l_t = 1 where lower is better (RMSE) and M_t^single the single-task mean over the seeds; higher Δm is better.
Each row reports every task's test metric and Δm as mean ± std over the seeds, and the median seconds per epoch
(epochs after the first, which also traces and compiles; the first epoch alone when there is one).

Datasets and their metrics: `movies` (tabular [3] → Dense 32, title ids → Embedding 32 + mean pooling; tasks
rating (regression on the train-standardised rating; metric RMSE on the 1-10 scale, lower is better) and six
genres (binary cross-entropy; metric ROC AUC)); `multi_fashion` (uint8 image → `mk.encoders.image` with
filters (16, 32), flatten pooling, Dense 64; tasks left/right (10 classes; metric accuracy)).

A combination that cannot run (an architecture or method this checkout lacks, a build or fit error) becomes a
row that says so; the grid goes on. `--time-budget-s` stops starting new runs after that many seconds and
marks the rest "not run (time budget)". `--sklearn-baselines` instead fits scikit-learn gradient boosting on
movies' three tabular columns (the baselines quoted in `mtmm_keras/data/movies.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ARCHITECTURES = {  # option name -> mk.builders function name
    "hard": "hard_sharing",
    "soft": "soft_sharing",
    "mmoe": "mmoe",
    "ple": "ple",
    "cgc": "cgc",
    "cross_stitch": "cross_stitch",
}
DEFAULT_ARCHITECTURES = ("hard", "soft", "mmoe", "ple", "cross_stitch")
METHODS = ("static", "uncertainty", "dwa", "rlw", "gradnorm", "pcgrad", "cagrad", "mgda", "imtl", "nash_mtl", "upgrad")
DEFAULT_METHODS = ("static", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "mgda", "nash_mtl", "upgrad")
DATASETS = ("movies", "multi_fashion")
MOVIES_GENRES = ("action", "animation", "comedy", "drama", "documentary", "romance")
BATCH_SIZE = 256
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = "benchmarks/results/mtl_methods.json"


# --- pure pieces (unit-tested) ---------------------------------------------------------------

def parse_list(text: str, valid: Sequence[str], option: str) -> list[str]:
    """Split a comma-separated option value; raise ValueError naming the option and the valid values."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{option}: empty list; choose from {', '.join(valid)}.")
    unknown = [item for item in items if item not in valid]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {', '.join(valid)}.")
    return items


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; raise ValueError for anything that is not a list of distinct non-negative integers."""
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers such as 0,1,2, got {text!r}.") from None
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct non-negative integers such as 0,1,2, got {text!r}.")
    return seeds


def delta_m(metrics: dict[str, float], single: dict[str, float], lower_is_better: dict[str, bool]) -> float:
    """LibMTL's Δm in %: the mean over tasks of the relative gain over the single-task metric (sign-flipped
    for lower-is-better metrics). Positive: the multi-task model beats its single-task baselines on average."""
    if set(metrics) != set(single) or set(metrics) != set(lower_is_better):
        raise ValueError(f"delta_m: tasks differ: metrics {sorted(metrics)}, single {sorted(single)}, "
                         f"directions {sorted(lower_is_better)}.")
    gains = []
    for task, value in metrics.items():
        base = single[task]
        if base == 0:
            raise ValueError(f"delta_m: the single-task metric of {task!r} is 0; a relative gain is undefined.")
        sign = -1.0 if lower_is_better[task] else 1.0
        gains.append(sign * (value - base) / base)
    return 100.0 * sum(gains) / len(gains)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std: no values")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: Sequence[float], digits: int = 3) -> str:
    """"mean ± std" of the values ("–" when there are none)."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def summarize_rows(runs: list[dict[str, Any]], tasks: Sequence[str], lower_is_better: dict[str, bool]) -> list[dict]:
    """Group runs (dicts with dataset, architecture, method, seed, status, metrics, seconds_per_epoch) into one
    row per (dataset, architecture, method), adding Δm against the dataset's single-task runs."""
    single_runs = [r for r in runs if r["architecture"] == "single_task" and r["status"] == "ok"]
    single = {task: statistics.fmean(r["metrics"][task] for r in single_runs if task in r["metrics"])
              for task in tasks if any(task in r["metrics"] for r in single_runs)}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["architecture"], run["method"])
        row = rows.setdefault(key, {"architecture": key[0], "method": key[1], "seeds": [], "metrics": {t: [] for t in tasks},
                                    "delta_m": [], "seconds_per_epoch": [], "problems": []})
        if run["status"] != "ok":
            row["problems"].append(run["status"])
            continue
        row["seeds"].append(run["seed"])
        for task in tasks:
            if task in run["metrics"]:
                row["metrics"][task].append(run["metrics"][task])
        if run["seconds_per_epoch"] is not None:
            row["seconds_per_epoch"].append(run["seconds_per_epoch"])
        if run["architecture"] != "single_task" and set(single) == set(tasks) and set(run["metrics"]) == set(tasks):
            row["delta_m"].append(delta_m(run["metrics"], single, lower_is_better))
    return list(rows.values())


def markdown_table(dataset: str, rows: list[dict], tasks: Sequence[str], metric_names: dict[str, str]) -> str:
    """The markdown table of one dataset: one row per (architecture, method), mean ± std over seeds."""
    header = ["architecture", "method", "seeds", *[f"{t} {metric_names[t]}" for t in tasks], "Δm %", "s/epoch", "note"]
    lines = [f"**{dataset}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        note = ""
        if row["problems"]:
            unique = sorted(set(row["problems"]))
            note = "; ".join(p.replace("|", "/").replace("\n", " ")[:160] for p in unique)
        cells = [row["architecture"], row["method"], str(len(row["seeds"])),
                 *[fmt(row["metrics"][t]) for t in tasks],
                 "(reference)" if row["architecture"] == "single_task" else fmt(row["delta_m"], 2),
                 fmt(row["seconds_per_epoch"], 2), note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- data, models and one run -------------------------------------------------------------------

class Dataset:
    """Arrays, tasks, metrics and the encoder of one benchmark dataset."""

    def __init__(self, name: str, x_train: dict, y_train: dict, x_test: dict, y_test: dict, task_names: Sequence[str],
                 lower_is_better: dict[str, bool], metric_names: dict[str, str], make_tasks: Callable[[], list],
                 make_encoder: Callable[[], Any], score: Callable[[dict, dict], dict[str, float]]):
        self.name, self.x_train, self.y_train, self.x_test, self.y_test = name, x_train, y_train, x_test, y_test
        self.task_names, self.lower_is_better, self.metric_names = list(task_names), lower_is_better, metric_names
        self.make_tasks, self.make_encoder, self.score = make_tasks, make_encoder, score


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def load_dataset(name: str, data_dir: str | None, config: str, max_train_rows: int | None,
                 max_test_rows: int | None) -> Dataset:
    """Prepare (once) and load dataset `name`, and describe how the benchmark trains and scores it."""
    import keras

    import mtmm_keras as mk

    x_train, y_train = mk.data.load_numpy(name, "train", data_dir, limit=max_train_rows, config=config)
    x_test, y_test = mk.data.load_numpy(name, "test", data_dir, limit=max_test_rows, config=config)
    if name == "movies":
        mean, std = float(y_train["rating"].mean()), float(y_train["rating"].std())

        def targets(y: dict) -> dict:
            return {"rating": ((y["rating"] - mean) / std).astype(np.float32)[:, None],
                    **{g: y[g].astype(np.float32)[:, None] for g in MOVIES_GENRES}}

        def make_tasks() -> list:
            return [mk.Task("rating", 1, loss="mse")] + [mk.Task(g, 1, loss="binary_crossentropy") for g in MOVIES_GENRES]

        def make_encoder() -> Any:
            tabular = keras.Input((3,), name="tabular")
            title = keras.Input((x_train["title"].shape[1],), dtype="int32", name="title")
            words = keras.layers.Embedding(8192, 32, name="title_embedding")(title)
            features = keras.layers.Concatenate(name="features")([
                keras.layers.Dense(32, activation="relu", name="tabular_dense")(tabular),
                keras.layers.GlobalAveragePooling1D(name="title_pool")(words)])
            return keras.Model([tabular, title], features, name="movies_encoder")

        def score(pred: dict, y: dict) -> dict[str, float]:  # the metrics of the tasks in `pred`
            out = {g: _roc_auc(y[g], np.asarray(pred[g]).reshape(-1)) for g in MOVIES_GENRES if g in pred}
            if "rating" in pred:
                rating = np.asarray(pred["rating"]).reshape(-1) * std + mean
                out["rating"] = float(np.sqrt(np.mean((rating - y["rating"]) ** 2)))
            return out

        tasks = ["rating", *MOVIES_GENRES]
        return Dataset(name, x_train, targets(y_train), x_test, y_test, tasks,
                       {t: t == "rating" for t in tasks}, {t: "RMSE" if t == "rating" else "AUC" for t in tasks},
                       make_tasks, make_encoder, score)
    if name == "multi_fashion":
        def make_tasks() -> list:
            return [mk.Task(side, 10, loss="sparse_categorical_crossentropy") for side in ("left", "right")]

        def make_encoder() -> Any:
            return mk.encoders.image((28, 28, 1), filters=(16, 32), output_dim=64, rescale=1 / 255, pooling="flatten",
                                     input_dtype="uint8")

        def score(pred: dict, y: dict) -> dict[str, float]:  # the metrics of the tasks in `pred`
            return {side: float(np.mean(np.argmax(pred[side], axis=-1) == y[side])) for side in ("left", "right")
                    if side in pred}

        tasks = ["left", "right"]
        return Dataset(name, x_train, {k: v for k, v in y_train.items()}, x_test, y_test, tasks,
                       {t: False for t in tasks}, {t: "acc" for t in tasks}, make_tasks, make_encoder, score)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def restrict_tasks(data: Dataset, tasks: Sequence[str]) -> None:
    """Keep only `tasks` of `data` (in the dataset's order): models, single-task baselines, metrics and Δm."""
    keep = [t for t in data.task_names if t in tasks]
    make_all = data.make_tasks
    data.make_tasks = lambda: [t for t in make_all() if t.name in keep]
    data.task_names = keep
    data.lower_is_better = {t: data.lower_is_better[t] for t in keep}
    data.metric_names = {t: data.metric_names[t] for t in keep}


class _EpochTimer:
    """A Keras callback (made on demand, so importing this module needs no Keras) recording each epoch's seconds."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return Timer()


def availability(architecture: str, method: str) -> str | None:
    """Why (architecture, method) cannot run in this checkout, or None when both exist."""
    import mtmm_keras as mk

    if architecture != "single_task" and not hasattr(mk.builders, ARCHITECTURES[architecture]):
        return f"not available: mk.builders.{ARCHITECTURES[architecture]} does not exist in this checkout"
    names = mk.weighting.names() if hasattr(mk, "weighting") else ["static"]
    if method not in names:
        return f"not available: weighting {method!r} is not registered (mk.weighting.names(): {', '.join(names)})"
    return None


def run_one(data: Dataset, architecture: str, method: str, seed: int, epochs: int,
            tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """Train and score one model; failures come back as a status string instead of an exception."""
    import keras

    import mtmm_keras as mk

    record: dict[str, Any] = {"dataset": data.name, "architecture": architecture, "method": method, "seed": seed,
                              "status": "ok", "metrics": {}, "seconds_per_epoch": None, "epoch_seconds": []}
    problem = availability(architecture, method)
    if problem:
        record["status"] = problem
        return record
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    try:
        all_tasks = data.make_tasks()
        chosen = [t for t in all_tasks if tasks is None or t.name in tasks]
        builder = getattr(mk.builders, "hard_sharing" if architecture == "single_task" else ARCHITECTURES[architecture])
        model = builder(data.make_encoder(), chosen, weighting=method)
        y_train = {t.name: data.y_train[t.name] for t in chosen}
        timer = _EpochTimer()
        model.fit(data.x_train, y_train, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
        pred = model.predict(data.x_test, batch_size=2048, verbose=0)
        if not isinstance(pred, dict):
            pred = {chosen[0].name: pred}
        scores = data.score(pred, data.y_test)
        record["metrics"] = {t.name: scores[t.name] for t in chosen}
        seconds = timer.seconds
        record["epoch_seconds"] = seconds
        record["seconds_per_epoch"] = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
        if not all(math.isfinite(v) for v in record["metrics"].values()):
            record["status"] = f"diverged: non-finite test metric {record['metrics']}"
    except Exception as err:  # noqa: BLE001 - reported as a row, the grid goes on
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        record["status"] = f"failed: {type(err).__name__}: {first}"
        record["traceback"] = traceback.format_exc()
    record["wall_seconds"] = time.perf_counter() - start
    return record


# --- machine, report, main --------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """CPU model, core count, platform, Python, library versions, git commit and load at start."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        import keras
        import tensorflow as tf

        info["keras"], info["tensorflow"], info["backend"] = keras.__version__, tf.__version__, keras.backend.backend()
    except ImportError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def sklearn_baselines(data_dir: str | None, out: str) -> dict[str, Any]:
    """Gradient boosting (scikit-learn HistGradientBoosting, random_state 0) on movies' three raw tabular columns,
    the fixed 80/20 split: rating RMSE and each genre's ROC AUC (the baselines quoted in the builder's docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from mtmm_keras.data import movies, sources

    start = time.perf_counter()
    table = sources.movies_table()
    x = movies.raw_tabular(table)
    train, test = movies.random_split(len(x))
    rating = table["rating"]
    fit = HistGradientBoostingRegressor(random_state=0).fit(x[train], rating[train])
    result: dict[str, Any] = {
        "rating_rmse": float(np.sqrt(np.mean((fit.predict(x[test]) - rating[test]) ** 2))),
        "rating_rmse_of_train_mean": float(np.sqrt(np.mean((rating[train].mean() - rating[test]) ** 2))),
        "genre_auc": {}}
    for genre, column in zip(movies.GENRE_LABELS, movies.GENRES):
        clf = HistGradientBoostingClassifier(random_state=0).fit(x[train], table[column][train])
        result["genre_auc"][genre] = _roc_auc(table[column][test], clf.predict_proba(x[test])[:, 1])
    result["mean_genre_auc"] = statistics.fmean(result["genre_auc"].values())
    result["seconds"] = time.perf_counter() - start
    report = {"machine": machine(), "train_rows": len(train), "test_rows": len(test), "inputs": list(movies.TABULAR),
              "model": "HistGradientBoosting(random_state=0)", "results": result}
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    print(f"movies GBM baselines: rating RMSE {result['rating_rmse']:.3f} (train mean {result['rating_rmse_of_train_mean']:.3f}), "
          f"mean genre AUC {result['mean_genre_auc']:.3f} {json.dumps({k: round(v, 3) for k, v in result['genre_auc'].items()})}")
    print(f"wrote {out}")
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole grid: single-task baselines and every (architecture, method) for every seed, per dataset."""
    datasets = parse_list(args.datasets, DATASETS, "--datasets")
    architectures = parse_list(args.architectures, tuple(ARCHITECTURES), "--architectures")
    methods = parse_list(args.methods, METHODS, "--methods")
    seeds = parse_seeds(args.seeds)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}.")
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.mtl_methods", *(args.argv or [])]),
        "machine": machine(), "settings": {"datasets": datasets, "architectures": architectures, "methods": methods,
                                           "seeds": seeds, "epochs": args.epochs, "batch_size": BATCH_SIZE,
                                           "max_train_rows": args.max_train_rows, "max_test_rows": args.max_test_rows,
                                           "config": args.config, "tasks": args.tasks},
        "datasets": {}}
    load = report["machine"].get("load_average_at_start", (0.0,))[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} before starting: other processes share the CPU, so seconds/epoch are "
              "noisy (the metrics are not affected).", flush=True)
    started = time.perf_counter()
    for name in datasets:
        data = load_dataset(name, args.data_dir, args.config, args.max_train_rows, args.max_test_rows)
        if args.tasks:
            restrict_tasks(data, parse_list(args.tasks, data.task_names, f"--tasks (for {name})"))
        entry: dict[str, Any] = {"train_rows": len(next(iter(data.y_train.values()))),
                                 "test_rows": len(next(iter(data.y_test.values()))), "tasks": data.task_names,
                                 "lower_is_better": data.lower_is_better, "metric_names": data.metric_names, "runs": []}
        report["datasets"][name] = entry
        print(f"== {name}: {entry['train_rows']} train / {entry['test_rows']} test rows, tasks {data.task_names}",
              flush=True)
        plan = []
        for seed in seeds:  # seed-major: a run cut short by the time budget still has whole seeds
            plan += [("single_task", "static", seed, [task]) for task in data.task_names]
            plan += [(arch, method, seed, None) for arch in architectures for method in methods]
        for arch, method, seed, tasks in plan:
            if args.time_budget_s is not None and time.perf_counter() - started > args.time_budget_s:
                record = {"dataset": name, "architecture": arch, "method": method, "seed": seed, "metrics": {},
                          "seconds_per_epoch": None, "status": "not run (time budget)"}
            else:
                record = run_one(data, arch, method, seed, args.epochs, tasks)
            if arch == "single_task":
                record["task"] = tasks[0]
            entry["runs"].append(record)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in record["metrics"].items())
            spe = f"{record['seconds_per_epoch']:.2f} s/epoch" if record["seconds_per_epoch"] else ""
            print(f"  {arch:13s} {method:12s} seed {seed}: {record['status'] if record['status'] != 'ok' else shown} {spe}",
                  flush=True)
            _write(report, args.out)  # after every run: a grid cut short still leaves its results
        merged = _merge_single(entry["runs"], data.task_names)
        entry["rows"] = summarize_rows(merged, data.task_names, data.lower_is_better)
        entry["table"] = markdown_table(name, entry["rows"], data.task_names, data.metric_names)
        print("\n" + entry["table"] + "\n", flush=True)
    report["wall_seconds"] = time.perf_counter() - started
    _write(report, args.out)
    md = Path(args.out).with_suffix(".md")
    md.write_text(f"Command: `{report['command']}`\n\nMachine: {report['machine'].get('cpu', '?')}, "
                  f"{report['machine'].get('cpus')} CPUs (load average at start {load:.2f})\n\n"
                  + "\n\n".join(d["table"] for d in report["datasets"].values()) + "\n")
    print(f"wrote {args.out} and {md}")
    return report


def _merge_single(runs: list[dict], tasks: Sequence[str]) -> list[dict]:
    """Join the single-task runs of one seed into one record with every task's metric (for the table)."""
    merged, by_seed = [], {}
    for run in runs:
        if run["architecture"] != "single_task":
            merged.append(run)
            continue
        seed_record = by_seed.setdefault(run["seed"], {"architecture": "single_task", "method": "static",
                                                       "seed": run["seed"], "status": "ok", "metrics": {},
                                                       "seconds_per_epoch": None, "_seconds": {}})
        if run["status"] != "ok":
            seed_record["status"] = run["status"]
            continue
        seed_record["metrics"].update(run["metrics"])
        task = run.get("task", next(iter(run["metrics"]), None))
        seed_record["_seconds"].setdefault(task, []).append(run["seconds_per_epoch"])
    for record in by_seed.values():
        seconds = record.pop("_seconds")
        if seconds:  # all T networks, one epoch each (a task run in several merged parts: their mean)
            record["seconds_per_epoch"] = sum(statistics.fmean(values) for values in seconds.values())
    return [*by_seed.values(), *merged]


def merge_reports(paths: Sequence[str], out: str) -> dict[str, Any]:
    """One table per dataset from several reports' runs (grids run in parts, same settings): the single-task
    runs of every part are pooled (they are the same recipe and seeds), then rows and Δm are computed as in `run`.
    Refuses reports whose settings other than the architectures and methods differ."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("seeds", "epochs", "batch_size", "max_train_rows", "max_test_rows", "config", "tasks")
    first = {k: reports[0]["settings"].get(k) for k in keys}
    for path, report in zip(paths, reports):
        mine = {k: report["settings"].get(k) for k in keys}
        if mine != first:
            raise ValueError(f"--merge: {path} was run with {mine}, {paths[0]} with {first}; only grids run with the "
                             "same settings can share a table.")
    merged: dict[str, Any] = {"command": "python -m benchmarks.mtl_methods --merge " + " ".join(paths),
                              "parts": [r["command"] for r in reports], "settings": first, "datasets": {}}
    for report in reports:
        for name, entry in report["datasets"].items():
            target = merged["datasets"].setdefault(name, {k: entry[k] for k in ("tasks", "lower_is_better",
                                                                                 "metric_names", "train_rows",
                                                                                 "test_rows")} | {"runs": []})
            target["runs"] += entry["runs"]
    for name, entry in merged["datasets"].items():
        rows = summarize_rows(_merge_single(entry["runs"], entry["tasks"]), entry["tasks"], entry["lower_is_better"])
        order = {a: i for i, a in enumerate(["single_task", *ARCHITECTURES])}
        rows.sort(key=lambda r: (order.get(r["architecture"], 99), METHODS.index(r["method"])
                                 if r["method"] in METHODS else 99))
        entry["rows"] = rows
        entry["table"] = markdown_table(name, rows, entry["tasks"], entry["metric_names"])
    _write(merged, out)
    Path(out).with_suffix(".md").write_text(f"Command: `{merged['command']}`\n\nParts:\n"
                                            + "".join(f"- `{c}`\n" for c in merged["parts"]) + "\n"
                                            + "\n\n".join(d["table"] for d in merged["datasets"].values()) + "\n")
    return merged


def _write(report: dict, out: str) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = Path(out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="movies,multi_fashion", help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--architectures", default=",".join(DEFAULT_ARCHITECTURES),
                        help=f"comma-separated: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (at least 3 for a mean ± std)")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all of each dataset)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-train-rows", type=int, default=None, help="first N rows of the train split (default all)")
    parser.add_argument("--max-test-rows", type=int, default=None, help="first N rows of the test split (default all)")
    parser.add_argument("--config", default="full", help="dataset config: full (default) or small (tests)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default $MTMM_DATA_DIR or ~/.cache/mtmm_keras/datasets)")
    parser.add_argument("--time-budget-s", type=float, default=None, help="start no new run after this many seconds")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--merge", nargs="+", default=None, metavar="REPORT",
                        help="instead of running: one table per dataset from these reports (grids run in parts)")
    parser.add_argument("--sklearn-baselines", action="store_true",
                        help="only fit the scikit-learn GBM baselines of movies (to benchmarks/results/mtl_methods_sklearn_baselines.json)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.merge:
        try:
            merged = merge_reports(args.merge, args.out)
        except (ValueError, OSError, KeyError) as err:
            parser.error(f"--merge: {err}")
        print("\n\n".join(d["table"] for d in merged["datasets"].values()))
        return 0
    if args.sklearn_baselines:
        out = args.out if args.out != DEFAULT_OUT else "benchmarks/results/mtl_methods_sklearn_baselines.json"
        sklearn_baselines(args.data_dir, out)
        return 0
    try:
        run(args)
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
