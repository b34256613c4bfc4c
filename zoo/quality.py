"""An entry's quality tables (simple baselines with margins, robustness), measured and written into its folder.

`measure` computes both for a model in memory (what `mtmm zoo train` records for a new entry);
`evaluate_quality` loads an entry (checksum-verified) and measures it; `write` records the tables in an
existing entry's metadata.json and re-renders its card.md without retraining (staged beside the folder,
every file's sha256 recomputed, swapped in with one rename: `presets.update_preset`).

Metadata keys: `simple_baselines` (method, every baseline's headline metrics, the headline table with the
entry's margins and bootstrap intervals, flags) and `robustness` (`robustness.measure`). The older
`baselines` key keeps what it always held: the same recipe retrained on one modality at a time (the card
calls those ablations).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from mtmm_keras.zoo import baselines as baselines_lib
from mtmm_keras.zoo import headline, registry
from mtmm_keras.zoo import robustness as robustness_lib

TABLES = ("baselines", "robustness", "ablations")
DEFAULT_TABLES = ("baselines", "robustness")  # what `mtmm zoo train` records (it trains the ablations itself)


def check_max_fit_rows(value: Any, argument: str = "max_fit_rows") -> int | None:
    """`max_fit_rows` as the baselines take it: None (the cost rule of `baselines.fit_row_limits`), 0 (every
    train row) or a positive cap on the rows the linear model fits."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{argument}` must be a positive number of train rows, 0 for all of them, or left out for "
                         f"the default cost rule; got {value!r}.")
    return value


def simple_baselines(model: Any, recipe: dict[str, Any], x_train: dict, y_train: dict, x_test: dict, y_test: dict,
                     max_fit_rows: int | None = None) -> dict[str, Any]:
    """The `simple_baselines` metadata of `model`: every baseline's headline metrics on the test split, and
    per headline metric the entry, the best baseline, the margin and its paired bootstrap 95 % interval."""
    max_fit_rows = check_max_fit_rows(max_fit_rows)
    start = time.perf_counter()
    rows = headline.headlines(recipe, y_train)
    retrieval = recipe["builder"] == "joint_embedding"
    groups = np.asarray(y_test["group"]) if retrieval else None
    if retrieval:
        fitted = baselines_lib.retrieval_baselines(recipe, x_train, y_train["group"], x_test, groups, max_fit_rows)
    else:
        fitted = baselines_lib.task_baselines(recipe, x_train, y_train, x_test, max_fit_rows)
    entry = headline.model_outputs(model, recipe, x_test, groups)
    table = headline.compare(rows, entry, fitted, y_test, recipe)
    n_train = len(next(iter(x_train.values())))
    return {
        "method": {
            "baselines": list(fitted),
            "features": baselines_lib.describe_features(recipe),
            "train_rows": n_train,
            "fit_rows": baselines_lib.fit_row_limits(recipe, x_train, max_fit_rows)[0],
            "hgb_fit_rows": baselines_lib.fit_row_limits(recipe, x_train, max_fit_rows)[1],
            "test_rows": len(next(iter(x_test.values()))),
            "bootstrap": {"resamples": headline.BOOTSTRAP_RESAMPLES, "seed": headline.BOOTSTRAP_SEED,
                          "level": headline.LEVEL, "paired_over": "test rows" if not retrieval else "queries (gallery fixed)"},
        },
        "metrics": {name: headline.scalar_values(rows, out, y_test, recipe) for name, out in fitted.items()},
        "headline": table,
        "flags": [] if retrieval else headline.binary_flags(recipe, entry, y_test),
        "seconds": round(time.perf_counter() - start, 1),
    }


def measure(model: Any, recipe: dict[str, Any], x_train: dict, y_train: dict, x_test: dict, y_test: dict,
            tables: tuple[str, ...] = DEFAULT_TABLES, max_fit_rows: int | None = None) -> dict[str, Any]:
    """{"simple_baselines": ..., "robustness": ..., "baselines": ...} (those asked for in `tables`: "baselines",
    "robustness", "ablations") for `model` on the entry's split."""
    tables = check_tables(tables)
    result: dict[str, Any] = {}
    if "ablations" in tables:
        result["baselines"] = ablations(recipe, x_train, y_train, x_test, y_test)
    if "baselines" in tables:
        result["simple_baselines"] = simple_baselines(model, recipe, x_train, y_train, x_test, y_test, max_fit_rows)
    if "robustness" in tables:
        start = time.perf_counter()
        result["robustness"] = robustness_lib.measure(model, recipe, x_test, y_test, headline.headlines(recipe, y_train))
        result["robustness"]["seconds"] = round(time.perf_counter() - start, 1)
    return result


