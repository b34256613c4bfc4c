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
    """The `mtmm` console script the wheel installed (not `python -m`: the entry point is part of the check), with
    TensorFlow's log level unset as in a user's shell (the command must silence TF's C++ start-up noise itself)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([str(VENV_BIN / "mtmm"), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


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


BUILDERS = ("hard_sharing", "soft_sharing", "cross_stitch", "mmoe", "cgc", "ple", "attention_fusion", "concat_fusion",
            "gated_fusion", "transformer_fusion", "joint_embedding")


def test_every_builder_is_exported_by_the_wheel():
    import mtmm_keras as mk

    public = {name for name in mk.builders.__all__ if callable(getattr(mk.builders, name))}
    assert set(BUILDERS) <= public


def test_every_weighting_method_fits_one_step():
    import mtmm_keras as mk

    x, y = mk.data.reference_multitask(64, seed=0)
    y = {"a": y["a"], "c": y["c"]}
    for name in mk.weighting.names():
        model = mk.builders.hard_sharing((100,), [mk.Task("a", 1), mk.Task("c", 2)], weighting=name)
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        assert np.isfinite(history.history["loss"][-1]), name


def test_every_zoo_entry_loads_with_its_weights():
    import mtmm_keras as mk

    names = mk.zoo.list()
    # the source tree's entries, passed in by tests/test_installed_wheel.py: the wheel must ship every one of them
    expected = os.environ.get("MTMM_EXPECTED_ZOO_ENTRIES")
    assert names == (expected.split(",") if expected else names) and len(names) >= 9, (names, expected)
    for name in names:
        model = mk.zoo.load(name)
        assert model.count_params() > 0, name


def test_demo_builds_fits_saves_and_reloads_every_builder(tmp_path):
    """`mtmm demo --no-zoo`: every builder is built, fitted, saved and reloaded in safe mode by the wheel's own
    console script (the one run of the demo in `make test`: it is the builders' one-step fit check too)."""
    result = mtmm("demo", "--no-zoo", "--epochs", "1", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for kind in BUILDERS:
        assert (tmp_path / "demo" / f"{kind}.keras").stat().st_size > 0, kind
        assert f"== {kind}: building and fitting" in result.stdout, kind
    assert "all reloads match" in result.stdout
    assert "oneDNN" not in result.stderr and "cuInit" not in result.stderr  # TF C++ noise is silenced


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
