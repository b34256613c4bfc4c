"""Choose a zoo entry's recipe without touching its test split: variants against the card's baselines on a holdout.

`mtmm zoo evaluate NAME --baselines` scores an entry on its test split, and trying recipes against that split
would tune to it. This benchmark carves a holdout out of the entry's *train* split (a seeded random fraction),
fits each recipe variant on the rest exactly as `mtmm zoo train` fits the recipe, fits the card's simple
baselines (`mtmm_keras.zoo.baselines`: majority / mean, linear, gradient boosting) on the same rows, and prints
each variant's margin over the best baseline per headline metric, with the card's paired bootstrap 95 %
interval. A variant is a `+`-joined list of `path=JSON` overrides of the recipe, e.g.
`builder_kwargs.num_experts=8+encoders.tabular.num_bins=64` or `tasks.5.weight=2.0`; `base` is the recipe as it is.

    python -m benchmarks.zoo_holdout movies_mmoe --variant base --variant builder_kwargs.num_experts=8 \\
        [--ensemble 5] [--fraction 0.2] [--seed 123] [--out benchmarks/results/zoo_holdout_movies_mmoe.json]

`--ensemble K` also fits each variant with `fit.seed` + 1, …, + K − 1 (each fit one seed: a recipe's own `ensemble`
is left out) and scores the mean of the K models' outputs (`mk.models.average_ensemble`: logits of binary heads,
probabilities of softmax heads, values of regression heads), in a row `<variant> ×K` beside the single model's.

Only task entries (not the joint-embedding retrieval entries) are supported.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

BASE = "base"


def apply_overrides(recipe: dict[str, Any], variant: str) -> dict[str, Any]:
    """A copy of `recipe` with the variant's `path=JSON` overrides set (`base`: no override). The path must exist
    (list items by index), except a new last key in `builder_kwargs` or an encoder's spec (keyword arguments); a
    wrong one is refused with the keys that are there."""
    recipe = copy.deepcopy(recipe)
    if variant == BASE:
        return recipe
    for part in variant.split("+"):
        path, sep, text = part.partition("=")
        if not sep or not path:
            raise ValueError(f"--variant {variant!r}: {part!r} is not path=JSON (e.g. builder_kwargs.dropout=0.1).")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--variant {variant!r}: the value of {path!r} is not JSON ({error.msg}): "
                             f"{text!r}.") from None
        node: Any = recipe
        keys = path.split(".")
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ValueError(f"--variant {variant!r}: {'.'.join(keys[:depth + 1])!r}: a list index from 0 to "
                                     f"{len(node) - 1} is needed here.")
                key = int(key)
            elif not isinstance(node, dict) or (key not in node and not (last and _takes_new_keys(keys[:depth]))):
                valid = sorted(node) if isinstance(node, dict) else []
                raise ValueError(f"--variant {variant!r}: the recipe has no {'.'.join(keys[:depth + 1])!r}; "
                                 f"keys there: {valid}.")
            if last:
                node[key] = value
            else:
                node = node[key]
    return recipe


def _takes_new_keys(parents: list[str]) -> bool:
    """Whether a new key may be added under `parents`: only in the dicts passed as keyword arguments (the builder's
    and each encoder's), whose functions refuse a misspelt one; elsewhere (`fit`, tasks) a typo would be ignored."""
    return parents == ["builder_kwargs"] or (len(parents) == 2 and parents[0] == "encoders")


def holdout_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, holdout rows) of the train split: a seeded random `fraction` held out, both sorted."""
    order = np.random.default_rng(seed).permutation(n)
    cut = n - int(round(fraction * n))
    return np.sort(order[:cut]), np.sort(order[cut:])


def run(name: str, variants: list[str], fraction: float, seed: int, ensemble: int = 1) -> dict[str, Any]:
    """Each variant's headline table (the card's `compare`) on the holdout rows of `name`'s train split; with
    `ensemble` > 1 also the table of `ensemble` seeds' averaged outputs (`<variant> ×K`)."""
    import keras

    from mtmm_keras.zoo import baselines, evaluation, headline, recipes, registry, training

    if name not in registry.list():
        raise ValueError(f"unknown zoo entry {name!r}; valid: {', '.join(registry.list())}.")
    base = registry.recipe(name)
    if base["builder"] == "joint_embedding":
        raise ValueError(f"{name} is a joint-embedding (retrieval) entry; this benchmark takes task entries.")
    chosen = {variant: apply_overrides(base, variant) for variant in variants}  # every variant checked first
    x, y = evaluation.split_arrays(base, "train")
    fit_rows, held = holdout_rows(len(next(iter(y.values()))), fraction, seed)
    x_fit, y_fit = ({k: np.asarray(v)[fit_rows] for k, v in d.items()} for d in (x, y))
    x_held, y_held = ({k: np.asarray(v)[held] for k, v in d.items()} for d in (x, y))
    rows = headline.headlines(base, y_fit)
    start = time.perf_counter()
    simple = baselines.task_baselines(base, x_fit, y_fit, x_held)
    print(f"baselines fitted on {len(fit_rows)} rows ({time.perf_counter() - start:.0f} s); holdout {len(held)} rows",
          flush=True)
    result: dict[str, Any] = {"entry": name, "fraction": fraction, "seed": seed, "ensemble": ensemble,
                              "fit_rows": int(len(fit_rows)), "holdout_rows": int(len(held)), "variants": {}}

    def score(label: str, model: Any, recipe: dict[str, Any], epochs_run: list[int], start: float) -> None:
        table = headline.compare(rows, headline.model_outputs(model, recipe, x_held), simple, y_held, recipe)
        below = [row["key"] for row in table if row["margin"] < 0]
        result["variants"][label] = {"epochs_run": epochs_run[0] if len(epochs_run) == 1 else epochs_run,
                                     "below": below, "seconds": time.perf_counter() - start,
                                     "table": [{k: row[k] for k in ("key", "entry", "best_baseline", "baseline",
                                                                     "margin", "ci95")} for row in table]}
        print(f"{label}: {len(below)} headline metric(s) below the best baseline {below} "
              f"({epochs_run} epochs, {time.perf_counter() - start:.0f} s)", flush=True)

    for variant, recipe in chosen.items():
        start = time.perf_counter()
        members, epochs_run = [], []
        for offset in range(ensemble):
            member = recipes.member_recipe(recipe, offset)  # one seed: the recipe's own `ensemble` left out
            keras.utils.set_random_seed(recipes.seed_of(member))
            model, history = training.build_and_fit(member, x_fit, y_fit, member["fit"]["epochs"])
            members.append(model)
            epochs_run.append(len(history.get("loss", [])))
            if offset == 0:
                score(variant, model, recipe, epochs_run, start)
        if ensemble > 1:
            score(f"{variant} ×{ensemble}", recipes.ensemble_of(recipe, members, compile=False), recipe, epochs_run,
                  start)
    return result


