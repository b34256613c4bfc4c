"""Is penguins_hard's sex head really behind logistic regression? Repeated cross-validation over all 333 rows.

The zoo card scores every model on one fixed split of 67 test rows, where logistic regression gets the sex of
60 penguins right and the entry 57: a 3-row gap whose 95 % interval is [-0.150, +0.060]. This benchmark asks the
question without that one split: repeated stratified 5-fold cross-validation over the train and test rows together,
each fold fitting the entry's own recipe (`zoo/entries/penguins_hard/recipe.json`, all three tasks jointly, seed 0)
and the card's baselines (`LogisticRegression(C=1)` on standardised features, `HistGradientBoostingClassifier`), all
scored on the same held-out fold. Prints each method's mean sex accuracy with its standard error, and the paired
per-fold difference entry - baseline with a t-interval.

    python -m benchmarks.penguins_cv [--repeats 3] [--out PATH]

To choose between recipes without the card's test rows, `--train-only` cross-validates over the 266 train rows
alone and `--variant` (repeatable) adds recipe variants, written as for `benchmarks.zoo_holdout` (`base` is the
recipe as shipped, e.g. `encoders.features.normalize=true` or `tasks.1.weight=2.0`):

    python -m benchmarks.penguins_cv --train-only --variant base --variant encoders.features.normalize=true

`--ensemble K` also scores each variant as a K-seed ensemble (its first member is the single model, so the pair is
compared on the same fits).

`--family` asks whether the card's test split can rank recipes at all: a family of scikit-learn sex classifiers
(the card's logistic regression, the same without the `year` column, with pairwise products, an RBF SVM, gradient
boosting, one logistic regression per predicted species), each cross-validated over the train rows only and scored
on the card's 67 test rows, with the Spearman rank correlation between the two orders (seconds, no Keras fits):

    python -m benchmarks.penguins_cv --family
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def _rows(train_only: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All rows of the entry's data (its train and test splits; only the train split with `train_only`), features
    as the entry gets them."""
    from mtmm_keras.zoo import evaluation, registry

    recipe = registry.recipe("penguins_hard")
    x_train, y_train = evaluation.split_arrays(recipe, "train")
    if train_only:
        return np.asarray(x_train["features"]), {task: np.ravel(y) for task, y in y_train.items()}
    x_test, y_test = evaluation.split_arrays(recipe, "test")
    features = np.concatenate([x_train["features"], x_test["features"]])
    labels = {task: np.concatenate([np.ravel(y_train[task]), np.ravel(y_test[task])]) for task in y_train}
    return features, labels


def _entry_sex_accuracies(features, labels, train, test, recipe, ensemble: int = 1) -> list[float]:
    """Fit `recipe` on the `train` rows (as `mtmm zoo train` does) and score its sex head on `test`; with `ensemble`
    K > 1, also fit the seeds after it and score the K models' averaged outputs (`mtmm zoo train` of the recipe with
    `"ensemble": K`). Returns [single model] or [single model, ensemble]."""
    import keras

    from mtmm_keras.zoo import evaluation, recipes, training

    x_train, y_train = {"features": features[train]}, {task: y[train] for task, y in labels.items()}
    x_test, y_test = {"features": features[test]}, {task: y[test] for task, y in labels.items()}
    members = []
    for k in range(ensemble):
        member = recipes.member_recipe(recipe, k)
        keras.utils.set_random_seed(recipes.seed_of(member))
        members.append(training.build_and_fit(member, x_train, y_train, member["fit"]["epochs"])[0])
    models = [members[0]] + ([recipes.ensemble_of(recipe, members)] if ensemble > 1 else [])
    return [float(evaluation.evaluate_model(model, recipe, x_test, y_test)["sex_accuracy"]) for model in models]


