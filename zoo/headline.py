"""Headline metrics of a zoo entry, the paired bootstrap of a margin, and the quality floor.

One home for: which metrics headline an entry (`headlines`), how a model's or a baseline's per-row
outputs (`Outputs`) turn into those metrics, resampled or not (`values`), the margin of the entry over
its best simple baseline with a paired bootstrap 95 % interval (`compare`), the flags for binary heads
that never predict a positive (`binary_flags`), and the floor every shipped entry must clear
(`floor_failures`), used by `mtmm zoo train` and by the zoo's tests alike.

Headline metrics, per task:
- multiclass classification: accuracy (`<task>_accuracy`);
- binary classification (a 1-unit binary cross-entropy head, or a 2-unit softmax head): accuracy when
  the rarer class is at least 20 % of the train rows, else ROC AUC (`<task>_auc`) and average precision
  (`<task>_ap`, sklearn's step-wise definition); a binary head whose recipe lists "auc" always gets
  its AUC, and with two or more such heads `mean_auc` (their mean, as `evaluation.task_metrics`);
- regression: RMSE (`<task>_rmse`, lower is better);
- joint embeddings: Recall@1 in each direction (`<q>_to_<g>_recall_at_1`; the gallery is the whole
  test split of the other modality, ties count against the query, as `mtmm_keras.retrieval`).

Every metric is computed from per-row statistics with row weights, so that the clean value (weights 1)
and each bootstrap resample (weights = how often each test row was drawn) use one code path. Rows
without a label for a task (`evaluation.present_rows`) get weight 0 for that task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RARE_RATE = 0.20  # a binary task whose rarer class is below this share of train rows is scored by AUC / AP
MAJORITY_TOLERANCE = 0.005  # a binary head whose accuracy is within half a point of the majority rate is flagged
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
METRIC_KINDS = ("accuracy", "auc", "ap", "rmse", "recall_at_1", "mean_auc")
PERFECT = {"accuracy": 1.0, "auc": 1.0, "ap": 1.0, "recall_at_1": 1.0, "mean_auc": 1.0}

# Outputs: {task: {"label": int[n], "score": float[n] (binary only), "value": float[n, k] (regression)}} for
# task models, or {"<q>_to_<g>": {"rank": int[n]}} for joint embeddings (1-based rank of the first hit, 0: none).
Outputs = dict[str, dict[str, np.ndarray]]


def task_kind(task: dict[str, Any]) -> str:
    """"multiclass", "binary" or "regression" for a recipe task (by its loss and units)."""
    loss = str(task.get("loss", "")).lower()
    if "binary_crossentropy" in loss:
        return "binary"
    if "categorical_crossentropy" in loss:
        return "binary" if int(task.get("units", 0)) == 2 else "multiclass"
    return "regression"


def _lists_auc(task: dict[str, Any]) -> bool:
    metrics = task.get("metrics") or ()
    metrics = [metrics] if isinstance(metrics, str) else metrics
    return any(isinstance(m, str) and m.lower() == "auc" for m in metrics)


def headlines(recipe: dict[str, Any], y_train: dict[str, np.ndarray], modalities: list[str] | None = None) -> list[dict[str, Any]]:
    """The entry's headline metrics: [{"key", "task", "metric", "higher_is_better"}] by the rules in this
    module's docstring (binary tasks judged rare or not on the train split's present labels)."""
    from mtmm_keras.zoo.evaluation import present_rows

    if recipe["builder"] == "joint_embedding":
        names = list(modalities or recipe["encoders"])
        return [{"key": f"{q}_to_{g}_recall_at_1", "task": f"{q}_to_{g}", "metric": "recall_at_1", "higher_is_better": True}
                for q in names for g in names if q != g]
    rows, auc_tasks = [], []
    for task in recipe["tasks"]:
        name, kind = task["name"], task_kind(task)
        if kind == "regression":
            rows.append(_row(f"{name}_rmse", name, "rmse"))
            continue
        if kind == "multiclass":
            rows.append(_row(f"{name}_accuracy", name, "accuracy"))
            continue
        truth = np.asarray(y_train[name])
        truth = truth[present_rows(truth, task)].reshape(-1)
        rate = float(np.mean(truth == 1)) if len(truth) else 0.5
        rare = min(rate, 1.0 - rate) < RARE_RATE
        if not rare:
            rows.append(_row(f"{name}_accuracy", name, "accuracy"))
        if rare or _lists_auc(task):
            rows.append(_row(f"{name}_auc", name, "auc"))
        if rare:
            rows.append(_row(f"{name}_ap", name, "ap"))
        if _lists_auc(task) and int(task.get("units", 1)) == 1:
            auc_tasks.append(name)
    if len(auc_tasks) >= 2:
        rows.append({"key": "mean_auc", "task": ",".join(auc_tasks), "metric": "mean_auc", "higher_is_better": True})
    return rows


def _row(key: str, task: str, metric: str) -> dict[str, Any]:
    return {"key": key, "task": task, "metric": metric, "higher_is_better": metric != "rmse"}


# -- outputs of a Keras model -------------------------------------------------------------------------------
def model_outputs(model: Any, recipe: dict[str, Any], x: dict[str, np.ndarray], groups: np.ndarray | None = None) -> Outputs:
    """The entry's per-row outputs on `x`: predicted labels (argmax; a 1-unit binary head thresholded at 0
    for logits or 0.5 for probabilities, as `evaluation.task_metrics`), a positive-class score for binary
    heads, values for regression heads; for a joint embedding (`groups`: the test rows' group ids), each
    query's first-hit rank per direction."""
    from mtmm_keras.zoo import evaluation

    import mtmm_keras as mk

    if recipe["builder"] == "joint_embedding":
        if groups is None:
            raise ValueError("`groups` is required for a joint-embedding entry (the test rows' group ids).")
        embeddings = {m: mk.builders.tower(model, m).predict(x[m], batch_size=256, verbose=0) for m in recipe["encoders"]}
        return embedding_outputs(embeddings, groups)
    predictions = model.predict(evaluation._model_inputs(model, x),
                                batch_size=256, verbose=0)
    out = {}
    for task in recipe["tasks"]:
        pred = np.asarray(predictions[task["name"]], dtype=np.float64)
        kind = task_kind(task)
        if kind == "regression":
            out[task["name"]] = {"value": pred.reshape(len(pred), -1)}
        elif kind == "multiclass":
            out[task["name"]] = {"label": pred.argmax(-1)}
        elif pred.ndim == 2 and pred.shape[1] == 2:  # 2-unit softmax head: logit or probability difference ranks alike
            out[task["name"]] = {"label": pred.argmax(-1), "score": pred[:, 1] - pred[:, 0]}
        else:
            score = pred.reshape(-1)
            threshold = 0.0 if task.get("activation") is None else 0.5
            out[task["name"]] = {"label": (score > threshold).astype(np.int64), "score": score}
    return out


def embedding_outputs(embeddings: dict[str, np.ndarray], groups: np.ndarray) -> Outputs:
    """First-hit ranks in every direction between modalities (items of the query's group are hits)."""
    from mtmm_keras.retrieval import first_match_ranks

    groups = np.asarray(groups).reshape(-1)
    return {f"{q}_to_{g}": {"rank": first_match_ranks(embeddings[q], embeddings[g], groups, groups)}
            for q in embeddings for g in embeddings if q != g}


# -- weighted metrics ---------------------------------------------------------------------------------------
def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count one half) per row of `weights` [B, n]; NaN where a class has no weight."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * labels[order], starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - labels[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each tie group
    p, n = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p > 0) & (n > 0), (pos * (below + 0.5 * neg)).sum(axis=1) / (p * n), np.nan)


