"""Test-split metrics for a zoo model: accuracy per classification task, RMSE per regression task,
ROC AUC per binary task that lists the "auc" metric (and `mean_auc` over them when there are two or
more), Recall@1/5/10, median rank and mAP in both directions for joint embeddings. A fused model with a
`modality_mask` input is also measured with each modality missing (`<metric>_without_<modality>`: that
modality's mask column 0 and its input zeros, from the same model). Training and `mtmm zoo evaluate` both use
this."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

import mtmm_keras as mk
from mtmm_keras.layers.modality_mask import MODALITY_MASK
from mtmm_keras.zoo import registry


def split_arrays(recipe: dict[str, Any], split: str, limit: int | None = None) -> tuple[dict, dict]:
    """The recipe's inputs and labels from its dataset split, as arrays."""
    x, y = mk.data.load_numpy(recipe["data"], split=split, limit=limit)
    inputs = {m: x[m] for m in recipe["encoders"]}
    labels = {t["name"]: y[t["name"]] for t in recipe.get("tasks", [])}
    if recipe["builder"] == "joint_embedding":
        labels = {"group": y[recipe["group_label"]]}
    return inputs, labels


def _model_inputs(model: keras.Model, x: dict) -> Any:
    from mtmm_keras.models._data_prep import fill_modality_mask

    names = [t.name.split(":")[0] for t in model.inputs]
    x = fill_modality_mask(model, x)  # no mask given: every modality present
    return x[names[0]] if len(names) == 1 else {n: x[n] for n in names}


def without(x: dict, modalities: list[str], missing: str) -> dict:
    """`x` as a device sends it with `missing` absent: its input zeros and its `modality_mask` column 0
    (columns in the recipe's `encoders` order, as the builders number them)."""
    mask = np.ones((len(next(iter(x.values()))), len(modalities)), "float32")
    mask[:, modalities.index(missing)] = 0.0
    return {**x, missing: np.zeros_like(x[missing]), MODALITY_MASK: mask}


def present_rows(truth: np.ndarray, task: dict[str, Any]) -> np.ndarray:
    """Rows whose label for `task` is present, by the rule training uses (`Task.missing_label`)."""
    from mtmm_keras.models._task_losses import missing_rule

    nan, value = missing_rule(task.get("missing_label", "auto"), task.get("loss", "mse"))
    missing = np.zeros(truth.shape, dtype=bool)
    if nan and truth.dtype.kind == "f":
        missing |= np.isnan(truth)
    if value is not None:
        missing |= truth == value
    return ~missing.reshape(len(truth), -1).all(axis=1) if truth.ndim else np.ones((), bool)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of `scores` for binary `labels` (the Mann-Whitney statistic, tied scores count one half);
    NaN when only one class is present."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # average 1-based rank of each tie group
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _lists_auc(task: dict[str, Any]) -> bool:
    metrics = task.get("metrics") or ()
    return any(isinstance(m, str) and m.lower() == "auc" for m in ([metrics] if isinstance(metrics, str) else metrics))


def task_metrics(model: keras.Model, recipe: dict[str, Any], x: dict, y: dict) -> dict[str, float]:
    """accuracy (classification heads) or rmse (regression heads) for each task on (x, y); binary tasks
    listing "auc" also get `<task>_auc`, and with two or more of those, `mean_auc` is their mean."""
    predictions = model.predict(_model_inputs(model, x), batch_size=256, verbose=0)
    metrics, aucs = {}, []
    for task in recipe["tasks"]:
        name, pred, truth = task["name"], predictions[task["name"]], np.asarray(y[task["name"]])
        loss = str(task.get("loss", "")).lower()
        present = present_rows(truth, task)  # missing labels count in no metric, as in training
        pred, truth = pred[present], truth[present]
        if "categorical_crossentropy" in loss:
            metrics[f"{name}_accuracy"] = float((pred.argmax(-1) == truth.reshape(-1)).mean())
        elif "binary_crossentropy" in loss:
            threshold = 0.0 if task.get("activation") is None else 0.5
            metrics[f"{name}_accuracy"] = float(((pred.reshape(-1) > threshold) == truth.reshape(-1).astype(bool)).mean())
            if _lists_auc(task) and task.get("units", 1) == 1:  # logits and probabilities rank alike
                metrics[f"{name}_auc"] = roc_auc(truth, pred)
                aucs.append(metrics[f"{name}_auc"])
        else:
            metrics[f"{name}_rmse"] = float(np.sqrt(np.mean((pred.reshape(truth.shape) - truth) ** 2)))
    if len(aucs) >= 2:
        metrics["mean_auc"] = float(np.mean(aucs))
    return metrics


def joint_embedding_metrics(model: keras.Model, x: dict, groups: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@K, median rank and mAP in both directions for every modality pair: each test item queries the
    whole test set of the other modality, and a hit is an item of the query's class (ties count against
    the query). Scored in blocks of queries (`mtmm_keras.retrieval`), never as one n × n matrix."""
    embeddings = {m: mk.builders.tower(model, m).predict(x[m], batch_size=256, verbose=0) for m in x}
    return mk.retrieval.cross_modal_metrics(embeddings, np.asarray(groups).reshape(-1), ks=ks)


def evaluate_model(model: keras.Model, recipe: dict[str, Any], x: dict, y: dict) -> dict[str, float]:
    """The entry's test metrics as `mtmm zoo evaluate` reports them (with each modality missing, when masked)."""
    if recipe["builder"] == "joint_embedding":
        return joint_embedding_metrics(model, x, np.asarray(y["group"]))
    metrics = task_metrics(model, recipe, x, y)
    if MODALITY_MASK in [t.name.split(":")[0] for t in model.inputs]:
        modalities = list(recipe["encoders"])
        for missing in modalities:
            scores = task_metrics(model, recipe, without(x, modalities, missing), y)
            metrics.update({f"{key}_without_{missing}": value for key, value in scores.items()})
    return metrics


def evaluate(name: str, weights_dir: str | None = None) -> dict[str, Any]:
    """Load the entry (checksum-verified), measure it on the test split, and set it beside the card's numbers."""
    from mtmm_keras.zoo.loading import load

    recipe = registry.recipe(name)
    model = load(name, weights_dir=weights_dir)
    x, y = split_arrays(recipe, "test")
    measured = evaluate_model(model, recipe, x, y)
    card = (registry.metadata(name, weights_dir) or {}).get("metrics", {})
    return {"name": name, "split": "test", "examples": len(next(iter(x.values()))), "measured": measured, "card": card}
