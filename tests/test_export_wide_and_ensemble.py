"""Export of Wide & Deep heads and seed ensembles: every format and TFLite flavour verified against Keras, and the
bag-of-words path (a gather over 1-D ids) fully on LiteRT's GPU accelerator (lavapipe when there is no GPU: op
coverage and numerics, never speed)."""

import json

import keras
import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.export import gpu_delegate

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on the TensorFlow backend"),
    pytest.mark.slow,
]
VOCAB = 40


def _wide_mmoe(seed=0):
    keras.utils.set_random_seed(seed)
    encoders = {
        "title": mk.encoders.text(vocab_size=VOCAB, sequence_length=6, kind="sum", embedding_dim=4,
                                  input_name="title", name="title_encoder"),
        "tabular": mk.encoders.tabular(3, hidden_units=(4,), input_name="tabular", name="tabular_encoder"),
    }
    tasks = [mk.Task("genre", 1, loss="binary_crossentropy"), mk.Task("rating", 1, loss="mse")]
    model = mk.builders.mmoe(encoders, tasks, num_experts=2, expert_units=(8,), tower_units=(4,),
                             wide={"title": VOCAB, "tabular": None})
    rng = np.random.default_rng(seed)
    for task in tasks:  # wide weights away from their zero start, so the artifacts must reproduce them
        for table in model.get_layer(task.name).wide_weights:
            table.assign(rng.normal(scale=0.3, size=table.shape).astype("float32"))
    return model


def _inputs(rows=160):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, (rows, 6)).astype("int32")
    ids[:, -2:] = 0
    return {"title": ids, "tabular": rng.normal(size=(rows, 3)).astype("float32")}


@pytest.mark.parametrize("ensemble", [False, True])
def test_wide_heads_and_ensembles_export_to_every_format_verified(tmp_path, ensemble):
    model = mk.models.average_ensemble([_wide_mmoe(0), _wide_mmoe(1)]) if ensemble else _wide_mmoe()
    report = mk.export.export_model(model, tmp_path / "out", formats=("saved_model", "tflite", "onnx"),
                                    quantize=("float32", "float16", "dynamic", "int8"),
                                    representative_data=_inputs(), verbose=False)
    assert report.passed, report.table()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted((a["format"], a["quantization"]) for a in manifest["artifacts"]) == sorted(
        [("saved_model", "float32"), ("onnx", "float32")]
        + [("tflite", q) for q in ("float32", "float16", "dynamic", "int8")])


@pytest.mark.skipif(gpu_delegate.vulkan_icd() is None,
                    reason="no Vulkan driver for LiteRT's GPU accelerator: run scripts/install_system_deps.sh")
def test_the_bag_of_words_path_runs_fully_on_the_gpu_accelerator(tmp_path):
    report = mk.export.export_model(_wide_mmoe(), tmp_path / "out", target="android-gpu",
                                    representative_data=_inputs(), verbose=False)
    assert report.passed, report.table()
    for artifact in report.artifacts:
        gpu = artifact.deployment["gpu_delegate"]
        assert gpu["fully_accelerated"] and gpu["unsupported"] == [], (artifact.quantization, gpu)
        assert gpu["max_abs_diff"]["fp32"] <= 1e-4, gpu
