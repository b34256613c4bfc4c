"""`train(name)`: retrain an entry from scratch with its recipe, evaluate it, and write the entry files."""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any

import keras
import numpy as np

from mtmm_keras import _extras, _output_folder
from mtmm_keras import distribute as distribute_lib
from mtmm_keras.builders import readouts as _readouts
from mtmm_keras.layers import PiecewiseLinearEncoding, Standardization
from mtmm_keras.zoo import card, evaluation, plotting, presets, quality, recipes, registry


GATES_FILE = "gates.png"  # written only for models with expert gates (mmoe, cgc, ple)


def gate_means(model: keras.Model, x: dict) -> dict:
    """Each expert gate's weights averaged over the examples `x` (`{}` for a model without gates). For a seed
    ensemble, its first member's gates: each member's experts are its own, so their gates cannot be averaged."""
    if not _readouts.has_gates(model):
        members = [layer for layer in model.layers if isinstance(layer, keras.Model) and _readouts.has_gates(layer)]
        if not members:
            return {}
        model = members[0]
    return _readouts.mean_gate_weights(model, evaluation._model_inputs(model, x))


def hardware() -> str:
    """A one-line description of this machine's CPU, as written in the zoo's cards."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core CPU ({model})"


def adapt_normalizers(model: keras.Model, x: dict) -> None:
    """Adapt each encoder's normalisation layer ("<modality>_encoder/normalize") to that modality's training data,
    and a piecewise-linear numeric encoding after it to the data as it reaches it (standardised when it is)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if layer.name.endswith("_encoder") and layer.name[: -len("_encoder")] in x:
                data = x[layer.name[: -len("_encoder")]]
                for sub in layer.layers:
                    if isinstance(sub, (keras.layers.Normalization, Standardization)):
                        sub.adapt(data)
                        data = keras.ops.convert_to_numpy(sub(data))
                    elif isinstance(sub, PiecewiseLinearEncoding):
                        sub.adapt(data)
            else:
                adapt_normalizers(layer, x)


AUGMENT_KEYS = ("shift",)  # a recipe's "augment" field: {"shift": N} moves each training image by up to N pixels


def augment_of(recipe: dict) -> dict:
    """The recipe's `augment` field, checked ({} when absent). `shift`: an integer 0..8, the largest move in
    pixels along each image axis; it needs an image encoder (the only inputs it moves)."""
    augment = recipe.get("augment") or {}
    if not isinstance(augment, dict):
        raise ValueError(f"recipe `augment` must be an object such as {{\"shift\": 2}}, got {augment!r}.")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"recipe `augment`: unknown key(s) {unknown}; valid: {list(AUGMENT_KEYS)}.")
    shift = augment.get("shift", 0)
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 8:
        raise ValueError(f"recipe `augment.shift` must be an integer from 0 to 8 (pixels), got {shift!r}.")
    if shift and not _image_modalities(recipe):
        raise ValueError("recipe `augment.shift` moves images, but the recipe has no encoder of kind 'image'.")
    return dict(augment)


def _image_modalities(recipe: dict) -> list:
    return [m for m, spec in recipe.get("encoders", {}).items() if spec.get("kind") == "image"]


def shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Each image of `images` [n, height, width, ...] moved by (dy[i], dx[i]) pixels (down/right when
    positive); the pixels moved in are zeros (background), those moved out are dropped."""
    out = np.zeros_like(images)
    height, width = images.shape[1:3]
    for i, (y, x) in enumerate(zip(dy, dx)):
        y, x = int(y), int(x)
        out[i, max(y, 0):height + min(y, 0), max(x, 0):width + min(x, 0)] = \
            images[i, max(-y, 0):height + min(-y, 0), max(-x, 0):width + min(-x, 0)]
    return out


class ShiftedBatches(keras.utils.PyDataset):
    """Training batches for a recipe with `augment`: each epoch a fresh order of the rows, and each image
    input moved by a random (dy, dx) in [-shift, shift]², one draw per row (the same for all its image
    inputs). Order and shifts come from (recipe seed, epoch, batch) alone, so retraining repeats them.
    Labels and non-image inputs pass through untouched."""

    def __init__(self, inputs: Any, labels: Any, batch_size: int, recipe: dict) -> None:
        super().__init__()
        self.inputs, self.labels, self.batch_size = inputs, labels, int(batch_size)
        self.shift, self.seed, self.epoch = augment_of(recipe).get("shift", 0), recipes.seed_of(recipe), 0
        images = _image_modalities(recipe)
        self.moved = {k for k in inputs if k in images} if isinstance(inputs, dict) else bool(images)
        self.rows = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
        self._order = (None, None)  # (epoch, its row order)

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: the next epoch draws a new row order and new shifts."""
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple:
        if self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, self.epoch]).permutation(self.rows))
        rows = self._order[1][index * self.batch_size:(index + 1) * self.batch_size]
        dy, dx = np.random.default_rng([self.seed, self.epoch, index]).integers(-self.shift, self.shift + 1, (2, len(rows)))

        def take(array: np.ndarray, move: bool) -> np.ndarray:
            return shift_images(array[rows], dy, dx) if move and self.shift else array[rows]

        if isinstance(self.inputs, dict):
            x = {k: take(v, k in self.moved) for k, v in self.inputs.items()}
        else:
            x = take(self.inputs, self.moved)
        y = {k: v[rows] for k, v in self.labels.items()} if isinstance(self.labels, dict) else self.labels[rows]
        return x, y


