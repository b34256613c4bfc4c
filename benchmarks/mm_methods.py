"""Multi-modal methods compared: fusion designs with modalities missing, retrieval losses, loss step time vs open_clip.

Run (the README's table): `.venv/bin/python -m benchmarks.mm_methods` (all options: `--help`; results go to
benchmarks/results/mm_methods.json and .md).

**Fusion** (`--datasets av_digits,mfeat,movies`): every design in `--fusions` (attention, concat, gated, transformer:
`mk.builders.<design>_fusion`) is trained with the zoo entry's recipe for that dataset (`av_digits_fusion`,
`mfeat_fusion`; movies: the `movies_mmoe` encoders with its six genre tasks), the builder swapped, once per
`--modality-dropout` rate p (every model has the `modality_mask` input, so p = 0 shows what happens to a model never
trained with a modality missing) and seed. Each trained model is scored on the test split with every modality
present, then with one modality masked out at a time (the same model, `modality_mask` column set to 0 and that
input replaced by zeros). Beside them: one single-modality model per modality (the zoo's baseline recipe: that
encoder + hard sharing), same fit settings. Metric: accuracy (av_digits, mfeat), mean ROC AUC of the genres (movies).

**Retrieval** (`--losses`): the `av_digits_retrieval` recipe (image and audio towers, 64-d cosine space) trained with
each loss (max-margin, hardest-negative, InfoNCE at the fixed τ = 0.07, CLIP with its learned τ, SigLIP), digits as
group ids; scored on the whole test split with `mk.retrieval.cross_modal_metrics` (same digit = relevant):
Recall@1/5 in both directions and mAP.

**Loss step time** (`--loss-batches`, `--loss-dim`): value + gradient of the CLIP and SigLIP losses on the same
random unit-norm embeddings, ours (TensorFlow `tf.function`, and JAX `jit` when installed) against open_clip_torch
3.3's `ClipLoss` / `SigLipLoss` (torch, CPU), median of `--loss-repeats` calls after 5 warm-up calls, side by side
in one run; JAX and torch each time in a process of their own (torch beside a loaded TensorFlow runs slower).

Everything is mean ± std over `--seeds`. Timings share the machine with whatever else runs on it: the load average
at the start is recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks import _local_processes as local_processes
from benchmarks.mtl_methods import ROOT, _EpochTimer, _roc_auc, _write, fmt, machine, parse_list, parse_seeds

FUSIONS = ("attention", "concat", "gated", "transformer")
DATASETS = ("av_digits", "mfeat", "movies")
LOSSES = ("max_margin", "hardest_negative", "contrastive", "clip", "siglip")
MOVIES_GENRES = ("action", "animation", "comedy", "drama", "documentary", "romance")
BASE_ENTRY = {"av_digits": "av_digits_fusion", "mfeat": "mfeat_fusion", "movies": "movies_mmoe"}
DEFAULT_OUT = "benchmarks/results/mm_methods.json"


# --- recipes and data ---------------------------------------------------------------------------

def fusion_recipe(dataset: str, fusion: str, modality_dropout: float, seed: int, epochs: int | None) -> dict[str, Any]:
    """The zoo entry's recipe for `dataset` with the builder swapped for `<fusion>_fusion` (mask input on)."""
    from mtmm_keras.zoo import registry as zoo_registry

    recipe = copy.deepcopy(zoo_registry.recipe(BASE_ENTRY[dataset]))
    kwargs = {"fusion_dim": 64, "dropout": 0.2} if dataset == "movies" else dict(recipe.get("builder_kwargs", {}))
    recipe.update(builder=f"{fusion}_fusion",
                  builder_kwargs={**kwargs, "modality_dropout": modality_dropout, "modality_mask": True})
    if dataset == "movies":
        recipe["tasks"] = [t for t in recipe["tasks"] if t["name"] in MOVIES_GENRES]
    recipe["fit"] = {**recipe["fit"], "seed": seed, **({"epochs": epochs} if epochs else {})}
    return recipe


