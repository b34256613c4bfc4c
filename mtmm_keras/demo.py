"""`mtmm demo`, the main job: (1) one model per builder, fitted on a small offline problem, saved and
reloaded in safe mode; (2) a pretrained zoo entry loaded, evaluated on its test split beside its card;
(3) that entry exported to SavedModel, TFLite (4 flavours) and ONNX, each artifact verified."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np


def _problems(seed: int) -> list[tuple[str, Callable[[], Any], Any, Any]]:
    import mtmm_keras as mk

    x, y = mk.data.reference_multitask(2048, seed=seed)
    tasks = [mk.Task("a", 1), mk.Task("b", 1), mk.Task("c", 2)]
    views = mk.data.paired_modalities(1024, seed=seed)
    fusion_x = {"image": views["image"], "tabular": views["tabular"]}
    fusion_y = {"digit": views["label"], "is_high": (views["label"] >= 4).astype("float32")}
    fusion_tasks = [
        mk.Task("digit", 8, loss="sparse_categorical_crossentropy", metrics=["accuracy"]),
        mk.Task("is_high", 1, loss="binary_crossentropy", weight=0.5, metrics=["accuracy"]),
    ]
    joint_x = {"text": views["tokens"], "image": views["image"]}

    def encoders() -> dict:
        return {"image": mk.encoders.image((8, 8, 1), filters=(16, 32)), "tabular": mk.encoders.tabular(16)}

    multi_task = {
        "hard_sharing": lambda: mk.builders.hard_sharing((100,), tasks),
        "soft_sharing": lambda: mk.builders.soft_sharing((100,), tasks, alpha=1e-3),
        "cross_stitch": lambda: mk.builders.cross_stitch((100,), tasks),
        "mmoe": lambda: mk.builders.mmoe((100,), tasks),
        "cgc": lambda: mk.builders.cgc((100,), tasks),
        "ple": lambda: mk.builders.ple((100,), tasks),
    }
    fusion = {
        kind: (lambda kind=kind: getattr(mk.builders, kind)(encoders(), fusion_tasks, fusion_dim=32))
        for kind in ("attention_fusion", "concat_fusion", "gated_fusion", "transformer_fusion")
    }
    joint = lambda: mk.builders.joint_embedding(  # noqa: E731
        {"text": mk.encoders.text(64, 12, kind="conv"), "image": mk.encoders.image((8, 8, 1), filters=(16, 32))},
        embedding_dim=32,
    )
    return ([(kind, build, x, y) for kind, build in multi_task.items()]
            + [(kind, build, fusion_x, fusion_y) for kind, build in fusion.items()]
            + [("joint_embedding", joint, joint_x, None)])


# every builder of mk.builders, in the order the tour runs them (tests check none is missing)
KINDS = ("hard_sharing", "soft_sharing", "cross_stitch", "mmoe", "cgc", "ple", "attention_fusion", "concat_fusion",
         "gated_fusion", "transformer_fusion", "joint_embedding")
MARKER = "demo.json"


def claim_out_dir(out_dir: str) -> str:
    """Check `out_dir` before any work: new, empty, or an earlier demo's folder holding only what the demo
    writes (its demo.json lists them); never a folder with other files. Marks it as the demo's."""
    from mtmm_keras import _output_folder

    files = [f"{kind}.keras" for kind in KINDS] + ["export"]
    folder = _output_folder.OutputFolder(out_dir, kind="demo", owner_file=MARKER, overwrite=True, argument="--out",
                                         listed=lambda record, path: files)
    folder.path.mkdir(parents=True, exist_ok=True)
    _output_folder.write_json(folder.path / MARKER, {"written_by": _output_folder.marker("demo"), "files": files})
    return str(folder.path)


