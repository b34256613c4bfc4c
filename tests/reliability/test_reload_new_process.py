"""A `.keras` file saved by mtmm-keras reloads in a new process after only `import keras, mtmm_keras`.

Tested from the outside (issue 9, item 4): one fresh process builds, fits and saves one model per builder
plus models whose compile config holds every other mtmm class (each loss, the metric); other fresh
processes reload them with `safe_mode=True` after nothing but `import keras, mtmm_keras`, and check that a
bare `import mtmm_keras` registers the same classes as importing every module of the package. The
`mtmm` command's help must still not load Keras or TensorFlow.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest


def _helpers():
    """The suite's helpers from tests/reliability/conftest.py (not a package, so loaded by path)."""
    spec = importlib.util.spec_from_file_location("_reliability_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_HELPERS = _helpers()
run_cli, run_python = _HELPERS.run_cli, _HELPERS.run_python
ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = (ROOT / "mtmm_keras", ROOT / "zoo", ROOT / "export")  # zoo/ and export/ install as mtmm_keras.*

SAVE = r'''
import importlib, json, pkgutil
import mtmm_keras.layers  # first import of Keras half-way through an mtmm_keras module's own import
import keras
registered_first = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("mtmm>"))
import numpy as np
import mtmm_keras as mk

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
n = 8
tokens = rng.integers(0, 16, size=(n, 5)).astype("int32")
image = rng.normal(size=(n, 4, 4, 1)).astype("float32")
tab6 = rng.normal(size=(n, 6)).astype("float32")
tab4 = rng.normal(size=(n, 4)).astype("float32")
wave = rng.normal(size=(n, 400)).astype("float32")
digit = rng.integers(0, 3, size=(n,)).astype("int32")

def tasks():
    return [mk.Task("a", 1), mk.Task("c", 3, loss="sparse_categorical_crossentropy", metrics=["accuracy"])]

y_tasks = {"a": rng.normal(size=(n, 1)).astype("float32"), "c": digit}
small = dict(filters=(4,), output_dim=4)
models = {}  # name -> (model, x, y)
models["hard_sharing"] = (mk.builders.hard_sharing((6,), tasks(), trunk_units=(8,)), tab6, y_tasks)
models["soft_sharing"] = (mk.builders.soft_sharing((6,), tasks(), tower_units=(8, 4), alpha=1e-3), tab6, y_tasks)
models["mmoe"] = (mk.builders.mmoe((6,), tasks(), num_experts=3, expert_units=(4, 4), gate_units=(4,), tower_units=(4,)), tab6, y_tasks)
models["ple"] = (mk.builders.ple((6,), tasks(), num_levels=2, shared_experts=2, task_experts=1, expert_units=(4,),
                                 tower_units=(4,), gate="dselect_k"), tab6, y_tasks)
models["cross_stitch"] = (mk.builders.cross_stitch((6,), tasks(), tower_units=(4, 4)), tab6, y_tasks)
for method in [m for m in mk.weighting.names() if m != "static"]:  # every weighting method with its state
    models[f"hard_{method}"] = (mk.builders.hard_sharing((6,), tasks(), trunk_units=(4,), weighting=method), tab6, y_tasks)
models["joint_embedding"] = (mk.builders.joint_embedding(
    {"text": mk.encoders.text(16, 5, embedding_dim=4, hidden_dim=4), "image": mk.encoders.image((4, 4, 1), **small)},
    embedding_dim=4, loss="max_margin"), {"text": tokens, "image": image}, None)
fusion_tab = mk.encoders.tabular(6, hidden_units=(4,), normalize=True)
fusion_tab.get_layer("normalize").adapt(tab6)
fusion_audio = mk.encoders.audio((400,), filters=(4,), output_dim=4,  # waveform in: LogMelSpectrogram front end
                                 frontend=dict(sample_rate=8000, frame_length=64, hop=32, num_mel_bins=8, fmax=3000.0))
models["attention_fusion"] = (mk.builders.attention_fusion(
    {"image": mk.encoders.image((4, 4, 1), **small), "tabular": fusion_tab, "audio": fusion_audio}, tasks(), fusion_dim=4),
    {"image": image, "tabular": tab6, "audio": wave}, y_tasks)
# the other fusion designs, with the missing-modality mask input (ModalityDropout) and a mask that drops some
fusion_pair = lambda: {"image": mk.encoders.image((4, 4, 1), **small), "tabular": mk.encoders.tabular(6, hidden_units=(4,))}
fusion_x = {"image": image, "tabular": tab6, "modality_mask": np.array([[1, 1], [0, 1], [1, 0], [1, 1]] * 2, "float32")}
models["concat_fusion"] = (mk.builders.concat_fusion(fusion_pair(), tasks(), fusion_dim=4, hidden_units=(4,),
                                                     modality_mask=True), fusion_x, y_tasks)
models["gated_fusion"] = (mk.builders.gated_fusion(fusion_pair(), tasks(), fusion_dim=4, modality_dropout=0.2), fusion_x, y_tasks)
models["transformer_fusion"] = (mk.builders.transformer_fusion(fusion_pair(), tasks(), fusion_dim=4, modality_dropout=0.2),
                                fusion_x, y_tasks)
models["bottleneck_fusion"] = (mk.builders.transformer_fusion(fusion_pair(), tasks(), fusion_dim=4, bottleneck_tokens=2),
                               {"image": image, "tabular": tab6}, y_tasks)
# transformer text tower (CLS pooling) and a dict-input text backbone fed from token ids alone (masked mean)
models["transformer_text"] = (mk.builders.hard_sharing(mk.encoders.transformer_text(
    16, 5, embedding_dim=4, num_heads=2, num_layers=1, ffn_units=8, pooling="cls"), tasks(), trunk_units=(4,)), tokens, y_tasks)
ids, seg, pad = (keras.Input((5,), dtype="int32", name=k) for k in ("token_ids", "segment_ids", "padding_mask"))
seq = keras.layers.Add()([keras.layers.Embedding(16, 4)(ids), keras.layers.Embedding(2, 4)(seg), keras.layers.Embedding(2, 4)(pad)])
toy_backbone = keras.Model({"token_ids": ids, "segment_ids": seg, "padding_mask": pad}, {"sequence_output": seq})
models["backbone_fusion"] = (mk.builders.attention_fusion(
    {"text": mk.encoders.from_backbone(toy_backbone, pooling="mean"), "tabular": mk.encoders.tabular(6, hidden_units=(4,))},
    tasks(), fusion_dim=4), {"text": tokens, "tabular": tab6}, y_tasks)
pair_encoders = lambda: {"a": mk.encoders.tabular(6, hidden_units=(4,), input_name="a", name="a_encoder"),
                         "b": mk.encoders.tabular(4, hidden_units=(4,), input_name="b", name="b_encoder")}
models["joint_contrastive"] = (mk.builders.joint_embedding(pair_encoders(), embedding_dim=4, loss="contrastive"),
                               {"a": tab6, "b": tab4}, digit)
models["joint_cosine_pairs"] = (mk.builders.joint_embedding(
    pair_encoders(), embedding_dim=4, loss=mk.losses.CosineEmbeddingLoss(margin=0.1)),
    {"a": tab6, "b": tab4}, np.where(digit > 0, 1.0, -1.0).astype("float32"))
for loss in ("clip", "siglip"):  # learned temperature: LearnedTemperature's weights ride along with the model
    models[f"joint_{loss}"] = (mk.builders.joint_embedding(pair_encoders(), embedding_dim=4, loss=loss), {"a": tab6, "b": tab4}, digit)
# numeric features over quantile bins (PiecewiseLinearEncoding, edges adapted to the data) and a summed bag-of-words title
piecewise = mk.encoders.tabular(6, hidden_units=(4,), normalize=False, numeric_encoding="piecewise_linear", num_bins=4)
piecewise.get_layer("numeric_encoding").adapt(tab6)
models["piecewise_tabular"] = (mk.builders.hard_sharing(piecewise, tasks(), trunk_units=(4,)), tab6, y_tasks)
# Wide & Deep heads (a bag of words over token ids and a linear path from floats) inside a seed ensemble of two
wide_members = [mk.builders.mmoe({"tok": mk.encoders.text(16, 5, embedding_dim=4, kind="sum", input_name="tok", name="tok_enc"),
                                  "tab": mk.encoders.tabular(6, hidden_units=(4,), input_name="tab", name="tab_enc")},
                                 tasks(), num_experts=2, expert_units=(4,), tower_units=(4,), wide={"tok": 16, "tab": None},
                                 compile=False) for _ in range(2)]
wide_ensemble = mk.models.average_ensemble(wide_members)
wide_ensemble.compile(optimizer="adam", loss={"a": "mse", "c": "sparse_categorical_crossentropy"})
models["wide_ensemble"] = (wide_ensemble, {"tok": tokens, "tab": tab6}, y_tasks)
inputs = keras.Input((6,), name="features")
plain = keras.Model(inputs, keras.layers.Dense(4, name="scores")(inputs), name="recall_metric")
plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[mk.metrics.RecallAtK(k=2)])
models["recall_metric"] = (plain, tab6, digit)

predictions, inputs_out, meta = {}, {}, {}
for name, (model, x, y) in models.items():
    # TensorFlow: no graph tracing, several times faster for these tiny models (the load side matches). JAX runs
    # eager ops one XLA dispatch at a time: its compiled step is ~1.7x faster here (135 s vs 79 s for all models).
    model.run_eagerly = keras.backend.backend() == "tensorflow"
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps: the optimizer has state to save
    model.save(f"{name}.keras")
    xs = x if isinstance(x, dict) else {"x": x}
    for key, value in xs.items():
        inputs_out[f"{name}/{key}"] = value
    out = model.predict(x, verbose=0)
    for key, value in (out.items() if isinstance(out, dict) else [("out", out)]):
        predictions[f"{name}/{key}"] = np.asarray(value)
    meta[name] = {"class": type(model).__name__, "optimizer_iterations": int(model.optimizer.iterations),
                  "optimizer_sum": float(sum(np.abs(np.asarray(v)).sum() for v in model.optimizer.variables))}
np.savez("inputs.npz", **inputs_out)
np.savez("predictions.npz", **predictions)

# every class registered under "mtmm" once every module of the package has been imported
def walk(package):
    yield package.__name__
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        yield info.name
names = set()
for top in ("mtmm_keras", "mtmm_keras.zoo", "mtmm_keras.export"):
    names.update(walk(importlib.import_module(top)))
for module in sorted(names):
    importlib.import_module(module)
registered = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("mtmm>"))
json.dump({"models": meta, "registered_all_modules": registered, "registered_after_layers_import": registered_first,
           "modules": sorted(names)}, open("saved.json", "w"))
'''

LOAD = r'''
import keras, mtmm_keras
import json, sys
import numpy as np
inputs = dict(np.load("inputs.npz"))
saved = json.load(open("saved.json"))
out, meta = {}, {}
for name in saved["models"]:
    model = keras.models.load_model(f"{name}.keras", safe_mode=True)
    model.run_eagerly = keras.backend.backend() == "tensorflow"  # as on the save side (JAX: 33 s vs 45 s eager)
    xs = {k.split("/", 1)[1]: v for k, v in inputs.items() if k.startswith(name + "/")}
    pred = model.predict(xs["x"] if list(xs) == ["x"] else xs, verbose=0)
    for key, value in (pred.items() if isinstance(pred, dict) else [("out", pred)]):
        out[f"{name}/{key}"] = np.asarray(value)
    config = json.dumps(keras.saving.serialize_keras_object(model))  # class, layers and compile config
    meta[name] = {"class": type(model).__name__, "optimizer_iterations": int(model.optimizer.iterations),
                  "optimizer_sum": float(sum(np.abs(np.asarray(v)).sum() for v in model.optimizer.variables)),
                  "mtmm_in_config": sorted(set(part.split('"')[0] for part in config.split('"mtmm>')[1:]))}
np.savez("reloaded.npz", **out)
registered = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("mtmm>"))
json.dump({"models": meta, "registered": registered}, open("reloaded.json", "w"))
'''

# A fresh process: what does `import mtmm_keras` (or another first import) register?
PROBE = r'''
import json, sys
{first_import}
loaded_by_import = "keras" in sys.modules
import keras
print(json.dumps({{"keras_loaded_by_import": loaded_by_import,
                  "registered": sorted(k for k in keras.saving.get_custom_objects() if k.startswith("mtmm>"))}}))
'''


def _ok(result):
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _classes_in(keras_file: Path) -> set[str]:
    """The mtmm classes a `.keras` file names (each must be deserialized by `load_model`)."""
    config = zipfile.ZipFile(keras_file).read("config.json").decode()
    return {"mtmm>" + part.split('"')[0] for part in config.split('"mtmm>')[1:]}


def _decorated_classes() -> set[str]:
    """Every class decorated with `register_keras_serializable(package="mtmm")` in the package sources."""
    found = set()
    for folder in SOURCE_DIRS:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef):
                    continue
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "attr", getattr(deco.func, "id", "")) == "register_keras_serializable":
                        kwargs = {k.arg: k.value.value for k in deco.keywords if isinstance(k.value, ast.Constant)}
                        found.add(f"{kwargs.get('package', 'Custom')}>{kwargs.get('name', node.name)}")
    return {name for name in found if name.startswith("mtmm>")}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reload")
    _ok(run_python(SAVE, cwd=folder, timeout=300))
    return folder


