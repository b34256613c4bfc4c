"""Render an entry's model card (markdown) from its recipe and measured metadata."""

from __future__ import annotations

from typing import Any


def _table(metrics: dict[str, float]) -> list[str]:
    lines = ["| metric (test split) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
    return lines


def _lower_is_better(metric: str) -> bool:
    return metric.endswith(("_rmse", "_mae", "_loss", "_median_rank"))


def _missing_modalities(recipe: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """Scores of the same model with one modality missing, beside the dedicated model for what is left."""
    modalities = list(recipe["encoders"])
    lines = ["", "## With a modality missing (the same model, `modality_mask` column 0 and the input zeros)", "",
             "| modalities present | metric | this model | dedicated model (baseline) | difference |", "|---|---|---|---|---|"]
    baselines = meta.get("baselines") or {}
    for key, value in meta["metrics"].items():
        if "_without_" in key:
            continue
        lines.append(f"| all: {', '.join(modalities)} | {key} | {value:.4f} | | |")
    for missing in modalities:
        present = [m for m in modalities if m != missing]
        dedicated = baselines.get("+".join(present) + " only", {})
        for key, value in meta["metrics"].items():
            if not key.endswith(f"_without_{missing}"):
                continue
            base_key = key[: -len(f"_without_{missing}")]
            reference = dedicated.get(base_key)
            cells = (f"{reference:.4f} | {value - reference:+.4f}" if reference is not None else " | ")
            lines.append(f"| {', '.join(present)} | {key} | {value:.4f} | {cells} |")
    return lines


def _references(metrics: dict[str, float], references: list[dict[str, Any]]) -> list[str]:
    """The recipe's reference numbers (models outside this library, or targets), each beside this model's."""
    lines = ["", "## Reference numbers (from the recipe, not measured here)", "",
             "| reference | metric | reference value | this model | |", "|---|---|---|---|---|"]
    for ref in references:
        for key, value in ref["metrics"].items():
            if key not in metrics:
                continue
            better = metrics[key] < value if _lower_is_better(key) else metrics[key] > value
            lines.append(f"| {ref['name']} | {key} | {value:.4f} | {metrics[key]:.4f} | {'better' if better else '**not better**'} |")
    notes = [ref["note"] for ref in references if ref.get("note")]
    return lines + ([""] + [f"- {ref['name']}: {ref['note']}" for ref in references if ref.get("note")] if notes else [])


def render(name: str, recipe: dict[str, Any], meta: dict[str, Any]) -> str:
    """The entry's `card.md` text from its recipe and metadata (tasks, data, test metrics, baselines, training)."""
    training = meta["training"]
    lines = [
        f"# {name}",
        "",
        recipe.get("description", ""),
        "",
        f"- **Builder:** `mk.builders.{recipe['builder']}`; encoders: "
        + ", ".join(f"`{m}` ({spec['kind']})" for m, spec in recipe["encoders"].items()),
        f"- **Data:** `{recipe['data']}` (mtmm_keras.data), train split for fitting, test split for every number below",
        "- **Tasks:** " + (", ".join(f"`{t['name']}` ({t['units']} units, {t['loss']}, λ={t.get('weight', 1.0)})" for t in recipe.get("tasks", [])) or "cross-modal retrieval"),
        f"- **Parameters:** {meta['params']:,}; weights `{meta['weights_file']}` {meta['weights_bytes'] / 1e6:.2f} MB, sha256 `{meta['sha256'][meta['weights_file']]}`",
        "",
        "## Metrics",
        "",
        "Measured by `mtmm zoo evaluate " + name + "` (the same function that wrote this card):",
        "",
        *_table({k: v for k, v in meta["metrics"].items() if "_without_" not in k}),
    ]
    if any("_without_" in k for k in meta["metrics"]):
        lines += _missing_modalities(recipe, meta)
    if any(k.endswith("_auc") for k in meta["metrics"]):
        lines += ["", "`<task>_auc`: ROC AUC of the task's score on the test rows; `mean_auc`: the mean over those tasks; "
                  "`<task>_accuracy` of a binary task thresholds its probability at 0.5."]
    if recipe.get("references"):
        lines += _references(meta["metrics"], recipe["references"])
    if recipe["builder"] == "joint_embedding":
        lines += ["", f"Recall@K: each test item queries the whole test split of the other modality; a hit is a "
                  f"retrieved item with the same `{recipe.get('group_label', 'label')}`."]
        if any(k.endswith(("_median_rank", "_map")) for k in meta["metrics"]):
            lines += ["`median_rank`: median 1-based rank of the first hit; `map`: mean average precision over all "
                      "items with the query's label. Ties count against the query (`mtmm_keras.retrieval`)."]
    if meta.get("baselines"):
        lines += ["", "## Baselines (same recipe, one modality / view at a time)", "", "| model | metric | value |", "|---|---|---|"]
        for baseline, metrics in meta["baselines"].items():
            lines += [f"| {baseline} | {k} | {v:.4f} |" for k, v in metrics.items()]
    lines += [
        "",
        "## Training",
        "",
        f"- {training['epochs']} epochs, batch {training['batch_size']}, Adam lr {training['learning_rate']}, seed {training['seed']}",
        f"- {training['seconds']:.0f} s on {training['hardware']} (Keras {training['keras']}, backend {training['backend']} {training['backend_version']})",
        f"- Reproduce: `mtmm zoo train {name}` (then `mtmm zoo evaluate {name}`); per-task curves in `curves.png`.",
        f"- Export: `mtmm export zoo:{name} --out exports/{name} --quantize float32,float16,dynamic,int8`",
        "",
    ]
    return "\n".join(lines)
