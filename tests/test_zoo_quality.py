"""Quality floors of the shipped zoo entries (issue 22), and the code behind the cards' baselines and
robustness tables: headline metrics checked against scikit-learn, baselines recomputed, a broken model
caught by the floor, the perturbations on synthetic inputs, the metadata rewrite and the CLI's errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from mtmm_keras.zoo import baselines, card, headline, quality, registry, robustness

pytest.importorskip("sklearn")

# Headline metrics on which a shipped entry is NOT better than its best simple baseline (its card says
# "**not better**" on each row). The test pins the exact set: a new shortfall, or a listed one that
# recovers (remove it here), fails. Penguins' sex head is 3 of 67 test rows behind (95 % interval [−0.150, +0.060]);
# issue 22 stays open on it.
KNOWN_BELOW_FLOOR = {
    "penguins_hard": {"sex_accuracy"},
}


@pytest.mark.parametrize("name", registry.list())
def test_every_entry_beats_its_best_simple_baseline(name):
    meta = registry.metadata(name)
    failures = quality.floor_failures(meta)
    below = {line.split(":", 1)[0] for line in failures}
    assert below == KNOWN_BELOW_FLOOR.get(name, set()), f"{name}: quality floor failures changed: {failures}"
    assert meta.get("robustness"), f"{name} has no robustness table"
    text = (registry.entry_dir(name) / registry.CARD_FILE).read_text()
    assert "## Simple baselines" in text and "## Robustness" in text


def _split(name):
    from mtmm_keras.zoo import evaluation

    recipe = registry.recipe(name)
    return (recipe, *evaluation.split_arrays(recipe, "train"), *evaluation.split_arrays(recipe, "test"))


@pytest.mark.parametrize("name", ["penguins_hard", "mfeat_fusion"])
def test_card_metrics_match_sklearn_on_the_models_predictions(name):
    from mtmm_keras.zoo import evaluation
    from sklearn.metrics import accuracy_score, mean_squared_error

    import mtmm_keras as mk

    recipe, _, _, x_test, y_test = _split(name)
    model = mk.zoo.load(name)
    predictions = model.predict(evaluation._model_inputs(model, x_test), verbose=0)
    meta = registry.metadata(name)
    for task in recipe["tasks"]:
        pred, truth = predictions[task["name"]], y_test[task["name"]]
        if headline.task_kind(task) == "regression":
            value, key = float(np.sqrt(mean_squared_error(truth, pred.reshape(truth.shape)))), f"{task['name']}_rmse"
        else:
            value, key = float(accuracy_score(truth, pred.argmax(-1))), f"{task['name']}_accuracy"
        assert meta["metrics"][key] == pytest.approx(value, abs=1e-6)
        table = {row["key"]: row for row in (meta.get("simple_baselines") or {}).get("headline", [])}
        if key in table:
            assert table[key]["entry"] == pytest.approx(value, abs=1e-6)


def test_weighted_auc_and_ap_match_sklearn_with_ties_and_weights():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    labels = (rng.random(300) < 0.15).astype(float)
    scores = np.round(rng.normal(labels, 1.0), 1)  # rounded: many ties
    weights = rng.integers(0, 3, (4, 300)).astype(float)
    auc, ap = headline._weighted_auc(labels, scores, weights), headline._weighted_ap(labels, scores, weights)
    for b in range(4):
        assert auc[b] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(labels, scores, sample_weight=weights[b]), abs=1e-12)


def test_headlines_use_auc_and_ap_for_rare_binary_tasks():
    recipe = {"builder": "mmoe", "tasks": [
        {"name": "rare", "units": 1, "loss": "binary_crossentropy"},
        {"name": "even", "units": 1, "loss": "binary_crossentropy"},
        {"name": "kind", "units": 4, "loss": "sparse_categorical_crossentropy"},
        {"name": "value", "units": 1, "loss": "mse"}]}
    y = {"rare": np.r_[np.ones(10), np.zeros(90)], "even": np.r_[np.ones(40), np.zeros(60)],
         "kind": np.arange(100) % 4, "value": np.zeros(100)}
    keys = [row["key"] for row in headline.headlines(recipe, y)]
    assert keys == ["rare_auc", "rare_ap", "even_accuracy", "kind_accuracy", "value_rmse"]


def test_flags_a_binary_head_that_never_predicts_a_positive():
    recipe = {"tasks": [{"name": "rare", "units": 1, "loss": "binary_crossentropy"}]}
    truth = {"rare": np.r_[np.ones(5), np.zeros(95)].astype(np.int64)}
    flags = headline.binary_flags(recipe, {"rare": {"label": np.zeros(100, np.int64), "score": np.zeros(100)}}, truth)
    assert len(flags) == 1 and "never predicts a positive" in flags[0]


@pytest.mark.parametrize("name", ["penguins_hard"])
def test_penguins_baselines_recomputed_equal_the_card(name):
    recipe, x_train, y_train, x_test, y_test = _split(name)
    table = registry.metadata(name)["simple_baselines"]
    fitted = baselines.task_baselines(recipe, x_train, y_train, x_test)
    rows = headline.headlines(recipe, y_train)
    for baseline, out in fitted.items():
        recomputed = headline.scalar_values(rows, out, y_test, recipe)
        for key, value in recomputed.items():
            assert table["metrics"][baseline][key] == pytest.approx(value, abs=1e-6), (baseline, key)


def test_a_model_with_zeroed_weights_fails_the_floor():
    import mtmm_keras as mk

    recipe, x_train, y_train, x_test, y_test = _split("penguins_hard")
    model = mk.zoo.load("penguins_hard")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    table = quality.simple_baselines(model, recipe, x_train, y_train, x_test, y_test)
    failures = headline.floor_failures(table["headline"])
    assert {f.split(":")[0] for f in failures} == {"species_accuracy", "sex_accuracy", "body_mass_rmse"}
    assert headline.floor_failures(None) and headline.floor_failures([])  # no table: a failure too


def test_a_tie_at_a_perfect_score_clears_the_floor():
    row = {"key": "x_accuracy", "metric": "accuracy", "entry": 1.0, "baseline": 1.0, "best_baseline": "linear",
           "margin": 0.0, "ci95": [0.0, 0.0]}
    assert headline.floor_failures([row]) == []
    assert headline.floor_failures([{**row, "entry": 0.9, "baseline": 0.9}])


def test_shift_moves_every_pixel_by_one_and_fills_zeros():
    images = np.arange(1, 2 * 5 * 4 + 1, dtype=np.uint8).reshape(2, 5, 4, 1)
    down = robustness.shift(images, 1, 0)
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])
    assert not down[:, 0].any()
    left = robustness.shift(images, 0, -1)
    np.testing.assert_array_equal(left[:, :, :-1], images[:, :, 1:])
    assert not left[:, :, -1].any()
    assert robustness.shift(images, 0, 1).dtype == np.uint8


def test_brightness_and_noise_clip_to_uint8():
    images = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(robustness.brightness(images, 1.2), [[0, 120, 240, 255]])
    np.testing.assert_array_equal(robustness.brightness(images, 0.8), [[0, 80, 160, 204]])
    noisy = robustness.gaussian_noise(np.full((200, 200), 250, np.uint8), 8.0)
    assert noisy.dtype == np.uint8 and noisy.max() == 255 and 0 < noisy.std() < 8


def test_volume_clips_to_full_scale_and_noise_has_the_asked_snr():
    wave = np.sin(np.linspace(0, 200, 4000, dtype=np.float32))[None] * 0.8
    assert np.abs(robustness.volume(wave, 2.0)).max() == pytest.approx(1.0)
    np.testing.assert_allclose(robustness.volume(wave, 0.5), wave * 0.5)
    loud = wave * 10  # not full-scale units: scaled, never clipped
    np.testing.assert_allclose(robustness.volume(loud, 2.0), loud * 2, rtol=1e-6)
    noisy = robustness.audio_noise(wave, 30.0)
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(30.0, abs=0.3)


def test_update_preset_rewrites_metadata_and_card_and_still_verifies(tmp_path):
    from mtmm_keras.zoo import presets

    folder = tmp_path / "penguins_hard"
    shutil.copytree(registry.entry_dir("penguins_hard"), folder)
    weights = (folder / registry.WEIGHTS_FILE).read_bytes()
    meta = presets.update_preset(folder, {"robustness": {"clean": {"a": 1.0}, "perturbations": {},
                                                         "not_applicable": ["tabular"]}},
                                 lambda m: card.render("penguins_hard", registry.recipe("penguins_hard"), m))
    assert presets.verify(folder) and (folder / registry.WEIGHTS_FILE).read_bytes() == weights
    assert "No device perturbation applies to tabular inputs" in (folder / registry.CARD_FILE).read_text()
    assert registry.metadata("x", folder)["robustness"] == meta["robustness"]
    with pytest.raises(ValueError, match="sha256"):
        presets.update_preset(folder, {"sha256": {}}, lambda m: "")


def test_card_calls_the_one_modality_models_ablations():
    meta = registry.metadata("mfeat_fusion")
    text = card.render("mfeat_fusion", registry.recipe("mfeat_fusion"), {**meta, "simple_baselines": None, "robustness": None})
    assert "## Ablations (the same recipe retrained on one modality" in text and "## Simple baselines" not in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--write"], "--baselines"),
    (["--baselines", "--max-fit-rows", "-3"], "--max-fit-rows"),
])
def test_evaluate_flag_errors_name_the_flag(argv, message, capsys):
    from mtmm_keras.cli import main

    assert main(["zoo", "evaluate", "penguins_hard", *argv]) == 2
    assert message in capsys.readouterr().out


def test_evaluate_refuses_an_unknown_flag(capsys):
    from mtmm_keras.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "evaluate", "penguins_hard", "--baseline-s"])
    assert exit_info.value.code == 2 and "--baseline-s" in capsys.readouterr().err


def test_quality_arguments_are_checked():
    with pytest.raises(ValueError, match="baselines, robustness"):
        quality.check_tables(("baselines", "speed"))
    with pytest.raises(ValueError, match="max_fit_rows"):
        quality.check_max_fit_rows(2.5)
    assert quality.check_max_fit_rows(0) == 0 and quality.check_max_fit_rows(None) is None


def test_fit_row_limits_follow_the_cost_rule():
    recipe = {"encoders": {"image": {"kind": "image"}}}
    wide = {"image": np.zeros((60_000, 28, 28, 1), np.uint8)}
    assert baselines.fit_row_limits(recipe, wide) == (25_510, 5_102)
    assert baselines.fit_row_limits(recipe, wide, 0) == (60_000, 5_102)
    assert baselines.fit_row_limits(recipe, {"image": wide["image"][:300]}) == (300, 300)


def test_text_features_count_words_and_drop_the_padding():
    recipe = {"encoders": {"title": {"kind": "text", "vocab_size": 6}}}
    counts = baselines.modality_features(recipe, {"title": np.array([[3, 3, 5, 0], [0, 0, 0, 0]])})["title"]
    np.testing.assert_array_equal(counts.toarray(), [[0, 0, 0, 2, 0, 1], [0, 0, 0, 0, 0, 0]])