def check_tables(tables: Any) -> tuple[str, ...]:
    """`tables` as a tuple of known names ("baselines", "robustness"); ValueError naming a bad one."""
    tables = (tables,) if isinstance(tables, str) else tuple(tables)
    bad = [t for t in tables if t not in TABLES]
    if bad or not tables:
        raise ValueError(f"`tables` must name one or more of {', '.join(TABLES)}; got {list(tables)!r}.")
    return tables


def _entry_recipe(name: str, folder: Path) -> dict[str, Any]:
    path = folder / registry.RECIPE_FILE
    return registry.read_json(path) if path.is_file() else registry.recipe(name)


def ablations(recipe: dict[str, Any], x_train: dict, y_train: dict, x_test: dict, y_test: dict) -> dict[str, Any]:
    """The recipe's one-modality ablations (its `baselines` subsets), each retrained from scratch with the
    recipe's fit settings and seed as `mtmm zoo train` does, and measured on the test split; the entry's own
    model is not touched. Metadata key `baselines`; the card's "Ablations" section."""
    from mtmm_keras.zoo import evaluation, training

    result = {}
    for subset in recipe.get("baselines", []):
        model, _ = training.build_and_fit(recipe, x_train, y_train, recipe["fit"]["epochs"], modalities=subset)
        result["+".join(subset) + " only"] = evaluation.evaluate_model(model, recipe, {m: x_test[m] for m in subset}, y_test)
        print(f"ablation {'+'.join(subset)} only: " + ", ".join(f"{k} {v:.4f}" for k, v in result["+".join(subset) + " only"].items()))
    return result


def evaluate_quality(name: str, weights_dir: str | None = None, tables: tuple[str, ...] = DEFAULT_TABLES,
                     max_fit_rows: int | None = None) -> dict[str, Any]:
    """Load the entry (checksum-verified) and measure the tables asked for; also returns what its card says."""
    from mtmm_keras.zoo import evaluation
    from mtmm_keras.zoo.loading import load

    tables, max_fit_rows = check_tables(tables), check_max_fit_rows(max_fit_rows)
    folder = registry.resolve(name, weights_dir)[1]
    recipe = _entry_recipe(name, folder)
    model = load(name, weights_dir=weights_dir)
    x_train, y_train = evaluation.split_arrays(recipe, "train")
    x_test, y_test = evaluation.split_arrays(recipe, "test")
    measured = measure(model, recipe, x_train, y_train, x_test, y_test, tables, max_fit_rows)
    card = registry.metadata(name, folder) or {}
    return {"name": name, "folder": str(folder), "measured": measured,
            "card": {key: card.get(key) for key in ("simple_baselines", "robustness", "baselines")}}


def write(name: str, measured: dict[str, Any], weights_dir: str | None = None) -> dict[str, Any]:
    """Record `measured` (from `measure`) in the entry's metadata.json and re-render its card.md, without
    retraining: the other files are copied unchanged, every sha256 recomputed, and the folder swapped in
    atomically. Returns the new metadata."""
    from mtmm_keras.zoo import card, presets

    folder = registry.resolve(name, weights_dir)[1]
    recipe = _entry_recipe(name, folder)
    return presets.update_preset(folder, measured, lambda meta: card.render(name, recipe, meta))


def floor_failures(meta: dict[str, Any]) -> list[str]:
    """The quality floor of an entry's metadata (`headline.floor_failures` on its simple-baselines table)."""
    return headline.floor_failures((meta.get("simple_baselines") or {}).get("headline"))


def print_floor(name: str, meta: dict[str, Any]) -> list[str]:
    """Print whether the entry clears the quality floor (`floor_failures`) and return the failures."""
    failures = floor_failures(meta)
    if failures:
        print(f"WARNING: {name} is below the quality floor (not better than its best simple baseline) on: "
              + "; ".join(failures))
    else:
        print(f"{name} beats its best simple baseline on every headline metric")
    return failures