def run(repeats: int, variants: tuple[str, ...] = (), train_only: bool = False, ensemble: int = 1) -> dict:
    """Per-fold sex accuracy of the entry (and of each recipe variant; with `ensemble` K > 1 also of each as a K-seed
    ensemble, `<name> ×K`) and both baselines, and the paired differences' summary."""
    from mtmm_keras.zoo import registry

    from benchmarks.zoo_holdout import BASE, apply_overrides
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    recipe = registry.recipe("penguins_hard")
    entries = {"entry": recipe, **{f"entry[{v}]": apply_overrides(recipe, v) for v in variants if v != BASE}}
    features, labels = _rows(train_only)
    sex = labels["sex"]
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(features, sex)
    names = [n for name in entries for n in ([name] + ([f"{name} ×{ensemble}"] if ensemble > 1 else []))]
    scores: dict[str, list[float]] = {**{name: [] for name in names}, "linear": [], "hgb": []}
    start = time.perf_counter()
    for k, (train, test) in enumerate(folds):
        linear = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)).fit(features[train], sex[train])
        hgb = HistGradientBoostingClassifier(random_state=0).fit(features[train], sex[train])
        scores["linear"].append(float(linear.score(features[test], sex[test])))
        scores["hgb"].append(float(hgb.score(features[test], sex[test])))
        for name, chosen in entries.items():
            accuracies = _entry_sex_accuracies(features, labels, train, test, chosen, ensemble)
            for key, accuracy in zip([name, f"{name} ×{ensemble}"], accuracies):
                scores[key].append(accuracy)
        print(f"fold {k + 1:2d}/{5 * repeats}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in scores.items())
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    summary = {}
    for name, values in scores.items():
        values = np.asarray(values)
        summary[name] = {"mean": float(values.mean()), "standard_error": float(values.std(ddof=1) / np.sqrt(len(values)))}
    for name in names:
        for baseline in ("linear", "hgb"):
            diff = np.asarray(scores[name]) - np.asarray(scores[baseline])
            half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
            summary[f"{name} - {baseline}"] = {"mean": float(diff.mean()),
                                               "interval_95": [float(diff.mean() - half), float(diff.mean() + half)]}
    return {"rows": int(len(sex)), "train_only": train_only, "folds": 5 * repeats, "ensemble": ensemble, "scores": scores,
            "summary": summary, "seconds": time.perf_counter() - start}


def _per_species_logistic() -> Any:
    """Sex from one logistic regression per species, the species predicted by a logistic regression first (sexual
    size dimorphism differs between species): a scikit-learn estimator."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class PerSpeciesLogistic(ClassifierMixin, BaseEstimator):
        def fit(self, features, sex, species):
            self.species_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, species)
            self.sex_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
                self._crossed(features, species), sex)
            return self

        def predict(self, features):
            return self.sex_.predict(self._crossed(features, self.species_.predict(features)))

        @staticmethod
        def _crossed(features, species):
            one_hot = np.eye(3)[species]
            return np.concatenate([features, (one_hot[:, :, None] * features[:, None, :]).reshape(len(features), -1)], 1)

    return PerSpeciesLogistic()


FAMILY = ("logistic regression (the card's)", "logistic regression without year", "logistic regression, pairwise products",
          "RBF SVM", "gradient boosting", "logistic regression per predicted species")


def family(repeats: int = 3) -> dict:
    """Each `FAMILY` sex classifier's mean accuracy over repeated 5-fold cross-validation of the train rows and its
    accuracy on the card's test rows (fitted on all train rows), and the Spearman rank correlation of the two."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from sklearn.svm import SVC

    from mtmm_keras.data.penguins import FEATURE_NAMES

    every, labels = _rows()
    train_rows = len(_rows(train_only=True)[0])  # _rows() lists the train split's rows first, then the test split's
    without_year = [i for i, name in enumerate(FEATURE_NAMES) if name != "year"]
    makers = {
        FAMILY[0]: lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)),
        FAMILY[1]: lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)),
        FAMILY[2]: lambda: make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression(max_iter=5000)),
        FAMILY[3]: lambda: make_pipeline(StandardScaler(), SVC(C=3.0)),
        FAMILY[4]: lambda: HistGradientBoostingClassifier(random_state=0),
        FAMILY[5]: _per_species_logistic,
    }

    def accuracy(name, fit_rows, score_rows):
        columns = without_year if name == FAMILY[1] else slice(None)
        model, features = makers[name](), every[:, columns]
        extra = (labels["species"][fit_rows],) if name == FAMILY[5] else ()
        model.fit(features[fit_rows], labels["sex"][fit_rows], *extra)
        return float(np.mean(model.predict(features[score_rows]) == labels["sex"][score_rows]))

    train, test = np.arange(train_rows), np.arange(train_rows, len(every))
    folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(train, labels["sex"][train]))
    table = {}
    for name in FAMILY:
        cv = [accuracy(name, train[a], train[b]) for a, b in folds]
        on_test = accuracy(name, train, test)
        table[name] = {"train_cv_mean": float(np.mean(cv)), "train_cv_standard_error": float(np.std(cv, ddof=1) / np.sqrt(len(cv))),
                       "test_accuracy": on_test, "test_correct": round(on_test * len(test))}
    rho = stats.spearmanr([table[n]["train_cv_mean"] for n in FAMILY], [table[n]["test_accuracy"] for n in FAMILY])
    return {"folds": len(folds), "train_rows": train_rows, "test_rows": len(test), "family": table,
            "spearman_train_cv_vs_test": float(rho.statistic)}