def test_every_saved_model_reloads_after_only_import_mtmm_keras(saved):
    _ok(run_python(LOAD, cwd=saved, timeout=300))
    before = json.loads((saved / "saved.json").read_text())["models"]
    reloaded = json.loads((saved / "reloaded.json").read_text())
    after = reloaded["models"]
    # `import keras, mtmm_keras` (Keras first) registered the same classes as importing every module
    assert reloaded["registered"] == json.loads((saved / "saved.json").read_text())["registered_all_modules"]
    expected, got = np.load(saved / "predictions.npz"), np.load(saved / "reloaded.npz")
    assert sorted(got.files) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)
    for name, info in before.items():
        assert after[name]["class"] == info["class"], name
        assert after[name]["optimizer_iterations"] == info["optimizer_iterations"] == 2, name
        assert after[name]["optimizer_sum"] == pytest.approx(info["optimizer_sum"], rel=1e-6), name  # state restored
        # the reloaded model (layers and compile config) still holds every mtmm class the file named
        assert {"mtmm>" + c for c in after[name]["mtmm_in_config"]} == _classes_in(saved / f"{name}.keras"), name


def test_saved_files_cover_every_registered_class(saved):
    """The reload test is only as good as its files: together they must name every mtmm class."""
    registered = set(json.loads((saved / "saved.json").read_text())["registered_all_modules"])
    assert registered == _decorated_classes()  # the module walk found every decorated class
    assert {"mtmm>MultiTaskModel", "mtmm>JointEmbeddingModel", "mtmm>StackedDense"} <= registered
    in_files = set().union(*(_classes_in(path) for path in saved.glob("*.keras")))
    assert in_files == registered


