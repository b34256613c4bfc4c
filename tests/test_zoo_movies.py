"""Zoo cards for binary tasks: ROC AUC per task listing "auc", `mean_auc` over two or more, reference
numbers beside the measured ones; the shipped `movies` entries report rating RMSE and every genre's AUC."""

import keras
import numpy as np
import pytest

from mtmm_keras.zoo import card, evaluation, registry

GENRES = ("action", "animation", "comedy", "drama", "documentary", "romance")
MOVIES_ENTRIES = [n for n in registry.list() if registry.recipe(n)["data"] == "movies"]


def test_roc_auc_counts_ties_as_half_and_matches_the_pair_count():
    assert evaluation.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert evaluation.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert evaluation.roc_auc([1, 1, 0], [3.0, 2.0, 1.0]) == pytest.approx(1.0)
    assert np.isnan(evaluation.roc_auc([1, 1], [0.2, 0.3]))  # one class only: undefined
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # many ties
    pairs = scores[labels == 1][:, None] - scores[labels == 0][None, :]
    expected = ((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size
    assert evaluation.roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def _recipe():
    tasks = [{"name": "rating", "units": 1, "loss": "mse", "activation": None, "metrics": ["mae"]},
             {"name": "a", "units": 1, "loss": "binary_crossentropy", "activation": None, "metrics": ["auc"]},
             {"name": "b", "units": 1, "loss": "binary_crossentropy", "activation": "sigmoid", "metrics": ["auc"]},
             {"name": "c", "units": 1, "loss": "binary_crossentropy", "activation": None, "metrics": ["accuracy"]}]
    return {"builder": "hard_sharing", "data": "toy", "encoders": {"x": {"kind": "tabular"}}, "tasks": tasks}


def _identity_model():
    """Every head returns one input column, so the expected metrics are computable by hand."""
    x = keras.Input((4,), name="x")
    outputs = {name: keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(np.eye(4)[:, [i]]),
                                        activation=act, name=name)(x)
               for i, (name, act) in enumerate([("rating", None), ("a", None), ("b", "sigmoid"), ("c", None)])}
    return keras.Model(x, outputs)


def test_binary_tasks_listing_auc_get_auc_and_their_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = {"rating": x[:, 0] + 0.5, "a": (x[:, 1] + rng.normal(size=200) > 0).astype("int64"),
         "b": (x[:, 2] + rng.normal(size=200) > 0).astype("float32"), "c": (x[:, 3] > 0).astype("int64")}
    y["b"][:20] = np.nan  # missing labels count in no metric
    metrics = evaluation.task_metrics(_identity_model(), _recipe(), {"x": x}, y)
    assert set(metrics) == {"rating_rmse", "a_accuracy", "a_auc", "b_accuracy", "b_auc", "c_accuracy", "mean_auc"}
    assert metrics["rating_rmse"] == pytest.approx(0.5, abs=1e-5)
    assert metrics["a_auc"] == pytest.approx(evaluation.roc_auc(y["a"], x[:, 1]))
    assert metrics["b_auc"] == pytest.approx(evaluation.roc_auc(y["b"][20:], x[20:, 2]), abs=1e-6)  # sigmoid keeps the order
    assert metrics["mean_auc"] == pytest.approx((metrics["a_auc"] + metrics["b_auc"]) / 2)
    one_auc = {**_recipe(), "tasks": _recipe()["tasks"][:2]}
    assert "mean_auc" not in evaluation.task_metrics(_identity_model(), one_auc, {"x": x}, y)


def test_card_lists_auc_and_sets_references_beside_the_measured_numbers():
    recipe = {**_recipe(), "description": "toy", "fit": {},
              "references": [{"name": "GBM", "metrics": {"rating_rmse": 1.0, "mean_auc": 0.9, "absent": 1.0},
                              "note": "another split"}]}
    meta = {"metrics": {"rating_rmse": 0.5, "a_auc": 0.8, "b_auc": 0.7, "mean_auc": 0.75}, "params": 10,
            "weights_file": "model.weights.h5", "weights_bytes": 100, "sha256": {"model.weights.h5": "0" * 64},
            "training": {"epochs": 1, "batch_size": 2, "learning_rate": 0.1, "seed": 0, "seconds": 1.0,
                         "hardware": "CPU", "keras": "3", "backend": "tensorflow", "backend_version": "2"}}
    text = card.render("toy", recipe, meta)
    assert "| mean_auc | 0.7500 |" in text and "| a_auc | 0.8000 |" in text
    assert "| GBM | rating_rmse | 1.0000 | 0.5000 | better |" in text  # lower RMSE is better
    assert "| GBM | mean_auc | 0.9000 | 0.7500 | **not better** |" in text
    assert "absent" not in text and "- GBM: another split" in text


@pytest.mark.parametrize("name", MOVIES_ENTRIES)
def test_movies_card_reports_rating_rmse_every_genre_auc_and_their_mean(name):
    metrics = registry.metadata(name)["metrics"]
    for key in ("rating_rmse", "mean_auc", *(f"{g}_auc" for g in GENRES)):
        assert key in metrics, key
    assert metrics["mean_auc"] == pytest.approx(np.mean([metrics[f"{g}_auc"] for g in GENRES]))
    text = (registry.entry_dir(name) / registry.CARD_FILE).read_text()
    assert f"| mean_auc | {metrics['mean_auc']:.4f} |" in text and "## Reference numbers" in text
    recipe = registry.recipe(name)
    assert list(recipe["encoders"]) == ["tabular", "title"]  # the raw dataset inputs, both modalities