def fit_options(recipe: dict) -> dict[str, Any]:
    """The recipe's optional `fit` fields, checked: "early_stopping": {"patience": N} (stop once the validation loss
    has not improved for N epochs and keep the best epoch's weights; needs a validation split) and "head_bias":
    "prior" (each linear head's bias starts at its task's training prior: the log-odds of a binary task, the mean
    of a regression task, so no weight has to learn the offset) and "reduce_lr": {"factor": F, "patience": N}
    (multiply the learning rate by F after N epochs without a better validation loss; needs a validation split).
    Returns {"patience": int | None, "head_bias": str | None, "reduce_lr": dict | None}."""
    fit = recipe.get("fit", {})
    patience = None
    if "early_stopping" in fit:
        spec = fit["early_stopping"]
        if not isinstance(spec, dict) or set(spec) != {"patience"}:
            raise ValueError(f"recipe fit.early_stopping must be {{\"patience\": N}}, got {spec!r}.")
        patience = spec["patience"]
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"recipe fit.early_stopping.patience must be a positive integer, got {patience!r}.")
        if not fit.get("validation_split", 0.1):
            raise ValueError("recipe fit.early_stopping needs a validation split (fit.validation_split > 0).")
    head_bias = fit.get("head_bias")
    if head_bias not in (None, "prior"):
        raise ValueError(f"recipe fit.head_bias must be 'prior' (or absent), got {head_bias!r}.")
    reduce_lr = None
    if "reduce_lr" in fit:
        spec = fit["reduce_lr"]
        if not isinstance(spec, dict) or set(spec) != {"factor", "patience"}:
            raise ValueError(f"recipe fit.reduce_lr must be {{\"factor\": F, \"patience\": N}}, got {spec!r}.")
        factor, wait = spec["factor"], spec["patience"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
            raise ValueError(f"recipe fit.reduce_lr.factor must be a number in (0, 1), got {factor!r}.")
        if isinstance(wait, bool) or not isinstance(wait, int) or wait < 1:
            raise ValueError(f"recipe fit.reduce_lr.patience must be a positive integer, got {wait!r}.")
        if not fit.get("validation_split", 0.1):
            raise ValueError("recipe fit.reduce_lr needs a validation split (fit.validation_split > 0).")
        reduce_lr = {"factor": float(factor), "patience": wait}
    return {"patience": patience, "head_bias": head_bias, "reduce_lr": reduce_lr}


def init_head_biases(model: keras.Model, recipe: dict, y: dict) -> None:
    """With fit.head_bias "prior": set each one-unit linear head's bias from the training labels (rows whose label
    is present): log(p / (1 - p)) for binary cross-entropy, the mean label for mse/mae/huber. Others are left as built."""
    if fit_options(recipe)["head_bias"] != "prior":
        return
    for task in recipe.get("tasks", []):
        if task.get("units") != 1 or task.get("activation") is not None or not isinstance(task.get("loss"), str):
            continue
        truth = np.asarray(y[task["name"]], dtype="float64")
        truth = truth[evaluation.present_rows(truth, task)].reshape(-1)
        if not len(truth):
            continue
        if task["loss"] == "binary_crossentropy":
            rate = float(np.clip(truth.mean(), 1e-4, 1.0 - 1e-4))
            bias = math.log(rate / (1.0 - rate))
        elif task["loss"] in ("mse", "mae", "huber", "mean_squared_error", "mean_absolute_error"):
            bias = float(truth.mean())
        else:
            continue
        head = model.get_layer(task["name"])  # a Dense or a WideDeepHead: both name their bias `bias`
        head.bias.assign(np.full(tuple(head.bias.shape), bias, dtype=head.bias.dtype))


def build_and_fit(recipe: dict, x: dict, y: dict, epochs: int, *, modalities: Any = None, verbose: int = 0,
                  row_multiple: int = 1) -> tuple[keras.Model, dict]:
    """The recipe's model (or, with `modalities`, its ablation on those inputs alone) trained as `mtmm zoo train`
    trains it: built, its normalisers adapted to `x`, its heads started at the task priors (fit.head_bias), then
    fitted with the recipe's settings. Returns (model, history dict). Call it inside a distribution scope to
    train data-parallel (`row_multiple`: see `_fit`)."""
    model, histories = build_and_fit_members(recipe, x, y, epochs, modalities=modalities, verbose=verbose,
                                             row_multiple=row_multiple)
    return model, histories[0]


def build_and_fit_members(recipe: dict, x: dict, y: dict, epochs: int, *, modalities: Any = None, verbose: int = 0,
                          row_multiple: int = 1) -> tuple[keras.Model, list[dict]]:
    """`build_and_fit`, with every member's history: a recipe with `ensemble` K > 1 (and no `modalities`) fits K
    members one after another, each as a single-seed recipe (`recipes.member_recipe`), and returns their average."""
    size = recipes.ensemble_size(recipe)
    if modalities is None and size > 1:
        members, histories = [], []
        for k in range(size):
            if verbose:
                print(f"ensemble member {k + 1}/{size} (seed {recipes.seed_of(recipe) + k})")
            member, history = build_and_fit(recipes.member_recipe(recipe, k), x, y, epochs, verbose=verbose,
                                            row_multiple=row_multiple)
            members.append(member)
            histories.append(history)
        return recipes.ensemble_of(recipe, members), histories
    model = recipes.build(recipe, modalities=modalities)
    adapt_normalizers(model, x)
    init_head_biases(model, recipe, y)
    inputs = x if modalities is None else {m: x[m] for m in modalities}
    return model, [_fit(model, recipe, inputs, y, epochs, verbose, row_multiple=row_multiple)]


def _fit(model: keras.Model, recipe: dict, x: dict, y: dict, epochs: int, verbose: int, row_multiple: int = 1) -> dict:
    """Fit with the recipe's settings. `row_multiple` > 1 (JAX DataParallel over that many devices, which
    shards every batch evenly) splits off the validation rows as Keras would (the last fraction) and
    drops at most `row_multiple - 1` rows of each part so that every batch divides evenly."""
    fit = recipe["fit"]
    inputs = evaluation._model_inputs(model, x)
    labels = y["group"] if recipe["builder"] == "joint_embedding" else y
    batch_size, validation_split = fit.get("batch_size", 128), fit.get("validation_split", 0.1)
    validation_data = None
    if row_multiple > 1:
        if batch_size % row_multiple:
            raise ValueError(f"recipe batch_size {batch_size} must be a multiple of the {row_multiple} devices "
                             "DataParallel shards each batch over.")
        rows = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
        split_at = int(math.floor(rows * (1.0 - validation_split)))
        train_end = split_at - split_at % row_multiple
        val_end = split_at + (rows - split_at) - (rows - split_at) % row_multiple

        def part(tree: Any, start: int, stop: int) -> Any:
            return {k: v[start:stop] for k, v in tree.items()} if isinstance(tree, dict) else tree[start:stop]

        if validation_split and val_end > split_at:
            validation_data = (part(inputs, split_at, val_end), part(labels, split_at, val_end))
        inputs, labels, validation_split = part(inputs, 0, train_end), part(labels, 0, train_end), 0.0
        if _jax_processes() > 1:  # jax.distributed: each process feeds its share of every global batch
            local = distribute_lib.process_local_rows
            if validation_data is not None:
                validation_data = tuple(local(part_, batch_size)[0] for part_ in validation_data)
            (inputs, labels), batch_size = local((inputs, labels), batch_size)
    if recipe.get("augment"):  # shifted copies of the training rows only; validation rows stay as they are
        if validation_data is None and validation_split:
            rows = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
            split_at = int(math.floor(rows * (1.0 - validation_split)))  # Keras's own split: the last fraction

            def part(tree: Any, start: int, stop: int | None = None) -> Any:
                return {k: v[start:stop] for k, v in tree.items()} if isinstance(tree, dict) else tree[start:stop]

            validation_data = (part(inputs, split_at), part(labels, split_at))
            inputs, labels = part(inputs, 0, split_at), part(labels, 0, split_at)
        inputs, labels = ShiftedBatches(inputs, labels, batch_size, recipe), None
        validation_split, batch_size = 0.0, None
    options = fit_options(recipe)
    callbacks = []
    if options["patience"]:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=options["patience"],
                                                       restore_best_weights=True))
    if options["reduce_lr"]:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **options["reduce_lr"]))
    with recipes.seeded(recipes.seed_of(recipe)):  # deterministic retraining; the caller's RNGs come back after
        history = model.fit(
            inputs, labels, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
            validation_data=validation_data, shuffle=not recipe.get("augment"), verbose=verbose, callbacks=callbacks,
        )
    return history.history


