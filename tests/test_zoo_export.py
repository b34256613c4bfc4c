"""Every shipped zoo entry: its card is reproduced by evaluate, and it exports to all four TFLite
flavours (built-in ops only) plus SavedModel and ONNX, with int8 within 1 point of float32."""

import pytest

import mtmm_keras as mk
from mtmm_keras.export import runtimes, tflite_writer, verify
from mtmm_keras.zoo import evaluation, registry

pytestmark = pytest.mark.slow
FLAVOURS = ("float32", "float16", "dynamic", "int8")


@pytest.mark.parametrize("name", registry.list())
def test_evaluate_reproduces_the_card(name):
    result = mk.zoo.evaluate(name)
    assert result["card"], f"{name} has no card metrics"
    for key, value in result["card"].items():
        assert result["measured"][key] == pytest.approx(value, abs=1e-6), key  # on the raw inputs (test_raw_inputs)


@pytest.mark.parametrize("name", [n for n in registry.list() if registry.recipe(n)["builder"] != "joint_embedding"])
def test_entry_exports_every_flavour_with_int8_within_one_point_or_one_row(name, tmp_path):
    recipe = registry.recipe(name)
    model = mk.zoo.load(name)
    x_train, _ = evaluation.split_arrays(recipe, "train", limit=256)
    x_test, y_test = evaluation.split_arrays(recipe, "test", limit=1024)
    report = mk.export.export_model(model, str(tmp_path / name), quantize=FLAVOURS, representative_data=x_train,
                                    validation_data=(x_test, y_test), verbose=False)
    assert report.passed, report.table()
    # one point of accuracy, or one test row where a point is finer than one row (penguins: 67 rows, 1.5 points)
    limit = verify.accuracy_drop_limit(len(next(iter(y_test.values())))) + 1e-9
    for artifact in report.artifacts:
        if artifact.format == "tflite":
            assert tflite_writer.flex_ops(open(artifact.path, "rb").read()) == []
        if artifact.quantization == "int8":
            for check in artifact.checks:
                if check.metric == "accuracy":
                    assert check.keras_value - check.artifact_value <= limit, (check.name, check.keras_value,
                                                                                check.artifact_value)


@pytest.mark.parametrize("name", [n for n in registry.list() if registry.recipe(n)["builder"] == "joint_embedding"])
def test_retrieval_entry_int8_towers_keep_recall(name, tmp_path):
    recipe = registry.recipe(name)
    model = mk.zoo.load(name)
    x_train, _ = evaluation.split_arrays(recipe, "train", limit=256)
    x_test, y_test = evaluation.split_arrays(recipe, "test", limit=1024)
    reports = mk.export.export_towers(model, str(tmp_path), quantize=FLAVOURS, representative_data=x_train, verbose=False)
    assert all(r.passed for r in reports.values())
    embeddings = {}
    for modality, report in reports.items():
        int8 = next(a for a in report.artifacts if a.quantization == "int8")
        assert tflite_writer.flex_ops(open(int8.path, "rb").read()) == []
        (embeddings[modality],) = runtimes.tflite_runner(int8.path)({modality: x_test[modality]}).values()
    float_metrics = evaluation.joint_embedding_metrics(model, x_test, y_test["group"])
    a, b = list(embeddings)
    for query, gallery in ((a, b), (b, a)):
        int8_recall = mk.retrieval.retrieval_recall(embeddings[query], embeddings[gallery], ks=(1,),
                                                  query_ids=y_test["group"], gallery_ids=y_test["group"])["recall_at_1"]
        assert float_metrics[f"{query}_to_{gallery}_recall_at_1"] - int8_recall <= 0.01
