"""`train(name)`: retrain an entry from scratch with its recipe, evaluate it, and write the entry files."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from mtmm_keras.layers import Standardization
from mtmm_keras.zoo import card, evaluation, integrity, plotting, recipes, registry


def hardware() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core CPU ({model})"


def adapt_normalizers(model: keras.Model, x: dict) -> None:
    """Adapt each encoder's normalisation layer ("<modality>_encoder/normalize") to that modality's training data."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if layer.name.endswith("_encoder") and layer.name[: -len("_encoder")] in x:
                for sub in layer.layers:
                    if isinstance(sub, (keras.layers.Normalization, Standardization)):
                        sub.adapt(x[layer.name[: -len("_encoder")]])
            else:
                adapt_normalizers(layer, x)


def _fit(model: keras.Model, recipe: dict, x: dict, y: dict, epochs: int, verbose: int) -> dict:
    fit = recipe["fit"]
    inputs = evaluation._model_inputs(model, x)
    labels = y["group"] if recipe["builder"] == "joint_embedding" else y
    history = model.fit(
        inputs, labels, epochs=epochs, batch_size=fit.get("batch_size", 128), validation_split=fit.get("validation_split", 0.1),
        shuffle=True, verbose=verbose,
    )
    return history.history


def train(name: str, epochs: int | None = None, out_dir: str | None = None, verbose: int = 2) -> dict[str, Any]:
    """Fit the entry's model (and its single-modality baselines) and write weights, metadata, card and curves."""
    recipe = registry.recipe(name)
    fit = recipe["fit"]
    epochs = fit["epochs"] if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, got {epochs}.")
    out = Path(out_dir or os.path.join("runs", "zoo", name)).resolve()
    x_train, y_train = evaluation.split_arrays(recipe, "train")
    x_test, y_test = evaluation.split_arrays(recipe, "test")
    print(f"training {name}: {recipe['builder']} on {recipe['data']} "
          f"({len(next(iter(x_train.values())))} train / {len(next(iter(x_test.values())))} test examples, {epochs} epochs)")
    model = recipes.build(recipe)
    adapt_normalizers(model, x_train)
    start = time.perf_counter()
    history = _fit(model, recipe, x_train, y_train, epochs, verbose)
    seconds = time.perf_counter() - start
    metrics = evaluation.evaluate_model(model, recipe, x_test, y_test)
    print("test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    baselines = {}
    for subset in recipe.get("baselines", []):
        print(f"baseline: {'+'.join(subset)} only")
        baseline = recipes.build(recipe, modalities=subset)
        adapt_normalizers(baseline, x_train)
        _fit(baseline, recipe, {m: x_train[m] for m in subset}, y_train, epochs, verbose=0)
        baselines["+".join(subset) + " only"] = evaluation.evaluate_model(baseline, recipe, {m: x_test[m] for m in subset}, y_test)
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in baselines["+".join(subset) + " only"].items()))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        weights = staging / registry.WEIGHTS_FILE
        bare = recipes.build(recipe, compile=False)  # same architecture, no optimizer state in the file
        bare.set_weights(model.get_weights())
        bare.save_weights(str(weights))
        meta = {
            "name": name,
            "metrics": metrics,
            "baselines": baselines,
            "params": int(model.count_params()),
            "weights_file": registry.WEIGHTS_FILE,
            "weights_bytes": weights.stat().st_size,
            "sha256": {registry.WEIGHTS_FILE: integrity.sha256(weights)},
            "training": {
                "epochs": epochs, "batch_size": fit.get("batch_size", 128), "learning_rate": fit.get("learning_rate", 1e-3),
                "seed": fit.get("seed", 0), "seconds": round(seconds, 1), "hardware": hardware(),
                "keras": keras.__version__, "backend": keras.backend.backend(), "backend_version": _backend_version(),
                "final_train_loss": float(history["loss"][-1]),
            },
        }
        with open(staging / registry.METADATA_FILE, "w") as f:
            json.dump(meta, f, indent=2)
        with open(staging / registry.RECIPE_FILE, "w") as f:
            json.dump(recipe, f, indent=2)
        (staging / registry.CARD_FILE).write_text(card.render(name, recipe, meta))
        plotting.plot_history(history, str(staging / registry.CURVES_FILE), f"{name}: per-task training curves")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"wrote {out}/{{{registry.WEIGHTS_FILE}, {registry.METADATA_FILE}, {registry.CARD_FILE}, {registry.CURVES_FILE}}}")
    return {"out_dir": str(out), **meta}


def _backend_version() -> str:
    backend = keras.backend.backend()
    try:
        module = __import__("tensorflow" if backend == "tensorflow" else backend)
        return getattr(module, "__version__", "?")
    except ImportError:
        return "?"


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished files in; files of `out` not written by training (none, normally) are kept."""
    out.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        os.replace(item, out / item.name)
    staging.rmdir()


