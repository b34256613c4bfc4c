"""The stacked baseline of issue 22 for the movies zoo entries, on the entries' own split (mtmm_keras/data/movies.py).

HistGradientBoosting (random_state 0) per task on the three tabular columns plus out-of-fold (5-fold, seeded)
scores of the title's word ids: a logistic regression per genre and a ridge regression for the rating over the
bag of word ids (multi-hot, padding dropped). The test split's title scores come from models fitted on all
train rows. Prints the rating RMSE and per-genre / mean ROC AUC, and the tabular-only HGB for reference.

    python -m benchmarks.movies_stacked
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

import mtmm_keras as mk
from mtmm_keras.data.movies import GENRE_LABELS, VOCABULARY_SIZE


def bag_of_ids(title: np.ndarray) -> sp.csr_matrix:
    """Multi-hot [n, vocabulary] of the word ids (padding id 0 dropped)."""
    rows = np.repeat(np.arange(len(title)), title.shape[1])
    ids = title.reshape(-1)
    keep = ids != 0
    m = sp.csr_matrix((np.ones(keep.sum()), (rows[keep], ids[keep])), shape=(len(title), VOCABULARY_SIZE))
    m.data[:] = 1.0
    return m


def _title_model(task: str):
    return Ridge(alpha=10.0) if task == "rating" else LogisticRegression(C=1.0, max_iter=1000)


def _score(model, x):
    return model.predict(x) if isinstance(model, Ridge) else model.decision_function(x)


def title_scores(b_train, y_train, b_test, folds: int = 5, seed: int = 0):
    tasks = ("rating", *GENRE_LABELS)
    oof = np.zeros((b_train.shape[0], len(tasks)))
    test = np.zeros((b_test.shape[0], len(tasks)))
    for j, task in enumerate(tasks):
        y = y_train[task]
        for fit_rows, held in KFold(folds, shuffle=True, random_state=seed).split(oof):
            oof[held, j] = _score(_title_model(task).fit(b_train[fit_rows], y[fit_rows]), b_train[held])
        test[:, j] = _score(_title_model(task).fit(b_train, y), b_test)
    return oof, test


def evaluate(f_train, y_train, f_test, y_test) -> dict[str, float]:
    out = {}
    reg = HistGradientBoostingRegressor(random_state=0).fit(f_train, y_train["rating"])
    out["rating_rmse"] = float(np.sqrt(np.mean((reg.predict(f_test) - y_test["rating"]) ** 2)))
    for g in GENRE_LABELS:
        clf = HistGradientBoostingClassifier(random_state=0).fit(f_train, y_train[g])
        out[f"{g}_auc"] = float(roc_auc_score(y_test[g], clf.predict_proba(f_test)[:, 1]))
    out["mean_auc"] = float(np.mean([out[f"{g}_auc"] for g in GENRE_LABELS]))
    return out


def main() -> None:
    x_train, y_train = mk.data.load_numpy("movies", split="train")
    x_test, y_test = mk.data.load_numpy("movies", split="test")
    b_train, b_test = bag_of_ids(x_train["title"]), bag_of_ids(x_test["title"])
    oof, test = title_scores(b_train, y_train, b_test)
    title_only = {g: float(roc_auc_score(y_test[g], test[:, 1 + i])) for i, g in enumerate(GENRE_LABELS)}
    print("title ids only (linear): mean AUC %.4f, rating RMSE %.4f" % (
        np.mean(list(title_only.values())), np.sqrt(np.mean((test[:, 0] - y_test["rating"]) ** 2))))
    for name, (a, b) in {
        "tabular HGB": (x_train["tabular"], x_test["tabular"]),
        "stacked HGB (genre LR scores)": (np.hstack([x_train["tabular"], oof[:, 1:]]), np.hstack([x_test["tabular"], test[:, 1:]])),
        "stacked HGB (genre LR + rating ridge scores)": (np.hstack([x_train["tabular"], oof]), np.hstack([x_test["tabular"], test])),
    }.items():
        m = evaluate(a, y_train, b, y_test)
        print(f"{name}: rating RMSE {m['rating_rmse']:.4f}, mean AUC {m['mean_auc']:.4f} ("
              + ", ".join(f"{g} {m[g + '_auc']:.3f}" for g in GENRE_LABELS) + ")")


if __name__ == "__main__":
    main()