def markdown(result: dict[str, Any]) -> str:
    """One row per variant, one column per headline metric: the margin over the best baseline."""
    variants = result["variants"]
    keys = [row["key"] for row in next(iter(variants.values()))["table"]]
    lines = ["| variant | below | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for variant, info in variants.items():
        margins = {row["key"]: row["margin"] for row in info["table"]}
        lines.append(f"| `{variant}` | {len(info['below'])} | " + " | ".join(f"{margins[k]:+.4f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run every variant, print the margins table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a zoo entry with tasks (e.g. movies_mmoe, penguins_hard)")
    parser.add_argument("--variant", action="append", default=None,
                        help="path=JSON overrides joined by '+', or 'base' (repeat the flag; default: base)")
    parser.add_argument("--ensemble", type=int, default=1,
                        help="also score the mean output of this many seeds per variant (default 1: the single model)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of the train split held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the holdout draw (default 123)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/zoo_holdout_<name>.json)")
    args = parser.parse_args(argv)
    if not 0.0 < args.fraction < 1.0:
        parser.error(f"--fraction must be between 0 and 1 (exclusive), got {args.fraction}")
    if args.ensemble < 1:
        parser.error(f"--ensemble must be a positive number of seeds, got {args.ensemble}")
    try:
        result = run(args.name, args.variant or [BASE], args.fraction, args.seed, args.ensemble)
    except ValueError as error:
        parser.error(str(error))
    print("\nmargin over the best simple baseline on the holdout (positive: the variant is better):\n")
    print(markdown(result))
    out = Path(args.out or f"benchmarks/results/zoo_holdout_{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
