"""Smoke suite for the INSTALLED package: tests/test_installed_wheel.py builds the wheel, installs it
(non-editable) into a fresh virtualenv and runs this file there with pytest, from a folder outside the source
tree. It is not collected by the main suite (its name does not start with `test_`).

Each test is what a user does first after `pip install mtmm-keras[export,data]`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

VENV_BIN = pathlib.Path(sys.executable).parent


def mtmm(*argv: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """The `mtmm` console script the wheel installed (not `python -m`: the entry point is part of the check)."""
    return subprocess.run([str(VENV_BIN / "mtmm"), *argv], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_the_package_is_the_installed_wheel_not_the_source_tree():
    import mtmm_keras

    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    assert pathlib.Path(mtmm_keras.__file__).resolve().is_relative_to(site), mtmm_keras.__file__
    import mtmm_keras.export
    import mtmm_keras.zoo

    for module in (mtmm_keras.zoo, mtmm_keras.export):
        assert pathlib.Path(module.__file__).resolve().is_relative_to(site / "mtmm_keras")
    import importlib.util

    assert importlib.util.find_spec("zoo") is None and importlib.util.find_spec("export") is None


def test_every_subpackage_imports():
    """Every module the package has imports from the wheel (a package missing from the wheel fails here)."""
    import importlib
    import pkgutil

    import mtmm_keras

    names = [m.name for m in pkgutil.walk_packages(mtmm_keras.__path__, "mtmm_keras.")]
    assert {"mtmm_keras.weighting", "mtmm_keras.distribute", "mtmm_keras.zoo", "mtmm_keras.export"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_import_then_keras_works():
    """`import mtmm_keras` hooks Keras's import; the user's own `import keras` must still work after it."""
    code = "import mtmm_keras, keras; print(keras.saving.get_registered_object('mtmm>MultiTaskModel') is not None)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"


def _builders():
    import mtmm_keras as mk

    tasks = [mk.Task("a", 1), mk.Task("c", 2)]
    fusion_tasks = [mk.Task("digit", 8, loss="sparse_categorical_crossentropy", metrics=["accuracy"])]

    def encoders():
        return {"image": mk.encoders.image((8, 8, 1), filters=(8,)), "tabular": mk.encoders.tabular(16)}

    return {
        "hard_sharing": lambda: mk.builders.hard_sharing((100,), tasks),
        "soft_sharing": lambda: mk.builders.soft_sharing((100,), tasks),
        "cross_stitch": lambda: mk.builders.cross_stitch((100,), tasks),
        "mmoe": lambda: mk.builders.mmoe((100,), tasks),
        "cgc": lambda: mk.builders.cgc((100,), tasks),
        "ple": lambda: mk.builders.ple((100,), tasks),
        "attention_fusion": lambda: mk.builders.attention_fusion(encoders(), fusion_tasks),
        "concat_fusion": lambda: mk.builders.concat_fusion(encoders(), fusion_tasks),
        "gated_fusion": lambda: mk.builders.gated_fusion(encoders(), fusion_tasks),
        "transformer_fusion": lambda: mk.builders.transformer_fusion(encoders(), fusion_tasks),
        "joint_embedding": lambda: mk.builders.joint_embedding(
            {"text": mk.encoders.text(64, 12, kind="conv"), "image": mk.encoders.image((8, 8, 1), filters=(8,))}),
    }


def _data(kind: str):
    import mtmm_keras as mk

    if kind in ("attention_fusion", "concat_fusion", "gated_fusion", "transformer_fusion", "joint_embedding"):
        views = mk.data.paired_modalities(64, seed=0)
        if kind == "joint_embedding":
            return {"text": views["tokens"], "image": views["image"]}, None
        return {"image": views["image"], "tabular": views["tabular"]}, {"digit": views["label"]}
    x, y = mk.data.reference_multitask(64, seed=0)
    return x, {"a": y["a"], "c": y["c"]}


def test_every_builder_is_exported_by_the_wheel():
    import mtmm_keras as mk

    public = {name for name in mk.builders.__all__ if callable(getattr(mk.builders, name))}
    assert set(_builders()) <= public


@pytest.mark.parametrize("kind", sorted(_builders()))
def test_every_builder_fits_one_step(kind):
    model = _builders()[kind]()
    x, y = _data(kind)
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_every_weighting_method_fits_one_step():
    import mtmm_keras as mk

    x, y = _data("hard_sharing")
    for name in mk.weighting.names():
        model = mk.builders.hard_sharing((100,), [mk.Task("a", 1), mk.Task("c", 2)], weighting=name)
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        assert np.isfinite(history.history["loss"][-1]), name


def test_every_zoo_entry_loads_with_its_weights():
    import mtmm_keras as mk

    names = mk.zoo.list()
    assert len(names) >= 10
    for name in names:
        model = mk.zoo.load(name)
        assert model.count_params() > 0, name


def test_demo_without_zoo(tmp_path):
    result = mtmm("demo", "--no-zoo", "--epochs", "1", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert any(p.suffix == ".keras" for p in (tmp_path / "demo").iterdir())


def test_zoo_verify_and_export_of_an_entry(tmp_path):
    result = mtmm("zoo", "verify", "penguins_hard", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "export"
    result = mtmm("export", "zoo:penguins_hard", "--out", str(out), "--format", "onnx,tflite", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passed"] is True
    assert {a["format"] for a in manifest["artifacts"]} >= {"onnx", "tflite"}
    assert sorted(os.listdir(tmp_path)) == ["export"]