def train(name: str, epochs: int | None = None, out_dir: str | None = None, verbose: int = 2,
          overwrite: bool = False, distribute: str | None = None) -> dict[str, Any]:
    """Fit the entry's model (and its single-modality baselines) and write it as a preset folder.

    `out_dir` (default runs/zoo/NAME) is checked before any data is loaded: it must be new, empty, or an
    earlier zoo entry (`overwrite=True`). The entry is written to a staging folder beside it and swapped
    in with one rename, so a crash leaves either the old entry or the new one, whole. Non-finite weights
    or metrics are refused. `distribute` ("mirrored", "multi_worker", "jax"; `mk.distribute.training_scope`)
    builds and fits data-parallel; in a multi-worker run only the chief writes the entry.
    """
    recipe = registry.recipe(name)
    augment_of(recipe)  # a bad `augment` field fails before any data is loaded
    fit_options(recipe)  # so does a bad early_stopping / head_bias / reduce_lr
    recipes.ensemble_size(recipe)  # and a bad ensemble size
    fit = recipe["fit"]
    epochs = fit["epochs"] if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    engine = distribute_lib.check_engine(distribute)
    writer = distribute_lib.is_chief() if engine == "multi_worker" else True
    target = presets.output_folder(out_dir if out_dir is not None else os.path.join("runs", "zoo", name), overwrite,
                                   argument="out_dir")
    if writer:
        target.probe_writable()
    _extras.require(["matplotlib"], "plot", "writing the entry's training curves")
    _extras.require(["tensorflow_datasets"], "data", f"training on the {recipe['data']!r} dataset")
    x_train, y_train = evaluation.split_arrays(recipe, "train")
    x_test, y_test = evaluation.split_arrays(recipe, "test")
    print(f"training {name}: {recipe['builder']} on {recipe['data']} "
          f"({len(next(iter(x_train.values())))} train / {len(next(iter(x_test.values())))} test examples, {epochs} epochs)")
    with distribute_lib.training_scope(engine) as strategy:
        if strategy is not None:
            print(f"data-parallel training: {engine} ({getattr(strategy, 'num_replicas_in_sync', None) or _row_multiple(strategy)} replicas/devices)")
        start = time.perf_counter()
        model, histories = build_and_fit_members(recipe, x_train, y_train, epochs, verbose=verbose,
                                                 row_multiple=_row_multiple(strategy))
        history = histories[0]
        seconds = time.perf_counter() - start
    model = _process_local_copy(model, recipe)
    presets.check_finite_weights(model, f"zoo entry {name!r}")
    metrics = evaluation.evaluate_model(model, recipe, x_test, y_test)
    print("test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    baselines = {}
    for subset in recipe.get("baselines", []):
        print(f"baseline: {'+'.join(subset)} only")
        with distribute_lib.training_scope(engine) as strategy:
            baseline, _ = build_and_fit(recipe, x_train, y_train, epochs, modalities=subset,
                                        row_multiple=_row_multiple(strategy))
        baseline = _process_local_copy(baseline, recipe, modalities=subset)
        baselines["+".join(subset) + " only"] = evaluation.evaluate_model(baseline, recipe, {m: x_test[m] for m in subset}, y_test)
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in baselines["+".join(subset) + " only"].items()))
    tables = quality.measure(model, recipe, x_train, y_train, x_test, y_test)  # simple baselines, robustness
    quality.print_floor(name, tables)
    meta = {
        "name": name,
        "description": recipe.get("description", ""),
        "metrics": metrics,
        "baselines": baselines,
        **tables,
        "training": {
            "epochs": epochs, "batch_size": fit.get("batch_size", 128), "learning_rate": fit.get("learning_rate", 1e-3),
            "seed": fit.get("seed", 0), "seconds": round(seconds, 1), "hardware": hardware(),
            "keras": keras.__version__, "backend": keras.backend.backend(), "backend_version": _backend_version(),
            "final_train_loss": float(history["loss"][-1]),
            **({"epochs_run": len(history["loss"]), "best_epoch": int(np.argmin(history["val_loss"])) + 1}
               if fit_options(recipe)["patience"] else {}),
            **(_ensemble_summary(recipe, histories) if len(histories) > 1 else {}),
        },
    }
    presets.check_finite_metrics(meta, f"zoo entry {name!r}")
    if engine is not None:
        meta["training"]["distribute"] = engine
    gates = gate_means(model, x_test)
    if not writer:
        print("this worker is done; the chief writes the entry")
        return {"out_dir": None}
    with target.staging() as staging:
        extra = {
            registry.RECIPE_FILE: lambda path: _output_folder.write_json(path, recipe),
            registry.CURVES_FILE: lambda path: plotting.plot_history(history, str(path), f"{name}: per-task training curves"),
        }
        if gates:
            which = " of its first member" if len(histories) > 1 else ""
            extra[GATES_FILE] = lambda path: plotting.plot_gates(gates, str(path),
                                                                 f"{name}: mean gate weights{which} (test set)")
        written = presets.write_preset(staging, model, meta, lambda m: card.render(name, recipe, m), extra)
        target.commit(staging)
    print(f"wrote {target.path}/{{{', '.join(sorted(written['sha256']))}, {registry.METADATA_FILE}}}")
    return {"out_dir": str(target.path), **written}