def main(argv: list[str] | None = None) -> int:
    """Run the cross-validation, print the summary table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of 5-fold cross-validation (default 3)")
    parser.add_argument("--out", default=None, help="where to write the JSON (default benchmarks/results/"
                        "penguins_cv.json, or penguins_cv_train_only.json with --train-only)")
    parser.add_argument("--train-only", action="store_true",
                        help="cross-validate over the train split's rows only (never the card's test rows)")
    parser.add_argument("--variant", action="append", default=[],
                        help="a recipe variant: path=JSON overrides joined by '+' (repeatable; 'base': as shipped)")
    parser.add_argument("--ensemble", type=int, default=1, metavar="K",
                        help="also score each variant as a K-seed ensemble (seeds fit.seed, ..., + K - 1; default 1)")
    parser.add_argument("--family", action="store_true",
                        help="rank a family of scikit-learn sex classifiers by train-row cross-validation and by the "
                        "card's test rows (no Keras fits; writes benchmarks/results/penguins_cv_family.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if args.family:
        if args.variant or args.ensemble != 1 or args.train_only:
            parser.error("--family fits only scikit-learn models: drop --variant, --ensemble and --train-only")
        result = family(args.repeats)
        print(f"sex accuracy: {result['folds']} folds of the {result['train_rows']} train rows | the card's "
              f"{result['test_rows']} test rows")
        print("| classifier | train-row CV, mean ± s.e. | test split |\n|---|---|---|")
        for name, row in result["family"].items():
            print(f"| {name} | {row['train_cv_mean']:.4f} ± {row['train_cv_standard_error']:.4f} | "
                  f"{row['test_accuracy']:.4f} ({row['test_correct']}/{result['test_rows']}) |")
        print(f"Spearman rank correlation, train-row CV vs test split: {result['spearman_train_cv_vs_test']:+.2f}")
        out = Path(args.out or "benchmarks/results/penguins_cv_family.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        return 0
    if args.ensemble < 1:
        parser.error(f"--ensemble must be a positive number of seeds, got {args.ensemble}")
    try:
        result = run(args.repeats, tuple(args.variant), args.train_only, args.ensemble)
    except ValueError as error:
        parser.error(str(error))
    where = "train rows" if args.train_only else "rows"
    print(f"\nsex accuracy, {result['folds']} folds over {result['rows']} {where}:")
    print("| model | mean | standard error |\n|---|---|---|")
    entries = [name for name in result["scores"] if name.startswith("entry")]
    for name in (*entries, "linear", "hgb"):
        s = result["summary"][name]
        print(f"| {name} | {s['mean']:.4f} | {s['standard_error']:.4f} |")
    for name in entries:
        for baseline in ("linear", "hgb"):
            s = result["summary"][f"{name} - {baseline}"]
            print(f"{name} - {baseline}: {s['mean']:+.4f}, paired 95 % interval [{s['interval_95'][0]:+.4f}, "
                  f"{s['interval_95'][1]:+.4f}]")
    out = Path(args.out or f"benchmarks/results/penguins_cv{'_train_only' if args.train_only else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
