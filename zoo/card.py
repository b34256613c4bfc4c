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
             "| modalities present | metric | this model | dedicated model (ablation) | difference |", "|---|---|---|---|---|"]
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


def _perfect_tie(row: dict[str, Any]) -> bool:
    from mtmm_keras.zoo.headline import PERFECT

    return row["margin"] == 0 and row["entry"] == PERFECT.get(row["metric"])


def _simple_baselines(name: str, table: dict[str, Any]) -> list[str]:
    """The simple-baselines section: the entry beside the best scikit-learn baseline per headline metric."""
    method = table["method"]
    boot = method["bootstrap"]
    rows = "all" if method["fit_rows"] >= method["train_rows"] else f"a seeded subsample of {method['fit_rows']:,}"
    hgb_rows = method.get("hgb_fit_rows", method["fit_rows"])
    hgb = "" if hgb_rows >= method["fit_rows"] else f" (gradient boosting on a seeded {hgb_rows:,} of them)"
    lines = ["", "## Simple baselines (scikit-learn, the same train / test split)", "",
             f"Fitted on {rows} of the {method['train_rows']:,} train rows{hgb}, scored on the {method['test_rows']:,} test rows; "
             f"reproduce with `mtmm zoo evaluate {name} --baselines` (`mtmm_keras.zoo.baselines`). Margin: how much "
             "better the entry is (baseline − entry for RMSE); its 95 % interval is a paired bootstrap over "
             f"{boot['paired_over']} ({boot['resamples']} resamples, seed {boot['seed']}).", "",
             "| headline metric | this model | best baseline | baseline value | margin | 95 % interval | |",
             "|---|---|---|---|---|---|---|"]
    for row in table["headline"]:
        low, high = row["ci95"]
        verdict = ("**not better**" if row["margin"] <= 0 and not _perfect_tie(row) else "tie at a perfect score"
                   if row["margin"] <= 0 else "better" if low > 0 else "better (interval includes 0)")
        lines.append(f"| {row['key']} | {row['entry']:.4f} | {row['best_baseline']} | {row['baseline']:.4f} | "
                     f"{row['margin']:+.4f} | [{low:+.4f}, {high:+.4f}] | {verdict} |")
    names = list(table["metrics"])
    keys = [row["key"] for row in table["headline"]]
    lines += ["", "Every baseline's headline metrics:", "", "| baseline | " + " | ".join(keys) + " |",
              "|---|" + "---|" * len(keys)]
    lines += [f"| {b} | " + " | ".join(f"{table['metrics'][b][k]:.4f}" for k in keys) + " |" for b in names]
    lines += ["", "Features: " + "; ".join(f"`{m}`: {text}" for m, text in method["features"].items()) + "."]
    for flag in table.get("flags", []):
        lines.append(f"- **Flag:** {flag}")
    return lines


def _robustness(name: str, table: dict[str, Any]) -> list[str]:
    """The robustness section: headline metrics under device perturbations, and what each costs."""
    lines = ["", "## Robustness (inputs as a device gives them)", "",
             f"Measured by `mtmm zoo evaluate {name} --robustness` (`mtmm_keras.zoo.robustness`) on the test split; "
             "drop: how much worse than clean (positive: worse)."]
    if not table["perturbations"]:
        kinds = ", ".join(table.get("not_applicable") or []) or "these"
        return lines + ["", f"No device perturbation applies to {kinds} inputs; clean metrics only."]
    keys = list(table["clean"])
    lines += ["", "| perturbation | inputs | " + " | ".join(f"{k} (drop)" for k in keys) + " |",
              "|---|---|" + "---|" * len(keys),
              "| clean | | " + " | ".join(f"{table['clean'][k]:.4f}" for k in keys) + " |"]
    for pert, result in table["perturbations"].items():
        cells = " | ".join(f"{result['metrics'][k]:.4f} ({result['drop'][k]:+.4f})" for k in keys)
        lines.append(f"| {pert} | {', '.join(result['modalities'])} | {cells} |")
    if table.get("not_applicable"):
        lines += ["", f"Not perturbed: {', '.join(table['not_applicable'])} inputs (no device perturbation applies)."]
    return lines


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
        lines += ["", "## Ablations (the same recipe retrained on one modality / view at a time)", "",
                  "| model | metric | value |", "|---|---|---|"]
        for baseline, metrics in meta["baselines"].items():
            lines += [f"| {baseline} | {k} | {v:.4f} |" for k, v in metrics.items()]
    if meta.get("simple_baselines"):
        lines += _simple_baselines(name, meta["simple_baselines"])
    if meta.get("robustness"):
        lines += _robustness(name, meta["robustness"])
    lines += [
        "",
        "## Training",
        "",
        f"- {training['epochs']} epochs, batch {training['batch_size']}, Adam lr {training['learning_rate']}, seed {training['seed']}",
        f"- {training['seconds']:.0f} s on {training['hardware']} (Keras {training['keras']}, backend {training['backend']} {training['backend_version']})",
        *_ensemble_lines(training.get("ensemble")),
        f"- Reproduce: `mtmm zoo train {name}` (then `mtmm zoo evaluate {name}`); per-task curves in `curves.png`"
        + (" (the first member's)." if training.get("ensemble") else "."),
        f"- Export: `mtmm export zoo:{name} --out exports/{name} --quantize float32,float16,dynamic,int8`",
        "",
    ]
    return "\n".join(lines)


def _ensemble_lines(ensemble: dict | None) -> list[str]:
    """The training section's lines on a seed ensemble's members (none for a single model)."""
    if not ensemble:
        return []
    seeds = ", ".join(str(seed) for seed in ensemble["member_seeds"])
    line = (f"- A seed ensemble of {ensemble['members']} models (seeds {seeds}), each trained as above; the entry's "
            "outputs are their means (`mk.models.average_ensemble`)")
    if "member_epochs_run" in ensemble:
        line += (f"; epochs run per member {ensemble['member_epochs_run']}, best epoch "
                 f"{ensemble['member_best_epoch']} (early stopping)")
    return [line + "."]

