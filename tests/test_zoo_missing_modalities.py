"""Zoo evaluation of a fused model with a `modality_mask` input: the same model scored with each modality
missing, and the card setting those scores beside the dedicated single-modality models."""

import numpy as np

import mtmm_keras as mk
from mtmm_keras.zoo import card, evaluation

RECIPE = {
    "builder": "gated_fusion", "data": "none",
    "encoders": {"left": {"kind": "tabular"}, "right": {"kind": "tabular"}},
    "tasks": [{"name": "digit", "units": 3, "loss": "sparse_categorical_crossentropy"}],
}


def _model_and_data():
    rng = np.random.default_rng(0)
    encoders = {m: mk.encoders.tabular(4, (8,), input_name=m, name=f"{m}_encoder") for m in ("left", "right")}
    model = mk.builders.gated_fusion(encoders, [mk.Task("digit", 3, loss="sparse_categorical_crossentropy")],
                                     fusion_dim=8, modality_dropout=0.3)
    x = {m: rng.normal(size=(64, 4)).astype("float32") for m in ("left", "right")}
    y = {"digit": rng.integers(0, 3, 64)}
    return model, x, y


def test_masked_model_is_scored_with_each_modality_missing():
    model, x, y = _model_and_data()
    metrics = evaluation.evaluate_model(model, RECIPE, x, y)
    assert set(metrics) == {"digit_accuracy", "digit_accuracy_without_left", "digit_accuracy_without_right"}
    # "without left" is exactly the model fed garbage on the left with its mask column at 0
    garbage = {**x, "left": np.full_like(x["left"], 1e3),
               "modality_mask": np.tile(np.array([[0.0, 1.0]], "float32"), (64, 1))}
    want = float((model.predict(garbage, verbose=0)["digit"].argmax(-1) == y["digit"]).mean())
    assert metrics["digit_accuracy_without_left"] == want
    full = float((model.predict({**x, "modality_mask": np.ones((64, 2), "float32")}, verbose=0)["digit"].argmax(-1)
                  == y["digit"]).mean())
    assert metrics["digit_accuracy"] == full


def test_without_leaves_the_callers_arrays_alone():
    x = {"a": np.ones((2, 3), "float32"), "b": np.ones((2, 1), "float32")}
    out = evaluation.without(x, ["a", "b"], "b")
    np.testing.assert_array_equal(out["modality_mask"], [[1, 0], [1, 0]])
    assert not out["b"].any() and x["b"].all()
    assert out["a"] is x["a"] and "modality_mask" not in x


def test_card_compares_missing_modality_scores_with_dedicated_models():
    meta = {"metrics": {"digit_accuracy": 0.95, "digit_accuracy_without_left": 0.80, "digit_accuracy_without_right": 0.88},
            "baselines": {"right only": {"digit_accuracy": 0.81}, "left only": {"digit_accuracy": 0.90}},
            "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 0, "seconds": 1.0,
                         "hardware": "cpu", "keras": "3", "backend": "tensorflow", "backend_version": "2"},
            "params": 10, "weights_file": "model.weights.h5", "weights_bytes": 1000, "sha256": {"model.weights.h5": "x"}}
    text = card.render("tiny", RECIPE, meta)
    assert "| right | digit_accuracy_without_left | 0.8000 | 0.8100 | -0.0100 |" in text
    assert "| left | digit_accuracy_without_right | 0.8800 | 0.9000 | -0.0200 |" in text
    assert "\n| digit_accuracy_without_left |" not in text  # not repeated in the main table


def test_export_fills_a_left_out_modality_mask_with_presence_patterns(tmp_path):
    """Device data without the mask (as fit/predict allow): calibration and verification get every modality
    present and each one missing in turn, and the artifact still takes the mask input."""
    model, x, _ = _model_and_data()
    calibration = {m: v[:40] for m, v in x.items()}
    held_out = {m: v[40:] for m, v in x.items()}
    report = mk.export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("float32", "int8"),
                                    representative_data=calibration, validation_data=(held_out,), verbose=False)
    assert report.verified and not report.failed
    from mtmm_keras.export import _model_io

    for rows, modalities in ((4, 2), (11, 3), (1, 5), (0, 2)):
        np.testing.assert_array_equal(_model_io.presence_patterns(rows, modalities),
                                      _presence_patterns_by_hand(rows, modalities))


def _presence_patterns_by_hand(rows, modalities):
    """The docstring's rule written out row by row: row r is pattern r mod (M + 1), where pattern 0 has every
    modality present and pattern k > 0 has modality k - 1 missing."""
    out = []
    for r in range(rows):
        k = r % (modalities + 1)
        out.append([0.0 if k and column == k - 1 else 1.0 for column in range(modalities)])
    return np.array(out, dtype="float32").reshape(rows, modalities)