def _weighted_ap(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's: Σ (R_k − R_{k−1}) P_k over descending thresholds, tied scores one
    threshold) per row of `weights` [B, n]; NaN where no positive has weight."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * labels[order], starts, axis=1)
    seen = np.cumsum(np.add.reduceat(w, starts, axis=1), axis=1)
    true_pos = np.cumsum(pos, axis=1)
    p = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, true_pos / np.where(seen > 0, seen, 1.0), 0.0)
        return np.where(p > 0, (pos * precision).sum(axis=1) / p, np.nan)


def _weighted_mean(stat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ stat / np.where(total > 0, total, 1.0), np.nan)


def values(rows: list[dict[str, Any]], outputs: Outputs, truth: dict[str, np.ndarray], recipe: dict[str, Any],
           weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each headline metric of `outputs` against `truth`, once per row of `weights` ([B, n] row counts;
    None: every test row once, B = 1). Returns {key: float[B]}."""
    from mtmm_keras.zoo.evaluation import present_rows

    n = len(next(iter(next(iter(outputs.values())).values())))
    weights = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    tasks = {t["name"]: t for t in recipe.get("tasks", [])}
    result: dict[str, np.ndarray] = {}
    for row in rows:
        metric, task = row["metric"], row["task"]
        if metric == "mean_auc":
            continue
        if metric == "recall_at_1":
            rank = outputs[task]["rank"]
            result[row["key"]] = _weighted_mean((rank == 1).astype(np.float64), weights * (rank > 0))
            continue
        label = np.asarray(truth[task])
        present = present_rows(label, tasks[task]).astype(np.float64)
        w = weights * present
        out = outputs[task]
        if metric == "rmse":
            value = out["value"].reshape(n, -1)
            err = np.nan_to_num(value - label.reshape(n, -1).astype(np.float64))
            result[row["key"]] = np.sqrt(_weighted_mean((err ** 2).mean(axis=1), w))
            continue
        label = np.nan_to_num(label.reshape(-1).astype(np.float64))
        if metric == "accuracy":
            result[row["key"]] = _weighted_mean((out["label"].reshape(-1) == label).astype(np.float64), w)
        elif metric == "auc":
            result[row["key"]] = _weighted_auc(label, out["score"].astype(np.float64), w)
        elif metric == "ap":
            result[row["key"]] = _weighted_ap(label, out["score"].astype(np.float64), w)
    for row in rows:
        if row["metric"] == "mean_auc":
            aucs = [_weighted_auc(np.nan_to_num(np.asarray(truth[t]).reshape(-1).astype(np.float64)),
                                  outputs[t]["score"].astype(np.float64),
                                  weights * present_rows(np.asarray(truth[t]), tasks[t])) for t in row["task"].split(",")]
            result[row["key"]] = np.mean(aucs, axis=0)
    return result


def scalar_values(rows: list[dict[str, Any]], outputs: Outputs, truth: dict[str, np.ndarray],
                  recipe: dict[str, Any]) -> dict[str, float]:
    """`values` on the test rows as they are: {key: float}."""
    return {key: float(value[0]) for key, value in values(rows, outputs, truth, recipe).items()}


def bootstrap_weights(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, n] counts: how often each of the n test rows was drawn in each seeded resample."""
    rng = np.random.default_rng(seed)
    weights = np.empty((resamples, n), dtype=np.float32)
    for b in range(resamples):
        weights[b] = np.bincount(rng.integers(0, n, n), minlength=n)
    return weights


def compare(rows: list[dict[str, Any]], entry: Outputs, baselines: dict[str, Outputs], truth: dict[str, np.ndarray],
            recipe: dict[str, Any], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[dict[str, Any]]:
    """Per headline metric: the entry's value, the best baseline (by its value on the test rows), the margin
    (positive: the entry is better; RMSE margins are baseline − entry) and its paired bootstrap 95 %
    interval (the same resampled test rows for the entry and the baseline)."""
    n = len(next(iter(next(iter(entry.values())).values())))
    weights = bootstrap_weights(n, resamples, seed)
    entry_clean = scalar_values(rows, entry, truth, recipe)
    base_clean = {name: scalar_values(rows, out, truth, recipe) for name, out in baselines.items()}
    table = []
    for row in rows:
        key, sign = row["key"], (1.0 if row["higher_is_better"] else -1.0)

        def score(baseline: str, key: str = key, sign: float = sign) -> float:
            value = base_clean[baseline][key]
            return sign * value if np.isfinite(value) else -np.inf

        best = max(base_clean, key=score)
        margin = sign * (entry_clean[key] - base_clean[best][key])
        table.append({**row, "entry": entry_clean[key], "best_baseline": best, "baseline": base_clean[best][key],
                      "margin": margin})
    # resampled margins in chunks (memory: chunk × n weights)
    samples: dict[str, list[np.ndarray]] = {r["key"]: [] for r in table}
    for start in range(0, resamples, 100):
        w = weights[start:start + 100]
        ent = values(rows, entry, truth, recipe, w)
        cache: dict[str, dict[str, np.ndarray]] = {}
        for item in table:
            best = item["best_baseline"]
            if best not in cache:
                cache[best] = values(rows, baselines[best], truth, recipe, w)
            sign = 1.0 if item["higher_is_better"] else -1.0
            samples[item["key"]].append(sign * (ent[item["key"]] - cache[best][item["key"]]))
    alpha = (1.0 - LEVEL) / 2.0
    for item in table:
        margins = np.concatenate(samples[item["key"]])
        margins = margins[np.isfinite(margins)]
        low, high = (np.quantile(margins, [alpha, 1.0 - alpha]) if len(margins) else (np.nan, np.nan))
        item["ci95"] = [float(low), float(high)]
    return table


def binary_flags(recipe: dict[str, Any], entry: Outputs, truth: dict[str, np.ndarray]) -> list[str]:
    """Warnings for binary heads that never predict a positive, or whose accuracy is within half a point
    of the majority-class rate on the test rows."""
    from mtmm_keras.zoo.evaluation import present_rows

    flags = []
    for task in recipe.get("tasks", []):
        if task_kind(task) != "binary":
            continue
        label = np.asarray(truth[task["name"]])
        present = present_rows(label, task)
        label = label[present].reshape(-1)
        predicted = entry[task["name"]]["label"].reshape(-1)[present]
        rate = float(np.mean(label == 1)) if len(label) else 0.0
        majority = max(rate, 1.0 - rate)
        accuracy = float(np.mean(predicted == label)) if len(label) else float("nan")
        if not np.any(predicted == 1):
            flags.append(f"`{task['name']}` never predicts a positive on the test split (positive rate {rate:.3f}).")
        elif not np.any(predicted == 0):
            flags.append(f"`{task['name']}` never predicts a negative on the test split (positive rate {rate:.3f}).")
        elif abs(accuracy - majority) <= MAJORITY_TOLERANCE:
            flags.append(f"`{task['name']}` accuracy {accuracy:.3f} equals the majority-class rate {majority:.3f} "
                         f"(within {MAJORITY_TOLERANCE:.3f}): accuracy says nothing here; read its AUC.")
    return flags


def floor_failures(table: list[dict[str, Any]] | None) -> list[str]:
    """The quality floor: every headline metric's margin over the best simple baseline must be > 0 (a tie
    at a perfect score, e.g. accuracy 1.0 for the entry and a baseline, passes: nothing can beat it).
    Returns one line per failure (an empty list: the floor holds). A missing table is itself a failure."""
    if not table:
        return ["no simple-baselines table (metadata 'simple_baselines' is missing or empty)"]
    failures = []
    for item in table:
        margin = item.get("margin")
        if margin is not None and margin == 0 and item["metric"] in PERFECT and item["entry"] == PERFECT[item["metric"]]:
            continue  # a tie at a perfect score: nothing can beat it
        if margin is None or not np.isfinite(margin) or margin <= 0:
            failures.append(f"{item['key']}: entry {item['entry']:.4f} vs {item['best_baseline']} {item['baseline']:.4f} "
                            f"(margin {margin:+.4f}, 95 % CI [{item['ci95'][0]:+.4f}, {item['ci95'][1]:+.4f}])")
    return failures