def _ensemble_summary(recipe: dict, histories: list[dict]) -> dict[str, Any]:
    """What the card says of a seed ensemble's members (the first member's numbers are the training section's)."""
    summary: dict[str, Any] = {"members": len(histories), "member_seeds": [recipes.seed_of(recipe) + k
                                                                         for k in range(len(histories))],
                               "member_final_train_loss": [float(h["loss"][-1]) for h in histories]}
    if fit_options(recipe)["patience"]:
        summary["member_epochs_run"] = [len(h["loss"]) for h in histories]
        summary["member_best_epoch"] = [int(np.argmin(h["val_loss"])) + 1 for h in histories]
    return {"ensemble": summary}


def _row_multiple(strategy: Any) -> int:
    """How many devices a keras.distribution (JAX) shards each batch over; 1 for tf.distribute / one device."""
    if strategy is None or keras.backend.backend() != "jax":
        return 1
    mesh = getattr(strategy, "device_mesh", None)
    return max(1, len(getattr(mesh, "devices", None).flatten()) if mesh is not None else 1)


def _jax_processes() -> int:
    """How many `jax.distributed` processes share the run (1 without JAX or without jax.distributed)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def _process_local_copy(model: keras.Model, recipe: dict, modalities: Any = None) -> keras.Model:
    """`model` itself, or after a multi-process JAX fit (weights held across every process's devices) the same
    model rebuilt on this process alone with those weights, so that evaluating and saving need no peers."""
    if _jax_processes() == 1:
        return model
    weights = [np.asarray(w) for w in model.get_weights()]  # replicated: every process holds them whole
    local = recipes.build(recipe) if modalities is None else recipes.build(recipe, modalities=modalities)
    local.set_weights(weights)
    return local


def _backend_version() -> str:
    backend = keras.backend.backend()
    try:
        module = __import__("tensorflow" if backend == "tensorflow" else backend)
        return getattr(module, "__version__", "?")
    except ImportError:
        return "?"