def run(out_dir: str = "runs/demo", epochs: int = 15, seed: int = 0, entry: str | None = "mfeat_fusion") -> int:
    """Run the demo; returns a process exit code (0 when every reload and every export check passed)."""
    out_dir = claim_out_dir(out_dir)
    failures = builders_tour(out_dir, epochs, seed)
    if entry:
        failures += zoo_and_export(entry, out_dir)
    return 1 if failures else 0


def zoo_and_export(entry: str, out_dir: str) -> int:
    """Load `entry` (sha256-checked), evaluate it on its test split, export it to every format; returns failures."""
    import mtmm_keras as mk
    from mtmm_keras.zoo import evaluation, registry

    print(f"\n== zoo entry {entry}: load pretrained weights (sha256-checked) and evaluate on the test split")
    result = mk.zoo.evaluate(entry)
    print(f"{'metric':<32}{'card':>10}{'measured':>10}")
    failures = 0
    for key, value in result["measured"].items():
        card = result["card"].get(key)
        failures += card is not None and abs(card - value) > 1e-3
        print(f"{key:<32}{(f'{card:.4f}' if card is not None else '-'):>10}{value:>10.4f}")
    print(f"\n== exporting {entry} to SavedModel, TFLite float32/float16/dynamic/int8 and ONNX")
    recipe = registry.recipe(entry)
    model = mk.zoo.load(entry)
    x_train, _ = evaluation.split_arrays(recipe, "train", limit=256)
    x_test, y_test = evaluation.split_arrays(recipe, "test")
    report = mk.export.export_model(
        model, os.path.join(out_dir, "export", entry), quantize=("float32", "float16", "dynamic", "int8"),
        representative_data=x_train, validation_data=(x_test, y_test), verbose=True,
        overwrite=True,  # the demo's own earlier export; a folder holding anything else is still refused
    )
    return failures + (not report.passed)


def builders_tour(out_dir: str, epochs: int, seed: int) -> int:
    """Part 1: build, fit, save and safe-mode reload one model per builder; returns the number of failed reloads."""
    import keras

    import mtmm_keras as mk

    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    rows, failures = [], 0
    for kind, build, x, y in _problems(seed):
        print(f"\n== {kind}: building and fitting for {epochs} epochs")
        model = build()
        start = time.perf_counter()
        history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=2)
        seconds = time.perf_counter() - start
        path = os.path.join(out_dir, f"{kind}.keras")
        model.save(path)
        reloaded = keras.models.load_model(path, safe_mode=True)
        sample = {k: v[:64] for k, v in x.items()} if isinstance(x, dict) else x[:64]
        before, after = model.predict(sample, verbose=0), reloaded.predict(sample, verbose=0)
        drift = max(float(np.max(np.abs(before[k] - after[k]))) for k in before)
        failures += drift > 1e-6
        losses = history.history["loss"]
        extra = ""
        if kind == "joint_embedding":
            text = mk.builders.tower(model, "text").predict(x["text"], verbose=0)
            image = mk.builders.tower(model, "image").predict(x["image"], verbose=0)
            labels = mk.data.paired_modalities(1024, seed=seed)["label"]
            recall = mk.retrieval.retrieval_recall(text, image, ks=(1, 5), query_ids=labels, gallery_ids=labels)
            extra = "text→image same-class " + ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
        else:
            extra = ", ".join(f"{k} {v[-1]:.3f}" for k, v in history.history.items() if k.endswith("accuracy"))
        rows.append((kind, model.count_params(), losses[0], losses[-1], seconds, drift, path, extra))
    print("\nmodel              params   loss first → last   fit s   reload max|Δ|   saved to")
    for kind, params, first, last, seconds, drift, path, extra in rows:
        print(f"{kind:<17} {params:>7,}   {first:8.4f} → {last:8.4f}  {seconds:6.1f}   {drift:12.2e}   {path}")
        if extra:
            print(f"{'':<19}{extra}")
    print("\nall reloads match" if not failures else f"\n{failures} reload(s) did not reproduce predictions")
    return failures