def test_import_mtmm_keras_registers_every_class(saved):
    """After a bare `import mtmm_keras`, then `import keras`, the registry holds every mtmm class.

    The other orders are covered too: Keras imported first (the reload test's process) and Keras first
    imported by an mtmm_keras module half-way through its own import (the save process).
    """
    saved_info = json.loads((saved / "saved.json").read_text())
    registered = saved_info["registered_all_modules"]
    result = _ok(run_python(PROBE.format(first_import="import mtmm_keras"), timeout=300))
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["registered"] == registered
    assert probe["keras_loaded_by_import"] is False  # the registration waits for Keras; the import stays light
    assert saved_info["registered_after_layers_import"] == registered


def _imported_modules(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (PYTHONPROFILEIMPORTTIME=1): every import the process ran."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["zoo", "list"]])
def test_cli_help_does_not_load_keras_or_tensorflow(args):
    """`mtmm --help` / `--version` / `zoo list` in a fresh process import neither Keras nor a backend."""
    commands = [lambda env: run_cli(*args, env_extra=env)]  # python -m mtmm_keras.cli
    script = Path(sys.executable).parent / "mtmm"  # the console script, where the package is installed
    if script.exists():
        commands.append(lambda env: subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120,
                                                   env={**os.environ, **env}, stdin=subprocess.DEVNULL))
    for command in commands:
        result = command({"PYTHONPROFILEIMPORTTIME": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip()
        imported = _imported_modules(result.stderr)
        assert "mtmm_keras" in imported  # the probe sees the imports (the package ran)
        assert not {m for m in imported if m.split(".")[0] in ("keras", "tensorflow", "jax", "torch")}