def retrieval_recipe(loss: str, seed: int, epochs: int | None) -> dict[str, Any]:
    from mtmm_keras.zoo import registry as zoo_registry

    recipe = copy.deepcopy(zoo_registry.recipe("av_digits_retrieval"))
    recipe["builder_kwargs"] = {**recipe.get("builder_kwargs", {}), "loss": loss}
    recipe.pop("loss_config", None)
    recipe["fit"] = {**recipe["fit"], "seed": seed, **({"epochs": epochs} if epochs else {})}
    return recipe


def load_split(dataset: str, split: str, limit: int | None, data_dir: str | None) -> tuple[dict, dict]:
    import mtmm_keras as mk

    return mk.data.load_numpy(dataset, split, data_dir, limit=limit)


def targets(dataset: str, y: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if dataset == "movies":
        return {g: y[g].astype("float32")[:, None] for g in MOVIES_GENRES}
    return {"digit": y["digit"]}


def score(dataset: str, pred: dict[str, Any], y: dict[str, np.ndarray]) -> float:
    """Accuracy of the digit (av_digits, mfeat) or mean genre ROC AUC (movies)."""
    if dataset == "movies":
        return float(np.mean([_roc_auc(y[g], np.asarray(pred[g]).reshape(-1)) for g in MOVIES_GENRES]))
    return float(np.mean(np.argmax(np.asarray(pred["digit"]), axis=-1) == y["digit"]))


def masked_inputs(x: dict[str, np.ndarray], modalities: Sequence[str], missing: str | None) -> dict[str, np.ndarray]:
    """`x` plus its `modality_mask` (columns in `modalities` order); the `missing` modality's column is 0 and its
    input zeros, as a device would send for a broken sensor."""
    rows = len(next(iter(x.values())))
    mask = np.ones((rows, len(modalities)), "float32")
    out = dict(x)
    if missing is not None:
        mask[:, list(modalities).index(missing)] = 0.0
        out[missing] = np.zeros_like(x[missing])
    out["modality_mask"] = mask
    return out


# --- one run each ---------------------------------------------------------------------------------

def _fit(model: Any, recipe: dict[str, Any], x: dict, y: Any) -> list[float]:
    from mtmm_keras.zoo import recipes as zoo_recipes

    fit = recipe["fit"]
    timer = _EpochTimer()
    with zoo_recipes.seeded(fit["seed"]):
        model.fit(x, y, batch_size=fit["batch_size"], epochs=fit["epochs"], shuffle=True, verbose=0, callbacks=[timer])
    return timer.seconds


def _guarded(record: dict[str, Any], body: Callable[[], None]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        body()
    except Exception as err:  # noqa: BLE001 - reported as a row, the grid goes on
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        record["status"] = f"failed: {type(err).__name__}: {first}"
        record["traceback"] = traceback.format_exc()
    record["wall_seconds"] = time.perf_counter() - start
    return record


def run_fusion(dataset: str, fusion: str, p: float, seed: int, data: dict, epochs: int | None) -> dict[str, Any]:
    """Train one fusion model and score it with all modalities and with each one missing."""
    import keras

    from mtmm_keras.zoo import recipes as zoo_recipes

    record: dict[str, Any] = {"dataset": dataset, "model": fusion, "modality_dropout": p, "seed": seed, "status": "ok",
                              "scores": {}}

    def body() -> None:
        keras.backend.clear_session()
        recipe = fusion_recipe(dataset, fusion, p, seed, epochs)
        modalities = list(recipe["encoders"])
        model = zoo_recipes.build(recipe)
        seconds = _fit(model, recipe, data["x_train"], targets(dataset, data["y_train"]))
        record["seconds_per_epoch"] = statistics.median(seconds[1:] or seconds)
        for missing in [None, *modalities]:
            x = masked_inputs(data["x_test"], modalities, missing)
            pred = model.predict(x, batch_size=512, verbose=0)
            record["scores"]["all" if missing is None else f"no {missing}"] = score(dataset, pred, data["y_test"])

    return _guarded(record, body)


def run_single(dataset: str, modality: str, seed: int, data: dict, epochs: int | None) -> dict[str, Any]:
    """The dedicated one-modality model (the zoo's baseline recipe) for `modality`."""
    import keras

    from mtmm_keras.zoo import recipes as zoo_recipes

    record: dict[str, Any] = {"dataset": dataset, "model": f"only {modality}", "modality_dropout": None, "seed": seed,
                              "status": "ok", "scores": {}}

    def body() -> None:
        keras.backend.clear_session()
        recipe = fusion_recipe(dataset, "attention", 0.0, seed, epochs)
        model = zoo_recipes.build(recipe, modalities=[modality])
        seconds = _fit(model, recipe, {modality: data["x_train"][modality]}, targets(dataset, data["y_train"]))
        record["seconds_per_epoch"] = statistics.median(seconds[1:] or seconds)
        pred = model.predict({modality: data["x_test"][modality]}, batch_size=512, verbose=0)
        if not isinstance(pred, dict):
            pred = {"digit": pred}
        record["scores"]["only"] = score(dataset, pred, data["y_test"])

    return _guarded(record, body)


def run_retrieval(loss: str, seed: int, data: dict, epochs: int | None) -> dict[str, Any]:
    import keras

    import mtmm_keras as mk
    from mtmm_keras.zoo import recipes as zoo_recipes

    record: dict[str, Any] = {"loss": loss, "seed": seed, "status": "ok", "scores": {}}

    def body() -> None:
        keras.backend.clear_session()
        recipe = retrieval_recipe(loss, seed, epochs)
        model = zoo_recipes.build(recipe)
        seconds = _fit(model, recipe, data["x_train"], data["y_train"][recipe["group_label"]])
        record["seconds_per_epoch"] = statistics.median(seconds[1:] or seconds)
        embeddings = model.predict(data["x_test"], batch_size=512, verbose=0)
        metrics = mk.retrieval.cross_modal_metrics(embeddings, group_ids=data["y_test"][recipe["group_label"]],
                                                   ks=(1, 5))
        record["scores"] = metrics
        if loss in ("clip", "siglip"):
            record["learned"] = {w.path: float(np.asarray(w.numpy()).reshape(-1)[0]) for w in model.weights
                                 if "logit_scale" in w.path or "logit_bias" in w.path}

    return _guarded(record, body)


# --- loss step time against open_clip --------------------------------------------------------------

def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):  # tracing / compiling; torch's CPU kernels also take ~3 calls to settle
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def loss_step_times(batches: Sequence[int], dim: int, repeats: int) -> list[dict[str, Any]]:
    """ms per value + gradient call of CLIP and SigLIP: ours (TF, JAX when present) and open_clip's (torch)."""
    import tensorflow as tf

    from mtmm_keras.losses.clip import clip_loss, siglip_loss

    rows = []
    for batch in batches:
        rng = np.random.default_rng(batch)
        a, b = (rng.normal(size=(batch, dim)).astype("float32") for _ in range(2))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        for kind, ours, scale, bias in (("clip", clip_loss, 1 / 0.07, None), ("siglip", siglip_loss, 10.0, -10.0)):
            row: dict[str, Any] = {"loss": kind, "batch": batch, "dim": dim}
            ta, tb = tf.Variable(a), tf.Variable(b)
            ids = tf.range(batch)

            @tf.function(jit_compile=False)
            def tf_step(ta=ta, tb=tb, ours=ours, scale=scale, bias=bias):
                with tf.GradientTape() as tape:
                    value = tf.reduce_mean(ours(ids, tf.matmul(ta, tb, transpose_b=True), scale, bias))
                return value, tape.gradient(value, [ta, tb])

            row["tensorflow_ms"] = _median_ms(lambda: [t.numpy() for t in tf.nest.flatten(tf_step())], repeats)
            row["jax_ms"] = _jax_ms(kind, a, b, scale, bias, repeats)
            row["open_clip_ms"] = _open_clip_ms(kind, a, b, scale, bias, repeats)
            if row["open_clip_ms"]:
                row["tensorflow_vs_open_clip"] = row["tensorflow_ms"] / row["open_clip_ms"]
                if row["jax_ms"]:
                    row["jax_vs_open_clip"] = row["jax_ms"] / row["open_clip_ms"]
            rows.append(row)
    return rows


def _jax_ms(kind: str, a: np.ndarray, b: np.ndarray, scale: float, bias: float | None, repeats: int) -> float | None:
    """Our loss's pure math on JAX arrays (keras.ops dispatches on the array type), jitted; None without JAX."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        return None

    # keras.ops follows the process's backend, so JAX runs in its own process with KERAS_BACKEND=jax
    script = (
        "import json,sys,time,statistics,numpy as np,jax,jax.numpy as jnp\n"
        "from mtmm_keras.losses.clip import clip_loss, siglip_loss\n"
        "kind, n, d, scale, bias, repeats = json.loads(sys.argv[1])\n"
        "rng = np.random.default_rng(n); a, b = (rng.normal(size=(n, d)).astype('float32') for _ in range(2))\n"
        "a /= np.linalg.norm(a, axis=1, keepdims=True); b /= np.linalg.norm(b, axis=1, keepdims=True)\n"
        "fn = clip_loss if kind == 'clip' else siglip_loss\n"
        "ids = jnp.arange(n)\n"
        "step = jax.jit(jax.value_and_grad(lambda a, b: jnp.mean(fn(ids, a @ b.T, scale, bias)), argnums=(0, 1)))\n"
        "a, b = jnp.asarray(a), jnp.asarray(b)\n"
        "for _ in range(5): jax.block_until_ready(step(a, b))\n"
        "ts = []\n"
        "for _ in range(repeats):\n"
        "    t = time.perf_counter(); jax.block_until_ready(step(a, b)); ts.append(time.perf_counter() - t)\n"
        "print('RESULT' + json.dumps(1000 * statistics.median(ts)))\n"
    )
    return _timed_in_own_process(script, [kind, len(a), a.shape[1], scale, bias, repeats],
                                 {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"})


def _timed_in_own_process(script: str, settings: list, env: dict[str, str]) -> float | None:
    """Run a timing `script` (argv[1] = json `settings`) in a fresh process; the ms it printed, or None if it failed."""
    import subprocess

    worker = subprocess.Popen([sys.executable, "-c", script, json.dumps(settings)], cwd=ROOT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        return float(local_processes.results([worker], timeout=1200)[0])
    except (RuntimeError, subprocess.TimeoutExpired):
        return None


def _open_clip_ms(kind: str, a: np.ndarray, b: np.ndarray, scale: float, bias: float | None,
                  repeats: int) -> float | None:
    """open_clip's loss in its own process (torch beside a running TensorFlow runs several times slower); None
    without open_clip_torch or torch."""

    from benchmarks.open_clip_reference import load_open_clip_losses

    if load_open_clip_losses() is None:
        return None
    script = (
        "import json,sys,time,statistics,numpy as np,torch\n"
        "from benchmarks.open_clip_reference import load_open_clip_losses\n"
        "kind, n, d, scale, bias, repeats = json.loads(sys.argv[1])\n"
        "rng = np.random.default_rng(n); a, b = (rng.normal(size=(n, d)).astype('float32') for _ in range(2))\n"
        "a /= np.linalg.norm(a, axis=1, keepdims=True); b /= np.linalg.norm(b, axis=1, keepdims=True)\n"
        "ref = load_open_clip_losses()\n"
        "fn = ref.ClipLoss() if kind == 'clip' else ref.SigLipLoss()\n"
        "ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))\n"
        "extra = [torch.tensor(scale)] + ([] if bias is None else [torch.tensor(bias)])\n"
        "def step():\n"
        "    ta.grad = tb.grad = None; fn(ta, tb, *extra).backward()\n"
        "for _ in range(5): step()\n"
        "ts = []\n"
        "for _ in range(repeats):\n"
        "    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)\n"
        "print('RESULT' + json.dumps(1000 * statistics.median(ts)))\n"
    )
    return _timed_in_own_process(script, [kind, len(a), a.shape[1], scale, bias, repeats], {})


# --- tables, main ----------------------------------------------------------------------------------

def fusion_table(dataset: str, runs: list[dict[str, Any]]) -> str:
    """One row per (design, modality dropout): score with all modalities and with each one missing, mean ± std."""
    conditions: list[str] = []
    for run in runs:
        for key in run["scores"]:
            if key not in conditions and key != "only":
                conditions.append(key)
    metric = "mean genre AUC" if dataset == "movies" else "accuracy"
    header = ["model", "modality dropout", "seeds", *conditions, "alone", "s/epoch", "note"]
    lines = [f"**{dataset}** ({metric})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["modality_dropout"]), []).append(run)
    for (model, p), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        problems = sorted({r["status"] for r in members if r["status"] != "ok"})
        alone = fmt([r["scores"]["only"] for r in ok if "only" in r["scores"]])
        cells = [fmt([r["scores"][c] for r in ok if c in r["scores"]]) for c in conditions] + [alone]
        lines.append("| " + " | ".join([model, "–" if p is None else f"{p:g}", str(len(ok)), *cells,
                                        fmt([r["seconds_per_epoch"] for r in ok if r.get("seconds_per_epoch")], 1),
                                        "; ".join(problems)[:160]]) + " |")
    return "\n".join(lines)


def retrieval_table(runs: list[dict[str, Any]]) -> str:
    columns = ["image_to_audio_recall_at_1", "image_to_audio_recall_at_5", "audio_to_image_recall_at_1",
               "audio_to_image_recall_at_5", "image_to_audio_map", "audio_to_image_map"]
    titles = ["image→audio R@1", "image→audio R@5", "audio→image R@1", "audio→image R@5", "image→audio mAP",
              "audio→image mAP"]
    header = ["loss", "seeds", *titles, "s/epoch", "note"]
    lines = ["**av_digits retrieval** (same digit = relevant)", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for loss in dict.fromkeys(r["loss"] for r in runs):
        members = [r for r in runs if r["loss"] == loss]
        ok = [r for r in members if r["status"] == "ok"]
        problems = sorted({r["status"] for r in members if r["status"] != "ok"})
        cells = [fmt([r["scores"][c] for r in ok if c in r["scores"]]) for c in columns]
        lines.append("| " + " | ".join([loss, str(len(ok)), *cells,
                                        fmt([r["seconds_per_epoch"] for r in ok if r.get("seconds_per_epoch")], 1),
                                        "; ".join(problems)[:160]]) + " |")
    return "\n".join(lines)


def loss_time_table(rows: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    lines = ["**Loss value + gradient, ms per call** (median)", "",
             "| loss | batch | dim | ours, TensorFlow | ours, JAX | open_clip (torch) | TF / open_clip | JAX / open_clip |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['batch']} | {r['dim']} | {ms(r['tensorflow_ms'])} | {ms(r['jax_ms'])} | "
                     f"{ms(r['open_clip_ms'])} | {r.get('tensorflow_vs_open_clip', float('nan')):.2f} | "
                     f"{r.get('jax_vs_open_clip', float('nan')):.2f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    datasets = parse_list(args.datasets, DATASETS, "--datasets") if args.datasets else []
    fusions = parse_list(args.fusions, FUSIONS, "--fusions")
    losses = parse_list(args.losses, LOSSES, "--losses") if args.losses else []
    seeds = parse_seeds(args.seeds)
    rates = [float(v) for v in args.modality_dropout.split(",") if v.strip()]
    if not rates or any(not 0.0 <= p < 1.0 for p in rates):
        raise ValueError(f"--modality-dropout: rates in [0, 1) such as 0,0.3, got {args.modality_dropout!r}.")
    batches = [int(v) for v in args.loss_batches.split(",") if v.strip()] if args.loss_batches else []
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.mm_methods", *(args.argv or [])]), "machine": machine(),
        "settings": {"datasets": datasets, "fusions": fusions, "modality_dropout": rates, "losses": losses,
                     "seeds": seeds, "epochs": args.epochs, "max_train_rows": args.max_train_rows,
                     "loss_batches": batches, "loss_dim": args.loss_dim},
        "fusion": {}, "retrieval": [], "loss_time": []}
    started = time.perf_counter()
    for dataset in datasets:
        x_train, y_train = load_split(dataset, "train", args.max_train_rows, args.data_dir)
        x_test, y_test = load_split(dataset, "test", None, args.data_dir)
        data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        runs = report["fusion"].setdefault(dataset, [])
        modalities = list(fusion_recipe(dataset, "attention", 0.0, 0, None)["encoders"])
        for seed in seeds:
            plan = [("single", m, None) for m in modalities] + [("fusion", f, p) for f in fusions for p in rates]
            for kind, what, p in plan:
                record = (run_single(dataset, what, seed, data, args.epochs) if kind == "single"
                          else run_fusion(dataset, what, p, seed, data, args.epochs))
                runs.append(record)
                shown = ", ".join(f"{k} {v:.3f}" for k, v in record["scores"].items())
                print(f"  {dataset} {record['model']:>12s} p={p} seed {seed}: "
                      f"{shown if record['status'] == 'ok' else record['status']}", flush=True)
                _write(report, args.out)
    if losses:
        x_train, y_train = load_split("av_digits", "train", args.max_train_rows, args.data_dir)
        x_test, y_test = load_split("av_digits", "test", None, args.data_dir)
        data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        for seed in seeds:
            for loss in losses:
                record = run_retrieval(loss, seed, data, args.epochs)
                report["retrieval"].append(record)
                shown = ", ".join(f"{k} {v:.3f}" for k, v in record["scores"].items() if "recall_at_1" in k)
                print(f"  retrieval {loss:>16s} seed {seed}: {shown if record['status'] == 'ok' else record['status']}",
                      flush=True)
                _write(report, args.out)
    if batches:
        report["loss_time"] = loss_step_times(batches, args.loss_dim, args.loss_repeats)
    report["wall_seconds"] = time.perf_counter() - started
    tables = [fusion_table(d, runs) for d, runs in report["fusion"].items()]
    if report["retrieval"]:
        tables.append(retrieval_table(report["retrieval"]))
    if report["loss_time"]:
        tables.append(loss_time_table(report["loss_time"]))
    report["tables"] = tables
    _write(report, args.out)
    load = report["machine"].get("load_average_at_start", (0.0,))[0]
    md = Path(args.out).with_suffix(".md")
    md.write_text(f"Command: `{report['command']}`\n\nMachine: {report['machine'].get('cpu', '?')}, "
                  f"{report['machine'].get('cpus')} CPUs (load average at start {load:.2f}); "
                  f"wall time {report['wall_seconds']:.0f} s\n\n" + "\n\n".join(tables) + "\n")
    print("\n\n".join(tables))
    print(f"wrote {args.out} and {md}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="av_digits,mfeat,movies",
                        help=f"comma-separated fusion datasets: {', '.join(DATASETS)} ('' for none)")
    parser.add_argument("--fusions", default=",".join(FUSIONS), help=f"comma-separated: {', '.join(FUSIONS)}")
    parser.add_argument("--modality-dropout", default="0,0.3", help="comma-separated rates p, each in [0, 1)")
    parser.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated: {', '.join(LOSSES)} ('' for none)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--max-train-rows", type=int, default=None, help="first N train rows (default all)")
    parser.add_argument("--loss-batches", default="256,4096", help="batch sizes of the loss timing ('' to skip)")
    parser.add_argument("--loss-dim", type=int, default=512)
    parser.add_argument("--loss-repeats", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=DEFAULT_OUT, help="a path ending .json (a .md table is written beside it)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.out.endswith(".json"):
        parser.error(f"--out must end with .json, got {args.out!r}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        run(args)
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
